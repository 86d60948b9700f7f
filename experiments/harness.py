"""The experiment harness shared by every ``python -m experiments.<name>`` script.

An experiment is a frozen dataclass config, a function that runs one seed, and a plot made from the results JSON::

    @dataclasses.dataclass(frozen=True)
    class Config(harness.BaseConfig):
        epochs: int = 40

    def run_seed(config: Config, seed: int, ckpt: harness.Checkpoint) -> dict: ...
    def plot(result: dict, path: pathlib.Path) -> None: ...

    def main(argv=None):
        return harness.run("name", Config, run_seed, plot=plot, quick=dict(epochs=2), argv=argv)

What :func:`run` guarantees:

- argparse flags generated from the config fields (``--epochs 5``, ``--seeds 0 1 2``, ``--quick``, ``--out DIR``,
  ``--devices N``); ``--quick`` applies the experiment's quick overrides, explicit flags win over both;
- each finished seed is stored (atomically) under ``<out>/<name>/runs/<config hash>/``; a run killed and restarted
  with the same command skips finished seeds, and ``run_seed`` resumes from its last :class:`Checkpoint`;
- one ``<out>/<name>/<timestamp>.json`` with the config, seeds, per-seed metrics, mean/std of every scalar metric,
  git SHA, library versions and device kind, and a PNG made from that JSON by the experiment's ``plot``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import hashlib
import json
import math
import os
import pathlib
import pickle
import sys
import time
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from jeq.io import REPO_ROOT, atomic_write_bytes, atomic_write_json, device_info, git_sha, versions


@dataclasses.dataclass(frozen=True)
class BaseConfig:
    """Flags common to every experiment."""

    quick: bool = False
    """Minutes-on-a-CPU configuration on embedded data (the experiment's ``quick`` overrides)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Seeds to run; metrics are reported as mean and std over them."""
    out: str = "results"
    """Output folder: results go to ``<out>/<name>/``."""
    devices: int = 1
    """Number of devices to shard the batch over (data parallel), where the experiment supports it."""
    coordinator: str = ""
    """Multi-host runs: ``host:port`` of process 0 (empty = single host); see ``jeq.sharding.initialize_multihost``."""
    num_processes: int = 1
    """Multi-host runs: number of processes (hosts)."""
    process_id: int = 0
    """Multi-host runs: this process's index, 0 .. num_processes - 1."""


NOT_RESULTS = ("seeds", "out", "coordinator", "num_processes", "process_id")
"""Config fields that do not change results: left out of the resume hash (:func:`config_hash`) and of the command
that identifies a run in the README table (``experiments.report``)."""


# ----------------------------------------------------------------------------------------------- checkpoints


def from_process_zero(payload: bytes | None) -> bytes | None:
    """Process 0's ``payload`` on every process of a multi-host run (the identity with one process).

    Each host reads its own files, and after a kill the hosts' checkpoints (or their filesystems) may disagree;
    resuming from process 0's copy keeps every process on the same step, as the collectives require.
    """
    import jax

    if jax.process_count() == 1:
        return payload
    from jax.experimental import multihost_utils

    mine = payload if jax.process_index() == 0 else None
    size = int(multihost_utils.broadcast_one_to_all(np.int32(-1 if mine is None else len(mine))))
    if size < 0:
        return None
    buffer = np.frombuffer(mine, np.uint8) if mine is not None else np.zeros(size, np.uint8)
    return np.asarray(multihost_utils.broadcast_one_to_all(buffer)).tobytes()


class Checkpoint:
    """Resumable state of one seed: ``load(default)`` then ``save(state)`` as often as is useful.

    The state is any pytree of arrays and Python values; JAX arrays are brought to host memory before pickling. Writes
    are atomic, so a kill during ``save`` leaves the previous checkpoint intact. In a multi-host run every process
    loads process 0's checkpoint (:func:`from_process_zero`).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = pathlib.Path(path)

    def load(self, default: Any = None) -> Any:
        """The last saved state, or ``default`` when nothing was saved yet."""
        payload = from_process_zero(self.path.read_bytes() if self.path.exists() else None)
        return default if payload is None else pickle.loads(payload)

    def save(self, state: Any) -> None:
        """Persist ``state`` (atomically)."""
        import jax

        atomic_write_bytes(self.path, pickle.dumps(jax.device_get(state), protocol=pickle.HIGHEST_PROTOCOL))

    def clear(self) -> None:
        """Remove the checkpoint (called once the seed's metrics are stored)."""
        self.path.unlink(missing_ok=True)


def progress(iterable: Iterable, **kwargs: Any) -> Iterable:
    """A tqdm progress bar (to stderr) over ``iterable``; ``desc``, ``total`` etc. pass through."""
    from tqdm import tqdm

    kwargs.setdefault("leave", False)
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("disable", os.environ.get("JEQ_NO_PROGRESS") == "1")
    return tqdm(iterable, **kwargs)


# ----------------------------------------------------------------------------------------------- config parsing


def _field_parser(tp: Any) -> tuple[Callable[[str], Any], bool]:
    """(scalar converter, is a tuple) for a field type."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            conv, many = _field_parser(args[0])
            return (lambda s: None if s.lower() == "none" else conv(s)), many
    if origin is tuple:
        args = typing.get_args(tp)
        conv, _ = _field_parser(args[0] if args else str)
        return conv, True
    if origin is typing.Literal:
        choices = typing.get_args(tp)

        def literal(s: str) -> Any:
            for c in choices:
                if str(c) == s:
                    return c
            raise argparse.ArgumentTypeError(f"{s!r} is not one of {list(choices)}")

        return literal, False
    if tp in (int, float, str):
        return tp, False
    raise TypeError(f"experiments.harness: unsupported config field type {tp!r}")


def build_parser(config_cls: type, *, description: str | None = None) -> argparse.ArgumentParser:
    """An argparse parser with one flag per dataclass field; unspecified flags parse to ``None``."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    hints = typing.get_type_hints(config_cls)
    for field in dataclasses.fields(config_cls):
        flag = "--" + field.name.replace("_", "-")
        tp = hints[field.name]
        help_text = f"default {field.default!r}" if field.default is not dataclasses.MISSING else None
        if tp is bool:
            parser.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction, default=None,
                                help=help_text)
            continue
        conv, many = _field_parser(tp)
        parser.add_argument(flag, dest=field.name, type=conv, nargs="+" if many else None, default=None,
                            help=help_text)
    return parser


def parse_config(config_cls: type, argv: list[str] | None, *, quick: Mapping[str, Any] | None = None) -> Any:
    """Config from defaults, then ``quick`` overrides when ``--quick`` is given, then explicit flags."""
    if not (dataclasses.is_dataclass(config_cls) and issubclass(config_cls, BaseConfig)):
        raise TypeError(f"experiments.harness: {config_cls!r} must be a dataclass subclassing BaseConfig")
    args = build_parser(config_cls).parse_args(argv)
    explicit = {k: (tuple(v) if isinstance(v, list) else v) for k, v in vars(args).items() if v is not None}
    values: dict[str, Any] = {}
    if explicit.get("quick"):
        unknown = set(quick or {}) - {f.name for f in dataclasses.fields(config_cls)}
        if unknown:
            raise TypeError(f"experiments.harness: quick overrides name unknown fields {sorted(unknown)}")
        values.update(quick or {})
    values.update(explicit)
    config = config_cls(**values)
    if not config.seeds:
        raise ValueError("experiments.harness: --seeds must name at least one seed")
    if config.devices < 1:
        raise ValueError(f"experiments.harness: --devices {config.devices}: must be >= 1")
    return config


def config_hash(config: Any) -> str:
    """A short hash of everything in the config that changes results (not the seeds, the output folder or the
    multi-host addressing)."""
    fields = {k: v for k, v in dataclasses.asdict(config).items() if k not in NOT_RESULTS}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:12]


# ----------------------------------------------------------------------------------------------- aggregation


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def aggregate(per_seed: Mapping[Any, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean, std (population, ``ddof=0``) and values of every scalar metric present in all seeds.

    The mean and std are over the finite values only; ``finite`` counts them, so a diverged seed (NaN/inf) shows
    as "k of n finite" instead of silently improving the mean.
    """
    seeds = list(per_seed)
    if not seeds:
        return {}
    names = [k for k, v in per_seed[seeds[0]].items() if _is_scalar(v)]
    out = {}
    for name in names:
        vals = [per_seed[s].get(name) for s in seeds]
        if not all(_is_scalar(v) for v in vals):
            continue
        arr = np.asarray(vals, dtype=np.float64)
        finite = arr[np.isfinite(arr)]
        out[name] = {
            "mean": float(finite.mean()) if finite.size else math.nan,
            "std": float(finite.std()) if finite.size else math.nan,
            "values": [float(v) for v in arr],
            "finite": int(finite.size),
        }
    return out


def seed_count(metric: Mapping[str, Any]) -> str:
    """``"n"``, or ``"k of n finite"`` when some seeds gave NaN/inf (the mean and std are over the finite ones)."""
    n = len(metric["values"])
    finite = metric.get("finite", sum(math.isfinite(v) for v in metric["values"]))
    return str(n) if finite == n else f"{finite} of {n} finite"


def format_metrics(metrics: Mapping[str, Mapping[str, Any]], names: Iterable[str] | None = None) -> str:
    """``name: mean ± std`` lines for the terminal."""
    rows = []
    for name in names or metrics:
        if name in metrics:
            m = metrics[name]
            rows.append(f"  {name:<40s} {m['mean']:.4g} ± {m['std']:.2g}  (n={seed_count(m)})")
    return "\n".join(rows)


# ----------------------------------------------------------------------------------------------- the runner


def run(
    name: str,
    config_cls: type,
    run_seed: Callable[[Any, int, Checkpoint], Mapping[str, Any]],
    *,
    plot: Callable[[dict, pathlib.Path], None] | None = None,
    quick: Mapping[str, Any] | None = None,
    headline: Iterable[str] = (),
    argv: list[str] | None = None,
    config: Any = None,
) -> dict:
    """Run an experiment over its seeds, resumably, and write ``<out>/<name>/<timestamp>.json`` and ``.png``.

    Args:
        name: experiment name (``experiments.<name>``), also the results folder.
        config_cls: frozen dataclass subclassing :class:`BaseConfig`.
        run_seed: ``run_seed(config, seed, ckpt) -> metrics`` for one seed; scalar metrics are aggregated over seeds,
            everything else (curves, tables) is kept per seed. Must be JSON-serialisable.
        plot: ``plot(result, png_path)``: draws the PNG from the results dict (as written to JSON).
        quick: field overrides applied by ``--quick``.
        headline: metric names to print first and to put in the README results table.
        argv: command-line arguments (default ``sys.argv[1:]``); ignored when ``config`` is given.
        config: an already-built config (for programmatic use, e.g. from the reproduce script or tests).

    Returns:
        The results dict, with ``json_path`` and ``png_path`` added.
    """
    if config is None:
        config = parse_config(config_cls, sys.argv[1:] if argv is None else argv, quick=quick)
    if config.coordinator:
        from jeq import sharding

        sharding.initialize_multihost(config.coordinator, config.num_processes, config.process_id)
    out_dir = pathlib.Path(config.out) / name
    code_version = git_sha()
    # Finished seeds and checkpoints are reused only by the same configuration at the same commit: a rerun after a
    # code change recomputes every seed instead of stamping old numbers with the new commit.
    run_dir = out_dir / "runs" / f"{config_hash(config)}-{code_version.split('-')[0][:12]}"
    atomic_write_json(run_dir / "config.json", dataclasses.asdict(config))
    per_seed: dict[str, Any] = {}
    seed_seconds: dict[str, float] = {}
    start = time.perf_counter()
    for seed in config.seeds:
        seed_file = run_dir / f"seed_{seed}.json"
        finished = from_process_zero(seed_file.read_bytes() if seed_file.exists() else None)
        if finished is not None:
            stored = json.loads(finished)
            per_seed[str(seed)], seed_seconds[str(seed)] = stored["metrics"], stored["seconds"]
            print(f"[{name}] seed {seed}: finished earlier, loaded {seed_file}", file=sys.stderr)
            continue
        ckpt = Checkpoint(run_dir / f"seed_{seed}.ckpt")
        t0 = time.perf_counter()
        metrics = dict(run_seed(config, seed, ckpt))
        seconds = time.perf_counter() - t0
        atomic_write_json(seed_file, {"seed": seed, "seconds": seconds, "metrics": metrics})
        ckpt.clear()
        per_seed[str(seed)], seed_seconds[str(seed)] = metrics, seconds
    timestamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    result = {
        "name": name,
        "timestamp": timestamp,
        "command": f"python -m experiments.{name} " + " ".join(sys.argv[1:] if argv is None else argv),
        "config": dataclasses.asdict(config),
        "seeds": list(config.seeds),
        "metrics": aggregate(per_seed),
        "headline": list(headline),
        "per_seed": per_seed,
        "seconds_per_seed": seed_seconds,
        "wall_s": time.perf_counter() - start,
        "git_sha": code_version,
        "versions": versions(),
        **device_info(),
    }
    json_path = out_dir / f"{timestamp}.json"
    atomic_write_json(json_path, result)
    result["json_path"] = str(json_path)
    png_path = json_path.with_suffix(".png")
    if plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        plot(json.loads(json_path.read_text()), png_path)
        plt.close("all")
        result["png_path"] = str(png_path)
    print(f"[{name}] results: {json_path}" + (f"  plot: {png_path}" if plot else ""), file=sys.stderr)
    order = list(headline) + [k for k in result["metrics"] if k not in headline]
    print(format_metrics(result["metrics"], order))
    return result
