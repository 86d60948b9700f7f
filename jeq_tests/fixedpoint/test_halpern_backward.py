"""Halpern at ||W||_2 = 1 (spec opteq.md section 6.2): the fixed points form a set, I - J^T is singular, and the
implicit backward would solve a singular system; solve() warns when it is differentiated so, and points to
phantom/unroll."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jeq import fixedpoint as fp
from jeq import prox

GRAM = jnp.diag(jnp.array([1.0, 0.25]))  # W = diag(1, 0.5): ||W||_2 = 1, Fix = {(t, 4/3): t >= 0} for c = (0, 1)
ANCHOR = jnp.array([3.0, 0.0])  # selects (3, 4/3), where relu' = 1 and J = W^T W = diag(1, 1/4)


def layer(z, gram, c):
    return prox.relu().apply(gram @ z + c)


def _select(gram, c, backward):
    return fp.solve(layer, jnp.zeros(2), gram, c, solver=fp.halpern(anchor=ANCHOR), tol=1e-6, maxiter=10**6,
                    backward=backward).value


def test_implicit_backward_through_halpern_at_unit_norm_warns_and_is_singular(x64):
    c = jnp.array([0.0, 1.0])
    with warnings.catch_warnings():  # the forward solve alone is fine: no warning
        warnings.simplefilter("error")
        z = jax.jit(_select, static_argnums=2)(GRAM, c, "implicit")
    np.testing.assert_allclose(z, [3.0, 4 / 3], atol=1e-5)
    # the adjoint system really is singular there: u = J^T u + g has no solution for g = (1, 0)
    jt = jax.jacobian(layer)(z, GRAM, c).T
    assert float(jnp.min(jnp.abs(jnp.linalg.eigvals(jnp.eye(2) - jt)))) < 1e-12
    adjoint = fp.adjoint_solve(layer, z, GRAM, c, cotangent=jnp.array([1.0, 0.0]))
    assert not bool(adjoint.stats.converged)
    with pytest.warns(UserWarning, match="backward='phantom' or backward='unroll'"):
        jax.grad(lambda c: jnp.sum(_select(GRAM, c, "implicit")))(c)


@pytest.mark.parametrize("backward", [fp.phantom(steps=20, damping=0.5), fp.unroll()])
def test_phantom_and_unroll_through_halpern_do_not_warn(backward, x64):
    c = jnp.array([0.0, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if isinstance(backward, fp.Unroll):  # unroll runs maxiter steps: keep it short
            value = lambda c: jnp.sum(fp.solve(layer, jnp.zeros(2), GRAM, c, solver=fp.halpern(anchor=ANCHOR),
                                               tol=1e-3, maxiter=2000, backward=backward).value)
        else:
            value = lambda c: jnp.sum(_select(GRAM, c, backward))
        grad = jax.jit(jax.grad(value))(c)
    assert bool(jnp.all(jnp.isfinite(grad)))
