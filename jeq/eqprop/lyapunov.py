"""Stability of DEEP's free phase: system matrix, spectral abscissa, Gershgorin flags, Lyapunov equation, V(s).

DEEP's free phase on the free (non-input) neurons is affine inside the box (spec ``eqprop.md`` §2):

    ds_f/dt = A s_f + c(x),   A = [W^T - diag(W 1)]_{free, free},   c(x) = W[inputs, free]^T x

Derived here (and tested): on the paper's graphs (no edges into inputs, no self-loops) every column of A sums to 0,
``1^T A = 0``: the free flow moves "activity mass" along edges and only the inputs add to it. So A always has the
eigenvalue 0 and is **never Hurwitz**, the unclipped flow has no attracting equilibrium (sum_j s_j grows at the
constant rate 1^T c(x)), and Gershgorin's column condition can never hold (the off-diagonal column sum is at least
|A_jj|). The clip to [0, 1] is what stabilises DEEP: saturated neurons act like clamped ones and drain the others.

Hence the stability check is made where the free phase ends. At a fixed point s* of the clipped Euler map, with the
saturated neurons strictly pushed outwards (strict complementarity), a neighbourhood keeps them saturated and the
interior neurons I follow the linear map e <- (I + dt A_II) e. So:

* ``A_loc`` = A on the interior block (saturated coordinates replaced by -1, decoupled); A_loc Hurwitz <=>
  A_loc^T P + P A_loc = -Q has P > 0 (Q > 0), and V(s) = (s - s*)^T P (s - s*) decreases along the flow near s*.
* Gershgorin on A_loc: negative diagonal and off-diagonal row (or column) sums below |A_jj| => Hurwitz (sufficient).
* rho(I + dt A_loc) < 1 is the exact local condition for the Euler iteration; with Hurwitz and strict
  complementarity the free phase is *provably* locally exponentially stable at s*.
* Global certificate: ||I + dt A||_p < 1 (p in {1, 2, inf}) makes the clipped map a contraction (clip is
  non-expansive in every l_p); it is impossible on DEEP's graphs since 1^T (I + dt A) = 1^T, but can hold for the
  leaky EP_asym field (A = W^T - I) when W is small.

For energy-based EP (:mod:`jeq.eqprop.hopfield`) the Lyapunov function is the energy itself
(:func:`jeq.eqprop.hopfield.energy_certificate`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jeq import validate
from jeq.eqprop.deep import deep_field
from jeq.eqprop.directed import Field

__all__ = [
    "Gershgorin",
    "LyapunovSolution",
    "Stability",
    "free_phase_stability",
    "gershgorin",
    "lyapunov_along",
    "solve_lyapunov",
    "spectral_abscissa",
    "system_matrix",
]


def _square(function: str, name: str, a: jax.Array) -> jax.Array:
    """``a`` as an array, when it is a square matrix (the package-specific check, built on jeq.validate.array)."""
    where = f"jeq.eqprop.{function}"
    a = validate.array(where, name, jnp.asarray(a), ndim=2)
    return validate.array(where, name, a, shape=(a.shape[0], a.shape[0]))


def system_matrix(weights: jax.Array, *, num_inputs: int, field: Field = deep_field) -> jax.Array:
    """A = d field / ds on the free block (n_free, n_free), n_free = N - num_inputs, for a field linear in s.

    For DEEP (default) A = [W^T - diag(W 1)]_{free, free}: ``A[j, i] = W[i, j]`` (i != j), ``A[j, j] =
    -sum_k W[j, k]``. For EP_asym (``field=leaky_field``) A = [W^T]_{free, free} - I. Computed as the Jacobian of
    ``field`` (exact because the fields are linear in s).

    On DEEP's graphs every column of A sums to 0 (1^T A = 0: A is never Hurwitz):

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq import eqprop
    >>> graph = eqprop.complete_graph(num_inputs=2, num_hidden=2, num_outputs=1)
    >>> weights = jnp.abs(eqprop.init_weights(jax.random.key(0), graph, std=0.5))
    >>> a = eqprop.system_matrix(weights, num_inputs=2)
    >>> a.shape, bool(jnp.allclose(a.sum(axis=0), 0.0, atol=1e-6))
    ((3, 3), True)
    >>> b = eqprop.system_matrix(weights, num_inputs=2, field=eqprop.leaky_field)  # EP_asym: [W^T]_free - I
    >>> bool(jnp.allclose(b, weights[2:, 2:].T - jnp.eye(3)))
    True
    """
    weights = _square("system_matrix", "weights", weights)
    validate.integer("jeq.eqprop.system_matrix", "num_inputs", num_inputs, low=0, high=weights.shape[0] - 1)
    full = jax.jacobian(field, argnums=1)(weights, jnp.zeros(weights.shape[0], weights.dtype))
    return full[num_inputs:, num_inputs:]


def spectral_abscissa(a: jax.Array) -> jax.Array:
    """max Re lambda(A); A is Hurwitz iff it is < 0. (Non-symmetric eigenvalues: CPU backend.)

    >>> import jax.numpy as jnp
    >>> from jeq import eqprop
    >>> round(float(eqprop.spectral_abscissa(jnp.array([[-1.0, 2.0], [0.0, -3.0]]))), 4)
    -1.0
    >>> round(float(eqprop.spectral_abscissa(jnp.array([[0.0, 1.0], [-1.0, 0.0]]))), 4)  # a rotation: Re = 0
    0.0
    """
    a = _square("spectral_abscissa", "a", a)
    return jnp.max(jnp.real(jnp.linalg.eigvals(a)))


class Gershgorin(NamedTuple):
    """Gershgorin disc flags for A (sufficient, not necessary, for Hurwitz): A_jj < 0 and sum_{i != j} |A_ji| <
    |A_jj| for every row (or column) j.

    A diagonally dominant matrix with a negative diagonal is certified; its fields read by name:

    >>> import jax.numpy as jnp
    >>> from jeq import eqprop
    >>> flags = eqprop.gershgorin(jnp.array([[-3.0, 1.0, 1.0], [0.5, -2.0, 0.5], [1.0, 0.0, -4.0]]))
    >>> bool(flags.hurwitz_certified), bool(flags.row_dominant and flags.column_dominant)
    (True, True)
    """

    negative_diagonal: jax.Array
    """All A_jj < 0 (for DEEP: every free neuron has positive total outgoing weight)."""
    row_dominant: jax.Array
    """sum_{i != j} |A_ji| < |A_jj| for every row j."""
    column_dominant: jax.Array
    """sum_{i != j} |A_ij| < |A_jj| for every column j."""
    hurwitz_certified: jax.Array
    """negative_diagonal and (row_dominant or column_dominant): every eigenvalue has Re < 0."""


def gershgorin(a: jax.Array) -> Gershgorin:
    """Gershgorin check of A: Re lambda <= max_j (A_jj + R_j) with R_j the row (or column) off-diagonal l1 sum.

    >>> import jax.numpy as jnp
    >>> from jeq import eqprop
    >>> flags = eqprop.gershgorin(jnp.array([[-2.0, 1.5], [0.5, -1.0]]))  # rows dominant, columns not
    >>> [bool(flag) for flag in flags]
    [True, True, False, True]
    """
    a = _square("gershgorin", "a", a)
    diag = jnp.diag(a)
    off = jnp.abs(a - jnp.diag(diag))
    negative = jnp.all(diag < 0)
    rows = jnp.all(jnp.sum(off, axis=1) < jnp.abs(diag))
    cols = jnp.all(jnp.sum(off, axis=0) < jnp.abs(diag))
    return Gershgorin(negative, rows, cols, negative & (rows | cols))


class LyapunovSolution(NamedTuple):
    """Solution of A^T P + P A = -Q.

    For A = -I the solution is P = Q / 2:

    >>> import jax.numpy as jnp
    >>> from jeq import eqprop
    >>> solution = eqprop.solve_lyapunov(-jnp.eye(2))
    >>> bool(jnp.allclose(solution.P, jnp.eye(2) / 2)), float(solution.min_eigenvalue), bool(solution.positive_definite)
    (True, 0.5, True)
    """

    P: jax.Array
    """(n, n) symmetric solution."""
    residual: jax.Array
    """||A^T P + P A + Q||_F / ||Q||_F (should be ~ machine precision)."""
    min_eigenvalue: jax.Array
    """Smallest eigenvalue of P; P > 0 (and so A Hurwitz) iff it is > 0."""
    positive_definite: jax.Array
    """min_eigenvalue > 0 and the residual is small: V(s) = s^T P s is a Lyapunov function."""


def solve_lyapunov(a: jax.Array, q: jax.Array | None = None) -> LyapunovSolution:
    """Solve the continuous Lyapunov equation A^T P + P A = -Q (Q = I by default) in JAX.

    Kronecker form on the row-major vec: (A^T (x) I + I (x) A^T) vec(P) = -vec(Q), an n^2 x n^2 dense solve
    (O(n^6); meant for DEEP's small graphs, n <= ~60). Unique when no two eigenvalues of A sum to 0, e.g. A Hurwitz.

    P > 0 exactly when A is Hurwitz:

    >>> import jax.numpy as jnp
    >>> from jeq import eqprop
    >>> a = jnp.array([[-1.0, 0.5], [0.0, -2.0]])
    >>> solution = eqprop.solve_lyapunov(a)
    >>> bool(jnp.allclose(a.T @ solution.P + solution.P @ a, -jnp.eye(2), atol=1e-5)), bool(solution.positive_definite)
    (True, True)
    >>> bool(eqprop.solve_lyapunov(jnp.array([[1.0, 0.0], [0.0, -1.0]])).positive_definite)  # not Hurwitz
    False
    """
    a = _square("solve_lyapunov", "a", a)
    n = a.shape[0]
    if q is None:
        q = jnp.eye(n, dtype=a.dtype)
    else:
        q = validate.array("jeq.eqprop.solve_lyapunov", "q", jnp.asarray(q), shape=a.shape).astype(a.dtype)
    eye = jnp.eye(n, dtype=a.dtype)
    kron = jnp.kron(a.T, eye) + jnp.kron(eye, a.T)
    p = jnp.linalg.solve(kron, -q.reshape(-1)).reshape(n, n)
    p = 0.5 * (p + p.T)
    residual = jnp.linalg.norm(a.T @ p + p @ a + q) / jnp.linalg.norm(q)
    lam = jnp.linalg.eigvalsh(p)[0]
    tol = 10.0 * jnp.sqrt(jnp.finfo(a.dtype).eps)
    return LyapunovSolution(p, residual, lam, (lam > 0) & (residual < tol))


def lyapunov_along(p: jax.Array, states: jax.Array, equilibrium: jax.Array) -> jax.Array:
    """V(s(t)) = (s(t) - s*)^T P (s(t) - s*) for each row of ``states`` (T, n) (free neurons only).

    V decreases along the Euler flow of a Hurwitz A towards s*:

    >>> import jax.numpy as jnp
    >>> from jeq import eqprop
    >>> a = jnp.array([[-1.0, 0.5], [0.0, -2.0]])
    >>> target = jnp.array([0.5, 0.5])
    >>> states = [jnp.array([1.0, 0.0])]
    >>> for _ in range(5):
    ...     states.append(states[-1] + 0.1 * a @ (states[-1] - target))
    >>> v = eqprop.lyapunov_along(eqprop.solve_lyapunov(a).P, jnp.stack(states), target)
    >>> v.shape, bool(jnp.all(jnp.diff(v) < 0))
    ((6,), True)
    """
    p = _square("lyapunov_along", "p", p)
    where, n = "jeq.eqprop.lyapunov_along", p.shape[0]
    states = validate.array(where, "states", jnp.asarray(states, p.dtype), shape=(None, n))
    equilibrium = validate.array(where, "equilibrium", jnp.asarray(equilibrium, p.dtype), shape=(n,))
    d = states - equilibrium
    return jnp.einsum("ti,ij,tj->t", d, p, d)


class Stability(NamedTuple):
    """Stability report of a DEEP network's free phase at the state it reached for one input: A_loc Hurwitz,
    rho(I + dt A_loc) < 1 and strict complementarity => locally exponentially stable.

    >>> from jeq import eqprop
    >>> eqprop.Stability._fields
    ('interior', 'complementary', 'fixed_point_residual', 'system_matrix', 'spectral_abscissa', 'hurwitz',
     'gershgorin', 'lyapunov', 'euler_spectral_radius', 'locally_stable', 'contraction_norm', 'globally_stable')
    """

    interior: jax.Array
    """(n_free,) bool: free neurons strictly inside (0, 1); the others are held by the clip."""
    complementary: jax.Array
    """Every saturated neuron is strictly pushed outwards (ds/dt > 0 at 1, < 0 at 0), so it stays saturated."""
    fixed_point_residual: jax.Array
    """||clip(s + dt ds/dt) - s||_inf: how far the given state is from a fixed point of the free phase."""
    system_matrix: jax.Array
    """A_loc: A on the interior block, saturated coordinates replaced by decoupled -1 (n_free, n_free)."""
    spectral_abscissa: jax.Array
    """max Re lambda(A_loc)."""
    hurwitz: jax.Array
    """spectral_abscissa < 0."""
    gershgorin: Gershgorin
    """Gershgorin flags of A_loc (sufficient condition for hurwitz)."""
    lyapunov: LyapunovSolution
    """P from A_loc^T P + P A_loc = -I (P > 0 iff hurwitz); V(s) = (s - s*)^T P (s - s*)."""
    euler_spectral_radius: jax.Array
    """rho(I + dt A_loc): the Euler free phase converges locally iff < 1."""
    locally_stable: jax.Array
    """Proof of local exponential stability of the clipped Euler free phase at s*: hurwitz, Euler radius < 1,
    strict complementarity and a small fixed-point residual."""
    contraction_norm: jax.Array
    """min over p in {1, 2, inf} of ||I + dt A||_p for the full free block A (>= 1 on DEEP's graphs)."""
    globally_stable: jax.Array
    """contraction_norm < 1: the clipped free phase would be a global contraction (unique attracting fixed point)."""


def free_phase_stability(
    weights: jax.Array,
    state: jax.Array,
    *,
    num_inputs: int,
    dt: float,
    field: Field = deep_field,
    tolerance: float = 1e-6,
) -> Stability:
    """Given a trained directed network W (N, N) and the state its free phase reached for one input (N,), say
    whether the clipped Euler free phase is provably stable there (locally) or everywhere (globally); see the module
    docstring. ``field`` is DEEP's (default) or EP_asym's :func:`~jeq.eqprop.ep_asym.leaky_field` (any field
    linear in s).

    ``tolerance`` separates saturated neurons (within it of 0 or 1) from interior ones and bounds the fixed-point
    residual. One example; vmap over inputs.

    EP_asym's leaky field with small weights: the free phase is a global contraction, and stable at the state it
    reaches; DEEP's field on the same graph is never a global contraction (1^T (I + dt A) = 1^T):

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq import eqprop
    >>> graph = eqprop.complete_graph(num_inputs=2, num_hidden=2, num_outputs=1)
    >>> weights = eqprop.init_weights(jax.random.key(0), graph, std=0.2)
    >>> s0 = jnp.zeros(5).at[:2].set(1.0)  # the two inputs clamped at 1
    >>> free = eqprop.relax_field(eqprop.leaky_field, weights, s0, num_inputs=2, num_outputs=1, steps=600, dt=0.05)
    >>> @jax.jit
    ... def reports(weights, state):
    ...     leaky = eqprop.free_phase_stability(weights, state, num_inputs=2, dt=0.05, field=eqprop.leaky_field)
    ...     return leaky, eqprop.free_phase_stability(weights, state, num_inputs=2, dt=0.05)  # DEEP's field
    >>> leaky, deep = reports(weights, free.final)
    >>> bool(leaky.globally_stable), bool(leaky.hurwitz), bool(leaky.locally_stable), bool(deep.globally_stable)
    (True, True, True, False)
    """
    validate.positive("jeq.eqprop.free_phase_stability", "dt", dt)
    a = system_matrix(weights, num_inputs=num_inputs, field=field)
    n = weights.shape[0]
    state = validate.array("jeq.eqprop.free_phase_stability", "state", jnp.asarray(state, a.dtype), shape=(n,))
    free = state[num_inputs:]
    velocity = field(weights, state)[num_inputs:]
    residual = jnp.max(jnp.abs(jnp.clip(free + dt * velocity, 0.0, 1.0) - free))
    interior = (free > tolerance) & (free < 1.0 - tolerance)
    pushed = jnp.where(free >= 1.0 - tolerance, velocity > 0, velocity < 0)
    complementary = jnp.all(interior | pushed)
    both = interior[:, None] & interior[None, :]
    eye = jnp.eye(a.shape[0], dtype=a.dtype)
    a_loc = jnp.where(both, a, 0.0) - jnp.diag(jnp.where(interior, 0.0, 1.0)).astype(a.dtype)
    abscissa = spectral_abscissa(a_loc)
    radius = jnp.max(jnp.abs(jnp.linalg.eigvals(eye + dt * a_loc)))
    step = eye + dt * a
    norm = jnp.minimum(jnp.minimum(jnp.linalg.norm(step, 1), jnp.linalg.norm(step, 2)),
                       jnp.linalg.norm(step, jnp.inf))
    local = (abscissa < 0) & (radius < 1) & complementary & (residual <= tolerance)
    return Stability(interior, complementary, residual, a_loc, abscissa, abscissa < 0, gershgorin(a_loc),
                     solve_lyapunov(a_loc), radius, local, norm, norm < 1)
