"""Fixed-point iterations z = f(z) as ``init``/``update`` pairs on flat vectors (optax style).

Every solver state is a NamedTuple whose first two fields are ``z`` (the current iterate) and ``fz`` = f(z), so
the residual ``||f(z) - z||`` reported by :func:`jeq.fixedpoint.solve` is measured at exactly the returned point.
Each ``update`` evaluates f once. Memory is fixed by the solver's ``history`` (never by ``maxiter``):

==========  =========================================================================  ======================
solver      update                                                                    memory (vectors of z)
==========  =========================================================================  ======================
picard      z <- (1 - beta) z + beta f(z)      (Krasnosel'skii-Mann; beta = 1: Picard)  2
anderson    z <- sum_i alpha_i (x_i + beta g_i), alpha = argmin ||sum alpha_i g_i||^2     2 + 2 m
            + ridge ||alpha||^2 s.t. sum alpha = 1, over the last m pairs (x_i, g_i = f(x_i) - x_i)
            (Walker & Ni 2011)
broyden     z <- z - H r, r = f(z) - z; H ~ (J_f - I)^{-1} = -I + sum_i u_i v_i^T by       2 + 2 m
            "good" Broyden rank-one updates in a ring of m (Broyden 1965; Bai et al. 2019)
halpern     z_{k+1} = lambda_k u + (1 - lambda_k) f(z_k), lambda_k = 1/(k + 2)           3
            -> P_{Fix f}(u), the fixed point nearest the anchor u, for nonexpansive f (Wittmann 1992)
==========  =========================================================================  ======================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from jeq import validate

__all__ = [
    "SOLVERS",
    "AndersonState",
    "BroydenState",
    "FixedPointSolver",
    "HalpernState",
    "PicardState",
    "anderson",
    "broyden",
    "flat_map",
    "get_solver",
    "halpern",
    "picard",
]

Array = jax.Array
FlatMap = Callable[[Array], Array]


class FixedPointSolver(NamedTuple):
    """A fixed-point iteration z_{k+1} = update(g, z_k) for a map g: R^n -> R^n on flat vectors (``solve`` flattens
    pytrees).

    Driven by hand on g(v) = v / 2 + 1, whose fixed point is 2:

    >>> import jax.numpy as jnp
    >>> from jeq import fixedpoint as fp
    >>> solver = fp.picard()
    >>> solver._fields
    ('init', 'update', 'name')
    >>> g = lambda v: 0.5 * v + 1.0
    >>> state = solver.init(g, jnp.zeros(2))
    >>> for _ in range(30):
    ...     state = solver.update(g, state)
    >>> [round(float(v), 4) for v in state.z]
    [2.0, 2.0]
    """

    init: Callable[[FlatMap, Array], Any]
    """``init(g, z0) -> state``; evaluates g(z0) once. The state's first fields are ``z`` and ``fz``."""
    update: Callable[[FlatMap, Any], Any]
    """``update(g, state) -> state``; one step, one evaluation of g."""
    name: str
    """Registry name (for messages and stats)."""


def flat_map(fn: Callable[..., Any], unravel: Callable[[Array], Any], *args: Any) -> FlatMap:
    """g(v) = ravel(fn(unravel(v), *args)): a map of pytrees seen as a map of flat vectors (what solvers iterate).

    ``unravel`` comes from ``jax.flatten_util.ravel_pytree(z)``; fn must return a pytree shaped like z.

    >>> import jax.numpy as jnp
    >>> from jax.flatten_util import ravel_pytree
    >>> from jeq import fixedpoint as fp
    >>> z = {"a": jnp.array([1.0, 2.0]), "b": jnp.array(3.0)}
    >>> flat, unravel = ravel_pytree(z)
    >>> g = fp.flat_map(lambda z, c: {"a": c * z["a"], "b": z["b"] + c}, unravel, 10.0)
    >>> flat.tolist(), g(flat).tolist()
    ([1.0, 2.0, 3.0], [10.0, 20.0, 13.0])
    """

    def g(v):
        return ravel_pytree(fn(unravel(v), *args))[0]

    return g


def _damping(where: str, value) -> float:
    """beta in (0, 1]: the step of an averaged (Krasnosel'skii-Mann) update."""
    return validate.real(where, "damping", value, low=0, high=1, low_open=True)


# --------------------------------------------------------------------------------------------------------- picard
class PicardState(NamedTuple):
    """State of the (damped) Picard / Krasnosel'skii-Mann iteration z <- (1 - beta) z + beta g(z).

    >>> import jax.numpy as jnp
    >>> from jeq import fixedpoint as fp
    >>> state = fp.picard().init(lambda v: 0.5 * v + 1.0, jnp.zeros(2))
    >>> state._fields, state.fz.tolist()  # fz = g(z)
    (('z', 'fz'), [1.0, 1.0])
    """

    z: Array
    """Current iterate."""
    fz: Array
    """g(z)."""


def picard(*, damping: float = 1.0) -> FixedPointSolver:
    """Picard iteration z <- (1 - beta) z + beta f(z) (Krasnosel'skii-Mann averaging when beta < 1).

    Converges linearly for a contraction; for a merely nonexpansive f, beta < 1 gives weak convergence (KM).

    The rotation f(z) = R z by 90 degrees is nonexpansive with the fixed point 0: plain Picard (beta = 1) cycles
    forever, the averaged iteration (beta = 1/2) converges.

    >>> import jax.numpy as jnp
    >>> from jeq import fixedpoint as fp
    >>> rotate = lambda z: jnp.array([-z[1], z[0]])
    >>> for beta in (1.0, 0.5):
    ...     solution = fp.solve(rotate, jnp.array([1.0, 0.0]), solver=fp.picard(damping=beta), maxiter=200)
    ...     print(beta, bool(solution.stats.converged), round(float(jnp.linalg.norm(solution.value)), 3))
    1.0 False 1.0
    0.5 True 0.0
    """
    beta = _damping("jeq.fixedpoint.picard", damping)

    def init(g, z0):
        return PicardState(z0, g(z0))

    def update(g, state):
        z = state.z + beta * (state.fz - state.z) if beta != 1.0 else state.fz
        return PicardState(z, g(z))

    return FixedPointSolver(init, update, "picard")


# ------------------------------------------------------------------------------------------------------- anderson
class AndersonState(NamedTuple):
    """State of Anderson acceleration with a ring buffer of ``history`` past pairs (x_i, g_i = f(x_i) - x_i), kept
    as y_i = x_i + damping * g_i (what the new iterate mixes) and g_i, with their Gram matrix G_ij = g_i . g_j
    (updated by one row and column per step instead of recomputed). Update k writes slot k % history, over the
    oldest pair (the mixing does not depend on the order of the pairs).

    >>> import jax.numpy as jnp
    >>> from jeq import fixedpoint as fp
    >>> state = fp.anderson(history=3).init(jnp.cos, jnp.zeros(4))
    >>> state._fields
    ('z', 'fz', 'ys', 'gs', 'gram', 'count')
    >>> state.ys.shape, state.gs.shape, state.gram.shape, int(state.count)
    ((3, 4), (3, 4), (3, 3), 0)
    """

    z: Array
    """Current iterate."""
    fz: Array
    """g(z)."""
    ys: Array
    """Past x_i + damping * g_i (f(x_i) at damping 1), shape (history, n), in ring order; zero rows before the
    buffer fills."""
    gs: Array
    """Past residuals g_i = f(x_i) - x_i, shape (history, n), in ring order; zero rows before the buffer fills."""
    gram: Array
    """G = gs gs^T, shape (history, history) (zero rows and columns for the unfilled slots)."""
    count: Array
    """Number of updates so far (int32); slots 0 .. min(count, history) - 1 are filled."""


def _write(buffer: Array, row: Array, slot: Array) -> Array:
    """Write ``row`` into ``slot`` (update k: k % history) of a (history, n) ring buffer, over its oldest row.

    One row is written in place: inside the solver loops (batched by hand under vmap, see
    ``jeq.fixedpoint.solve``) this per-example scatter costs O(n), where shifting the buffer (the previous
    implementation) copied all history x n entries every step (~30 % of a Broyden step at history 10, width 87)."""
    return jax.lax.dynamic_update_index_in_dim(buffer, row, slot, 0)


def _spd_solve(a: Array, b: Array) -> Array:
    """Solve a x = b for a small symmetric positive definite a by Gaussian elimination without pivoting (stable for
    SPD matrices) and back substitution, unrolled over the m = ``history`` rows down to single entries: about
    m^3 / 3 + m^2 scalar multiply-adds, which under vmap are elementwise ops on (batch,) vectors that XLA fuses. It
    compiles and runs much faster than a LAPACK call per example (or than row operations on the small matrices) for
    the few-by-few Anderson systems, and adds no loop of its own inside the solver's ``while_loop``."""
    m = a.shape[0]
    rows = [[a[i, j] for j in range(m)] for i in range(m)]
    rhs = [b[i] for i in range(m)]
    for k in range(m):
        for i in range(k + 1, m):
            factor = rows[i][k] / rows[k][k]
            for j in range(k + 1, m):
                rows[i][j] = rows[i][j] - factor * rows[k][j]
            rhs[i] = rhs[i] - factor * rhs[k]
    x = [None] * m
    for i in reversed(range(m)):
        total = rhs[i]
        for j in range(i + 1, m):
            total = total - rows[i][j] * x[j]
        x[i] = total / rows[i][i]
    return jnp.stack(x)


def anderson(*, history: int = 5, ridge: float = 1e-4, damping: float = 1.0) -> FixedPointSolver:
    """Anderson acceleration (type II, Walker & Ni 2011), as in the DEQ reference implementation.

        alpha = argmin_{1^T alpha = 1} ||G alpha||^2 + ridge * mean_i ||g_i||^2 * ||alpha||^2,
        z_new = sum_i alpha_i (x_i + damping * g_i),

    over the last ``history`` pairs. The ridge is relative to the mean squared residual, so it regularises the
    Gram system the same way at every scale (locuslab/deq #20: singular systems). Memory: 2 * history vectors and
    the history x history Gram matrix.

    On z = cos z Anderson needs fewer evaluations of f than Picard for the same tolerance:

    >>> import jax.numpy as jnp
    >>> from jeq import fixedpoint as fp
    >>> fast = fp.solve(jnp.cos, jnp.zeros(3), solver=fp.anderson(history=3), tol=1e-6)
    >>> slow = fp.solve(jnp.cos, jnp.zeros(3), solver="picard", tol=1e-6, maxiter=200)
    >>> [round(float(v), 4) for v in fast.value], bool(fast.stats.converged)
    ([0.7391, 0.7391, 0.7391], True)
    >>> bool(fast.stats.num_steps < slow.stats.num_steps)
    True
    """
    where = "jeq.fixedpoint.anderson"
    m = validate.integer(where, "history", history, low=1)
    lam = validate.nonnegative(where, "ridge", ridge)
    beta = _damping(where, damping)

    def init(g, z0):
        fz = g(z0)
        zeros = jnp.zeros((m,) + z0.shape, z0.dtype)
        return AndersonState(z0, fz, zeros, zeros, jnp.zeros((m, m), z0.dtype), jnp.zeros((), jnp.int32))

    def update(g, state):
        g_new, slot = state.fz - state.z, state.count % m
        ys = _write(state.ys, state.z + beta * g_new, slot)  # z_new = sum_i alpha_i y_i: one product
        gs = _write(state.gs, g_new, slot)
        column = gs @ g_new  # the Gram matrix's new row and column, at the slot just written
        at_slot = jnp.arange(m) == slot
        gram = jnp.where(at_slot[:, None], column[None, :], jnp.where(at_slot[None, :], column[:, None], state.gram))
        filled = jnp.minimum(state.count + 1, m)
        valid = jnp.arange(m) < filled
        scale = jnp.trace(gram) / filled.astype(gram.dtype) + jnp.finfo(gram.dtype).eps
        # unfilled rows and columns of G are zero: a unit diagonal there makes alpha_i = 0 for them
        system = gram + jnp.diag(jnp.where(valid, lam * scale, 1.0))
        alpha = _spd_solve(system, valid.astype(gram.dtype))
        z = (alpha / jnp.sum(alpha)) @ ys
        return AndersonState(z, g(z), ys, gs, gram, state.count + 1)

    return FixedPointSolver(init, update, "anderson")


# -------------------------------------------------------------------------------------------------------- broyden
class BroydenState(NamedTuple):
    """State of limited-memory "good" Broyden on r(z) = f(z) - z: H ~ (J_f - I)^{-1} = -I + sum_i u_i v_i^T.

    One update writes the first secant pair (u, v) into slot 0 of the ring buffers (update k writes slot
    k % history, over the oldest pair; the sum does not depend on the order):

    >>> import jax.numpy as jnp
    >>> from jeq import fixedpoint as fp
    >>> solver = fp.broyden(history=4)
    >>> state = solver.update(jnp.cos, solver.init(jnp.cos, jnp.zeros(3)))
    >>> state.us.shape, bool(jnp.any(state.us[0] != 0)), bool(jnp.all(state.us[1:] == 0)), int(state.count)
    ((4, 3), True, True, 1)
    """

    z: Array
    """Current iterate."""
    fz: Array
    """g(z)."""
    us: Array
    """Left factors u_i of the inverse-Jacobian update, shape (history, n), in ring order."""
    vs: Array
    """Right factors v_i, shape (history, n); H = -I + sum_i u_i v_i^T."""
    count: Array
    """Number of updates so far (int32)."""


def broyden(*, history: int = 10) -> FixedPointSolver:
    """Limited-memory "good" Broyden method on r(z) = f(z) - z = 0 (the DEQ forward solver, Bai et al. 2019).

        dz = -H r,  z_new = z + dz,  dr = r_new - r,
        H <- H + (dz - H dr) (dz^T H) / (dz^T H dr),   H_0 = -I,

    kept as H = -I + U V^T with the last ``history`` rank-one terms (the oldest is dropped).
    Unit step, no line search. Memory: 2 * history vectors.

    On a linear map f(z) = A z + b Broyden solves (A - I) z = -b; here A = diag(0.5, -0.5), b = (1, 1):

    >>> import jax.numpy as jnp
    >>> from jeq import fixedpoint as fp
    >>> f = lambda z: jnp.array([0.5, -0.5]) * z + 1.0
    >>> solution = fp.solve(f, jnp.zeros(2), solver=fp.broyden(history=5), tol=1e-6)
    >>> [round(float(v), 4) for v in solution.value], bool(solution.stats.converged)
    ([2.0, 0.6667], True)
    """
    m = validate.integer("jeq.fixedpoint.broyden", "history", history, low=1)

    def inv_jac(us, vs, y):
        return -y + us.T @ (vs @ y)

    def inv_jac_t(us, vs, y):
        return -y + vs.T @ (us @ y)

    def init(g, z0):
        zeros = jnp.zeros((m,) + z0.shape, z0.dtype)
        return BroydenState(z0, g(z0), zeros, zeros, jnp.zeros((), jnp.int32))

    def update(g, state):
        r = state.fz - state.z
        dz = -inv_jac(state.us, state.vs, r)
        z = state.z + dz
        fz = g(z)
        dr = (fz - z) - r
        h_dr = inv_jac(state.us, state.vs, dr)
        v = inv_jac_t(state.us, state.vs, dz)
        denominator = v @ dr  # = dz^T H dr
        tiny = jnp.finfo(z.dtype).eps * (jnp.linalg.norm(v) * jnp.linalg.norm(dr) + jnp.finfo(z.dtype).tiny)
        usable = jnp.abs(denominator) > tiny
        u = jnp.where(usable, (dz - h_dr) / jnp.where(usable, denominator, 1.0), 0.0)
        slot = state.count % m
        return BroydenState(z, fz, _write(state.us, u, slot), _write(state.vs, v, slot), state.count + 1)

    return FixedPointSolver(init, update, "broyden")


# -------------------------------------------------------------------------------------------------------- halpern
class HalpernState(NamedTuple):
    """State of the Halpern (anchored) iteration z_{k+1} = lambda_k u + (1 - lambda_k) f(z_k).

    >>> import jax.numpy as jnp
    >>> from jeq import fixedpoint as fp
    >>> state = fp.halpern(anchor=jnp.ones(2)).init(jnp.cos, jnp.zeros(2))
    >>> state._fields, state.anchor.tolist(), int(state.count)
    (('z', 'fz', 'anchor', 'count'), [1.0, 1.0], 0)
    """

    z: Array
    """Current iterate."""
    fz: Array
    """g(z)."""
    anchor: Array
    """The anchor u (flat)."""
    count: Array
    """k, the number of updates so far (int32)."""


def halpern(*, anchor: Any = None) -> FixedPointSolver:
    """Halpern iteration z_{k+1} = lambda_k u + (1 - lambda_k) f(z_k) with lambda_k = 1 / (k + 2).

    lambda_k -> 0, sum lambda_k = inf and sum |lambda_{k+1} - lambda_k| < inf, so for a nonexpansive f with a
    fixed point the iterates converge to P_{Fix f}(u), the fixed point nearest the anchor u (Wittmann 1992);
    u = 0 selects the minimum-norm equilibrium (spec opteq.md section 6.2). Rate O(1/k): the residual decays like
    1/k, so tolerances translate into O(1/tol) iterations.

    Args:
      anchor: a pytree shaped like z0, or None to anchor at z0.

    The projection f(z) = P z onto the line z_1 = z_2 fixes the whole line. From z0 = (2, 0) Picard stops at
    P z0 = (1, 1); Halpern anchored at u = (0, -1) finds P u = (-0.5, -0.5), the fixed point nearest u:

    >>> import jax.numpy as jnp
    >>> from jeq import fixedpoint as fp
    >>> project = lambda z: jnp.full(2, z.mean())
    >>> z0 = jnp.array([2.0, 0.0])
    >>> [round(float(v), 2) for v in fp.solve(project, z0, solver="picard").value]
    [1.0, 1.0]
    >>> anchored = fp.halpern(anchor=jnp.array([0.0, -1.0]))
    >>> solution = fp.solve(project, z0, solver=anchored, tol=1e-3, maxiter=5000)
    >>> [round(float(v), 2) for v in solution.value], bool(solution.stats.converged)
    ([-0.5, -0.5], True)
    """

    def init(g, z0):
        u = z0 if anchor is None else ravel_pytree(anchor)[0].astype(z0.dtype)
        if u.shape != z0.shape:
            raise ValueError(
                f"jeq.fixedpoint.halpern(anchor): flattened anchor has shape {u.shape} but z0 has shape {z0.shape}"
            )
        return HalpernState(z0, g(z0), u, jnp.zeros((), jnp.int32))

    def update(g, state):
        lam = 1.0 / (state.count.astype(state.z.dtype) + 2.0)
        z = lam * state.anchor + (1.0 - lam) * state.fz
        return HalpernState(z, g(z), state.anchor, state.count + 1)

    return FixedPointSolver(init, update, "halpern")


SOLVERS: dict[str, Callable[..., FixedPointSolver]] = {
    "picard": picard,
    "anderson": anderson,
    "broyden": broyden,
    "halpern": halpern,
}
"""Registry of solver factories by name; ``solve(..., solver="anderson")`` uses the factory's defaults.
Register a new one with ``SOLVERS["name"] = factory`` (a function of keyword hyper-parameters returning a
:class:`FixedPointSolver`)."""


def get_solver(solver: str | FixedPointSolver, *, where: str = "jeq.fixedpoint.solve") -> FixedPointSolver:
    """Resolve a registry name or pass a configured :class:`FixedPointSolver` through.

    ``where`` is the public call named in the error (``jeq.<pkg>.<fn>``) when ``solver`` is neither.
    A name resolves to ``SOLVERS[name]()``, the factory with its default hyper-parameters.

    >>> from jeq import fixedpoint as fp
    >>> fp.get_solver("broyden").name, fp.get_solver(fp.anderson(history=2)).name
    ('broyden', 'anderson')
    >>> fp.get_solver("newton", where="jeq.my.fn")
    Traceback (most recent call last):
    ...
    jeq.validate.ArgumentError: jeq.my.fn(solver='newton'): must be one of ['anderson', 'broyden', ...
    """
    if isinstance(solver, FixedPointSolver):
        return solver
    if isinstance(solver, str) and solver in SOLVERS:
        return SOLVERS[solver]()
    validate.fail(where, "solver", solver, f"must be one of {sorted(SOLVERS)} or a FixedPointSolver such as "
                  "jeq.fixedpoint.anderson(history=5)")
