"""Every notebook under notebooks/ runs top to bottom offline, and the README's notebook snippet runs as printed.

The notebooks are jupytext percent-format ``.py`` files: each is executed as a script in a fresh interpreter (the
same cells, top to bottom, in order), with ``MPLBACKEND=Agg`` and a temporary working directory so that nothing is
written into the repository. A notebook that raises, or that takes more than ``TIMEOUT_S`` seconds, fails: its CPU time
(user + system, what it costs the machine whatever else runs) must stay under ``TIMEOUT_S``, and so must its wall time
on an idle machine; on a machine loaded beyond its cores (several developers, pytest-xdist workers) the wall-clock
limit grows with the load average per core, so a notebook is not failed for time other processes took. A second test
reads each with jupytext and checks that it opens as a notebook of markdown and code cells (what ``jupytext --to
ipynb`` and jupyter's jupytext plugin see). One test per notebook, so pytest-xdist spreads them over workers.
"""

from __future__ import annotations

import os
import pathlib
import re
import resource
import subprocess
import sys
import time

import jupytext
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))
TIMEOUT_S = 60.0
"""CPU seconds a notebook may take, and wall seconds on an idle machine (the CI machine has 2 CPU cores)."""
CAPABILITIES = ("01_prox_and_fixed_points", "02_opteq_mon_deq", "03_equilibrium_propagation", "04_path_sgd",
                "05_gemm_tuning", "06_scale_out", "07_nago", "08_rl_tuner")


def _wall_limit() -> float:
    """``TIMEOUT_S`` on an idle machine; times the load average per core when the machine is oversubscribed."""
    return TIMEOUT_S * max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))


def _run(path: pathlib.Path, cwd: pathlib.Path) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run one file as a script in a fresh interpreter; return the finished process, its wall and its CPU seconds."""
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1")
    env.pop("XLA_FLAGS", None)  # each notebook sets up its own devices (06 simulates several before importing jax)
    limit = _wall_limit()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, str(path)], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=limit)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{path.name} ran longer than {limit:.0f} s of wall time (limit {TIMEOUT_S:.0f} s x load)")
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return proc, wall, cpu


def _repository_entries() -> set[pathlib.Path]:
    """The repository's top-level entries and every file under notebooks/ (where a stray write would land)."""
    notebooks = {p for p in (ROOT / "notebooks").rglob("*") if "__pycache__" not in p.parts}
    return set(ROOT.iterdir()) | notebooks


def test_there_is_one_notebook_per_capability():
    assert [p.stem for p in NOTEBOOKS] == list(CAPABILITIES)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom_within_the_time_limit(path, tmp_path):
    before = _repository_entries()
    proc, wall, cpu = _run(path, tmp_path)
    assert proc.returncode == 0, f"{path.name} failed after {wall:.1f} s:\n{proc.stderr[-4000:]}"
    assert cpu < TIMEOUT_S, f"{path.name} took {cpu:.1f} s of CPU time"
    assert proc.stdout.strip(), f"{path.name} printed nothing: its cells show no result"
    assert _repository_entries() <= before, f"{path.name} wrote into the repository"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_opens_with_jupytext_as_markdown_and_code_cells(path):
    notebook = jupytext.read(path)
    kinds = [cell.cell_type for cell in notebook.cells]
    assert kinds[0] == "markdown" and kinds.count("markdown") >= 3 and kinds.count("code") >= 3
    assert notebook.metadata["jupytext"]["text_representation"]["format_name"] == "percent"
    assert notebook.metadata["kernelspec"]["language"] == "python"
    code = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    for composition in ("jax.jit", "jax.vmap", "plt."):
        assert composition in code, f"{path.name} never uses {composition}"
    # the text form round-trips: what jupyter saves through jupytext is what is stored here
    def body(text):
        return [line for line in text.strip().splitlines() if "jupytext_version" not in line]

    assert body(jupytext.writes(notebook, fmt="py:percent")) == body(path.read_text())


def _readme_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Use it in a notebook", 1)[1].split("\n## ", 1)[0]
    (snippet,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return snippet


def test_readme_notebook_section_is_short_and_names_the_notebooks():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Use it in a notebook", 1)[1].split("\n## ", 1)[0]
    assert len(section.strip().splitlines()) <= 20
    assert 'pip install -e ".[notebooks]"' in section and "jupyter lab notebooks/" in section
    assert len(_readme_snippet().strip().splitlines()) <= 12


def test_readme_notebook_snippet_runs_and_trains(tmp_path):
    script = tmp_path / "snippet.py"
    script.write_text(_readme_snippet())
    proc, wall, cpu = _run(script, tmp_path)
    assert proc.returncode == 0, f"the README snippet failed after {wall:.1f} s:\n{proc.stderr[-4000:]}"
    assert cpu < TIMEOUT_S, f"the README snippet took {cpu:.1f} s of CPU time"
    accuracy = float(re.search(r"test accuracy ([0-9.]+)", proc.stdout).group(1))
    assert accuracy > 0.5  # trained: chance on ten digit classes is 0.1
