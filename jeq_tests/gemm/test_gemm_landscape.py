"""Landscapes: the analytic GPU model is one vmapped call with physical bounds and a known optimum; replay."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jeq.gemm import AnalyticLandscape, GpuSpec, ReplayLandscape, tvm_gemm_space, tvm_gemm_time


@pytest.fixture(scope="module")
def small():
    return AnalyticLandscape.tvm_gemm(16, 32, 16, prune=False)


def test_batched_model_equals_per_configuration(small):
    g = small.space.genomes(np.arange(0, small.space.size, 97))
    batched = small.evaluate(g)
    tiles = small.space.decode(g)
    one = jax.jit(lambda t: tvm_gemm_time(t, m=16, n=32, k=16))
    single = np.asarray([float(one({a: tiles[a][i] for a in ("m", "n", "k")})) for i in range(0, g.shape[0], 10)])
    chex.assert_trees_all_close(batched[::10], single, rtol=1e-6)


def test_no_recompilation_for_same_padded_batch(small):
    g = small.space.genomes(np.arange(100))
    small.evaluate(g[:60])
    size = small._batched._cache_size()
    small.evaluate(g[:64])
    small.evaluate(g[33:90])
    assert small._batched._cache_size() == size


def test_invalid_iff_resource_limits_violated(small):
    """The pruned space's constraint is exactly the set where the model returns a finite time."""
    pruned = tvm_gemm_space(16, 32, 16, prune=True)
    idx, cost = small.table()
    g = small.space.genomes(idx)
    np.testing.assert_array_equal(np.isfinite(cost), pruned.valid(g))
    assert 0 < np.isfinite(cost).mean() < 1


def test_model_respects_roofline_bounds(small):
    """No configuration beats peak FLOPS or streams less than the compulsory DRAM bytes (plus launch)."""
    spec = GpuSpec()
    _, cost = small.table()
    peak = spec.num_sms * spec.fma_per_sm_cycle * 32 * 2 * spec.clock_hz
    compulsory = 4 * (16 * 16 + 16 * 32 + 16 * 32) / spec.dram_bytes_per_s
    assert cost.min() >= spec.launch_s + max(small.flops / peak, compulsory)


def test_known_optimum_and_replay(small, tmp_path):
    i, best = small.optimum()
    idx, cost = small.table()
    assert best == cost.min() and np.isfinite(best)
    replay = small.replay()
    g = small.space.genomes(np.asarray([i, 0, 5]))
    np.testing.assert_array_equal(replay.evaluate(g), small.evaluate(g))
    replay.save(tmp_path / "table.npz")
    loaded = ReplayLandscape.load(small.space, tmp_path / "table.npz")
    assert loaded.optimum() == (i, best)
    with pytest.raises(ValueError, match="recorded on"):
        ReplayLandscape.load(tvm_gemm_space(16, 16, 16), tmp_path / "table.npz")


def test_replay_never_invents_costs(small):
    partial = ReplayLandscape(small.space, [1, 2, 3], [1.0, 2.0, np.inf], flops=small.flops)
    np.testing.assert_array_equal(partial.evaluate(small.space.genomes([3, 1])), [np.inf, 1.0])
    with pytest.raises(KeyError, match="not recorded"):
        partial.evaluate(small.space.genomes([4]))
    with pytest.raises(ValueError, match="must be unique"):
        ReplayLandscape(small.space, [1, 1], [1.0, 2.0], flops=1.0)


def test_dense_replay_equals_sparse(small, tmp_path):
    idx, cost = small.table()
    dense = np.full(small.space.size, np.inf)
    dense[idx] = cost
    a, b = ReplayLandscape(small.space, None, dense, flops=1.0), small.replay()
    g = small.space.genomes(np.arange(0, small.space.size, 37))
    np.testing.assert_array_equal(a.evaluate(g), b.evaluate(g))
    assert a.optimum() == b.optimum()
    a.save(tmp_path / "dense.npz")
    assert ReplayLandscape.load(small.space, tmp_path / "dense.npz").optimum() == a.optimum()
    with pytest.raises(ValueError, match=rf"ReplayLandscape\(costs\): must have shape \({small.space.size},\)"):
        ReplayLandscape(small.space, None, dense[:-1], flops=1.0)


class TestModelJitAndVmap(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_model_is_jittable_and_vmappable(self):
        """The per-configuration model under ``jax.vmap``, jitted or not, gives the landscape's batched costs."""
        tiles = {"m": np.array([[1, 1, 8, 2], [2, 1, 4, 2], [1, 2, 8, 1]]),
                 "n": np.array([[1, 2, 8, 2], [2, 2, 4, 2], [4, 1, 8, 1]]),
                 "k": np.array([[2, 4, 2], [1, 4, 4], [16, 1, 1]])}
        out = self.variant(jax.vmap(functools.partial(tvm_gemm_time, m=16, n=32, k=16)))(tiles)
        chex.assert_shape(out, (3,))
        chex.assert_type(out, jnp.float32)
        chex.assert_tree_all_finite(out)
        land = AnalyticLandscape.tvm_gemm(16, 32, 16, prune=False)
        genomes = np.stack([land.space.genome_of({a: tuple(tiles[a][i]) for a in tiles}) for i in range(3)])
        chex.assert_trees_all_close(np.asarray(out, np.float64), land.evaluate(genomes), rtol=1e-6)
