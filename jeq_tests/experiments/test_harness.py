"""experiments.harness: generated CLI, quick overrides, resumable seeds and checkpoints, results JSON + PNG."""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np
import pytest

from experiments import harness, mlp_baseline


@dataclasses.dataclass(frozen=True)
class Toy(harness.BaseConfig):
    steps: int = 6
    rate: float = 0.5
    name: str = "a"
    widths: tuple[int, ...] = (1, 2)
    flag: bool = False


def test_parser_generated_from_fields_and_quick_overrides():
    config = harness.parse_config(Toy, ["--steps", "3", "--widths", "4", "5", "--flag", "--seeds", "7"])
    assert config == Toy(steps=3, widths=(4, 5), flag=True, seeds=(7,))
    quick = harness.parse_config(Toy, ["--quick"], quick=dict(steps=2, rate=0.1))
    assert quick.steps == 2 and quick.rate == 0.1 and quick.quick
    explicit_wins = harness.parse_config(Toy, ["--quick", "--steps", "9"], quick=dict(steps=2))
    assert explicit_wins.steps == 9
    assert harness.parse_config(Toy, []).steps == 6  # quick overrides only with --quick
    with pytest.raises(SystemExit):
        harness.parse_config(Toy, ["--steps", "x"])
    with pytest.raises(ValueError, match="devices 0"):
        harness.parse_config(Toy, ["--devices", "0"])


def test_config_hash_ignores_seeds_and_output_folder():
    a = Toy(seeds=(0,), out="x")
    assert harness.config_hash(a) == harness.config_hash(Toy(seeds=(1, 2), out="y"))
    assert harness.config_hash(a) != harness.config_hash(Toy(steps=7))
    # multi-host addressing does not change results either
    assert harness.config_hash(a) == harness.config_hash(Toy(coordinator="h:1", num_processes=2, process_id=1))


@pytest.fixture(autouse=True)
def _pinned_commit(monkeypatch):
    """A fixed clean commit, so that an edit elsewhere in the (shared, possibly dirty) tree during a test does not move
    the run folder between a killed run and its resumption; tests of the dirty-tree rules set their own."""
    monkeypatch.setattr(harness, "git_sha", lambda: "a" * 40)


class Killed(Exception):
    pass


def _counting_run_seed(calls: list, kill_at: int | None):
    def run_seed(config, seed, ckpt):
        state = ckpt.load(default={"step": 0, "trace": []})
        for step in range(state["step"], config.steps):
            if kill_at is not None and seed == 1 and step == kill_at:
                raise Killed
            calls.append((seed, step))
            state = {"step": step + 1, "trace": state["trace"] + [step * config.rate + seed]}
            ckpt.save(state)
        return {"final": state["trace"][-1], "curve/trace": state["trace"]}

    return run_seed


def test_killed_run_resumes_without_losing_or_repeating_work(tmp_path):
    argv = ["--out", str(tmp_path), "--seeds", "0", "1", "--allow-dirty"]
    calls: list = []
    with pytest.raises(Killed):
        harness.run("toy", Toy, _counting_run_seed(calls, kill_at=4), argv=argv)
    assert calls == [(0, s) for s in range(6)] + [(1, s) for s in range(4)]
    calls.clear()
    result = harness.run("toy", Toy, _counting_run_seed(calls, kill_at=None), argv=argv)
    assert calls == [(1, 4), (1, 5)]  # seed 0 loaded from disk, seed 1 continued from its checkpoint
    assert result["per_seed"]["1"]["curve/trace"] == [1 + 0.5 * s for s in range(6)]
    assert result["metrics"]["final"]["values"] == [2.5, 3.5]
    assert result["metrics"]["final"]["mean"] == pytest.approx(3.0) and result["metrics"]["final"]["std"] == 0.5
    assert not list(tmp_path.rglob("*.ckpt"))  # checkpoints cleared once seeds finished


def test_results_json_has_provenance(tmp_path):
    result = harness.run("toy", Toy, _counting_run_seed([], None), argv=["--out", str(tmp_path), "--seeds", "3", "--allow-dirty"])
    stored = json.loads(pathlib.Path(result["json_path"]).read_text())
    for field in ("config", "seeds", "per_seed", "metrics", "git_sha", "versions", "device_kind", "backend"):
        assert field in stored
    assert stored["versions"]["jax"] and stored["config"]["steps"] == 6 and stored["seeds"] == [3]


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "a.json"
    harness.atomic_write_json(target, {"x": 1})
    with pytest.raises(TypeError):
        harness.atomic_write_json(target, {"x": object()})
    assert json.loads(target.read_text()) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
    harness.atomic_write_json(target, {"arr": np.arange(3), "f": np.float32(1.5)})
    assert json.loads(target.read_text()) == {"arr": [0, 1, 2], "f": 1.5}


def test_mlp_baseline_writes_json_and_plot_and_learns(tmp_path):
    result = mlp_baseline.main(["--quick", "--epochs", "2", "--seeds", "0", "--out", str(tmp_path), "--allow-dirty"])
    assert pathlib.Path(result["json_path"]).exists() and pathlib.Path(result["png_path"]).stat().st_size > 1000
    assert result["metrics"]["test_accuracy"]["mean"] > 0.85  # ten classes: chance is 0.1
    assert result["metrics"]["parameters"]["mean"] == 784 * 256 + 256 + 256 * 10 + 10


def test_report_table_is_generated_from_results_json(tmp_path):
    from experiments import report

    harness.run("toy", Toy, _counting_run_seed([], None), argv=["--out", str(tmp_path), "--seeds", "0", "1", "--allow-dirty"],
                headline=("final",))
    block = report.table(report.newest_results(tmp_path))
    assert "| toy | final | 3.0000 ± 0.5000 | 2 |" in block
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.BEGIN}\nold\n{report.END}\noutro\n")
    report.write_readme(block, readme)
    text = readme.read_text()
    assert "old" not in text and "| toy | final |" in text and text.startswith("intro") and text.endswith("outro\n")


def test_report_keeps_the_newest_run_of_each_command_whatever_its_output_folder_or_config_schema(tmp_path):
    from experiments import report

    assert report.canonical_command(
        "python -m experiments.x --quick --out /tmp/r --seeds 0 1 --process-id 1 --steps 3"
    ) == "python -m experiments.x --quick --steps 3"
    old = {"name": "x", "timestamp": "20260101T000000Z", "command": "python -m experiments.x --quick --out /a",
           "config": {"quick": True}, "seeds": [0], "metrics": {"m": {"mean": 1.0, "std": 0.0, "values": [1.0]}}}
    new = dict(old, timestamp="20260102T000000Z", command="python -m experiments.x --quick",
               config={"quick": True, "field_added_later": 0},
               metrics={"m": {"mean": 2.0, "std": 0.0, "values": [2.0]}})
    other = dict(old, command="python -m experiments.x --steps 9")
    for i, result in enumerate((old, new, other)):
        harness.atomic_write_json(tmp_path / "x" / f"{i}.json", result)
    kept = report.newest_results(tmp_path)
    assert sorted((r["command"], r["metrics"]["m"]["mean"]) for r in kept) == [
        ("python -m experiments.x --quick", 2.0), ("python -m experiments.x --steps 9", 1.0)]


def test_a_diverged_seed_is_counted_not_hidden_in_the_mean():
    from experiments import report

    metrics = harness.aggregate({"0": {"mse": 0.5}, "1": {"mse": float("nan")}, "2": {"mse": 1.5}})
    assert metrics["mse"]["mean"] == 1.0 and metrics["mse"]["finite"] == 2
    assert "(n=2 of 3 finite)" in harness.format_metrics(metrics)
    result = {"name": "x", "timestamp": "20260101T000000Z", "command": "c", "seeds": [0, 1, 2], "metrics": metrics}
    assert "| x | mse | 1.0000 ± 0.5000 | 2 of 3 finite |" in report.table([result])


def test_a_rerun_after_a_code_change_recomputes_finished_seeds(tmp_path, monkeypatch):
    calls: list = []
    argv = ["--out", str(tmp_path), "--seeds", "0", "--allow-dirty"]
    monkeypatch.setattr(harness, "git_sha", lambda: "a" * 40)
    monkeypatch.setattr(harness, "diff_hash", lambda: "d" * 12)
    harness.run("toy", Toy, _counting_run_seed(calls, None), argv=argv)
    harness.run("toy", Toy, _counting_run_seed(calls, None), argv=argv)
    assert len(calls) == Toy.steps  # same commit: the finished seed is reused
    monkeypatch.setattr(harness, "git_sha", lambda: "b" * 40 + "-dirty")
    result = harness.run("toy", Toy, _counting_run_seed(calls, None), argv=argv)
    assert len(calls) == 2 * Toy.steps and result["git_sha"] == "b" * 40 + "-dirty"
    assert result["allow_dirty"] and result["diff_hash"] == "d" * 12
    harness.run("toy", Toy, _counting_run_seed(calls, None), argv=argv)
    assert len(calls) == 2 * Toy.steps  # the same uncommitted diff: reused
    monkeypatch.setattr(harness, "diff_hash", lambda: "e" * 12)  # another uncommitted edit: recomputed
    harness.run("toy", Toy, _counting_run_seed(calls, None), argv=argv)
    assert len(calls) == 3 * Toy.steps


def test_a_dirty_tree_is_refused_without_allow_dirty(tmp_path, monkeypatch):
    monkeypatch.setattr(harness, "git_sha", lambda: "b" * 40 + "-dirty")
    calls: list = []
    with pytest.raises(harness.DirtyTree, match="--allow-dirty"):
        harness.run("toy", Toy, _counting_run_seed(calls, None), argv=["--out", str(tmp_path), "--seeds", "0"])
    assert calls == [] and not (tmp_path / "toy").exists()
    monkeypatch.setattr(harness, "git_sha", lambda: "c" * 40)  # a clean tree needs no flag, and says so in the JSON
    result = harness.run("toy", Toy, _counting_run_seed(calls, None), argv=["--out", str(tmp_path), "--seeds", "0"])
    assert result["allow_dirty"] is False and result["diff_hash"] is None


def test_diff_hash_follows_the_uncommitted_diff_of_tracked_files(tmp_path):
    import subprocess

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    git("init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    git("add", "a.py")
    git("commit", "-qm", "a")
    clean = harness.diff_hash(tmp_path)
    (tmp_path / "a.py").write_text("x = 2\n")
    edited = harness.diff_hash(tmp_path)
    (tmp_path / "untracked.py").write_text("y = 1\n")
    assert clean != edited == harness.diff_hash(tmp_path)  # untracked files are not part of git's -dirty either
    (tmp_path / "a.py").write_text("x = 3\n")
    assert harness.diff_hash(tmp_path) not in (clean, edited)


def test_reproduce_runs_the_listed_experiments_and_builds_the_table(tmp_path, capsys):
    import importlib

    from experiments import reproduce

    for name in reproduce.EXPERIMENTS:  # every listed experiment is a runnable module with a main()
        assert callable(importlib.import_module(f"experiments.{name}").main)
    reproduce.main(["--quick", "--only", "mlp_baseline", "--out", str(tmp_path), "--no-readme", "--allow-dirty"])
    assert list((tmp_path / "mlp_baseline").glob("*.json")) and list((tmp_path / "mlp_baseline").glob("*.png"))
    assert "| mlp_baseline | test_accuracy |" in capsys.readouterr().out


def test_an_installed_jeq_is_versioned_by_its_release_not_by_a_surrounding_git_repository(tmp_path, monkeypatch):
    """A wheel in a virtual environment inside a user's own (possibly dirty) git project must not be refused or
    stamped with that project's SHA."""
    monkeypatch.setattr(harness, "git_sha", lambda: "u" * 40 + "-dirty")  # the user's project around site-packages
    monkeypatch.setattr(harness, "REPO_ROOT", tmp_path)  # no .git beside the package: an installed wheel
    version = harness.code_version()
    assert version == "jeq-" + harness.versions()["jeq"]
    result = harness.run("toy", Toy, _counting_run_seed([], None), argv=["--out", str(tmp_path), "--seeds", "0"])
    assert result["git_sha"] == version and result["allow_dirty"] is False


def test_report_labels_rows_from_uncommitted_code():
    from experiments import report

    result = {"name": "x", "metrics": {"mse": {"mean": 1.0, "std": 0.0, "values": [1.0]}}, "timestamp": "20261207T000000Z",
              "device_kind": "cpu", "command": "python -m experiments.x", "config": {}}
    clean = report.table([dict(result, git_sha="a" * 40)])
    dirty = report.table([dict(result, git_sha="a" * 40 + "-dirty")])
    assert "20261207 |" in clean and "uncommitted" not in clean
    assert "| 20261207, uncommitted code |" in dirty
