"""Timing primitives: AOT compile, warm-up, blocked timed calls, interleaved comparison.

:func:`time_fn`, :func:`interleave` and :func:`compare` run one sampling loop under one set of knobs,
:class:`TimingProtocol` (warm-up calls, time budget, rounds, grouping of fast calls, jit, XLA options).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from jeq import validate

__all__ = ["Comparison", "Timing", "TimingProtocol", "compare", "compile_fn", "interleave", "single_threaded_blas",
           "time_fn"]


class Timing(NamedTuple):
    """Wall-clock statistics of one function, in seconds per call.

    >>> from jeq.bench import Timing
    >>> Timing._fields
    ('median_s', 'p20_s', 'p80_s', 'min_s', 'compile_s', 'calls')
    >>> Timing(1e-3, 0.9e-3, 1.2e-3, 0.8e-3, 0.05, 100).summary()
    '1.000 ms [900.0 us, 1.200 ms] (100 calls, compile 50.000 ms)'
    """

    median_s: float
    """Median time of one call (the headline number)."""
    p20_s: float
    """20th percentile of the per-call times."""
    p80_s: float
    """80th percentile of the per-call times."""
    min_s: float
    """Fastest call seen (secondary: optimistic under noise)."""
    compile_s: float
    """Time spent lowering and compiling, reported apart from run time (0 for already-compiled or non-jit callables)."""
    calls: int
    """Number of timed calls the statistics are computed from."""

    def summary(self) -> str:
        """One line: ``median [p20, p80] (n calls, compile c)`` with adaptive units."""
        return (
            f"{_fmt(self.median_s)} [{_fmt(self.p20_s)}, {_fmt(self.p80_s)}] "
            f"({self.calls} calls, compile {_fmt(self.compile_s)})"
        )


class Comparison(NamedTuple):
    """Result of an interleaved A/B comparison run in one process.

    >>> from jeq.bench import Comparison, Timing
    >>> a, b = Timing(1e-3, 0.9e-3, 1.2e-3, 0.8e-3, 0.0, 100), Timing(2e-3, 1.9e-3, 2.2e-3, 1.8e-3, 0.0, 100)
    >>> Comparison(0.5, 0.45, 0.55, a, b).summary()[:28]  # A takes half B's time
    'A/B = 0.500 [0.450, 0.550]; '
    """

    ratio: float
    """Median over rounds of time(A) / time(B) for calls made back to back: < 1 means A is faster."""
    ratio_p20: float
    """20th percentile of the per-round ratios."""
    ratio_p80: float
    """80th percentile of the per-round ratios."""
    a: Timing
    """Statistics of A alone, from the same interleaved calls."""
    b: Timing
    """Statistics of B alone, from the same interleaved calls."""

    def summary(self) -> str:
        """One line: the ratio with its spread and both timings."""
        return (
            f"A/B = {self.ratio:.3f} [{self.ratio_p20:.3f}, {self.ratio_p80:.3f}]; "
            f"A {self.a.summary()}; B {self.b.summary()}"
        )


def _fmt(seconds: float) -> str:
    if seconds >= 1.0:
        return f"{seconds:.3f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3f} ms"
    return f"{seconds * 1e6:.1f} us"


class TimingProtocol(NamedTuple):
    """How functions are timed: the keywords that :func:`time_fn`, :func:`interleave` and :func:`compare` share.

    >>> from jeq.bench import TimingProtocol
    >>> TimingProtocol()
    TimingProtocol(warmup=3, budget_s=1.0, min_rounds=5, max_rounds=10000, min_sample_s=0.0001, jit=True, compiler_options=None)
    """

    warmup: int = 3
    """Untimed calls per function first (caches, allocators and lazy initialisation out of the way); >= 0."""
    budget_s: float = 1.0
    """Seconds of timed rounds; at least ``min_rounds`` rounds are taken whatever the budget. > 0."""
    min_rounds: int = 5
    """Fewest rounds; one round takes one sample of every function (``min_calls`` of :func:`time_fn`). >= 1."""
    max_rounds: int = 10_000
    """Most rounds (``max_calls`` of :func:`time_fn`); >= ``min_rounds``."""
    min_sample_s: float = 1e-4
    """A function faster than this is timed in groups of calls per sample (timer resolution, Python overhead)."""
    jit: bool = True
    """AOT-compile with ``jax.jit`` first; False times the callable as it is (non-JAX code, same protocol)."""
    compiler_options: dict[str, Any] | None = None
    """XLA debug options for these compiles only, e.g. ``{"xla_gpu_autotune_level": 0}``."""


def _protocol(where: str, keywords: dict[str, Any], **defaults: Any) -> TimingProtocol:
    """``TimingProtocol`` with the function's ``defaults`` and the caller's ``keywords``, validated."""
    for name, value in keywords.items():
        if name not in TimingProtocol._fields:
            validate.fail(where, name, value, f"unknown keyword: must be one of {list(TimingProtocol._fields)}")
    protocol = TimingProtocol()._replace(**defaults)._replace(**keywords)
    validate.integer(where, "warmup", protocol.warmup, low=0)
    validate.positive(where, "budget_s", protocol.budget_s)
    validate.integer(where, "min_rounds", protocol.min_rounds, low=1)
    validate.integer(where, "max_rounds", protocol.max_rounds, low=protocol.min_rounds)
    validate.nonnegative(where, "min_sample_s", protocol.min_sample_s)
    return protocol


def compile_fn(
    fn: Callable, *args: Any, jit: bool = True, compiler_options: dict[str, Any] | None = None
) -> tuple[Callable, float]:
    """Compile ``fn`` ahead of time for ``args`` and return ``(compiled, compile_seconds)``.

    ``jax.jit(fn).lower(*args).compile(compiler_options)``; an already jitted function is lowered as it is (bind
    static arguments with ``functools.partial`` first: the compiled function is called with every element of
    ``args``), an already compiled one (``jax.stages.Compiled``) is returned with compile time 0.
    With ``jit=False`` the callable is returned untouched (for timing non-JAX code with the same protocol).
    ``compiler_options`` are XLA debug options for this compile only, e.g. ``{"xla_gpu_autotune_level": 0}``.

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq.bench import compile_fn
    >>> x = jnp.linspace(0.0, 1.0, 8)
    >>> compiled, seconds = compile_fn(jnp.sin, x)  # jax.jit(fn).lower(*args).compile()
    >>> bool(jnp.allclose(compiled(x), jnp.sin(x))), seconds > 0
    (True, True)
    >>> compile_fn(compiled, x)[1]  # already compiled: nothing to do
    0.0
    """
    if not callable(fn):
        validate.fail("jeq.bench.compile_fn", "fn", fn, "must be callable")
    if not jit or isinstance(fn, jax.stages.Compiled):
        return fn, 0.0
    jitted = fn if hasattr(fn, "lower") else jax.jit(fn)
    start = time.perf_counter()
    lowered = jitted.lower(*args)
    compiled = lowered.compile(compiler_options) if compiler_options else lowered.compile()
    return compiled, time.perf_counter() - start


def _one_sample(fn: Callable, args: tuple, number: int) -> float:
    """Seconds per call over ``number`` calls, each ending in ``block_until_ready``."""
    start = time.perf_counter()
    for _ in range(number):
        jax.block_until_ready(fn(*args))
    return (time.perf_counter() - start) / number


def _calibrate(fn: Callable, args: tuple, warmup: int, min_sample_s: float) -> int:
    """Run the warm-up calls and pick how many calls make one sample of at least ``min_sample_s``."""
    elapsed = [_one_sample(fn, args, 1) for _ in range(max(warmup, 1))]
    per_call = max(min(elapsed), 1e-9)
    return max(1, math.ceil(min_sample_s / per_call))


def _timing(samples: Sequence[float], compile_s: float, number: int) -> Timing:
    arr = np.asarray(samples, dtype=np.float64)
    return Timing(
        median_s=float(np.median(arr)),
        p20_s=float(np.percentile(arr, 20)),
        p80_s=float(np.percentile(arr, 80)),
        min_s=float(arr.min()),
        compile_s=float(compile_s),
        calls=int(arr.size * number),
    )


def time_fn(
    fn: Callable, *args: Any, budget_s: float = 0.5, min_calls: int = 5, max_calls: int = 10_000, **protocol: Any
) -> Timing:
    """Time ``fn(*args)``: AOT compile, ``warmup`` calls, then blocked calls until ``budget_s`` is spent.

    Each timed sample ends in ``jax.block_until_ready``; kernels faster than ``min_sample_s`` are timed in groups of
    calls (one sample = several blocked calls, divided back to per-call time) so that timer resolution and Python
    overhead do not dominate. At least ``min_calls`` samples are taken, at most ``max_calls``.

    Args:
      fn, args: the call to time.
      budget_s, min_calls, max_calls: the time budget and the fewest / most samples.
      **protocol: the other :class:`TimingProtocol` keywords: ``warmup`` (3), ``min_sample_s`` (1e-4), ``jit``
        (True), ``compiler_options`` (None).

    Returns:
        :class:`Timing` with median and p20/p80 of the per-call times and the compile time apart.

    >>> import jax.numpy as jnp
    >>> from jeq.bench import time_fn
    >>> x = jnp.ones((64, 64))
    >>> t = time_fn(jnp.dot, x, x, budget_s=0.05, warmup=1)
    >>> t.calls >= 5, t.p20_s <= t.median_s <= t.p80_s, t.compile_s > 0
    (True, True, True)
    """
    where = "jeq.bench.time_fn"
    min_calls = validate.integer(where, "min_calls", min_calls, low=1)
    max_calls = validate.integer(where, "max_calls", max_calls, low=min_calls)
    config = _protocol(where, protocol, budget_s=budget_s, min_rounds=min_calls, max_rounds=max_calls)
    rows, compile_times, numbers = _sample([fn], [tuple(args)], config)
    return _timing(rows[:, 0], compile_times[0], numbers[0])


def _sample(
    fns: Sequence[Callable], args: Sequence[tuple], protocol: TimingProtocol
) -> tuple[np.ndarray, list[float], list[int]]:
    """Round-robin samples, shape (rounds, len(fns)); the order within a round rotates to cancel position bias.

    Returns the samples (seconds per call), the compile times and the calls per sample of each function.
    """
    compiled, compile_times = [], []
    for fn, a in zip(fns, args):
        c, t = compile_fn(fn, *a, jit=protocol.jit, compiler_options=protocol.compiler_options)
        compiled.append(c)
        compile_times.append(t)
    numbers = [_calibrate(c, a, protocol.warmup, protocol.min_sample_s) for c, a in zip(compiled, args)]
    rows: list[list[float]] = []
    start = time.perf_counter()
    k = len(fns)
    while len(rows) < protocol.max_rounds and (
        len(rows) < protocol.min_rounds or time.perf_counter() - start < protocol.budget_s
    ):
        row = [0.0] * k
        shift = len(rows) % k
        for j in range(k):
            i = (j + shift) % k
            row[i] = _one_sample(compiled[i], args[i], numbers[i])
        rows.append(row)
    return np.asarray(rows), compile_times, numbers


def interleave(fns: Sequence[Callable], args: Sequence[tuple], **protocol: Any) -> list[Timing]:
    """Time several functions round-robin in one process (for re-ranking candidates against an incumbent).

    ``args[i]`` is the argument tuple of ``fns[i]``. Each round times every function once, in a rotating order, so
    drift affects all of them alike. ``**protocol``: the :class:`TimingProtocol` keywords (``warmup`` 3,
    ``budget_s`` 1.0, ``min_rounds`` 5, ``max_rounds`` 10 000, ``min_sample_s`` 1e-4, ``jit`` True,
    ``compiler_options`` None). Returns one :class:`Timing` per function.

    >>> import jax.numpy as jnp
    >>> from jeq.bench import interleave
    >>> x = jnp.ones((32, 32))
    >>> timings = interleave([jnp.dot, jnp.add], [(x, x), (x, x)], budget_s=0.05, warmup=1)
    >>> len(timings), all(t.calls >= 5 and t.median_s > 0 for t in timings)
    (2, True)
    """
    where = "jeq.bench.interleave"
    if len(fns) != len(args):
        raise validate.ArgumentError(f"{where}: got {len(fns)} functions but {len(args)} argument tuples")
    if not fns:
        validate.fail(where, "fns", fns, "must hold at least one function")
    rows, compile_times, numbers = _sample(fns, [tuple(a) for a in args], _protocol(where, protocol))
    return [_timing(rows[:, i], compile_times[i], numbers[i]) for i in range(len(fns))]


def compare(a: Callable, b: Callable, *args: Any, args_b: tuple | None = None, **protocol: Any) -> Comparison:
    """Compare ``a(*args)`` against ``b(*args_b)`` (``args_b`` defaults to ``args``), interleaved A B A B.

    The reported ratio is the median over rounds of ``t_A / t_B`` for back-to-back samples, with its p20/p80 spread:
    a paired statistic, so slow drift of the machine cancels. ``**protocol``: as in :func:`interleave`.

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq.bench import compare
    >>> def once(x):
    ...     return x @ x
    >>> def sixteen_times(x):
    ...     return jax.lax.fori_loop(0, 16, lambda i, y: y @ x / 128.0, x)
    >>> c = compare(once, sixteen_times, jnp.ones((128, 128)), budget_s=0.1, warmup=1)
    >>> c.ratio < 1.0, c.ratio_p20 <= c.ratio <= c.ratio_p80  # paired A/B ratio of back-to-back samples
    (True, True)
    """
    args_b = args if args_b is None else tuple(args_b)
    rows, compile_times, numbers = _sample([a, b], [tuple(args), args_b], _protocol("jeq.bench.compare", protocol))
    ratios = rows[:, 0] / rows[:, 1]
    return Comparison(
        ratio=float(np.median(ratios)),
        ratio_p20=float(np.percentile(ratios, 20)),
        ratio_p80=float(np.percentile(ratios, 80)),
        a=_timing(rows[:, 0], compile_times[0], numbers[0]),
        b=_timing(rows[:, 1], compile_times[1], numbers[1]),
    )


def single_threaded_blas():
    """Limit scipy's OpenBLAS (behind JAX's CPU LAPACK calls: SVD, LU, eigh) to one thread; returns the limiter.

    On a shared 2-core machine its worker threads spin and make each small decomposition 10-100x slower at the
    80th percentile (measured: SVD-norm gradient p80 232 ms -> 4 ms). XLA's own matmul threads are unaffected.
    Keep the returned ``threadpoolctl`` limiter alive for the run (or use it as a context manager).

    >>> import threadpoolctl
    >>> from jeq.bench import single_threaded_blas
    >>> with single_threaded_blas():
    ...     print(all(pool["num_threads"] == 1 for pool in threadpoolctl.threadpool_info()
    ...               if pool["user_api"] == "blas"))
    True
    """
    import scipy.linalg  # noqa: F401  (load the library so that the limit applies to it)
    import threadpoolctl

    return threadpoolctl.threadpool_limits(limits=1, user_api="blas")
