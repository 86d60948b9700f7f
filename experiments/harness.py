"""The experiment harness shared by every ``python -m experiments.<name>`` script.

An experiment is a frozen dataclass config, a function that runs one seed, and a plot made from the results JSON::

    @dataclasses.dataclass(frozen=True)
    class Config(harness.BaseConfig):
        epochs: int = 40
        '''Training epochs per seed.'''      # the attribute docstring is the flag's --help text

    def run_seed(config: Config, seed: int, ckpt: harness.Checkpoint) -> dict: ...
    def plot(result: dict, path: pathlib.Path) -> None: ...

    def main(argv=None):
        return harness.run("name", Config, run_seed, plot=plot, quick=dict(epochs=2), argv=argv)

What :func:`run` guarantees:

- argparse flags generated from the config fields (``--epochs 5``, ``--seeds 0 1 2``, ``--quick``, ``--out DIR``,
  ``--devices N``), each with its field's docstring and true default in ``--help``, and its allowed values where the
  field has a fixed set (a ``Literal`` type or ``metadata={"choices": ...}``), checked at parse time; ``--quick``
  applies the experiment's quick overrides, explicit flags win over both;
- results come from committed code: on a tree with uncommitted changes to tracked files it refuses to run
  (:class:`DirtyTree`) unless ``--allow-dirty``, which the results JSON records with a hash of the diff;
- each finished seed is stored (atomically) under ``<out>/<name>/runs/<config hash>-<commit>[-dirty<diff hash>]/``;
  a run killed and restarted with the same command at the same code skips finished seeds, and ``run_seed`` resumes
  from its last :class:`Checkpoint` (msgpack, never pickle); a damaged seed record or checkpoint is reported with its
  path (a ``WARNING`` line) and that seed is recomputed;
- one ``<out>/<name>/<timestamp>.json`` with the config, seeds, per-seed metrics, mean/std of every scalar metric,
  git SHA (and ``allow_dirty`` / ``diff_hash``), library versions, device kind and cores, and a PNG made from that
  JSON by the experiment's ``plot``.
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
import sys
import time
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from jeq.io import (
    CHECKPOINT_MAGIC,
    REPO_ROOT,
    UnreadableFile,
    atomic_write_bytes,
    atomic_write_json,
    decode_state,
    device_info,
    dumps_checkpoint,
    encode_state,
    git_sha,
    loads_checkpoint,
    versions,
)


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
    allow_dirty: bool = False
    """Run even though tracked files have uncommitted changes (recorded in the JSON; finished seeds are then reused
    only for the identical diff)."""


NOT_RESULTS = ("seeds", "out", "coordinator", "num_processes", "process_id", "allow_dirty")
"""Config fields that do not change results: left out of the resume hash (:func:`config_hash`) and of the command
that identifies a run in the README table (``experiments.report``)."""


# ----------------------------------------------------------------------------------------------- checkpoints


class DirtyTree(SystemExit):
    """:func:`run` refused to run on uncommitted changes without ``--allow-dirty``: like an argparse error, a
    ``SystemExit`` whose message is printed without a traceback (status 1)."""


SEED_RECORD_FORMAT = 1
"""Version of the ``seed_<n>.json`` records :func:`run` writes (``{"seed", "seconds", "metrics", "format"}``)."""


def read_seed_record(payload: bytes, where: str) -> dict:
    """A finished seed's record from its bytes; :class:`UnreadableFile` (naming ``where``) when it is truncated, not
    JSON, or from another format version."""
    try:
        record = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UnreadableFile(f"{where}: unreadable seed record ({err})") from err
    if not isinstance(record, dict) or record.get("format") != SEED_RECORD_FORMAT:
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise UnreadableFile(f"{where}: seed record format {found!r}, expected {SEED_RECORD_FORMAT}")
    if not isinstance(record.get("metrics"), dict) or not _is_scalar(record.get("seconds")):
        raise UnreadableFile(f"{where}: seed record without its metrics or seconds")
    return record


def warn(message: str) -> None:
    """A ``WARNING`` line on stderr (not ``warnings.warn``: a damaged file is reported and repaired, not an error)."""
    print(f"WARNING: {message}", file=sys.stderr, flush=True)


def code_version() -> str:
    """:func:`jeq.io.git_sha` of the checkout holding this jeq (``-dirty`` with uncommitted changes); an installed
    wheel (no ``.git`` beside the package, so any git repository around site-packages is someone else's) is
    ``jeq-<version>``."""
    if (REPO_ROOT / ".git").exists():
        return git_sha()
    return "jeq-" + versions()["jeq"]


def diff_hash(root: str | os.PathLike = REPO_ROOT) -> str:
    """12 hex digits of SHA-256 over ``git diff HEAD --binary`` (the uncommitted changes to tracked files)."""
    import subprocess

    diff = subprocess.run(["git", "diff", "HEAD", "--binary"], cwd=root, capture_output=True, timeout=60,
                          check=True).stdout
    return hashlib.sha256(diff).hexdigest()[:12]


def from_process_zero(payload: bytes | None) -> bytes | None:
    """Process 0's ``payload`` on every process of a multi-host run (the identity with one process).

    Each host reads its own files, and after a kill the hosts' checkpoints (or their filesystems) may disagree;
    resuming from process 0's copy keeps every process on the same step, as the collectives require. Only bytes
    travel, and every process decodes them with :func:`loads_checkpoint` (never unpickled).
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

    The state is any pytree of arrays and plain Python values (see :func:`encode_state`); JAX arrays are brought to
    host memory and the file is ``flax.serialization`` msgpack behind a version header, never a pickle. Writes are
    atomic, so a kill during ``save`` leaves the previous checkpoint intact. In a multi-host run every process loads
    process 0's checkpoint (:func:`from_process_zero`). A file that cannot be read back (a pickle, another version,
    truncated) raises :class:`UnreadableFile` naming its path; :func:`run` then warns and recomputes the seed.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = pathlib.Path(path)

    def load(self, default: Any = None) -> Any:
        """The last saved state, or ``default`` when nothing was saved yet."""
        payload = from_process_zero(self.path.read_bytes() if self.path.exists() else None)
        if payload is None:
            return default
        try:
            return loads_checkpoint(payload, str(self.path))
        except UnreadableFile as err:
            err.path = self.path
            raise

    def save(self, state: Any) -> None:
        """Persist ``state`` (atomically); ``TypeError`` for a value a checkpoint cannot hold."""
        atomic_write_bytes(self.path, dumps_checkpoint(state))

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


def field_docs(config_cls: type) -> dict[str, str]:
    """Each dataclass field's attribute docstring (the string literal under ``name: type = default``), read with
    ``ast`` from the class and its bases; a subclass's docstring wins over its base's."""
    import ast
    import inspect
    import textwrap

    docs: dict[str, str] = {}
    for cls in reversed(config_cls.__mro__):
        if not dataclasses.is_dataclass(cls) or cls is object:
            continue
        try:
            source = textwrap.dedent(inspect.getsource(cls))
        except (OSError, TypeError):
            continue
        body = ast.parse(source).body[0].body
        for node, after in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                docs[node.target.id] = " ".join(inspect.cleandoc(after.value.value).split())
    return docs


def field_choices(field: dataclasses.Field, tp: Any) -> tuple | None:
    """The fixed set of values a field takes: a ``Literal`` type (also inside ``tuple[...]`` / ``Optional``), or
    ``metadata={"choices": ...}`` on the dataclass field."""
    if "choices" in field.metadata:
        return tuple(field.metadata["choices"])
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return typing.get_args(tp)
    if origin in (tuple, typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if arg is not type(None) and arg is not Ellipsis:
                found = field_choices(dataclasses.field(), arg)
                if found:
                    return found
    return None


def _shown(value: Any) -> str:
    """A default as it would be typed on the command line."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return " ".join(_shown(v) for v in value) if value else "empty"
    if value == "":
        return '""'
    return str(value)


def build_parser(config_cls: type, *, description: str | None = None, prog: str | None = None
                 ) -> argparse.ArgumentParser:
    """An argparse parser with one flag per dataclass field; unspecified flags parse to ``None``.

    Each flag's help is the field's attribute docstring (:func:`field_docs`) and its true default, shown once; a field
    with a fixed set of values (:func:`field_choices`) lists them and rejects anything else at parse time.
    """
    parser = argparse.ArgumentParser(description=description, prog=prog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    hints = typing.get_type_hints(config_cls)
    docs = field_docs(config_cls)
    for field in dataclasses.fields(config_cls):
        flag = "--" + field.name.replace("_", "-")
        tp = hints[field.name]
        doc = docs.get(field.name) or f"{field.name.replace('_', ' ')} (undocumented field)"
        default = field.default if field.default is not dataclasses.MISSING else (
            field.default_factory() if field.default_factory is not dataclasses.MISSING else None)
        help_text = f"{doc} (default: {_shown(default)})".replace("%", "%%")
        if tp is bool:
            parser.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction, default=None,
                                help=help_text)
            continue
        conv, many = _field_parser(tp)
        choices = field_choices(field, tp)
        parser.add_argument(flag, dest=field.name, type=conv, nargs="+" if many else None, default=None,
                            choices=choices, metavar=("{" + ",".join(map(str, choices)) + "}") if choices else None,
                            help=help_text)
    return parser


def parse_config(config_cls: type, argv: list[str] | None, *, quick: Mapping[str, Any] | None = None,
                 description: str | None = None, prog: str | None = None) -> Any:
    """Config from defaults, then ``quick`` overrides when ``--quick`` is given, then explicit flags."""
    if not (dataclasses.is_dataclass(config_cls) and issubclass(config_cls, BaseConfig)):
        raise TypeError(f"experiments.harness: {config_cls!r} must be a dataclass subclassing BaseConfig")
    parser = build_parser(config_cls, description=description, prog=prog)
    args = parser.parse_args(argv)
    explicit = {k: (tuple(v) if isinstance(v, list) else v) for k, v in vars(args).items() if v is not None}
    values: dict[str, Any] = {}
    if explicit.get("quick"):
        unknown = set(quick or {}) - {f.name for f in dataclasses.fields(config_cls)}
        if unknown:
            raise TypeError(f"experiments.harness: quick overrides name unknown fields {sorted(unknown)}")
        values.update(quick or {})
    values.update(explicit)
    try:
        config = config_cls(**values)
    except ValueError as error:  # flags that do not fit together: an argparse error (status 2), no traceback
        parser.error(str(error))
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


def _prog(name: str) -> str:
    """How the user started experiment ``name``: ``jeq run name`` from an installed wheel, else ``python -m``."""
    return f"jeq run {name}" if (__package__ or "").startswith("jeq.") else f"python -m experiments.{name}"


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
        module = sys.modules.get(getattr(run_seed, "__module__", ""))
        config = parse_config(config_cls, sys.argv[1:] if argv is None else argv, quick=quick,
                              description=getattr(module, "__doc__", None), prog=_prog(name))
    if config.coordinator:
        from jeq import sharding

        sharding.initialize_multihost(config.coordinator, config.num_processes, config.process_id)
    out_dir = pathlib.Path(config.out) / name
    version = code_version()
    code_key, diff = version.split("-dirty")[0][:12], None
    if version.endswith("-dirty"):
        if not config.allow_dirty:
            raise DirtyTree(
                f"experiments.{name}: the git tree at {REPO_ROOT} has uncommitted changes to tracked files, so the "
                "results would not come from any commit. Commit (or stash) them, or pass --allow-dirty to run anyway "
                "(recorded in the results JSON; the run folder is then keyed on a hash of the diff).")
        diff = diff_hash()
        code_key += f"-dirty{diff}"
    # Finished seeds and checkpoints are reused only by the same configuration at the same code (commit, plus the
    # uncommitted diff when --allow-dirty): a rerun after a code change recomputes every seed instead of stamping old
    # numbers with the new code.
    run_dir = out_dir / "runs" / f"{config_hash(config)}-{code_key}"
    atomic_write_json(run_dir / "config.json", dataclasses.asdict(config))
    per_seed: dict[str, Any] = {}
    seed_seconds: dict[str, float] = {}
    start = time.perf_counter()
    load_at_start = os.getloadavg()[0]  # others' work on the machine stretches wall_s: recorded beside it
    for seed in config.seeds:
        seed_file = run_dir / f"seed_{seed}.json"
        finished = from_process_zero(seed_file.read_bytes() if seed_file.exists() else None)
        if finished is not None:
            try:
                stored = read_seed_record(finished, str(seed_file))
            except UnreadableFile as err:
                warn(f"[{name}] seed {seed}: {err}; recomputing the seed")
            else:
                per_seed[str(seed)], seed_seconds[str(seed)] = stored["metrics"], stored["seconds"]
                print(f"[{name}] seed {seed}: finished earlier, loaded {seed_file}", file=sys.stderr)
                continue
        ckpt = Checkpoint(run_dir / f"seed_{seed}.ckpt")
        t0 = time.perf_counter()
        try:
            metrics = dict(run_seed(config, seed, ckpt))
        except UnreadableFile as err:
            if getattr(err, "path", None) != ckpt.path:
                raise
            warn(f"[{name}] seed {seed}: {err}; recomputing the seed from the start")
            ckpt.clear()
            t0 = time.perf_counter()
            metrics = dict(run_seed(config, seed, ckpt))
        seconds = time.perf_counter() - t0
        atomic_write_json(seed_file, {"seed": seed, "seconds": seconds, "metrics": metrics,
                                      "format": SEED_RECORD_FORMAT})
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
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average": {"start": load_at_start, "end": os.getloadavg()[0]},
        "git_sha": version,
        "allow_dirty": bool(config.allow_dirty),
        "diff_hash": diff,
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
