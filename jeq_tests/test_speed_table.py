"""experiments.speed_table: no speed row compares different devices, every row shows solver steps and converged
fraction on both sides, and the same-process ratio is a paired statistic."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from experiments import speed_table

REPO = pathlib.Path(__file__).resolve().parent.parent


def _write(path: pathlib.Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _side(ms, steps, converged, **extra):
    return {"median_ms": ms, "p20_ms": ms, "p80_ms": ms, "forward_steps": steps, "forward_converged": converged,
            **extra}


@pytest.fixture
def results(tmp_path):
    refs = json.loads((REPO / "results" / "external_references.json").read_text())
    (tmp_path / "external_references.json").write_text(json.dumps(refs))
    _write(tmp_path / "bench_vs_torchdeq" / "20261207T020000Z.json", {
        "settings": {"hidden": 87, "forward_tol": 1e-3, "adjoint_tol": 1e-6, "batch": 128, "forward_maxiter": 40},
        "epochs": 20, "git_sha": "abc123456789", "timestamp": "20261207T020000Z",
        "versions": {"torch": "2.13.0+cpu", "torchdeq": "0.1.0"},
        "device_info": {"backend": "cpu", "device_kind": "cpu", "device_count": 1},
        "summary": {"all": {"ratio_torchdeq_over_jeq": {"median": 3.5, "p20": 2.5, "p80": 4.5, "n": 600},
                            "jeq": _side(10.0, 17.2, 1.0),
                            "torchdeq": _side(35.0, 17.9, 0.98, adjoint_steps=28.0, adjoint_converged=0.99,
                                              hit_maxiter_fraction=0.74)}},
        "test": {"jeq": {"accuracy": 0.93, "mean_forward_steps": 21.0},
                 "torchdeq": {"accuracy": 0.929, "mean_forward_steps": 40.0, "forward_converged": 0.97},
                 "torchdeq_ridge_1e-8_diagnostic": {"mean_forward_steps": 19.0, "forward_converged": 1.0}},
    })
    _write(tmp_path / "bench_equilibrium" / "20261207T020500Z.json", {
        "git_sha": "abc123456789", "device_info": {"backend": "cpu", "device_kind": "cpu", "device_count": 1},
        "reference_settings": {"mon": {"ms_per_step": 2.0, "test_accuracy": 0.935, "forward_steps": 5.0,
                                       "forward_converged": 1.0, "forward_maxiter": 300, "timed": "after training"}},
        "families": {"stopping_rule": "abs 1e-3, 100 steps",
                     "opteq": {"ms": 4.0, "parameters": 83577, "forward_steps": 12.0, "forward_converged": 1.0,
                               "forward_maxiter": 100},
                     "mon": {"ms": 2.0, "parameters": 84313, "forward_steps": 30.0, "forward_converged": 1.0,
                             "forward_maxiter": 100},
                     "deq": {"ms": 3.0, "parameters": 83576, "forward_steps": 100.0, "forward_converged": 0.0,
                             "forward_maxiter": 100}},
    })
    _write(tmp_path / "gpu_h200" / "results" / "bench_equilibrium" / "20261128T182529Z.json", {
        "reference_settings": {
            "mon": {"ms_per_step": 0.99, "test_accuracy": 0.934, "epochs": 20, "mean_steps_test": 5.0,
                    "reference": {"ms_per_step": 4.7, "test_accuracy": 0.922}},
            "deq": {"ms_per_step": 1.26, "test_accuracy": 0.935, "epochs": 20, "mean_steps_test": 40.0,
                    "reference": {"ms_per_step": 35.0, "test_accuracy": 0.912}}}})
    return tmp_path


def _section(text: str, title: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if title in line)
    rows = []
    for line in lines[start + 1:]:
        if line.startswith("**"):
            break
        if line.startswith("| ") and not line.startswith("| setting") and not line.startswith("| model"):
            rows.append(line)
    return rows


def test_gpu_rows_are_jeq_only_and_never_divided_by_a_cpu_reference(results):
    text = speed_table.render(results)
    gpu = _section(text, "GPU, jeq only")
    assert len(gpu) == 2 and all("gpu_h200" in row for row in gpu)
    for row in gpu:  # no ratio and no reference figure on a GPU row
        assert "x" not in row.split("|")[3] and "4.7" not in row and "35" not in row.split("|")[3]
    cpu = _section(text, "Against the originals")
    assert cpu and not any("gpu" in row for row in cpu)


def test_a_gpu_run_whose_solver_hit_maxiter_is_labelled(results):
    (deq,) = [row for row in _section(speed_table.render(results), "GPU, jeq only") if "plain DEQ" in row]
    assert "hit maxiter 40" in deq
    (mon,) = [row for row in _section(speed_table.render(results), "GPU, jeq only") if "MON" in row]
    assert "maxiter" not in mon


def test_every_cpu_row_shows_steps_and_converged_fraction_on_both_sides(results):
    rows = _section(speed_table.render(results), "Against the originals")
    (torchdeq,) = [r for r in rows if "TorchDEQ" in r]
    original, ours = torchdeq.split("|")[2], torchdeq.split("|")[3]
    assert "17.9 steps, 98 % conv. **hit maxiter 40 in 74.0 % of steps**" in original
    assert "adjoint 28.0 steps, 99 % conv." in original
    assert "17.2 steps, 100 % conv." in ours and "maxiter" not in ours
    assert "3.50x [2.50, 4.50]" in torchdeq and "same process, interleaved (600 step pairs)" in torchdeq
    (mon,) = [r for r in rows if "MON" in r]
    assert "5.0 steps, 100 % conv." in mon.split("|")[3]
    assert "not recorded" in mon.split("|")[2]  # the quoted original recorded no steps: said so, not hidden
    assert speed_table.EXTERNAL_LABEL in mon and "2.4x" in mon  # 4.7 ms quoted / 2.0 ms ours


def test_external_figures_come_from_the_data_file(results):
    path = results / "external_references.json"
    refs = json.loads(path.read_text())
    refs["references"]["mon"]["figure"]["ms_per_step"] = 8.0
    path.write_text(json.dumps(refs))
    (mon,) = [r for r in _section(speed_table.render(results), "Against the originals") if "MON" in r]
    assert "8 ms/step" in mon and "4.0x" in mon


def test_the_committed_external_references_carry_source_settings_versions_date_and_label():
    refs = speed_table.external_references(REPO / "results")["references"]
    assert set(refs) == {"mon", "laborieux_ep"}
    for ref in refs.values():
        assert ref["label"] == speed_table.EXTERNAL_LABEL
        assert ref["source"]["repository"].startswith("https://github.com/") and len(ref["source"]["commit"]) == 40
        assert ref["settings"] and ref["library_versions"] and ref["date"] and ref["figure"]


def test_the_family_comparison_prints_steps_next_to_every_ratio(results):
    rows = _section(speed_table.render(results), "Model families")
    assert [r.split("|")[1].strip() for r in rows] == ["opteq", "mon", "deq"]
    (deq,) = [r for r in rows if r.startswith("| deq")]
    assert "0.75" in deq and "100.0 steps, 0 % conv. **hit maxiter 100**" in deq and "abs 1e-3, 100 steps" in deq


def test_ratio_summary_is_the_paired_median_and_spread():
    torch_s = np.array([30.0, 36.0, 40.0, 35.0, 100.0]) * 1e-3
    jeq_s = np.array([10.0, 12.0, 10.0, 10.0, 20.0]) * 1e-3
    s = speed_table.ratio_summary(torch_s, jeq_s)
    ratios = torch_s / jeq_s  # 3, 3, 4, 3.5, 5
    assert s["median"] == pytest.approx(3.5) and s["n"] == 5
    assert s["p20"] == pytest.approx(np.percentile(ratios, 20))
    assert s["p80"] == pytest.approx(np.percentile(ratios, 80))
    # a common slowdown of both sides (machine drift) leaves the paired ratio unchanged
    drift = np.array([1.0, 3.0, 1.0, 2.0, 1.0])
    assert speed_table.ratio_summary(torch_s * drift, jeq_s * drift) == pytest.approx(s)


@pytest.mark.parametrize("a, b", [([], []), ([1.0], [0.0]), ([1.0, 2.0], [1.0]), ([np.nan], [1.0])])
def test_ratio_summary_refuses_bad_times(a, b):
    with pytest.raises(ValueError, match="experiments.speed_table.ratio_summary"):
        speed_table.ratio_summary(a, b)


def test_no_results_gives_a_placeholder_row(tmp_path):
    assert "(no benchmark results yet)" in speed_table.render(tmp_path)


def test_a_same_process_mon_run_replaces_the_quoted_figure(results):
    _write(results / "bench_mon_original" / "20261207T021000Z.json", {
        "commit": "6c224c4fb1caadd2362f8d72e8c3bac2f0fd8511", "git_sha": "abc123456789",
        "versions": {"torch": "2.13.0+cpu"}, "settings": {"out_dim": 87, "batch": 128, "max_iter": 300},
        "figure": {"ms_per_step": 15.0, "forward_steps": 6.0, "forward_converged": 1.0, "test_accuracy": 0.93,
                   "epochs": 20, "same_process_ratio_original_over_jeq": {"median": 2.0, "p20": 1.2, "p80": 3.1,
                                                                          "n": 31},
                   "jeq_in_same_process": {"ms_per_step": 7.5, "forward_steps": 5.0, "forward_converged": 1.0,
                                           "forward_maxiter": 300, "test_accuracy": 0.94}}})
    (mon,) = [r for r in _section(speed_table.render(results), "Against the originals") if "MON" in r]
    original, ours = mon.split("|")[2], mon.split("|")[3]
    assert "6c224c4f" in original and "15 ms/step, 6.0 steps, 100 % conv." in original
    assert "7.5 ms/step, 5.0 steps, 100 % conv." in ours and "2.00x [1.20, 3.10]" in mon
    assert "same process, interleaved" in mon and speed_table.EXTERNAL_LABEL not in mon


def test_the_torchdeq_ridge_diagnostic_is_stated_under_the_table(results):
    text = speed_table.render(results)
    assert "jeq 21.0, TorchDEQ 40.0 (97 % converged)" in text and "1e-8 (untimed diagnostic): 19.0" in text


def _with_seeds(results, jeq: list[float], torchdeq: list[float]) -> str:
    """The speed table after adding ``--accuracy-seeds`` accuracies to the fixture's vs_torchdeq record."""
    path = results / "bench_vs_torchdeq" / "20261207T020000Z.json"
    record = json.loads(path.read_text())
    record["test"]["seeds"] = {"seeds": list(range(len(jeq))), **{
        side: {"values": values, "mean": float(np.mean(values)), "std": float(np.std(values))}
        for side, values in (("jeq", jeq), ("torchdeq", torchdeq))}}
    path.write_text(json.dumps(record))
    return speed_table.render(results)


def test_accuracy_over_seeds_is_shown_beside_the_timed_seed(results):
    """With ``--accuracy-seeds`` the accuracy column gives the mean and spread over initialisations of both sides."""
    text = _with_seeds(results, [0.93, 0.92, 0.94], [0.929, 0.93, 0.93])
    (torchdeq,) = [r for r in _section(text, "Against the originals") if "TorchDEQ" in r]
    assert "0.930 / 0.929 (timed seed); over 3 seeds 0.930 ± 0.008 / 0.930 ± 0.000" in torchdeq
    assert "equal within the seed spread" in text


def test_a_seed_averaged_accuracy_gap_is_stated_with_its_sign(results):
    text = _with_seeds(results, [0.92, 0.92, 0.93], [0.94, 0.93, 0.94])
    assert "jeq - TorchDEQ = -0.0133 on average (per seed -0.020 to -0.010): jeq less accurate here" in text
