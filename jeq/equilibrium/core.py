"""What every equilibrium model shares: the assembly of ``equilibrium``/``apply`` from a fixed-point map, and the
norm constraint ``||W||_2 <= 1 - eps`` (spec opteq.md section 4).

An equilibrium model is four pure pieces (one example; callers vmap):

    prepared = prepare(params)           batch-independent work: constrained weights, W^T W, inverses
    c        = inject(params, x)         input injection (e.g. U x + b), computed once per example
    s*       = layer(s*, prepared, c)    the fixed-point map, solved by jeq.fixedpoint.solve
    logits   = readout(params, z*),      z* = hidden(s*, prepared, c)  (z* = s* except for Peaceman-Rachford)

:func:`assemble` turns them into an :class:`EquilibriumModel` whose ``equilibrium(params, x)`` and
``apply(params, x)`` share the same solver settings. Under ``jax.vmap`` over x, ``prepare`` runs once per batch
(it does not depend on x) and the solver runs per example until every example has stopped.

What the factories share is built here once:

* keyword options: a factory takes its sizes by name and everything else as ``**options``, spread by
  :func:`split_options` over option groups (NamedTuples of defaults, one docstring per field): the family's own
  (e.g. ``OptEqOptions``) and the solve settings (:class:`SolveSettings`, with the family's defaults, e.g.
  ``OPTEQ_SETTINGS``), checked by :func:`solve_settings`; :func:`check_activation` checks the activation;
* sizes: :func:`layer_sizes` (dense) and :func:`conv_shape` (one image, a single convolution);
* the input injection c = U x + b (:func:`linear_injection`, :func:`conv_injection`, which check the example's
  shape with :func:`check_input`) and the readouts (:func:`linear_readout`, :func:`pooled_readout`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jeq import fixedpoint as fp
from jeq import prox as proxlib
from jeq import validate
from jeq.equilibrium import conv as convlib

__all__ = [
    "ConvShape",
    "EquilibriumModel",
    "Output",
    "SolveSettings",
    "assemble",
    "check_activation",
    "check_input",
    "conv_injection",
    "conv_shape",
    "layer_sizes",
    "linear_injection",
    "linear_readout",
    "parameter_count",
    "pooled_readout",
    "random_blocks",
    "solve_settings",
    "spectral_scale",
    "split_options",
]

Array = jax.Array


class SolveSettings(NamedTuple):
    """Forward/backward settings of a model's fixed-point solve (see :func:`jeq.fixedpoint.solve`): stop when
    ||f(s) - s|| <= tol + rtol ||f(s)|| or after maxiter updates.

    >>> from jeq import equilibrium as eq
    >>> eq.SolveSettings._fields
    ('solver', 'tol', 'rtol', 'maxiter', 'backward', 'axis_name')
    >>> eq.OPTEQ_SETTINGS._replace(tol=1e-5)
    SolveSettings(solver='anderson', tol=1e-05, rtol=0.0, maxiter=50, backward='implicit', axis_name=None)
    """

    solver: Any
    """A ``jeq.fixedpoint.SOLVERS`` name or a configured FixedPointSolver."""
    tol: float
    """Absolute tolerance on ||f(s) - s||."""
    rtol: float
    """Relative tolerance (to ||f(s)||)."""
    maxiter: int
    """Maximum solver updates."""
    backward: Any
    """``"implicit"``, ``"phantom"``, ``"unroll"`` or a jeq.fixedpoint.implicit/phantom/unroll configuration (None
    in a family's defaults: the family's own adjoint solve, e.g. MON's by its splitting)."""
    axis_name: str | None = None
    """Batch-level stopping over this vmap axis name (``jeq.equilibrium.train`` vmaps with ``"batch"``), or None
    for per-example stopping. See ``jeq.fixedpoint.solve``."""


class Output(NamedTuple):
    """What ``model.apply`` returns for one example: logits = readout(params, z*) with z* = layer(z*, ...).

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq import equilibrium as eq
    >>> model = eq.deq(features=4, hidden=3, classes=2)
    >>> params = jax.eval_shape(model.init, jax.random.key(0))  # shapes only: nothing is computed
    >>> out = jax.eval_shape(lambda p, x: model.apply(p, x, key=jax.random.key(1)), params, jnp.ones(4))
    >>> jax.tree.map(lambda leaf: leaf.shape, out)
    Output(logits=(2,), stats=Stats(num_steps=(), residual=(), relative_residual=(), converged=()), jacobian=())
    """

    logits: Array
    """Class scores, shape (classes,)."""
    stats: fp.Stats
    """Forward-solve diagnostics (num_steps, residual, relative_residual, converged)."""
    jacobian: Array
    """Hutchinson estimate of ||d layer / d s||_F^2 / dim at s* (0 when ``apply`` got no key)."""


class EquilibriumModel(NamedTuple):
    """An implicit classifier as pure functions (one example; callers vmap over the batch):
    s* = layer(s*, prepare(params), inject(params, x)), logits = readout(params, hidden(s*, prepared, c)).

    >>> from jeq import equilibrium as eq
    >>> model = eq.opteq(features=4, hidden=3, classes=2)
    >>> model.name, model.settings.solver
    ('opteq', 'anderson')
    >>> model._fields
    ('name', 'init', 'prepare', 'inject', 'layer', 'hidden', 'readout', 'initial_state', 'equilibrium', 'apply',
     'objective', 'settings')
    """

    name: str
    """Model family and variant, e.g. ``"opteq"``, ``"mon-pr"``."""
    init: Callable[[Array], Any]
    """``init(key) -> params`` (a NamedTuple of arrays)."""
    prepare: Callable[[Any], Any]
    """``prepare(params) -> prepared``: constrained weights etc., independent of the input."""
    inject: Callable[[Any, Array], Any]
    """``inject(params, x) -> c``: input injection for one example."""
    layer: Callable[[Any, Any, Any], Any]
    """``layer(s, prepared, c) -> s``: the fixed-point map (state first, as in jeq.fixedpoint.solve)."""
    hidden: Callable[[Any, Any, Any], Any]
    """``hidden(s, prepared, c) -> z``: the equilibrium features from the solver state."""
    readout: Callable[[Any, Any], Array]
    """``readout(params, z) -> logits``."""
    initial_state: Callable[[Any], Any]
    """``initial_state(c) -> s0`` (zeros)."""
    equilibrium: Callable[..., fp.Solution]
    """``equilibrium(params, x, *, solver=None, tol=None, rtol=None, maxiter=None, backward=None, axis_name=None)
    -> Solution(z*, stats)``; keywords override the model's settings."""
    apply: Callable[..., Output]
    """``apply(params, x, *, key=None) -> Output``; with a key, also a Jacobian-penalty estimate."""
    objective: Callable[[Any, Any, Array], Array] | None
    """``objective(params, z, x)``: the hidden convex objective G (OptEq family), None otherwise."""
    settings: SolveSettings
    """Default solve settings."""


def assemble(
    *,
    name: str,
    init: Callable[[Array], Any],
    prepare: Callable[[Any], Any],
    inject: Callable[[Any, Array], Any],
    layer: Callable[[Any, Any, Any], Any],
    readout: Callable[[Any, Any], Array],
    settings: SolveSettings,
    hidden: Callable[[Any, Any, Any], Any] | None = None,
    initial_state: Callable[[Any], Any] | None = None,
    objective: Callable[[Any, Any, Array], Array] | None = None,
) -> EquilibriumModel:
    """Build an :class:`EquilibriumModel` from its pieces: s* = layer(s*, prepare(params), inject(params, x)).

    The pieces' signatures are those of the :class:`EquilibriumModel` fields of the same names; ``hidden`` defaults
    to the identity on s*, ``initial_state`` to zeros shaped like c.

    A one-parameter model z* = tanh(w z* + x) with readout (z*, -z*):

    >>> import jax.numpy as jnp
    >>> from jeq import equilibrium as eq
    >>> model = eq.assemble(
    ...     name="toy", init=lambda key: {"w": jnp.asarray(0.5)}, prepare=lambda params: params["w"],
    ...     inject=lambda params, x: x, layer=lambda z, w, c: jnp.tanh(w * z + c),
    ...     readout=lambda params, z: jnp.stack([z.sum(), -z.sum()]),
    ...     settings=eq.SolveSettings(solver="picard", tol=1e-6, rtol=0.0, maxiter=100, backward="implicit"))
    >>> z, stats = model.equilibrium({"w": jnp.asarray(0.5)}, jnp.array([0.3, -1.0]))
    >>> bool(stats.converged), bool(jnp.allclose(z, jnp.tanh(0.5 * z + jnp.array([0.3, -1.0])), atol=1e-5))
    (True, True)
    """
    fp.check_settings(solver=settings.solver, tol=settings.tol, rtol=settings.rtol, maxiter=settings.maxiter,
                      backward=settings.backward, where="jeq.equilibrium.assemble")
    hidden = hidden or (lambda s, prepared, c: s)
    initial_state = initial_state or (lambda c: jax.tree.map(jnp.zeros_like, c))

    def _solve(params, x, overrides):
        config = settings._replace(**{k: v for k, v in overrides.items() if v is not None})
        prepared = prepare(params)
        c = inject(params, x)
        solution = fp.solve(
            layer, initial_state(c), prepared, c, solver=config.solver, tol=config.tol, rtol=config.rtol,
            maxiter=config.maxiter, backward=config.backward, axis_name=config.axis_name,
        )
        return prepared, c, solution

    def equilibrium(params, x, *, solver=None, tol=None, rtol=None, maxiter=None, backward=None, axis_name=None):
        overrides = dict(solver=solver, tol=tol, rtol=rtol, maxiter=maxiter, backward=backward, axis_name=axis_name)
        prepared, c, solution = _solve(params, x, overrides)
        return fp.Solution(hidden(solution.value, prepared, c), solution.stats)

    def apply(params, x, *, key=None):
        prepared, c, solution = _solve(params, x, {})
        logits = readout(params, hidden(solution.value, prepared, c))
        if key is None:
            jacobian = jnp.zeros((), logits.dtype)
        else:
            jacobian = fp.jacobian_penalty(layer, solution.value, prepared, c, key=key)
        return Output(logits, solution.stats, jacobian)

    return EquilibriumModel(
        name=name, init=init, prepare=prepare, inject=inject, layer=layer, hidden=hidden, readout=readout,
        initial_state=initial_state, equilibrium=equilibrium, apply=apply, objective=objective, settings=settings,
    )


# ---------------------------------------------------------------------------------------------- factory options
def split_options(where: str, keywords: Mapping[str, Any], *groups: NamedTuple) -> tuple[Any, ...]:
    """Spread a factory's keyword options over its option ``groups`` (NamedTuples of defaults), in order.

    Each keyword replaces the default of the group with a field of that name; a keyword that no group has fails with
    the house message, which lists the allowed ones. Returns the groups with the keywords applied.
    """
    allowed = [field for group in groups for field in group._fields]
    for name, value in keywords.items():
        if name not in allowed:
            validate.fail(where, name, value, f"unknown keyword: must be one of {sorted(allowed)}")
    return tuple(group._replace(**{k: v for k, v in keywords.items() if k in group._fields}) for group in groups)


def solve_settings(where: str, settings: SolveSettings) -> SolveSettings:
    """``settings`` after the eager checks of :func:`jeq.fixedpoint.check_settings` (errors name ``where``).

    A ``backward`` of None (the MON and DEQ defaults) is checked as ``"implicit"``: the family resolves it.
    """
    fp.check_settings(solver=settings.solver, tol=settings.tol, rtol=settings.rtol, maxiter=settings.maxiter,
                      backward="implicit" if settings.backward is None else settings.backward, where=where)
    if settings.axis_name is not None and not isinstance(settings.axis_name, str):
        validate.fail(where, "axis_name", settings.axis_name, "must be a str (a jax.vmap axis name) or None")
    return settings


def check_activation(where: str, activation: proxlib.Prox | None) -> proxlib.Prox:
    """``activation`` when it is a :class:`jeq.prox.Prox`; None gives ReLU (``jeq.prox.relu()``)."""
    if activation is None:
        return proxlib.relu()
    if not isinstance(activation, proxlib.Prox):
        validate.fail(where, "activation", activation, "must be a jeq.prox.Prox (e.g. jeq.prox.relu()); use "
                      "jeq.prox.from_activation to check and wrap another function")
    return activation


# --------------------------------------------------------------------------------------------- sizes and shapes
def layer_sizes(where: str, **sizes: Any) -> tuple[int, ...]:
    """The named sizes (e.g. ``features=784, hidden=87, classes=10``) as ints, each checked to be >= 1."""
    return tuple(validate.integer(where, name, value, low=1) for name, value in sizes.items())


class ConvShape(NamedTuple):
    """Sizes of a single-convolution classifier: one image (H, W, in_channels) -> z (H, W, channels) -> logits."""

    height: int
    """H, image rows."""
    width: int
    """W, image columns."""
    in_channels: int
    """Image channels."""
    channels: int
    """Channels of z (and of the square convolution kernels)."""
    classes: int
    """Number of classes."""
    kernel_size: int
    """k, the kernels' spatial size (k x k)."""
    pool: int
    """Average-pooling window of the readout (pool x pool, non-overlapping); divides H and W."""

    @property
    def x_shape(self) -> tuple[int, int, int]:
        """Shape of one input image, (H, W, in_channels)."""
        return (self.height, self.width, self.in_channels)

    @property
    def z_shape(self) -> tuple[int, int, int]:
        """Shape of the equilibrium z, (H, W, channels)."""
        return (self.height, self.width, self.channels)

    @property
    def pooled(self) -> int:
        """Features the readout sees: channels * (H / pool) * (W / pool)."""
        return self.channels * (self.height // self.pool) * (self.width // self.pool)


def conv_shape(where: str, *, image_shape: Any, in_channels: Any, channels: Any, classes: Any, kernel_size: Any,
               pool: Any) -> ConvShape:
    """A checked :class:`ConvShape`: every size an int >= 1, ``image_shape`` a pair and ``pool`` dividing it."""
    if not isinstance(image_shape, (tuple, list)) or len(image_shape) != 2:
        validate.fail(where, "image_shape", image_shape, "must be a pair (H, W) of ints >= 1")
    height, width = (validate.integer(where, "image_shape", v, low=1) for v in image_shape)
    shape = ConvShape(height, width, *layer_sizes(where, in_channels=in_channels, channels=channels, classes=classes,
                                                  kernel_size=kernel_size, pool=pool))
    if height % shape.pool or width % shape.pool:
        validate.fail(where, "pool", pool, f"must divide image_shape {(height, width)}")
    return shape


def check_input(where: str, x: Any, shape: tuple[int, ...]) -> None:
    """One example of ``shape`` (checked on the static shape, also while tracing); the error names both shapes."""
    try:
        validate.array(where, "x", x, shape=shape)
    except validate.ArgumentError as error:
        raise validate.ArgumentError(f"{error} (one example; vmap over the batch)") from None


# ------------------------------------------------------------------------------------- injections and readouts
def linear_injection(where: str, features: int) -> Callable[[Any, Array], Array]:
    """``inject(params, x) = U x + b`` (``params.injection``, ``params.bias``) for one example x of (features,)."""

    def inject(params, x):
        check_input(where, x, (features,))
        return params.injection @ x + params.bias

    return inject


def conv_injection(where: str, shape: ConvShape, *, circular: bool = False) -> Callable[[Any, Array], Array]:
    """``inject(params, x) = U * x + b``: the convolution ``params.injection`` (k, k, in_channels, channels) of one
    image x of ``shape.x_shape`` ('SAME', or circular), plus ``params.bias`` per channel."""

    def inject(params, x):
        check_input(where, x, shape.x_shape)
        return convlib.conv(x, params.injection, circular=circular) + params.bias

    return inject


def linear_readout(params: Any, z: Array) -> Array:
    """logits = W_c z + b_c (``params.readout``, ``params.readout_bias``)."""
    return params.readout @ z + params.readout_bias


def pooled_readout(pool: int) -> Callable[[Any, Array], Array]:
    """``readout(params, z)`` = W_c vec(avg_pool(z)) + b_c for z of shape (H, W, C), pool x pool windows."""

    def readout(params, z):
        return linear_readout(params, convlib.avg_pool(z, pool).reshape(-1))

    return readout


# ----------------------------------------------------------------------------------------------------- weights
def spectral_scale(raw_scale: Array, margin: float) -> Array:
    """s = (1 - eps) sigmoid(a): the spectral norm of W = s V / ||V||_2, always in (0, 1 - eps).

    ``a = +inf`` with eps = 0 gives s = 1 exactly (the non-strict case ||W||_2 = 1 of spec section 6.2).

    >>> import jax.numpy as jnp
    >>> from jeq import equilibrium as eq
    >>> [round(float(eq.spectral_scale(jnp.asarray(a), 0.05)), 4) for a in (-10.0, 0.0, 10.0)]
    [0.0, 0.475, 0.95]
    >>> float(eq.spectral_scale(jnp.asarray(jnp.inf), 0.0))
    1.0
    """
    return (1.0 - margin) * jax.nn.sigmoid(raw_scale)


def random_blocks(
    key: Array, blocks: list[tuple[tuple[int, ...], float]], dtype, *, distribution: str = "normal"
) -> list[Array]:
    """Initial weights for ``blocks = [(shape, scale), ...]`` from ONE draw of the PRNG, cut into blocks.

    ``"normal"``: scale * N(0, 1); ``"uniform"``: U(-scale, scale). One draw instead of one per block because every
    threefry call is its own (slow, about a second on CPU) XLA compilation.

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq import equilibrium as eq
    >>> u, b = eq.random_blocks(jax.random.key(0), [((2, 3), 0.5), ((4,), 2.0)], jnp.float32, distribution="uniform")
    >>> u.shape, b.shape, bool(jnp.all(jnp.abs(u) <= 0.5)), bool(jnp.all(jnp.abs(b) <= 2.0))
    ((2, 3), (4,), True, True)
    """
    validate.one_of("jeq.equilibrium.random_blocks", "distribution", distribution, ("normal", "uniform"))
    sizes = [int(np.prod(shape)) for shape, _ in blocks]
    if distribution == "normal":
        flat = jax.random.normal(key, (sum(sizes),), dtype)
    else:
        flat = jax.random.uniform(key, (sum(sizes),), dtype, -1.0, 1.0)
    out, offset = [], 0
    for (shape, scale), size in zip(blocks, sizes):
        out.append(scale * flat[offset:offset + size].reshape(shape))
        offset += size
    return out


def parameter_count(params: Any) -> int:
    """Number of scalars in a params pytree, sum over leaves of prod(leaf.shape) (works on ``jax.eval_shape``
    outputs too).

    MNIST FC MON with 87 hidden units: 2 * 87^2 + 87 * 784 + 87 + 10 * 87 + 10 = 84,313 (the official count):

    >>> import jax
    >>> from jeq import equilibrium as eq
    >>> model = eq.mon(features=784, hidden=87, classes=10)
    >>> eq.parameter_count(jax.eval_shape(model.init, jax.random.key(0)))
    84313
    """
    return int(sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(params)))
