"""Stability of DEEP's free phase: system matrix, spectral abscissa, Gershgorin flags, Lyapunov equation, V(s).

DEEP's free phase on the free (non-input) neurons is affine (spec ``eqprop.md`` §2, derived):

    ds_f/dt = A s_f + c(x),   A = [W^T - diag(W 1)]_{free, free},   c(x) = W[inputs, free]^T x

* A Hurwitz (spectral abscissa max Re lambda(A) < 0) <=> A^T P + P A = -Q has a solution P > 0 for Q > 0; then
  V(s) = (s - s*)^T P (s - s*), s* = -A^{-1} c(x), decreases along the unclipped flow (dV/dt = -(s-s*)^T Q (s-s*)).
* Gershgorin: diagonal A_jj = -sum_k W_jk < 0 and off-diagonal absolute row (or column) sums below |A_jj| is a
  sufficient condition for A Hurwitz (only sufficient).
* The free phase actually run is the clipped Euler map s <- clip(s + dt (A s + c), 0, 1). Clipping is 1-Lipschitz per
  coordinate, hence non-expansive in every l_p norm, so ||I + dt A||_p < 1 for p in {1, 2, inf} makes the map a
  contraction: a unique fixed point in the box that attracts every initial state (derived). This is the certificate
  that the free phase is *provably* stable; Hurwitz alone only covers the linearisation.

For energy-based EP (:mod:`jeq.eqprop.hopfield`) the Lyapunov function is the energy itself
(:func:`jeq.eqprop.hopfield.energy_certificate`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = [
    "Gershgorin",
    "LyapunovSolution",
    "Stability",
    "free_equilibrium",
    "free_phase_stability",
    "gershgorin",
    "input_drive",
    "lyapunov_along",
    "solve_lyapunov",
    "spectral_abscissa",
    "system_matrix",
]


def _square(function: str, name: str, a: jax.Array) -> jax.Array:
    a = jnp.asarray(a)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"jeq.eqprop.{function}({name}): must be a square matrix, got shape {a.shape}")
    return a


def _check_inputs(function: str, weights: jax.Array, num_inputs: int) -> None:
    n = weights.shape[0]
    if isinstance(num_inputs, bool) or not isinstance(num_inputs, int) or not 0 <= num_inputs < n:
        raise ValueError(f"jeq.eqprop.{function}(num_inputs={num_inputs!r}): must be an integer in [0, N) with "
                         f"N = {n}")


def system_matrix(weights: jax.Array, *, num_inputs: int) -> jax.Array:
    """A = [W^T - diag(W 1)]_{free, free}: DEEP's free-neuron Jacobian (n_free, n_free), n_free = N - num_inputs."""
    weights = _square("system_matrix", "weights", weights)
    _check_inputs("system_matrix", weights, num_inputs)
    full = weights.T - jnp.diag(jnp.sum(weights, axis=1))
    return full[num_inputs:, num_inputs:]


def input_drive(weights: jax.Array, x: jax.Array, *, num_inputs: int) -> jax.Array:
    """c(x) = W[inputs, free]^T x: the constant inflow of the clamped inputs into the free neurons (one example)."""
    weights = _square("input_drive", "weights", weights)
    _check_inputs("input_drive", weights, num_inputs)
    x = jnp.asarray(x, weights.dtype)
    if x.shape != (num_inputs,):
        raise ValueError(f"jeq.eqprop.input_drive(x): shape {x.shape} does not match num_inputs {num_inputs}")
    return x @ weights[:num_inputs, num_inputs:]


def free_equilibrium(weights: jax.Array, x: jax.Array, *, num_inputs: int) -> jax.Array:
    """s* = -A^{-1} c(x): the equilibrium of the unclipped free flow (free neurons only; may lie outside [0, 1])."""
    a = system_matrix(weights, num_inputs=num_inputs)
    return -jnp.linalg.solve(a, input_drive(weights, x, num_inputs=num_inputs))


def spectral_abscissa(a: jax.Array) -> jax.Array:
    """max Re lambda(A); A is Hurwitz iff it is < 0. (Non-symmetric eigenvalues: CPU backend.)"""
    a = _square("spectral_abscissa", "a", a)
    return jnp.max(jnp.real(jnp.linalg.eigvals(a)))


class Gershgorin(NamedTuple):
    """Gershgorin disc flags for A (sufficient, not necessary, for Hurwitz)."""

    negative_diagonal: jax.Array
    """All A_jj < 0 (for DEEP: every free neuron has positive total outgoing weight)."""
    row_dominant: jax.Array
    """sum_{i != j} |A_ji| < |A_jj| for every row j."""
    column_dominant: jax.Array
    """sum_{i != j} |A_ij| < |A_jj| for every column j."""
    hurwitz_certified: jax.Array
    """negative_diagonal and (row_dominant or column_dominant): every eigenvalue has Re < 0."""


def gershgorin(a: jax.Array) -> Gershgorin:
    """Gershgorin check of A: Re lambda <= max_j (A_jj + R_j) with R_j the row (or column) off-diagonal l1 sum."""
    a = _square("gershgorin", "a", a)
    diag = jnp.diag(a)
    off = jnp.abs(a - jnp.diag(diag))
    negative = jnp.all(diag < 0)
    rows = jnp.all(jnp.sum(off, axis=1) < jnp.abs(diag))
    cols = jnp.all(jnp.sum(off, axis=0) < jnp.abs(diag))
    return Gershgorin(negative, rows, cols, negative & (rows | cols))


class LyapunovSolution(NamedTuple):
    """Solution of A^T P + P A = -Q."""

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
    """
    a = _square("solve_lyapunov", "a", a)
    n = a.shape[0]
    q = jnp.eye(n, dtype=a.dtype) if q is None else _square("solve_lyapunov", "q", q).astype(a.dtype)
    if q.shape != a.shape:
        raise ValueError(f"jeq.eqprop.solve_lyapunov(q): shape {q.shape} does not match a {a.shape}")
    eye = jnp.eye(n, dtype=a.dtype)
    kron = jnp.kron(a.T, eye) + jnp.kron(eye, a.T)
    p = jnp.linalg.solve(kron, -q.reshape(-1)).reshape(n, n)
    p = 0.5 * (p + p.T)
    residual = jnp.linalg.norm(a.T @ p + p @ a + q) / jnp.linalg.norm(q)
    lam = jnp.linalg.eigvalsh(p)[0]
    tol = 10.0 * jnp.sqrt(jnp.finfo(a.dtype).eps)
    return LyapunovSolution(p, residual, lam, (lam > 0) & (residual < tol))


def lyapunov_along(p: jax.Array, states: jax.Array, equilibrium: jax.Array) -> jax.Array:
    """V(s(t)) = (s(t) - s*)^T P (s(t) - s*) for each row of ``states`` (T, n) (free neurons only)."""
    p = _square("lyapunov_along", "p", p)
    states = jnp.asarray(states, p.dtype)
    if states.ndim != 2 or states.shape[1] != p.shape[0] or equilibrium.shape != (p.shape[0],):
        raise ValueError(f"jeq.eqprop.lyapunov_along(states, equilibrium): shapes {states.shape}, "
                         f"{equilibrium.shape} do not match P {p.shape}; expected (T, {p.shape[0]}) and "
                         f"({p.shape[0]},)")
    d = states - equilibrium
    return jnp.einsum("ti,ij,tj->t", d, p, d)


class Stability(NamedTuple):
    """Stability report of a trained DEEP network's free phase."""

    spectral_abscissa: jax.Array
    """max Re lambda(A)."""
    hurwitz: jax.Array
    """spectral_abscissa < 0: the unclipped continuous flow is globally exponentially stable."""
    gershgorin: Gershgorin
    """Gershgorin flags (sufficient condition for hurwitz)."""
    lyapunov: LyapunovSolution
    """P from A^T P + P A = -I (P > 0 iff hurwitz)."""
    euler_spectral_radius: jax.Array
    """rho(I + dt A): the unclipped Euler iteration converges iff < 1."""
    contraction_norm: jax.Array
    """min over p in {1, 2, inf} of ||I + dt A||_p."""
    provably_stable: jax.Array
    """contraction_norm < 1: the clipped Euler free phase is a contraction in some l_p norm (unique, globally
    attracting fixed point in [0, 1]^n_free for every input)."""


def free_phase_stability(weights: jax.Array, *, num_inputs: int, dt: float) -> Stability:
    """Given a trained DEEP network (W, N x N), say whether its free phase is provably stable (see module doc)."""
    if not isinstance(dt, (int, float)) or not dt > 0:
        raise ValueError(f"jeq.eqprop.free_phase_stability(dt={dt!r}): must be a number > 0")
    a = system_matrix(weights, num_inputs=num_inputs)
    abscissa = spectral_abscissa(a)
    step = jnp.eye(a.shape[0], dtype=a.dtype) + dt * a
    radius = jnp.max(jnp.abs(jnp.linalg.eigvals(step)))
    norm = jnp.minimum(jnp.minimum(jnp.linalg.norm(step, 1), jnp.linalg.norm(step, 2)),
                       jnp.linalg.norm(step, jnp.inf))
    return Stability(abscissa, abscissa < 0, gershgorin(a), solve_lyapunov(a), radius, norm, norm < 1)
