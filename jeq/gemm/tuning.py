"""User API: tune a GEMM shape live (``tune``) and call the tuned kernel (``matmul``).

``tune(m, n, k)`` searches the configuration space of a kernel family with an ask/tell strategy, measuring every
proposed configuration through the on-disk cache of :mod:`jeq.gemm.measurement` (so a second tune measures nothing and a
killed tune resumes: the strategy is deterministic given its seed and the cached costs, so it replays its trajectory
from the cache and continues where it stopped). The ``top_k`` fastest configurations are then re-ranked with paired,
interleaved timing together with ``jnp.dot`` (``jeq.bench.interleave``), which decides the winner and its speed
relative to ``jnp.dot``. The outcome is recorded per (shape, dtype, machine); ``matmul(x, y)`` uses it when the tuned
kernel beat ``jnp.dot`` and falls back to ``jnp.dot`` otherwise (:func:`record_tuned` writes that record,
:func:`tuned_kernel` reads it).
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jeq import bench, validate
from jeq.gemm.ask_tell import SearchResult, Strategy, search
from jeq.gemm.baselines import cost_model, genetic, grid_search, random_search, simulated_annealing
from jeq.gemm.best_first import gbfs
from jeq.gemm.kernels import KernelFamily, check_operands, family
from jeq.gemm.measurement import (
    DTYPES, Cache, Measurement, digest, dtype_name, environment, measure, measurement_key, reference,
)

__all__ = ["STRATEGIES", "TuneResult", "autotune_path", "matmul", "record_tuned", "tune", "tuned_kernel"]

def _na2c(space: Any, **options: Any) -> Strategy:
    """:func:`jeq.gemm.neighbourhood_a2c.na2c`, imported on first use (it needs flax and optax)."""
    from jeq.gemm.neighbourhood_a2c import na2c

    return na2c(space, **options)


STRATEGIES: dict[str, Callable[..., Strategy]] = {
    "random": random_search,
    "grid": grid_search,
    "annealing": simulated_annealing,
    "genetic": genetic,
    "cost_model": cost_model,
    "gbfs": gbfs,
    "na2c": _na2c,
}
"""Strategy factories by name: ``factory(space, **options) -> Strategy``."""

_BUILTIN = ("xla_tiled", "pallas", "pallas_interpret", "xla_flags")


class TuneResult(NamedTuple):
    """Outcome of :func:`tune`.

    >>> from jeq.gemm import TuneResult
    >>> TuneResult._fields
    ('config', 'kernel', 'time_s', 'reference_s', 'measured', 'search', 'family')
    """

    config: dict[str, Any]
    """The winning configuration (axis -> parts, knob -> value)."""
    kernel: Callable[[jax.Array, jax.Array], jax.Array]
    """The winning kernel, jitted (with the configuration's XLA options)."""
    time_s: float
    """Its median time in the interleaved re-ranking."""
    reference_s: float
    """``jnp.dot``'s median time in the same interleaved run."""
    measured: int
    """Configurations measured by this call (cache misses)."""
    search: SearchResult
    """The search history (indices and costs in measurement order)."""
    family: str
    """Kernel family name."""

    @property
    def speedup(self) -> float:
        """``jnp.dot`` time / tuned time (> 1: the tuned kernel is faster)."""
        return self.reference_s / self.time_s


def _best_key(shape: tuple[int, int, int], dtype: str) -> dict[str, Any]:
    return {"shape": list(shape), "dtype": dtype, **environment()}


def autotune_path(cache: Cache, kernel: KernelFamily, key: Mapping[str, Any]) -> pathlib.Path | None:
    """Where XLA's GEMM autotune results of one measured configuration live: ``<cache>/xla_autotune/<digest>.textproto``
    for an ``xla_flags`` configuration with autotuning on, on a GPU backend; ``None`` otherwise (nothing is dumped).

    ``key`` is the configuration's :func:`~jeq.gemm.measurement.measurement_key`. :func:`tune` dumps the file when it
    measures the configuration and loads it when it rebuilds the kernel, so the final kernel uses the tiling that was
    timed.
    """
    if kernel.name != "xla_flags" or jax.default_backend() != "gpu" or not key["config"].get("xla_gpu_autotune_level"):
        return None
    return cache.directory / "xla_autotune" / f"{digest(key)}.textproto"


def _autotune_options(cache: Cache, kernel: KernelFamily, key: Mapping[str, Any], mode: str) -> dict[str, Any]:
    """XLA options that dump (``mode="dump"``) or load (``"load"``, when it exists) :func:`autotune_path`."""
    path = autotune_path(cache, kernel, key)
    if path is None:
        return {}
    if mode == "dump":
        path.parent.mkdir(parents=True, exist_ok=True)
        return {"xla_gpu_dump_autotune_results_to": str(path)}
    return {"xla_gpu_load_autotune_results_from": str(path)} if path.exists() else {}


def _jit(kernel: KernelFamily, config: Mapping[str, Any], extra: Mapping[str, Any]) -> Callable:
    options = {**kernel.compiler_options(config), **extra}
    return jax.jit(kernel.build(config), compiler_options=options or None)


def tune(
    m: int,
    n: int,
    k: int,
    *,
    dtype: Any = "float32",
    strategy: str | Callable[..., Strategy] = "gbfs",
    budget: int = 32,
    kernel: str | KernelFamily | None = None,
    seed: int = 0,
    cache_dir: str | None = None,
    time_budget_s: float = 0.05,
    top_k: int = 4,
    rerank_budget_s: float = 0.5,
    strategy_options: Mapping[str, Any] | None = None,
) -> TuneResult:
    """Tune ``C = A B`` with ``A`` (m, k), ``B`` (k, n) by searching the kernel family's configuration space.

    Args:
        m, n, k: GEMM dimensions (positive ints).
        dtype: ``float32``, ``bfloat16`` or ``float16``.
        strategy: a name in :data:`STRATEGIES` or a factory ``(space, **options) -> Strategy``.
        budget: maximum number of configurations measured (the same accounting for every strategy).
        kernel: family name (``xla_tiled``, ``pallas``, ``pallas_interpret``, ``xla_flags``), a
            :class:`KernelFamily`, or ``None`` for the backend default.
        seed: seeds the strategy (``jax.random.key(seed)``); the same seed replays the same trajectory.
        cache_dir: measurement cache (default ``$JEQ_GEMM_CACHE`` or ``~/.cache/jeq/gemm``).
        time_budget_s: timing budget per configuration.
        top_k: how many of the fastest configurations are re-ranked by interleaved timing with ``jnp.dot``.
        rerank_budget_s: budget of that interleaved run.
        strategy_options: keyword arguments of the strategy factory.

    Returns:
        :class:`TuneResult` (best configuration, jitted kernel, times, number of new measurements, history).

    >>> import tempfile
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> from jeq.gemm import tune
    >>> fast = dict(kernel="xla_tiled", strategy="grid", budget=3, time_budget_s=0.01, rerank_budget_s=0.05, top_k=1)
    >>> with tempfile.TemporaryDirectory() as cache:
    ...     first = tune(16, 16, 16, cache_dir=cache, **fast)
    ...     again = tune(16, 16, 16, cache_dir=cache, **fast)  # every measurement comes from the cache
    >>> first.measured, again.measured, again.config == first.config
    (3, 0, True)
    >>> x = jnp.ones((16, 16))
    >>> bool(np.allclose(first.kernel(x, x), x @ x)), first.time_s > 0, first.reference_s > 0
    (True, True, True)
    """
    where = "jeq.gemm.tune"
    for name, value in (("m", m), ("n", n), ("k", k)):
        validate.integer(where, name, value, low=1)
    dtype = dtype_name(where, dtype)
    validate.integer(where, "budget", budget, low=1)
    validate.integer(where, "top_k", top_k, low=1)
    validate.positive(where, "time_budget_s", time_budget_s)
    validate.positive(where, "rerank_budget_s", rerank_budget_s)
    if isinstance(strategy, str):
        factory = STRATEGIES[validate.one_of(where, "strategy", strategy, STRATEGIES)]
    elif callable(strategy):
        factory = strategy
    else:
        validate.fail(where, "strategy", strategy, f"must be one of {sorted(STRATEGIES)} or a factory")
    fam = family(kernel)
    shape = (int(m), int(n), int(k))
    space = fam.space(*shape)
    cache = Cache(cache_dir)
    kx, ky = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (shape[0], shape[2]), jnp.float32).astype(dtype)
    y = jax.random.normal(ky, (shape[2], shape[1]), jnp.float32).astype(dtype)
    expected = reference(x, y)
    counters = {"measured": 0, "best": float("inf")}
    records: dict[int, Measurement] = {}

    def evaluate(genomes: np.ndarray) -> np.ndarray:
        costs = []
        for g, idx in zip(genomes, space.indices(genomes)):
            config = space.config(g)
            key = measurement_key(fam, config, shape, dtype)
            result = cache.get_measurement(key)
            if result is None:
                incumbent = counters["best"] if np.isfinite(counters["best"]) else None
                result = measure(
                    fam, config, x, y, expected=expected, time_budget_s=time_budget_s, incumbent_s=incumbent,
                    compiler_options=_autotune_options(cache, fam, key, "dump"),
                )
                cache.put_measurement(key, result)
                counters["measured"] += 1
            records[int(idx)] = result
            counters["best"] = min(counters["best"], result.cost)
            costs.append(result.cost)
        return np.asarray(costs)

    history = search(
        factory(space, **dict(strategy_options or {})), evaluate, budget=int(budget), key=jax.random.key(seed)
    )
    ok = np.isfinite(history.costs)
    if history.costs.size == 0:
        raise ValueError(f"jeq.gemm.tune({m}, {n}, {k}): nothing was measured: the {fam.name} space has no valid "
                         f"configuration for this shape ({space.count()} valid of {space.size}), or the search "
                         "stopped before its first measurement")
    if not ok.any():
        errors = {records[int(i)].error for i in history.indices[:5]}
        raise RuntimeError(f"jeq.gemm.tune: all {history.costs.size} configurations failed, e.g. {sorted(errors)[:3]}")
    order = np.argsort(history.costs, kind="stable")[: min(top_k, int(ok.sum()))]
    candidates = [space.config(space.genomes(history.indices[order[i : i + 1]])[0]) for i in range(order.size)]
    keys = [measurement_key(fam, c, shape, dtype) for c in candidates]
    rerank_key = {"family": fam.name, "source": fam.source, "candidates": keys, "budget_s": rerank_budget_s}
    ranked = cache.get("rerank", rerank_key)
    if ranked is None:
        fns = [_jit(fam, c, _autotune_options(cache, fam, kk, "load")) for c, kk in zip(candidates, keys)]
        timings = bench.interleave([*fns, jnp.dot], [(x, y)] * (len(fns) + 1), budget_s=rerank_budget_s)
        ranked = {"times": [t.median_s for t in timings[:-1]], "reference_s": timings[-1].median_s}
        cache.put("rerank", rerank_key, ranked)
    win = int(np.argmin(ranked["times"]))
    best, best_s, ref_s = candidates[win], float(ranked["times"][win]), float(ranked["reference_s"])
    if fam.name in _BUILTIN:
        record_tuned(*shape, dtype=dtype, kernel=fam, config=best, time_s=best_s, reference_s=ref_s,
                     cache_dir=cache_dir)
    kernel_fn = _jit(fam, best, _autotune_options(cache, fam, keys[win], "load"))
    return TuneResult(best, kernel_fn, best_s, ref_s, counters["measured"], history, fam.name)


_MATMUL: dict[str, Callable] = {}
"""Kernels :func:`tuned_kernel` has looked up in this process, by cache folder and record key (cleared on a record)."""


def record_tuned(
    m: int,
    n: int,
    k: int,
    *,
    dtype: Any,
    kernel: KernelFamily,
    config: Mapping[str, Any],
    time_s: float,
    reference_s: float,
    cache_dir: str | None = None,
) -> None:
    """Record the outcome of tuning ``C = A B`` (``A`` (m, k), ``B`` (k, n)) on this machine for :func:`matmul`.

    The record keeps ``config`` only when the tuned kernel won, ``time_s < reference_s`` (``jnp.dot``'s time in the
    same interleaved run); :func:`tune` calls this for its built-in families. ``kernel`` must be a built-in family
    (``matmul`` rebuilds the kernel from the family's name and checks its source hash).

    >>> import tempfile
    >>> import jax.numpy as jnp
    >>> from jeq.gemm import family, record_tuned, tuned_kernel
    >>> config = {"m": (2, 16), "n": (1, 16), "k": (4, 16)}
    >>> with tempfile.TemporaryDirectory() as cache:
    ...     record_tuned(32, 16, 64, dtype="float32", kernel=family("xla_tiled"), config=config, time_s=2.0,
    ...                  reference_s=1.0, cache_dir=cache)  # jnp.dot was faster
    ...     lost = tuned_kernel(32, 16, 64, cache_dir=cache)
    ...     record_tuned(32, 16, 64, dtype="float32", kernel=family("xla_tiled"), config=config, time_s=1.0,
    ...                  reference_s=2.0, cache_dir=cache)  # the tuned kernel won
    ...     won = tuned_kernel(32, 16, 64, cache_dir=cache)
    >>> lost is jnp.dot, won is jnp.dot
    (True, False)
    """
    where = "jeq.gemm.record_tuned"
    for name, value in (("m", m), ("n", n), ("k", k)):
        validate.integer(where, name, value, low=1)
    dtype = dtype_name(where, dtype)
    if kernel.name not in _BUILTIN:
        validate.fail(where, "kernel", kernel.name, f"must be a built-in family, one of {list(_BUILTIN)}")
    won = validate.positive(where, "time_s", time_s) < validate.positive(where, "reference_s", reference_s)
    Cache(cache_dir).put(
        "best", _best_key((int(m), int(n), int(k)), dtype),
        {"family": kernel.name, "source": kernel.source, "config": dict(config) if won else None,
         "time_s": time_s, "reference_s": reference_s},
    )
    _MATMUL.clear()


def tuned_kernel(m: int, n: int, k: int, *, dtype: Any = "float32", cache_dir: str | None = None) -> Callable:
    """The kernel :func:`matmul` uses for ``(m, k) @ (k, n)`` in ``dtype`` on this machine: the tuned kernel recorded
    by :func:`record_tuned` (jitted with its XLA options) when it beat ``jnp.dot`` and its family's source is
    unchanged, else ``jnp.dot`` itself. Looked up once per process.

    >>> import tempfile
    >>> import jax.numpy as jnp
    >>> from jeq.gemm import tuned_kernel
    >>> with tempfile.TemporaryDirectory() as cache:  # nothing recorded: jnp.dot
    ...     print(tuned_kernel(8, 8, 8, cache_dir=cache) is jnp.dot)
    True
    """
    where = "jeq.gemm.tuned_kernel"
    shape = tuple(validate.integer(where, name, value, low=1) for name, value in (("m", m), ("n", n), ("k", k)))
    try:
        dtype = jnp.dtype(dtype).name
    except TypeError:
        validate.fail(where, "dtype", dtype, "must be a dtype or its name")
    memo = f"{cache_dir}|{digest(_best_key(shape, dtype))}"
    fn = _MATMUL.get(memo)
    if fn is None:
        fn = jnp.dot
        record = Cache(cache_dir).get("best", _best_key(shape, dtype)) if dtype in DTYPES else None
        if record is not None and record["config"] is not None and record["family"] in _BUILTIN:
            fam = family(record["family"])
            if fam.source == record["source"]:
                config = {a: tuple(v) if isinstance(v, list) else v for a, v in record["config"].items()}
                key = measurement_key(fam, config, shape, dtype)
                fn = _jit(fam, config, _autotune_options(Cache(cache_dir), fam, key, "load"))
        _MATMUL[memo] = fn
    return fn


def matmul(x: jax.Array, y: jax.Array, *, cache_dir: str | None = None) -> jax.Array:
    """``x @ y`` with the tuned kernel recorded for this shape, dtype and machine, else ``jnp.dot``.

    The recorded kernel is used only if it beat ``jnp.dot`` in :func:`tune`'s interleaved re-ranking and its family's
    source is unchanged (see :func:`tuned_kernel`). Works on concrete arrays and under ``jax.jit`` (shapes are static).

    >>> import tempfile
    >>> import jax
    >>> import numpy as np
    >>> from jeq.gemm import family, matmul, record_tuned
    >>> x = np.sin(np.arange(2048.0)).reshape(32, 64).astype(np.float32)
    >>> y = np.cos(np.arange(1024.0)).reshape(64, 16).astype(np.float32)
    >>> with tempfile.TemporaryDirectory() as cache:
    ...     record_tuned(32, 16, 64, dtype="float32", kernel=family("xla_tiled"), config={"m": (2, 16), "n": (1, 16),
    ...                  "k": (4, 16)}, time_s=1.0, reference_s=2.0, cache_dir=cache)
    ...     tuned = jax.jit(lambda a, b: matmul(a, b, cache_dir=cache))(x, y)  # the recorded tiled kernel
    >>> tuned.shape, bool(np.allclose(tuned, x @ y, atol=1e-4))
    ((32, 16), True)
    """
    m, k, n = check_operands("jeq.gemm.matmul", x, y)
    if x.dtype != y.dtype:
        raise validate.ArgumentError(f"jeq.gemm.matmul(x, y): x dtype {x.dtype} and y dtype {y.dtype} differ")
    return tuned_kernel(m, n, k, dtype=x.dtype, cache_dir=cache_dir)(x, y)
