"""The command line a user meets (issue 18 items 1 and 3, issue 16 item 9): every experiment's --help documents each
flag with its default and choices; reproduce keeps going past a failed experiment, records wall times and lists them;
the ``jeq`` command."""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import types
from typing import Literal

import pytest

from experiments import harness, report, reproduce
from jeq import cli

NAMES = sorted(set(reproduce.EXPERIMENTS) | set(reproduce.runnable()))


def _options(help_text: str) -> dict[str, str]:
    """``{invocation: description}`` for every entry of argparse's "options:" section."""
    section = help_text.split("\noptions:\n", 1)[1]
    entries: dict[str, str] = {}
    current = None
    for line in section.splitlines():
        if re.match(r"^  -", line):
            head, *desc = re.split(r"\s{2,}", line.strip(), maxsplit=1)
            current = head
            entries[current] = desc[0] if desc else ""
        elif current is not None and line.strip():
            entries[current] += " " + line.strip()
    return {k: v.strip() for k, v in entries.items()}


def _help(name: str, capsys) -> str:
    module = __import__(f"experiments.{name}", fromlist=["main"])
    with pytest.raises(SystemExit) as done:
        module.main(["--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


def test_every_runnable_experiment_is_found():
    assert set(reproduce.EXPERIMENTS) <= set(NAMES) and "harness" not in NAMES and "pathsgd_common" not in NAMES


@pytest.mark.parametrize("name", NAMES)
def test_help_documents_every_flag_with_its_default(name, capsys):
    text = _help(name, capsys)
    options = _options(text)
    assert len(options) >= len(dataclasses.fields(harness.BaseConfig)) + 1  # + -h
    for invocation, description in options.items():
        assert description, f"experiments.{name}: {invocation} has no description"
        assert "undocumented field" not in description, f"experiments.{name}: {invocation} has no docstring"
        if not invocation.startswith("-h"):
            assert description.count("(default: ") == 1, f"experiments.{name}: {invocation}: {description}"
    assert "(default: None)" not in text and "default False" not in text


@dataclasses.dataclass(frozen=True)
class Toy(harness.BaseConfig):
    dataset: Literal["mnist", "fashion_mnist"] = "mnist"
    """Which digits."""
    models: tuple[Literal["mon", "deq"], ...] = ("mon",)
    """Models to train."""
    solver: str = dataclasses.field(default="anderson", metadata={"choices": ("anderson", "picard")})
    """Forward solver."""
    width: int | None = None
    """Hidden width (unset: the budget's)."""
    seeds: tuple[int, ...] = (4,)
    """Overridden here: one seed."""


def test_help_shows_choices_and_unknown_values_fail_at_parse_time(capsys):
    text = harness.build_parser(Toy).format_help()
    options = _options(text)
    assert options["--dataset {mnist,fashion_mnist}"] == "Which digits. (default: mnist)"
    assert options["--models {mon,deq} [{mon,deq} ...]"] == "Models to train. (default: mon)"
    assert options["--solver {anderson,picard}"] == "Forward solver. (default: anderson)"
    assert options["--width WIDTH"] == "Hidden width (unset: the budget's). (default: unset)"
    assert options["--seeds SEEDS [SEEDS ...]"] == "Overridden here: one seed. (default: 4)"  # subclass doc wins
    assert options["--quick, --no-quick"].startswith("Minutes-on-a-CPU configuration")
    assert harness.parse_config(Toy, ["--dataset", "fashion_mnist", "--models", "deq", "mon"]).models == ("deq", "mon")
    for argv, choices in ((["--dataset", "cifar"], "mnist"), (["--models", "mon", "opteq"], "deq"),
                          (["--solver", "newton"], "picard")):
        with pytest.raises(SystemExit) as done:
            harness.parse_config(Toy, argv)
        assert done.value.code == 2
        err = capsys.readouterr().err
        assert f"argument --{argv[0][2:]}" in err and choices in err


@pytest.fixture
def fake_experiments(monkeypatch):
    """Two experiments in the package namespace: one that raises, one that finishes."""
    broken, fine = types.ModuleType("experiments.fake_broken"), types.ModuleType("experiments.fake_fine")
    broken.main = lambda argv: (_ for _ in ()).throw(RuntimeError("diverged at step 3"))
    fine.main = lambda argv: {"json_path": "x.json", "argv": argv}
    monkeypatch.setitem(sys.modules, "experiments.fake_broken", broken)
    monkeypatch.setitem(sys.modules, "experiments.fake_fine", fine)
    monkeypatch.setattr(reproduce, "EXPERIMENTS", ("fake_broken", "fake_fine"))


def test_reproduce_continues_past_a_failed_experiment_and_exits_non_zero(tmp_path, capsys, fake_experiments):
    with pytest.raises(SystemExit) as done:
        reproduce.main(["--quick", "--out", str(tmp_path), "--no-readme", "--allow-dirty"])
    assert done.value.code == 1
    captured = capsys.readouterr()
    assert "RuntimeError: diverged at step 3" in captured.err and "FAILED: fake_broken" in captured.err
    assert "=== fake_fine: ok" in captured.out  # the experiment after the failure still ran
    (path,) = (tmp_path / "reproduce").glob("*.json")
    record = json.loads(path.read_text())
    assert [(r["name"], r["status"]) for r in record["experiments"]] == [("fake_broken", "failed"),
                                                                        ("fake_fine", "ok")]
    assert record["experiments"][0]["error"] == "RuntimeError: diverged at step 3"
    assert all(r["wall_s"] >= 0 for r in record["experiments"]) and record["quick"] and record["cores"] >= 1
    table = report.runtime_table(report.reproduce_record(tmp_path))
    assert "| fake_broken | **failed**: RuntimeError: diverged at step 3 |" in table and "| fake_fine | ok |" in table
    assert "| fake_broken | **failed**" in captured.out  # report.main prints it too


def test_reproduce_refuses_a_dirty_tree_before_running_anything(tmp_path, monkeypatch, fake_experiments):
    monkeypatch.setattr(harness, "git_sha", lambda: "f" * 40 + "-dirty")
    with pytest.raises(harness.DirtyTree, match="--allow-dirty"):
        reproduce.main(["--quick", "--out", str(tmp_path), "--no-readme"])
    assert not (tmp_path / "reproduce").exists()


def test_list_shows_what_each_experiment_reproduces_and_its_quick_wall_time(tmp_path, capsys):
    first, other = reproduce.EXPERIMENTS[0], reproduce.EXPERIMENTS[1]
    older = {"timestamp": "20260101T000000Z", "quick": True, "cores": 2,
             "experiments": [{"name": first, "status": "ok", "wall_s": 99.0}]}
    newer = {"timestamp": "20260102T000000Z", "quick": True, "cores": 2,
             "experiments": [{"name": first, "status": "ok", "wall_s": 41.6}, {"name": other, "status": "failed",
                                                                                "wall_s": 3.0, "error": "x"}]}
    full = dict(newer, timestamp="20260103T000000Z", quick=False)  # a full run's times are not quick times
    for record in (older, newer, full):
        harness.atomic_write_json(tmp_path / "reproduce" / f"{record['timestamp']}.json", record)
    # without a reproduce time, the newest plain --quick results JSON's seed times
    harness.atomic_write_json(tmp_path / other / "20260104T000000Z.json", {
        "timestamp": "20260104T000000Z", "command": f"python -m experiments.{other} --quick --out /tmp/x",
        "seconds_per_seed": {"0": 10.0, "1": 12.5}, "cores": 2, "metrics": {}, "config": {}})
    reproduce.main(["--list", "--out", str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(reproduce.EXPERIMENTS)
    assert lines[0].startswith(f"{first} ") and "quick: 42 s on 2 cores (20260102)" in lines[0]
    assert reproduce.summary(first) in lines[0] and len(reproduce.summary(first)) > 20
    assert "quick: 22 s seeds on 2 cores (20260104)" in lines[1]
    assert all("quick: not run yet" in line for line in lines[2:])


def test_the_jeq_command_lists_runs_and_helps(tmp_path, capsys):
    assert cli.experiments_package() in ("experiments", "jeq.experiments")
    assert cli.main(["list", "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith(reproduce.EXPERIMENTS[0])
    assert cli.main(["run", "mlp_baseline", "--help"]) == 0
    assert "--hidden HIDDEN" in capsys.readouterr().out
    assert cli.main(["run", "no_such_experiment"]) == 2
    assert "choose from" in capsys.readouterr().err
    assert cli.main(["reproduce", "--only", "no_such_experiment"]) == 2
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    assert done.value.code == 0 and "jeq run opteq_table --quick" in capsys.readouterr().out


def test_the_jeq_command_reports_a_dirty_tree_in_one_line(tmp_path, capsys, monkeypatch):
    # an editable install holds the experiments twice (experiments and jeq.experiments): patch the one jeq runs
    import importlib

    used = importlib.import_module(f"{cli.experiments_package()}.harness")
    monkeypatch.setattr(used, "git_sha", lambda: "f" * 40 + "-dirty")
    assert cli.main(["run", "mlp_baseline", "--quick", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "uncommitted changes" in err and "--allow-dirty" in err and "Traceback" not in err
    assert not (tmp_path / "mlp_baseline").exists()
