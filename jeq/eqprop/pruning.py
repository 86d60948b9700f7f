"""Boltzmann pruning of weak incoming edges (DEEP notebooks' ``sparse`` option; Farinha et al., ESANN 2020).

Only weak existing edges, |W_ij| < threshold (the notebooks' ``tol_W``), are candidates; strong edges are never
removed. For each neuron j the candidates' removal probabilities form a Boltzmann distribution over its incoming
weak edges at temperature T (the notebooks' ``temp``):

    p_ij = exp(-|W_ij| / T) / sum_{i' weak -> j} exp(-|W_i'j| / T),    W_ij <- 0 when p_ij > u_ij ~ U(0, 1)

so weaker edges are likelier to go and sum_i p_ij = 1 for every neuron with at least one weak incoming edge.
Difference from the notebooks (documented): they normalise over *all* N rows of column j (strong edges and absent
edges included, each absent edge adding exp(0) = 1) and then zero the strong ones, so their probabilities do not
sum to 1; here the distribution is over the weak existing edges, as the paper describes it. Works for any 2-D weight
matrix whose ``W[i, j]`` is the edge i -> j (a DEEP graph or one layer of a Hopfield network).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jeq import validate

__all__ = ["Pruning", "boltzmann_prune", "pruning_probabilities", "sparsity"]


class Pruning(NamedTuple):
    """Result of one pruning round."""

    weights: jax.Array
    """Weights with the pruned edges set to 0 (same shape as the input)."""
    mask: jax.Array
    """Edge mask with the pruned edges removed (keep it to make pruning permanent, as in a sparse network)."""
    probabilities: jax.Array
    """p_ij, 0 for strong or absent edges; each column with a weak edge sums to 1."""
    pruned_fraction: jax.Array
    """Fraction of the existing edges (mask = 1) removed in this round."""


def _check_arguments(function: str, weights, mask, threshold, temperature) -> None:
    """The checks both public functions share (on jeq.validate): W 2-D (W[i, j] = edge i -> j), mask like W."""
    where = f"jeq.eqprop.{function}"
    validate.array(where, "weights", weights, ndim=2)
    validate.array(where, "mask", mask, shape=weights.shape)
    validate.nonnegative(where, "threshold", threshold)
    validate.positive(where, "temperature", temperature)


def pruning_probabilities(weights: jax.Array, mask: jax.Array, *, threshold: float, temperature: float) -> jax.Array:
    """p_ij = exp(-|W_ij|/T) / sum_{i' weak -> j} exp(-|W_i'j|/T) on weak existing edges (|W_ij| < threshold), else 0.

    Columns index the receiving neuron j; a column without weak edges is all zeros.
    """
    weights, mask = jnp.asarray(weights), jnp.asarray(mask)
    _check_arguments("pruning_probabilities", weights, mask, threshold, temperature)
    weak = (mask > 0) & (jnp.abs(weights) < threshold)
    logits = jnp.where(weak, -jnp.abs(weights) / temperature, -jnp.inf)
    top = jnp.max(logits, axis=0, keepdims=True)
    unnormalised = jnp.where(weak, jnp.exp(logits - jnp.where(jnp.isfinite(top), top, 0.0)), 0.0)
    total = jnp.sum(unnormalised, axis=0, keepdims=True)
    return jnp.where(total > 0, unnormalised / jnp.where(total > 0, total, 1.0), 0.0)


def boltzmann_prune(
    key: jax.Array, weights: jax.Array, mask: jax.Array, *, threshold: float = 0.01, temperature: float = 5.0
) -> Pruning:
    """One round of Boltzmann pruning: remove weak edge i -> j when p_ij > u_ij, u ~ U(0, 1) drawn from ``key``.

    Defaults are the notebooks' tol_W = 0.01 and temp = 5. Strong edges (|W_ij| >= threshold) are never removed.
    """
    weights, mask = jnp.asarray(weights), jnp.asarray(mask, weights.dtype)
    _check_arguments("boltzmann_prune", weights, mask, threshold, temperature)
    p = pruning_probabilities(weights, mask, threshold=threshold, temperature=temperature)
    removed = (p > jax.random.uniform(key, p.shape, p.dtype)) & (p > 0)
    new_mask = jnp.where(removed, 0.0, mask).astype(mask.dtype)
    existing = jnp.maximum(jnp.sum(mask > 0), 1)
    return Pruning(weights * new_mask, new_mask, p, jnp.sum(removed) / existing)


def sparsity(weights: jax.Array, mask: jax.Array) -> jax.Array:
    """Fraction of a graph's allowed edges (``mask`` = 1, the structural mask) whose weight is exactly 0."""
    weights, mask = jnp.asarray(weights), jnp.asarray(mask)
    allowed = mask > 0
    return jnp.sum(allowed & (weights == 0)) / jnp.maximum(jnp.sum(allowed), 1)
