"""experiments.reproduce runs every experiment even when one fails, records each one's status and wall time, lists
the failure in results/REPORT.md and exits non-zero at the end."""

from __future__ import annotations

import json
import sys
import types

import pytest

from experiments import reproduce


def _fake_experiment(fail: bool, calls: list[str], name: str) -> types.ModuleType:
    module = types.ModuleType(f"experiments.{name}")

    def main(argv):
        calls.append(name)
        if fail:
            raise RuntimeError(f"{name} broke")
        return {"json_path": None}

    module.main = main
    return module


def test_a_failed_experiment_does_not_stop_the_others_and_the_run_exits_non_zero(tmp_path, monkeypatch):
    calls: list[str] = []
    names = ("mlp_baseline", "opteq_table", "eqprop_gates")
    for name in names:  # the middle one fails; the real experiments are not run
        monkeypatch.setitem(sys.modules, f"experiments.{name}", _fake_experiment(name == "opteq_table", calls, name))
    with pytest.raises(SystemExit) as exit_info:
        reproduce.main(["--quick", "--only", *names, "--out", str(tmp_path), "--no-readme", "--allow-dirty"])
    assert exit_info.value.code == 1
    assert calls == list(names)  # the experiment after the failure still ran
    [record_path] = (tmp_path / reproduce.RECORDS).glob("*.json")
    record = json.loads(record_path.read_text())
    assert [(row["name"], row["status"]) for row in record["experiments"]] == [
        ("mlp_baseline", "ok"), ("opteq_table", "failed"), ("eqprop_gates", "ok")]
    assert all(row["wall_s"] >= 0 for row in record["experiments"]) and record["total_s"] >= 0
    assert record["experiments"][1]["error"] == "RuntimeError: opteq_table broke"
    text = (tmp_path / "REPORT.md").read_text()  # the report is written even with --no-readme
    assert "**1 failed**" in text and "- **opteq_table** failed after" in text and "RuntimeError: opteq_table broke" in text


def test_a_run_where_everything_succeeds_returns_its_record_and_the_report_says_so(tmp_path, monkeypatch):
    calls: list[str] = []
    monkeypatch.setitem(sys.modules, "experiments.mlp_baseline", _fake_experiment(False, calls, "mlp_baseline"))
    record = reproduce.main(["--quick", "--only", "mlp_baseline", "--out", str(tmp_path), "--no-readme",
                             "--allow-dirty"])
    assert calls == ["mlp_baseline"] and [row["status"] for row in record["experiments"]] == ["ok"]
    assert "every experiment succeeded" in (tmp_path / "REPORT.md").read_text()
