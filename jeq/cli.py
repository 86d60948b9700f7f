"""The ``jeq`` command: the experiments of an installed jeq, without a checkout.

::

    jeq list                        # each experiment, what it reproduces, its last quick wall time
    jeq reproduce --quick           # every quick experiment, then the results table (= python -m experiments.reproduce)
    jeq run opteq_table --quick     # one experiment (= python -m experiments.opteq_table); --help lists its flags

The wheel ships the repository's ``experiments`` folder as ``jeq.experiments``; in a checkout (where the folder is the
top-level ``experiments`` package) the same commands run that. This module is the one place where ``jeq`` reaches
the experiments, and only by name when a command asks for them: ``import jeq`` never loads them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

__all__ = ["main"]


def experiments_package() -> str:
    """``jeq.experiments`` in an installed wheel, else the checkout's top-level ``experiments``."""
    for name in ("jeq.experiments", "experiments"):
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name not in ("jeq.experiments", "experiments"):
                raise
            continue
        return name
    raise ModuleNotFoundError("jeq: neither jeq.experiments (an installed wheel) nor experiments (a checkout, run from "
                              "its root) is importable")


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"{experiments_package()}.{name}")


def main(argv: list[str] | None = None) -> int:
    """``jeq {list,reproduce,run}``; returns the exit status (1 when an experiment failed).

    >>> from jeq.cli import main
    >>> main(["run", "--help"])
    usage: jeq run NAME [flags]   (jeq run NAME --help for its flags)
    NAME: ... mlp_baseline, ...opteq_table, ...
    0
    >>> main(["run", "no_such_experiment"])  # the error goes to stderr
    2
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="jeq", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{list,reproduce,run}")
    listing = commands.add_parser("list", help="each experiment, what it reproduces and its last quick wall time")
    listing.add_argument("--out", default="results", help="results folder holding reproduce/*.json (default: results)")
    commands.add_parser("reproduce", add_help=False,
                        help="every quick experiment in turn, then the results table (jeq reproduce --help)")
    run = commands.add_parser("run", add_help=False, help="one experiment: jeq run NAME [flags] (jeq run NAME --help)")
    run.add_argument("name", nargs="?", help="experiment name (see jeq list)")
    if not argv or argv[0] not in ("reproduce", "run"):
        args = parser.parse_args(argv)  # --help, list, or an unknown command (argparse reports it)
        print(_module("reproduce").listing(args.out))
        return 0
    command, rest = argv[0], argv[1:]
    reproduce = _module("reproduce")
    try:
        if command == "reproduce":
            reproduce.main(rest)
            return 0
        names = reproduce.runnable()
        if not rest or rest[0] in ("-h", "--help"):
            print(f"usage: jeq run NAME [flags]   (jeq run NAME --help for its flags)\nNAME: {', '.join(names)}")
            return 0 if rest else 2
        if rest[0] not in names:
            print(f"jeq run: unknown experiment {rest[0]!r}; choose from {', '.join(names)}", file=sys.stderr)
            return 2
        _module(rest[0]).main(rest[1:])
        return 0
    except SystemExit as done:  # argparse's --help / errors, a refused dirty tree, reproduce's failure status
        if done.code is None or isinstance(done.code, int):
            return done.code or 0
        print(done.code, file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
