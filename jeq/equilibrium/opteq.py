"""OptEq: optimisation-induced equilibrium networks (Xie et al., arXiv 2105.13228; spec opteq.md sections 3-6).

Equilibrium (one example, c = U x + b):

    z* = prox_f(W^T W z* - grad h(z*) + c),      ||W||_2 <= 1 - eps,                                   (3.1)

is exactly the minimiser of the hidden convex objective

    G(z) = sum_i f(z_i) + ||z||^2 / 2 - ||W z||^2 / 2 - <c, z> + h(z)                                  (3.2)

(optimality 0 in df(z) + z - W^T W z + grad h(z) - c is (3.1)); sigma = prox_f is the activation
(:mod:`jeq.prox`) and h an optional smooth convex prior. G is convex iff ||W||_2 <= 1 (strongly convex for < 1),
and Picard on (3.1) is proximal gradient descent on G with step 1, so G decreases along its iterates and they
contract with factor ||W^T W - grad^2 h||_2 (||W||_2^2 without a prior; section 4).

Priors (section 6): (a) change the objective, get a new layer: an l1 prior lam ||z||_1 gives
``activation=jeq.prox.add_l1(prox.relu(), weight=lam)`` = relu(v - lam); the smoothness prior
h(z) = mu/2 z^T L z (:func:`smoothness_prior`) adds -mu L z inside sigma. (b) select among equilibria: with
||W||_2 = 1 the minimisers of G may form a set; ``equilibrium(..., solver=jeq.fixedpoint.halpern(anchor=u))``
returns the one nearest u.

The unit layer (section 3; the paper's first contribution), :func:`opteq_unit`:

    z* = T(z*),   T(z) = W^T sigma(W z + c) = grad Phi(z),   Phi(z) = sum_i F((W z + c)_i),  F' = sigma,     (3.3)

with F = :func:`jeq.prox.primitive`. For ||W||_2 <= 1, T is the nonexpansive gradient of a convex function, hence
(Moreau) the prox of an implicit convex function, and its fixed points minimise E(z) = ||z||^2/2 - Phi(z)
(:func:`unit_objective`, convex, strongly for ||W||_2 < 1). With y = sigma(W z + c), z = W^T y gives
y* = sigma(W W^T y* + c): the equilibrium z_hat = W^T y* of (3.3) is the W^T-image of the equilibrium y* of (3.1)
with W and W^T swapped, i.e. ``opteq`` with the coupling V^T.

W = s V / ||V||_2 with s = (1 - eps) sigmoid(a) (section 4): dense ||V||_2 is exact (SVD) by default, or the
persistent power iteration of the spec (``norm="power"``, :func:`power_norm`, :func:`refresh_power_vector`); for the convolutional
variant W is a 'SAME' convolution, W^T W z is the convolution followed by its transpose, and ||V||_2 is replaced by
the certified upper bound of :func:`jeq.equilibrium.conv.conv_norm_bound` (largest per-frequency singular value), so
||W||_2 <= 1 - eps holds exactly (slightly below it on small images, where the bound is loose at the borders).

The factories take the sizes by name and every other hyper-parameter as a keyword option: :class:`OptEqOptions`
(activation, margin, prior, init_scale, dtype, norm) and the solve settings (:class:`jeq.equilibrium.SolveSettings`
fields, defaults :data:`OPTEQ_SETTINGS`), e.g. ``opteq(features=784, hidden=94, classes=10, tol=1e-4)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jeq import prox as proxlib
from jeq import validate
from jeq.equilibrium import conv as convlib
from jeq.equilibrium import core
from jeq.equilibrium.core import EquilibriumModel, SolveSettings

__all__ = [
    "OPTEQ_SETTINGS",
    "OptEqConvParams",
    "OptEqOptions",
    "OptEqParams",
    "hidden_objective",
    "opteq",
    "opteq_conv",
    "opteq_map",
    "opteq_unit",
    "power_norm",
    "refresh_power_vector",
    "smoothness_prior",
    "unit_map",
    "unit_objective",
    "unit_potential",
]

Array = jax.Array
Prior = Callable[[Array], Array]
NORMS = ("svd", "power")


def opteq_map(z: Array, c: Array, *, gram: Callable[[Array], Array], activation: proxlib.Prox,
              prior: Prior | None = None) -> Array:
    """The OptEq fixed-point map (3.1): ``prox_f(W^T W z - grad h(z) + c)``, with ``gram(z) = W^T W z``.

    With W = diag(0.6, 0.3), c = (1, -1) and ReLU the fixed point is (1 / (1 - 0.36), 0) = (1.5625, 0):

    >>> import jax.numpy as jnp
    >>> from jeq import equilibrium as eq, prox
    >>> w = jnp.diag(jnp.array([0.6, 0.3]))
    >>> z = jnp.array([1.5625, 0.0])
    >>> eq.opteq_map(z, jnp.array([1.0, -1.0]), gram=lambda v: w.T @ w @ v, activation=prox.relu()).tolist()
    [1.5625, 0.0]
    """
    pre = gram(z) + c
    if prior is not None:
        pre = pre - jax.grad(prior)(z)
    return activation.apply(pre)


def hidden_objective(z: Array, c: Array, *, weight: Callable[[Array], Array], activation: proxlib.Prox,
                     prior: Prior | None = None) -> Array:
    """G(z) = sum f(z) + ||z||^2/2 - ||W z||^2/2 - <c, z> + h(z) (3.2), with ``weight(z) = W z``.

    +inf outside the domain of f (e.g. negative entries for ReLU).

    Its minimiser is the OptEq equilibrium: one unit, W = 0.6, c = 1, ReLU, z* = 1 / (1 - 0.36) = 1.5625; the
    minimum of G over a grid:

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq import equilibrium as eq, prox
    >>> def G(z):
    ...     return eq.hidden_objective(z[None], jnp.ones(1), weight=lambda v: 0.6 * v, activation=prox.relu())
    >>> zs = jnp.linspace(-1.0, 3.0, 4001)
    >>> round(float(zs[jnp.argmin(jax.jit(jax.vmap(G))(zs))]), 2), float(G(jnp.asarray(-0.5)))
    (1.56, inf)
    """
    value = jnp.sum(activation.potential(z)) + 0.5 * jnp.sum(z * z) - 0.5 * jnp.sum(weight(z) ** 2) - jnp.sum(c * z)
    if prior is not None:
        value = value + prior(z)
    return value


def smoothness_prior(*, strength: float, axes: Sequence[int] = (0,)) -> Prior:
    """Laplacian (smoothness) prior h(z) = mu/2 sum_axes sum_i (z_{i+1} - z_i)^2 = mu/2 z^T L z.

    Its gradient mu L z enters the layer as ``prox_f(W^T W z - mu L z + c)``. ||L||_2 < 4 per axis, so
    mu < 1 / (4 len(axes)) keeps ||W^T W - mu L||_2 < 1 and Picard contractive (checked here).
    ``axes`` are the axes of one example's z: (0,) for a dense layer, (0, 1) for the spatial axes of (H, W, C).

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq import equilibrium as eq
    >>> h = eq.smoothness_prior(strength=0.1)
    >>> z = jnp.array([0.0, 1.0, 3.0])
    >>> round(float(h(z)), 4)  # 0.1 / 2 * (1^2 + 2^2)
    0.25
    >>> [round(float(g), 4) for g in jax.grad(h)(z)]  # mu L z, L the path Laplacian
    [-0.1, -0.1, 0.2]
    >>> eq.smoothness_prior(strength=0.3)
    Traceback (most recent call last):
    ...
    jeq.validate.ArgumentError: jeq.equilibrium.smoothness_prior(strength=0.3): must be in [0, 0.25) ...
    """
    where = "jeq.equilibrium.smoothness_prior"
    axes = tuple(axes)
    if not axes:
        validate.fail(where, "axes", axes, "must be a non-empty tuple of ints")
    axes = tuple(validate.integer(where, "axes", a) for a in axes)
    limit = 1.0 / (4 * len(axes))
    mu = validate.real(where, "strength", strength)
    if not 0.0 <= mu < limit:
        validate.fail(where, "strength", strength,
                      f"must be in [0, {limit}) so that the OptEq map stays contractive (||L||_2 < 4 per axis)")

    def energy(z):
        return 0.5 * mu * sum(jnp.sum(jnp.diff(z, axis=a) ** 2) for a in axes)

    return energy


def unit_map(z: Array, c: Array, *, weight: Array, activation: proxlib.Prox) -> Array:
    """The OptEq unit layer (3.3): T(z) = W^T sigma(W z + c), ``weight`` = W (m, n), z of shape (n,), c of (m,).

    >>> import jax.numpy as jnp
    >>> from jeq import equilibrium as eq, prox
    >>> w = jnp.array([[0.5, 0.0], [0.0, 0.5], [0.5, 0.5]])
    >>> eq.unit_map(jnp.array([1.0, -1.0]), jnp.array([0.0, 1.0, 0.0]), weight=w, activation=prox.relu()).tolist()
    [0.25, 0.25]
    """
    return weight.T @ activation.apply(weight @ z + c)


def unit_potential(z: Array, c: Array, *, weight: Array, activation: proxlib.Prox) -> Array:
    """Phi(z) = sum_i F((W z + c)_i) with F = :func:`jeq.prox.primitive` (F' = sigma): grad Phi = :func:`unit_map`.

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq import equilibrium as eq, prox
    >>> w, c, z = jnp.array([[0.5, -0.2], [0.1, 0.4]]), jnp.array([0.3, -0.1]), jnp.array([1.0, 2.0])
    >>> grad_phi = jax.grad(lambda z: eq.unit_potential(z, c, weight=w, activation=prox.sigmoid()))(z)
    >>> bool(jnp.allclose(grad_phi, eq.unit_map(z, c, weight=w, activation=prox.sigmoid()), atol=1e-5))
    True
    """
    return jnp.sum(proxlib.primitive(activation, weight @ z + c))


def unit_objective(z: Array, c: Array, *, weight: Array, activation: proxlib.Prox) -> Array:
    """E(z) = ||z||^2/2 - Phi(z): grad E = z - T(z), so the unit layer's fixed points are the minimisers of E
    (convex for ||W||_2 <= 1: its Hessian I - W^T diag(sigma') W >= 0 with 0 <= sigma' <= 1).

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq import equilibrium as eq, prox
    >>> w, c, z = jnp.array([[0.5, -0.2], [0.1, 0.4]]), jnp.array([0.3, -0.1]), jnp.array([1.0, 2.0])
    >>> grad_e = jax.grad(lambda z: eq.unit_objective(z, c, weight=w, activation=prox.tanh()))(z)
    >>> bool(jnp.allclose(grad_e, z - eq.unit_map(z, c, weight=w, activation=prox.tanh()), atol=1e-5))
    True
    """
    return 0.5 * jnp.sum(z * z) - unit_potential(z, c, weight=weight, activation=activation)


# -------------------------------------------------------------------------------------------------- options
OPTEQ_SETTINGS = SolveSettings(solver="anderson", tol=1e-3, rtol=0.0, maxiter=50, backward="implicit")
"""Default solve of the OptEq factories: Anderson to ||f(z) - z|| <= 1e-3 within 50 steps, implicit backward
(its adjoint follows the forward: tol min(1e-3, 1e-6) = 1e-6, rtol 0, at most 100 Anderson steps)."""


class OptEqOptions(NamedTuple):
    """Keyword hyper-parameters of the OptEq factories besides the sizes and the solve settings (with defaults):
    sigma = prox_f (``activation``), eps in ||W||_2 <= 1 - eps (``margin``), the prior h, ...

    >>> from jeq import equilibrium as eq
    >>> eq.OptEqOptions._fields
    ('activation', 'margin', 'prior', 'init_scale', 'dtype', 'norm')
    >>> options = eq.OptEqOptions()
    >>> options.margin, options.norm, options.activation is None
    (0.05, 'svd', True)
    """

    activation: proxlib.Prox | None = None
    """A :class:`jeq.prox.Prox` sigma = prox_f (None: ReLU); its potential f enters G."""
    margin: float = 0.05
    """eps in ||W||_2 <= 1 - eps (0 <= eps < 1)."""
    prior: Prior | None = None
    """Optional smooth convex energy h(z), e.g. :func:`smoothness_prior` (dense and conv OptEq only)."""
    init_scale: float = 1.0
    """Initial a in s = (1 - eps) sigmoid(a) (deep OptEq: every a_l and e_l)."""
    dtype: Any = jnp.float32
    """Parameter dtype."""
    norm: str = "svd"
    """How ||V||_2 in W = s V / ||V||_2 is computed (dense :func:`opteq` and :func:`opteq_unit`): ``"svd"``
    (default: exact, one SVD per parameter update, so ||W||_2 <= 1 - eps holds exactly) or ``"power"`` (spec
    section 4: a persistent power iteration; ``params.power_vector`` carries u between updates and
    :func:`refresh_power_vector` in the optimiser chain advances it; a lower bound on ||V||_2 that tightens as
    training goes, so ||W||_2 may exceed s by the estimate's error early on; cheaper at large widths)."""

    @classmethod
    def from_keywords(cls, where: str, keywords: Mapping[str, Any]) -> tuple[OptEqOptions, SolveSettings]:
        """A factory's ``**options`` as (checked OptEq options, checked solve settings); errors name ``where``."""
        options, settings = core.split_options(where, keywords, cls(), OPTEQ_SETTINGS)
        options = options._replace(activation=core.check_activation(where, options.activation),
                                   margin=validate.real(where, "margin", options.margin, low=0, high=1,
                                                        high_open=True),
                                   norm=validate.one_of(where, "norm", options.norm, NORMS))
        return options, core.solve_settings(where, settings)


# ---------------------------------------------------------------------------------------------------------- dense
class OptEqParams(NamedTuple):
    """Trainable parameters of a dense OptEq classifier: W = s V / ||V||_2, s = (1 - eps) sigmoid(a), c = U x + b,
    logits = W_c z* + b_c.

    >>> import jax
    >>> from jeq import equilibrium as eq
    >>> model = eq.opteq(features=4, hidden=3, classes=2)
    >>> jax.tree.map(lambda leaf: leaf.shape, jax.eval_shape(model.init, jax.random.key(0)))
    OptEqParams(coupling=(3, 3), scale=(), injection=(3, 4), bias=(3,), readout=(2, 3), readout_bias=(2,),
                power_vector=(0,))
    """

    coupling: Array
    """V, shape (hidden, hidden); W = s V / ||V||_2."""
    scale: Array
    """a, scalar; s = (1 - eps) sigmoid(a) = ||W||_2."""
    injection: Array
    """U, shape (hidden, features)."""
    bias: Array
    """b, shape (hidden,)."""
    readout: Array
    """Classifier W_c, shape (classes, hidden)."""
    readout_bias: Array
    """Classifier bias, shape (classes,)."""
    power_vector: Array
    """u, the persistent left singular-vector estimate of V, shape (hidden,) with ``norm="power"`` (no gradient:
    advanced by :func:`refresh_power_vector`), shape (0,) with ``norm="svd"``."""


class OptEqPrepared(NamedTuple):
    """Constrained weights of a dense OptEq layer."""

    weight: Array
    """W = s V / ||V||_2, shape (hidden, hidden)."""
    gram: Array
    """W^T W, shape (hidden, hidden)."""


def opteq(*, features: int, hidden: int, classes: int, **options: Any) -> EquilibriumModel:
    """Dense OptEq classifier: z* = prox_f(W^T W z* - grad h(z*) + U x + b) (3.1), logits = W_c z* + b_c.

    x is one flattened example of shape (features,). ``objective(params, z, x)`` is G (3.2).

    Args:
      features, hidden, classes: sizes.
      **options: :class:`OptEqOptions` (activation, margin, prior, init_scale, dtype, norm) and the solve settings of
        :func:`jeq.fixedpoint.solve` (solver, tol, rtol, maxiter, backward, and axis_name: the vmap axis name for
        batch-level stopping, ``"batch"`` in :mod:`jeq.equilibrium.train`); defaults :data:`OPTEQ_SETTINGS`.

    A batch of two examples under ``jax.vmap``; z* is a fixed point of the layer and the minimiser of G (no
    coordinate step of 0.05 lowers it):

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq import equilibrium as eq
    >>> model = eq.opteq(features=4, hidden=3, classes=2, tol=1e-5, solver="picard")  # proximal gradient on G
    >>> params = model.init(jax.random.key(0))
    >>> xb = jnp.stack([jnp.linspace(-1.0, 1.0, 4), jnp.linspace(1.0, -1.0, 4)])
    >>> zb, stats = jax.jit(jax.vmap(model.equilibrium, in_axes=(None, 0)))(params, xb)
    >>> zb.shape, stats.converged.tolist()
    ((2, 3), [True, True])
    >>> @jax.jit
    ... def check(params, z, x):
    ...     fixed = jnp.allclose(z, model.layer(z, model.prepare(params), model.inject(params, x)), atol=1e-4)
    ...     steps = 0.05 * jnp.concatenate([jnp.eye(3), -jnp.eye(3)])
    ...     moved = jax.vmap(lambda d: model.objective(params, jnp.maximum(z + d, 0.0), x))(steps)
    ...     return fixed, jnp.all(moved >= model.objective(params, z, x))
    >>> [bool(flag) for flag in check(params, zb[0], xb[0])]
    [True, True]
    """
    where = "jeq.equilibrium.opteq"
    features, hidden, classes = core.layer_sizes(where, features=features, hidden=hidden, classes=classes)
    config, settings = OptEqOptions.from_keywords(where, options)

    def init(key):
        return _dense_init(key, config, features=features, hidden=hidden, classes=classes)

    def prepare(params):
        w = _dense_weight(params, config)
        return OptEqPrepared(w, w.T @ w)

    inject = core.linear_injection(where, features)

    def layer(z, prepared, c):
        return opteq_map(z, c, gram=lambda v: prepared.gram @ v, activation=config.activation, prior=config.prior)

    def objective(params, z, x):
        prepared = prepare(params)
        return hidden_objective(z, inject(params, x), weight=lambda v: prepared.weight @ v,
                                activation=config.activation, prior=config.prior)

    return core.assemble(name="opteq", init=init, prepare=prepare, inject=inject, layer=layer,
                         readout=core.linear_readout, settings=settings, objective=objective)


def _dense_init(key, config: OptEqOptions, *, features: int, hidden: int, classes: int) -> OptEqParams:
    dtype = config.dtype
    coupling, injection, readout = core.random_blocks(key, [
        ((hidden, hidden), 1 / np.sqrt(hidden)), ((hidden, features), np.sqrt(2.0 / features)),
        ((classes, hidden), 1 / np.sqrt(hidden))], dtype)
    size = hidden if config.norm == "power" else 0
    return OptEqParams(
        coupling=coupling, scale=jnp.asarray(config.init_scale, dtype), injection=injection,
        bias=jnp.zeros((hidden,), dtype), readout=readout, readout_bias=jnp.zeros((classes,), dtype),
        power_vector=jnp.full((size,), 1.0 / np.sqrt(max(size, 1)), dtype),
    )


def _normalise(v: Array) -> Array:
    return v / (jnp.linalg.norm(v) + jnp.finfo(v.dtype).tiny)


def power_norm(coupling: Array, power_vector: Array) -> Array:
    """sigma = u'^T V v,  v = V^T u / ||V^T u||,  u' = V v / ||V v||: one power-iteration step from the persistent u.

    The vectors carry no gradient (as in ``torch.nn.utils.spectral_norm``); sigma is differentiable in V and a
    lower bound on ||V||_2 that is exact once u is the top left singular vector.

    >>> import jax.numpy as jnp
    >>> from jeq import equilibrium as eq
    >>> v = jnp.diag(jnp.array([3.0, 1.0]))  # ||V||_2 = 3
    >>> round(float(eq.power_norm(v, jnp.array([1.0, 1.0]) / jnp.sqrt(2.0))), 3)  # one step: sqrt(8.2) < 3
    2.864
    >>> round(float(eq.power_norm(v, jnp.array([1.0, 0.0]))), 3)  # u = the top singular vector
    3.0
    """
    u = jax.lax.stop_gradient(power_vector)
    v = jax.lax.stop_gradient(_normalise(coupling.T @ u))
    u = jax.lax.stop_gradient(_normalise(coupling @ v))
    return u @ coupling @ v


def _dense_weight(params: OptEqParams, config: OptEqOptions) -> Array:
    """W = s V / ||V||_2 with s = (1 - eps) sigmoid(a); ||V||_2 by SVD or the persistent power iteration."""
    if config.norm == "power":
        norm = power_norm(params.coupling, params.power_vector)
    else:
        norm = jnp.linalg.norm(params.coupling, 2)
    return core.spectral_scale(params.scale, config.margin) * params.coupling / norm


def refresh_power_vector(*, steps: int = 1) -> optax.GradientTransformation:
    """Advance OptEq's persistent power iteration inside the optimiser chain: u <- V' v / ||V' v||,
    v = V'^T u / ||V'^T u|| (``steps`` times), with V' = V + the coupling's update (the weights after this step).

    Chain it last, e.g. ``optax.chain(optax.adam(1e-3), refresh_power_vector())``: it replaces the update of
    ``params.power_vector`` (zero from the optimiser: u carries no gradient) by u_new - u, so after
    ``optax.apply_updates`` the params hold the refreshed vector (no extra state, spec section 4). Params with an
    empty ``power_vector`` (``norm="svd"``) pass through unchanged. Needs ``params`` in ``update``.

    Twenty refresh steps make the power estimate of ||V||_2 exact:

    >>> import jax
    >>> import jax.numpy as jnp
    >>> import optax
    >>> from jeq import equilibrium as eq
    >>> params = eq.opteq(features=2, hidden=3, classes=2, norm="power").init(jax.random.key(0))
    >>> tx = optax.chain(optax.sgd(0.1), eq.refresh_power_vector(steps=20))
    >>> updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
    >>> params = optax.apply_updates(params, updates)
    >>> exact = jnp.linalg.norm(params.coupling, 2)
    >>> bool(jnp.allclose(eq.power_norm(params.coupling, params.power_vector), exact, rtol=1e-4))
    True
    """
    steps = validate.integer("jeq.equilibrium.refresh_power_vector", "steps", steps, low=1)

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("jeq.equilibrium.refresh_power_vector: update(updates, state, params) needs params")
        if params.power_vector.shape[0] == 0:
            return updates, state
        coupling = params.coupling + updates.coupling
        u = params.power_vector
        for _ in range(steps):
            u = _normalise(coupling @ _normalise(coupling.T @ u))
        return updates._replace(power_vector=u - params.power_vector), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def opteq_unit(*, features: int, hidden: int, classes: int, **options: Any) -> EquilibriumModel:
    """The OptEq unit-layer classifier: z* = W^T sigma(W z* + U x + b) (3.3), logits = W_c z* + b_c.

    The layer is T = grad Phi, the gradient of a convex function (the prox of an implicit convex function) for
    ||W||_2 <= 1; ``objective(params, z, x)`` is E(z) = ||z||^2/2 - Phi(z), minimised by z*. Same parameters
    (:class:`OptEqParams`, W = s V / ||V||_2), options and solve settings as :func:`opteq` (no prior); with the
    same params, its z* is W^T y*, y* the equilibrium of ``opteq`` whose coupling is V^T (W and W^T swapped).

    z* = T(z*) minimises E: grad E(z*) = z* - T(z*) = 0.

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq import equilibrium as eq
    >>> model = eq.opteq_unit(features=4, hidden=3, classes=2, tol=1e-5, solver="picard")
    >>> params = model.init(jax.random.key(0))
    >>> x = jnp.linspace(-1.0, 1.0, 4)
    >>> z, stats = jax.jit(model.equilibrium)(params, x)
    >>> grad_e = jax.jit(jax.grad(model.objective, argnums=1))(params, z, x)
    >>> bool(stats.converged), bool(jnp.linalg.norm(grad_e) < 1e-4)
    (True, True)
    """
    where = "jeq.equilibrium.opteq_unit"
    features, hidden, classes = core.layer_sizes(where, features=features, hidden=hidden, classes=classes)
    config, settings = OptEqOptions.from_keywords(where, options)
    if config.prior is not None:
        validate.fail(where, "prior", config.prior, "must be None: the unit layer takes no prior (use opteq)")

    def init(key):
        return _dense_init(key, config, features=features, hidden=hidden, classes=classes)

    def prepare(params):
        return _dense_weight(params, config)

    inject = core.linear_injection(where, features)

    def layer(z, weight, c):
        return unit_map(z, c, weight=weight, activation=config.activation)

    def objective(params, z, x):
        return unit_objective(z, inject(params, x), weight=prepare(params), activation=config.activation)

    return core.assemble(name="opteq-unit", init=init, prepare=prepare, inject=inject, layer=layer,
                         readout=core.linear_readout, settings=settings, objective=objective)


# ----------------------------------------------------------------------------------------------------------- conv
class OptEqConvParams(NamedTuple):
    """Trainable parameters of a convolutional OptEq classifier: W = s V / B(V) a 'SAME' convolution,
    c = U * x + b, logits = W_c vec(avg_pool(z*)) + b_c.

    >>> import jax
    >>> from jeq import equilibrium as eq
    >>> model = eq.opteq_conv(image_shape=(4, 4), in_channels=1, channels=2, classes=3, pool=2)
    >>> jax.tree.map(lambda leaf: leaf.shape, jax.eval_shape(model.init, jax.random.key(0)))
    OptEqConvParams(kernel=(3, 3, 2, 2), scale=(), injection=(3, 3, 1, 2), bias=(2,), readout=(3, 8),
                    readout_bias=(3,))
    """

    kernel: Array
    """V, shape (k, k, channels, channels); W = s V / ||V||_2 as a 'SAME' convolution on (H, W, channels)."""
    scale: Array
    """a, scalar; s = (1 - eps) sigmoid(a)."""
    injection: Array
    """U, shape (k, k, in_channels, channels)."""
    bias: Array
    """b, shape (channels,)."""
    readout: Array
    """Classifier on the pooled, flattened z*: shape (classes, channels * (H/pool) * (W/pool))."""
    readout_bias: Array
    """Classifier bias, shape (classes,)."""


def opteq_conv(*, image_shape: tuple[int, int], in_channels: int, channels: int, classes: int, kernel_size: int = 3,
               pool: int = 4, **options: Any) -> EquilibriumModel:
    """Convolutional OptEq: z* = prox_f(W^T W z* - grad h(z*) + U * x + b), W a 'SAME' convolution.

    W^T W z is ``conv_transpose(conv(z, W), W)`` (the exact adjoint). W = s V / B(V) with B(V) >= ||V||_2 the
    per-frequency bound of :func:`jeq.equilibrium.conv.conv_norm_bound`, so ||W||_2 <= s <= 1 - eps. x: one image
    (H, W, in_channels); z: (H, W, channels); logits from ``pool`` x ``pool`` average pooling of z* and a dense layer.
    ``**options``: as in :func:`opteq`.

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq import equilibrium as eq
    >>> model = eq.opteq_conv(image_shape=(4, 4), in_channels=1, channels=2, classes=3, pool=2, tol=1e-5,
    ...                       solver="picard")
    >>> params = model.init(jax.random.key(0))
    >>> x = jnp.linspace(0.0, 1.0, 16).reshape(4, 4, 1)
    >>> z, stats = jax.jit(model.equilibrium)(params, x)
    >>> z.shape, bool(stats.converged), model.readout(params, z).shape
    ((4, 4, 2), True, (3,))
    >>> fz = jax.jit(lambda p, z, x: model.layer(z, model.prepare(p), model.inject(p, x)))(params, z, x)
    >>> bool(jnp.allclose(z, fz, atol=1e-4))
    True
    """
    where = "jeq.equilibrium.opteq_conv"
    shape = core.conv_shape(where, image_shape=image_shape, in_channels=in_channels, channels=channels,
                            classes=classes, kernel_size=kernel_size, pool=pool)
    config, settings = OptEqOptions.from_keywords(where, options)
    validate.one_of(where, "norm", config.norm, ("svd",))  # the conv norm is the certified per-frequency bound

    def init(key):
        k, dtype = shape.kernel_size, config.dtype
        fan = k * k
        kernel, injection, readout = core.random_blocks(key, [
            ((k, k, shape.channels, shape.channels), 1 / np.sqrt(fan * shape.channels)),
            ((k, k, shape.in_channels, shape.channels), np.sqrt(2.0 / (fan * shape.in_channels))),
            ((shape.classes, shape.pooled), 1 / np.sqrt(shape.pooled))], dtype)
        return OptEqConvParams(
            kernel=kernel, scale=jnp.asarray(config.init_scale, dtype), injection=injection,
            bias=jnp.zeros((shape.channels,), dtype), readout=readout, readout_bias=jnp.zeros((shape.classes,), dtype),
        )

    def prepare(params):
        bound = convlib.conv_norm_bound(params.kernel, (shape.height, shape.width))
        return core.spectral_scale(params.scale, config.margin) * params.kernel / bound

    def gram(kernel, z):
        return convlib.conv_transpose(convlib.conv(z, kernel), kernel, shape.z_shape)

    inject = core.conv_injection(where, shape)

    def layer(z, kernel, c):
        return opteq_map(z, c, gram=lambda v: gram(kernel, v), activation=config.activation, prior=config.prior)

    def objective(params, z, x):
        kernel = prepare(params)
        return hidden_objective(z, inject(params, x), weight=lambda v: convlib.conv(v, kernel),
                                activation=config.activation, prior=config.prior)

    return core.assemble(name="opteq-conv", init=init, prepare=prepare, inject=inject, layer=layer,
                         readout=core.pooled_readout(shape.pool), settings=settings, objective=objective)
