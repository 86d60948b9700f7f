"""The main job: every quick experiment in turn, then the README results table from their JSON.

``python -m experiments.reproduce --quick`` (the README's first command) runs each experiment listed in
:data:`EXPERIMENTS` with ``--quick``, writing ``results/<name>/<timestamp>.json`` and a PNG for each, then rebuilds the
README's results table from those files. Each experiment resumes after a kill, so rerunning the same command after
an interruption continues where it stopped. ``--only NAME ...`` runs a subset.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

from experiments import report

EXPERIMENTS = (
    "mlp_baseline",
    "opteq_table",
    "eqprop_gates",
    "eqprop_mnist",
    "pathsgd_adding",
    "pathsgd_seqmnist",
    "pathsgd_charlm",
    "gemm_tuners",
)
"""Experiments the quick reproduction runs, in order (one per paper table/figure, plus the MLP reference)."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="quick configuration of every experiment")
    parser.add_argument("--only", nargs="+", choices=EXPERIMENTS, help="run only these experiments")
    parser.add_argument("--out", default="results", help="results folder")
    parser.add_argument("--no-readme", action="store_true", help="do not rewrite the README results table")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    for name in args.only or EXPERIMENTS:
        start = time.perf_counter()
        print(f"=== experiments.{name} ===", flush=True)
        module = importlib.import_module(f"experiments.{name}")
        module.main((["--quick"] if args.quick else []) + ["--out", args.out])
        print(f"=== {name}: {time.perf_counter() - start:.0f} s ===", flush=True)
    report.main(["--out", args.out] + ([] if args.no_readme else ["--write-readme"]))


if __name__ == "__main__":
    main()
