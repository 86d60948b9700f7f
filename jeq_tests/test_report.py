"""results/REPORT.md and the README's generated blocks are rebuilt from the committed results JSON, byte for byte;
every paper number in them carries a source, and its status follows from jeq's numbers by a stated rule."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest

from experiments import paper_claims, report
from jeq.io import atomic_write_json

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"


def _committed_results(tmp_path: pathlib.Path) -> pathlib.Path:
    """A copy of the results files git tracks (runs/, studies/ and caches aside: nothing the report reads), so that
    results an uncommitted run is writing into the shared tree do not enter the comparison."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "results"], cwd=ROOT, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):  # no git (an unpacked sdist): the folder is what was shipped
        return RESULTS
    out = tmp_path / "results"
    for name in filter(None, listed.stdout.decode().split("\0")):
        if any(part in ("runs", "studies", "cache") for part in pathlib.PurePosixPath(name).parts):
            continue
        source, target = ROOT / name, tmp_path / name
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    return out


def test_report_md_and_readme_blocks_equal_what_the_committed_results_regenerate(tmp_path):
    out = _committed_results(tmp_path)
    assert (RESULTS / report.REPORT).read_text() == report.report_markdown(out), (
        "results/REPORT.md is stale: run `python -m experiments.report --write-readme` and commit it")
    readme = (ROOT / "README.md").read_text()
    for (begin, end), block in report.readme_blocks(out).items():
        assert begin in readme and end in readme, f"README.md lacks the generated block {begin} ... {end}"
        committed = readme.split(begin, 1)[1].split(end, 1)[0]
        assert committed == f"\n{block}\n", f"README block {begin} is stale: run `python -m experiments.report " \
                                             "--write-readme` and commit it"


def test_every_claim_names_its_source_evidence_section_and_measuring_command():
    assert len(paper_claims.CLAIMS) >= len(paper_claims.SECTIONS) - 1  # scale-out is jeq's own, with no paper
    for claim in paper_claims.CLAIMS:
        assert claim.section in paper_claims.SECTIONS and claim.source and claim.paper_value
        assert claim.evidence in ("established", "derived", "measured", "unverified")
        assert claim.command.startswith("python -m experiments.") and claim.command == report.canonical_command(
            claim.command)
        assert claim.rule.kind in ("at_least", "at_most", "equals", "better", "not_worse", "parity", "not_comparable")
        assert claim.rule.kind != "not_comparable" or claim.rule.why  # a "not comparable" says what differs
    assert {c.section for c in paper_claims.CLAIMS} >= set(paper_claims.SECTIONS) - {"scaleout"}


def _metric(mean: float, std: float = 0.0, n: int = 3) -> dict:
    return {"mean": mean, "std": std, "values": [mean] * n}


@pytest.mark.parametrize("value, status", [(0.004, "reproduced"), (0.07, "partly"), (0.17, "not reproduced")])
def test_a_target_claim_is_reproduced_below_the_paper_number_and_partly_between_it_and_the_floor(value, status):
    rule = paper_claims.at_most("mse", 0.01, floor=0.15)
    assert paper_claims.judge(rule, {"mse": _metric(value)})[0] == status


def test_a_comparison_needs_the_paper_sign_beyond_the_seeds_spread():
    better = paper_claims.better("a", "b", tie=paper_claims.NOT_REPRODUCED)
    assert paper_claims.judge(better, {"a": _metric(0.9, 0.01), "b": _metric(0.8, 0.01)})[0] == "reproduced"
    # ahead, but within std_a + std_b: the tie status the claim names
    assert paper_claims.judge(better, {"a": _metric(0.2, 0.4), "b": _metric(0.1, 0.3)})[0] == "not reproduced"
    assert paper_claims.judge(better, {"a": _metric(0.5, 0.01), "b": _metric(0.8, 0.01)})[0] == "not reproduced"
    faster = paper_claims.better("a", "b", lower_is_better=True)
    assert paper_claims.judge(faster, {"a": _metric(9.0, 1.0), "b": _metric(21.0, 1.0)})[0] == "reproduced"
    same = paper_claims.parity("a", "b")
    assert paper_claims.judge(same, {"a": _metric(0.10, 0.04), "b": _metric(0.11, 0.05)})[0] == "reproduced"
    assert paper_claims.judge(same, {"a": _metric(0.10, 0.001), "b": _metric(0.2, 0.001)})[0] == "not reproduced"


def test_a_comparison_of_single_seed_runs_is_at_best_partly():
    better = paper_claims.better("a", "b")
    assert paper_claims.judge(better, {"a": _metric(0.98, n=1), "b": _metric(0.96, n=1)})[0] == "partly"
    assert paper_claims.judge(better, {"a": _metric(0.92, n=1), "b": _metric(0.96, n=1)})[0] == "not reproduced"


def test_a_missing_metric_is_not_measured_and_a_different_setting_is_not_comparable():
    assert paper_claims.judge(paper_claims.at_least("acc", 0.9), {})[0] == "not measured"
    status, why = paper_claims.judge(paper_claims.not_comparable("CIFAR-10 not run", "acc"), {"acc": _metric(0.9)})
    assert (status, why) == ("not comparable", "CIFAR-10 not run")


def test_gemm_sentence_says_which_tuners_reach_the_optimum_from_the_summary_alone():
    rows = {"gbfs": dict(found_optimum=10, seeds=10, median_best_ratio=1.0),
            "na2c": dict(found_optimum=8, seeds=10, median_best_ratio=1.0),
            "random": dict(found_optimum=0, seeds=10, median_best_ratio=1.088),
            "grid": dict(found_optimum=0, seeds=10, median_best_ratio=float("inf"))}
    sentence = report.gemm_sentence("512x1024x1024/tvm", rows)
    assert "every seed by gbfs;" in sentence and "na2c (8 of 10)" in sentence
    assert "random (median best 1.088x the optimum)" in sentence
    assert "grid (no valid configuration in the median seed)" in sentence


def test_headline_table_puts_every_selection_the_json_holds_beside_the_final_value():
    metrics = {"T100/sgd/final/test_mse": _metric(0.07, 0.01), "T100/sgd/best/test_mse": _metric(0.06, 0.01),
               "T100/sgd/best_val/test_mse": _metric(0.065, 0.01), "T100/sgd/seconds_per_step": _metric(0.01)}
    result = {"metrics": metrics, "headline": ["T100/sgd/final/test_mse", "T100/sgd/seconds_per_step"]}
    text = report.headline_table(result)
    assert "| metric | final | best | best_val | seeds |" in text
    assert "| T100/sgd/·/test_mse | 0.0700 ± 0.0100 | 0.0600 ± 0.0100 | 0.0650 ± 0.0100 | 3 |" in text
    assert "| T100/sgd/seconds_per_step | 0.0100 ± 0.0000 | 3 |" in text


def test_the_report_lists_the_failures_of_the_newest_reproduce_run(tmp_path):
    record = {"timestamp": "20260101T000000Z", "command": "python -m experiments.reproduce --quick", "quick": True,
              "git_sha": "a" * 40, "cores": 2, "total_s": 12.0,
              "experiments": [{"name": "mlp_baseline", "status": "ok", "wall_s": 2.0},
                              {"name": "opteq_table", "status": "failed", "error": "ValueError: boom", "wall_s": 10.0}]}
    atomic_write_json(tmp_path / "reproduce" / "20260101T000000Z.json", record)
    text = report.report_markdown(tmp_path)
    assert "**1 failed**" in text and "- **opteq_table** failed after 10 s: `ValueError: boom`" in text
    assert "| opteq_table | **failed**: ValueError: boom | 10 s |" in text


def test_the_runtime_sentence_says_which_wall_times_ran_beside_other_work():
    def run(name, load=None):
        r = {"name": name, "command": f"python -m experiments.{name} --quick", "wall_s": 600.0, "cores": 2,
             "seeds": [0], "timestamp": "20261207T000000Z"}
        return r | ({"load_average": load} if load else {})

    idle = report.runtime_sentence([run("a", {"start": 0.4, "end": 1.9}), run("b", {"start": 0.1, "end": 2.5})])
    assert "took 20 min of wall time in all on 2 cores;" in idle
    shared = report.runtime_sentence([run("a", {"start": 0.4, "end": 1.9}), run("b", {"start": 9.0, "end": 12.0}),
                                      run("c")])
    assert "1 ran beside other work, load average above the cores: b" in shared
    assert "1 predate the load-average record" in shared
    assert "load average (start / end)" in report.quick_wall_table([run("b", {"start": 9.0, "end": 12.0})])
