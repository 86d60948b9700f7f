"""Boltzmann pruning of weak incoming edges (DEEP notebooks' ``sparse`` option; Farinha et al., ESANN 2020).

Only weak existing edges, |W_ij| < threshold (the notebooks' ``tol_W``), are candidates; strong edges are never
removed. For each neuron j the removal probabilities are Boltzmann weights over its column at temperature T (the
notebooks' ``temp``):

    p_ij = exp(-|W_ij| / T) / Z_j   on weak existing edges, 0 elsewhere;   W_ij <- 0 when p_ij > u_ij ~ U(0, 1)

* ``normalisation="all"`` (default, the reference): Z_j = sum_{i'=1}^{N} exp(-|W_i'j| / T) over *all* N rows of
  column j, strong and absent edges included (an absent or pruned edge has W = 0 and adds exp(0) = 1), exactly the
  notebook's ``np.exp(-np.abs(W)/temp) / np.sum(np.exp(-np.abs(W)/temp), axis=0)`` followed by ``probs[strong] =
  0``; it is also the paper's sum over the incoming edges i' of j. The Boltzmann distribution sums to 1 over the
  whole column, so the weak edges' p_ij sum to at most 1 (about (#weak)/N at the default T = 5).
* ``normalisation="weak"``: Z_j sums over the weak existing edges only, so sum_i p_ij = 1 for every neuron with a
  weak incoming edge. This was jeq's earlier default; it removes about one edge per neuron per round, and a neuron
  with a single weak incoming edge loses it with probability 1 (issue 15, item 9), hence no longer the default.

:func:`scheduled_prune` applies a round every ``interval`` training steps (the notebook: after every epoch) and says
whether pruning is permanent (jeq's default: the mask shrinks) or, as in the notebook, only zeroes the weight,
which the next learning step may regrow. Works for any 2-D weight matrix whose ``W[i, j]`` is the edge i -> j (a
DEEP graph or one layer of a Hopfield network).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jeq import validate

__all__ = ["NORMALISATIONS", "Pruning", "boltzmann_prune", "pruning_probabilities", "scheduled_prune", "sparsity"]

NORMALISATIONS = ("all", "weak")
"""Choices of ``normalisation``: over all N rows of a column (the reference) or over its weak edges only."""


class Pruning(NamedTuple):
    """Result of one pruning round: W_ij <- 0 (and mask_ij <- 0) where p_ij > u_ij.

    A step that :func:`scheduled_prune` skips removes nothing:

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq import eqprop
    >>> weights = jnp.full((3, 3), 0.001)  # every edge weak
    >>> kept = eqprop.scheduled_prune(jax.random.key(0), weights, jnp.ones((3, 3)), 0, interval=2)  # prunes at 1, 3, ..
    >>> bool(jnp.all(kept.weights == weights)), float(kept.pruned_fraction), float(kept.probabilities.max())
    (True, 0.0, 0.0)
    """

    weights: jax.Array
    """Weights with the pruned edges set to 0 (same shape as the input)."""
    mask: jax.Array
    """Edge mask with the pruned edges removed (keep it to make pruning permanent, as in a sparse network)."""
    probabilities: jax.Array
    """p_ij, 0 for strong or absent edges (and for every edge in a step :func:`scheduled_prune` skips)."""
    pruned_fraction: jax.Array
    """Fraction of the existing edges (mask = 1) whose weight this round set to 0."""


def _check_arguments(function: str, weights, mask, threshold, temperature, normalisation) -> None:
    """The checks the public functions share (on jeq.validate): W 2-D (W[i, j] = edge i -> j), mask like W."""
    where = f"jeq.eqprop.{function}"
    validate.array(where, "weights", weights, ndim=2)
    validate.array(where, "mask", mask, shape=weights.shape)
    validate.nonnegative(where, "threshold", threshold)
    validate.positive(where, "temperature", temperature)
    validate.one_of(where, "normalisation", normalisation, NORMALISATIONS)


def pruning_probabilities(
    weights: jax.Array, mask: jax.Array, *, threshold: float, temperature: float, normalisation: str = "all"
) -> jax.Array:
    """p_ij = exp(-|W_ij|/T) / Z_j on weak existing edges (|W_ij| < threshold, mask_ij = 1), else 0.

    ``normalisation`` "all" (default, the notebook's and the paper's): Z_j = sum over all N rows of column j of
    exp(-|W_i'j|/T), with W = 0 where ``mask`` is 0; "weak": Z_j = sum over the weak existing edges of column j
    (then each column with a weak edge sums to 1). Columns index the receiving neuron j; a column without weak edges
    is all zeros.

    Column 0 has two weak edges and a strong one, column 1 a strong edge only:

    >>> import jax.numpy as jnp
    >>> from jeq import eqprop
    >>> weights = jnp.array([[0.001, 0.5], [0.002, 0.3], [0.8, 0.9]])
    >>> mask = jnp.ones((3, 2))
    >>> p = eqprop.pruning_probabilities(weights, mask, threshold=0.01, temperature=5.0)
    >>> [[round(float(v), 3) for v in row] for row in p]  # e^-0.0002 / (e^-0.0002 + e^-0.0004 + e^-0.16)
    [[0.351, 0.0], [0.351, 0.0], [0.0, 0.0]]
    >>> weak = eqprop.pruning_probabilities(weights, mask, threshold=0.01, temperature=5.0, normalisation="weak")
    >>> [round(float(v), 3) for v in weak.sum(axis=0)]
    [1.0, 0.0]
    """
    weights, mask = jnp.asarray(weights), jnp.asarray(mask)
    _check_arguments("pruning_probabilities", weights, mask, threshold, temperature, normalisation)
    existing = mask > 0
    weak = existing & (jnp.abs(weights) < threshold)
    logits = -jnp.abs(jnp.where(existing, weights, 0.0)) / temperature
    counted = weak if normalisation == "weak" else jnp.ones_like(weak)
    logits = jnp.where(counted, logits, -jnp.inf)
    top = jnp.max(logits, axis=0, keepdims=True)
    unnormalised = jnp.where(counted, jnp.exp(logits - jnp.where(jnp.isfinite(top), top, 0.0)), 0.0)
    total = jnp.sum(unnormalised, axis=0, keepdims=True)
    p = jnp.where(total > 0, unnormalised / jnp.where(total > 0, total, 1.0), 0.0)
    return jnp.where(weak, p, 0.0)


def boltzmann_prune(
    key: jax.Array,
    weights: jax.Array,
    mask: jax.Array,
    *,
    threshold: float = 0.01,
    temperature: float = 5.0,
    normalisation: str = "all",
) -> Pruning:
    """One round of Boltzmann pruning: remove weak edge i -> j when p_ij > u_ij, u ~ U(0, 1) drawn from ``key``.

    Defaults are the notebooks' tol_W = 0.01, temp = 5 and normalisation over all rows (see
    :func:`pruning_probabilities`). Strong edges (|W_ij| >= threshold) are never removed. The returned mask drops
    the removed edges; keep it for permanent pruning (or use :func:`scheduled_prune`).

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq import eqprop
    >>> weights = jnp.sin(jnp.arange(400.0)).reshape(20, 20) * 0.02  # |W| < 0.01 on about a third of the edges
    >>> mask = jnp.ones((20, 20))
    >>> pruned = jax.jit(eqprop.boltzmann_prune, static_argnames="normalisation")(jax.random.key(1), weights, mask,
    ...                                                                          normalisation="weak")
    >>> removed = (mask == 1) & (pruned.mask == 0)
    >>> bool(jnp.all(jnp.abs(weights[removed]) < 0.01)), bool(jnp.all(pruned.weights[removed] == 0))  # weak only
    (True, True)
    >>> 0.0 < float(pruned.pruned_fraction) < 0.2
    True
    """
    weights, mask = jnp.asarray(weights), jnp.asarray(mask, weights.dtype)
    _check_arguments("boltzmann_prune", weights, mask, threshold, temperature, normalisation)
    p = pruning_probabilities(weights, mask, threshold=threshold, temperature=temperature,
                              normalisation=normalisation)
    removed = (p > jax.random.uniform(key, p.shape, p.dtype)) & (p > 0)
    new_mask = jnp.where(removed, 0.0, mask).astype(mask.dtype)
    existing = jnp.maximum(jnp.sum(mask > 0), 1)
    return Pruning(weights * new_mask, new_mask, p, jnp.sum(removed) / existing)


def scheduled_prune(
    key: jax.Array,
    weights: jax.Array,
    mask: jax.Array,
    step: int | jax.Array,
    *,
    interval: int = 1,
    permanent: bool = True,
    threshold: float = 0.01,
    temperature: float = 5.0,
    normalisation: str = "all",
) -> Pruning:
    """Prune after training step ``step`` (0-based) iff (step + 1) % interval == 0: :func:`boltzmann_prune`, else
    the identity (nothing removed, probabilities 0).

    Call it after every learning step of a training loop (``step`` may be traced, e.g. a ``lax.scan`` counter).
    ``interval`` 1 is the notebook's schedule (a round after every epoch). ``permanent`` True (default; jeq's choice,
    so that a pruned network stays sparse and its sparsity only grows) returns the shrunk mask, and masked weights
    stay 0; False is the notebook's behaviour: the removed weights are set to 0 but the returned mask is ``mask``,
    so the next update may regrow them. The other options are :func:`boltzmann_prune`'s.

    With ``interval=2`` step 0 is skipped and step 1 prunes:

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq import eqprop
    >>> weights = jnp.sin(jnp.arange(400.0)).reshape(20, 20) * 0.02
    >>> mask = jnp.ones((20, 20))
    >>> for step in (0, 1):
    ...     pruned = eqprop.scheduled_prune(jax.random.key(1), weights, mask, step, interval=2, normalisation="weak")
    ...     print(step, float(pruned.pruned_fraction) > 0, bool(jnp.all(pruned.weights == weights)))
    0 False True
    1 True False
    >>> kept = eqprop.scheduled_prune(jax.random.key(1), weights, mask, 1, permanent=False, normalisation="weak")
    >>> bool(jnp.all(kept.mask == mask))  # the notebook's behaviour: the weights may regrow
    True
    """
    where = "jeq.eqprop.scheduled_prune"
    validate.integer(where, "interval", interval, low=1)
    if not isinstance(permanent, bool):
        validate.fail(where, "permanent", permanent, "must be a bool")
    weights, mask = jnp.asarray(weights), jnp.asarray(mask, jnp.asarray(weights).dtype)
    _check_arguments("scheduled_prune", weights, mask, threshold, temperature, normalisation)
    pruned = boltzmann_prune(key, weights, mask, threshold=threshold, temperature=temperature,
                             normalisation=normalisation)
    due = (jnp.asarray(step) + 1) % interval == 0
    new_weights = jnp.where(due, pruned.weights, weights)
    new_mask = jnp.where(due, pruned.mask, mask) if permanent else mask
    return Pruning(new_weights, new_mask, jnp.where(due, pruned.probabilities, 0.0),
                   jnp.where(due, pruned.pruned_fraction, 0.0))


def sparsity(weights: jax.Array, mask: jax.Array) -> jax.Array:
    """Fraction of a graph's allowed edges (``mask`` = 1, the structural mask) whose weight is exactly 0:
    #{ij : mask_ij = 1, W_ij = 0} / #{ij : mask_ij = 1}.

    >>> import jax.numpy as jnp
    >>> from jeq import eqprop
    >>> weights = jnp.array([[0.0, 1.0], [0.5, 0.0]])
    >>> mask = jnp.array([[0.0, 1.0], [1.0, 1.0]])  # three allowed edges, one of them at 0
    >>> round(float(eqprop.sparsity(weights, mask)), 4)
    0.3333
    """
    weights, mask = jnp.asarray(weights), jnp.asarray(mask)
    allowed = mask > 0
    return jnp.sum(allowed & (weights == 0)) / jnp.maximum(jnp.sum(allowed), 1)
