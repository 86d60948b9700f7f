"""Build the README's results table from the results JSON files (never typed by hand).

``python -m experiments.report`` prints a Markdown table of the newest run of every command under ``--out``
(default ``results``); ``--write-readme`` replaces the block between ``<!-- results:begin -->`` and
``<!-- results:end -->`` in README.md with it.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shlex
import sys

from .harness import NOT_RESULTS, REPO_ROOT, seed_count
from jeq.io import atomic_write_text

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
SPEED_BEGIN, SPEED_END = "<!-- speed:begin -->", "<!-- speed:end -->"


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


def speed_rows(out: pathlib.Path) -> list[dict]:
    """Our side of the PyTorch-original comparisons, from the newest benchmark JSONs on each device.

    Looks for ``bench_equilibrium`` (MON and plain DEQ in the reference settings) and ``bench_eqprop`` (Laborieux
    et al.'s EP MLP) under ``out`` (this machine) and under ``out/gpu_*/results`` (a GPU session's results).
    """
    places = [("cpu", out)] + [(p.name, p / "results") for p in sorted(out.glob("gpu_*"))]
    rows = []
    for device, base in places:
        eqb = _newest(base / "bench_equilibrium")
        for name, label in (("mon", "MON single-FC 87, Peaceman-Rachford tol 1e-2, batch 128"),
                            ("deq", "plain DEQ 87, Anderson tol 1e-3 + implicit backward, batch 128")):
            ref = (eqb or {}).get("reference_settings", {}).get(name)
            if ref:
                rows.append(dict(setting=label, unit="ms/step", device=device, ours=ref["ms_per_step"],
                                 theirs=ref["reference"]["ms_per_step"], accuracy=ref["test_accuracy"],
                                 their_accuracy=ref["reference"]["test_accuracy"], epochs=ref.get("epochs"),
                                 at_init=ref.get("timed") != "after training"))
        epb = _newest(base / "bench_eqprop")
        target = (epb or {}).get("pytorch_target")
        if target:
            rows.append(dict(setting="Laborieux EP 784-512-10, T1 30, T2 10, batch 50 (epoch of 4000)", unit="s/epoch",
                             device=device, ours=target["seconds_per_epoch"], theirs=3.1,
                             accuracy=target.get("test_accuracy_epoch2_mean"), their_accuracy=0.903, epochs=2))
    return rows


def speed_table(rows: list[dict]) -> str:
    """Markdown: PyTorch original (measured on this project's 2-core CPU machine) against jeq, per device."""
    lines = ["| setting | device | PyTorch original | jeq | speed-up | test accuracy jeq / PyTorch (jeq epochs) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        acc = f"{r['accuracy']:.3f} / {r['their_accuracy']:.3f} ({r['epochs']})" if r.get("accuracy") else "-"
        mark = "*" if r.get("at_init") else ""
        lines.append(f"| {r['setting']} | {r['device']} | {r['theirs']:.3g} {r['unit']} | {r['ours']:.3g} {r['unit']}"
                     f"{mark} | {r['theirs'] / r['ours']:.1f}x{mark} | {acc} |")
    if len(lines) == 2:
        lines.append("| (no benchmark results yet) | | | | | |")
    if any(r.get("at_init") for r in rows):
        lines.append("\n\\* an older benchmark run, timed at the initial parameters and, for the DEQ, with a 1e-4 "
                     "adjoint tolerance instead of TorchDEQ's 1e-6: a trained DEQ's solver needs about twice the "
                     "iterations, so that DEQ speed-up is overstated; rows without * are timed after training at "
                     "the reference tolerances.")
    return "\n".join(lines)


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


def _replace_block(text: str, begin: str, end: str, block: str, readme: pathlib.Path) -> str:
    if begin not in text or end not in text:
        raise ValueError(f"experiments.report: {readme} has no '{begin}' ... '{end}' block to replace")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{block}\n{end}{tail}"


def write_readme(block: str, readme: pathlib.Path = REPO_ROOT / "README.md", speed: str | None = None) -> None:
    """Replace the results block (and, when given, the speed block) of the README."""
    text = _replace_block(readme.read_text(), BEGIN, END, block, readme)
    if speed is not None:
        text = _replace_block(text, SPEED_BEGIN, SPEED_END, speed, readme)
    atomic_write_text(readme, text)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="results", help="results folder")
    parser.add_argument("--write-readme", action="store_true", help="rewrite the README results block")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    out = pathlib.Path(args.out)
    block = table(newest_results(out))
    speed = speed_table(speed_rows(out))
    print(block + "\n\n" + speed + "\n\n" + runtime_table(reproduce_record(out)))
    if args.write_readme:
        write_readme(block, speed=speed)
    return block


if __name__ == "__main__":
    main()
