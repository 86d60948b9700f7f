"""The OptEq unit layer (spec opteq.md section 3): T(z) = W^T sigma(W z + c) = grad Phi(z), its equilibrium is
z_hat = W^T y* with y* the equilibrium of the z = sigma(W^T W z + c) form with W and W^T swapped, and it minimises
the convex E(z) = ||z||^2/2 - Phi(z)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jeq import equilibrium as eq
from jeq import fixedpoint as fp
from jeq import prox
from jeq_tests.equilibrium.conftest import normal_data

TOL = 1e-12


@pytest.mark.parametrize("name", ["relu", "tanh", "softplus"])
def test_unit_layer_is_the_gradient_of_phi(name, x64):
    """T(z) = W^T sigma(W z + c) equals grad Phi(z), Phi = sum F(W z + c), F = prox.primitive (autodiff)."""
    activation = getattr(prox, name)()
    w, c, z = normal_data(0, (7, 5)), normal_data(1, (7,)), normal_data(2, (4, 5))

    @jax.jit
    def both(z, v):
        grad_phi = jax.vmap(jax.grad(lambda u: eq.unit_potential(u, c, weight=w, activation=activation)))(z)
        layer = jax.vmap(lambda u: eq.unit_map(u, c, weight=w, activation=activation))(z)
        return grad_phi, layer, jax.vmap(jax.grad(lambda s: prox.primitive(activation, s)))(v), activation.apply(v)

    grad_phi, layer, grad_f, sigma = both(z, jnp.linspace(-3.0, 3.0, 61))
    np.testing.assert_allclose(grad_phi, layer, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grad_f, sigma, atol=1e-10)


@pytest.mark.parametrize("name", ["relu", "tanh"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unit_equilibrium_is_w_transpose_of_the_swapped_equilibrium(name, seed, x64):
    """Random instances with ||W||_2 < 1: the unit model's z* equals W^T y*, y* = opteq's equilibrium with the
    coupling V^T (W and W^T swapped), to solver tolerance; and z* minimises E (grad E = z - T(z) = 0)."""
    rng = np.random.default_rng(seed)
    settings = dict(features=6, hidden=8, classes=3, activation=getattr(prox, name)(), solver="anderson", tol=TOL,
                    maxiter=500, dtype=jnp.float64, margin=float(rng.uniform(0.02, 0.5)))
    unit, swapped = eq.opteq_unit(**settings), eq.opteq(**settings)
    params = unit.init(jax.random.key(seed))._replace(bias=normal_data(seed + 10, (8,)))
    x = normal_data(seed + 20, (6,))
    weight = unit.prepare(params)
    assert float(jnp.linalg.norm(weight, 2)) < 1.0
    transposed = params._replace(coupling=params.coupling.T)
    np.testing.assert_allclose(swapped.prepare(transposed).weight, weight.T, atol=1e-14)
    z_hat = unit.equilibrium(params, x)
    y_star = swapped.equilibrium(transposed, x)
    assert bool(z_hat.stats.converged) and bool(y_star.stats.converged)
    np.testing.assert_allclose(z_hat.value, weight.T @ y_star.value, atol=1e-10)
    grad_e = jax.grad(lambda z: unit.objective(params, z, x))(z_hat.value)
    assert float(jnp.linalg.norm(grad_e)) < 1e-10


def test_unit_model_gradients_and_backward_options_agree(x64):
    """Same solver/backward options as opteq: implicit, unroll and a long phantom give the same parameter gradient."""
    common = dict(features=4, hidden=5, classes=3, solver="picard", tol=1e-13, maxiter=400, dtype=jnp.float64)
    x, y = normal_data(3, (4,)), 1

    def grad(backward):
        model = eq.opteq_unit(**common, backward=backward)
        params = model.init(jax.random.key(1))

        def loss(p):
            return -jax.nn.log_softmax(model.apply(p, x).logits)[y]

        return jax.grad(loss)(params)

    implicit = grad("implicit")
    for other in (grad("unroll"), grad(fp.phantom(steps=200, damping=1.0))):
        for a, b in zip(jax.tree.leaves(implicit), jax.tree.leaves(other)):
            np.testing.assert_allclose(a, b, atol=1e-9, rtol=1e-7)


def test_unit_model_refuses_a_prior():
    with pytest.raises(ValueError, match=r"opteq_unit\(prior=.*must be None"):
        eq.opteq_unit(features=2, hidden=2, classes=2, prior=eq.smoothness_prior(strength=0.1))
