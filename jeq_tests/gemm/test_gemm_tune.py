"""Live CPU tuning: kernels equal jnp.dot, cached measurement (no re-measure, invalidation, resume, failures)."""

from __future__ import annotations

import functools
import tempfile

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jeq.gemm import (
    Cache, family, matmul, measure, pallas, pallas_matmul, record_tuned, tiled_matmul, tune, tuned_kernel, xla_tiled,
)
from jeq.gemm.measurement import measurement_key

SHAPE = (32, 32, 32)
FAST = dict(time_budget_s=0.01, rerank_budget_s=0.05, top_k=2)


@pytest.fixture(scope="module")
def fam():
    """The tiled XLA family with tiles >= 16: 8 configurations at 32×32×32."""
    return xla_tiled(min_tile=16)


def inputs(dtype=jnp.float32):
    kx, ky = jax.random.split(jax.random.key(0))
    return (jax.random.normal(kx, (32, 48), jnp.float32).astype(dtype),
            jax.random.normal(ky, (48, 16), jnp.float32).astype(dtype))


def assert_product(out, x, y, tol):
    """``out`` has the shape and dtype of ``x @ y`` and its value within ``tol`` of the float32 product."""
    chex.assert_shape(out, (x.shape[0], y.shape[1]))
    chex.assert_type(out, x.dtype)
    chex.assert_tree_all_finite(out)
    ref = jnp.dot(x.astype(jnp.float32), y.astype(jnp.float32))
    chex.assert_trees_all_close(out.astype(jnp.float32), ref, rtol=tol, atol=tol * 8)


class TestKernelsEqualJnpDot(chex.TestCase):
    """Every GEMM op, jitted and not jitted, computes ``x @ y`` in the input dtype."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_tiled_matmul(self):
        for dtype, tol in ((jnp.float32, 1e-5), (jnp.bfloat16, 2e-2)):
            x, y = inputs(dtype)
            assert_product(self.variant(functools.partial(tiled_matmul, block_m=8, block_n=16, block_k=12))(x, y),
                           x, y, tol)
            batched = self.variant(jax.vmap(functools.partial(tiled_matmul, block_m=16, block_n=16, block_k=16)))(
                jnp.stack([x, 2 * x]), jnp.stack([y, y])
            )
            chex.assert_shape(batched, (2, 32, 16))
            assert_product(batched[1] / 2, x, y, 2 * tol)
        with pytest.raises(ValueError, match=r"block_k=5.*divisor of 48"):
            self.variant(functools.partial(tiled_matmul, block_m=8, block_n=8, block_k=5))(x, y)

    @chex.variants(with_jit=True, without_jit=True)
    def test_pallas_matmul(self):
        x, y = inputs(jnp.float32)  # Pallas interpret mode is slow to trace: one dtype is enough
        assert_product(self.variant(functools.partial(pallas_matmul, block_m=16, block_n=8, block_k=16))(x, y),
                       x, y, 1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_matmul_without_a_record(self):
        with tempfile.TemporaryDirectory() as cache_dir:
            for dtype, tol in ((jnp.float32, 1e-5), (jnp.bfloat16, 2e-2)):
                x, y = inputs(dtype)
                assert_product(self.variant(functools.partial(matmul, cache_dir=cache_dir))(x, y), x, y, tol)


def test_second_tune_measures_nothing(fam, tmp_path):
    first = tune(*SHAPE, kernel=fam, budget=8, cache_dir=tmp_path, **FAST)
    assert first.measured == 8 == fam.space(*SHAPE).count()
    x, y = jax.random.normal(jax.random.key(1), (32, 32)), jax.random.normal(jax.random.key(2), (32, 32))
    np.testing.assert_allclose(first.kernel(x, y), x @ y, rtol=1e-5, atol=1e-4)
    assert first.time_s > 0 and first.reference_s > 0
    second = tune(*SHAPE, kernel=fam, budget=8, cache_dir=tmp_path, **FAST)
    assert second.measured == 0
    assert second.config == first.config and second.time_s == first.time_s
    np.testing.assert_array_equal(second.search.costs, first.search.costs)


def test_changed_flags_or_version_invalidate(fam, tmp_path, monkeypatch):
    assert tune(*SHAPE, kernel=fam, budget=2, cache_dir=tmp_path, **FAST).measured == 2
    assert tune(*SHAPE, kernel=fam, budget=2, cache_dir=tmp_path, **FAST).measured == 0
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
    assert tune(*SHAPE, kernel=fam, budget=2, cache_dir=tmp_path, **FAST).measured == 2
    monkeypatch.setattr(jax, "__version__", "0.0.0-test")
    assert tune(*SHAPE, kernel=fam, budget=2, cache_dir=tmp_path, **FAST).measured == 2


def test_killed_run_resumes_from_cache(fam, tmp_path):
    calls = {"n": 0}

    def dying_build(config):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # the process is killed while measuring the 4th configuration
        return fam.build(config)

    with pytest.raises(KeyboardInterrupt):
        tune(*SHAPE, kernel=fam._replace(build=dying_build), strategy="random", budget=6, cache_dir=tmp_path, **FAST)
    resumed = tune(*SHAPE, kernel=fam, strategy="random", budget=6, cache_dir=tmp_path, **FAST)
    assert resumed.measured == 3  # the 3 finished measurements were kept, the other 3 are new
    assert len(list((tmp_path / "measurements").glob("*.json"))) == 6


def test_failing_and_wrong_kernels_are_recorded_as_failed(fam, tmp_path):
    def faulty_build(config):
        bm, bk = config["m"][1], config["k"][1]
        if bm == 16 and bk == 16:
            raise ValueError("boom")
        if bm == 32 and bk == 16:
            return lambda x, y: jnp.dot(x, y) + 1.0  # wrong values
        return fam.build(config)

    faulty = fam._replace(name="faulty", build=faulty_build)
    result = tune(*SHAPE, kernel=faulty, strategy="grid", budget=8, cache_dir=tmp_path, **FAST)
    space = faulty.space(*SHAPE)
    cache = Cache(tmp_path)
    statuses = {}
    for idx, cost in zip(result.search.indices, result.search.costs):
        config = space.config(idx)
        m = cache.get_measurement(measurement_key(faulty, config, SHAPE, "float32"))
        statuses[(config["m"][1], config["k"][1])] = m.status
        if config["k"][1] == 16:
            assert m.status == "failed" and not np.isfinite(cost) and m.median_s == np.inf
            assert ("boom" if config["m"][1] == 16 else "wrong result") in m.error
        else:
            assert m.status == "ok" and np.isfinite(cost)
    assert sorted(set(statuses.values())) == ["failed", "ok"]
    assert result.config["k"][1] == 32


def test_suspiciously_fast_result_is_remeasured(fam):
    x, y = jnp.ones((32, 32)), jnp.ones((32, 32))
    config = fam.space(*SHAPE).config(0)
    assert not measure(fam, config, x, y, time_budget_s=0.01).remeasured
    fast = measure(fam, config, x, y, time_budget_s=0.01, incumbent_s=10.0)
    assert fast.remeasured and fast.status == "ok" and fast.median_s < 10.0


def test_matmul_falls_back_then_uses_recorded_kernel(tmp_path):
    x, y = jax.random.normal(jax.random.key(3), (32, 64)), jax.random.normal(jax.random.key(4), (64, 16))
    np.testing.assert_allclose(matmul(x, y, cache_dir=tmp_path), x @ y, rtol=1e-5, atol=1e-4)
    assert tuned_kernel(32, 16, 64, cache_dir=tmp_path) is jnp.dot  # no record: jnp.dot
    fam = family("xla_tiled")
    config = {"m": (2, 16), "n": (1, 16), "k": (4, 16)}
    record_tuned(32, 16, 64, dtype="float32", kernel=fam, config=config, time_s=2.0, reference_s=1.0,
                 cache_dir=tmp_path)
    assert tuned_kernel(32, 16, 64, cache_dir=tmp_path) is jnp.dot  # recorded, but jnp.dot was faster
    record_tuned(32, 16, 64, dtype="float32", kernel=fam, config=config, time_s=1.0, reference_s=2.0,
                 cache_dir=tmp_path)
    assert tuned_kernel(32, 16, 64, cache_dir=tmp_path) is not jnp.dot  # the tuned kernel won: matmul uses it
    assert tuned_kernel(32, 16, 64, dtype="bfloat16", cache_dir=tmp_path) is jnp.dot  # recorded per dtype
    np.testing.assert_allclose(matmul(x, y, cache_dir=tmp_path), x @ y, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(jax.jit(lambda a, b: matmul(a, b, cache_dir=tmp_path))(x, y), x @ y, rtol=1e-5, atol=1e-4)
    other = fam._replace(source="edited-kernel")  # a kernel whose source changed since it was tuned is not used
    record_tuned(32, 16, 64, dtype="float32", kernel=other, config=config, time_s=1.0, reference_s=2.0,
                 cache_dir=tmp_path)
    assert tuned_kernel(32, 16, 64, cache_dir=tmp_path) is jnp.dot


def test_xla_flags_family_passes_compile_options(tmp_path):
    """On CPU the GPU autotuner flags are accepted (and dead); they are part of the cache key."""
    result = tune(8, 8, 8, kernel="xla_flags", strategy="grid", budget=2, cache_dir=tmp_path, **FAST)
    assert result.measured == 2
    key = measurement_key(family("xla_flags"), result.config, (8, 8, 8), "float32")
    assert key["compiler_options"] == result.config and "xla_gpu_autotune_level" in key["compiler_options"]


def test_bad_input_errors(tmp_path):
    with pytest.raises(ValueError, match=r"jeq.gemm.tune\(m=0\): must be an int >= 1"):
        tune(0, 8, 8, cache_dir=tmp_path)
    with pytest.raises(ValueError, match=r"jeq.gemm.tune\(k=-3\)"):
        tune(8, 8, -3, cache_dir=tmp_path)
    with pytest.raises(ValueError, match=r"jeq.gemm.tune\(dtype='int8'\)"):
        tune(8, 8, 8, dtype="int8", cache_dir=tmp_path)
    with pytest.raises(ValueError, match=r"jeq.gemm.tune\(budget=0\)"):
        tune(8, 8, 8, budget=0, cache_dir=tmp_path)
    with pytest.raises(ValueError, match=r"jeq.gemm.tune\(strategy='bogus'\)"):
        tune(8, 8, 8, strategy="bogus", cache_dir=tmp_path)
    with pytest.raises(ValueError, match=r"tune\(100, 100, 100\): nothing was measured: the pallas space has no valid"):
        tune(100, 100, 100, kernel=pallas(gpu=True), cache_dir=tmp_path)  # no GPU tile divides 100
    with pytest.raises(ValueError, match=r"jeq.gemm.family\(name='cuda'\)"):
        tune(8, 8, 8, kernel="cuda", cache_dir=tmp_path)
    with pytest.raises(ValueError, match=r"x shape \(4, 5\) and y shape \(4, 5\)"):
        matmul(jnp.ones((4, 5)), jnp.ones((4, 5)))
    with pytest.raises(ValueError, match="dtype"):
        matmul(jnp.ones((4, 5)), jnp.ones((5, 4), jnp.bfloat16))
    with pytest.raises(ValueError, match=r"jeq.gemm.matmul\(x\): must have 2 axes, got shape \(4,\)"):
        matmul(jnp.ones(4), jnp.ones((4, 5)))
    with pytest.raises(ValueError, match=r"jeq.gemm.tuned_kernel\(dtype='float33'\): must be a dtype"):
        tuned_kernel(8, 8, 8, dtype="float33", cache_dir=tmp_path)
    with pytest.raises(ValueError, match=r"jeq.gemm.record_tuned\(kernel='faulty'\): must be a built-in family"):
        record_tuned(8, 8, 8, dtype="float32", kernel=xla_tiled()._replace(name="faulty"), config={}, time_s=1.0,
                     reference_s=2.0, cache_dir=tmp_path)
