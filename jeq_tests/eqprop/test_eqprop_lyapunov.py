"""Stability of DEEP's free phase: Lyapunov solver, Gershgorin, the never-Hurwitz property, V along trajectories."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

from jeq.eqprop import (
    complete_graph,
    deep_field,
    free_phase_stability,
    gershgorin,
    init_weights,
    layered_graph,
    leaky_field,
    lyapunov_along,
    relax_field,
    solve_lyapunov,
    spectral_abscissa,
    system_matrix,
)

LYAPUNOV = jax.jit(solve_lyapunov)
STABILITY = jax.jit(free_phase_stability, static_argnames=("num_inputs", "dt", "field", "tolerance"))


def _hurwitz(seed: int, n: int) -> np.ndarray:
    a = np.random.default_rng(seed).normal(size=(n, n))
    return a - (np.max(np.real(np.linalg.eigvals(a))) + 0.5) * np.eye(n)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.sampled_from([1, 3, 6]))
def test_lyapunov_solution_satisfies_the_equation_and_is_positive_definite(seed, n):
    with jax.enable_x64(True):
        a = _hurwitz(seed, n)
        q = np.eye(n) + 0.1 * np.ones((n, n))
        sol = LYAPUNOV(jnp.asarray(a), jnp.asarray(q))
        p = np.asarray(sol.P)
        np.testing.assert_allclose(a.T @ p + p @ a + q, 0, atol=1e-9 * np.abs(p).max())
        assert float(sol.residual) < 1e-10 and bool(sol.positive_definite)
        chex.assert_trees_all_close(p, scipy.linalg.solve_continuous_lyapunov(a.T, -q), rtol=1e-8, atol=1e-10)


class TestLyapunovOpsJittedAndNot(chex.TestCase):
    """The Lyapunov solver, the spectral abscissa, the system matrix and Gershgorin, each jitted and not."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_lyapunov_detects_an_unstable_matrix(self):
        with jax.enable_x64(True):
            a = jnp.asarray(_hurwitz(0, 4) + 1.0 * np.eye(4))  # abscissa +0.5
            sol = self.variant(solve_lyapunov)(a)
            assert float(sol.residual) < 1e-10  # the equation is solvable, but P is indefinite
            assert not bool(sol.positive_definite) and float(sol.min_eigenvalue) < 0
            assert float(self.variant(spectral_abscissa)(a)) == pytest.approx(0.5, abs=1e-9)

    @chex.variants(with_jit=True, without_jit=True)
    def test_system_matrix_is_the_jacobian_of_the_free_flow(self):
        with jax.enable_x64(True):
            g = complete_graph(num_inputs=3, num_hidden=4, num_outputs=2)
            w = init_weights(jax.random.key(1), g, std=0.7, dtype=jnp.float64)
            s = jnp.linspace(0.1, 0.9, g.size)
            jac = jax.jacobian(deep_field, argnums=1)(w, s)
            a = self.variant(system_matrix, static_argnames=("num_inputs", "field"))(w, num_inputs=3)
            chex.assert_trees_all_close(a, jac[3:, 3:], atol=1e-14, rtol=0)

    @chex.variants(with_jit=True, without_jit=True)
    def test_gershgorin_flags_on_hand_checked_matrices(self):
        flags = self.variant(gershgorin)(jnp.array([[-3.0, 1.0], [1.0, -3.0]]))
        assert bool(flags.row_dominant) and bool(flags.column_dominant) and bool(flags.hurwitz_certified)
        flags = self.variant(gershgorin)(jnp.array([[-1.0, 1.5], [0.2, -2.0]]))  # dominant by columns only
        assert not bool(flags.row_dominant) and bool(flags.column_dominant)
        assert bool(flags.hurwitz_certified) and not bool(self.variant(gershgorin)(-jnp.eye(2) + 3.0).hurwitz_certified)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), hidden=st.sampled_from([2, 5]), layered=st.booleans())
def test_deep_free_flow_is_never_hurwitz_on_the_papers_graphs(seed, hidden, layered):
    """Derived: no edges into inputs and no self-loops => 1^T A = 0, an eigenvalue 0, column Gershgorin impossible."""
    with jax.enable_x64(True):
        g = (layered_graph(num_inputs=3, hidden_sizes=[hidden], num_outputs=1) if layered
             else complete_graph(num_inputs=3, num_hidden=hidden, num_outputs=1))
        w = np.random.default_rng(seed).normal(size=g.mask.shape) * g.mask
        column_sums, abscissa, column_dominant = _never_hurwitz_check(jnp.asarray(w))
        np.testing.assert_allclose(column_sums, 0.0, atol=1e-12)
        assert float(abscissa) > -1e-9
        assert not bool(column_dominant)


@jax.jit
def _never_hurwitz_check(w):
    a = system_matrix(w, num_inputs=3)
    return jnp.sum(a, axis=0), spectral_abscissa(a), gershgorin(a).column_dominant


def test_one_transpose_a_is_zero_so_the_specs_global_hurwitz_check_can_never_hold_for_deep(x64):
    """README note (issue 15, item 10). DEEP's free block A = [W^T - diag(W 1)]_free is a Laplacian-like flow: column
    i of A sums to sum_j W_ij - sum_k W_ik = 0 (no edges into inputs, no self-loops), so 1^T A = 0, the free
    neurons' total activity changes at the constant rate 1^T c(x) whatever the state, A is singular, and the spec's
    global check (A Hurwitz, A^T P + P A = -I with P > 0) fails for every W. jeq checks the clipped flow locally
    instead (free_phase_stability, see test_v_decreases_along_...)."""
    g = complete_graph(num_inputs=3, num_hidden=5, num_outputs=1)
    w = init_weights(jax.random.key(4), g, std=0.5, dtype=jnp.float64)
    a = system_matrix(w, num_inputs=3)
    wn = np.asarray(w)
    by_hand = np.array([wn[i, 3:].sum() - wn[i].sum() for i in range(3, 9)])  # column sums of A, from W
    np.testing.assert_allclose(by_hand, 0.0, atol=1e-15)
    np.testing.assert_allclose(jnp.ones(6) @ a, 0.0, atol=1e-12)
    x = jnp.array([0.0, 1.0, 1.0])
    inflow = float(jnp.sum(w[:3, 3:].T @ x))  # 1^T c(x)
    for seed in range(5):
        s = jnp.concatenate([x, jnp.asarray(np.random.default_rng(seed).uniform(size=6))])
        assert float(jnp.sum(deep_field(w, s)[3:])) == pytest.approx(inflow, abs=1e-12)
    assert np.min(np.abs(np.linalg.eigvals(np.asarray(a)))) < 1e-12 and float(spectral_abscissa(a)) > -1e-12
    assert not bool(LYAPUNOV(a).positive_definite)
    assert not bool(gershgorin(a).hurwitz_certified)


def test_gershgorin_certificate_implies_hurwitz(x64):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 5, 5)) * 0.3 - jax.vmap(jnp.diag)(rng.uniform(0.2, 2.0, (200, 5)))
    certified, abscissa = jax.jit(jax.vmap(lambda m: (gershgorin(m).hurwitz_certified, spectral_abscissa(m))))(a)
    assert int(certified.sum()) > 10
    assert np.all(np.asarray(abscissa)[np.asarray(certified)] < 0)


def test_v_decreases_along_a_deep_trajectory_where_the_free_phase_is_certified_stable(x64):
    """V(s) = (s - s*)^T P (s - s*) from A_loc^T P + P A_loc = -I decreases along DEEP's clipped Euler flow near s*."""
    g = complete_graph(num_inputs=2, num_hidden=4, num_outputs=1)
    x = jnp.array([0.7, 1.0])
    run = jax.jit(lambda w, s, steps: relax_field(deep_field, w, s, num_inputs=2, num_outputs=1, steps=steps, dt=0.05),
                  static_argnums=2)
    for seed in range(40):
        w = init_weights(jax.random.key(seed), g, std=0.5, dtype=jnp.float64)
        eq = run(w, jnp.concatenate([x, jnp.full(5, 0.5)]), 4000).final
        report = STABILITY(w, eq, num_inputs=2, dt=0.05, tolerance=1e-9)
        if int(report.interior.sum()) >= 2 and bool(report.locally_stable):
            break
    else:
        pytest.fail("no random DEEP network with >= 2 interior neurons and a certified free phase in 40 draws")
    lyap = report.lyapunov
    assert bool(report.hurwitz) and bool(lyap.positive_definite)
    a = report.system_matrix
    chex.assert_trees_all_close(a.T @ lyap.P + lyap.P @ a + jnp.eye(a.shape[0]), jnp.zeros_like(a), atol=1e-9)
    bump = jnp.where(report.interior, 0.02 * jnp.cos(jnp.arange(5.0)), 0.0)
    traj = run(w, eq.at[2:].add(bump), 600).states[:, 2:]
    v = np.asarray(lyapunov_along(lyap.P, traj, eq[2:]))
    assert v[0] > 1e-5 and v[-1] < 1e-3 * v[0]
    significant = v[:-1] > 1e-25
    assert np.all(np.diff(v)[significant] < 0)


def test_global_contraction_is_never_certified_on_deep_graphs(key):
    g = complete_graph(num_inputs=3, num_hidden=5, num_outputs=1)
    w = init_weights(key, g, std=0.3)
    s = jnp.concatenate([jnp.ones(3), jnp.full(6, 0.5)])
    report = STABILITY(w, s, num_inputs=3, dt=0.05)
    assert float(report.contraction_norm) >= 1 - 1e-6 and not bool(report.globally_stable)
    chex.assert_shape([report.system_matrix, report.interior], [(6, 6), (6,)])
    # A state that is not a fixed point is not certified, whatever the matrix.
    assert float(report.fixed_point_residual) > 1e-3 and not bool(report.locally_stable)


def test_bad_input_gives_clear_errors():
    with pytest.raises(ValueError, match=r"system_matrix\(weights\): must have shape \(3, 3\), got shape \(3, 4\)"):
        system_matrix(jnp.zeros((3, 4)), num_inputs=1)
    with pytest.raises(ValueError, match=r"solve_lyapunov\(a\): must have shape \(2, 2\)"):
        solve_lyapunov(jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"solve_lyapunov\(a\): must have 2 axes"):
        solve_lyapunov(jnp.zeros(3))
    with pytest.raises(ValueError, match=r"solve_lyapunov\(q\): must have shape \(2, 2\), got shape \(3, 3\)"):
        solve_lyapunov(jnp.eye(2), jnp.eye(3))
    with pytest.raises(ValueError, match=r"system_matrix\(num_inputs=5\): must be an int in \[0, 3\]"):
        system_matrix(jnp.zeros((4, 4)), num_inputs=5)
    with pytest.raises(ValueError, match=r"jeq.eqprop.free_phase_stability\(dt=-0.1\): must be > 0"):
        free_phase_stability(jnp.zeros((4, 4)), jnp.zeros(4), num_inputs=1, dt=-0.1)
    with pytest.raises(ValueError, match=r"free_phase_stability\(state\): must have shape \(4,\), got shape \(3,\)"):
        free_phase_stability(jnp.zeros((4, 4)), jnp.zeros(3), num_inputs=1, dt=0.1)
    with pytest.raises(ValueError, match=r"lyapunov_along\(states\): must have shape \(\*, 3\), got shape \(5, 2\)"):
        lyapunov_along(jnp.eye(3), jnp.zeros((5, 2)), jnp.zeros(3))


def test_a_leaky_ep_asym_network_with_small_weights_is_a_global_contraction(x64):
    """||I + dt A||_p < 1 for A = W^T - I: every initial state relaxes to the same fixed point."""
    g = complete_graph(num_inputs=3, num_hidden=5, num_outputs=1)
    w = init_weights(jax.random.key(4), g, std=0.1, dtype=jnp.float64)
    chex.assert_trees_all_close(system_matrix(w, num_inputs=3, field=leaky_field), w[3:, 3:].T - jnp.eye(6),
                                atol=1e-14, rtol=0)
    x = jnp.array([1.0, 0.0, 1.0])
    run = jax.jit(jax.vmap(lambda s: relax_field(leaky_field, w, s, num_inputs=3, num_outputs=1, steps=800, dt=0.05)))
    starts = jnp.concatenate([jnp.tile(x, (4, 1)), jax.random.uniform(jax.random.key(5), (4, 6))], axis=1)
    finals = run(starts).final
    chex.assert_trees_all_close(finals, jnp.tile(finals[:1], (4, 1)), atol=1e-9, rtol=0)
    report = STABILITY(w, finals[0], num_inputs=3, dt=0.05, field=leaky_field)
    assert float(report.contraction_norm) < 1 and bool(report.globally_stable) and bool(report.locally_stable)
