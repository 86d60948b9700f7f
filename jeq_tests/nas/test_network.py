"""HNAG networks: shapes for sampled architectures and both presets, exact parameter counts, the budget, training."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jeq.nas import (
    Architecture,
    HParams,
    Network,
    count_params,
    darts_like,
    fit_width,
    make_optimizer,
    make_steps,
    param_count,
    randwire,
    sample_architecture,
)
from jeq.validate import ArgumentError

SMALL = HParams(g1_nodes=3, g1_k=2, g1_p=0.5, g2_nodes=1, g2_p=0.5, g3_nodes=3, g3_k=2, g3_p=0.5)
ARCHS = [
    sample_architecture(HParams(g1_nodes=4, g1_k=3, g1_p=0.7, g2_nodes=3, g2_p=0.5, g3_nodes=4, g3_k=2, g3_p=0.3),
                        seed=0),
    sample_architecture(HParams(g1_nodes=7, g1_k=4, g1_p=0.9, g2_nodes=4, g2_p=0.8, g3_nodes=5, g3_k=4, g3_p=0.6),
                        seed=1),
    sample_architecture(randwire(nodes=8, k=4, p=0.75), seed=0),
    sample_architecture(darts_like(cells=8, nodes=4), seed=0),
]


def _abstract(arch, **kw):
    return nnx.eval_shape(lambda: Network(arch, rngs=nnx.Rngs(0), **kw))


@pytest.mark.parametrize("arch", ARCHS, ids=["hnag-a", "hnag-b", "randwire", "darts-like"])
def test_forward_shapes_and_count_params_equals_the_sum_of_param_leaves(arch):
    width = 4
    model = _abstract(arch, width=width, in_channels=3, num_classes=7)
    leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
    assert count_params(arch, width=width, in_channels=3, num_classes=7) == sum(int(np.prod(x.shape)) for x in leaves)
    graphdef, state = nnx.split(model)
    out = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x), state, jax.ShapeDtypeStruct((5, 16, 16, 3),
                                                                                             jnp.float32))
    assert out.shape == (5, 7)
    # one conv kernel per operation: N_t * N_m * N_b of them, stacked per cell
    kernels = [x for path, x in nnx.to_flat_state(nnx.state(model, nnx.Param)) if path[-1] == "kernels"]
    assert sum(int(np.prod(k.shape[:2])) for k in kernels) == arch.num_operations


@pytest.mark.parametrize("budget", [30_000, 100_000, 400_000])
def test_fit_width_is_the_widest_network_within_the_budget(budget):
    arch = ARCHS[1]
    width = fit_width(arch, budget=budget)
    assert count_params(arch, width=width) <= budget < count_params(arch, width=width + 1)


def test_a_budget_too_small_for_any_width_names_the_value():
    with pytest.raises(ArgumentError, match=r"jeq.nas.fit_width\(budget=500\): must be >= \d+"):
        fit_width(ARCHS[1], budget=500)


def test_json_round_trip_rebuilds_identical_shapes_and_outputs():
    arch = sample_architecture(SMALL, seed=2)
    again = Architecture.from_json(arch.to_json())
    x = jax.random.uniform(jax.random.key(1), (4, 8, 8, 1))
    outs, shapes = [], []
    for a in (arch, again):
        model = Network(a, width=2, rngs=nnx.Rngs(0))
        model.eval()
        shapes.append(jax.tree.map(lambda v: v.shape, nnx.state(model, nnx.Param)))
        outs.append(nnx.jit(lambda m, x: m(x))(model, x))
    assert shapes[0] == shapes[1]
    np.testing.assert_array_equal(outs[0], outs[1])


def test_edge_scalars_start_at_one_and_train_mode_updates_batch_statistics():
    arch = sample_architecture(SMALL, seed=2)
    model = Network(arch, width=2, rngs=nnx.Rngs(0))
    assert all(np.all(np.asarray(v) == 1.0) for path, v in nnx.to_flat_state(nnx.state(model, nnx.Param))
               if "edges" in str(path[-1]))
    before = nnx.state(model, nnx.BatchStat)
    before = jax.tree.map(np.array, before)
    model.train()
    nnx.jit(lambda m, x: m(x))(model, jnp.ones((4, 8, 8, 1)))
    after = nnx.state(model, nnx.BatchStat)
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)))


def test_jitted_step_on_a_second_batch_does_not_recompile_and_lowers_the_loss():
    arch = sample_architecture(SMALL, seed=2)
    model = Network(arch, width=2, rngs=nnx.Rngs(0))
    model.train()
    optimizer = nnx.Optimizer(model, make_optimizer(steps_per_epoch=4, schedule_epochs=2, learning_rate=0.05),
                              wrt=nnx.Param)
    graphdef, state = nnx.split((model, optimizer))
    model.eval()
    step, _, _ = make_steps(graphdef, nnx.graphdef(model), 1)
    keys = jax.random.split(jax.random.key(0), 2)
    x = [jax.random.uniform(k, (16, 8, 8, 1)) for k in keys]
    y = jnp.arange(16) % 10
    w = jnp.ones(16)
    state, first = step(state, x[0], y, w)
    state, _ = step(state, x[1], y, w)
    for _ in range(8):
        state, last = step(state, x[0], y, w)
    assert step._cache_size() == 1
    assert float(last) < float(first)


def test_bad_widths_and_images_raise():
    with pytest.raises(ArgumentError, match=r"jeq.nas.plan\(width=0\)"):
        count_params(ARCHS[0], width=0)
    model = Network(sample_architecture(SMALL, seed=0), width=2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"divisible by 4, got shape \(2, 10, 10, 1\)"):
        model(jnp.ones((2, 10, 10, 1)))
