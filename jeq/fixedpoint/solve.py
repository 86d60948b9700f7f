"""Solve z = f(z, *args) and differentiate through the solution (spec opteq.md sections 7, 9, 10).

Forward: any :data:`jeq.fixedpoint.SOLVERS` entry, stopped when

    ||f(z) - z|| <= tol + rtol * ||f(z)||        (both atol and rtol honoured; torchdeq #12)

or after ``maxiter`` updates (then ``converged=False`` with the residual reported). Norms are Euclidean over the
whole flattened pytree z; under ``jax.vmap`` they are per example and the batch runs until every example stops.

Backward (``backward=``):

* ``implicit(...)`` (default): implicit function theorem through jaxopt's ``custom_fixed_point``. At z*, with
  J = d f / d z, the cotangent g of z* is mapped to args by solving the adjoint equation

      u = J^T u + g,      d loss / d args = u^T d f(z*, args) / d args,

  with its own solver, tol, rtol and maxiter (separate backward settings). An ``implicit()`` whose tol/rtol are
  left at None (the default, also ``backward="implicit"``) follows the forward solve: adjoint tol =
  min(forward tol, 1e-6) (TorchDEQ's backward tolerance, never looser than the forward's) and adjoint rtol = forward
  rtol, so a forward solved to 1e-10 gets an adjoint solved to 1e-10 (a fixed rtol of 1e-4 used to dominate and
  leave gradients ~1e-4 relative off a tight solve). The forward solve is a
  ``lax.while_loop``: memory is the solver's history, independent of ``maxiter`` (locuslab/deq #28).
* ``phantom(steps=k, damping=tau)``: Geng et al. (NeurIPS 2021): from z* (no gradient), unroll k damped steps
  z <- tau f(z) + (1 - tau) z and backpropagate through them. The returned value is the last of these steps.
* ``unroll()``: backpropagate through all ``maxiter`` solver steps (a ``lax.scan``; the iterate freezes once
  converged). Memory grows linearly with ``maxiter``. The exact derivative of the truncated solver.

Halpern (``solver=halpern(anchor=u)``) selects the fixed point nearest u when the fixed points form a set
(||W||_2 = 1, spec section 6.2). There I - J^T is singular and the implicit adjoint has no (unique) solution, so
differentiating a Halpern solve with the implicit backward warns (``UserWarning``, when the backward is traced) and
points to ``phantom``/``unroll``, the derivatives of the iterations actually run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import warnings

import jax
import jax.numpy as jnp
import jaxopt
from jax.flatten_util import ravel_pytree

from jeq import validate
from jeq.fixedpoint.solvers import FixedPointSolver, flat_map, get_solver

__all__ = [
    "ADJOINT_TOL", "SINGULAR_ADJOINT", "Implicit", "Phantom", "Solution", "Stats", "Unroll", "adjoint_solve",
    "check_settings",
    "follow_forward", "implicit", "phantom", "solve", "unroll",
]

Array = jax.Array
LINEAR_SOLVERS = ("gmres", "bicgstab")


class Stats(NamedTuple):
    """Diagnostics of one solve (per example under vmap): converged iff ||f(z) - z|| <= tol + rtol ||f(z)||.

    >>> import jax.numpy as jnp
    >>> from jeq import fixedpoint as fp
    >>> stats = fp.solve(jnp.cos, jnp.zeros(3), solver="picard", tol=1e-4).stats
    >>> stats._fields
    ('num_steps', 'residual', 'relative_residual', 'converged')
    >>> bool(stats.converged), bool(stats.residual <= 1e-4), int(stats.num_steps) <= 50
    (True, True, True)
    """

    num_steps: Array
    """Solver updates performed (int32); each costs one evaluation of f."""
    residual: Array
    """Absolute residual ||f(z) - z|| at the returned z (the phantom value excepted: there, at z*)."""
    relative_residual: Array
    """||f(z) - z|| / ||f(z)|| (the DEQ monitor: values above ~0.05 signal trouble, locuslab/deq #20)."""
    converged: Array
    """True iff residual <= tol + rtol * ||f(z)|| and it is finite; False when maxiter was reached or on NaN."""


class Solution(NamedTuple):
    """The result of :func:`solve`: ``value`` = z* with z* = f(z*, *args), and the forward ``stats``.

    >>> import jax.numpy as jnp
    >>> from jeq import fixedpoint as fp
    >>> solution = fp.solve(jnp.cos, jnp.zeros(2), solver="picard", tol=1e-5)  # z* = cos z*, the Dottie number
    >>> solution._fields
    ('value', 'stats')
    >>> [round(float(v), 4) for v in solution.value], bool(solution.stats.converged)
    ([0.7391, 0.7391], True)
    """

    value: Any
    """The fixed point z*, a pytree shaped like z0."""
    stats: Stats
    """Forward-solve diagnostics."""


class Implicit(NamedTuple):
    """Implicit-function-theorem backward pass (see :func:`implicit`): solve u = J^T u + g at z*.

    >>> from jeq import fixedpoint as fp
    >>> fp.implicit(solver="picard", maxiter=20)
    Implicit(solver='picard', tol=None, rtol=None, maxiter=20)
    """

    solver: FixedPointSolver | str
    """Solver for the adjoint u = J^T u + g: a FixedPointSolver, a SOLVERS name, "gmres" or "bicgstab"."""
    tol: float | None
    """Absolute tolerance of the adjoint solve; None: min(forward tol, 1e-6) (resolved by :func:`solve`)."""
    rtol: float | None
    """Relative tolerance (to ||J^T u + g||) of the adjoint solve; None: the forward's rtol."""
    maxiter: int
    """Maximum adjoint iterations."""


class Phantom(NamedTuple):
    """Phantom-gradient backward pass (see :func:`phantom`): k steps z <- tau f(z) + (1 - tau) z from z*.

    >>> from jeq import fixedpoint as fp
    >>> fp.phantom(steps=3, damping=0.5)
    Phantom(steps=3, damping=0.5)
    """

    steps: int
    """k, damped steps unrolled from z*."""
    damping: float
    """tau in z <- tau f(z) + (1 - tau) z."""


class Unroll(NamedTuple):
    """Backpropagation through every forward step z_{k+1} = update(z_k) (see :func:`unroll`); no fields.

    >>> from jeq import fixedpoint as fp
    >>> fp.unroll()
    Unroll()
    """


ADJOINT_TOL = 1e-6
"""Cap on the adjoint's absolute tolerance when it follows the forward's (TorchDEQ 0.1.0's backward ``b_tol``)."""


def implicit(
    *, solver: FixedPointSolver | str = "anderson", tol: float | None = None, rtol: float | None = None,
    maxiter: int = 100,
) -> Implicit:
    """Implicit differentiation: solve u = J^T u + g at z*, then d loss/d args = u^T d f/d args (IFT).

    The adjoint stops when ||J^T u + g - u|| <= tol + rtol ||J^T u + g||. Default (None): follow the forward solve,
    tol = min(forward tol, 1e-6) and rtol = forward rtol (see :func:`solve`), so the gradient is as accurate as the
    forward asked for; give tol/rtol to decouple them. The adjoint map is linear with the same spectrum as J, so any
    solver that converged forward converges here.

    For f(z, a) = z / 2 + a, z* = 2 a, so d sum(z*) / d a = (1 - 1/2)^{-1} = 2 per entry:

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq import fixedpoint as fp
    >>> def z_star(a):
    ...     backward = fp.implicit(solver="picard")  # the adjoint solve's own solver
    ...     return fp.solve(lambda z, a: 0.5 * z + a, jnp.zeros(2), a, solver="picard", backward=backward).value
    >>> [round(float(g), 4) for g in jax.jit(jax.grad(lambda a: z_star(a).sum()))(jnp.ones(2))]
    [2.0, 2.0]
    """
    where = "jeq.fixedpoint.implicit"
    maxiter = validate.integer(where, "maxiter", maxiter, low=1)
    tol = None if tol is None else validate.positive(where, "tol", tol)
    rtol = None if rtol is None else validate.nonnegative(where, "rtol", rtol)
    if not (isinstance(solver, FixedPointSolver) or solver in LINEAR_SOLVERS):
        get_solver(solver, where=where)
    return Implicit(solver, tol, rtol, maxiter)


def phantom(*, steps: int = 5, damping: float = 0.5) -> Phantom:
    """Phantom gradient: backpropagate through ``steps`` damped steps z <- tau f(z) + (1 - tau) z from z*.

    As steps -> inf (and tau in (0, 1]) this tends to the implicit gradient for a contractive f.

    For f(z, a) = z / 2 + a the k damped steps give d z_k / d a = 2 (1 - (1 - tau/2)^k), here 2 (1 - 2^-5) with
    tau = 1 (the implicit gradient is 2):

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq import fixedpoint as fp
    >>> def z_k(a):
    ...     back = fp.phantom(steps=5, damping=1.0)
    ...     return fp.solve(lambda z, a: 0.5 * z + a, jnp.zeros(1), a, backward=back).value.sum()
    >>> round(float(jax.jit(jax.grad(z_k))(1.0)), 4)
    1.9375
    """
    where = "jeq.fixedpoint.phantom"
    return Phantom(validate.integer(where, "steps", steps, low=1),
                   validate.real(where, "damping", damping, low=0, high=1, low_open=True))


def unroll() -> Unroll:
    """Backpropagate through all solver steps z_{k+1} = update(z_k), k < maxiter (memory grows with maxiter).

    The exact derivative of the truncated solver: Picard on f(z, a) = z / 2 + a from 0 gives z_n = 2 a (1 - 2^-n),
    whose derivative 2 (1 - 2^-n) is the implicit one, 2, to within the tolerance:

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq import fixedpoint as fp
    >>> def z_n(a):
    ...     f = lambda z, a: 0.5 * z + a
    ...     return fp.solve(f, jnp.zeros(1), a, solver="picard", tol=1e-6, backward=fp.unroll()).value.sum()
    >>> round(float(jax.jit(jax.grad(z_n))(1.0)), 4)
    2.0
    """
    return Unroll()


_BACKWARDS = {"implicit": implicit, "phantom": phantom, "unroll": unroll}
"""The backward passes by name: ``solve(..., backward="phantom")`` uses the factory's defaults."""


def _stopping(where: str, tol, rtol, maxiter) -> tuple[float, float, int]:
    """The stopping rule ||f(z) - z|| <= tol + rtol ||f(z)|| within maxiter steps: tol > 0, rtol >= 0, maxiter >= 1."""
    return (validate.positive(where, "tol", tol), validate.nonnegative(where, "rtol", rtol),
            validate.integer(where, "maxiter", maxiter, low=1))


def check_settings(
    *, solver, tol, rtol, maxiter, backward, where: str = "jeq.fixedpoint.solve"
) -> tuple[FixedPointSolver, Implicit | Phantom | Unroll]:
    """Validate :func:`solve` settings eagerly; return the resolved solver and backward configuration.

    ``where`` is the public call that errors name (``jeq.<pkg>.<fn>``), e.g. a model factory that takes these settings.
    The stopping rule checked is ||f(z) - z|| <= tol + rtol ||f(z)|| within maxiter steps (tol > 0, rtol >= 0).

    >>> from jeq import fixedpoint as fp
    >>> solver, backward = fp.check_settings(solver="picard", tol=1e-5, rtol=0.0, maxiter=10, backward="implicit")
    >>> solver.name, backward  # the adjoint follows the forward: tol = min(1e-5, 1e-6)
    ('picard', Implicit(solver='anderson', tol=1e-06, rtol=0.0, maxiter=100))
    >>> fp.check_settings(solver="picard", tol=-1.0, rtol=0.0, maxiter=10, backward="implicit", where="jeq.my.fn")
    Traceback (most recent call last):
    ...
    jeq.validate.ArgumentError: jeq.my.fn(tol=-1.0): must be ...
    """
    solver = get_solver(solver, where=where)
    tol, rtol, maxiter = _stopping(where, tol, rtol, maxiter)
    if isinstance(backward, str) and backward in _BACKWARDS:
        backward = _BACKWARDS[backward]()
    if not isinstance(backward, (Implicit, Phantom, Unroll)):
        validate.fail(where, "backward", backward,
                      f"must be one of {sorted(_BACKWARDS)} or implicit(...), phantom(...), unroll()")
    if isinstance(backward, Implicit):
        backward = follow_forward(backward, tol=tol, rtol=rtol)
    return solver, backward


def follow_forward(backward: Implicit, *, tol: float, rtol: float) -> Implicit:
    """The adjoint settings with tol/rtol left at None resolved from the forward's: min(tol, 1e-6) and rtol.

    >>> from jeq import fixedpoint as fp
    >>> fp.follow_forward(fp.implicit(), tol=1e-3, rtol=1e-2)
    Implicit(solver='anderson', tol=1e-06, rtol=0.01, maxiter=100)
    >>> fp.follow_forward(fp.implicit(tol=1e-4), tol=1e-3, rtol=1e-2)  # given values are kept
    Implicit(solver='anderson', tol=0.0001, rtol=0.01, maxiter=100)
    """
    return backward._replace(tol=min(tol, ADJOINT_TOL) if backward.tol is None else backward.tol,
                             rtol=rtol if backward.rtol is None else backward.rtol)


def _stats(state, count, tol, rtol, axis_name=None) -> Stats:
    squared = jnp.sum((state.fz - state.z) ** 2)
    scale_squared = jnp.sum(state.fz**2)
    residual, scale = jnp.sqrt(squared), jnp.sqrt(scale_squared)
    relative = residual / (scale + jnp.finfo(residual.dtype).tiny)
    if axis_name is not None:  # batch-level test: ||F(Z) - Z||_F <= tol + rtol ||F(Z)||_F over the vmapped axis
        squared, scale_squared = jax.lax.psum((squared, scale_squared), axis_name)
    batch_residual = jnp.sqrt(squared)
    converged = (batch_residual <= tol + rtol * jnp.sqrt(scale_squared)) & jnp.isfinite(batch_residual)
    return Stats(count, residual, relative, converged)


def _while(solver: FixedPointSolver, g, z0, tol, rtol, maxiter, axis_name=None):
    """Forward loop without a tape: memory is the solver state only.

    Under ``jax.vmap`` the loop is batched by hand (``jax.custom_batching.custom_vmap``, :func:`_batched_while`)
    instead of by JAX's rule for a batched ``while_loop``, which would select every leaf of the solver state
    (Anderson's and Broyden's histories: 2 m vectors per example) between the old and the new value at every step
    and evaluate the stopping test twice per step. The result is the same: each example stops by the same rule.
    """
    traced = jax.make_jaxpr(g)(z0)  # every closed-over value (batched tracers too) becomes an explicit argument
    consts = traced.consts

    def g_converted(v, *c):
        return jax.core.eval_jaxpr(traced.jaxpr, c, v)[0]


    def per_example(z0, consts):
        return _loop(solver, lambda v: g_converted(v, *consts), z0, tol, rtol, maxiter, axis_name)

    run = jax.custom_batching.custom_vmap(per_example)

    @run.def_vmap
    def _rule(axis_size, in_batched, z0, consts):
        out = _batched_while(solver, g_converted, axis_size, in_batched, z0, consts, tol, rtol, maxiter, axis_name)
        return out, jax.tree.map(lambda _: True, out)

    return run(z0, tuple(consts))


def _loop(solver: FixedPointSolver, g, z0, tol, rtol, maxiter, axis_name=None):
    """The loop for one example (JAX's ``while_loop``; what :func:`_while` runs outside ``vmap``)."""

    def cond(carry):
        state, count = carry
        stats = _stats(state, count, tol, rtol, axis_name)
        return (count < maxiter) & ~stats.converged & jnp.isfinite(stats.residual)

    def body(carry):
        state, count = carry
        return solver.update(g, state), count + 1

    state, count = jax.lax.while_loop(cond, body, (solver.init(g, z0), jnp.zeros((), jnp.int32)))
    return state, _stats(state, count, tol, rtol, axis_name)


def _batched_while(solver: FixedPointSolver, g_converted, axis_size, in_batched, z0, consts, tol, rtol, maxiter,
                   axis_name=None):
    """:func:`_loop` for a batch: one ``while_loop`` that runs while any example is still active.

    An example is active while count < maxiter, it has not converged and its residual is finite (with
    ``axis_name``: the batch-level test over this axis, the vmapped one). Every step updates the whole batch; an
    inactive example keeps its z, f(z) and count (frozen, as under ``vmap`` of :func:`_loop`) and never becomes
    active again, so the rest of its solver state (histories) is left to be overwritten rather than selected.
    """
    z_axis = 0 if in_batched[0] else None
    c_axes = jax.tree.map(lambda batched: 0 if batched else None, in_batched[1])

    def per_init(z, c):
        return solver.init(lambda v: g_converted(v, *c), z)

    def per_update(state, c):
        return solver.update(lambda v: g_converted(v, *c), state)

    init = jax.vmap(per_init, in_axes=(z_axis, c_axes), axis_size=axis_size)
    update = jax.vmap(per_update, in_axes=(0, c_axes), axis_size=axis_size)
    stats = jax.vmap(lambda state, count: _stats(state, count, tol, rtol, axis_name), axis_name=axis_name)

    def active(state, count):
        now = stats(state, count)
        return (count < maxiter) & ~now.converged & jnp.isfinite(now.residual)

    def body(carry):
        state, count, live = carry
        new = update(state, consts)

        def keep(old, updated):
            return jnp.where(live.reshape(live.shape + (1,) * (updated.ndim - 1)), updated, old)

        state = new._replace(z=keep(state.z, new.z), fz=keep(state.fz, new.fz))
        count = count + live.astype(jnp.int32)
        return state, count, active(state, count)

    state0 = init(z0, consts)
    count0 = jnp.zeros((axis_size,), jnp.int32)
    state, count, _ = jax.lax.while_loop(lambda carry: jnp.any(carry[2]), body,
                                         (state0, count0, active(state0, count0)))
    return state, stats(state, count)


def _scan(solver: FixedPointSolver, g, z0, tol, rtol, maxiter, axis_name=None):
    """Forward loop that reverse-mode differentiates: maxiter steps, frozen after convergence."""

    def body(carry, _):
        state, count = carry
        stop = _stats(state, count, tol, rtol, axis_name)
        done = stop.converged | ~jnp.isfinite(stop.residual)
        new = solver.update(g, state)
        state = jax.tree.map(lambda old, upd: jnp.where(done, old, upd), state, new)
        return (state, count + jnp.where(done, 0, 1).astype(jnp.int32)), None

    (state, count), _ = jax.lax.scan(body, (solver.init(g, z0), jnp.zeros((), jnp.int32)), None, length=maxiter)
    return state, _stats(state, count, tol, rtol, axis_name)


class _Point(NamedTuple):  # what _stats reads from a solver state
    z: Array
    fz: Array


def _solve_adjoint(config: Implicit, jt: Callable[[Array], Array], g: Array) -> tuple[Array, Stats]:
    """Solve u = J^T u + g (flat arrays; ``jt(u) = J^T u``) from u = g with the backward's settings."""

    def h(u):
        return jt(u) + g

    if config.solver in LINEAR_SOLVERS:  # (I - J^T) u = g by a Krylov method; it does not report its step count
        method = jax.scipy.sparse.linalg.gmres if config.solver == "gmres" else jax.scipy.sparse.linalg.bicgstab
        u = method(lambda v: v - jt(v), g, x0=g, tol=config.rtol, atol=config.tol, maxiter=config.maxiter)[0]
        return u, _stats(_Point(u, h(u)), jnp.full((), -1, jnp.int32), config.tol, config.rtol)
    state, stats = _while(get_solver(config.solver, where="jeq.fixedpoint.implicit"), h, g, config.tol, config.rtol,
                          config.maxiter)
    return state.z, stats


SINGULAR_ADJOINT = (
    "jeq.fixedpoint.solve: differentiating a halpern solve implicitly. Halpern is for maps whose fixed points form "
    "a set (e.g. OptEq with ||W||_2 = 1), and there I - J^T is singular: the implicit backward solves a singular "
    "system and returns a meaningless gradient without an error. Use backward='phantom' or backward='unroll' (or "
    "ignore this warning if the map is a contraction, where the fixed point is unique and the system regular)."
)
"""The warning emitted when the implicit backward of a Halpern forward solve is traced (spec opteq.md section 6.2)."""


def _adjoint_solver(config: Implicit, forward: str = "") -> Callable:
    """A jaxopt ``solve(matvec, b)`` for A^T u = b, where matvec(u) = J^T u - u and b = -g.

    Traced only when differentiating; with a Halpern ``forward`` it warns (:data:`SINGULAR_ADJOINT`) at that point.
    """

    def solve_linear(matvec, b):
        if forward == "halpern":
            warnings.warn(SINGULAR_ADJOINT, UserWarning, stacklevel=2)
        b_flat, unravel = ravel_pytree(b)

        def jt(u):
            return ravel_pytree(matvec(unravel(u)))[0] + u

        return unravel(_solve_adjoint(config, jt, -b_flat)[0])

    return solve_linear


def adjoint_solve(
    fn: Callable[..., Any], z_star: Any, *args: Any, cotangent: Any, backward: Implicit | str = "implicit",
    tol: float = 1e-4, rtol: float = 0.0,
) -> Solution:
    """The implicit backward's adjoint solve on its own, with its diagnostics: u = J^T u + g at z*.

    ``solve(..., backward=implicit(...))`` runs this solve inside the VJP, where it cannot return anything but
    the gradient, so a truncated adjoint solve (``maxiter`` reached) would go unnoticed. Call this with the same
    ``fn``, ``args`` and backward settings, and with the loss's cotangent ``g = d loss / d z*``, to see how the
    backward solve went: ``stats.converged``, ``stats.num_steps`` and the residual ``||J^T u + g - u||`` (for
    ``"gmres"``/``"bicgstab"`` ``num_steps`` is -1: ``jax.scipy`` does not report it). One example; vmap over a
    batch.

    Args:
      fn: the map of the forward solve, ``fn(z, *args) -> z``.
      z_star: the fixed point (e.g. ``solve(fn, z0, *args).value``).
      *args: the arguments of fn.
      cotangent: g, a pytree shaped like z_star.
      backward: ``"implicit"`` or an :func:`implicit` configuration (the adjoint solver, tol, rtol, maxiter).
      tol, rtol: the forward solve's tolerances (defaults those of :func:`solve`), which an ``implicit()`` with
        tol/rtol left at None follows exactly as inside :func:`solve`.

    Returns:
      :class:`Solution` ``(u, stats)`` with u shaped like z_star; ``d loss / d args = u^T d fn / d args``.

    For f(z, a) = z / 2 + a, J = I / 2, so u = J^T u + g gives u = 2 g:

    >>> import jax.numpy as jnp
    >>> from jeq import fixedpoint as fp
    >>> f = lambda z, a: 0.5 * z + a
    >>> z_star = fp.solve(f, jnp.zeros(2), jnp.ones(2), solver="picard").value
    >>> u = fp.adjoint_solve(f, z_star, jnp.ones(2), cotangent=jnp.array([1.0, -0.5]),
    ...                      backward=fp.implicit(solver="picard"))
    >>> [round(float(v), 4) for v in u.value], bool(u.stats.converged)
    ([2.0, -1.0], True)
    """
    if backward == "implicit":
        backward = implicit()
    if not isinstance(backward, Implicit):
        validate.fail("jeq.fixedpoint.adjoint_solve", "backward", backward, "must be 'implicit' or implicit(...)")
    tol = validate.positive("jeq.fixedpoint.adjoint_solve", "tol", tol)
    rtol = validate.nonnegative("jeq.fixedpoint.adjoint_solve", "rtol", rtol)
    backward = follow_forward(backward, tol=tol, rtol=rtol)
    z_flat, unravel = ravel_pytree(z_star)
    g_flat, _ = ravel_pytree(cotangent)
    if jax.tree.structure(cotangent) != jax.tree.structure(z_star) or g_flat.shape != z_flat.shape:
        raise ValueError(
            f"jeq.fixedpoint.adjoint_solve: cotangent {jax.tree.structure(cotangent)} of size {g_flat.shape} must "
            f"be shaped like z_star {jax.tree.structure(z_star)} of size {z_flat.shape}"
        )
    _, vjp = jax.vjp(flat_map(fn, unravel, *args), z_flat)
    u, stats = _solve_adjoint(backward, lambda v: vjp(v)[0], g_flat.astype(z_flat.dtype))
    return Solution(unravel(u), stats)


def _signature(z, *args):  # reference signature for jaxopt: the fixed point first, then positional args
    raise NotImplementedError  # only its signature is read


def _at_solution(z, *args):
    """The "solver" given to jaxopt: z is already the fixed point (solved outside, see :func:`solve`)."""
    return z


def _check_map(fn, z0, args) -> None:
    try:
        out = jax.eval_shape(fn, z0, *args)
    except TypeError as error:
        raise TypeError(f"jeq.fixedpoint.solve: calling fn(z0, *args) failed: {error}") from error
    z_struct = jax.tree.structure(z0)
    if jax.tree.structure(out) != z_struct:
        raise ValueError(
            f"jeq.fixedpoint.solve: fn(z0, *args) returns a pytree {jax.tree.structure(out)} but z0 is {z_struct}"
        )
    for a, b in zip(jax.tree.leaves(z0), jax.tree.leaves(out)):
        if tuple(jnp.shape(a)) != tuple(b.shape):
            raise ValueError(
                f"jeq.fixedpoint.solve: fn(z0, *args) has shape {tuple(b.shape)} but z0 has shape {tuple(jnp.shape(a))}"
            )
        if not jnp.issubdtype(jnp.result_type(a), jnp.inexact):
            raise TypeError(f"jeq.fixedpoint.solve: z0 must be floating point, got dtype {jnp.result_type(a)}")


def solve(
    fn: Callable[..., Any],
    z0: Any,
    *args: Any,
    solver: FixedPointSolver | str = "anderson",
    tol: float = 1e-4,
    rtol: float = 0.0,
    maxiter: int = 50,
    backward: Implicit | Phantom | Unroll | str = "implicit",
    axis_name: str | None = None,
) -> Solution:
    """Find z* = fn(z*, *args) from z0 and make it differentiable in ``args`` (one example; callers vmap).

    Stops when ||fn(z) - z|| <= tol + rtol ||fn(z)|| or after ``maxiter`` updates (``stats.converged`` is False
    then, with the residual). Closed-over tracers in ``fn`` are hoisted into ``args`` (``jax.closure_convert``),
    so gradients flow to them too. With the implicit backward the gradient w.r.t. z0 is zero (z* does not depend
    on it); unrolled it is the truncated solver's.

    Args:
      fn: the map, ``fn(z, *args) -> z`` with the structure, shapes and dtypes of z0.
      z0: initial guess (pytree of floating arrays).
      *args: differentiable arguments of fn (pytrees of floating arrays).
      solver: a :data:`jeq.fixedpoint.SOLVERS` name (default hyper-parameters) or a configured :class:`FixedPointSolver`,
        e.g. ``anderson(history=5, ridge=1e-4)`` or ``halpern(anchor=u)``.
      tol: absolute tolerance (> 0).
      rtol: relative tolerance (>= 0).
      maxiter: maximum number of solver updates (>= 1).
      backward: ``"implicit"``, ``"phantom"``, ``"unroll"`` or a configuration from :func:`implicit`,
        :func:`phantom`, :func:`unroll`. The implicit adjoint follows the forward's tolerances unless given:
        tol = min(``tol``, 1e-6), rtol = ``rtol`` (``implicit(tol=..., rtol=...)`` sets its own).
      axis_name: when ``solve`` runs under ``jax.vmap(..., axis_name=axis_name)``, stop on the batch-level
        residual ||F(Z) - Z||_F <= tol + rtol ||F(Z)||_F (a ``psum`` over the vmapped axis; the criterion of the
        MON and DEQ reference codes) instead of per example: every example then takes the same number of
        steps, each with its own solver state (e.g. Anderson coefficients). ``stats.residual`` stays per example,
        ``stats.converged`` is the batch decision. The implicit adjoint solve still stops per example (JAX does
        not bind the axis name inside a custom VJP's backward rule).

    Returns:
      :class:`Solution` ``(value, stats)``.

    The fixed point of z = a cos z, one solve per a under ``jax.vmap``, and its derivative by the implicit function
    theorem, dz*/da = cos z* / (1 + a sin z*):

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq import fixedpoint as fp
    >>> f = lambda z, a: a * jnp.cos(z)
    >>> solution = jax.vmap(lambda a: fp.solve(f, jnp.zeros(()), a, tol=1e-6))(jnp.array([0.5, 1.0]))
    >>> [round(float(z), 4) for z in solution.value], solution.stats.converged.tolist()
    ([0.4502, 0.7391], [True, True])
    >>> z = solution.value[1]
    >>> bool(jnp.allclose(z, jnp.cos(z), atol=1e-5))  # z* = f(z*)
    True
    >>> dz = jax.jit(jax.grad(lambda a: fp.solve(f, jnp.zeros(()), a, tol=1e-6).value))(1.0)
    >>> bool(jnp.allclose(dz, jnp.cos(z) / (1 + jnp.sin(z)), atol=1e-4))
    True
    """
    solver, backward = check_settings(solver=solver, tol=tol, rtol=rtol, maxiter=maxiter, backward=backward)
    if axis_name is not None and not isinstance(axis_name, str):
        validate.fail("jeq.fixedpoint.solve", "axis_name", axis_name, "must be a str (a jax.vmap axis name) or None")
    _check_map(fn, z0, args)
    fn, consts = jax.closure_convert(fn, z0, *args)
    args = tuple(args) + tuple(consts)
    z0_flat, unravel = ravel_pytree(z0)

    if isinstance(backward, Unroll):
        state, stats = _scan(solver, flat_map(fn, unravel, *args), z0_flat, tol, rtol, maxiter, axis_name)
        return Solution(unravel(state.z), stats)

    # Implicit and phantom: the forward loop runs without a tape on stop-gradient inputs (memory: solver state).
    frozen = jax.lax.stop_gradient(args)
    state, stats = _while(solver, flat_map(fn, unravel, *frozen), jax.lax.stop_gradient(z0_flat), tol, rtol,
                          maxiter, axis_name)
    z_star = jax.lax.stop_gradient(unravel(state.z))

    if isinstance(backward, Phantom):
        tau = backward.damping

        def damped_step(_, z):
            return jax.tree.map(lambda a, b: tau * b + (1.0 - tau) * a, z, fn(z, *args))

        return Solution(jax.lax.fori_loop(0, backward.steps, damped_step, z_star), stats)

    # jaxopt's custom_fixed_point attaches the IFT backward to the (already solved) point: the wrapped "solver" is
    # the identity on z*, its VJP solves the adjoint u = J^T u + g at z*. The adjoint stops per example: JAX does
    # not bind a vmap axis name inside a custom VJP's backward rule.
    attach = jaxopt.implicit_diff.custom_fixed_point(
        fn, solve=_adjoint_solver(backward, solver.name), reference_signature=_signature
    )(_at_solution)
    return Solution(attach(z_star, *args), stats)

