"""Live measurement of GEMM kernels with a per-configuration on-disk cache.

Protocol (spec §7, §9):

1. The kernel is built and compiled ahead of time (``jeq.bench.compile_fn``, with the configuration's XLA options);
   a build/compile/run error is recorded as a *failure* (never as fast).
2. Its output is checked against ``jnp.dot`` in float32 at ``Precision.HIGHEST``: a relative error
   ``max|C − C_ref| / max|C_ref|`` above the dtype's tolerance is recorded as a failure ("wrong result").
3. It is timed with ``jeq.bench.time_fn`` (warm-up, blocked calls, median and p20/p80). A result faster than
   ``suspicious_ratio`` × the incumbent is re-measured with twice the budget and the slower median kept.
4. One JSON file per configuration, named by the SHA-256 of its key (kernel family and source hash, shape, dtype,
   backend, device kind, jax/jaxlib versions, ``XLA_FLAGS``, compile options, configuration), written atomically
   (``jeq.io.atomic_write_json``: temp file + rename). Changing any key component measures again; a killed run loses
   nothing it finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import traceback
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np

from jeq import bench, io, validate
from jeq.gemm.kernels import KernelFamily

__all__ = ["DTYPES", "Cache", "Measurement", "default_cache_dir", "digest", "dtype_name", "environment", "measure",
           "measurement_key", "reference", "tolerance"]

_TOLERANCE = {"float32": 5e-3, "bfloat16": 3e-2, "float16": 1e-2}
"""Relative error allowed vs an f32 HIGHEST-precision product (f32 allows TF32 kernels on GPU: 10-bit mantissa)."""

DTYPES = tuple(_TOLERANCE)
"""The GEMM dtypes jeq.gemm measures and tunes (those with a tolerance)."""


def dtype_name(where: str, dtype: Any) -> str:
    """The name of one of :data:`DTYPES` given as a name or a dtype (``"bfloat16"``, ``jnp.bfloat16``), else the
    house error for the function ``where``."""
    try:
        name = jnp.dtype(dtype).name
    except TypeError:
        name = None
    if name not in _TOLERANCE:
        validate.fail(where, "dtype", dtype, f"must be one of {list(DTYPES)}")
    return name


def tolerance(dtype: Any) -> float:
    """Allowed relative error ``max|C − C_ref| / max|C_ref|`` of a GEMM in ``dtype`` (one of :data:`DTYPES`)."""
    return _TOLERANCE[dtype_name("jeq.gemm.tolerance", dtype)]


class Measurement(NamedTuple):
    """Outcome of measuring one configuration (what the cache stores).

    >>> from jeq.gemm import Measurement
    >>> Measurement._fields
    ('status', 'median_s', 'p20_s', 'p80_s', 'compile_s', 'calls', 'error', 'remeasured')
    >>> failed = Measurement.failed("out of shared memory")
    >>> failed.status, failed.cost  # a failure is never fast
    ('failed', inf)
    """

    status: str
    """``"ok"`` or ``"failed"``."""
    median_s: float
    """Median seconds per call (``inf`` when failed)."""
    p20_s: float
    """20th percentile (``inf`` when failed)."""
    p80_s: float
    """80th percentile (``inf`` when failed)."""
    compile_s: float
    """Compile time, reported apart."""
    calls: int
    """Timed calls behind the statistics."""
    error: str
    """Why it failed (exception or wrong-result message); empty when ok."""
    remeasured: bool
    """Whether a suspiciously fast first result was re-measured."""

    @property
    def cost(self) -> float:
        """Seconds for a search (``inf`` for failures)."""
        return self.median_s if self.status == "ok" else float("inf")

    @classmethod
    def failed(cls, error: str, compile_s: float = 0.0) -> Measurement:
        """A failure record."""
        inf = float("inf")
        return cls("failed", inf, inf, inf, compile_s, 0, error, False)


def environment() -> dict[str, Any]:
    """The machine-dependent part of every cache key."""
    dev = jax.devices()[0]
    return {
        "backend": jax.default_backend(),
        "device_kind": dev.device_kind,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def default_cache_dir() -> pathlib.Path:
    """``$JEQ_GEMM_CACHE`` or ``~/.cache/jeq/gemm``."""
    return pathlib.Path(os.environ.get("JEQ_GEMM_CACHE", pathlib.Path.home() / ".cache" / "jeq" / "gemm"))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in sorted(obj.items())}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def digest(key: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a cache key as sorted JSON: the file name of its record (numpy scalars as Python numbers)."""
    return hashlib.sha256(json.dumps(_jsonable(key), sort_keys=True).encode()).hexdigest()


class Cache:
    """A directory of JSON records, one per key (``<sha256>.json`` under a sub-directory per record kind).

    >>> import tempfile
    >>> from jeq.gemm import Cache, Measurement
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     cache = Cache(folder)
    ...     key = {"kernel": "xla_tiled", "config": {"m": [2, 16]}, "shape": [32, 32, 32]}
    ...     before = cache.get_measurement(key)
    ...     cache.put_measurement(key, Measurement.failed("boom"))
    ...     after = Cache(folder).get_measurement(key)  # a new process reads the same record
    >>> before, after.status, after.error
    (None, 'failed', 'boom')
    """

    def __init__(self, directory: str | os.PathLike | None = None) -> None:
        self.directory = pathlib.Path(directory) if directory is not None else default_cache_dir()

    def _path(self, kind: str, key: Mapping[str, Any]) -> pathlib.Path:
        return self.directory / kind / f"{digest(key)}.json"

    def get(self, kind: str, key: Mapping[str, Any]) -> dict[str, Any] | None:
        """The stored value for ``key`` (``None`` if absent or unreadable)."""
        path = self._path(kind, key)
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return record["value"] if record.get("key") == _jsonable(key) else None

    def put(self, kind: str, key: Mapping[str, Any], value: Mapping[str, Any]) -> None:
        """Store ``value`` under ``key`` atomically."""
        io.atomic_write_json(self._path(kind, key), {"key": _jsonable(key), "value": _jsonable(value)}, sort_keys=True)

    def get_measurement(self, key: Mapping[str, Any]) -> Measurement | None:
        """A cached :class:`Measurement`."""
        v = self.get("measurements", key)
        return Measurement(**{f: v[f] for f in Measurement._fields}) if v is not None else None

    def put_measurement(self, key: Mapping[str, Any], m: Measurement) -> None:
        """Store a :class:`Measurement` (``inf`` is written as JSON's ``Infinity`` extension and read back)."""
        self.put("measurements", key, m._asdict())


def measurement_key(
    kernel: KernelFamily, config: Mapping[str, Any], shape: tuple[int, int, int], dtype: Any
) -> dict[str, Any]:
    """Cache key of one configuration: family, source hash, shape, dtype, environment, options, configuration."""
    return {
        "family": kernel.name,
        "source": kernel.source,
        "shape": list(shape),
        "dtype": jnp.dtype(dtype).name,
        **environment(),
        "compiler_options": kernel.compiler_options(config),
        "config": dict(config),
    }


def reference(x: jax.Array, y: jax.Array) -> jax.Array:
    """``x @ y`` in float32 at HIGHEST precision (the correctness reference)."""
    return jnp.dot(x.astype(jnp.float32), y.astype(jnp.float32), precision=jax.lax.Precision.HIGHEST)


def measure(
    kernel: KernelFamily,
    config: Mapping[str, Any],
    x: jax.Array,
    y: jax.Array,
    *,
    expected: jax.Array | None = None,
    time_budget_s: float = 0.1,
    incumbent_s: float | None = None,
    suspicious_ratio: float = 0.5,
    compiler_options: Mapping[str, Any] | None = None,
) -> Measurement:
    """Build, check and time one configuration (no cache: :func:`jeq.gemm.tune` stores results in a :class:`Cache`).

    ``expected`` is the reference product (computed if omitted). ``compiler_options`` are added to the
    configuration's own (e.g. an autotune-results dump path).

    >>> import jax.numpy as jnp
    >>> from jeq.gemm import family, measure
    >>> tiled = family("xla_tiled")
    >>> config = {"m": (2, 8), "n": (2, 8), "k": (1, 16)}
    >>> result = measure(tiled, config, jnp.ones((16, 16)), jnp.ones((16, 16)), time_budget_s=0.01)
    >>> result.status, result.median_s > 0, result.calls > 0
    ('ok', True, True)
    >>> wrong = tiled._replace(build=lambda config: lambda a, b: a @ b + 1.0)  # a kernel with a wrong answer
    >>> checked = measure(wrong, config, jnp.ones((16, 16)), jnp.ones((16, 16)), time_budget_s=0.01)
    >>> checked.status, checked.cost  # recorded as failed, never as fast
    ('failed', inf)
    """
    expected = reference(x, y) if expected is None else expected
    options = {**kernel.compiler_options(config), **(compiler_options or {})}
    try:
        fn = kernel.build(config)
        compiled, compile_s = bench.compile_fn(fn, x, y, compiler_options=options or None)
        out = jax.block_until_ready(compiled(x, y))
    except Exception as e:  # noqa: BLE001 - any build/compile/run error is a failed configuration
        return Measurement.failed(f"{type(e).__name__}: {e}"[:2000] or traceback.format_exc()[-2000:])
    if out.shape != expected.shape:
        return Measurement.failed(f"wrong result: shape {out.shape} != {expected.shape}", compile_s)
    scale = float(jnp.max(jnp.abs(expected))) or 1.0
    err = float(jnp.max(jnp.abs(out.astype(jnp.float32) - expected))) / scale
    if not np.isfinite(err) or err > tolerance(x.dtype):
        return Measurement.failed(f"wrong result: relative error {err:.3g} > {tolerance(x.dtype):.3g}", compile_s)
    try:
        t = bench.time_fn(compiled, x, y, warmup=2, budget_s=time_budget_s, min_calls=3)
        remeasured = False
        if incumbent_s is not None and t.median_s < suspicious_ratio * incumbent_s:
            t2 = bench.time_fn(compiled, x, y, warmup=2, budget_s=2 * time_budget_s, min_calls=5)
            t = max(t, t2, key=lambda s: s.median_s)
            remeasured = True
    except Exception as e:  # noqa: BLE001
        return Measurement.failed(f"{type(e).__name__} while timing: {e}"[:2000], compile_s)
    return Measurement("ok", t.median_s, t.p20_s, t.p80_s, compile_s, t.calls, "", remeasured)
