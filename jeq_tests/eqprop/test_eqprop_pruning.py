"""Boltzmann pruning: the notebook's normalisation over all rows (and the weak-only one), strong edges and masks are
safe, the prune interval and permanence of scheduled_prune."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jeq.data import logic_gates
from jeq.eqprop import boltzmann_prune, complete_graph, deep, pruning_probabilities, scheduled_prune, sparsity

GRAPH = complete_graph(num_inputs=3, num_hidden=5, num_outputs=1)
PRUNE = jax.jit(boltzmann_prune, static_argnames=("threshold", "temperature", "normalisation"))
SCHEDULED = jax.jit(scheduled_prune, static_argnames=("interval", "permanent", "threshold", "temperature",
                                                      "normalisation"))


def _notebook_probabilities(w: np.ndarray, tol_w: float, temp: float) -> np.ndarray:
    """The DEEP notebook's ``sparse`` cell, transcribed (W already masked: absent edges are 0)."""
    strong = (w < -tol_w) | (w > tol_w)
    probs = np.exp(-np.abs(w) / temp) / np.sum(np.exp(-np.abs(w) / temp), axis=0)
    probs[strong] = 0
    return probs


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), threshold=st.sampled_from([0.005, 0.02, 0.1]),
       temperature=st.sampled_from([0.001, 0.05, 5.0]))
def test_weak_normalisation_is_a_distribution_over_each_neurons_weak_incoming_edges(seed, threshold, temperature):
    w = jnp.asarray(np.random.default_rng(seed).normal(0, 0.03, (9, 9)).astype(np.float32)) * GRAPH.mask
    p = np.asarray(pruning_probabilities(w, GRAPH.mask, threshold=threshold, temperature=temperature,
                                         normalisation="weak"))
    weak = (GRAPH.mask > 0) & (np.abs(np.asarray(w)) < threshold)
    assert np.all(p[~weak] == 0) and np.all(p >= 0)
    sums = p.sum(axis=0)
    has_weak = weak.any(axis=0)
    np.testing.assert_allclose(sums[has_weak], 1.0, rtol=1e-5)
    assert np.all(sums[~has_weak] == 0)
    # Boltzmann: within a column, a weaker edge is at least as likely to be removed.
    for j in np.flatnonzero(has_weak):
        order = np.argsort(np.abs(np.asarray(w)[weak[:, j], j]))
        assert np.all(np.diff(p[weak[:, j], j][order]) <= 1e-7)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), threshold=st.sampled_from([0.005, 0.02, 0.1]),
       temperature=st.sampled_from([0.01, 0.05, 5.0]))
def test_default_normalisation_is_the_notebooks_boltzmann_distribution_over_all_rows(seed, threshold, temperature):
    """Reference (issue 15, item 9): Z_j sums over all N rows of column j, strong and absent edges included, so the
    full column is a distribution (sums to 1) and the weak edges get their share of it."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(seed)
        w = rng.normal(0, 0.03, (9, 9)) * GRAPH.mask
        p = np.asarray(pruning_probabilities(jnp.asarray(w), GRAPH.mask, threshold=threshold,
                                             temperature=temperature))
        reference = _notebook_probabilities(w, threshold, temperature)
        np.testing.assert_allclose(p, reference * GRAPH.mask, rtol=1e-10, atol=1e-300)
        full_column = np.exp(-np.abs(w) / temperature)
        np.testing.assert_allclose((full_column / full_column.sum(axis=0)).sum(axis=0), 1.0)
        assert np.all(p.sum(axis=0) <= 1 + 1e-12)


def test_a_neuron_with_one_weak_incoming_edge_no_longer_loses_it_every_round(key):
    """Old default (weak-only normalisation): p = 1 for a lone weak edge, so it always went. Reference: p ~ 1/N."""
    w = np.where(GRAPH.mask > 0, 0.5, 0.0).astype(np.float32)
    w[0, 8] = 0.001  # the only weak edge into the output neuron 8
    w = jnp.asarray(w)
    weak_only = pruning_probabilities(w, GRAPH.mask, threshold=0.01, temperature=5.0, normalisation="weak")
    reference = pruning_probabilities(w, GRAPH.mask, threshold=0.01, temperature=5.0)
    assert float(weak_only[0, 8]) == pytest.approx(1.0)
    z = 7 * np.exp(-0.5 / 5.0) + np.exp(-0.001 / 5.0) + 1.0  # 7 strong edges, the weak one, the absent self-loop
    assert float(reference[0, 8]) == pytest.approx(np.exp(-0.001 / 5.0) / z, rel=1e-5)
    assert float(jnp.sum(reference)) == pytest.approx(float(reference[0, 8]))  # no other edge is a candidate
    removed = jax.vmap(lambda k: PRUNE(k, w, jnp.asarray(GRAPH.mask)).mask[0, 8] == 0)(jax.random.split(key, 4000))
    assert float(jnp.mean(removed)) == pytest.approx(float(reference[0, 8]), abs=0.02)


def test_strong_weights_are_never_pruned_and_masks_are_respected(key):
    rng = np.random.default_rng(0)
    w = jnp.asarray(rng.normal(0, 0.02, (9, 9)).astype(np.float32)) * GRAPH.mask
    strong = (np.abs(np.asarray(w)) >= 0.01) & (GRAPH.mask > 0)
    for k in jax.random.split(key, 50):
        out = PRUNE(k, w, jnp.asarray(GRAPH.mask), threshold=0.01, temperature=5.0)
        np.testing.assert_array_equal(np.asarray(out.weights)[strong], np.asarray(w)[strong])
        assert np.all(np.asarray(out.weights)[GRAPH.mask == 0] == 0)
        assert np.all(np.asarray(out.mask) <= GRAPH.mask)
        assert np.all(np.asarray(out.weights)[np.asarray(out.mask) == 0] == 0)
        removed = (GRAPH.mask > 0) & (np.asarray(out.mask) == 0)
        assert float(out.pruned_fraction) == pytest.approx(removed.sum() / GRAPH.mask.sum())


@pytest.mark.parametrize("normalisation", ["all", "weak"])
def test_removal_frequency_matches_the_probabilities(key, normalisation):
    """P(edge i -> j removed) = P(u < p_ij) = p_ij, for both normalisations."""
    w = jnp.asarray(np.random.default_rng(1).uniform(-0.009, 0.009, (9, 9)).astype(np.float32)) * GRAPH.mask
    outs = jax.vmap(lambda k: PRUNE(k, w, jnp.asarray(GRAPH.mask), threshold=0.01, temperature=0.002,
                                    normalisation=normalisation))(jax.random.split(key, 2000))
    assert float(jnp.max(outs.probabilities[0])) > 0.1
    freq = 1.0 - np.asarray(outs.mask).mean(axis=0)
    np.testing.assert_allclose(freq[GRAPH.mask > 0], np.asarray(outs.probabilities[0])[GRAPH.mask > 0], atol=0.04)


class TestPruningOpsJittedAndNot(chex.TestCase):
    """Pruning and sparsity, each checked jitted and not jitted."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_pruning_is_deterministic_given_the_key(self):
        w = jnp.asarray(np.random.default_rng(2).normal(0, 0.01, (9, 9)).astype(np.float32)) * GRAPH.mask
        prune = self.variant(boltzmann_prune, static_argnames=("threshold", "temperature"))
        a, b, c = (prune(jax.random.key(k), w, jnp.asarray(GRAPH.mask), threshold=0.01, temperature=0.01)
                   for k in (3, 3, 4))
        chex.assert_trees_all_equal(a, b)
        assert not np.array_equal(np.asarray(a.mask), np.asarray(c.mask))
        chex.assert_trees_all_close(a, PRUNE(jax.random.key(3), w, jnp.asarray(GRAPH.mask), threshold=0.01,
                                             temperature=0.01))  # the same result jitted and not

    @chex.variants(with_jit=True, without_jit=True)
    def test_sparsity_counts_zero_weights_on_allowed_edges(self):
        mask = jnp.array([[0.0, 1.0], [1.0, 1.0]])
        assert float(self.variant(sparsity)(jnp.array([[5.0, 0.0], [2.0, 0.0]]), mask)) == pytest.approx(2 / 3)

    @chex.variants(with_jit=True, without_jit=True)
    def test_probabilities_of_a_column_are_its_weak_edges_boltzmann_weights(self):
        w = jnp.array([[0.0, 0.004], [0.0, 0.002], [0.0, 0.5]])  # column 1: two weak edges, one strong
        mask = jnp.array([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
        probabilities = self.variant(pruning_probabilities,
                                     static_argnames=("threshold", "temperature", "normalisation"))
        p = probabilities(w, mask, threshold=0.01, temperature=0.001, normalisation="weak")
        e = np.exp([-4.0, -2.0])
        chex.assert_trees_all_close(p, jnp.array([[0.0, e[0] / e.sum()], [0.0, e[1] / e.sum()], [0.0, 0.0]]),
                                    rtol=1e-5)
        p = probabilities(w, mask, threshold=0.01, temperature=0.25)  # all rows: the strong edge counts in Z
        e = np.exp([-0.016, -0.008, -2.0])
        chex.assert_trees_all_close(p, jnp.array([[0.0, e[0] / e.sum()], [0.0, e[1] / e.sum()], [0.0, 0.0]]),
                                    rtol=1e-5)


def test_scheduled_prune_acts_every_interval_steps_only(key):
    w = jnp.asarray(np.random.default_rng(3).uniform(-0.009, 0.009, (9, 9)).astype(np.float32)) * GRAPH.mask
    mask = jnp.asarray(GRAPH.mask)
    for step in range(12):
        out = SCHEDULED(jax.random.fold_in(key, step), w, mask, step, interval=4, temperature=0.002)
        if (step + 1) % 4:
            chex.assert_trees_all_equal((out.weights, out.mask), (w, mask))
            assert float(out.pruned_fraction) == 0 and float(jnp.max(out.probabilities)) == 0
        else:
            ref = PRUNE(jax.random.fold_in(key, step), w, mask, temperature=0.002)
            chex.assert_trees_all_equal(out, ref)
            assert float(out.pruned_fraction) > 0


def test_non_permanent_pruning_lets_the_next_update_regrow_an_edge_as_in_the_notebook(key):
    x, y = logic_gates("AND")
    learner = deep(GRAPH, free_steps=30, nudged_steps=30)
    w = learner.init(key)
    mask = jnp.asarray(GRAPH.mask)
    kept = SCHEDULED(jax.random.key(1), w, mask, 0, permanent=False, threshold=0.2, temperature=0.01)
    gone = SCHEDULED(jax.random.key(1), w, mask, 0, permanent=True, threshold=0.2, temperature=0.01)
    chex.assert_trees_all_equal(kept.weights, gone.weights)  # the same round, the same weights set to 0
    chex.assert_trees_all_equal(kept.mask, mask)  # notebook: the structure is unchanged
    removed = np.asarray((mask > 0) & (gone.mask == 0))
    assert removed.sum() > 0 and np.all(np.asarray(kept.weights)[removed] == 0)
    regrown, _ = learner.update(kept.weights, jax.random.key(2), x, y)
    assert np.any(np.asarray(regrown)[removed] != 0)  # kept.mask still allows them: the next round may prune again


def test_masks_are_respected_after_training_with_l1_and_scheduled_pruning(key):
    x, y = logic_gates("AND")
    learner = deep(GRAPH, free_steps=30, nudged_steps=30, l1_strength=1.5e-4)

    @jax.jit
    def epoch(carry, inputs):
        w, mask = carry
        k, step = inputs
        k1, k2 = jax.random.split(k)
        w, _ = learner.update(w, k1, x, y)
        pruned = scheduled_prune(k2, w * mask, mask, step, interval=3)
        return (pruned.weights, pruned.mask), sparsity(pruned.weights, jnp.asarray(GRAPH.mask))

    (w, mask), sparse = jax.lax.scan(epoch, (learner.init(key), jnp.asarray(GRAPH.mask)),
                                     (jax.random.split(key, 30), jnp.arange(30)))
    assert np.all(np.asarray(w)[GRAPH.mask == 0] == 0)
    assert np.all(np.asarray(w)[np.asarray(mask) == 0] == 0)
    sparse = np.asarray(sparse)
    assert float(sparse[-1]) > 0 and np.all(np.diff(sparse) >= 0)  # permanent pruning only grows
    assert np.all(np.diff(sparse)[np.arange(1, 30) % 3 != 2] == 0)  # it grows only on the steps that prune


def test_bad_input_gives_clear_errors(key):
    w = jnp.zeros((3, 3))
    with pytest.raises(ValueError, match=r"jeq.eqprop.pruning_probabilities\(threshold=-1.0\): must be >= 0"):
        pruning_probabilities(w, w, threshold=-1.0, temperature=1.0)
    with pytest.raises(ValueError, match=r"jeq.eqprop.pruning_probabilities\(temperature=0.0\): must be > 0"):
        pruning_probabilities(w, w, threshold=0.1, temperature=0.0)
    with pytest.raises(ValueError, match=r"jeq.eqprop.boltzmann_prune\(threshold=-1.0\): must be >= 0"):
        boltzmann_prune(key, w, w, threshold=-1.0)
    with pytest.raises(ValueError, match=r"boltzmann_prune\(normalisation='rows'\): must be one of \['all', 'weak'\]"):
        boltzmann_prune(key, w, w, normalisation="rows")
    with pytest.raises(ValueError, match=r"jeq.eqprop.scheduled_prune\(interval=0\): must be an int >= 1"):
        scheduled_prune(key, w, w, 0, interval=0)
    with pytest.raises(ValueError, match=r"boltzmann_prune\(mask\): must have shape \(3, 3\), got shape \(2, 3\)"):
        boltzmann_prune(key, w, jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"boltzmann_prune\(weights\): must have 2 axes"):
        boltzmann_prune(key, jnp.zeros(3), jnp.zeros(3))
