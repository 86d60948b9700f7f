"""Activations as proximal operators of convex potentials (Xie et al., "Optimization Induced Equilibrium Networks").

A scalar activation sigma is the proximal operator of a convex function f,

    sigma(v) = prox_f(v) = argmin_x  f(x) + (x - v)^2 / 2,

if and only if sigma is nondecreasing and 1-Lipschitz; then (up to a constant)

    f(x) = integral (sigma^{-1}(x) - x) dx.                                                        (spec opteq.md section 2)

Each factory returns :class:`Prox` ``(apply, potential)`` acting elementwise on arrays. Potentials are +inf
outside the domain of f (the closure of the range of sigma). Table (spec section 2):

=====================  =====================================================================
sigma                  f(x)
=====================  =====================================================================
relu                   indicator of [0, inf)
hard_sigmoid = clip    indicator of [0, 1]
leaky_relu(slope a)    (1/a - 1) x^2 / 2 for x < 0, 0 for x >= 0
sigmoid                x ln x + (1 - x) ln(1 - x) - x^2/2 on [0, 1]
tanh                   ((1 + x) ln(1 + x) + (1 - x) ln(1 - x)) / 2 - x^2/2 on [-1, 1]
softplus               Li2(exp(-x)) on [0, inf)
relu(v - t)            t x + indicator of [0, inf)      (ReLU with an l1 prior: ``relu_l1``)
soft threshold         t |x|                           (``l1``)
clip(v, lo, hi)        indicator of [lo, hi]           (``box``)
=====================  =====================================================================

``add_l1`` adds an l1 prior to any scalar convex f: prox_{f + w|.|}(v) = max(prox_f(v - w), 0) +
min(prox_f(v + w), 0) (the optimality condition on each side of 0; prox_f is monotone, so at most one term is
nonzero). When f is smallest at 0 (relu, tanh) this is prox_f o prox_{w|.|} (Yu, "On decomposing the proximal
map", NeurIPS 2013), but not in general (sigmoid, softplus).
``from_activation`` accepts any user activation after checking numerically that it is monotone and 1-Lipschitz;
GELU and swish fail (they dip below zero and are steeper than 1 somewhere) and are rejected with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jeq import validate

__all__ = [
    "Prox",
    "add_l1",
    "box",
    "check_proximal",
    "from_activation",
    "hard_sigmoid",
    "l1",
    "leaky_relu",
    "primitive",
    "relu",
    "relu_l1",
    "sigmoid",
    "softplus",
    "tanh",
]

Array = jax.Array


class Prox(NamedTuple):
    """An activation seen as the proximal operator of a convex potential; both act elementwise.

    ``apply(v) = argmin_x potential(x) + (x - v)^2 / 2``.

    >>> import jax.numpy as jnp
    >>> from jeq import prox
    >>> p = prox.relu()
    >>> p._fields
    ('apply', 'potential')
    >>> p.apply(jnp.array([-1.0, 0.5])).tolist(), p.potential(jnp.array([-1.0, 0.5])).tolist()
    ([0.0, 0.5], [inf, 0.0])
    """

    apply: Callable[[Array], Array]
    """The activation ``sigma(v) = argmin_x f(x) + (x - v)^2 / 2`` (elementwise, any shape)."""
    potential: Callable[[Array], Array]
    """The convex potential f (elementwise, any shape); ``+inf`` outside its domain."""


def _indicator(x: Array, lower: float | None, upper: float | None) -> Array:
    inside = jnp.ones(jnp.shape(x), bool)
    if lower is not None:
        inside = inside & (x >= lower)
    if upper is not None:
        inside = inside & (x <= upper)
    return jnp.where(inside, jnp.zeros_like(x), jnp.inf)


def relu() -> Prox:
    """ReLU ``max(v, 0)`` = projection onto [0, inf): f = indicator of [0, inf).

    >>> import jax.numpy as jnp
    >>> from jeq import prox
    >>> p = prox.relu()
    >>> p.apply(jnp.array([-2.0, 0.0, 1.5])).tolist()
    [0.0, 0.0, 1.5]
    >>> p.potential(jnp.array([-0.1, 0.0, 3.0])).tolist()  # the indicator of [0, inf)
    [inf, 0.0, 0.0]
    """
    return Prox(apply=jax.nn.relu, potential=lambda x: _indicator(x, 0.0, None))


def box(*, lower: float, upper: float) -> Prox:
    """Clip ``min(max(v, lower), upper)`` = projection onto [lower, upper]: f = indicator of [lower, upper].

    >>> import jax.numpy as jnp
    >>> from jeq import prox
    >>> p = prox.box(lower=-1.0, upper=2.0)
    >>> p.apply(jnp.array([-3.0, 0.5, 5.0])).tolist()
    [-1.0, 0.5, 2.0]
    >>> p.potential(jnp.array([-3.0, 0.5, 5.0])).tolist()
    [inf, 0.0, inf]
    """
    lower = validate.real("jeq.prox.box", "lower", lower)
    upper = validate.real("jeq.prox.box", "upper", upper, low=lower, low_open=True)
    return Prox(apply=lambda v: jnp.clip(v, lower, upper), potential=lambda x: _indicator(x, lower, upper))


def hard_sigmoid() -> Prox:
    """Hard sigmoid ``clip(v, 0, 1)``: f = indicator of [0, 1] (``box(lower=0, upper=1)``).

    >>> import jax.numpy as jnp
    >>> from jeq import prox
    >>> prox.hard_sigmoid().apply(jnp.array([-0.5, 0.25, 1.5])).tolist()
    [0.0, 0.25, 1.0]
    """
    return box(lower=0.0, upper=1.0)


def leaky_relu(*, slope: float) -> Prox:
    """Leaky ReLU ``v if v >= 0 else slope * v`` for slope a in (0, 1]: f(x) = (1/a - 1) x^2 / 2 for x < 0, else 0.

    The activation is the argmin of f(x) + (x - v)^2 / 2; check it against a grid:

    >>> import jax.numpy as jnp
    >>> from jeq import prox
    >>> p = prox.leaky_relu(slope=0.1)
    >>> round(float(prox.argmin_on_grid(p, -2.0, jnp.linspace(-3.0, 3.0, 4001))), 2), round(float(p.apply(-2.0)), 2)
    (-0.2, -0.2)
    """
    a = validate.real("jeq.prox.leaky_relu", "slope", slope)
    if not 0.0 < a <= 1.0:
        validate.fail("jeq.prox.leaky_relu", "slope", slope, "must be in (0, 1] (slope > 1 is not 1-Lipschitz)")
    curvature = 1.0 / a - 1.0

    def potential(x):
        return jnp.where(x < 0, 0.5 * curvature * x * x, jnp.zeros_like(x))

    return Prox(apply=lambda v: jnp.where(v >= 0, v, a * v), potential=potential)


def sigmoid() -> Prox:
    """Logistic sigmoid: f(x) = x ln x + (1 - x) ln(1 - x) - x^2/2 on [0, 1] (negative binary entropy - x^2/2).

    >>> import jax.numpy as jnp
    >>> from jeq import prox
    >>> p = prox.sigmoid()  # sigmoid(v) is the argmin of f(x) + (x - v)^2 / 2 over a grid on [0, 1]
    >>> round(float(prox.argmin_on_grid(p, 1.0, jnp.linspace(0.0, 1.0, 4001))), 2), round(float(p.apply(1.0)), 2)
    (0.73, 0.73)
    >>> float(p.potential(1.5))  # outside the domain [0, 1]
    inf
    """

    def potential(x):
        inside = (x >= 0) & (x <= 1)
        xc = jnp.clip(x, 0.0, 1.0)
        value = jax.scipy.special.xlogy(xc, xc) + jax.scipy.special.xlogy(1 - xc, 1 - xc) - 0.5 * xc * xc
        return jnp.where(inside, value, jnp.inf)

    return Prox(apply=jax.nn.sigmoid, potential=potential)


def tanh() -> Prox:
    """tanh: f(x) = x artanh x + ln(1 - x^2)/2 - x^2/2 = ((1+x)ln(1+x) + (1-x)ln(1-x))/2 - x^2/2 on [-1, 1].

    >>> import jax.numpy as jnp
    >>> from jeq import prox
    >>> p = prox.tanh()  # tanh(v) is the argmin of f(x) + (x - v)^2 / 2 over a grid on [-1, 1]
    >>> round(float(prox.argmin_on_grid(p, -0.5, jnp.linspace(-1.0, 1.0, 4001))), 2), round(float(p.apply(-0.5)), 2)
    (-0.46, -0.46)
    """

    def potential(x):
        inside = (x >= -1) & (x <= 1)
        xc = jnp.clip(x, -1.0, 1.0)
        xlogx = jax.scipy.special.xlogy
        value = 0.5 * (xlogx(1 + xc, 1 + xc) + xlogx(1 - xc, 1 - xc)) - 0.5 * xc * xc
        return jnp.where(inside, value, jnp.inf)

    return Prox(apply=jnp.tanh, potential=potential)


def softplus() -> Prox:
    """softplus ``ln(1 + e^v)``: f(x) = Li2(e^{-x}) = int ln(1 - e^{-x}) dx on [0, inf) (convex, decreasing).

    >>> import jax.numpy as jnp
    >>> from jeq import prox
    >>> p = prox.softplus()  # softplus(v) is the argmin of f(x) + (x - v)^2 / 2 over a grid on [0, 4]; ln 2 at v = 0
    >>> round(float(prox.argmin_on_grid(p, 0.0, jnp.linspace(0.0, 4.0, 4001))), 2), round(float(p.apply(0.0)), 2)
    (0.69, 0.69)
    """

    def potential(x):
        inside = x >= 0
        xc = jnp.maximum(x, 0.0)
        # Li2(u) = spence(1 - u) in the scipy convention; 1 - e^{-x} = -expm1(-x) keeps precision near 0.
        value = jax.scipy.special.spence(-jnp.expm1(-xc))
        return jnp.where(inside, value, jnp.inf)

    return Prox(apply=jax.nn.softplus, potential=potential)


def l1(*, weight: float) -> Prox:
    """Soft thresholding ``sign(v) max(|v| - w, 0)`` = prox of f(x) = w |x| (w >= 0).

    >>> import jax.numpy as jnp
    >>> from jeq import prox
    >>> p = prox.l1(weight=0.5)
    >>> p.apply(jnp.array([-2.0, 0.3, 1.0])).tolist()
    [-1.5, 0.0, 0.5]
    >>> round(float(prox.argmin_on_grid(p, -2.0, jnp.linspace(-3.0, 3.0, 4001))), 2)  # brute force, v = -2
    -1.5
    """
    w = validate.nonnegative("jeq.prox.l1", "weight", weight)
    return Prox(
        apply=lambda v: jnp.sign(v) * jnp.maximum(jnp.abs(v) - w, 0.0),
        potential=lambda x: w * jnp.abs(x),
    )


def add_l1(prox: Prox, *, weight: float) -> Prox:
    """Add an l1 prior w|x| to a scalar convex potential f:

        prox_{f + w|.|}(v) = max(prox_f(v - w), 0) + min(prox_f(v + w), 0).

    (x > 0 at the minimum iff prox_f(v - w) > 0, x < 0 iff prox_f(v + w) < 0, else x = 0.)

    >>> import jax.numpy as jnp
    >>> from jeq import prox
    >>> p = prox.add_l1(prox.tanh(), weight=0.2)
    >>> v = jnp.array([-1.0, 0.8])
    >>> x_star = prox.argmin_on_grid(p, v, jnp.linspace(-1.0, 1.0, 4001))  # brute force
    >>> [round(float(x), 2) for x in x_star], bool(jnp.allclose(x_star, p.apply(v), atol=1e-3))
    ([-0.66, 0.54], True)
    >>> float(p.apply(0.1))  # |v| <= w: the dead zone of the l1 prior
    0.0
    """
    w = validate.nonnegative("jeq.prox.add_l1", "weight", weight)
    if not isinstance(prox, Prox):
        validate.fail("jeq.prox.add_l1", "prox", prox, "must be a jeq.prox.Prox")
    return Prox(
        apply=lambda v: jnp.maximum(prox.apply(v - w), 0.0) + jnp.minimum(prox.apply(v + w), 0.0),
        potential=lambda x: prox.potential(x) + w * jnp.abs(x),
    )


def relu_l1(*, weight: float) -> Prox:
    """ReLU with an l1 prior, ``relu(v - w)``: f(x) = w x + indicator of [0, inf) = w |x| + indicator (w >= 0).

    The one-sided shrinkage (negative inputs go to 0, positive ones shrink by w), the closed form of
    ``add_l1(relu(), weight=w)``; the two-sided soft threshold is :func:`l1`. Adding ``w * ||z||_1`` to an OptEq
    objective turns its ReLU layer into this one (spec section 6.1).

    >>> import jax.numpy as jnp
    >>> from jeq import prox
    >>> v = jnp.array([-1.0, 0.2, 2.0])
    >>> prox.relu_l1(weight=0.5).apply(v).tolist()
    [0.0, 0.0, 1.5]
    >>> prox.add_l1(prox.relu(), weight=0.5).apply(v).tolist()  # the same map
    [0.0, 0.0, 1.5]
    """
    w = validate.nonnegative("jeq.prox.relu_l1", "weight", weight)
    return Prox(apply=lambda v: jax.nn.relu(v - w), potential=lambda x: w * x + _indicator(x, 0.0, None))


def primitive(prox: Prox, v: Array) -> Array:
    """F(v) = v^2/2 - M_f(v), M_f(v) = f(sigma(v)) + (sigma(v) - v)^2/2 (the Moreau envelope of f): F' = sigma.

    The convex antiderivative of the activation (elementwise; Moreau: grad M_f(v) = v - prox_f(v)), e.g.
    relu(v)^2/2 for ReLU. It is the F of the OptEq unit layer's Phi(z) = sum_i F((W z + b)_i), whose gradient is
    W^T sigma(W z + b) (spec opteq.md section 3).

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq import prox
    >>> v = jnp.array([-1.0, 0.5, 2.0])
    >>> prox.primitive(prox.relu(), v).tolist()  # relu(v)^2 / 2
    [0.0, 0.125, 2.0]
    >>> p = prox.sigmoid()
    >>> dF = jax.vmap(jax.grad(lambda t: prox.primitive(p, t)))(v)  # F' = sigma
    >>> bool(jnp.allclose(dF, p.apply(v), atol=1e-4))
    True
    """
    if not isinstance(prox, Prox):
        validate.fail("jeq.prox.primitive", "prox", prox, "must be a jeq.prox.Prox")
    x = prox.apply(v)
    return 0.5 * v * v - prox.potential(x) - 0.5 * (x - v) ** 2


def argmin_on_grid(prox: Prox, v: Array, grid: Array) -> Array:
    """x* = argmin_{x ∈ grid} f(x) + (x - v)^2 / 2: the proximal operator by brute force, an oracle for ``apply``.

    ``v`` of any shape (each element minimised separately over the 1-D ``grid``); the answer is exact up to the grid
    spacing when the minimiser lies inside the grid.

    >>> import jax.numpy as jnp
    >>> from jeq import prox
    >>> p = prox.tanh()
    >>> v = jnp.array([0.5, 2.0])
    >>> x_star = prox.argmin_on_grid(p, v, jnp.linspace(-1.0, 1.0, 4001))
    >>> [round(float(x), 2) for x in x_star], bool(jnp.allclose(x_star, p.apply(v), atol=1e-3))
    ([0.46, 0.96], True)
    """
    if not isinstance(prox, Prox):
        validate.fail("jeq.prox.argmin_on_grid", "prox", prox, "must be a jeq.prox.Prox")
    grid = validate.array("jeq.prox.argmin_on_grid", "grid", grid, ndim=1)
    v = jnp.asarray(v)
    objective = prox.potential(grid) + (grid - v[..., None]) ** 2 / 2
    return grid[jnp.argmin(objective, axis=-1)]


def check_proximal(
    activation: Callable[[Array], Array],
    *,
    name: str | None = None,
    radius: float = 10.0,
    num_points: int = 4_001,
    tolerance: float = 1e-3,
) -> None:
    """Raise ``ValueError`` unless ``activation`` is numerically nondecreasing and 1-Lipschitz on [-radius, radius].

    These two properties characterise proximal operators of convex functions on the real line (spec section 2):
    a prox is firmly nonexpansive, i.e. ``0 <= (sigma(a) - sigma(b)) / (a - b) <= 1``. The check evaluates sigma on
    a uniform grid (JAX's default float dtype) and inspects the divided differences.

    Args:
      activation: an elementwise function of a 1-D array.
      name: used in the message (defaults to ``activation.__name__``).
      radius: half-width of the grid.
      num_points: grid size (>= 3).
      tolerance: slack on both inequalities (float32 rounding makes divided differences inexact by ~1e-4).

    >>> import jax
    >>> from jeq import prox
    >>> prox.check_proximal(jax.nn.relu6)  # nondecreasing and 1-Lipschitz: passes silently
    >>> prox.check_proximal(jax.nn.gelu, name="gelu")
    Traceback (most recent call last):
    ...
    ValueError: jeq.prox.check_proximal(gelu): not a proximal operator: not monotone ...
    """
    label = name or getattr(activation, "__name__", repr(activation))
    radius = validate.positive("jeq.prox.check_proximal", "radius", radius)
    tolerance = validate.nonnegative("jeq.prox.check_proximal", "tolerance", tolerance)
    num_points = validate.integer("jeq.prox.check_proximal", "num_points", num_points, low=3)
    grid = np.linspace(-radius, radius, num_points)
    values = np.asarray(activation(jnp.asarray(grid)), np.float64)
    if values.shape != grid.shape:
        raise ValueError(
            f"jeq.prox.check_proximal({label}): activation must act elementwise; input shape {grid.shape} "
            f"gave output shape {values.shape}"
        )
    if not np.all(np.isfinite(values)):
        raise ValueError(f"jeq.prox.check_proximal({label}): activation is not finite on [-{radius}, {radius}]")
    slopes = np.diff(values) / np.diff(grid)
    reasons = []
    lowest = int(np.argmin(slopes))
    if slopes[lowest] < -tolerance:
        reasons.append(
            f"not monotone (slope {slopes[lowest]:.3g} < 0 at v = {grid[lowest]:.3g}), so it is not the "
            "prox of any convex function"
        )
    steepest = int(np.argmax(slopes))
    if slopes[steepest] > 1.0 + tolerance:
        reasons.append(
            f"not 1-Lipschitz (slope {slopes[steepest]:.4g} > 1 at v = {grid[steepest]:.3g}), so it is not firmly "
            "nonexpansive"
        )
    if reasons:
        raise ValueError(
            f"jeq.prox.check_proximal({label}): not a proximal operator: " + "; ".join(reasons)
            + ". A scalar activation is prox_f of a convex f iff it is nondecreasing and 1-Lipschitz."
        )


def from_activation(
    activation: Callable[[Array], Array],
    *,
    name: str | None = None,
    radius: float = 30.0,
    bisection_steps: int = 100,
    quadrature_nodes: int = 64,
) -> Prox:
    """Wrap a user activation as a :class:`Prox`, after :func:`check_proximal` (GELU, swish are rejected).

    The potential is computed numerically from sigma = prox_f = grad phi with phi(v) = int_0^v sigma, a convex
    function: f(x) = phi^*(x) - x^2/2 = x v - phi(v) - x^2/2 with v = sigma^{-1}(x) (found by bisection on
    [-radius, radius]; phi by Gauss-Legendre quadrature). f is +inf outside [sigma(-radius), sigma(radius)].
    Accurate to quadrature error for smooth sigma; prefer the closed forms above when they exist.

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq import prox
    >>> p = prox.from_activation(jax.nn.sigmoid, name="sigmoid")
    >>> x = jnp.array([0.2, 0.5, 0.9])
    >>> gap = p.potential(x) - prox.sigmoid().potential(x)  # the closed form, up to a constant (here ln 2)
    >>> bool(jnp.allclose(gap, gap[0], atol=1e-3)), round(float(gap[0]), 3)
    (True, 0.693)
    >>> prox.from_activation(jax.nn.silu, name="swish")
    Traceback (most recent call last):
    ...
    ValueError: jeq.prox.check_proximal(swish): not a proximal operator: ...
    """
    radius = validate.positive("jeq.prox.from_activation", "radius", radius)
    check_proximal(activation, name=name, radius=radius)  # checked on the whole range the potential uses
    nodes, weights = np.polynomial.legendre.leggauss(quadrature_nodes)

    def phi(v):
        # int_0^v sigma(t) dt with t = v (s + 1) / 2, s in [-1, 1].
        t = v * (jnp.asarray(nodes, v.dtype) + 1) / 2
        return v / 2 * jnp.sum(jnp.asarray(weights, v.dtype) * activation(t))

    def potential_scalar(x):
        lo_value, hi_value = activation(jnp.asarray(-radius, x.dtype)), activation(jnp.asarray(radius, x.dtype))

        def bisect(_, bounds):
            lo, hi = bounds
            mid = (lo + hi) / 2
            below = activation(mid) < x
            return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

        lo, hi = jax.lax.fori_loop(
            0, bisection_steps, bisect, (jnp.asarray(-radius, x.dtype), jnp.asarray(radius, x.dtype))
        )
        v = (lo + hi) / 2
        value = x * v - phi(v) - 0.5 * x * x
        return jnp.where((x >= lo_value) & (x <= hi_value), value, jnp.inf)

    def potential(x):
        x = jnp.asarray(x)
        return jnp.vectorize(potential_scalar)(x)

    return Prox(apply=activation, potential=potential)
