"""Spec opteq.md section 4: ||V||_2 by a persistent power iteration (norm="power"), its vector carried in the params
and advanced in the optimiser chain, tracks the SVD norm while V trains."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jeq import equilibrium as eq
from jeq_tests.equilibrium.conftest import normal_data


def test_persistent_power_iteration_tracks_the_spectral_norm_during_training(x64):
    model = eq.opteq(features=6, hidden=12, classes=3, norm="power", dtype=jnp.float64, tol=1e-10, maxiter=200)
    params = model.init(jax.random.key(0))
    assert params.power_vector.shape == (12,)
    tx = optax.chain(optax.adam(3e-2), eq.refresh_power_vector())
    step = eq.make_train_step(model.apply, tx)
    state = tx.init(params)
    xb, yb = normal_data(1, (16, 6)), jnp.arange(16) % 3
    errors = []
    for _ in range(30):
        params, state, _ = step(params, state, xb, yb)
        exact = jnp.linalg.norm(params.coupling, 2)
        errors.append(float((exact - eq.power_norm(params.coupling, params.power_vector)) / exact))
    assert min(errors) >= -1e-12  # a lower bound
    assert errors[-1] < 1e-4 and errors[0] > 10 * errors[-1]
    weight = model.prepare(params).weight
    scale = eq.spectral_scale(params.scale, 0.05)
    np.testing.assert_allclose(jnp.linalg.norm(weight, 2), scale, rtol=1e-4)
    # u carries no gradient: the loss does not depend on it through autodiff
    grads = jax.grad(lambda p: model.apply(p, xb[0]).logits[0])(params)
    assert float(jnp.max(jnp.abs(grads.power_vector))) == 0.0


def test_svd_default_has_no_power_vector_and_the_refresh_passes_through():
    model = eq.opteq(features=3, hidden=4, classes=2)
    params = model.init(jax.random.key(0))
    assert params.power_vector.shape == (0,) and eq.parameter_count(params) == 4 * 4 + 1 + 4 * 3 + 4 + 2 * 4 + 2
    updates = jax.tree.map(jnp.ones_like, params)
    out, _ = eq.refresh_power_vector().update(updates, optax.EmptyState(), params)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), out, updates))


@pytest.mark.parametrize("call, match", [
    (lambda: eq.opteq(features=2, hidden=2, classes=2, norm="frobenius"), r"opteq\(norm='frobenius'\)"),
    (lambda: eq.opteq_conv(image_shape=(4, 4), in_channels=1, channels=2, classes=2, norm="power"),
     r"opteq_conv\(norm='power'\)"),
    (lambda: eq.refresh_power_vector(steps=0), r"refresh_power_vector\(steps=0\)"),
])
def test_bad_norm_configuration(call, match):
    with pytest.raises(ValueError, match=match):
        call()
