"""Claims of spec opteq.md section 2: each activation is the proximal operator of its convex potential."""

from __future__ import annotations

import math

import chex
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
from hypothesis import given, settings

from jeq import prox

# name -> (factory, domain of the potential (closed), used to bound the scalar searches)
TABLE = {
    "relu": (prox.relu, (0.0, math.inf)),
    "hard_sigmoid": (prox.hard_sigmoid, (0.0, 1.0)),
    "leaky_relu": (lambda: prox.leaky_relu(slope=0.2), (-math.inf, math.inf)),
    "sigmoid": (prox.sigmoid, (0.0, 1.0)),
    "tanh": (prox.tanh, (-1.0, 1.0)),
    "softplus": (prox.softplus, (0.0, math.inf)),
    "relu_l1": (lambda: prox.relu_l1(weight=0.3), (0.0, math.inf)),
    "l1": (lambda: prox.l1(weight=0.7), (-math.inf, math.inf)),
    "box": (lambda: prox.box(lower=-0.5, upper=2.0), (-0.5, 2.0)),
    "add_l1(tanh)": (lambda: prox.add_l1(prox.tanh(), weight=0.4), (-1.0, 1.0)),
    # f not smallest at 0: prox_f o soft-threshold would be wrong here (sigma(0) != 0)
    "add_l1(sigmoid)": (lambda: prox.add_l1(prox.sigmoid(), weight=0.5), (0.0, 1.0)),
    "add_l1(softplus)": (lambda: prox.add_l1(prox.softplus(), weight=0.5), (0.0, math.inf)),
}


def _scalar(fn):
    jitted = jax.jit(fn)
    return lambda x: float(jitted(jnp.asarray(x, jnp.float64)))


def _argmin(fun, domain, center, half_width=20.0):
    lo, hi = max(domain[0], center - half_width), min(domain[1], center + half_width)
    res = scipy.optimize.minimize_scalar(fun, bounds=(lo, hi), method="bounded", options={"xatol": 1e-13})
    # The minimiser can sit on the boundary of the domain (indicator potentials): compare with the endpoints.
    candidates = [(res.fun, res.x), (fun(lo), lo), (fun(hi), hi)]
    return min(candidates)[1]


@pytest.fixture(scope="module")
def scalar_table():
    with jax.enable_x64(True):
        yield {
            name: (_scalar(factory().apply), _scalar(factory().potential), domain)
            for name, (factory, domain) in TABLE.items()
        }


@pytest.mark.parametrize("name", list(TABLE))
def test_apply_is_numerical_argmin_of_potential(name, scalar_table):
    """argmin_x f(x) + (x - v)^2 / 2 equals sigma(v) to ~1e-8 on v in [-3, 3] (spec section 2 acceptance test)."""
    apply, potential, domain = scalar_table[name]
    with jax.enable_x64(True):
        for v in np.linspace(-3.0, 3.0, 13):
            x_star = _argmin(lambda x: potential(x) + 0.5 * (x - v) ** 2, domain, v)
            assert abs(x_star - apply(v)) < 1e-7, (name, v, x_star, apply(v))


@settings(max_examples=25, deadline=None)
@given(v=st.floats(-3.0, 3.0), name=st.sampled_from(list(TABLE)))
def test_argmin_property(v, name, scalar_table):
    apply, potential, domain = scalar_table[name]
    with jax.enable_x64(True):
        x_star = _argmin(lambda x: potential(x) + 0.5 * (x - v) ** 2, domain, v)
        assert abs(x_star - apply(v)) < 1e-7


@settings(max_examples=25, deadline=None)
@given(
    a=st.lists(st.floats(-6.0, 6.0), min_size=8, max_size=8),
    b=st.lists(st.floats(-6.0, 6.0), min_size=8, max_size=8),
    name=st.sampled_from(list(TABLE)),
)
def test_firmly_nonexpansive(a, b, name):
    """(sigma(a) - sigma(b))^2 <= (sigma(a) - sigma(b)) (a - b): every prox is firmly nonexpansive."""
    with jax.enable_x64(True):
        p = TABLE[name][0]()
        a, b = jnp.asarray(a, jnp.float64), jnp.asarray(b, jnp.float64)
        da = p.apply(a) - p.apply(b)
        assert bool(jnp.all(da * da <= da * (a - b) + 1e-12))


@pytest.mark.parametrize("name", list(TABLE))
def test_moreau_identity(name, scalar_table):
    """Moreau: prox_{f*}(v) = v - prox_f(v), i.e. Fenchel-Young holds with equality,
    f(sigma(v)) + f*(v - sigma(v)) = sigma(v) (v - sigma(v)), with f* computed numerically as sup_x x y - f(x)."""
    apply, potential, domain = scalar_table[name]
    with jax.enable_x64(True):
        for v in (-2.5, -0.4, 0.0, 0.8, 2.2):
            x, y = apply(v), v - apply(v)
            sup_point = _argmin(lambda t: potential(t) - t * y, domain, x, half_width=30.0)
            conjugate = sup_point * y - potential(sup_point)
            assert abs(potential(x) + conjugate - x * y) < 1e-8, (name, v)


def test_potentials_are_infinite_outside_domain(scalar_table):
    with jax.enable_x64(True):
        for name, (_, potential, (lo, hi)) in scalar_table.items():
            if math.isfinite(lo):
                assert potential(lo - 0.1) == math.inf and math.isfinite(potential(lo)), name
            if math.isfinite(hi):
                assert potential(hi + 0.1) == math.inf and math.isfinite(potential(hi)), name


def test_softplus_potential_is_dilogarithm(scalar_table):
    """f(x) = Li2(e^{-x}): f(0) = pi^2/6 and f'(x) = ln(1 - e^{-x}) (spec: mind the sign)."""
    with jax.enable_x64(True):
        assert abs(scalar_table["softplus"][1](0.0) - math.pi**2 / 6) < 1e-12
        slope = jax.jit(jax.vmap(jax.grad(prox.softplus().potential)))(jnp.asarray([0.3, 1.0, 4.0]))
        np.testing.assert_allclose(slope, np.log1p(-np.exp(-np.array([0.3, 1.0, 4.0]))), atol=1e-10)


class ShapeDtypeVmapTest(chex.TestCase):
    """Every Prox acts elementwise on any shape, keeps float32, commutes with vmap and has a finite potential on its
    own outputs, jitted and not jitted (chex.variants)."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_shape_dtype_vmap(self):
        v = jnp.linspace(-2.0, 2.0, 12, dtype=jnp.float32).reshape(3, 4)

        def everything(v):  # jitted: one compilation for the whole table
            return {name: (factory().apply(v), jax.vmap(factory().apply)(v), factory().potential(factory().apply(v)))
                    for name, (factory, _) in TABLE.items()}

        for name, (out, vmapped, pot) in self.variant(everything)(v).items():
            chex.assert_shape([out, pot], v.shape)
            chex.assert_type([out, pot], jnp.float32)
            chex.assert_trees_all_close(vmapped, out, rtol=1e-6)
            chex.assert_tree_all_finite(pot)


def test_from_activation_matches_closed_form_up_to_constant():
    with jax.enable_x64(True):
        numeric = jax.jit(prox.from_activation(jax.nn.sigmoid, name="sigmoid").potential)
        closed = prox.sigmoid()
        xs = jnp.asarray([0.05, 0.3, 0.5, 0.8, 0.95, 1.5])
        diff = numeric(xs)[:-1] - closed.potential(xs[:-1])
        np.testing.assert_allclose(diff, diff[0], atol=1e-8)
        assert numeric(xs)[-1] == jnp.inf


@pytest.mark.parametrize(
    "activation, reason",
    [(jax.nn.gelu, "not monotone"), (jax.nn.swish, "not monotone"), (jax.nn.gelu, "not 1-Lipschitz"),
     (lambda v: 1.5 * jnp.tanh(v), "not 1-Lipschitz")],
)
def test_non_proximal_activations_are_rejected(activation, reason):
    with pytest.raises(ValueError, match=reason):
        prox.from_activation(activation)


def test_proximal_activations_pass_the_check():
    for factory, _ in TABLE.values():
        prox.check_proximal(factory().apply)
    prox.check_proximal(jax.nn.elu)  # elu is nondecreasing with slope <= 1: a prox (no closed form listed)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: prox.leaky_relu(slope=0.0), r"leaky_relu\(slope=0.0\): must be in \(0, 1\]"),
        (lambda: prox.leaky_relu(slope=2.0), "not 1-Lipschitz"),
        (lambda: prox.box(lower=1.0, upper=0.0), r"box\(upper=0.0\): must be > 1.0"),
        (lambda: prox.l1(weight=-1.0), r"l1\(weight=-1.0\): must be >= 0"),
        (lambda: prox.relu_l1(weight=float("nan")), r"relu_l1\(weight=nan\): must be >= 0"),
        (lambda: prox.box(lower=float("inf"), upper=2.0), r"box\(lower=inf\): must be finite"),
        (lambda: prox.check_proximal(jnp.tanh, tolerance=-1.0), r"check_proximal\(tolerance=-1.0\): must be >= 0"),
        # an activation that turns down beyond the default check range but inside the potential's range
        (lambda: prox.from_activation(lambda v: jnp.clip(v, -12, 12) - 0.5 * jax.nn.relu(v - 20)),
         "not a proximal operator|decreas"),
    ],
)
def test_bad_hyperparameters(call, match):
    with pytest.raises(ValueError, match=match):
        call()
