"""G-BFS: greedy best-first search over the prime-move graph of tiling configurations.

Zhang, Cheng, Zang, Park (arXiv 1909.10616), Algorithm 1 (and NNI's OpEvo re-implementation):

1. measure the start ``s_0`` and push it on a priority queue ``Q`` keyed by cost;
2. pop the best unexpanded state ``s = argmin_{s ∈ Q} cost(s)`` (ties: lowest configuration index);
3. draw ``ρ`` of its moves at random, measure every neighbour ``s' = a(s)`` not yet visited and push it on ``Q``;
4. repeat from 2 until the budget is spent; return the best state seen.

Step 3 by default draws the ``ρ`` moves among those that lead to *unvisited* neighbours (``min(ρ, |U(s)|)`` new
configurations, ``U(s)`` the unvisited valid neighbours): an expansion never comes back empty while ``s`` has an
unvisited neighbour, and a state is only passed over when all its neighbours are visited. The literal reading (and
NNI's ``gbfs.py``) draws ``ρ`` of all legal moves and keeps the unvisited ones, so a popped state whose draw hits
only visited neighbours is dropped unexpanded (NNI then stops with "no candidates"); ``unvisited_only=False`` gives
that behaviour, for ablations.

Failed measurements are not pushed (they cannot be expanded). An expansion cut short by the budget of one ask
(``max_count``) is finished by the next ask before anything else is popped. If ``Q`` runs empty the search restarts
from a random unvisited configuration.
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
    pending: np.ndarray
    """(n, G) rest of the current expansion that the last ``max_count`` cut off (asked before the next pop)."""


def gbfs(
    space: Space, *, num_neighbours: int = 5, start: np.ndarray | None = None, unvisited_only: bool = True
) -> Strategy:
    """Greedy best-first search: pop ``s = argmin_{s ∈ Q} cost(s)``, measure ``ρ`` random neighbours ``a(s)``.

    ``num_neighbours`` is the paper's ρ (NNI uses 5). ``start`` is a genome; by default the canonical
    ``[d, 1, …, 1]`` factorisation (a random valid configuration if that one violates the space's constraint).
    ``unvisited_only`` (default True) draws the ρ moves among those leading to unvisited neighbours, so an
    expansion yields ``min(ρ, #unvisited neighbours)`` new configurations; False draws ρ of all legal moves and drops
    the visited ones (the paper's literal step and NNI's, which can expand a state to nothing).

    >>> import jax
    >>> from jeq.gemm import Axis, Space, bowl_cost, gbfs, search
    >>> space = Space([Axis("m", 64, 2), Axis("n", 64, 2)])
    >>> cost = bowl_cost(space, optimum={"m": 8, "n": 4})  # least at m0 = 8, n0 = 4
    >>> result = search(gbfs(space, num_neighbours=3), cost, budget=25, key=jax.random.key(0))
    >>> space.config(space.genomes([result.indices[0]])[0])  # starts at the canonical [d, 1] factorisation
    {'m': (64, 1), 'n': (64, 1)}
    >>> result.best_cost  # and walks downhill, neighbour by neighbour, to the optimum
    1.0
    """
    validate.integer("jeq.gemm.gbfs", "num_neighbours", num_neighbours, low=1)
    unvisited_only = bool(validate.one_of("jeq.gemm.gbfs", "unvisited_only", unvisited_only, (True, False)))
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

    none = np.zeros((0, space.genome_length), dtype=np.int32)

    def init(key: jax.Array) -> GbfsState:
        return GbfsState((), np.zeros(0, dtype=np.int64), False, none)

    def ask(key: jax.Array, state: GbfsState, max_count: int) -> tuple[np.ndarray, GbfsState]:
        rng = rng_from_key(key)
        visited = state.visited
        if not state.started:
            s0 = start if start is not None else space.start()
            g = s0[None] if space.valid(s0[None])[0] else space.sample(rng, 1)
            return g, GbfsState(state.queue, np.union1d(visited, space.indices(g)), True, none)
        if state.pending.shape[0]:  # finish the expansion the last ask's max_count cut short
            g, rest = state.pending[:max_count], state.pending[max_count:]
            return g, GbfsState(state.queue, np.union1d(visited, space.indices(g)), True, rest)
        queue = list(state.queue)
        while queue:
            _, idx = heapq.heappop(queue)
            neighbours, _ = space.neighbours(space.genomes(np.asarray([idx]))[0])
            if not neighbours.shape[0]:
                continue
            fresh = ~isin_sorted(space.indices(neighbours), visited)
            if unvisited_only:  # draw among the moves that lead somewhere new
                new = neighbours[fresh][rng.permutation(int(fresh.sum()))[:num_neighbours]]
            else:  # draw among all legal moves, keep the unvisited (may be none: s is then dropped)
                drawn = rng.permutation(neighbours.shape[0])[:num_neighbours]
                new = neighbours[drawn[fresh[drawn]]]
            if new.shape[0]:
                g, rest = new[:max_count], new[max_count:]
                return g, GbfsState(tuple(queue), np.union1d(visited, space.indices(new)), True, rest)
        g = space.sample(rng, 1, exclude=visited)  # queue exhausted: restart at random
        return g, GbfsState((), np.union1d(visited, space.indices(g)), True, none)

    def tell(state: GbfsState, genomes: np.ndarray, costs: np.ndarray) -> GbfsState:
        queue = list(state.queue)
        for i, c in zip(space.indices(genomes).tolist(), np.asarray(costs).tolist()):
            if np.isfinite(c):
                heapq.heappush(queue, (float(c), int(i)))
        return state._replace(queue=tuple(queue))

    return Strategy("gbfs", space, init, ask, tell)
