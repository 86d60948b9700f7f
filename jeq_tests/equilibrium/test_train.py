"""The shared training step: learns, honours per-example weights (padding), is jitted once, rejects bad input; the
adjoint report says when the implicit backward's solve was truncated."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jeq import equilibrium as eq
from jeq import fixedpoint as fp
from jeq_tests.equilibrium.conftest import normal_data


@pytest.fixture(scope="module")
def setup():
    model = eq.opteq(features=6, hidden=8, classes=2, solver="picard", tol=1e-4,
                     backward=fp.implicit(solver="picard", tol=1e-5))
    xs = normal_data(0, (32, 6))
    ys = (xs[:, 0] + xs[:, 1] > 0).astype(jnp.int32)
    optimizer = optax.adam(3e-2)
    return model, xs, ys, optimizer, eq.make_train_step(model.apply, optimizer)


def test_training_reduces_the_loss_and_reports_solver_stats(setup):
    model, xs, ys, optimizer, train_step = setup
    params = model.init(jax.random.key(1))
    opt_state = optimizer.init(params)
    losses = []
    for _ in range(30):
        params, opt_state, metrics = train_step(params, opt_state, xs, ys)
        losses.append(float(metrics.loss))
    assert losses[-1] < 0.5 * losses[0]
    assert float(metrics.accuracy) > 0.9 and float(metrics.converged) == 1.0 and float(metrics.mean_steps) >= 1
    assert train_step._cache_size() == 1
    evaluate = eq.make_eval_step(model.apply)
    sums = evaluate(params, xs, ys)
    np.testing.assert_allclose(float(sums.count), 32.0)
    assert float(sums.correct) / 32 > 0.9


def test_zero_weight_rows_are_ignored(setup):
    """Padding rows (weight 0) do not influence the step, whatever they hold; the loss is the mean over real rows."""
    model, xs, ys, optimizer, train_step = setup
    params = model.init(jax.random.key(2))
    opt_state = optimizer.init(params)
    weight = jnp.concatenate([jnp.ones(24), jnp.zeros(8)])
    results = []
    for fill, label in ((100.0, 0), (-3.0, 1)):
        xs_pad = jnp.concatenate([xs[:24], fill * jnp.ones((8, 6))])
        ys_pad = jnp.concatenate([ys[:24], jnp.full(8, label, jnp.int32)])
        results.append(train_step(params, opt_state, xs_pad, ys_pad, weight))
    chex.assert_trees_all_close(results[0][0], results[1][0], atol=1e-6, rtol=1e-7)
    sums = eq.make_eval_step(model.apply)(params, xs_pad, ys_pad, weight)
    assert float(sums.count) == 24.0
    np.testing.assert_allclose(float(results[0][2].loss), float(sums.loss) / 24, rtol=1e-5)


def test_jacobian_penalty_enters_the_loss(setup):
    model, xs, ys, optimizer, _ = setup
    params = model.init(jax.random.key(3))
    step = eq.make_train_step(model.apply, optimizer, jacobian_weight=1.0)
    _, _, metrics = step(params, optimizer.init(params), xs, ys, key=jax.random.key(0))
    assert float(metrics.jacobian) > 0
    with pytest.raises(ValueError, match=r"train_step\(key=None\): must be a jax.random.key"):
        step(params, optimizer.init(params), xs, ys)


def test_bad_batches_are_rejected(setup):
    model, xs, ys, optimizer, train_step = setup
    params = model.init(jax.random.key(4))
    with pytest.raises(ValueError, match=r"train_step\(yb\): must have shape \(32,\), got shape \(31,\)"):
        train_step(params, optimizer.init(params), xs, ys[:31])
    with pytest.raises(ValueError, match=r"train_step\(weight\): must have shape \(32,\), got shape \(3,\)"):
        train_step(params, optimizer.init(params), xs, ys, jnp.ones(3))
    with pytest.raises(ValueError, match="jacobian_weight"):
        eq.make_train_step(model.apply, optimizer, jacobian_weight=-1.0)


def test_adjoint_report_says_when_the_backward_solve_is_truncated():
    """The VJP of a training step cannot say that its adjoint solve hit maxiter; adjoint_report reruns it and does."""
    xb, yb = normal_data(5, (4, 12)), jnp.asarray([0, 1, 2, 0])
    settled = eq.deq(features=12, hidden=8, classes=3)
    params = settled.init(jax.random.key(0))
    report = eq.adjoint_report(settled, params, xb, yb)
    assert report.converged_fraction == 1.0 and report.mean_steps >= 1
    assert report.max_residual <= 1e-6  # DEQ's default adjoint tolerance (TorchDEQ's 1e-6)
    chex.assert_shape(report.stats.num_steps, (4,))
    truncated = eq.deq(features=12, hidden=8, classes=3,
                       backward=fp.implicit(solver="picard", tol=1e-9, rtol=0.0, maxiter=1))
    report = eq.adjoint_report(truncated, params, xb, yb)
    assert report.converged_fraction == 0.0 and report.mean_steps == 1 and report.max_residual > 1e-9
    with pytest.raises(ValueError, match=r"adjoint_report\(model='opteq'\): must have an implicit backward"):
        eq.adjoint_report(eq.opteq(features=12, hidden=8, classes=3, backward="unroll"), params, xb, yb)
