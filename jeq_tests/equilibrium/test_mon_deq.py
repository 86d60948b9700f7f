"""MON (Winston & Kolter 2020), plain DEQ and deep OptEq: parameter counts, splittings, equilibria, gradients."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
from jax.test_util import check_grads

from jeq import equilibrium as eq
from jeq import fixedpoint as fp
from jeq import prox
from jeq_tests.equilibrium.conftest import normal_data, uniform_data


def test_mon_parameter_counts_match_the_official_models():
    """Spec section 11: 84,313 (MNIST FC, 87 hidden) and 172,218 (CIFAR-10 single conv, 81 channels)."""
    key = jax.random.key(0)
    dense = eq.mon(features=784, hidden=87, classes=10)
    conv = eq.mon_conv(image_shape=(32, 32), in_channels=3, channels=81, classes=10)
    assert eq.parameter_count(jax.eval_shape(dense.init, key)) == 84_313
    assert eq.parameter_count(jax.eval_shape(conv.init, key)) == 172_218


@pytest.fixture(scope="module")
def dense_mons():
    with jax.enable_x64(True):
        kwargs = dict(features=6, hidden=8, classes=3, tol=1e-13, rtol=0.0, maxiter=3000, dtype=jnp.float64)
        models = {s: eq.mon(splitting=s, alpha=0.5 if s == "fb" else 1.0, **kwargs) for s in ("fb", "pr")}
        params = models["pr"].init(jax.random.key(1))
        x = normal_data(2, (6,), jnp.float64)
        yield models, params, x


def test_mon_operator_is_strongly_monotone(dense_mons):
    models, params, _ = dense_mons
    with jax.enable_x64(True):
        w = models["pr"].prepare(params).weight
        sym = 0.5 * ((jnp.eye(8) - w) + (jnp.eye(8) - w).T)
        assert float(jnp.linalg.eigvalsh(sym)[0]) >= 1.0 - 1e-12  # m = 1
        assert float(jnp.max(jnp.abs(w - w.T))) > 1e-3  # a skew part: not a gradient/prox map


def test_fb_and_pr_reach_the_same_equilibrium(dense_mons):
    models, params, x = dense_mons
    with jax.enable_x64(True):
        z_fb = jax.jit(models["fb"].equilibrium)(params, x).value
        pr = jax.jit(models["pr"].equilibrium)(params, x)
        w, c = models["pr"].prepare(params).weight, models["pr"].inject(params, x)
        np.testing.assert_allclose(pr.value, jax.nn.relu(w @ pr.value + c), atol=1e-11)
        np.testing.assert_allclose(z_fb, pr.value, atol=1e-10)
        assert int(pr.stats.num_steps) < 3000


@pytest.mark.parametrize("splitting", ["fb", "pr"])
def test_mon_gradients(splitting, dense_mons):
    """Adjoint by the same splitting (implicit, Picard on the transposed iteration) vs FD (float64) and unrolled."""
    models, params, x = dense_mons
    model = models[splitting]
    with jax.enable_x64(True):
        def loss(params, backward=None):
            z = model.equilibrium(params, x, backward=backward).value
            return jnp.sum(jnp.sin(model.readout(params, z)))

        tight = fp.implicit(solver="picard", tol=1e-13, rtol=0.0, maxiter=3000)
        loss_implicit = jax.jit(lambda p: loss(p, tight))
        check_grads(loss_implicit, (params,), order=1, modes=["rev"], atol=1e-6, rtol=1e-6)
        implicit = jax.grad(loss_implicit)(params)  # reuses check_grads' compiled linearisation
        unrolled = jax.jit(jax.grad(lambda p: loss(p, "unroll")))(params)
        chex.assert_trees_all_close(implicit, unrolled, atol=1e-8, rtol=1e-7)


@pytest.fixture(scope="module")
def conv_mons():
    with jax.enable_x64(True):
        kwargs = dict(image_shape=(4, 4), in_channels=1, channels=2, classes=3, pool=2, tol=1e-12, rtol=0.0,
                      maxiter=3000, dtype=jnp.float64)
        pr = eq.mon_conv(splitting="pr", alpha=0.7, **kwargs)
        fb = eq.mon_conv(splitting="fb", alpha=0.3, **kwargs)
        params = pr.init(jax.random.key(3))
        yield pr, fb, params, fb.prepare(params)  # the normalised kernels (FB computes no inverse)


def _conv_w(prepared):
    """W (m = 1) of the conv MON from its circular convolutions, as a function of one (4, 4, 2) image."""

    def apply_w(v):
        a, b = prepared.a, prepared.b
        conv, conv_t = eq.conv.conv, eq.conv.conv_transpose
        return (-conv_t(conv(v, a, circular=True), a, (4, 4, 2), circular=True) + conv(v, b, circular=True)
                - conv_t(v, b, (4, 4, 2), circular=True))

    return apply_w


def test_conv_mon_fft_inverse_matches_the_dense_inverse(conv_mons):
    """Peaceman-Rachford's (I + alpha (I - W))^{-1} by per-frequency inverses (2-D real FFT) = the dense inverse."""
    _, _, _, prepared = conv_mons
    with jax.enable_x64(True):
        @jax.jit
        def check(prepared, v):
            apply_w = _conv_w(prepared)
            w_dense = jax.jacfwd(lambda u: apply_w(u.reshape(4, 4, 2)).reshape(-1))(jnp.zeros(32))
            inverse_dense = jnp.linalg.inv(jnp.eye(32) + 0.7 * (jnp.eye(32) - w_dense))
            fft_inverse = eq.circulant_inverse(apply_w, (4, 4, 2), 0.7, jnp.float64)
            sym = 0.5 * ((jnp.eye(32) - w_dense) + (jnp.eye(32) - w_dense).T)
            return (eq.circulant_apply(fft_inverse, v).reshape(-1), inverse_dense @ v.reshape(-1),
                    jnp.linalg.eigvalsh(sym)[0])

        fft, dense, lowest = check(prepared, normal_data(5, (4, 4, 2), jnp.float64))
        np.testing.assert_allclose(fft, dense, atol=1e-12)
        assert float(lowest) >= 1.0 - 1e-10  # strongly monotone, m = 1


@pytest.mark.slow
def test_conv_mon_splittings_agree(conv_mons):
    """FB and PR (FFT inverse) reach the same equilibrium z = relu(W z + c) of the conv MON."""
    pr, fb, params, prepared = conv_mons
    with jax.enable_x64(True):
        x = uniform_data(4, (4, 4, 1), jnp.float64)
        apply_w = _conv_w(prepared)
        z_pr = jax.jit(pr.equilibrium)(params, x).value
        z_fb = jax.jit(fb.equilibrium)(params, x).value
        np.testing.assert_allclose(z_pr, z_fb, atol=1e-9)
        np.testing.assert_allclose(z_pr, jax.nn.relu(apply_w(z_pr) + pr.inject(params, x)), atol=1e-10)


def test_deq_converges_and_gradients_match(x64):
    model = eq.deq(features=5, hidden=7, classes=3, activation=jnp.tanh, solver="picard", tol=1e-13, maxiter=300,
                   backward=fp.implicit(solver="picard", tol=1e-13, rtol=0.0, maxiter=300), dtype=jnp.float64)
    params = model.init(jax.random.key(6))
    xs = normal_data(7, (2, 5), jnp.float64)

    def loss(params, backward=None):
        solution = jax.vmap(lambda x: model.equilibrium(params, x, backward=backward))(xs)
        return jnp.sum(jnp.sin(solution.value @ params.readout.T)), solution.stats

    (_, stats), implicit = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
    unrolled = jax.jit(jax.grad(lambda p: loss(p, "unroll")[0]))(params)
    assert bool(jnp.all(stats.converged)) and bool(jnp.all(stats.residual <= 1e-13))
    chex.assert_trees_all_close(implicit, unrolled, atol=1e-9, rtol=1e-7)


def test_deep_opteq_is_convex_by_construction_and_its_equilibrium_is_the_argmin(x64):
    model = eq.deep_opteq(features=5, hidden=(6, 4, 3), classes=2, activation=prox.relu(), margin=0.1,
                          solver="picard", tol=1e-13, maxiter=2000, dtype=jnp.float64)
    params = model.init(jax.random.key(8))
    margins = jax.jit(jax.vmap(lambda a: eq.convexity_margin(model.prepare(
        params._replace(scales=jnp.full(3, a), link_scales=jnp.full(2, a))))))(jnp.array([-2.0, 0.0, 8.0]))
    assert bool(jnp.all(margins >= 0.1 - 1e-12))  # any parameters: convexity margin >= eps
    params = params._replace(scales=jnp.full(3, 3.0), link_scales=jnp.full(2, 3.0))
    x = normal_data(9, (5,), jnp.float64)
    z = jax.jit(model.equilibrium)(params, x).value
    chex.assert_shape(z, [(6,), (4,), (3,)])
    flat = jnp.concatenate(z)
    split = lambda v: (v[:6], v[6:10], v[10:])  # noqa: E731
    value_and_grad = jax.jit(jax.value_and_grad(lambda v: model.objective(params, split(v), x)))
    res = scipy.optimize.minimize(lambda v: tuple(np.asarray(a, np.float64) for a in value_and_grad(jnp.asarray(v))),
                                  np.full(13, 0.1), jac=True, method="L-BFGS-B", bounds=[(0.0, None)] * 13,
                                  options=dict(maxiter=20_000, ftol=0.0, gtol=1e-13))
    assert np.max(np.abs(res.x - np.asarray(flat))) < 1e-8
    # G decreases along the simultaneous (Jacobi) iterates: proximal gradient with step 1 < 2 / ||I - M||.
    prepared, c = model.prepare(params), model.inject(params, x)
    state = jnp.ones(13)
    layer = jax.jit(lambda v: jnp.concatenate(model.layer(split(v), prepared, c)))
    values = []
    for _ in range(25):
        values.append(float(value_and_grad(state)[0]))
        state = layer(state)
    assert np.all(np.diff(values) <= 1e-12) and values[0] - values[-1] > 1e-3


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: eq.mon(features=4, hidden=3, classes=2, splitting="dr"), r"mon\(splitting='dr'\)"),
        (lambda: eq.mon(features=4, hidden=3, classes=2, alpha=0.0), r"mon\(alpha=0.0\): must be > 0"),
        (lambda: eq.deep_opteq(features=4, hidden=(3,), classes=2), "at least two layers"),
        (lambda: eq.deq(features=4, hidden=3, classes=2, maxiter=0), r"deq\(maxiter=0\)"),
    ],
)
def test_bad_configuration(call, match):
    with pytest.raises(ValueError, match=match):
        call()
