"""The speed tables of the README and results/REPORT.md, generated from the benchmark JSON files (never typed).

``render(results_dir)`` returns Markdown with three tables, each row showing the forward solver steps and the
converged fraction next to every time, so a solve that stopped at ``maxiter`` cannot pass as fast:

1. **Against the originals, same machine (CPU)**: jeq's side from the newest ``<results>/bench_vs_torchdeq``,
   ``bench_mon_original`` (else ``bench_equilibrium``) and ``bench_eqprop`` JSONs on this machine. The TorchDEQ row
   is a same-process measurement (``python -m benchmarks.vs_torchdeq``: both trainings interleaved step by step,
   ratio = median and p20/p80 of the per-step ratios); so is the MON row when ``benchmarks.mon_original`` has run
   (the original's code from a checkout of its repository). Otherwise, and for Laborieux's EP, the original's
   figure is quoted from ``<results>/external_references.json`` and the row says "external reference, separate
   process".
2. **GPU, jeq only**: rows from ``<results>/gpu_*/results/bench_*`` (a GPU session's results). No reference was
   timed on that GPU, so no ratio is shown.
3. **Model families** (OptEq vs MON vs plain DEQ, forward + backward on one batch): each ratio with both models'
   forward steps and converged fractions and the stopping rule the run used.

``ratio_summary`` is the paired statistic the same-process benchmark reports.

>>> s = ratio_summary([2.0, 4.0, 6.0], [1.0, 2.0, 2.0])
>>> s["median"], s["n"]
(2.0, 3)
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["EXTERNAL_LABEL", "external_references", "ratio_summary", "render"]

EXTERNAL_LABEL = "external reference, separate process"
"""How a row timed by someone else's code in another process (not interleaved with jeq) is labelled."""

REFERENCES_FILE = "external_references.json"

LEGACY_MAXITER = {"mon": 300, "deq": 40}
"""maxiter of bench_equilibrium's reference settings, for JSONs written before it recorded ``forward_maxiter``."""


def ratio_summary(numerator_s: Sequence[float], denominator_s: Sequence[float]) -> dict[str, float]:
    """r_i = numerator_i / denominator_i per interleaved pair; median, p20 and p80 of the r_i.

    The paired ratio cancels slow drift of a shared machine (both calls of a pair ran back to back). Pairs whose
    denominator is not positive or either time is not finite are an error, never dropped.

    Returns ``{"median", "p20", "p80", "n"}``.
    """
    a = np.asarray(numerator_s, dtype=np.float64)
    b = np.asarray(denominator_s, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"experiments.speed_table.ratio_summary: numerator_s and denominator_s must be 1-D of one "
                         f"length, got shapes {a.shape} and {b.shape}")
    if a.size == 0:
        raise ValueError("experiments.speed_table.ratio_summary(numerator_s=[]): must hold at least one pair")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b)) and np.all(b > 0) and np.all(a >= 0)):
        raise ValueError("experiments.speed_table.ratio_summary: times must be finite, numerators >= 0 and "
                         "denominators > 0")
    r = a / b
    return {"median": float(np.median(r)), "p20": float(np.percentile(r, 20)), "p80": float(np.percentile(r, 80)),
            "n": int(r.size)}


def external_references(results_dir: str | pathlib.Path) -> dict[str, Any]:
    """The quoted figures of the originals that are not packages (``<results_dir>/external_references.json``).

    Each entry of ``references`` carries its source, settings, library versions, date, figure and label; an absent
    file gives ``{"references": {}}``.
    """
    path = pathlib.Path(results_dir) / REFERENCES_FILE
    if not path.exists():
        return {"references": {}}
    return json.loads(path.read_text())


def _newest(folder: pathlib.Path) -> dict | None:
    files = sorted(p for p in folder.glob("*.json") if not p.name.endswith(".summary.json")) if folder.exists() else []
    if not files:
        return None
    result = json.loads(files[-1].read_text())
    result.setdefault("timestamp", files[-1].stem)
    return result


def _num(value: Any, fmt: str = ".3g") -> str:
    return "not recorded" if value is None else format(value, fmt)


def _steps(steps: Any, converged: Any, maxiter: Any = None, hit_fraction: Any = None) -> str:
    """'12.3 steps, 100 % conv.' (+ 'hit maxiter N' when the mean reached maxiter, or in which share of the steps)."""
    if steps is None and converged is None:
        return "not recorded"
    text = f"{_num(steps, '.1f')} steps" if steps is not None else "steps not recorded"
    text += f", {100 * converged:.0f} % conv." if converged is not None else ", conv. not recorded"
    if maxiter is not None and steps is not None and steps >= maxiter:
        text += f" **hit maxiter {maxiter}**"
    elif hit_fraction:
        text += f" **hit maxiter {maxiter} in {100 * hit_fraction:.1f} % of steps**"
    return text


def _cell(text: str) -> str:
    """Escape the pipes of a formula (||f(z) - z||) inside a Markdown table cell."""
    return text.replace("|", "\\|")


def _sci(x: float) -> str:
    """1e-3 rather than 0.001 (tolerances)."""
    mantissa, exponent = f"{x:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _provenance(result: dict) -> str:
    sha = result.get("git_sha")
    when = str(result.get("timestamp", ""))[:8]
    return f"{when} {sha[:8] + ('-dirty' if sha.endswith('-dirty') else '')}" if sha else f"{when} (no git SHA)".strip()


def _device(result: dict, fallback: str) -> str:
    info = result.get("device_info")
    return f"{info.get('backend', '?')} ({info.get('device_kind', '?')})" if isinstance(info, dict) else fallback


def _torchdeq_row(result: dict) -> str:
    s = result["summary"]["all"]
    j, t, r = s["jeq"], s["torchdeq"], s["ratio_torchdeq_over_jeq"]
    settings = result.get("settings", {})
    label = (f"plain DEQ {settings.get('hidden', 87)}, Anderson fwd tol {_sci(settings.get('forward_tol', 1e-3))} / "
             f"adj tol {_sci(settings.get('adjoint_tol', 1e-6))}, batch {settings.get('batch', 128)}, "
             f"{result.get('epochs', '?')} epochs")
    acc = result.get("test", {})
    accuracy = (f"{acc['jeq']['accuracy']:.3f} / {acc['torchdeq']['accuracy']:.3f}"
                if "jeq" in acc and "torchdeq" in acc else "-")
    if "seeds" in acc:  # benchmarks.vs_torchdeq --accuracy-seeds: the mean over initialisations
        over = acc["seeds"]
        accuracy += (f" (timed seed); over {len(over['seeds'])} seeds {over['jeq']['mean']:.3f} ± "
                     f"{over['jeq']['std']:.3f} / {over['torchdeq']['mean']:.3f} ± {over['torchdeq']['std']:.3f}")
    maxiter = settings.get("forward_maxiter")
    adjoint = result.get("jeq_adjoint_per_epoch") or [{}]
    jeq_adjoint = (f"; adjoint {adjoint[-1]['mean_steps']:.1f} steps, {100 * adjoint[-1]['converged_fraction']:.0f} "
                   f"% conv. (re-solved on a fixed batch after training)" if "mean_steps" in adjoint[-1] else "")
    torch_adjoint = (f"; adjoint {t['adjoint_steps']:.1f} steps, {100 * t['adjoint_converged']:.0f} % conv."
                     if "adjoint_steps" in t else "")
    return (f"| {label} | TorchDEQ {result.get('versions', {}).get('torchdeq', '?')} "
            f"(torch {result.get('versions', {}).get('torch', '?')}): {t['median_ms']:.3g} ms/step, forward "
            f"{_steps(t.get('forward_steps'), t.get('forward_converged'), maxiter, t.get('hit_maxiter_fraction'))}"
            f"{torch_adjoint} | {j['median_ms']:.3g} ms/step, forward "
            f"{_steps(j.get('forward_steps'), j.get('forward_converged'), maxiter, j.get('hit_maxiter_fraction'))}"
            f"{jeq_adjoint} | "
            f"{r['median']:.2f}x [{r['p20']:.2f}, {r['p80']:.2f}] | {accuracy} | same process, interleaved "
            f"({r['n']} step pairs), {_device(result, 'cpu')}, {_provenance(result)} |")


def _mon_same_process_row(result: dict) -> str:
    figure = result["figure"]
    j, r = figure["jeq_in_same_process"], figure["same_process_ratio_original_over_jeq"]
    settings = result.get("settings", {})
    label = (f"MON single-FC {settings.get('out_dim', 87)}, Peaceman-Rachford rel. tol 1e-2, batch "
             f"{settings.get('batch', 128)}, {figure.get('epochs', '?')} epochs")
    commit = str(result.get("commit", "?"))[:8]
    original = (f"locuslab/monotone_op_net @ {commit} (torch {result.get('versions', {}).get('torch', '?')}): "
                f"{figure['ms_per_step']:.3g} ms/step, "
                f"{_steps(figure.get('forward_steps'), figure.get('forward_converged'), settings.get('max_iter'))}")
    ours = (f"{j['ms_per_step']:.3g} ms/step, "
            f"{_steps(j.get('forward_steps'), j.get('forward_converged'), j.get('forward_maxiter'))}")
    return (f"| {label} | {original} | {ours} | {r['median']:.2f}x [{r['p20']:.2f}, {r['p80']:.2f}] | "
            f"{j['test_accuracy']:.3f} / {figure['test_accuracy']:.3f} | same process, interleaved ({r['n']} step "
            f"pairs of the last epoch; the original's code run from its repository, not a package), "
            f"{_device(result, 'cpu')}, {_provenance(result)} |")


def _mon_row(result: dict, ref: dict | None) -> str | None:
    ours = result.get("reference_settings", {}).get("mon")
    if not ours:
        return None
    label = "MON single-FC 87, Peaceman-Rachford rel. tol 1e-2, batch 128"
    maxiter = ours.get("forward_maxiter")
    mine = (f"{ours['ms_per_step']:.3g} ms/step, "
            f"{_steps(ours.get('forward_steps'), ours.get('forward_converged'), maxiter)}")
    if ours.get("timed") != "after training":
        mine += " (timed at initialisation)"
    return _external_row(label, ref, mine, ours["ms_per_step"], "ms_per_step",
                         ours.get("test_accuracy"), result)


def _ep_row(result: dict, ref: dict | None) -> str | None:
    ours = result.get("pytorch_target")
    if not ours:
        return None
    label = "Laborieux EP 784-512-10, T1 30, T2 10, batch 50, epoch of 4000"
    mine = f"{ours['seconds_per_epoch']:.3g} s/epoch, fixed 30 + 10 relaxation steps (no stopping rule)"
    return _external_row(label, ref, mine, ours["seconds_per_epoch"], "seconds_per_epoch",
                         ours.get("test_accuracy_epoch2_mean"), result)


def _external_row(label, ref, mine, our_value, key, our_accuracy, result) -> str:
    if ref is None:
        theirs, ratio, their_acc = "no reference in external_references.json", "-", None
    else:
        figure = ref["figure"]
        unit = "ms/step" if key == "ms_per_step" else "s/epoch"
        theirs = (f"{ref['source']['name']}: {figure[key]:.3g} {unit}, "
                  f"{_steps(figure.get('forward_steps'), figure.get('forward_converged'))}")
        if ref.get("fixed_steps"):
            theirs = f"{ref['source']['name']}: {figure[key]:.3g} {unit}, {ref['fixed_steps']}"
        ratio = f"{figure[key] / our_value:.1f}x"
        their_acc = figure.get("test_accuracy")
    accuracy = (f"{our_accuracy:.3f} / {their_acc:.3f}" if our_accuracy is not None and their_acc is not None
                else "-")
    kind = ref["label"] if ref else "-"
    return (f"| {label} | {theirs} | {mine} | {ratio} | {accuracy} | {kind}; jeq {_device(result, 'cpu')}, "
            f"{_provenance(result)} |")


def _gpu_rows(results_dir: pathlib.Path) -> list[str]:
    rows = []
    for folder in sorted(results_dir.glob("gpu_*")):
        base = folder / "results"
        device = folder.name
        eqb = _newest(base / "bench_equilibrium")
        for name, label in (("mon", "MON single-FC 87, Peaceman-Rachford rel. tol 1e-2, batch 128"),
                            ("deq", "plain DEQ 87, Anderson tol 1e-3, implicit backward, batch 128")):
            ours = (eqb or {}).get("reference_settings", {}).get(name)
            if not ours:
                continue
            maxiter = ours.get("forward_maxiter", LEGACY_MAXITER[name])
            if "forward_steps" in ours:
                steps = _steps(ours["forward_steps"], ours.get("forward_converged"), maxiter)
            else:  # older JSON: only the test-set mean steps of the trained model were recorded
                steps = _steps(ours.get("mean_steps_test"), None, maxiter) + " (test set)"
            timed = "after training" if ours.get("timed") == "after training" else "at initialisation"
            rows.append(f"| {label} | {device} | {ours['ms_per_step']:.3g} ms/step (timed {timed}) | {steps} | "
                        f"{_num(ours.get('test_accuracy'), '.3f')} ({ours.get('epochs', '?')} epochs) | "
                        f"{_provenance(eqb)} |")
        epb = _newest(base / "bench_eqprop")
        target = (epb or {}).get("pytorch_target")
        if target:
            rows.append(f"| Laborieux EP 784-512-10, T1 30, T2 10, batch 50, epoch of 4000 | {device} | "
                        f"{target['seconds_per_epoch']:.3g} s/epoch | fixed 30 + 10 relaxation steps | "
                        f"{_num(target.get('test_accuracy_epoch2_mean'), '.3f')} (2 epochs) | {_provenance(epb)} |")
    return rows


def _family_rows(result: dict) -> list[str]:
    fam = result.get("families") or {}
    if "opteq" not in fam:
        return []
    rule = _cell(fam.get("stopping_rule", "not recorded (each family's own rule)"))
    base = fam["opteq"]
    rows = []
    for name in ("opteq", "mon", "deq"):
        m = fam.get(name)
        if not m:
            continue
        ratio = "1 (reference)" if name == "opteq" else f"{m['ms'] / base['ms']:.2f}"
        rows.append(f"| {name} | {m.get('parameters', '?'):,} | {m['ms']:.3g} ms | {ratio} | "
                    f"{_steps(m.get('forward_steps'), m.get('forward_converged'), m.get('forward_maxiter'))} | "
                    f"{rule} |")
    return rows


def render(results_dir: str | pathlib.Path) -> str:
    """Markdown speed tables from the newest benchmark JSONs under ``results_dir`` (see the module docstring)."""
    results_dir = pathlib.Path(results_dir)
    refs = external_references(results_dir).get("references", {})
    out = ["**Against the originals, on this project's 2-core CPU machine.** Ratio = original's time / jeq's time "
           "(> 1: jeq faster); the same-process row gives the median and [p20, p80] of per-step ratios.", "",
           "| setting | original | jeq | ratio | test accuracy jeq / original | how timed |",
           "|---|---|---|---|---|---|"]
    vs = _newest(results_dir / "bench_vs_torchdeq")
    if vs:
        out.append(_torchdeq_row(vs))
    eqb = _newest(results_dir / "bench_equilibrium")
    mon = _newest(results_dir / "bench_mon_original")
    if mon:
        out.append(_mon_same_process_row(mon))
    elif eqb:
        row = _mon_row(eqb, refs.get("mon"))
        if row:
            out.append(row)
    epb = _newest(results_dir / "bench_eqprop")
    if epb:
        row = _ep_row(epb, refs.get("laborieux_ep"))
        if row:
            out.append(row)
    if len(out) == 4:
        out.append("| (no benchmark results yet) | | | | | |")
    diag = ((vs or {}).get("test") or {}).get("torchdeq_ridge_1e-8_diagnostic")
    if diag:
        test = vs["test"]
        out += ["", f"Forward steps on the test set after training: jeq {test['jeq']['mean_forward_steps']:.1f}, "
                f"TorchDEQ {test['torchdeq']['mean_forward_steps']:.1f} "
                f"({100 * test['torchdeq']['forward_converged']:.0f} % converged); TorchDEQ with its absolute "
                f"Anderson ridge lowered from 1e-4 to 1e-8 (untimed diagnostic): {diag['mean_forward_steps']:.1f} "
                f"({100 * diag['forward_converged']:.0f} % converged). The default ridge outweighs G G^T once "
                "residuals are ~1e-3; jeq's ridge is relative to the residual."]
    seeds = ((vs or {}).get("test") or {}).get("seeds")
    if seeds:
        gaps = np.subtract(seeds["jeq"]["values"], seeds["torchdeq"]["values"])
        verdict = ("equal within the seed spread" if abs(gaps.mean()) <= gaps.std()
                   else ("jeq more accurate here" if gaps.mean() > 0 else "jeq less accurate here"))
        out += ["", f"Test accuracy over {len(gaps)} seeds (same initialisation and batches on both sides): jeq - "
                f"TorchDEQ = {gaps.mean():+.4f} on average (per seed {gaps.min():+.3f} to {gaps.max():+.3f}): "
                f"{verdict}. Under the same stopping rule TorchDEQ runs about twice jeq's forward steps (its absolute "
                "ridge), which solves most examples well beyond the tolerance."]
    gpu = _gpu_rows(results_dir)
    if gpu:
        out += ["", "**GPU, jeq only** (no original was timed on these GPUs, so no ratio).", "",
                "| setting | device | jeq | forward solver | test accuracy (epochs) | run |",
                "|---|---|---|---|---|---|",
                *gpu]
    fam = _family_rows(eqb or {})
    if fam:
        out += ["", f"**Model families**, forward + backward on one batch of 128 ({_device(eqb, 'cpu')}, "
                f"{_provenance(eqb)}); ratio = time / OptEq's time.", "",
                "| model | parameters | time | ratio to OptEq | forward solver | stopping rule |",
                "|---|---|---|---|---|---|", *fam]
    return "\n".join(out)
