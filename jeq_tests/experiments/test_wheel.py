"""The wheel (issue 18 item 2): ``pip wheel --no-deps .`` ships only ``jeq`` (the experiments as ``jeq.experiments``,
no top-level ``experiments`` or ``benchmarks`` to shadow a user's own), declares the ``jeq`` console script, and that
command runs from the installed files alone."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
# What a user without the checkout has: the checkout's top-level packages are made unimportable.
RUN_CLI = ("import runpy, sys; sys.modules['experiments'] = sys.modules['benchmarks'] = None; "
           "sys.argv = ['jeq', *sys.argv[1:]]; runpy.run_module('jeq.cli', run_name='__main__')")


def _source_copy(dest: pathlib.Path) -> pathlib.Path:
    """The files a build reads, copied, so that building leaves no build/ or egg-info in the shared checkout."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "results", "runs")
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, dest / name)
    for name in ("jeq", "experiments"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    return dest


def test_the_wheel_holds_only_jeq_and_its_command_runs(tmp_path):
    src = _source_copy(tmp_path / "src")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(src), "-w",
                            str(tmp_path / "dist")], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("jeq-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
        archive.extractall(tmp_path / "site")
    assert {n.split("/")[0] for n in names} == {"jeq", dist_info}  # no experiments/, benchmarks/, jeq_tests/
    # every module of the checkout's jeq and experiments folders is in the wheel (a subpackage missing from
    # pyproject's explicit package list would silently drop out)
    expected = {p.relative_to(src).as_posix() for p in (src / "jeq").rglob("*.py")}
    expected |= {"jeq/experiments/" + p.relative_to(src / "experiments").as_posix()
                 for p in (src / "experiments").rglob("*.py")}
    assert expected - set(names) == set()
    assert "[console_scripts]\njeq = jeq.cli:main" in entry_points

    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"), JAX_PLATFORMS="cpu")

    def jeq(*argv):
        done = subprocess.run([sys.executable, "-c", RUN_CLI, *argv], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=120)
        return done.returncode, done.stdout + done.stderr

    code, out = jeq("--help")
    assert code == 0 and out.startswith("usage: jeq") and "jeq reproduce --quick" in out
    code, out = jeq("run", "mlp_baseline", "--help")  # the experiment imports its harness from jeq.experiments
    assert code == 0 and "usage: jeq run mlp_baseline" in out and "--hidden HIDDEN" in out, out[-2000:]
    code, out = jeq("list")
    assert code == 0 and out.startswith("mlp_baseline ") and "opteq_table" in out
