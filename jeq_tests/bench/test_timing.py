"""jeq.bench: the harness measures what it claims, compiles once, and ranks known-different functions correctly."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import pytest

from jeq import bench


def _sleepy(seconds):
    def fn(x):
        time.sleep(seconds)
        return x

    return fn


def test_time_fn_measures_a_known_duration_and_reports_compile_apart():
    timing = bench.time_fn(_sleepy(0.002), 1.0, jit=False, budget_s=0.05, warmup=1)
    assert 0.0019 < timing.median_s < 0.02
    assert timing.p20_s <= timing.median_s <= timing.p80_s and timing.min_s <= timing.p20_s
    assert timing.compile_s == 0.0 and timing.calls >= 5


def test_time_fn_aot_compiles_a_jax_function_once():
    traces = []

    def f(x):
        traces.append(1)
        return jnp.sin(x) @ x

    timing = bench.time_fn(f, jnp.ones((32, 32)), budget_s=0.05)
    assert len(traces) == 1  # lowered once, never retraced during timing
    assert timing.compile_s > 0 and timing.median_s > 0


def test_compare_orders_a_slow_and_a_fast_function():
    result = bench.compare(_sleepy(0.004), _sleepy(0.001), 0.0, jit=False, budget_s=0.1, warmup=1)
    assert 2.0 < result.ratio < 6.0
    assert result.ratio_p20 <= result.ratio <= result.ratio_p80
    assert result.a.median_s > result.b.median_s
    assert "A/B" in result.summary()


def test_interleave_ranks_candidates():
    x = jnp.ones((128, 128))
    timings = bench.interleave(
        [lambda a: a, lambda a: a @ a @ a @ a @ a @ a @ a @ a], [(x,), (x,)], budget_s=0.1, min_rounds=3
    )
    assert len(timings) == 2 and timings[0].median_s < timings[1].median_s


def test_compiler_options_are_passed_to_xla():
    compiled, seconds = bench.compile_fn(jnp.sin, jnp.ones(3), compiler_options={"xla_cpu_enable_fast_math": False})
    assert seconds > 0 and isinstance(compiled, jax.stages.Compiled)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: bench.time_fn(jnp.sin, 1.0, budget_s=0), r"time_fn\(budget_s=0\): must be > 0"),
        (lambda: bench.time_fn(jnp.sin, 1.0, min_calls=0), r"time_fn\(min_calls=0\)"),
        (lambda: bench.compare(jnp.sin, jnp.cos, 1.0, warmup=-1), r"compare\(warmup=-1\)"),
        (lambda: bench.interleave([jnp.sin], [(1.0,), (2.0,)]), "1 functions but 2 argument tuples"),
        (lambda: bench.compile_fn(3), "must be callable"),
    ],
)
def test_bad_arguments_are_clear_errors(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()
