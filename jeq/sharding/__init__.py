"""Data parallelism over a mesh of devices, on JAX's own SPMD (``jax.jit`` + ``NamedSharding``), single or multi host.

The recipe every jeq training loop follows::

    mesh = data_mesh(4)                                  # 1-D mesh, axis "data"
    step = data_parallel(train_step, mesh, batch_argnums=(2, 3, 4))   # same jitted step, batch split over devices
    params, opt_state = replicate((params, opt_state), mesh)
    xb, yb, weight = shard_batch((xb, yb), mesh)         # pads to a multiple of the device count, weight 0 on padding
    params, opt_state, metrics = step(params, opt_state, xb, yb, weight)

Parameters are replicated, the batch is split along its leading axis, and XLA inserts the gradient all-reduce:
there is no hand-written communication and no ``pmap``. Losses weight each example (``weight`` is 1 for real
examples and 0 for padding) and divide by the weight sum, so a padded sharded batch gives the same result as the
unpadded batch on one device.

Multi-host: start every host with :func:`initialize_multihost` before any other JAX call (the experiments do it
from ``--coordinator``, ``--num-processes`` and ``--process-id``; see its docstring for a two-host command);
:func:`data_mesh` then spans all hosts' devices and :func:`shard_batch` moves to each host only the rows of the
global batch that its devices hold.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jeq import validate

DATA_AXIS = "data"
"""Name of the mesh axis the batch is split over."""


def data_mesh(devices: int | Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh with axis ``"data"`` over ``devices``: all of ``jax.devices()`` (every host) when ``None``,
    the first ``n`` when an int, or the given device list.

    >>> import jax
    >>> from jeq.sharding import data_mesh
    >>> mesh = data_mesh()
    >>> mesh.axis_names, mesh.devices.size == jax.device_count()
    (('data',), True)
    >>> data_mesh(jax.device_count() + 1)
    Traceback (most recent call last):
    ...
    jeq.validate.ArgumentError: jeq.sharding.data_mesh(devices=...): must be between 1 and the ... available ...
    """
    available = jax.devices()
    if devices is None:
        chosen = available
    elif isinstance(devices, int):
        if not 1 <= devices <= len(available):
            validate.fail(
                "jeq.sharding.data_mesh", "devices", devices,
                f"must be between 1 and the {len(available)} available {jax.default_backend()} device(s); on CPU, set "
                "XLA_FLAGS=--xla_force_host_platform_device_count=N before importing jax to simulate N devices",
            )
        chosen = available[:devices]
    else:
        chosen = list(devices)
        if not chosen:
            validate.fail("jeq.sharding.data_mesh", "devices", chosen, "must name at least one device")
    return Mesh(np.asarray(chosen), (DATA_AXIS,))


def batch_sharding(mesh: Mesh, *, axis: int = 0) -> NamedSharding:
    """Sharding that splits array axis ``axis`` (the batch axis; 1 for stacked minibatches ``(steps, batch, ...)``)
    over the ``"data"`` axis of ``mesh``.

    >>> from jeq.sharding import batch_sharding, data_mesh
    >>> tuple(batch_sharding(data_mesh(1)).spec), tuple(batch_sharding(data_mesh(1), axis=1).spec)
    (('data',), (None, 'data'))
    """
    axis = validate.integer("jeq.sharding.batch_sharding", "axis", axis, low=0)
    return NamedSharding(mesh, PartitionSpec(*([None] * axis), DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding that keeps a full copy on every device of ``mesh``.

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq.sharding import data_mesh, replicated
    >>> sharding = replicated(data_mesh())
    >>> tuple(sharding.spec), sharding.is_fully_replicated
    ((), True)
    """
    return NamedSharding(mesh, PartitionSpec())


def pad_batch(batch: Any, multiple: int, *, axis: int = 0) -> tuple[Any, np.ndarray]:
    """Pad every leaf of ``batch`` along ``axis`` to a multiple of ``multiple``; return ``(padded, weight)``.

    Padding entries repeat the last real example (so they are valid inputs: no NaN from all-zero rows), and
    ``weight`` (float32, shape ``leaf.shape[:axis + 1]`` after padding) is 1 for real examples and 0 for padding:
    multiply per-example losses and metrics by it and divide by its sum. ``axis=1`` pads stacked minibatches
    ``(steps, batch, ...)`` as fed to a ``lax.scan`` over an epoch.

    >>> import numpy as np
    >>> from jeq.sharding import pad_batch
    >>> x, y = np.arange(10.0).reshape(5, 2), np.array([0, 1, 2, 3, 4])
    >>> (xp, yp), weight = pad_batch((x, y), 4)
    >>> xp.shape, yp.tolist(), weight.tolist()  # padding repeats the last example, with weight 0
    ((8, 2), [0, 1, 2, 3, 4, 4, 4, 4], [1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    >>> float((weight * yp).sum() / weight.sum()), float(y.mean())  # weighted means ignore the padding
    (2.0, 2.0)
    """
    where = "jeq.sharding.pad_batch"
    multiple = validate.integer(where, "multiple", multiple, low=1)
    axis = validate.integer(where, "axis", axis, low=0)
    leaves = jax.tree.leaves(batch)
    if not leaves:
        raise validate.ArgumentError(f"{where}(batch): must hold at least one array, got none")
    heads = {tuple(np.shape(leaf)[: axis + 1]) if np.ndim(leaf) > axis else None for leaf in leaves}
    if len(heads) != 1 or None in heads:
        shapes = [np.shape(leaf) for leaf in leaves]
        raise validate.ArgumentError(f"{where}(batch): every leaf must have the same sizes up to the batch axis "
                                     f"{axis}, got shapes {shapes}")
    (head,) = heads
    n = head[axis]
    if n == 0:
        raise validate.ArgumentError(f"{where}(batch): must not be empty, got {n} examples on axis {axis}")
    padded_n = -(-n // multiple) * multiple

    def pad(leaf):
        leaf = np.asarray(leaf)
        if padded_n == n:
            return leaf
        last = np.take(leaf, [n - 1], axis=axis)
        return np.concatenate([leaf, np.repeat(last, padded_n - n, axis=axis)], axis=axis)

    weight = np.zeros(head[:axis] + (padded_n,), np.float32)
    weight[..., :n] = 1.0
    return jax.tree.map(pad, batch), weight


def shard_batch(batch: Any, mesh: Mesh, *, axis: int = 0) -> tuple[Any, ...]:
    """Pad the global ``batch`` along ``axis`` to a multiple of the mesh size and place it split over ``"data"``.

    Returns ``(*leaves_of_batch_as_given, weight)`` when ``batch`` is a tuple, else ``(batch, weight)``.
    Multi-host: every process passes the same global batch (jeq's loaders and minibatch orders are deterministic
    for a seed, so the processes agree) and each process transfers only the rows its own devices hold
    (``jax.make_array_from_callback``); on one host that is every row.

    >>> import numpy as np
    >>> from jeq.sharding import data_mesh, shard_batch
    >>> mesh = data_mesh()
    >>> x, y = np.ones((5, 3), np.float32), np.arange(5)
    >>> xs, ys, weight = shard_batch((x, y), mesh)
    >>> xs.shape[0] % mesh.devices.size, tuple(xs.sharding.spec), int(weight.sum())
    (0, ('data',), 5)
    """
    padded, weight = pad_batch(batch, mesh.devices.size, axis=axis)
    sharding = batch_sharding(mesh, axis=axis)

    def place(leaf):
        leaf = np.asarray(leaf)
        return jax.make_array_from_callback(leaf.shape, sharding, lambda index: leaf[index])

    placed = jax.tree.map(place, padded)
    weight = place(weight)
    return (*placed, weight) if isinstance(batch, tuple) else (placed, weight)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Put a full copy of every leaf of ``tree`` on each device of ``mesh`` (parameters, optimiser state).

    >>> import jax.numpy as jnp
    >>> from jeq.sharding import data_mesh, replicate
    >>> params = replicate({"w": jnp.ones((2, 2)), "b": jnp.zeros(2)}, data_mesh())
    >>> params["w"].sharding.is_fully_replicated, params["b"].shape
    (True, (2,))
    """
    return jax.device_put(tree, replicated(mesh))


def data_parallel(
    fn: Callable,
    mesh: Mesh,
    *,
    batch_argnums: Sequence[int],
    batch_axis: int = 0,
    donate_argnums: Sequence[int] = (),
) -> Callable:
    """``jax.jit(fn)`` with batch arguments split over ``"data"`` and everything else (and every output) replicated.

    ``fn`` is the ordinary single-device step (e.g. ``train_step(params, opt_state, xb, yb, weight)``); its gradient
    means over the batch become cross-device reductions inserted by XLA. Batch arguments are split along
    ``batch_axis`` (1 for a whole epoch of stacked minibatches scanned inside ``fn``). Array arguments are
    positional; keyword arguments are static (hashable; one compilation per distinct value).

    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> from jeq.sharding import data_mesh, data_parallel, replicate, shard_batch, weighted_mean
    >>> def loss(w, xb, yb, weight):  # the ordinary single-device function
    ...     return weighted_mean((xb @ w - yb) ** 2, weight)
    >>> mesh = data_mesh()
    >>> x, y = np.arange(6.0, dtype=np.float32).reshape(3, 2), np.array([1.0, 0.0, 2.0], np.float32)
    >>> w = np.array([0.5, -0.5], np.float32)
    >>> sharded = data_parallel(loss, mesh, batch_argnums=(1, 2, 3))(replicate(w, mesh), *shard_batch((x, y), mesh))
    >>> bool(np.isclose(sharded, float(jnp.mean((x @ w - y) ** 2))))  # padding and sharding change nothing
    True
    """
    batch_argnums = tuple(validate.integer("jeq.sharding.data_parallel", "batch_argnums", i, low=0)
                          for i in batch_argnums)
    n_args = max(batch_argnums, default=-1) + 1
    jitted: dict[tuple, Callable] = {}

    def wrapped(*args, **kwargs):
        if len(args) < n_args:
            raise ValueError(f"jeq.sharding.data_parallel: batch_argnums {batch_argnums} but only {len(args)} args")
        key = (len(args), tuple(sorted(kwargs.items())))
        if key not in jitted:
            shardings = tuple(batch_sharding(mesh, axis=batch_axis) if i in batch_argnums else replicated(mesh)
                              for i in range(len(args)))
            jitted[key] = jax.jit(functools.partial(fn, **kwargs), in_shardings=shardings,
                                  out_shardings=replicated(mesh), donate_argnums=tuple(donate_argnums))
        return jitted[key](*args)

    return wrapped


def weighted_mean(values: jax.Array, weight: jax.Array | None) -> jax.Array:
    """``sum(weight * values) / sum(weight)`` over the leading axis: the mean over real (unpadded) examples.

    ``weight=None`` is the plain mean. An all-zero weight gives 0 rather than NaN. Bool or integer values (e.g.
    per-example correctness) are averaged in float32. Inside a data-parallel
    jit the sums are global reductions, so sharded and single-device results agree.

    >>> import jax.numpy as jnp
    >>> from jeq.sharding import weighted_mean
    >>> values = jnp.array([1.0, 2.0, 3.0, 100.0])
    >>> float(weighted_mean(values, jnp.array([1.0, 1.0, 1.0, 0.0]))), float(weighted_mean(values, None))
    (2.0, 26.5)
    >>> float(weighted_mean(jnp.array([True, False]), jnp.zeros(2)))  # all-zero weight: 0, not NaN
    0.0
    """
    values = jnp.asarray(values)
    if not jnp.issubdtype(values.dtype, jnp.inexact):
        values = values.astype(jnp.float32)
    if weight is None:
        return jnp.mean(values, axis=0)
    weight = validate.array("jeq.sharding.weighted_mean", "weight", jnp.asarray(weight, values.dtype),
                            shape=values.shape[:1])
    w = weight.reshape(weight.shape + (1,) * (values.ndim - 1))
    return jnp.sum(w * values, axis=0) / jnp.maximum(jnp.sum(weight), jnp.finfo(values.dtype).tiny)


def initialize_multihost(coordinator_address: str, num_processes: int, process_id: int, **kwargs: Any) -> None:
    """Join a multi-host run: ``jax.distributed.initialize`` with explicit arguments, before any other JAX call.

    Two hosts, each running the same script (``hostA`` reachable on port 1234)::

        # on hostA
        python -m experiments.opteq_table --devices 16 --coordinator hostA:1234 --num-processes 2 --process-id 0
        # on hostB
        python -m experiments.opteq_table --devices 16 --coordinator hostA:1234 --num-processes 2 --process-id 1

    Afterwards ``jax.devices()`` lists every host's devices, :func:`data_mesh` spans them, and every process calls
    :func:`shard_batch` with the same global batch, of which it transfers only its own devices' rows. Each host
    writes its own results and checkpoints under ``--out`` (on a shared filesystem give each host its own folder).
    On SLURM/TPU pods ``jax.distributed.initialize()`` without arguments also works.

    >>> from jeq.sharding import initialize_multihost
    >>> initialize_multihost("hostA:1234", num_processes=2, process_id=2)  # checked before JAX is touched
    Traceback (most recent call last):
    ...
    jeq.validate.ArgumentError: jeq.sharding.initialize_multihost(process_id=2): must be an int in [0, 1]
    """
    where = "jeq.sharding.initialize_multihost"
    num_processes = validate.integer(where, "num_processes", num_processes, low=1)
    process_id = validate.integer(where, "process_id", process_id, low=0, high=num_processes - 1)
    # CPU devices of different processes need a collectives backend (GPUs and TPUs bring their own): gloo.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id, **kwargs)


__all__ = [
    "DATA_AXIS", "batch_sharding", "data_mesh", "data_parallel", "initialize_multihost", "pad_batch",
    "replicate", "replicated", "shard_batch", "weighted_mean",
]
