"""Gradients of fixed points: implicit (IFT) vs finite differences (float64) and vs unrolled; phantom -> implicit."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from jax.test_util import check_grads

from jeq import fixedpoint as fp
from jeq_tests.fixedpoint.conftest import N, make_problem, normal_data, tanh_layer

TIGHT = fp.implicit(solver="anderson", tol=1e-13, rtol=0.0, maxiter=500)
HALPERN = fp.halpern(anchor=jnp.zeros(N))


@functools.lru_cache(maxsize=None)
def _loss(solver, backward, tol=1e-13, maxiter=500):
    """A jitted loss through the fixed point, cached so that tests sharing a configuration compile it once."""

    def loss(w, c):
        z = fp.solve(tanh_layer, jnp.zeros(N, w.dtype), w, c, solver=solver, tol=tol, maxiter=maxiter,
                     backward=backward).value
        return jnp.sum(jnp.sin(z))

    return jax.jit(loss)


@functools.lru_cache(maxsize=None)
def _grad(solver, backward, tol=1e-13, maxiter=500):
    return jax.jit(jax.grad(_loss(solver, backward, tol, maxiter), argnums=(0, 1)))


@pytest.mark.parametrize("name", ["picard", "anderson", "broyden"])
def test_implicit_gradient_matches_finite_differences_and_unrolled(name, x64):
    """IFT gradients of every solver: vs finite differences (float64 check_grads) and vs unrolled backprop."""
    w, c = make_problem(jnp.float64)
    check_grads(_loss(name, TIGHT), (w, c), order=1, modes=["rev"], atol=1e-6, rtol=1e-6)
    implicit = jax.grad(_loss(name, TIGHT), argnums=(0, 1))(w, c)  # reuses check_grads' compiled linearisation
    chex.assert_trees_all_close(implicit, _grad(name, "unroll")(w, c), atol=1e-9, rtol=1e-7)


def test_halpern_implicit_gradient_matches_finite_differences_and_unrolled(x64):
    """Halpern converges at O(1/k), so its forward (and hence the FD check) is accurate to ~1e-6 only."""
    w, c = make_problem(jnp.float64, norm=0.5)
    c = 0.05 * c  # a small ||z*|| keeps the O(||u - z*|| / k) Halpern error small
    with pytest.warns(UserWarning, match="halpern solve implicitly"):  # a contraction: the warning's exception
        check_grads(_loss(HALPERN, TIGHT, 1e-9, 1_000_000), (w, c), order=1, modes=["rev"], atol=1e-4, rtol=1e-4,
                    eps=1e-3)
        implicit = jax.grad(_loss(HALPERN, TIGHT, 1e-9, 1_000_000), argnums=(0, 1))(w, c)
    chex.assert_trees_all_close(implicit, _grad(HALPERN, "unroll", 1e-9, 200_000)(w, c), atol=1e-5, rtol=1e-7)


@pytest.mark.parametrize("backward", ["picard", pytest.param("gmres", marks=pytest.mark.slow),
                                      pytest.param("broyden", marks=pytest.mark.slow),
                                      pytest.param("bicgstab", marks=pytest.mark.slow)])
def test_backward_solver_choices_agree(backward, x64):
    w, c = make_problem(jnp.float64)
    reference = _grad("anderson", TIGHT)(w, c)
    other = _grad("anderson", fp.implicit(solver=backward, tol=1e-12, rtol=0.0, maxiter=500))(w, c)
    chex.assert_trees_all_close(other, reference, atol=1e-9, rtol=1e-7)


def test_phantom_gradient_approaches_implicit_as_steps_grow(x64):
    w, c = make_problem(jnp.float64)
    reference = _grad("picard", TIGHT)(w, c)[0]
    errors = [
        float(jnp.linalg.norm(_grad("picard", fp.phantom(steps=k, damping=0.7))(w, c)[0] - reference))
        for k in (1, 5, 60)
    ]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-6 * float(jnp.linalg.norm(reference))


def test_phantom_value_stays_at_the_fixed_point(problem32):
    w, c = problem32
    exact = fp.solve(tanh_layer, jnp.zeros(N), w, c, tol=1e-6).value
    ph = fp.solve(tanh_layer, jnp.zeros(N), w, c, tol=1e-6, backward=fp.phantom(steps=3, damping=0.6))
    np.testing.assert_allclose(ph.value, exact, atol=1e-5)


def test_closed_over_values_get_gradients(x64):
    """fn may close over traced values: closure_convert hoists them into the implicit-differentiation args."""
    w, c = make_problem(jnp.float64)

    @jax.jit
    def closed(w, c):
        z = fp.solve(lambda z: tanh_layer(z, w, c), jnp.zeros(N), solver="picard", tol=1e-13, maxiter=500,
                     backward=TIGHT).value
        return jnp.sum(jnp.sin(z))

    closed_grads = jax.jit(jax.grad(closed, argnums=(0, 1)))(w, c)
    chex.assert_trees_all_close(closed_grads, _grad("picard", TIGHT)(w, c), atol=1e-10, rtol=1e-7)


@pytest.mark.slow  # vmapped gradients are also exercised by test_batch_level_stopping_keeps_gradients[implicit]
def test_gradients_under_vmap_and_jit(problem32):
    w, _ = problem32
    cs = normal_data(5, (4, N))

    def example_loss(w, c):
        return jnp.sum(fp.solve(tanh_layer, jnp.zeros(N), w, c, solver="picard", tol=1e-6).value ** 2)

    batched = jax.jit(jax.grad(lambda w: jnp.sum(jax.vmap(example_loss, in_axes=(None, 0))(w, cs))))(w)
    single = jax.jit(jax.grad(example_loss))
    np.testing.assert_allclose(batched, sum(single(w, c) for c in cs), atol=1e-4)


class JacobianDiagnosticsTest(chex.TestCase):
    """jacobian_penalty and spectral_radius, jitted and not jitted (chex.variants), in float64."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_jacobian_penalty_is_unbiased_frobenius_norm(self):
        with jax.enable_x64(True):
            w, c = make_problem(jnp.float64)
            z = jnp.linspace(-1.0, 1.0, N)

            def check(w):
                exact = jnp.sum(jax.jacobian(tanh_layer)(z, w, c) ** 2) / N
                estimate = fp.jacobian_penalty(tanh_layer, z, w, c, key=jax.random.key(0), samples=20_000)
                grad = jax.grad(lambda w: fp.jacobian_penalty(tanh_layer, z, w, c, key=jax.random.key(1)))(w)
                return exact, estimate, grad

            exact, estimate, grad = self.variant(check)(w)
            assert abs(float(estimate) / float(exact) - 1) < 0.03
            chex.assert_equal_shape([grad, w])
            chex.assert_tree_all_finite(grad)

    @chex.variants(with_jit=True, without_jit=True)
    def test_spectral_radius_matches_eigenvalues(self):
        with jax.enable_x64(True):
            a = normal_data(2, (N, N), jnp.float64)
            sym = 0.5 * (a + a.T)
            radius = self.variant(lambda m: fp.spectral_radius(lambda z, m: m @ z, jnp.zeros(N), m,
                                                                key=jax.random.key(0), iterations=500))
            np.testing.assert_allclose(radius(sym), jnp.max(jnp.abs(jnp.linalg.eigvalsh(sym))), rtol=1e-6)


@pytest.mark.parametrize("backward", ["implicit", pytest.param("unroll", marks=pytest.mark.slow),
                                      pytest.param("phantom", marks=pytest.mark.slow)])
def test_batch_level_stopping_keeps_gradients(backward, problem32):
    w, _ = problem32
    cs = normal_data(6, (4, N))

    @functools.partial(jax.jit, static_argnums=1)
    def loss(w, axis_name):
        z = jax.vmap(lambda c: fp.solve(tanh_layer, jnp.zeros(N), w, c, solver="picard", tol=1e-6, backward=backward,
                                        axis_name=axis_name), axis_name="batch")(cs)
        return jnp.sum(z.value**2)

    # Unrolled, the two runs take different numbers of steps: the truncated derivatives differ at the tol level.
    grad = jax.jit(jax.grad(loss), static_argnums=1)
    np.testing.assert_allclose(grad(w, "batch"), grad(w, None), atol=1e-4)


def _adjoint_problem():
    w, c = make_problem(jnp.float64)
    z_star = fp.solve(tanh_layer, jnp.zeros(N), w, c, solver="anderson", tol=1e-13, maxiter=500).value
    return w, c, z_star, jnp.cos(z_star)  # g = d sum(sin z) / dz at z*


class AdjointSolveTest(chex.TestCase):
    """adjoint_solve, jitted and not jitted (chex.variants), in float64."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters("anderson", "picard", "gmres")
    def test_adjoint_solve_solves_the_adjoint_equation_and_gives_the_ift_gradient(self, solver):
        """u = J^T u + g exactly (vs a dense solve), and u^T df/dargs is the implicit gradient of sum(sin z*)."""
        with jax.enable_x64(True):
            w, c, z_star, g = _adjoint_problem()
            config = fp.implicit(solver=solver, tol=1e-12, rtol=0.0, maxiter=500)
            u, stats = self.variant(lambda z, g: fp.adjoint_solve(tanh_layer, z, w, c, cotangent=g,
                                                                  backward=config))(z_star, g)
            jac = jax.jacobian(tanh_layer)(z_star, w, c)
            np.testing.assert_allclose(u, np.linalg.solve(np.eye(N) - np.asarray(jac).T, g), atol=1e-10)
            assert bool(stats.converged) and float(stats.residual) <= 1e-12
            assert (int(stats.num_steps) == -1) if solver == "gmres" else (int(stats.num_steps) >= 1)
            _, vjp = jax.vjp(lambda w_, c_: tanh_layer(z_star, w_, c_), w, c)
            chex.assert_trees_all_close(vjp(u), _grad("anderson", TIGHT)(w, c), atol=1e-9, rtol=1e-7)


def test_adjoint_solve_reports_a_truncated_backward_solve(x64):
    """The VJP alone cannot say that the adjoint hit maxiter; adjoint_solve does."""
    w, c, z_star, g = _adjoint_problem()
    _, stats = fp.adjoint_solve(tanh_layer, z_star, w, c, cotangent=g,
                                backward=fp.implicit(solver="picard", tol=1e-12, rtol=0.0, maxiter=2))
    assert not bool(stats.converged) and int(stats.num_steps) == 2 and float(stats.residual) > 1e-6
    batched = jax.vmap(lambda z, gg: fp.adjoint_solve(tanh_layer, z, w, c, cotangent=gg).stats)(
        jnp.stack([z_star, z_star]), jnp.stack([g, 2 * g]))
    chex.assert_shape(batched.converged, (2,))
    assert bool(jnp.all(batched.converged))


def test_adjoint_solve_rejects_bad_input(problem32):
    w, c = problem32
    z = jnp.zeros(N)
    with pytest.raises(TypeError, match="must be 'implicit'"):
        fp.adjoint_solve(tanh_layer, z, w, c, cotangent=z, backward="phantom")
    with pytest.raises(ValueError, match="shaped like z_star"):
        fp.adjoint_solve(tanh_layer, z, w, c, cotangent=jnp.zeros(N + 1))


def _dense_gradient(w, c, z):
    """d sum(sin z*) / d (W, c) by the IFT with a dense solve: u = (I - J^T)^{-1} g, J = D W, D = diag(1 - z*^2)."""
    d = 1.0 - z**2
    u = jnp.linalg.solve(jnp.eye(N, dtype=w.dtype) - (d[:, None] * w).T, jnp.cos(z))
    return jnp.outer(d * u, z), d * u


@pytest.mark.parametrize("forward_tol", [1e-10, 1e-6])
def test_default_implicit_gradient_is_as_accurate_as_the_forward_solve(forward_tol, x64):
    """backward="implicit" at its defaults follows the forward's tolerance (capped at TorchDEQ's 1e-6): a forward
    solved to 1e-10 gives the dense IFT gradient to ~1e-10, not ~1e-4 (the old fixed rtol=1e-4 left it 1.6e-4 off)."""
    w, c = make_problem(jnp.float64, norm=0.9)
    loss = _loss("anderson", "implicit", forward_tol, 500)
    z = fp.solve(tanh_layer, jnp.zeros(N), w, c, solver="anderson", tol=1e-14, maxiter=500).value
    dense = _dense_gradient(w, c, z)
    grads = jax.grad(loss, argnums=(0, 1))(w, c)
    error = max(float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b)) for a, b in zip(grads, dense))
    assert error < 50 * forward_tol
    assert fp.check_settings(solver="anderson", tol=forward_tol, rtol=0.0, maxiter=5, backward="implicit")[1] == \
        fp.implicit(tol=min(forward_tol, 1e-6), rtol=0.0)
    # given tolerances are kept: the old default (1e-6, 1e-4) is an explicit choice now
    assert fp.check_settings(solver="anderson", tol=1e-10, rtol=0.0, maxiter=5,
                             backward=fp.implicit(tol=1e-6, rtol=1e-4))[1].rtol == 1e-4
