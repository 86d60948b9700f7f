"""Deep OptEq (spec opteq.md section 5): the exact convexity condition I - blockdiag(W_l^T W_l) - (V + V^T) >= 0 on
the assembled matrix, the projection that enforces it directly (constraint="exact"), priors, and the convolutional
version with downsampling."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from jeq import equilibrium as eq
from jeq import prox
from jeq_tests.equilibrium.conftest import normal_data

EPS = 0.1


def _dense(**options):
    return eq.deep_opteq(features=5, hidden=(6, 4, 3), classes=2, margin=EPS, solver="picard", tol=1e-12,
                         maxiter=3000, dtype=jnp.float64, **options)


def test_exact_projection_puts_deep_opteq_on_the_convexity_boundary_beyond_the_block_budgets(x64):
    """constraint="exact": lambda_min(I - M) = eps exactly when the full budgets overshoot (M assembled densely),
    ||M||_2 <= 1 - eps (Jacobi contracts), and the couplings exceed the block budget's cap (1 - eps) / 4;
    within budget nothing is rescaled. The default "blocks" keeps margin >= eps with couplings <= (1 - eps) / 4."""
    exact, blocks = _dense(constraint="exact"), _dense()
    params = exact.init(jax.random.key(3))

    @jax.jit
    def measure(a):
        out = []
        for model in (exact, blocks):
            prepared = model.prepare(params._replace(scales=jnp.full(3, a), link_scales=jnp.full(2, a)))
            m = eq.block_coupling(prepared)
            out.append((eq.convexity_margin(prepared), jnp.linalg.norm(m, 2),
                        jnp.max(jnp.stack([jnp.linalg.norm(v, 2) for v in prepared.links]))))
        return out

    (margin, norm, link), (block_margin, _, block_link) = measure(8.0)
    assert abs(float(margin) - EPS) < 1e-10 and float(norm) <= 1 - EPS + 1e-10
    assert float(link) > (1 - EPS) / 4 + 0.05 >= float(block_link) + 0.05
    assert float(block_margin) >= EPS - 1e-12
    (margin, _, _), _ = measure(-4.0)  # budgets small: r = 1, no projection, margin > eps
    assert float(margin) > EPS + 0.1
    x = normal_data(0, (5,))
    solution = jax.jit(exact.equilibrium)(params._replace(scales=jnp.full(3, 8.0), link_scales=jnp.full(2, 8.0)), x)
    assert bool(solution.stats.converged)


def test_deep_opteq_prior_enters_layer_and_objective(x64):
    """A smooth convex prior h(z_1, ..., z_L) as in the single-layer model: z* satisfies grad (G + h)(z*) = 0
    (tanh: interior optimum) and differs from the equilibrium without the prior."""
    smooth = eq.smoothness_prior(strength=0.1)
    prior = lambda z: sum(smooth(v) for v in z)  # noqa: E731
    with_prior, without = _dense(activation=prox.tanh(), prior=prior), _dense(activation=prox.tanh())
    params = with_prior.init(jax.random.key(4))
    x = normal_data(1, (5,))

    @jax.jit
    def run(params, x):
        z = with_prior.equilibrium(params, x).value
        grad = jax.grad(lambda v: with_prior.objective(params, v, x))(z)
        return z, ravel_pytree(grad)[0], without.equilibrium(params, x).value

    z, grad, z_plain = run(params, x)
    assert float(jnp.linalg.norm(grad)) < 1e-9
    assert float(jnp.linalg.norm(ravel_pytree(z)[0] - ravel_pytree(z_plain)[0])) > 1e-3


def test_conv_deep_opteq_assembled_operator_is_symmetric_and_convex_and_downsamples(x64):
    """Conv deep OptEq with stride-2 links: the assembled M (Jacobian of the pre-activation, identity prox) is
    symmetric (V_l^T is the exact transpose of the strided conv) and I - M >= eps I at large scales (certified
    bounds); z_2 lives on the half-resolution grid; z* minimises G (tanh)."""
    common = dict(image_shape=(4, 4), in_channels=1, channels=(2, 3), classes=2, margin=EPS, solver="anderson",
                  tol=1e-12, maxiter=500, dtype=jnp.float64)
    linear = eq.deep_opteq_conv(activation=prox.l1(weight=0.0), **common)  # prox of 0 = identity
    model = eq.deep_opteq_conv(activation=prox.tanh(), **common)
    params = model.init(jax.random.key(5))
    params = params._replace(scales=jnp.full(2, 10.0), link_scales=jnp.full(1, 10.0),
                             biases=(normal_data(2, (2,)), normal_data(3, (3,))))
    x = normal_data(4, (4, 4, 1))

    @jax.jit
    def run(params, x):
        prepared = linear.prepare(params)
        zero = (jnp.zeros((4, 4, 2)), jnp.zeros((2, 2, 3)))
        flat, unravel = ravel_pytree(zero)
        m = jax.jacfwd(lambda v: ravel_pytree(linear.layer(unravel(v), prepared, zero))[0])(flat)
        solution = model.equilibrium(params, x)
        grad = jax.grad(lambda z: model.objective(params, z, x))(solution.value)
        return m, solution, ravel_pytree(grad)[0]

    m, solution, grad = run(params, x)
    assert m.shape == (4 * 4 * 2 + 2 * 2 * 3,) * 2
    np.testing.assert_allclose(m, m.T, atol=1e-12)
    assert float(jnp.linalg.eigvalsh(jnp.eye(m.shape[0]) - m)[0]) >= EPS - 1e-10
    assert [v.shape for v in solution.value] == [(4, 4, 2), (2, 2, 3)]
    assert bool(solution.stats.converged) and float(jnp.linalg.norm(grad)) < 1e-9
    assert model.apply(params, x).logits.shape == (2,)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: eq.deep_opteq(features=4, hidden=(3, 2), classes=2, constraint="gershgorin"),
         r"deep_opteq\(constraint='gershgorin'\): must be one of"),
        (lambda: eq.deep_opteq_conv(image_shape=(4, 4), in_channels=1, channels=(2, 2), classes=2,
                                    constraint="exact"), r"deep_opteq_conv\(constraint='exact'\)"),
        (lambda: eq.deep_opteq_conv(image_shape=(6, 6), in_channels=1, channels=(2, 2, 2), classes=2),
         r"deep_opteq_conv\(stride=2\): must have stride"),
        (lambda: eq.deep_opteq_conv(image_shape=(4, 4), in_channels=1, channels=(2,), classes=2),
         "at least two layers"),
    ],
)
def test_bad_deep_configuration(call, match):
    with pytest.raises(ValueError, match=match):
        call()
