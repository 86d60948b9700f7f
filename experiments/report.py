"""Build results/REPORT.md and the README's generated blocks from the results JSON files (never typed by hand).

``python -m experiments.report`` writes ``<out>/REPORT.md`` (default ``results/REPORT.md``): one section per paper
with jeq's numbers next to the paper's (value, source, status and why, from :mod:`experiments.paper_claims`), every
run's headline metrics, plots and wall time, the commands of the full-scale runs, the GEMM tuner comparison per
landscape, the scale-out and speed tables, and the wall time (and failures) of the quick experiments. It prints the
README results table. ``--write-readme`` also replaces the README's generated blocks (each between ``<!-- x:begin -->``
and ``<!-- x:end -->``: ``results``, ``speed``, ``claims``, ``runtime``). A test rebuilds all of them from the
committed results and checks they equal what is committed: every results commit regenerates them.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import shlex
import sys
from collections.abc import Mapping

from . import paper_claims, speed_table
from .harness import NOT_RESULTS, REPO_ROOT, seed_count
from jeq.io import atomic_write_text

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
SPEED_BEGIN, SPEED_END = "<!-- speed:begin -->", "<!-- speed:end -->"
CLAIMS_BEGIN, CLAIMS_END = "<!-- claims:begin -->", "<!-- claims:end -->"
RUNTIME_BEGIN, RUNTIME_END = "<!-- runtime:begin -->", "<!-- runtime:end -->"
REPORT = "REPORT.md"
"""File name of the report inside the results folder."""


def canonical_command(command: str) -> str:
    """The command without the options that do not change results (``--out``, ``--seeds`` and the multi-host
    addressing), e.g. ``python -m experiments.x --quick --out /tmp/r`` -> ``python -m experiments.x --quick``."""
    drop = {"--" + name.replace("_", "-") for name in NOT_RESULTS}
    kept, skipping = [], False
    for token in shlex.split(command):
        if token.startswith("--"):
            skipping = token.split("=", 1)[0] in drop
        if not skipping:
            kept.append(token)
    return shlex.join(kept)


def newest_results(out: pathlib.Path) -> list[dict]:
    """The newest experiment results under ``out`` for each distinct command, sorted by experiment name.

    Only harness results count (files with ``metrics`` and ``config``; benchmark outputs are skipped). Runs of the
    same command (up to :func:`canonical_command`) keep only the newest, so a rerun replaces its older row even when
    the code's defaults changed in between; results without a command are told apart by their configuration.
    """
    newest: dict[tuple[str, str], dict] = {}
    for path in sorted(out.glob("*/*.json")) if out.exists() else []:
        try:
            result = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if not isinstance(result, dict) or "metrics" not in result or "config" not in result:
            continue
        if result.get("command"):
            result["command"] = canonical_command(result["command"])
            identity = result["command"]
        else:
            identity = json.dumps({k: v for k, v in result["config"].items() if k not in NOT_RESULTS},
                                  sort_keys=True)
        result["results_file"] = path.relative_to(out).as_posix()
        key = (result.get("name", path.parent.name), identity)
        if key not in newest or result.get("timestamp", "") >= newest[key].get("timestamp", ""):
            newest[key] = result
    return sorted(newest.values(), key=lambda r: (r["name"], not r["config"].get("quick", False), r["timestamp"]))


def _fmt(m: dict) -> str:
    mean, std = m["mean"], m["std"]
    if abs(mean) >= 100 or (abs(mean) < 1e-2 and mean != 0):
        return f"{mean:.3g} ± {std:.2g}"
    return f"{mean:.4f} ± {std:.4f}"


def provenance_note(result: dict) -> str:
    """``", uncommitted code"`` for a result stamped ``<sha>-dirty`` (run on a tree with uncommitted changes), else ``""``.

    The harness refuses such runs unless ``--allow-dirty``; rows that come from one say so in the table.
    """
    return ", uncommitted code" if str(result.get("git_sha", "")).endswith("-dirty") else ""


def table(results: list[dict]) -> str:
    """A Markdown table: experiment, headline metric, mean ± std over seeds, seeds, device, date, command."""
    lines = [
        "| experiment | metric | mean ± std | seeds | device | date (UTC) | command |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        names = [n for n in (r.get("headline") or list(r["metrics"])[:3]) if n in r["metrics"]] or list(r["metrics"])[:3]
        for name in names:
            if name not in r["metrics"]:
                continue
            lines.append(
                f"| {r['name']} | {name} | {_fmt(r['metrics'][name])} | {seed_count(r['metrics'][name])} | "
                f"{r.get('device_kind', '?')} | {r['timestamp'][:8]}{provenance_note(r)} | `{r.get('command', '').strip()}` |"
            )
    if len(lines) == 2:
        lines.append("| (no results yet: run an experiment) | | | | | | |")
    return "\n".join(lines)


def _newest(folder: pathlib.Path) -> dict | None:
    files = sorted(folder.glob("*.json")) if folder.exists() else []
    return json.loads(files[-1].read_text()) if files else None


def reproduce_record(out: pathlib.Path) -> dict | None:
    """The newest ``experiments.reproduce`` run record under ``out`` (``<out>/reproduce/<timestamp>.json``: each
    experiment's status and wall time), or ``None``."""
    return _newest(out / "reproduce")


def runtime_table(record: dict | None) -> str:
    """Markdown: each experiment of a reproduce run, its status (a failure with its error) and wall time."""
    if not record:
        return "(no `experiments.reproduce` run recorded yet)"
    mode = "quick" if record.get("quick") else "full"
    lines = [f"{mode} run of {record['timestamp'][:8]} at {record.get('git_sha', '?')[:12]} on "
             f"{record.get('cores', '?')} cores", "",
             "| experiment | status | wall time |", "|---|---|---|"]
    for row in record.get("experiments", []):
        status = row["status"] if row["status"] == "ok" else f"**{row['status']}**: {row.get('error', '')}"
        lines.append(f"| {row['name']} | {status} | {row['wall_s']:.0f} s |")
    lines.append(f"| total | | {record.get('total_s', 0):.0f} s |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------- the report


def _value(metric: Mapping | None) -> str:
    """``mean ± std (n)`` of a metric (a count as an integer), ``-`` when absent."""
    if not metric:
        return "-"
    values = metric.get("values") or [metric["mean"]]
    if all(isinstance(v, (int, float)) and math.isfinite(v) and float(v).is_integer() and abs(v) >= 100
           for v in values) and len(set(values)) == 1:
        return f"{int(values[0]):,} ({seed_count(metric)})"
    return f"{_fmt(metric)} ({seed_count(metric)})"


def _link(path: str) -> str:
    return f"[`{path}`]({path})"


def claim_results(results: list[dict]) -> list[dict]:
    """Each claim of :data:`experiments.paper_claims.CLAIMS` with jeq's side: the newest result of the claim's
    command, the metrics shown, and the status and why from :func:`experiments.paper_claims.judge`."""
    by_command = {r.get("command", ""): r for r in results}
    rows = []
    for claim in paper_claims.CLAIMS:
        result = by_command.get(claim.command)
        metrics = (result or {}).get("metrics", {})
        status, why = paper_claims.judge(claim.rule, metrics)
        if result is None:
            status, why = paper_claims.NOT_MEASURED, "no results JSON of this command"
        shown = [m for m in dict.fromkeys(claim.rule.metrics + claim.show)]
        jeq = "; ".join(f"{m} {_value(metrics.get(m))}" for m in shown) or "-"
        rows.append(dict(claim=claim, result=result, status=status, why=why, jeq=jeq))
    return rows


def claims_table(rows: list[dict], *, section: str | None = None, link: str | None = None) -> str:
    """Markdown: the paper's claim and value (with source and evidence), jeq's numbers, status and why.

    ``section`` keeps one paper's claims; ``link`` (the report's path) makes a compact table for the README, whose
    paper column links into the report."""
    if link:
        lines = ["| paper | claim | paper's value | jeq | status |", "|---|---|---|---|---|"]
    else:
        lines = ["| claim | paper (source; evidence) | jeq (run) | status | why |", "|---|---|---|---|---|"]
    for row in rows:
        claim, result = row["claim"], row["result"]
        if section and claim.section != section:
            continue
        run = f"`{claim.command}`" + (f", {result['timestamp'][:8]}" if result else "")
        if link:
            title = paper_claims.SECTIONS[claim.section].short
            lines.append(f"| [{title}]({link}#{claim.section}) | {claim.claim} | {claim.paper_value} | {row['jeq']} | "
                         f"{row['status']} |")
        else:
            why = row["why"] + (f". Setting: {claim.note}" if claim.note else "")
            lines.append(f"| {claim.claim} | {claim.paper_value} ({claim.source}; {claim.evidence}) | {row['jeq']} "
                         f"({run}) | **{row['status']}** | {why} |")
    return "\n".join(lines)


def _final_at(parts: list[str]) -> int:
    """Index of a ``final`` segment between the run's name and the quantity (``T100/sgd/final/test_mse``), else 0."""
    return next((i for i, p in enumerate(parts) if p == "final" and 0 < i < len(parts) - 1), 0)


def headline_table(result: dict) -> str:
    """Markdown: the run's headline metrics; a metric path ``<run>/final/<quantity>`` gets one column per sibling
    that the JSON holds at the ``final`` position (``best``, a best-on-validation selection, ...)."""
    metrics = result["metrics"]
    names = [n for n in (result.get("headline") or []) if n in metrics] or list(metrics)[:3]
    kinds: list[str] = []
    for name in names:
        parts = name.split("/")
        if _final_at(parts):
            i = _final_at(parts)
            for other in metrics:
                o = other.split("/")
                if len(o) == len(parts) and o[:i] == parts[:i] and o[i + 1:] == parts[i + 1:] and o[i] not in kinds:
                    kinds.append(o[i])
    if not kinds:
        lines = ["| metric | mean ± std | seeds |", "|---|---|---|"]
        for name in names:
            lines.append(f"| {name} | {_fmt(metrics[name])} | {seed_count(metrics[name])} |")
        return "\n".join(lines)
    finals = [n for n in names if _final_at(n.split("/"))]
    covered = set()
    lines = ["| metric | " + " | ".join(kinds) + " | seeds |", "|---|" + "---|" * (len(kinds) + 1)]
    for name in finals:
        parts = name.split("/")
        i = _final_at(parts)
        siblings = ["/".join(parts[:i] + [kind] + parts[i + 1:]) for kind in kinds]
        covered.update(siblings)
        cells = [_fmt(metrics[s]) if s in metrics else "-" for s in siblings]
        label = "/".join(parts[:i] + ["·"] + parts[i + 1:])
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {seed_count(metrics[name])} |")
    rest = [n for n in names if n not in covered]
    if rest:
        lines += ["", "| metric | mean ± std | seeds |", "|---|---|---|"]
        lines += [f"| {n} | {_fmt(metrics[n])} | {seed_count(metrics[n])} |" for n in rest]
    return "\n".join(lines)


def _run_facts(result: dict) -> str:
    seeds = result.get("seeds") or result["config"].get("seeds") or []
    per_seed = result.get("seconds_per_seed") or {}
    facts = [f"{result['timestamp']}", f"git {str(result.get('git_sha', '?'))[:12]}{provenance_note(result)}",
             f"{result.get('device_kind', '?')}"
             + (f", {result['cores']} cores" if result.get("cores") else ""), f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}"]
    if result.get("wall_s") is not None:
        facts.append(f"wall time {result['wall_s']:.0f} s")
    if per_seed:
        facts.append(f"seed compute {sum(per_seed.values()):.0f} s")
    return ", ".join(facts)


def runs_markdown(results: list[dict], names: tuple[str, ...], out: pathlib.Path) -> str:
    """Markdown: every newest run of the section's experiments: facts, plot and headline metrics."""
    parts = []
    for result in results:
        if result["name"] not in names:
            continue
        png = pathlib.Path(result.get("results_file", "")).with_suffix(".png").as_posix()
        parts.append(f"#### `{result.get('command', result['name'])}`\n\n"
                     f"{'quick run' if result['config'].get('quick') else 'run without --quick'}, {_run_facts(result)}; "
                     f"results {_link(result.get('results_file', '?'))}"
                     + (f"\n\n![{result['name']}]({png})" if (out / png).exists() else "") + "\n\n"
                     + headline_table(result))
    others = [p.relative_to(out).as_posix() for name in names for p in sorted((out / name).glob("*.png"))
              if not p.stem[:8].isdigit()]  # figures that belong to no single run (e.g. the best architecture)
    if others:
        parts.append("Other figures: " + ", ".join(f"![{p}]({p})" for p in others))
    return "\n\n".join(parts) or "(no runs recorded yet)"


def _summary(out: pathlib.Path, result: dict) -> dict | None:
    path = out / pathlib.Path(result.get("results_file", "")).with_suffix(".summary.json")
    return json.loads(path.read_text()) if path.exists() else None


def _ratio(value: float) -> str:
    return "no valid configuration" if not math.isfinite(value) else f"{value:.3f}x"


def gemm_markdown(results: list[dict], out: pathlib.Path) -> str:
    """Markdown: for every gemm_tuners run, what it compares (analytic cost model or live CPU kernels), each
    landscape variant and shape, each strategy's median best / optimum, seeds that found the optimum, measurements
    to 5 %, and the modelled saving against the cost-model tuner; then one generated sentence per landscape."""
    parts = []
    for result in results:
        summary = _summary(out, result) if result["name"] == "gemm_tuners" else None
        if not summary:
            continue
        parts.append(f"#### `{result.get('command')}` ({result['timestamp'][:8]})")
        for landscape, rows in summary.items():
            if landscape == "live_tune":
                parts.append(f"Live `jeq.gemm.tune` on CPU ({rows['seeds']} seeds): tuned kernel / `jnp.dot` speed "
                             f"median {rows['median_speedup_vs_dot']:.3f}x, tuned / exhaustive best "
                             f"{rows['median_tuned_over_exhaustive_best']:.3f}x, exhaustive best found in "
                             f"{rows['found_exhaustive_best']} of {rows['seeds']} seeds.")
                continue
            kind = ("live CPU kernels (`xla_tiled`, measured exhaustively once, then replayed)" if landscape == "live"
                    else "jeq's analytic cost model of the TVM schedule space (not measured kernels)")
            budgets = sorted({int(k) for r in rows.values() for k in r.get("saving_vs_cost_model_pct", {})})
            shown = [b for b in budgets if b in (64, max(budgets, default=0))]
            head = "| strategy | budget | median best / optimum | seeds at optimum | median measurements to 5 % |" \
                   + "".join(f" saving vs cost model at {b} (%) |" for b in shown)
            lines = [f"**`{landscape}`**: {kind}.", "", head, "|---" * (5 + len(shown)) + "|"]
            for name, r in rows.items():
                savings = [r.get("saving_vs_cost_model_pct", {}).get(str(b)) for b in shown]
                cells = "".join(" - |" if v is None else f" {v:.1f} |" for v in savings)
                to5 = r["median_to_5pct"]
                lines.append(f"| {name} | {r['budget']} | {_ratio(r['median_best_ratio'])} | {r['found_optimum']} of "
                             f"{r['seeds']} | {'never' if not math.isfinite(to5) else f'{to5:.1f}'} |{cells}")
            lines += ["", gemm_sentence(landscape, rows)]
            parts.append("\n".join(lines))
    if parts:
        parts.append("Medians over seeds. A saving of -inf: the strategy had no valid configuration yet at that "
                     "budget (failed measurements count as infinitely slow, as in TVM); the live landscapes' saving "
                     "columns compare against the cost-model tuner on the same measured table.")
    return "\n\n".join(parts) or "(no gemm_tuners run recorded yet)"


def gemm_sentence(landscape: str, rows: Mapping[str, Mapping]) -> str:
    """One sentence from a landscape's summary: which strategies reach the optimum in every seed, in some, in none,
    and where those that do not end (median best / optimum)."""
    every = [n for n, r in rows.items() if r["found_optimum"] == r["seeds"]]
    some = [f"{n} ({r['found_optimum']} of {r['seeds']})" for n, r in rows.items() if 0 < r["found_optimum"] < r["seeds"]]
    none = [f"{n} (median best {r['median_best_ratio']:.3f}x the optimum)" if math.isfinite(r["median_best_ratio"])
            else f"{n} (no valid configuration in the median seed)" for n, r in rows.items() if r["found_optimum"] == 0]
    text = [f"On `{landscape}` the optimum is found in every seed by {', '.join(every)}" if every else
                f"On `{landscape}` no strategy finds the optimum in every seed"]
    if some:
        text.append(f"in some seeds by {', '.join(some)}")
    if none:
        text.append(f"never by {', '.join(none)}")
    return "; ".join(text) + "."


def sharding_markdown(out: pathlib.Path) -> str:
    """Markdown: examples/second of the data-parallel training steps at each device count, per benchmark run."""
    parts = []
    for base, label in [(out, "this machine")] + [(p / "results", p.name) for p in sorted(out.glob("gpu_*"))]:
        for path in sorted((base / "bench_sharding").glob("*.json")) if (base / "bench_sharding").exists() else []:
            data = json.loads(path.read_text())
            lines = [f"`{data.get('command', 'python -m benchmarks.bench_sharding')}` on {label} "
                     f"({path.stem}; {_link(path.relative_to(out).as_posix())})"
                     + (", on simulated CPU devices that share the same cores (a correctness check, no speed-up "
                        "expected)" if data.get("forced_cpu_devices") else ""), "",
                     "| case | devices | batch | device | median step (ms) | p20-p80 (ms) | examples/s |",
                     "|---|---|---|---|---|---|---|"]
            for r in data.get("rows", []):
                lines.append(f"| {r['case']} | {r['devices']} | {r['batch']} | {r.get('device_kind', '?')} | "
                             f"{1e3 * r['median_s']:.2f} | {1e3 * r['p20_s']:.2f}-{1e3 * r['p80_s']:.2f} | "
                             f"{r['examples_per_s']:.0f} |")
            parts.append("\n".join(lines))
    return "\n\n".join(parts) or "(no bench_sharding run recorded yet)"


def quick_runs(results: list[dict]) -> list[dict]:
    """The newest run of each plain ``python -m experiments.<name> --quick`` command."""
    return [r for r in results if r.get("command") == f"python -m experiments.{r['name']} --quick"]


def quick_wall_table(results: list[dict]) -> str:
    """Markdown: each quick experiment's wall time (the run's own, and the sum of its seeds' compute, which counts
    seeds a resumed run reused), cores and date; the total."""
    runs = quick_runs(results)
    lines = ["| experiment | seeds | wall time (s) | seed compute (s) | cores | load average (start / end) | date (UTC) |",
             "|---|---|---|---|---|---|---|"]
    for r in runs:
        seeds = sum((r.get("seconds_per_seed") or {}).values())
        load = r.get("load_average")
        load_text = f"{load['start']:.1f} / {load['end']:.1f}" if load else "not recorded"
        lines.append(f"| {r['name']} | {len(r.get('seeds', []))} | {r.get('wall_s', float('nan')):.0f} | {seeds:.0f} | "
                     f"{r.get('cores', '?')} | {load_text} | {r['timestamp'][:8]} |")
    total = sum(r.get("wall_s", 0.0) for r in runs)
    lines.append(f"| total | | {total:.0f} ({total / 60:.0f} min) | "
                 f"{sum(sum((r.get('seconds_per_seed') or {}).values()) for r in runs):.0f} | | | |")
    return "\n".join(lines)


def failures_markdown(record: dict | None) -> str:
    """Markdown: the experiments that failed in the newest ``experiments.reproduce`` run, with their errors."""
    if not record:
        return "No `experiments.reproduce` run is recorded under this results folder."
    failed = [row for row in record.get("experiments", []) if row.get("status") != "ok"]
    head = f"Newest `experiments.reproduce` run: {record['timestamp']}, `{record.get('command', '')}`"
    if not failed:
        return head + ": every experiment succeeded."
    return head + f": **{len(failed)} failed**.\n\n" + "\n".join(
        f"- **{row['name']}** failed after {row.get('wall_s', 0):.0f} s: `{row.get('error', '?')}`" for row in failed)


def runtime_sentence(results: list[dict]) -> str:
    """The README's sentence on the quick job's measured wall time (sum over the newest quick runs)."""
    runs = quick_runs(results)
    if not runs:
        return "No quick run is recorded yet."
    total = sum(r.get("wall_s", 0.0) for r in runs)
    cores = sorted({r.get("cores") for r in runs if r.get("cores")})
    unknown = [r["name"] for r in runs if not r.get("load_average")]
    loaded = [r["name"] for r in runs if r.get("load_average") and not _idle(r)]
    notes = ([f"{len(loaded)} ran beside other work, load average above the cores: {', '.join(loaded)}"] if loaded else []) + (
        [f"{len(unknown)} predate the load-average record, so whether the machine was shared is unknown"] if unknown else [])
    caveat = f" ({'; '.join(notes)})" if notes else ""
    return (f"Measured: the newest quick runs of the {len(runs)} experiments took {total / 60:.0f} min of wall time in "
            f"all" + (f" on {', '.join(map(str, cores))} cores" if cores else "") + caveat
            + "; each experiment's time is in [results/REPORT.md](results/REPORT.md#wall-time).")


def _idle(run: dict) -> bool:
    """Whether a run recorded a load average no higher than its cores (plus one) at its start and end."""
    load, cores = run.get("load_average"), run.get("cores") or 1
    return bool(load) and max(load["start"], load["end"]) <= cores + 1


def claims_summary(rows: list[dict], results: list[dict] = (), out: pathlib.Path | None = None) -> str:
    """The README's claims block: the compact claims table, then which GEMM tuners reach the optimum on each
    landscape of the newest full ``gemm_tuners`` run (:func:`gemm_sentence`), linking into the report."""
    text = ("Each row is generated from `experiments/paper_claims.py` (the paper's number and its source) and the "
            "newest results JSON of the command that measures it; the why, the setting and every run are in "
            "[results/REPORT.md](results/REPORT.md).\n\n" + claims_table(rows, link="results/REPORT.md"))
    full = [r for r in results if r.get("command") == "python -m experiments.gemm_tuners"]
    summary = _summary(out, full[-1]) if full and out is not None else None
    if summary:
        text += (f"\n\nGEMM tuners in `{full[-1]['command']}` ({full[-1]['timestamp'][:8]}, modelled landscapes "
                 "except `live`): " + " ".join(gemm_sentence(k, v) for k, v in summary.items() if k != "live_tune"))
    return text


def report_markdown(out: pathlib.Path) -> str:
    """The whole of ``<out>/REPORT.md`` (see the module docstring)."""
    results = newest_results(out)
    rows = claim_results(results)
    counts = {s: sum(r["status"] == s for r in rows) for s in paper_claims.STATUSES}
    parts = ["# jeq against the papers",
             "Generated by `python -m experiments.report` from the results JSON under `results/` and the papers' "
             "numbers in `experiments/paper_claims.py` (each with its source); do not edit by hand. Statuses: "
             + ", ".join(f"{n} {s}" for s, n in counts.items() if n) + ". "
             "A comparison between two methods counts as reproduced when the difference has the paper's sign and "
             "exceeds the sum of the two standard deviations over seeds; runs of one seed have no spread.",
             "Contents: " + ", ".join(f"[{s.title}](#{key})" for key, s in paper_claims.SECTIONS.items())
             + ", [speed](#speed), [wall time](#wall-time)."]
    for key, section in paper_claims.SECTIONS.items():
        parts.append(f'<a id="{key}"></a>\n\n## {section.title}\n\n{section.paper}.')
        if any(r["claim"].section == key for r in rows):
            parts.append("### The paper's numbers and jeq's\n\n" + claims_table(rows, section=key))
        if section.experiments:
            parts.append("### Runs (newest of each command)\n\n" + runs_markdown(results, section.experiments, out))
        if key == "gemm":
            parts.append("### Every landscape variant and shape\n\n" + gemm_markdown(
                [r for r in results if r["name"] == "gemm_tuners"], out))
        if key == "scaleout":
            parts.append("### Data-parallel step throughput\n\n" + sharding_markdown(out))
        full = [r for r in results if r["name"] in section.experiments and not r["config"].get("quick")]
        parts.append("### Full-scale commands\n\n```bash\n" + "\n".join(section.full_commands) + "\n```"
                     + ("\n\nRecorded full-scale runs: " + "; ".join(
                         f"`{r['command']}` ({r.get('wall_s', 0) / 60:.0f} min)" for r in full) + "." if full else ""))
    parts.append('<a id="speed"></a>\n\n## Speed against the PyTorch originals\n\n' + speed_table.render(out))
    parts.append('<a id="wall-time"></a>\n\n## Wall time of the quick experiments\n\n'
                 "The newest `python -m experiments.<name> --quick` run of each experiment:\n\n"
                 + quick_wall_table(results) + "\n\n" + failures_markdown(reproduce_record(out))
                 + ("\n\n" + runtime_table(reproduce_record(out)) if reproduce_record(out) else ""))
    return "\n\n".join(parts) + "\n"


def readme_blocks(out: pathlib.Path) -> dict[tuple[str, str], str]:
    """Every generated README block, keyed by its (begin, end) markers."""
    results = newest_results(out)
    return {(BEGIN, END): table(results), (SPEED_BEGIN, SPEED_END): speed_table.render(out),
            (CLAIMS_BEGIN, CLAIMS_END): claims_summary(claim_results(results), results, out),
            (RUNTIME_BEGIN, RUNTIME_END): runtime_sentence(results)}


def _replace_block(text: str, begin: str, end: str, block: str, readme: pathlib.Path) -> str:
    if begin not in text or end not in text:
        raise ValueError(f"experiments.report: {readme} has no '{begin}' ... '{end}' block to replace")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{block}\n{end}{tail}"


def write_readme(block: str, readme: pathlib.Path = REPO_ROOT / "README.md", speed: str | None = None,
                 extra: Mapping[tuple[str, str], str] | None = None) -> None:
    """Replace the results block (and, when given, the speed block and the ``extra`` blocks) of the README."""
    text = _replace_block(readme.read_text(), BEGIN, END, block, readme)
    if speed is not None:
        text = _replace_block(text, SPEED_BEGIN, SPEED_END, speed, readme)
    for (begin, end), body in (extra or {}).items():
        text = _replace_block(text, begin, end, body, readme)
    atomic_write_text(readme, text)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results", help="results folder (REPORT.md is written into it)")
    parser.add_argument("--write-readme", action="store_true", help="also rewrite the README's generated blocks")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    out = pathlib.Path(args.out)
    blocks = readme_blocks(out)
    block = blocks[(BEGIN, END)]
    print(block + "\n\n" + blocks[(SPEED_BEGIN, SPEED_END)] + "\n\n" + runtime_table(reproduce_record(out)))
    atomic_write_text(out / REPORT, report_markdown(out))
    print(f"wrote {out / REPORT}", file=sys.stderr)
    if args.write_readme:
        write_readme(block, speed=blocks[(SPEED_BEGIN, SPEED_END)],
                     extra={k: v for k, v in blocks.items() if k not in ((BEGIN, END), (SPEED_BEGIN, SPEED_END))})
    return block


if __name__ == "__main__":
    main()
