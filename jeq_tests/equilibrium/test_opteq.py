"""OptEq claims (spec opteq.md sections 3-6): equilibrium = argmin of the hidden convex objective G, G decreases
along Picard, ||W||_2 <= 1 - eps, priors change the layer, Halpern selects among equilibria; conv variant."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
from absl.testing import parameterized
from jax.test_util import check_grads

from jeq import equilibrium as eq
from jeq import fixedpoint as fp
from jeq import prox
from jeq_tests.equilibrium.conftest import normal_data, uniform_data


def _random_w(n, norm, seed=0, dtype=jnp.float64):
    w = normal_data(seed, (n, n), dtype)
    return norm * w / jnp.linalg.norm(w, 2)


def _lbfgs_argmin(objective, n, bounds, x0):
    """An independent optimiser: scipy L-BFGS-B on G with its JAX gradient (float64)."""
    value_and_grad = jax.jit(jax.value_and_grad(objective))

    def fun(z):
        v, g = value_and_grad(jnp.asarray(z))
        return float(v), np.asarray(g, np.float64)

    res = scipy.optimize.minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=[bounds] * n,
                                  options=dict(maxiter=20_000, ftol=0.0, gtol=1e-13, maxcor=50))
    return res.x


@pytest.mark.parametrize("name, bounds", [("relu", (0.0, None)), ("tanh", (-1 + 1e-15, 1 - 1e-15))])
def test_picard_equilibrium_is_the_argmin_of_G(name, bounds, x64):
    """Spec section 3 check: n = 20, ||W||_2 = 0.9: Picard on z and L-BFGS-B on G agree (spec: 1e-9 ReLU, 4e-8
    tanh; measured 5e-10 to 5e-9 over seeds for both: L-BFGS-B stops when G is flat to machine precision)."""
    agree = 1e-8
    n = 20
    activation = getattr(prox, name)()
    w = _random_w(n, 0.9)
    c = normal_data(1, (n,), jnp.float64)
    z_star = fp.solve(lambda z, g, c: eq.opteq_map(z, c, gram=lambda v: g @ v, activation=activation),
                      jnp.zeros(n), w.T @ w, c, solver="picard", tol=1e-14, maxiter=5000).value
    objective = lambda z: eq.hidden_objective(z, c, weight=lambda v: w @ v, activation=activation)
    z_opt = _lbfgs_argmin(objective, n, bounds, np.full(n, 0.1))
    assert np.max(np.abs(z_opt - np.asarray(z_star))) < agree
    assert float(objective(z_star)) <= float(objective(jnp.asarray(z_opt))) + 1e-12


def test_objective_decreases_along_picard_iterates(x64):
    """Picard on (3.1) is proximal gradient with step 1 on G: G(z_{k+1}) <= G(z_k)."""
    n = 30
    model = eq.opteq(features=12, hidden=n, classes=3, activation=prox.softplus(), solver="picard", tol=1e-12,
                     maxiter=500, dtype=jnp.float64)
    params = model.init(jax.random.key(0))._replace(scale=jnp.asarray(4.0))  # ||W|| ~ 0.93: slow, visible descent
    x = normal_data(1, (12,), jnp.float64)
    prepared, c = model.prepare(params), model.inject(params, x)
    z = jax.nn.softplus(c)  # a point in the domain of f
    objective, layer = jax.jit(model.objective), jax.jit(model.layer)
    values = []
    for _ in range(40):
        values.append(float(objective(params, z, x)))
        z = layer(z, prepared, c)
    assert np.all(np.diff(values) <= 1e-12) and values[0] - values[-1] > 1e-3
    z_star = jax.jit(model.equilibrium)(params, x).value
    assert float(objective(params, z_star, x)) <= values[-1] + 1e-12


def test_kkt_residual_at_the_equilibrium_is_small(x64):
    """0 in df(z) + z - W^T W z - c: for ReLU, z_i > 0 => gradient of the smooth part is 0, z_i = 0 => >= 0."""
    model = eq.opteq(features=8, hidden=16, classes=3, solver="picard", tol=1e-12, maxiter=500, dtype=jnp.float64)
    params = model.init(jax.random.key(2))
    x = normal_data(3, (8,), jnp.float64)
    z = jax.jit(model.equilibrium)(params, x).value
    prepared, c = model.prepare(params), model.inject(params, x)
    grad_smooth = z - prepared.gram @ z - c
    assert float(jnp.max(jnp.abs(jnp.where(z > 0, grad_smooth, 0.0)))) < 1e-10
    assert float(jnp.min(jnp.where(z > 0, 0.0, grad_smooth))) > -1e-10


def test_spectral_norm_constraint(x64):
    model = eq.opteq(features=4, hidden=10, classes=2, margin=0.1, dtype=jnp.float64)
    params = model.init(jax.random.key(0))
    for a in (-3.0, 0.0, 3.0, 30.0):
        w = model.prepare(params._replace(scale=jnp.asarray(a))).weight
        s = float(jnp.linalg.norm(w, 2))
        np.testing.assert_allclose(s, 0.9 * jax.nn.sigmoid(a), rtol=1e-10)
        assert s <= 0.9


def test_implicit_gradients_of_the_model(x64):
    """Model-level IFT gradients vs finite differences (float64) and vs unrolled differentiation."""
    model = eq.opteq(features=5, hidden=7, classes=3, activation=prox.tanh(), solver="picard", tol=1e-13,
                     maxiter=300, backward=fp.implicit(solver="picard", tol=1e-13, rtol=0.0, maxiter=300),
                     dtype=jnp.float64)
    params = model.init(jax.random.key(4))
    xs = normal_data(5, (3, 5), jnp.float64)

    def loss(params, backward=None):
        logits = jax.vmap(lambda x: model.readout(params, model.equilibrium(params, x, backward=backward).value))(xs)
        return jnp.sum(jnp.sin(logits))

    loss_implicit = jax.jit(loss)
    check_grads(loss_implicit, (params,), order=1, modes=["rev"], atol=1e-6, rtol=1e-6)
    implicit = jax.grad(loss_implicit)(params)  # reuses check_grads' linearisation of the jitted loss
    unrolled = jax.jit(jax.grad(lambda p: loss(p, "unroll")))(params)
    chex.assert_trees_all_close(implicit, unrolled, atol=1e-9, rtol=1e-7)


def test_l1_prior_turns_relu_into_relu_l1_and_sparsifies(x64):
    """Spec 6.1: + lam ||z||_1 in G <=> activation relu(v - lam) (prox.relu_l1); larger lam, sparser z*; still
    argmin of G."""
    n = 20
    w = _random_w(n, 0.8, seed=3)
    c = normal_data(4, (n,), jnp.float64)
    zeros = []
    for lam in (0.0, 0.3, 1.0):
        activation = prox.add_l1(prox.relu(), weight=lam)
        v = jnp.linspace(-2, 2, 9)
        np.testing.assert_allclose(activation.apply(v), jax.nn.relu(v - lam))
        np.testing.assert_allclose(prox.relu_l1(weight=lam).apply(v), jax.nn.relu(v - lam))
        z = fp.solve(lambda z: eq.opteq_map(z, c, gram=lambda u: w.T @ (w @ u), activation=activation),
                     jnp.zeros(n), solver="picard", tol=1e-13, maxiter=2000).value
        objective = lambda z: eq.hidden_objective(z, c, weight=lambda u: w @ u, activation=activation)
        z_opt = _lbfgs_argmin(objective, n, (0.0, None), np.full(n, 0.1))
        assert np.max(np.abs(z_opt - np.asarray(z))) < 5e-8  # L-BFGS-B's precision (G flat to 1e-15)
        zeros.append(int(jnp.sum(z == 0)))
    assert zeros[0] < zeros[1] < zeros[2]


def test_smoothness_prior_is_in_objective_and_layer(x64):
    """Spec 6.1: + mu/2 z^T L z in G adds -mu L z inside sigma; the equilibrium is still the argmin of G."""
    n = 16
    prior = eq.smoothness_prior(strength=0.2)
    model = eq.opteq(features=6, hidden=n, classes=2, activation=prox.tanh(), prior=prior, solver="picard",
                     tol=1e-13, maxiter=2000, dtype=jnp.float64)
    params = model.init(jax.random.key(6))
    x = normal_data(7, (6,), jnp.float64)
    z = jax.jit(model.equilibrium)(params, x).value
    z_opt = _lbfgs_argmin(lambda v: model.objective(params, v, x), n, (-1 + 1e-15, 1 - 1e-15), np.zeros(n))
    assert np.max(np.abs(z_opt - np.asarray(z))) < 1e-7
    plain = eq.opteq(features=6, hidden=n, classes=2, activation=prox.tanh(), solver="picard", tol=1e-13,
                     maxiter=2000, dtype=jnp.float64)
    rough = jax.jit(plain.equilibrium)(params, x).value
    assert float(jnp.sum(jnp.diff(z) ** 2)) < float(jnp.sum(jnp.diff(rough) ** 2))
    laplacian = 2 * jnp.eye(n) - jnp.eye(n, k=1) - jnp.eye(n, k=-1)
    laplacian = laplacian.at[0, 0].set(1).at[-1, -1].set(1)
    np.testing.assert_allclose(jax.grad(prior)(z), 0.2 * laplacian @ z, atol=1e-12)


def test_halpern_selects_the_equilibrium_nearest_the_anchor_at_unit_norm(x64):
    """Spec 6.2 through the model: ||W||_2 = 1 (margin 0, a = +inf), W = diag(1, 0.5), c = (0, 1);
    Fix = {(t, 4/3): t >= 0}; Halpern with anchor u returns P_Fix(u)."""
    model = eq.opteq(features=2, hidden=2, classes=2, margin=0.0, dtype=jnp.float64)
    params = model.init(jax.random.key(0))._replace(
        coupling=jnp.diag(jnp.array([1.0, 0.5])), scale=jnp.asarray(jnp.inf), injection=jnp.eye(2),
        bias=jnp.zeros(2))
    x = jnp.array([0.0, 1.0])
    assert float(jnp.linalg.norm(model.prepare(params).weight, 2)) == 1.0
    select = jax.jit(lambda anchor: model.equilibrium(params, x, solver=fp.halpern(anchor=anchor), tol=1e-6,
                                                       maxiter=10**7).value)
    for anchor, expected in (((0.0, 0.0), (0.0, 4 / 3)), ((3.0, 0.0), (3.0, 4 / 3)), ((-2.0, 5.0), (0.0, 4 / 3))):
        np.testing.assert_allclose(select(jnp.array(anchor)), expected, atol=2e-5)


def test_conv_gram_is_conv_then_transposed_conv(x64):
    """W^T W as conv then transposed conv equals the dense matrix W^T W; ||W||_2 <= 1 - eps, certified."""
    model = eq.opteq_conv(image_shape=(4, 4), in_channels=1, channels=2, classes=3, pool=2, margin=0.1,
                          dtype=jnp.float64)
    params = model.init(jax.random.key(8))._replace(scale=jnp.asarray(10.0))

    @jax.jit
    def check(params, z):
        kernel = model.prepare(params)
        w_dense = jax.jacfwd(lambda v: eq.conv.conv(v.reshape(4, 4, 2), kernel).reshape(-1))(jnp.zeros(32))
        gram_conv = eq.conv.conv_transpose(eq.conv.conv(z, kernel), kernel, (4, 4, 2))
        return gram_conv.reshape(-1), w_dense.T @ w_dense @ z.reshape(-1), jnp.linalg.norm(w_dense, 2)

    gram_conv, gram_dense, norm = check(params, normal_data(9, (4, 4, 2), jnp.float64))
    np.testing.assert_allclose(gram_conv, gram_dense, atol=1e-12)
    target = 0.9 * jax.nn.sigmoid(10.0)
    assert float(norm) <= target * (1 + 1e-12)  # the bound never under-estimates ||V||_2
    assert float(norm) > 0.6 * target  # ...and is not vacuous (loosest on tiny images: border effects)


@pytest.mark.parametrize("shape, channels, seed", [((8, 8), 8, 1), ((16, 8), 8, 3), ((6, 5), 3, 2)])
def test_conv_norm_bound_is_a_tight_upper_bound_on_the_zero_padded_convolution(x64, shape, channels, seed):
    kernel = jax.random.normal(jax.random.key(seed), (3, 3, channels, channels + 1), jnp.float64)
    size = shape[0] * shape[1] * channels
    dense = jax.jacfwd(lambda v: eq.conv.conv(v.reshape(*shape, channels), kernel).reshape(-1))(jnp.zeros(size))
    exact, bound = float(jnp.linalg.norm(dense, 2)), float(eq.conv.conv_norm_bound(kernel, shape))
    assert exact <= bound <= 1.15 * exact
    grad = jax.grad(lambda k: eq.conv.conv_norm_bound(k, shape))(kernel)
    chex.assert_tree_all_finite(grad)
    assert float(jnp.max(jnp.abs(grad))) > 0


def test_conv_equilibrium_is_argmin_of_G(x64):
    model = eq.opteq_conv(image_shape=(4, 4), in_channels=1, channels=2, classes=3, pool=2, solver="picard",
                          tol=1e-13, maxiter=1000, dtype=jnp.float64)
    params = model.init(jax.random.key(10))
    x = uniform_data(11, (4, 4, 1), jnp.float64)
    z = jax.jit(model.equilibrium)(params, x).value
    chex.assert_shape(z, (4, 4, 2))
    z_opt = _lbfgs_argmin(lambda v: model.objective(params, v.reshape(4, 4, 2), x), 32, (0.0, None),
                          np.full(32, 0.1))
    assert np.max(np.abs(z_opt - np.asarray(z).reshape(-1))) < 1e-8


# factory, keywords (small sizes), shape of one example
FACTORIES = {
    "opteq": (eq.opteq, dict(features=12, hidden=9, classes=4), (12,)),
    "opteq_conv": (eq.opteq_conv, dict(image_shape=(4, 4), in_channels=1, channels=2, classes=4, pool=2), (4, 4, 1)),
    "deep_opteq": (eq.deep_opteq, dict(features=12, hidden=(6, 4), classes=4), (12,)),
    "mon": (eq.mon, dict(features=12, hidden=9, classes=4), (12,)),
    "mon_conv": (eq.mon_conv, dict(image_shape=(4, 4), in_channels=1, channels=2, classes=4, pool=2), (4, 4, 1)),
    "deq": (eq.deq, dict(features=12, hidden=9, classes=4), (12,)),
}


@functools.lru_cache(maxsize=None)
def _built(name):
    """(model, params, one example) of a factory, built once for both variants."""
    factory, sizes, x_shape = FACTORIES[name]
    model = factory(**sizes)
    return model, model.init(jax.random.key(0)), normal_data(1, x_shape)


class ApplyTest(chex.TestCase):
    """Every factory's ``apply`` on one example, jitted and not jitted (chex.variants): shapes, dtype, finite
    outputs, and a forward solve that met the model's tolerance."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(*FACTORIES)
    def test_apply_one_example(self, name):
        model, params, x = _built(name)
        out = self.variant(model.apply)(params, x)
        chex.assert_shape([out.logits, out.stats.num_steps, out.jacobian], [(4,), (), ()])
        chex.assert_type(out.logits, jnp.float32)
        chex.assert_tree_all_finite((out.logits, out.stats.residual))
        assert bool(out.stats.converged) and int(out.stats.num_steps) >= 1  # met tol + rtol ||f(z)||


def test_apply_jit_vmap_no_recompilation():
    model = eq.opteq(features=12, hidden=9, classes=4, solver="picard", backward=fp.implicit(solver="picard"))
    params = model.init(jax.random.key(0))
    run = jax.jit(jax.vmap(lambda x: model.apply(params, x)))
    xs = normal_data(1, (5, 12))
    out = run(xs)
    chex.assert_shape([out.logits, out.stats.num_steps], [(5, 4), (5,)])
    assert bool(jnp.all(out.stats.converged))
    run(xs + 1.0)
    assert run._cache_size() == 1


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: eq.opteq(features=4, hidden=0, classes=2), ValueError, r"opteq\(hidden=0\): must be an int >= 1"),
        (lambda: eq.opteq(features=4, hidden=3, classes=2, margin=1.0), ValueError,
         r"margin=1.0\): must be in \[0, 1\)"),
        (lambda: eq.opteq(features=4, hidden=3, classes=2, activation=jax.nn.gelu), TypeError, "jeq.prox.Prox"),
        (lambda: eq.opteq(features=4, hidden=3, classes=2, solver="sgd"), ValueError, r"opteq\(solver='sgd'\)"),
        (lambda: eq.opteq(features=4, hidden=3, classes=2, tol=0.0), ValueError, r"opteq\(tol=0.0\): must be > 0"),
        (lambda: eq.smoothness_prior(strength=0.3), ValueError, r"must be in \[0, 0.25\)"),
        (lambda: eq.smoothness_prior(strength="0.1"), ValueError, r"smoothness_prior\(strength='0.1'\)"),
        (lambda: eq.opteq_conv(image_shape=(6, 6), in_channels=1, channels=2, classes=2, pool=4), ValueError,
         "must divide"),
        (lambda: eq.opteq(features=4, hidden=3, classes=2, tool=1e-3), TypeError,
         r"opteq\(tool=0.001\): unknown keyword"),
        (lambda: eq.conv.conv(jnp.zeros((4, 4, 2)), jnp.zeros((3, 3, 3, 2))), ValueError,
         r"conv\(kernel\): must have shape \(\*, \*, 2, \*\), got shape \(3, 3, 3, 2\)"),
        (lambda: eq.random_blocks(jax.random.key(0), [((2,), 1.0)], jnp.float32, distribution="cauchy"), ValueError,
         r"random_blocks\(distribution='cauchy'\): must be one of \['normal', 'uniform'\]"),
    ],
)
def test_bad_configuration(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_input_shape_mismatch_names_both_shapes():
    model = eq.opteq(features=12, hidden=9, classes=4)
    params = model.init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"opteq\(x\): must have shape \(12,\), got shape \(5, 12\)"):
        model.apply(params, jnp.zeros((5, 12)))
