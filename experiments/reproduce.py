"""The main job: every quick experiment in turn, then results/REPORT.md and the README's tables from their JSON.

``python -m experiments.reproduce --quick`` (the README's first command) runs each experiment listed in
:data:`EXPERIMENTS` with ``--quick``, writing ``results/<name>/<timestamp>.json`` and a PNG for each, then writes
``<out>/REPORT.md`` (``experiments.report``: the papers' numbers next to jeq's, wall times, and this run's failures)
and rebuilds the README's generated blocks from those files (not with ``--no-readme``). Each experiment resumes after a kill, so rerunning the same command after
an interruption continues where it stopped. ``--only NAME ...`` runs a subset.

An experiment that fails is reported (its traceback on stderr, ``failed`` in the run record) and the others still
run; the command then exits with status 1. Every run writes ``<out>/reproduce/<timestamp>.json``: each experiment's
status and wall time, the git SHA and the machine's core count (rewritten after every experiment, so a killed run
keeps what finished). ``--list`` prints each experiment, what it reproduces and its quick-mode wall time from the
newest such record.
"""

from __future__ import annotations

import argparse
import ast
import datetime as _dt
import importlib
import importlib.util
import json
import os
import pathlib
import pkgutil
import shlex
import sys
import time
import traceback

from . import harness, report
from jeq.io import atomic_write_json

EXPERIMENTS = (
    "mlp_baseline",
    "opteq_table",
    "eqprop_gates",
    "eqprop_mnist",
    "pathsgd_adding",
    "pathsgd_seqmnist",
    "pathsgd_charlm",
    "gemm_tuners",
    "nago_search",
    "rltune_table",
)
"""Experiments the quick reproduction runs, in order (one per paper table/figure, plus the MLP reference)."""

RECORDS = "reproduce"
"""Subfolder of ``--out`` holding one JSON per reproduce run (status and wall time of each experiment)."""


def _package() -> str:
    """``experiments`` in a checkout, ``jeq.experiments`` in an installed wheel."""
    return __package__ or "experiments"


def summary(name: str) -> str:
    """The first paragraph of ``experiments.<name>``'s docstring, on one line (read with ``ast``, nothing imported)."""
    spec = importlib.util.find_spec(f"{_package()}.{name}")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"{_package()}.{name}")
    doc = ast.get_docstring(ast.parse(pathlib.Path(spec.origin).read_text())) or ""
    return " ".join(doc.split("\n\n")[0].split())


def runnable() -> tuple[str, ...]:
    """Every module of the experiments package with a top-level ``main`` (the listed ones and any others, e.g. the
    ablation and long-run experiments), except this script and the report."""
    package = importlib.import_module(_package())
    names = []
    for info in pkgutil.iter_modules(package.__path__):
        if info.name in ("reproduce", "report", "harness"):
            continue
        spec = importlib.util.find_spec(f"{_package()}.{info.name}")
        tree = ast.parse(pathlib.Path(spec.origin).read_text())
        if any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body):
            names.append(info.name)
    return tuple(sorted(names))


def cores() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def latest_wall_times(out: str | os.PathLike, *, quick: bool = True) -> dict[str, dict]:
    """For each experiment, its newest successful wall time in a reproduce record under ``out`` (``quick`` runs
    only, by default): ``{name: {"wall_s", "cores", "timestamp"}}``."""
    found: dict[str, dict] = {}
    folder = pathlib.Path(out) / RECORDS
    for path in sorted(folder.glob("*.json")) if folder.exists() else []:
        try:
            record = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            harness.warn(f"{path}: unreadable reproduce record, skipped")
            continue
        if not isinstance(record, dict) or bool(record.get("quick")) != quick:
            continue
        for row in record.get("experiments", []):
            if row.get("status") == "ok":
                found[row["name"]] = {"wall_s": row["wall_s"], "cores": record.get("cores"),
                                      "timestamp": record.get("timestamp", path.stem)}
    return found


def quick_seed_seconds(out: str | os.PathLike, name: str) -> dict | None:
    """Fallback for an experiment no reproduce run has timed yet: the newest ``<out>/<name>/*.json`` of its plain
    ``--quick`` command, with the sum of its seeds' compute times (stored when each seed ran, so a resumed run still
    counts its reused seeds): ``{"seconds", "cores", "timestamp"}``."""
    folder = pathlib.Path(out) / name
    for path in sorted(folder.glob("*.json"), reverse=True) if folder.exists() else []:
        try:
            result = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            continue
        if not (isinstance(result, dict) and isinstance(result.get("seconds_per_seed"), dict)
                and report.canonical_command(result.get("command", "")) == f"python -m experiments.{name} --quick"):
            continue
        return {"seconds": sum(result["seconds_per_seed"].values()), "cores": result.get("cores"),
                "timestamp": result.get("timestamp", path.stem)}
    return None


def listing(out: str | os.PathLike = "results") -> str:
    """One line per experiment: name, quick-mode wall time and what it reproduces.

    The time is the experiment's wall time in the newest quick reproduce record; without one, the sum of its seeds'
    times in its newest ``--quick`` results JSON (marked ``seeds``); cores are those the run could use."""
    times = latest_wall_times(out)
    lines = []
    for name in EXPERIMENTS:
        t, fallback = times.get(name), quick_seed_seconds(out, name)
        if t:
            when = f"{t['wall_s']:.0f} s on {t['cores']} cores ({t['timestamp'][:8]})"
        elif fallback:
            when = f"{fallback['seconds']:.0f} s seeds on {fallback['cores'] or '?'} cores ({fallback['timestamp'][:8]})"
        else:
            when = "not run yet"
        lines.append(f"{name:<18s} quick: {when:<36s} {summary(name)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    """Run the experiments (see the module docstring); returns the run record. Exits with status 1 if any failed."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     prog="python -m experiments.reproduce" if _package() == "experiments"
                                     else "jeq reproduce")
    parser.add_argument("--quick", action="store_true", help="quick configuration of every experiment")
    parser.add_argument("--only", nargs="+", choices=EXPERIMENTS, metavar="NAME",
                        help=f"run only these experiments (choose from {', '.join(EXPERIMENTS)})")
    parser.add_argument("--out", default="results", help="results folder (default: results)")
    parser.add_argument("--no-readme", action="store_true",
                        help="do not rewrite the README's generated blocks (<out>/REPORT.md is still written)")
    parser.add_argument("--allow-dirty", action="store_true",
                        help="run even with uncommitted changes to tracked files (recorded in every results JSON)")
    parser.add_argument("--list", action="store_true",
                        help="list the experiments, what each reproduces and its last quick wall time, then exit")
    args = parser.parse_args(argv)
    if args.list:
        print(listing(args.out))
        return {}
    sha = harness.code_version()
    if sha.endswith("-dirty") and not args.allow_dirty:  # the same refusal as every experiment's, once, up front
        raise harness.DirtyTree(f"{_package()}.reproduce: uncommitted changes to tracked files; commit them or pass "
                                "--allow-dirty")
    timestamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    record = {"timestamp": timestamp, "command": "python -m experiments.reproduce " + shlex.join(argv),
              "quick": args.quick, "git_sha": sha, "cores": cores(), "experiments": []}
    record_path = pathlib.Path(args.out) / RECORDS / f"{timestamp}.json"
    flags = (["--quick"] if args.quick else []) + ["--out", args.out] + (["--allow-dirty"] if args.allow_dirty else [])
    start = time.perf_counter()
    for name in args.only or EXPERIMENTS:
        t0 = time.perf_counter()
        print(f"=== experiments.{name} ===", flush=True)
        row = {"name": name}
        try:
            result = importlib.import_module(f"{_package()}.{name}").main(flags)
            row.update(status="ok", json=(result or {}).get("json_path"))
        except Exception as err:  # keep going: one broken experiment must not hide the others' results
            traceback.print_exc()
            row.update(status="failed", error=f"{type(err).__name__}: {err}")
        row["wall_s"] = time.perf_counter() - t0
        record["experiments"].append(row)
        record["total_s"] = time.perf_counter() - start
        atomic_write_json(record_path, record)
        print(f"=== {name}: {row['status']}, {row['wall_s']:.0f} s ===", flush=True)
    failed = [row["name"] for row in record["experiments"] if row["status"] != "ok"]
    write_readme = not args.no_readme and (harness.REPO_ROOT / "README.md").exists()
    report.main(["--out", args.out] + (["--write-readme"] if write_readme else []))
    print(f"reproduce record: {record_path}", file=sys.stderr)
    if failed:
        print(f"FAILED: {', '.join(failed)} (tracebacks above; the others' results are written)", file=sys.stderr)
        raise SystemExit(1)
    return record


if __name__ == "__main__":
    main()
