"""Batched evaluation of a target algorithm: every (θ, seed) run of a batch in one vmapped call per shape group.

    M[i, j] = best objective found by A(θ_i) with key ``keys[j]`` on instance ``j mod count`` of the problem,
              after at most ``evaluations`` objective evaluations.

The batch of θ is grouped by the values of the grouped (shape-changing) hyper-parameters, e.g. population size. Each
group is one compiled ``jax.vmap`` over its flattened (θ, seed) rows, with the generations in ``lax.scan``; the row
count is padded up to a power of two (the padding repeats a real row and is dropped) so that batches of varying
composition reuse a handful of compiled shapes. Seed ``j`` uses the same key and instance for every θ
(common random numbers), so differences between θ are not drowned by seed noise.

With ``devices=N`` the rows of each group are split over a 1-D :func:`jeq.sharding.data_mesh` (padded to a multiple of
``N``): every run is independent, so the sharded result equals the one-device result.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jeq import sharding, validate
from jeq.tune.algorithms import Algorithm, get_algorithm, validate_theta
from jeq.tune.problems import Problem

__all__ = ["evaluate", "group_thetas"]

_COMPILED: dict[tuple, Any] = {}



def group_thetas(algorithm: Algorithm, thetas: Sequence[Mapping[str, Any]]) -> dict[tuple, list[int]]:
    """Positions of the θ in ``thetas`` per tuple of grouped values (in the algorithm's hyper-parameter order).

    >>> from jeq.tune import get_algorithm, group_thetas
    >>> thetas = [{"population_size": 16}, {"population_size": 4}, {"population_size": 16, "step_size": 0.1}]
    >>> group_thetas(get_algorithm("sa"), thetas)  # runs that share a compiled shape
    {(16,): [0, 2], (4,): [1]}
    """
    grouped = [hp.name for hp in algorithm.hyperparameters if hp.grouped]
    groups: dict[tuple, list[int]] = collections.defaultdict(list)
    for i, theta in enumerate(thetas):
        groups[tuple(theta[name] for name in grouped)].append(i)
    return dict(groups)


def _traced_arrays(algorithm: Algorithm, thetas: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """(n,) arrays of the traced hyper-parameters: float32 values, int32 choice indices for categorical ones."""
    out = {}
    for hp in algorithm.hyperparameters:
        if hp.grouped:
            continue
        if hp.kind == "categorical":
            out[hp.name] = np.asarray([hp.choices.index(t[hp.name]) for t in thetas], np.int32)
        elif hp.kind == "int":
            out[hp.name] = np.asarray([t[hp.name] for t in thetas], np.int32)
        else:
            out[hp.name] = np.asarray([t[hp.name] for t in thetas], np.float32)
    return out


def _compiled_group(algorithm: Algorithm, problem: Problem, static: tuple, evaluations: int, mesh: Any,
                    args: tuple, fast_compile: bool, impl: Any) -> Any:
    """The compiled, row-vmapped run for one group and one row count (cached per shape)."""
    shapes = jax.tree.map(lambda a: (a.shape, str(a.dtype)), args)
    cache_key = (algorithm.name, algorithm.run, problem.name, problem.objective, problem.dimension, problem.low,
                 problem.high, static, evaluations, None if mesh is None else tuple(d.id for d in mesh.devices.flat),
                 str(shapes), fast_compile, str(impl))
    if cache_key in _COMPILED:
        return _COMPILED[cache_key]
    names = [hp.name for hp in algorithm.hyperparameters if hp.grouped]
    static_values = dict(zip(names, static))

    def one(traced, key_data, data):
        key = jax.random.wrap_key_data(key_data, impl=impl)
        return algorithm.run(static_values, traced, key, problem.objective, data, low=problem.low, high=problem.high,
                             dimension=problem.dimension, evaluations=evaluations)

    rows = jax.vmap(one)
    if mesh is None:
        jitted = jax.jit(rows)
    else:
        jitted = jax.jit(rows, in_shardings=(sharding.batch_sharding(mesh),) * 3,
                         out_shardings=sharding.replicated(mesh))
    options = {"xla_backend_optimization_level": 0} if fast_compile and jax.default_backend() == "cpu" else None
    lowered = jitted.lower(*args)
    compiled = lowered.compile(options) if options else lowered.compile()
    _COMPILED[cache_key] = compiled
    return compiled


def _bucket(n: int, minimum: int) -> int:
    """The smallest power of two >= max(n, minimum)."""
    return 1 << max(0, (max(n, minimum) - 1).bit_length())


def evaluate(
    algorithm: str | Algorithm,
    problem: Problem,
    thetas: Sequence[Mapping[str, Any]],
    keys: jax.Array,
    *,
    evaluations: int,
    devices: int | None = None,
    fast_compile: bool = True,
    min_rows: int = 16,
) -> np.ndarray:
    """``M[i, j]``: final best objective of algorithm A(θ_i) run with ``keys[j]`` on instance ``j mod count``.

    Args:
        algorithm: registry name (``"de"``, ``"ga"``, ``"pso"``, ``"sa"``) or an :class:`Algorithm`.
        problem: instances from :func:`jeq.tune.make_problem`.
        thetas: the θ to run, as dicts name -> value (names left out take their defaults).
        keys: (n_seed,) ``jax.random.key`` array, one per seed.
        evaluations: objective evaluations per run (the algorithm uses the largest multiple of its population size
            that fits).
        devices: shard the (θ, seed) rows over this many devices (``None``: the default device, no mesh).
        fast_compile: on CPU, compile with XLA's backend optimisation level 0: about 6x faster compilation for
            similar run time at these sizes (compilation dominates a tuning run on CPU). Results agree with the
            optimised build to float32 rounding, not bit for bit; on other backends this flag does nothing.
        min_rows: each group's (θ, seed) rows are padded to a power of two >= this: a larger value means fewer
            distinct compiled shapes (one per group when it covers the whole batch) at the cost of padded work.

    Returns:
        (n_theta, n_seed) float64 numpy array.

    Raises:
        ArgumentError: unknown algorithm, θ out of range, empty batch, bad keys, a budget too small for two
            generations.

    >>> import jax
    >>> import numpy as np
    >>> from jeq.tune import evaluate, make_problem
    >>> sphere = make_problem("sphere", dimension=10, count=2)
    >>> keys = jax.random.split(jax.random.key(0), 2)
    >>> thetas = [{"step_size": 1.0}, {"step_size": 0.05}]  # simulated annealing, two step sizes
    >>> M = evaluate("sa", sphere, thetas, keys, evaluations=64)
    >>> M.shape, bool((M >= sphere.optimum).all())
    ((2, 2), True)
    >>> bool(np.array_equal(M, evaluate("sa", sphere, thetas, keys, evaluations=64)))  # same keys, same runs
    True
    """
    where = "jeq.tune.evaluate"
    algorithm = get_algorithm(algorithm)
    if not isinstance(problem, Problem):
        validate.fail(where, "problem", problem, "must be a jeq.tune.Problem (see jeq.tune.make_problem)")
    evaluations = validate.integer(where, "evaluations", evaluations, low=1)
    if len(thetas) == 0:
        validate.fail(where, "thetas", thetas, "must hold at least one θ")
    thetas = [validate_theta(algorithm, t, where=where) for t in thetas]
    if not (isinstance(keys, jax.Array) and jnp.issubdtype(keys.dtype, jax.dtypes.prng_key)):
        validate.fail(where, "keys", keys, "must be a (n_seed,) array of jax.random.key")
    if keys.ndim != 1:
        validate.fail(where, "keys", f"<key array of shape {keys.shape}>", "must have 1 axis (one key per seed)")
    n_seed = keys.shape[0]
    if n_seed == 0:
        validate.fail(where, "keys", keys, "must hold at least one key")
    min_rows = validate.integer(where, "min_rows", min_rows, low=1)
    mesh = None
    if devices is not None:
        devices = validate.integer(where, "devices", devices, low=1)
        mesh = sharding.data_mesh(devices)
    key_data = np.asarray(jax.random.key_data(keys))
    impl = jax.random.key_impl(keys)
    instance_index = np.arange(n_seed) % problem.count
    out = np.full((len(thetas), n_seed), np.nan)
    groups = group_thetas(algorithm, thetas)
    grouped_names = [hp.name for hp in algorithm.hyperparameters if hp.grouped]
    for static in groups:
        size = dict(zip(grouped_names, static)).get("population_size", 1)
        if evaluations // size < 2:
            validate.fail(where, "evaluations", evaluations, f"must allow >= 2 generations of population_size={size}")
    for static, members in groups.items():
        n_rows = len(members) * n_seed
        traced = _traced_arrays(algorithm, [thetas[i] for i in members])
        rows = ({k: np.repeat(v, n_seed) for k, v in traced.items()},
                np.tile(key_data, (len(members), 1)),
                jax.tree.map(lambda leaf: np.tile(leaf[instance_index], (len(members),) + (1,) * (leaf.ndim - 1)),
                             problem.data))
        # Pad the rows (repeating the last one) to a power of two, and a multiple of the device count.
        multiple = _bucket(n_rows, min_rows)
        if mesh is not None:
            multiple = int(np.lcm(multiple, mesh.devices.size))
        rows, _ = sharding.pad_batch(rows, multiple)
        if mesh is not None:
            rows = tuple(jax.device_put(r, sharding.batch_sharding(mesh)) for r in rows)
        fn = _compiled_group(algorithm, problem, static, evaluations, mesh, rows, fast_compile, impl)
        result = np.asarray(fn(*rows), np.float64)[:n_rows].reshape(len(members), n_seed)
        out[members] = result
    return out
