"""Landscapes a tuner searches: an analytic GPU cost model, a replayed measurement table, live measurement.

A landscape maps a batch of genomes of its :class:`~jeq.gemm.space.Space` to costs in seconds (``inf`` = failed).
The analytic and replay landscapes evaluate a whole candidate batch in one vectorised call (the analytic model is a
per-configuration ``jnp`` function under ``jax.vmap``), so a 10-seed comparison over millions of configurations costs
seconds, and the batch can later be sharded over devices. Live measurement is in :mod:`jeq.gemm.measurement`.

Analytic model (derived from the CUDA execution model; the constants are those of an NVIDIA V100 and are
**not** fitted to any measurement). It times the TVM GEMM template used by the paper and by NNI's OpEvo examples:
rows ``M = by·vy·ty·yi`` (blockIdx.y, vthread, threadIdx.y, inner), columns ``N = bx·vx·tx·xi``, reduction
``K = ko·kt·ki`` (shared-memory stages, unrolled register stages, inner), with A and B staged through double-buffered
shared memory (tile ``BM × BK`` and ``BK × BN``, ``BM = M/by``, ``BN = N/bx``, ``BK = kt·ki``) and a per-thread
register tile ``TM × TN`` (``TM = vy·yi``, ``TN = vx·xi``). Resources per block:

    threads T = ty·tx ≤ 1024,   registers R = TM·TN + 2·ki·(TM+TN) + 24 ≤ 255,
    shared memory S = 2·b·BK·(BM+BN) ≤ 48 KiB   (b bytes per element, ×2 for double buffering),
    resident blocks per SM  B = min(32, ⌊64/W⌋, ⌊65536/(W·⌈32R/256⌉·256)⌋, ⌊96 KiB/S⌋) ≥ 1,  W = ⌈T/32⌉.

Time = launch + max(t_compute, t_memory) + 0.2·min(t_compute, t_memory), where

    t_compute = Σ_waves (blocks in wave on one SM) · C_block / e(active warps) / clock,
    C_block   = max(issue, FMA, shared-memory wavefronts), plus barrier stalls once per wave,  e(w) = P/(P+32), P = w·min(TM·TN, 16),
    t_memory  = max(L2 requests / L2 bandwidth, DRAM bytes / DRAM bandwidth) / min(1, bytes in flight / needed),

with 32-byte sector efficiency on the A rows (length BK) and B rows (length BN), shared-memory bank conflicts from the
per-thread strides, L2 reuse between the blocks of one wave (row-major block order), wave quantisation and an
instruction-cache penalty for very long unrolled bodies. The optimum is known by exhaustive evaluation
(:meth:`AnalyticLandscape.table`).
"""

from __future__ import annotations

import functools
import io
import pathlib
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jeq import io as jeq_io
from jeq import sharding, validate
from jeq.gemm.space import Axis, Space

__all__ = [
    "AnalyticLandscape",
    "GpuSpec",
    "Landscape",
    "ReplayLandscape",
    "tvm_gemm_space",
    "tvm_gemm_time",
]


class GpuSpec(NamedTuple):
    """Hardware constants of the analytic model (defaults: NVIDIA V100-SXM2, FP32).

    >>> from jeq.gemm import GpuSpec, tvm_gemm_space
    >>> GpuSpec().num_sms, GpuSpec().smem_per_block  # V100 defaults
    (80, 49152)
    >>> tight = GpuSpec(max_threads_per_block=128)  # fewer threads: fewer valid tilings
    >>> tvm_gemm_space(16, 16, 16, spec=tight).count() < tvm_gemm_space(16, 16, 16).count()
    True
    """

    num_sms: int = 80
    """Streaming multiprocessors."""
    clock_hz: float = 1.53e9
    """SM clock."""
    fma_per_sm_cycle: float = 2.0
    """Warp-wide FP32 FMA instructions issued per SM per cycle (64 lanes / 32)."""
    issue_per_sm_cycle: float = 4.0
    """Warp instructions issued per SM per cycle (4 schedulers)."""
    dram_bytes_per_s: float = 900e9
    """HBM bandwidth."""
    l2_bytes_per_s: float = 2.5e12
    """L2 to SM bandwidth."""
    memory_latency_cycles: float = 500.0
    """Global load latency that bytes in flight must cover (Little's law)."""
    smem_per_sm: int = 96 * 1024
    """Shared memory per SM in bytes."""
    smem_per_block: int = 48 * 1024
    """Shared memory one block may allocate, bytes."""
    regs_per_sm: int = 65536
    """32-bit registers per SM."""
    max_regs_per_thread: int = 255
    """Registers one thread may use."""
    max_threads_per_block: int = 1024
    """Threads per block."""
    max_warps_per_sm: int = 64
    """Resident warps per SM."""
    max_blocks_per_sm: int = 32
    """Resident blocks per SM."""
    barrier_cycles: float = 20.0
    """Cost of one ``__syncthreads`` (plus 1 cycle per warp)."""
    icache_instructions: float = 8192.0
    """Unrolled loop bodies longer than this many instructions thrash the instruction cache."""
    launch_s: float = 3e-6
    """Kernel launch overhead."""


def tvm_gemm_space(
    m: int, n: int, k: int, *, prune: bool = True, dtype_bytes: int = 4, spec: GpuSpec = GpuSpec()
) -> Space:
    """The TVM/NNI GEMM tiling space: ``m`` into 4 parts, ``n`` into 4, ``k`` into 3.

    With ``prune=True`` the GPU resource limits (threads per block, registers, shared memory, at least one resident
    block) are the space's validity constraint, so searches never propose a configuration that cannot launch. With
    ``prune=False`` the space holds every factorisation, as TVM's ``define_split`` does (≈4.15M at 512×1024×1024), and
    the resource-violating ones are failed measurements (the analytic model returns ``inf``), as on real hardware.

    >>> from jeq.gemm import tvm_gemm_space
    >>> pruned, every = tvm_gemm_space(16, 16, 16), tvm_gemm_space(16, 16, 16, prune=False)
    >>> every.count(), pruned.count() < every.count(), [(a.name, a.parts) for a in every.axes]
    (... True, [('m', 4), ('n', 4), ('k', 3)])
    """
    for name, v in (("m", m), ("n", n), ("k", k)):
        validate.integer("jeq.gemm.tvm_gemm_space", name, v, low=1)

    def constraint(tiles: Mapping[str, np.ndarray]) -> np.ndarray:
        return _resources(tiles, dtype_bytes, spec, np)["valid"]

    return Space(
        [Axis("m", int(m), 4), Axis("n", int(n), 4), Axis("k", int(k), 3)],
        constraint=constraint if prune else None,
        name=f"tvm_gemm_{m}x{n}x{k}",
    )


def _cdiv(a, b):
    return -(-a // b)


def _resources(tiles: Mapping[str, Any], dtype_bytes: int, spec: GpuSpec, xp) -> dict[str, Any]:
    """Per-block resources of a TVM GEMM tiling (``xp`` is numpy or jax.numpy; batched over leading axes)."""
    m, n, k = tiles["m"], tiles["n"], tiles["k"]
    vy, ty, yi = m[..., 1], m[..., 2], m[..., 3]
    vx, tx, xi = n[..., 1], n[..., 2], n[..., 3]
    kt, ki = k[..., 1], k[..., 2]
    threads = ty * tx
    warps = _cdiv(threads, 32)
    tm, tn = vy * yi, vx * xi
    bm, bn, bk = vy * ty * yi, vx * tx * xi, kt * ki
    regs = tm * tn + 2 * ki * (tm + tn) + 24
    smem = 2 * dtype_bytes * bk * (bm + bn)
    regs_per_warp = _cdiv(xp.minimum(regs, 4096) * 32, 256) * 256
    by_regs = spec.regs_per_sm // (warps * regs_per_warp)
    by_warps = spec.max_warps_per_sm // warps
    by_smem = spec.smem_per_sm // (_cdiv(xp.minimum(smem, 1 << 24), 256) * 256)
    blocks = xp.minimum(xp.minimum(by_regs, by_warps), xp.minimum(by_smem, spec.max_blocks_per_sm))
    valid = (
        (threads <= spec.max_threads_per_block)
        & (regs <= spec.max_regs_per_thread)
        & (smem <= spec.smem_per_block)
        & (blocks >= 1)
    )
    return dict(threads=threads, warps=warps, regs=regs, smem=smem, blocks_per_sm=blocks, valid=valid)


def _vector_width(x):
    return jnp.where(x % 4 == 0, 4.0, jnp.where(x % 2 == 0, 2.0, 1.0))


def _wavefronts(lanes, stride_words, width):
    """Shared-memory wavefronts of one warp load: ``lanes`` distinct addresses ``stride_words`` apart, each
    ``width`` words wide (bank conflicts vs bandwidth, whichever is worse)."""
    distinct_banks = jnp.minimum(lanes, 32.0 / jnp.gcd(stride_words.astype(jnp.int32), 32).astype(jnp.float32))
    return jnp.maximum(jnp.ceil(lanes / distinct_banks), jnp.ceil(lanes * width / 32.0))


def _sector_efficiency(row_bytes):
    return row_bytes / (jnp.ceil(row_bytes / 32.0) * 32.0)


def tvm_gemm_time(
    tiles: Mapping[str, jax.Array], *, m: int, n: int, k: int, dtype_bytes: int = 4, spec: GpuSpec = GpuSpec()
) -> jax.Array:
    """Modelled run time in seconds of one TVM GEMM tiling (``inf`` if it violates a resource limit).

    ``tiles`` holds one configuration: ``m`` and ``n`` (4,) int parts, ``k`` (3,) int parts; acts on one
    configuration, use ``jax.vmap`` for a batch. The model is the one in the module docstring.

    >>> import functools
    >>> import jax
    >>> import numpy as np
    >>> from jeq.gemm import tvm_gemm_time
    >>> model = jax.jit(jax.vmap(functools.partial(tvm_gemm_time, m=64, n=64, k=16)))  # a batch of tilings
    >>> tiles = {"m": np.array([[4, 2, 8, 1], [1, 1, 64, 1]]), "n": np.array([[4, 2, 8, 1], [1, 1, 64, 1]]),
    ...          "k": np.array([[8, 2, 1], [16, 1, 1]])}
    >>> seconds = model(tiles)
    >>> bool(0 < seconds[0] < 1e-3), float(seconds[1])  # the second needs 4096 threads per block: cannot launch
    (True, inf)
    """
    res = _resources({a: jnp.asarray(tiles[a]) for a in ("m", "n", "k")}, dtype_bytes, spec, jnp)
    f = {a: jnp.asarray(tiles[a]).astype(jnp.float32) for a in ("m", "n", "k")}
    by, vy, ty, yi = (f["m"][i] for i in range(4))
    bx, vx, tx, xi = (f["n"][i] for i in range(4))
    ko, kt, ki = (f["k"][i] for i in range(3))
    M, N, K = float(m), float(n), float(k)
    threads = ty * tx
    warps = jnp.ceil(threads / 32.0)
    tm, tn = vy * yi, vx * xi
    bm, bn, bk = M / by, N / bx, kt * ki
    cap = res["blocks_per_sm"].astype(jnp.float32)

    # Per-block instruction counts per reduction step k, per thread.
    wy, wx = _vector_width(f["m"][3].astype(jnp.int32)), _vector_width(f["n"][3].astype(jnp.int32))
    fma = tm * tn
    lds_a, lds_b = vy * yi / wy, vx * xi / wx
    ldg_sts = 2.0 * (bm + bn) / (4.0 * threads)
    overhead = 2.0 / ki + 4.0 / bk
    issue = warps * K * (fma + lds_a + lds_b + ldg_sts + overhead) / spec.issue_per_sm_cycle
    fma_cycles = warps * K * fma / spec.fma_per_sm_cycle
    # Shared memory: A is read broadcast along tx, B along ty; layouts (BM, BK) and (BK, BN).
    lanes_a = jnp.minimum(jnp.maximum(1.0, jnp.floor(32.0 / tx)), ty)
    lanes_b = jnp.minimum(tx, 32.0)
    wf_a = _wavefronts(lanes_a, yi * bk, wy)
    wf_b = _wavefronts(lanes_b, xi, wx)
    smem_cycles = warps * K * (lds_a * wf_a + lds_b * wf_b) + (bm + bn) * K * dtype_bytes / 128.0
    barriers = ko * 2.0 * (spec.barrier_cycles + warps)
    body = kt * ki * (fma + lds_a + lds_b)
    icache = 1.0 + 0.5 * jnp.maximum(0.0, body / spec.icache_instructions - 1.0)
    block_cycles = jnp.maximum(jnp.maximum(issue, fma_cycles), smem_cycles) * icache

    def hiding(active_warps):
        p = active_warps * jnp.minimum(fma, 16.0)
        return p / (p + 32.0)

    blocks = by * bx
    per_sm = jnp.ceil(blocks / spec.num_sms)
    waves = jnp.ceil(per_sm / cap)
    last = per_sm - (waves - 1.0) * cap
    # Resident blocks share the SM's throughput; barrier stalls of one block overlap the others' work, so they
    # cost once per wave.
    compute_cycles = (
        (waves - 1.0) * cap * block_cycles / hiding(cap * warps)
        + last * block_cycles / hiding(last * warps)
        + waves * barriers
    )
    t_compute = compute_cycles / spec.clock_hz

    # Global memory: sector efficiency, L2 reuse inside a wave, memory-level parallelism.
    b = float(dtype_bytes)
    requested = blocks * b * K * (bm / _sector_efficiency(b * bk) + bn / _sector_efficiency(b * bn)) + b * M * N
    wave_blocks = cap * spec.num_sms
    rows_w = jnp.minimum(by, jnp.ceil(wave_blocks / bx))
    cols_w = jnp.minimum(bx, wave_blocks)
    dram = jnp.minimum(requested, jnp.ceil(blocks / wave_blocks) * b * K * (rows_w * bm + cols_w * bn)) + b * M * N
    in_flight = jnp.minimum(cap, per_sm) * (bm + bn) * bk * b
    needed = spec.memory_latency_cycles * spec.dram_bytes_per_s / (spec.num_sms * spec.clock_hz)
    t_memory = jnp.maximum(requested / spec.l2_bytes_per_s, dram / spec.dram_bytes_per_s) / jnp.minimum(
        1.0, in_flight / needed
    )
    t = spec.launch_s + jnp.maximum(t_compute, t_memory) + 0.2 * jnp.minimum(t_compute, t_memory)
    return jnp.where(res["valid"], t, jnp.inf)


# ----------------------------------------------------------------------------------------------- landscapes
class Landscape:
    """Base class: a :class:`Space` and a batched cost ``evaluate(genomes (B, G)) -> (B,) seconds``.

    >>> import jax
    >>> import numpy as np
    >>> from jeq.gemm import Axis, Landscape, Space, random_search, search
    >>> class Table(Landscape):  # any batched cost: genomes (B, G) -> (B,) seconds
    ...     def __init__(self, space):
    ...         self.space, self.flops = space, 2.0 * 8 ** 3
    ...     def evaluate(self, genomes):
    ...         return 1.0 + np.abs(self.space.decode(genomes)["m"][:, 0] - 4)
    >>> table = Table(Space([Axis("m", 8, 2)]))
    >>> result = search(random_search(table.space), table.evaluate, budget=4, key=jax.random.key(0))
    >>> result.best_cost, table.space.config(table.space.genomes([result.best_index])[0])
    (1.0, {'m': (4, 2)})
    """

    space: Space
    flops: float
    """Floating-point operations of one GEMM (``2·m·n·k``), for GFLOPS."""

    def evaluate(self, genomes: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def __call__(self, genomes: np.ndarray) -> np.ndarray:
        return self.evaluate(genomes)


def _pad_pow2(n: int) -> int:
    """Padded batch size: a power of two, at least 64 (small asks then share one compiled function)."""
    return max(64, 1 << max(0, (n - 1).bit_length()))


class AnalyticLandscape(Landscape):
    """A cost model ``cost(tiles) -> seconds`` on one configuration, evaluated on batches with ``jax.vmap``.

    Args:
        space: the configuration space (its decoded tiles are the model's input).
        cost: per-configuration ``jnp`` function of the decoded axis parts (``inf`` = invalid).
        flops: operations of one GEMM.
        mesh: optional ``jeq.sharding.data_mesh(...)``: each candidate batch is then split over its devices (the
            model replicated, the batch padded to a multiple of the device count), same results as one device.

    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> from jeq.gemm import AnalyticLandscape, Axis, Space
    >>> space = Space([Axis("m", 16, 2)])
    >>> model = AnalyticLandscape(space, lambda tiles: 1.0 + (tiles["m"][0] - 4.0) ** 2, flops=2.0 * 16 ** 3)
    >>> model.evaluate(space.genomes(np.arange(space.count()))).tolist()  # one vmapped call
    [10.0, 5.0, 1.0, 17.0, 145.0]
    >>> best, seconds = model.optimum()
    >>> space.config(space.genomes([best])[0]), seconds
    ({'m': (4, 4)}, 1.0)
    >>> gpu = AnalyticLandscape.tvm_gemm(16, 16, 16)  # the TVM GEMM model on a V100
    >>> bool(np.isfinite(gpu.optimum()[1]))
    True
    """

    def __init__(self, space: Space, cost: Callable[[Mapping[str, jax.Array]], jax.Array], *, flops: float,
                 mesh: jax.sharding.Mesh | None = None) -> None:
        self.space = space
        self.flops = float(flops)
        names = [a.name for a in space.axes]
        self._names = names
        self._mesh = mesh
        if mesh is None:
            self._batched = jax.jit(jax.vmap(cost))
        else:
            self._batched = sharding.data_parallel(jax.vmap(cost), mesh, batch_argnums=(0,))
        self._table: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def tvm_gemm(
        cls, m: int, n: int, k: int, *, prune: bool = True, dtype_bytes: int = 4, spec: GpuSpec = GpuSpec(),
        mesh: jax.sharding.Mesh | None = None,
    ) -> AnalyticLandscape:
        """The analytic GPU model of :func:`tvm_gemm_time` on :func:`tvm_gemm_space` (``prune`` as there)."""
        space = tvm_gemm_space(m, n, k, prune=prune, dtype_bytes=dtype_bytes, spec=spec)
        cost = functools.partial(tvm_gemm_time, m=int(m), n=int(n), k=int(k), dtype_bytes=dtype_bytes, spec=spec)
        return cls(space, cost, flops=2.0 * m * n * k, mesh=mesh)

    def evaluate(self, genomes: np.ndarray) -> np.ndarray:
        """(B,) modelled seconds for a batch of genomes: one vmapped call (batch padded to a power of two ≥ 64 so
        that repeated calls reuse the compiled function)."""
        g = np.asarray(genomes)
        if g.shape[0] == 0:
            return np.zeros(0)
        tiles = self.space.decode(g)
        size = _pad_pow2(g.shape[0])
        batch = {a: np.pad(tiles[a], ((0, size - g.shape[0]), (0, 0)), mode="edge").astype(np.int32) for a in self._names}
        if self._mesh is not None:
            batch, _ = sharding.shard_batch(batch, self._mesh)  # padding rows repeat the last one; sliced off below
        return np.asarray(self._batched(batch), dtype=np.float64)[: g.shape[0]]

    def table(self, *, chunk: int = 1 << 18) -> tuple[np.ndarray, np.ndarray]:
        """Exhaustive evaluation of every valid configuration: (sorted indices, costs). Cached on the object."""
        if self._table is None:
            idx, cost = [], []
            for i, g in self.space.enumerate(chunk=chunk):
                idx.append(i)
                cost.append(self.evaluate(g))
            self._table = (np.concatenate(idx), np.concatenate(cost))
        return self._table

    def optimum(self) -> tuple[int, float]:
        """(index, seconds) of the best configuration, by exhaustive evaluation."""
        idx, cost = self.table()
        i = int(np.argmin(cost))
        return int(idx[i]), float(cost[i])

    def replay(self) -> ReplayLandscape:
        """The exhaustive table as a :class:`ReplayLandscape` (lookups instead of model evaluations)."""
        idx, cost = self.table()
        return ReplayLandscape(self.space, idx, cost, flops=self.flops)


class ReplayLandscape(Landscape):
    """Replay of a recorded measurement table: ``evaluate`` looks each configuration up (one vectorised lookup).

    Args:
        space: the space the table was recorded on.
        indices: configuration indices (any order, unique), or ``None`` for a *dense* table whose ``costs`` hold
            one entry per index of the space (``inf`` where nothing can run); a dense table may be a memory map.
        costs: seconds per configuration (``inf`` for recorded failures).
        flops: operations of one GEMM.

    Looking up a configuration that is not in the table raises ``KeyError``: a replay never invents a cost.

    >>> import numpy as np
    >>> from jeq.gemm import Axis, ReplayLandscape, Space
    >>> space = Space([Axis("m", 8, 2)])
    >>> replay = ReplayLandscape(space, [0, 2], [3.0, np.inf], flops=1024.0)  # two recorded measurements
    >>> replay.evaluate(space.genomes([2, 0])).tolist()
    [inf, 3.0]
    >>> replay.evaluate(space.genomes([1]))
    Traceback (most recent call last):
    ...
    KeyError: ...
    """

    def __init__(self, space: Space, indices: Any, costs: Any, *, flops: float) -> None:
        where = "jeq.gemm.ReplayLandscape"
        self.space, self.flops = space, float(flops)
        if indices is None:  # a dense table: one cost per index of the space
            self.indices, self.costs = None, validate.array(where, "costs", costs, shape=(space.size,))
            return
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        c = np.asarray(costs, dtype=np.float64).reshape(-1)
        if idx.shape != c.shape:
            raise validate.ArgumentError(f"{where}(indices, costs): indices shape {idx.shape} != costs shape {c.shape}")
        order = np.argsort(idx)
        idx, c = idx[order], c[order]
        if idx.size and (np.diff(idx) == 0).any():
            repeated = np.unique(idx[1:][np.diff(idx) == 0])[:5].tolist()
            raise validate.ArgumentError(f"{where}(indices): must be unique, {repeated} repeat")
        self.indices, self.costs = idx, c

    def evaluate(self, genomes: np.ndarray) -> np.ndarray:
        """(B,) recorded seconds of a batch of genomes (one vectorised lookup)."""
        g = np.asarray(genomes)
        if g.shape[0] == 0:
            return np.zeros(0)
        want = self.space.indices(g)
        if self.indices is None:
            return np.asarray(self.costs[want], dtype=np.float64)
        pos = np.minimum(np.searchsorted(self.indices, want), max(self.indices.size - 1, 0))
        found = self.indices[pos] == want
        if not found.all():
            raise KeyError(f"jeq.gemm.ReplayLandscape: configurations {want[~found][:5].tolist()} are not recorded")
        return self.costs[pos]

    def optimum(self) -> tuple[int, float]:
        """(index, seconds) of the best recorded configuration."""
        i = int(np.argmin(self.costs))
        return (i if self.indices is None else int(self.indices[i])), float(self.costs[i])

    def save(self, path: str | pathlib.Path) -> None:
        """Write the table to an ``.npz`` file at ``path`` (atomically, ``jeq.io.atomic_write_bytes``)."""
        buffer = io.BytesIO()
        indices = np.zeros(0, np.int64) if self.indices is None else self.indices
        np.savez(buffer, indices=indices, dense=self.indices is None, costs=np.asarray(self.costs), flops=self.flops,
                 space=repr(self.space))
        jeq_io.atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def load(cls, space: Space, path: str | pathlib.Path) -> ReplayLandscape:
        """Read a table written by :meth:`save`; the space must be the one it was recorded on."""
        data = np.load(path)
        if str(data["space"]) != repr(space):
            validate.fail("jeq.gemm.ReplayLandscape.load", "space", space,
                          f"must be the space the table was recorded on, {data['space']}")
        indices = None if bool(data["dense"]) else data["indices"]
        return cls(space, indices, data["costs"], flops=float(data["flops"]))

