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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jeq import fixedpoint as fp

__all__ = [
    "EquilibriumModel",
    "Output",
    "SolveSettings",
    "assemble",
    "check_margin",
    "parameter_count",
    "random_blocks",
    "spectral_scale",
]

Array = jax.Array


class SolveSettings(NamedTuple):
    """Forward/backward settings of a model's fixed-point solve (see :func:`jeq.fixedpoint.solve`)."""

    solver: Any
    """A ``jeq.fixedpoint.SOLVERS`` name or a configured FixedPointSolver."""
    tol: float
    """Absolute tolerance on ||f(s) - s||."""
    rtol: float
    """Relative tolerance (to ||f(s)||)."""
    maxiter: int
    """Maximum solver updates."""
    backward: Any
    """``"implicit"``, ``"phantom"``, ``"unroll"`` or a jeq.fixedpoint.implicit/phantom/unroll configuration."""
    axis_name: str | None = None
    """Batch-level stopping over this vmap axis name (``jeq.equilibrium.train`` vmaps with ``"batch"``), or None
    for per-example stopping. See ``jeq.fixedpoint.solve``."""


class Output(NamedTuple):
    """What ``model.apply`` returns for one example."""

    logits: Array
    """Class scores, shape (classes,)."""
    stats: fp.Stats
    """Forward-solve diagnostics (num_steps, residual, relative_residual, converged)."""
    jacobian: Array
    """Hutchinson estimate of ||d layer / d s||_F^2 / dim at s* (0 when ``apply`` got no key)."""


class EquilibriumModel(NamedTuple):
    """An implicit classifier as pure functions (one example; callers vmap over the batch)."""

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
    init: Callable,
    prepare: Callable,
    inject: Callable,
    layer: Callable,
    readout: Callable,
    settings: SolveSettings,
    hidden: Callable | None = None,
    initial_state: Callable | None = None,
    objective: Callable | None = None,
) -> EquilibriumModel:
    """Build an :class:`EquilibriumModel` from its pieces: s* = layer(s*, prepare(params), inject(params, x))."""
    fp.check_settings(solver=settings.solver, tol=settings.tol, rtol=settings.rtol, maxiter=settings.maxiter,
                      backward=settings.backward, caller=name)
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


def check_margin(fn: str, margin) -> float:
    """Validate eps in ||W||_2 <= 1 - eps: a float in [0, 1)."""
    if isinstance(margin, bool) or not isinstance(margin, (int, float, np.number)) or not 0.0 <= margin < 1.0:
        raise ValueError(f"jeq.equilibrium.{fn}(margin={margin!r}): must be in [0, 1)")
    return float(margin)


def spectral_scale(raw_scale: Array, margin: float) -> Array:
    """s = (1 - eps) sigmoid(a): the spectral norm of W = s V / ||V||_2, always in (0, 1 - eps).

    ``a = +inf`` with eps = 0 gives s = 1 exactly (the non-strict case ||W||_2 = 1 of spec section 6.2).
    """
    return (1.0 - margin) * jax.nn.sigmoid(raw_scale)


def random_blocks(
    key: Array, blocks: list[tuple[tuple[int, ...], float]], dtype, *, distribution: str = "normal"
) -> list[Array]:
    """Initial weights for ``blocks = [(shape, scale), ...]`` from ONE draw of the PRNG, cut into blocks.

    ``"normal"``: scale * N(0, 1); ``"uniform"``: U(-scale, scale). One draw instead of one per block because every
    threefry call is its own (slow, about a second on CPU) XLA compilation.
    """
    sizes = [int(np.prod(shape)) for shape, _ in blocks]
    if distribution == "normal":
        flat = jax.random.normal(key, (sum(sizes),), dtype)
    elif distribution == "uniform":
        flat = jax.random.uniform(key, (sum(sizes),), dtype, -1.0, 1.0)
    else:
        raise ValueError(f"jeq.equilibrium.random_blocks(distribution={distribution!r}): must be normal or uniform")
    out, offset = [], 0
    for (shape, scale), size in zip(blocks, sizes):
        out.append(scale * flat[offset:offset + size].reshape(shape))
        offset += size
    return out


def parameter_count(params: Any) -> int:
    """Number of scalars in a params pytree (works on ``jax.eval_shape`` outputs too)."""
    return int(sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(params)))
