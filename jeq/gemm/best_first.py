"""G-BFS: greedy best-first search over the prime-move graph of tiling configurations.

Zhang, Cheng, Zang, Park (arXiv 1909.10616), Algorithm 1 (and NNI's OpEvo re-implementation):

1. measure the start ``s_0`` and push it on a priority queue ``Q`` keyed by cost;
2. pop the best unexpanded state ``s = argmin_{s ∈ Q} cost(s)``;
3. draw ``ρ`` of its legal actions at random (``1 ≤ ρ ≤ |A(s)|``), measure every neighbour ``s' = a(s)`` not yet
   visited and push it on ``Q``;
4. repeat from 2 until the budget is spent; return the best state seen.

Failed measurements are not pushed (they cannot be expanded). If ``Q`` runs empty the search restarts from a random
unvisited configuration.
"""

from __future__ import annotations

import heapq
from typing import NamedTuple

import jax
import numpy as np

from jeq import validate
from jeq.gemm.ask_tell import Strategy, rng_from_key
from jeq.gemm.space import Space, isin_sorted

__all__ = ["GbfsState", "gbfs"]


class GbfsState(NamedTuple):
    """State of :func:`gbfs`."""

    queue: tuple[tuple[float, int], ...]
    """Priority queue (a binary heap) of ``(cost, index)`` measured but unexpanded states."""
    visited: np.ndarray
    """Sorted indices of every configuration asked so far."""
    started: bool
    """Whether the start configuration has been asked."""


def gbfs(space: Space, *, num_neighbours: int = 5, start: np.ndarray | None = None) -> Strategy:
    """Greedy best-first search with ``num_neighbours`` (the paper's ρ; NNI uses 5) random actions per expansion.

    ``start`` is a genome; by default the canonical ``[d, 1, …, 1]`` factorisation (a random valid configuration
    if that one violates the space's constraint).
    """
    validate.integer("jeq.gemm.gbfs", "num_neighbours", num_neighbours, low=1)
    if start is not None:
        given = np.asarray(start)
        try:
            start = given.astype(np.int32).reshape(space.genome_length)
            space.indices(start[None])  # exponents must factor every dimension exactly
        except ValueError as err:
            validate.fail("jeq.gemm.gbfs", "start", given.tolist(),
                          f"not a genome of this space (length {space.genome_length}): {err}")
        if not space.valid(start[None])[0]:
            validate.fail("jeq.gemm.gbfs", "start", space.config(start), "violates the space's constraint")

    def init(key: jax.Array) -> GbfsState:
        return GbfsState((), np.zeros(0, dtype=np.int64), False)

    def ask(key: jax.Array, state: GbfsState, max_count: int) -> tuple[np.ndarray, GbfsState]:
        rng = rng_from_key(key)
        visited = state.visited
        if not state.started:
            s0 = start if start is not None else space.start()
            g = s0[None] if space.valid(s0[None])[0] else space.sample(rng, 1)
            return g, GbfsState(state.queue, np.union1d(visited, space.indices(g)), True)
        queue = list(state.queue)
        while queue:
            _, idx = heapq.heappop(queue)
            neighbours, _ = space.neighbours(space.genomes(np.asarray([idx]))[0])
            picked = neighbours[rng.permutation(neighbours.shape[0])[:num_neighbours]]
            new = picked[~isin_sorted(space.indices(picked), visited)][:max_count] if picked.size else picked
            if new.shape[0]:
                return new, GbfsState(tuple(queue), np.union1d(visited, space.indices(new)), True)
        g = space.sample(rng, 1, exclude=visited)  # queue exhausted: restart at random
        return g, GbfsState((), np.union1d(visited, space.indices(g)), True)

    def tell(state: GbfsState, genomes: np.ndarray, costs: np.ndarray) -> GbfsState:
        queue = list(state.queue)
        for i, c in zip(space.indices(genomes).tolist(), np.asarray(costs).tolist()):
            if np.isfinite(c):
                heapq.heappush(queue, (float(c), int(i)))
        return state._replace(queue=tuple(queue))

    return Strategy("gbfs", space, init, ask, tell)
