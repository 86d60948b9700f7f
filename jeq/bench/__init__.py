"""One timing harness for every benchmark and for GEMM measurement.

Protocol (``specs/gemm.md`` §7):

1. Ahead-of-time compile, ``jax.jit(f).lower(*args).compile()``; compile time is reported apart.
2. Warm up (``warmup`` calls) so caches, allocators and lazy initialisation are out of the way.
3. Time calls that each end in ``jax.block_until_ready`` until a time budget is spent, and report the median with the
   20th and 80th percentiles (and the minimum, secondary).
4. Compare candidates in one process, interleaved round-robin (A B A B ...), and report the ratio of paired calls so
   that common-mode drift (another process waking up, frequency scaling) cancels. Absolute times on a shared machine
   drift by 2x between processes; ratios from one process do not.

The knobs of steps 2-4 are one :class:`TimingProtocol`. :func:`single_threaded_blas` keeps scipy's OpenBLAS from
spinning threads against the timed code on a shared CPU.
"""

from jeq.bench.timing import (
    Comparison,
    Timing,
    TimingProtocol,
    compare,
    compile_fn,
    interleave,
    single_threaded_blas,
    time_fn,
)

__all__ = ["Comparison", "Timing", "TimingProtocol", "compare", "compile_fn", "interleave", "single_threaded_blas",
           "time_fn"]
