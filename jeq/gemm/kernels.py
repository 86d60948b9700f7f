"""GEMM kernel families that a configuration maps to.

A :class:`KernelFamily` couples a configuration space with a builder ``config -> (x, y) -> x @ y`` and optional XLA
compile options. Families:

* ``xla_tiled`` (any backend; the live CPU family): explicit tiling written with JAX control flow,

      C[i, j] = Σ_t A[i, t] B[t, j]  over tiles:  lax.map over M tiles, lax.map over N tiles, lax.scan over K tiles,
      each step one ``dot_general`` of a (bm, bk) by (bk, bn) block accumulated in float32.

  Axes ``m = [m/bm, bm]``, ``n = [n/bn, bn]``, ``k = [k/bk, bk]`` (outer count, tile).
* ``pallas``: a Pallas matmul, grid ``(m/bm, n/bn)``, each program loops over ``k/bk`` blocks with a float32
  accumulator. Compiled with Triton on GPU (knobs ``num_warps``, ``num_stages``; tiles 16-256, powers of two,
  shared memory and accumulator-register limits), interpreted on CPU (``interpret=True``: for correctness and as a
  landscape, not a speed proxy; spec §8).
* ``xla_flags`` (GPU): ``jnp.dot`` compiled under XLA's own GEMM autotuner settings as knobs
  (``xla_gpu_autotune_level``, ``xla_gpu_enable_triton_gemm``, ``xla_gpu_cublas_fallback``,
  ``xla_gpu_exhaustive_tiling_search``). The flags are accepted but dead on CPU.

Every family's ``source`` is a hash of its kernel code, part of every cache key.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jeq import validate
from jeq.gemm.space import Axis, Knob, Space

__all__ = ["KernelFamily", "check_operands", "family", "pallas", "pallas_matmul", "tiled_matmul", "xla_flags",
           "xla_tiled"]


class KernelFamily(NamedTuple):
    """A family of GEMM kernels indexed by the configurations of a space.

    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> from jeq.gemm import KernelFamily, family
    >>> KernelFamily._fields
    ('name', 'space', 'build', 'compiler_options', 'source')
    >>> tiled = family("xla_tiled")
    >>> space = tiled.space(16, 16, 16)  # the configurations for (16, 16) @ (16, 16)
    >>> config = space.config(space.genomes([space.count() - 1])[0])
    >>> x = jnp.arange(256.0).reshape(16, 16) / 256
    >>> bool(np.allclose(tiled.build(config)(x, x), x @ x, atol=1e-5))
    True
    """

    name: str
    """Family name (part of cache keys)."""
    space: Callable[[int, int, int], Space]
    """``space(m, n, k)``: the configuration space for one GEMM shape."""
    build: Callable[[Mapping[str, Any]], Callable[[jax.Array, jax.Array], jax.Array]]
    """``build(config) -> fn(x, y)`` computing ``x @ y`` (shapes are those the space was made for)."""
    compiler_options: Callable[[Mapping[str, Any]], dict[str, Any]]
    """``compiler_options(config)``: XLA options for this configuration's compile (may be empty)."""
    source: str
    """Hash of the kernel's source code."""


def source_hash(*objects: Any) -> str:
    """SHA-256 (16 hex digits) of the source code of functions/classes (their ``repr`` if the source is not found)."""
    h = hashlib.sha256()
    for obj in objects:
        try:
            text = inspect.getsource(obj)
        except (OSError, TypeError):
            text = repr(obj)
        h.update(text.encode())
    return h.hexdigest()[:16]


def _tile_axes(m: int, n: int, k: int) -> list[Axis]:
    return [Axis("m", m, 2), Axis("n", n, 2), Axis("k", k, 2)]


def _tiles(config: Mapping[str, Any]) -> tuple[int, int, int]:
    return int(config["m"][1]), int(config["n"][1]), int(config["k"][1])


def check_operands(where: str, x: Any, y: Any) -> tuple[int, int, int]:
    """``(m, k, n)`` of the product ``x @ y`` with ``x`` (m, k) and ``y`` (k, n); else the house error of the
    function ``where``, naming both shapes. Works on arrays and tracers (shapes are static)."""
    validate.array(where, "x", x, ndim=2)
    validate.array(where, "y", y, ndim=2)
    if x.shape[1] != y.shape[0]:
        raise validate.ArgumentError(
            f"{where}(x, y): x shape {tuple(x.shape)} and y shape {tuple(y.shape)} do not compose: must be (m, k) "
            "and (k, n)"
        )
    return int(x.shape[0]), int(x.shape[1]), int(y.shape[1])


def _check_blocks(where: str, x: Any, y: Any, block_m: Any, block_n: Any, block_k: Any) -> tuple[int, int, int]:
    """``(m, k, n)`` of ``x @ y`` after checking that every block size is a positive int dividing its dimension."""
    m, k, n = check_operands(where, x, y)
    for name, b, d in (("block_m", block_m, m), ("block_n", block_n, n), ("block_k", block_k, k)):
        if not (isinstance(b, int) and b >= 1 and d % b == 0):
            validate.fail(where, name, b, f"must be a positive divisor of {d}")
    return m, k, n


# ------------------------------------------------------------------------------------------------ XLA tiling
def tiled_matmul(x: jax.Array, y: jax.Array, *, block_m: int, block_n: int, block_k: int) -> jax.Array:
    """``x @ y`` by explicit tiles: ``lax.map`` over M and N tiles, ``lax.scan`` over K tiles, f32 accumulation.

    ``C_ij = Σ_t A_it B_tj`` with ``A_it`` the (block_m, block_k) tile ``(i, t)`` of ``x`` and ``B_tj`` the
    (block_k, block_n) tile of ``y``. Block sizes must divide the dimensions.

    >>> import jax
    >>> import numpy as np
    >>> from jeq.gemm import tiled_matmul
    >>> x = (np.arange(96.0).reshape(8, 12) / 96).astype(np.float32)
    >>> y = np.cos(np.arange(48.0)).reshape(12, 4).astype(np.float32)
    >>> out = jax.jit(tiled_matmul, static_argnames=("block_m", "block_n", "block_k"))(x, y, block_m=4, block_n=2, block_k=3)
    >>> out.shape, bool(np.allclose(out, x @ y, atol=1e-5))
    ((8, 4), True)
    """
    m, k, n = _check_blocks("jeq.gemm.tiled_matmul", x, y, block_m, block_n, block_k)
    gm, gn, gk = m // block_m, n // block_n, k // block_k
    xt = x.reshape(gm, block_m, gk, block_k).transpose(0, 2, 1, 3)  # (gm, gk, bm, bk)
    yt = y.reshape(gk, block_k, gn, block_n).transpose(2, 0, 1, 3)  # (gn, gk, bk, bn)

    def row(x_tiles: jax.Array) -> jax.Array:
        def col(y_tiles: jax.Array) -> jax.Array:
            def step(acc: jax.Array, ab: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, None]:
                a, b = ab
                return acc + lax.dot_general(a, b, (((1,), (0,)), ((), ())), preferred_element_type=jnp.float32), None

            acc, _ = lax.scan(step, jnp.zeros((block_m, block_n), jnp.float32), (x_tiles, y_tiles))
            return acc

        return lax.map(col, yt)  # (gn, bm, bn)

    out = lax.map(row, xt)  # (gm, gn, bm, bn)
    return out.transpose(0, 2, 1, 3).reshape(m, n).astype(x.dtype)


def xla_tiled(*, min_tile: int = 8) -> KernelFamily:
    """The ``xla_tiled`` family: tile sizes ``bm, bn, bk`` (≥ ``min_tile`` or the whole dimension).

    >>> from jeq.gemm import xla_tiled
    >>> space = xla_tiled(min_tile=16).space(32, 32, 32)  # each tile 16 or the whole 32
    >>> genomes = space.genomes(range(space.size))
    >>> space.count(), sorted({space.config(g)["m"] for g in genomes[space.valid(genomes)]})
    (8, [(1, 32), (2, 16)])
    """
    min_tile = validate.integer("jeq.gemm.xla_tiled", "min_tile", min_tile, low=1)

    def space(m: int, n: int, k: int) -> Space:
        dims = {"m": m, "n": n, "k": k}

        def constraint(t: Mapping[str, np.ndarray]) -> np.ndarray:
            return np.all([t[a][:, 1] >= min(min_tile, d) for a, d in dims.items()], axis=0)

        return Space(_tile_axes(m, n, k), constraint=constraint, name=f"xla_tiled_{m}x{n}x{k}")

    def build(config: Mapping[str, Any]) -> Callable:
        bm, bn, bk = _tiles(config)
        return functools.partial(tiled_matmul, block_m=bm, block_n=bn, block_k=bk)

    return KernelFamily("xla_tiled", space, build, lambda config: {}, source_hash(tiled_matmul, xla_tiled))


# ---------------------------------------------------------------------------------------------------- Pallas
def _pallas_kernel(x_ref: Any, y_ref: Any, o_ref: Any, *, block_k: int, num_k: int) -> None:
    from jax.experimental import pallas as pl

    def body(t: jax.Array, acc: jax.Array) -> jax.Array:
        a = x_ref[:, pl.ds(t * block_k, block_k)]
        b = y_ref[pl.ds(t * block_k, block_k), :]
        return acc + jnp.dot(a, b, preferred_element_type=jnp.float32)

    acc = lax.fori_loop(0, num_k, body, jnp.zeros(o_ref.shape, jnp.float32))
    o_ref[...] = acc.astype(o_ref.dtype)


def _triton_params(num_warps: int | None, num_stages: int | None) -> Any:
    """Triton compiler parameters across Pallas versions (``CompilerParams`` in jax ≥ 0.6, older names before)."""
    from jax.experimental.pallas import triton as plgpu

    cls = getattr(plgpu, "CompilerParams", None) or getattr(plgpu, "TritonCompilerParams")
    return cls(num_warps=num_warps, num_stages=num_stages)


def pallas_matmul(
    x: jax.Array,
    y: jax.Array,
    *,
    block_m: int,
    block_n: int,
    block_k: int,
    num_warps: int | None = None,
    num_stages: int | None = None,
    interpret: bool | None = None,
) -> jax.Array:
    """``x @ y`` as a Pallas kernel: grid ``(m/block_m, n/block_n)``; program ``(i, j)`` loads the row panel
    ``x[i]`` (block_m, k) and column panel ``y[:, j]`` (k, block_n) and accumulates ``k/block_k`` block products in
    float32. ``interpret`` defaults to True off GPU; ``num_warps``/``num_stages`` are Triton parameters (GPU only).

    >>> import jax
    >>> import numpy as np
    >>> from jeq.gemm import pallas_matmul
    >>> x = np.sin(np.arange(512.0)).reshape(16, 32).astype(np.float32)
    >>> y = np.cos(np.arange(512.0)).reshape(32, 16).astype(np.float32)
    >>> out = pallas_matmul(x, y, block_m=8, block_n=8, block_k=16)  # interpreted off GPU
    >>> out.shape, bool(np.allclose(out, x @ y, atol=1e-4))
    ((16, 16), True)
    """
    from jax.experimental import pallas as pl

    m, k, n = _check_blocks("jeq.gemm.pallas_matmul", x, y, block_m, block_n, block_k)
    on_gpu = jax.default_backend() == "gpu"
    interpret = (not on_gpu) if interpret is None else interpret
    kwargs: dict[str, Any] = {}
    if on_gpu and not interpret and (num_warps is not None or num_stages is not None):
        kwargs["compiler_params"] = _triton_params(num_warps, num_stages)
    kernel = functools.partial(_pallas_kernel, block_k=block_k, num_k=k // block_k)
    return pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct((m, n), x.dtype),
        grid=(m // block_m, n // block_n),
        in_specs=[
            pl.BlockSpec((block_m, k), lambda i, j: (i, 0)),
            pl.BlockSpec((k, block_n), lambda i, j: (0, j)),
        ],
        out_specs=pl.BlockSpec((block_m, block_n), lambda i, j: (i, j)),
        interpret=interpret,
        **kwargs,
    )(x, y)


def pallas(
    *,
    gpu: bool | None = None,
    min_tile: int = 16,
    max_tile: int = 256,
    dtype_bytes: int = 4,
    smem_bytes: int = 200 * 1024,
    max_accumulators_per_thread: int = 256,
) -> KernelFamily:
    """The ``pallas`` family. On GPU (default: when the backend is GPU) the knobs ``num_warps`` ∈ {2, 4, 8} and
    ``num_stages`` ∈ {1, 2, 3, 4} join the tile axes, and the constraint keeps tiles in ``[min_tile, max_tile]``,
    powers of two, ``num_stages·(bm·bk + bk·bn)·dtype_bytes ≤ smem_bytes`` and
    ``bm·bn/(32·num_warps) ≤ max_accumulators_per_thread``. Interpreted on CPU (tiles ≥ ``min_tile`` only).

    >>> from jeq.gemm import pallas
    >>> cpu = pallas(gpu=False)
    >>> [a.name for a in cpu.space(32, 32, 32).axes], [k.name for k in pallas(gpu=True).space(64, 64, 64).knobs]
    (['m', 'n', 'k'], ['num_warps', 'num_stages'])
    """
    gpu = (jax.default_backend() == "gpu") if gpu is None else gpu
    for name, v in (("min_tile", min_tile), ("max_tile", max_tile), ("smem_bytes", smem_bytes),
                    ("max_accumulators_per_thread", max_accumulators_per_thread), ("dtype_bytes", dtype_bytes)):
        validate.integer("jeq.gemm.pallas", name, v, low=1)

    def space(m: int, n: int, k: int) -> Space:
        dims = {"m": m, "n": n, "k": k}
        knobs = [Knob("num_warps", (2, 4, 8)), Knob("num_stages", (1, 2, 3, 4))] if gpu else []

        def constraint(t: Mapping[str, np.ndarray]) -> np.ndarray:
            tile = {a: t[a][:, 1] for a in dims}
            ok = np.all([tile[a] >= min(min_tile, d) for a, d in dims.items()], axis=0)
            if gpu:
                for a in dims:
                    ok &= (tile[a] <= max_tile) & ((tile[a] & (tile[a] - 1)) == 0)
                smem = t["num_stages"] * (tile["m"] * tile["k"] + tile["k"] * tile["n"]) * dtype_bytes
                ok &= smem <= smem_bytes
                ok &= tile["m"] * tile["n"] <= max_accumulators_per_thread * 32 * t["num_warps"]
            return ok

        return Space(_tile_axes(m, n, k), knobs, constraint=constraint, name=f"pallas_{m}x{n}x{k}")

    def build(config: Mapping[str, Any]) -> Callable:
        bm, bn, bk = _tiles(config)
        return functools.partial(
            pallas_matmul, block_m=bm, block_n=bn, block_k=bk, num_warps=config.get("num_warps"),
            num_stages=config.get("num_stages"), interpret=not gpu,
        )

    return KernelFamily(
        "pallas" if gpu else "pallas_interpret", space, build, lambda config: {},
        source_hash(_pallas_kernel, pallas_matmul, pallas),
    )


# ---------------------------------------------------------------------------------------- XLA autotuner flags
XLA_GEMM_FLAGS: tuple[Knob, ...] = (
    Knob("xla_gpu_autotune_level", (0, 4)),
    Knob("xla_gpu_enable_triton_gemm", (True, False)),
    Knob("xla_gpu_cublas_fallback", (True, False)),
    Knob("xla_gpu_exhaustive_tiling_search", (False, True)),
)
"""XLA GPU GEMM-autotuning flags searched by :func:`xla_flags` (``xla/debug_options_flags.cc``)."""


@functools.lru_cache(maxsize=None)
def _supported_option(name: str, value: Any) -> bool:
    """Whether the installed XLA accepts the compile option (flags are renamed and retired between versions)."""
    try:
        jax.jit(lambda v: v + 1).lower(np.float32(0)).compile({name: value})
    except Exception:  # noqa: BLE001 - "No such compile option" or an invalid value
        return False
    return True


def xla_flags(*, flags: tuple[Knob, ...] = XLA_GEMM_FLAGS) -> KernelFamily:
    """The ``xla_flags`` family: ``jnp.dot`` with XLA's GEMM autotuner settings as the configuration.

    Flags the installed XLA does not know are left out of the space (probed once with a trivial compile).

    >>> from jeq.gemm import xla_flags
    >>> space = xla_flags().space(8, 8, 8)
    >>> "xla_gpu_autotune_level" in [k.name for k in space.knobs]
    True
    >>> sorted(xla_flags().compiler_options(space.config(space.genomes([0])[0])))[:1]
    ['xla_gpu_autotune_level']
    """
    supported = tuple(f for f in flags if all(_supported_option(f.name, v) for v in f.values))
    if not supported:
        validate.fail("jeq.gemm.xla_flags", "flags", [f.name for f in flags],
                      "must hold at least one flag the installed XLA supports")
    flags = supported

    def space(m: int, n: int, k: int) -> Space:
        return Space([], flags, name=f"xla_flags_{m}x{n}x{k}")

    def build(config: Mapping[str, Any]) -> Callable:
        return jnp.dot

    def options(config: Mapping[str, Any]) -> dict[str, Any]:
        return {f.name: config[f.name] for f in flags}

    return KernelFamily("xla_flags", space, build, options, source_hash(xla_flags) + repr(flags))


def family(name: str | KernelFamily | None = None) -> KernelFamily:
    """A kernel family by name (``"xla_tiled"``, ``"pallas"``, ``"pallas_interpret"``, ``"xla_flags"``) or the
    default for the backend
    (``pallas`` on GPU, ``xla_tiled`` elsewhere); a :class:`KernelFamily` is returned as is.

    >>> import jax
    >>> from jeq.gemm import family
    >>> family("xla_tiled").name, family("pallas_interpret").name
    ('xla_tiled', 'pallas_interpret')
    >>> family().name == ("pallas" if jax.default_backend() == "gpu" else "xla_tiled")
    True
    """
    if isinstance(name, KernelFamily):
        return name
    if name is None:
        name = "pallas" if jax.default_backend() == "gpu" else "xla_tiled"
    makers = {
        "xla_tiled": xla_tiled, "pallas": pallas, "xla_flags": xla_flags,
        "pallas_interpret": functools.partial(pallas, gpu=False),
    }
    if name not in makers:
        validate.fail("jeq.gemm.family", "name", name, f"must be one of {sorted(makers)} or a KernelFamily")
    return makers[name]()
