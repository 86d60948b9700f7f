"""Ask/tell search over a configuration space with one budget accounting for every strategy.

A :class:`Strategy` is a triple of pure-ish functions over an explicit state (evosax style):

    state = strategy.init(key)
    genomes, state = strategy.ask(key, state, max_count)     # 1..max_count new configurations
    state = strategy.tell(state, genomes, costs)             # costs in seconds, inf = failed

Contract (checked by :func:`search`): ``ask`` returns distinct, valid configurations that were never asked before,
and returns none only when the space is exhausted. The budget is the number of distinct configurations measured
(failures count), the same for every strategy; a configuration is never measured twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

from jeq import validate
from jeq.gemm.space import Space

__all__ = ["SearchResult", "Strategy", "bowl_cost", "rng_from_key", "search", "with_deadline"]


class Strategy(NamedTuple):
    """An ask/tell search strategy over one :class:`~jeq.gemm.space.Space`.

    >>> import jax
    >>> import numpy as np
    >>> from jeq.gemm import Axis, Space, Strategy, random_search
    >>> Strategy._fields
    ('name', 'space', 'init', 'ask', 'tell')
    >>> strategy = random_search(Space([Axis("m", 8, 2)]), batch_size=2)
    >>> state = strategy.init(jax.random.key(0))
    >>> genomes, state = strategy.ask(jax.random.key(1), state, 3)  # at most 3, here one batch of 2
    >>> state = strategy.tell(state, genomes, np.ones(len(genomes)))
    >>> strategy.name, genomes.shape
    ('random', (2, 2))
    """

    name: str
    """Short name, e.g. ``"gbfs"``."""
    space: Space
    """The space searched."""
    init: Callable[[jax.Array], Any]
    """``init(key) -> state``."""
    ask: Callable[[jax.Array, Any, int], tuple[np.ndarray, Any]]
    """``ask(key, state, max_count) -> (genomes (n, G) with 1 <= n <= max_count, state)``; n = 0 iff exhausted."""
    tell: Callable[[Any, np.ndarray, np.ndarray], Any]
    """``tell(state, genomes, costs) -> state`` with the genomes of the last ask and their costs (inf = failed)."""


class SearchResult(NamedTuple):
    """History of one search run.

    >>> import numpy as np
    >>> from jeq.gemm import SearchResult
    >>> result = SearchResult(np.array([5, 1, 7]), np.array([3.0, np.inf, 2.0]), best_index=7, best_cost=2.0)
    >>> result.best_so_far().tolist(), result.measurements_to_reach(2.5)
    ([3.0, 3.0, 2.0], 3)
    """

    indices: np.ndarray
    """(n,) int64 configuration indices in measurement order."""
    costs: np.ndarray
    """(n,) float64 costs in seconds in measurement order (``inf`` = failed)."""
    best_index: int
    """Index of the cheapest configuration measured (-1 if none succeeded)."""
    best_cost: float
    """Its cost (``inf`` if none succeeded)."""

    def best_so_far(self) -> np.ndarray:
        """(n,) running minimum of the costs: the best configuration after each measurement."""
        return np.minimum.accumulate(self.costs) if self.costs.size else self.costs

    def measurements_to_reach(self, target: float) -> int | None:
        """Number of measurements until a cost ``<= target`` was first seen (``None`` if never)."""
        hit = np.flatnonzero(self.costs <= target)
        return int(hit[0]) + 1 if hit.size else None


def rng_from_key(key: jax.Array) -> np.random.Generator:
    """A numpy generator seeded from a ``jax.random.key`` (host-side sampling inside strategies)."""
    return np.random.default_rng(np.asarray(jax.random.key_data(key)).astype(np.uint32).tolist())


def with_deadline(
    strategy: Strategy, deadline: float, *, clock: Callable[[], float] = time.perf_counter
) -> Strategy:
    """``strategy`` that proposes nothing once the clock has passed ``deadline``, so :func:`search` stops there.

    ``ask'(key, state, n) = (no genomes, state)`` if ``clock() > deadline``, else ``ask(key, state, n)``; ``init``
    and ``tell`` are unchanged. A search under a wall-clock limit thus ends with a shorter history, never with a
    half-measured batch. ``deadline`` is a time on ``clock`` (default ``time.perf_counter``).

    >>> import time
    >>> import jax
    >>> import numpy as np
    >>> from jeq.gemm import Axis, Space, random_search, search, with_deadline
    >>> space = Space([Axis("m", 16, 2)])
    >>> late = with_deadline(random_search(space), time.perf_counter() - 1.0)  # the deadline has passed
    >>> len(search(late, lambda g: np.ones(len(g)), budget=5, key=jax.random.key(0)).indices)
    0
    >>> soon = with_deadline(random_search(space), time.perf_counter() + 60.0)
    >>> len(search(soon, lambda g: np.ones(len(g)), budget=5, key=jax.random.key(0)).indices)
    5
    """
    deadline = validate.real("jeq.gemm.with_deadline", "deadline", deadline)
    space = strategy.space

    def ask(key: jax.Array, state: Any, max_count: int) -> tuple[np.ndarray, Any]:
        if clock() > deadline:
            return np.zeros((0, space.genome_length), dtype=np.int32), state
        return strategy.ask(key, state, max_count)

    return strategy._replace(ask=ask)


def search(
    strategy: Strategy,
    evaluate: Callable[[np.ndarray], np.ndarray],
    *,
    budget: int,
    key: jax.Array,
    callback: Callable[[np.ndarray, np.ndarray], None] | None = None,
) -> SearchResult:
    """Run ``strategy`` for ``budget`` measurements of ``evaluate`` (a landscape: genomes (B, G) -> (B,) seconds).

    Each round asks for at most the remaining budget, checks the strategy's contract (no repeats, valid, right
    shape), evaluates the batch in one call and tells the costs back. Stops early only if the space is exhausted.
    ``callback(indices, costs)`` sees every evaluated batch.

    >>> import jax
    >>> from jeq.gemm import Axis, Space, bowl_cost, grid_search, search
    >>> space = Space([Axis("m", 16, 2), Axis("n", 4, 2)])  # 5 * 3 = 15 configurations
    >>> cost = bowl_cost(space, optimum={"m": 4, "n": 2})  # seconds; the best tile is m0 = 4, n0 = 2
    >>> result = search(grid_search(space, batch_size=4), cost, budget=100, key=jax.random.key(0))
    >>> len(result.indices), len(set(result.indices.tolist()))  # stops when the space is exhausted, no repeats
    (15, 15)
    >>> result.best_cost, space.config(space.genomes([result.best_index])[0])
    (1.0, {'m': (4, 4), 'n': (2, 2)})
    """
    validate.integer("jeq.gemm.search", "budget", budget, low=1)
    space = strategy.space
    ask_key, init_key = jax.random.split(key)
    state = strategy.init(init_key)
    seen: set[int] = set()
    indices: list[np.ndarray] = []
    costs: list[np.ndarray] = []
    used = 0
    step = 0
    while used < budget:
        genomes, state = strategy.ask(jax.random.fold_in(ask_key, step), state, budget - used)
        step += 1
        genomes = np.asarray(genomes, dtype=np.int32).reshape(-1, space.genome_length)
        n = genomes.shape[0]
        if n == 0:
            break
        if n > budget - used:
            raise RuntimeError(f"{strategy.name}.ask returned {n} configurations, more than the {budget - used} asked")
        idx = space.indices(genomes)
        if len(set(idx.tolist())) != n or seen.intersection(idx.tolist()):
            raise RuntimeError(f"{strategy.name}.ask proposed a configuration that was already measured")
        if not space.valid(genomes).all():
            raise RuntimeError(f"{strategy.name}.ask proposed a configuration that violates the space's constraint")
        c = np.asarray(evaluate(genomes), dtype=np.float64).reshape(n)
        c = np.where(np.isnan(c), np.inf, c)
        seen.update(idx.tolist())
        state = strategy.tell(state, genomes, c)
        indices.append(idx)
        costs.append(c)
        used += n
        if callback is not None:
            callback(idx, c)
    all_idx = np.concatenate(indices) if indices else np.zeros(0, dtype=np.int64)
    all_c = np.concatenate(costs) if costs else np.zeros(0)
    if all_c.size and np.isfinite(all_c).any():
        b = int(np.argmin(all_c))
        return SearchResult(all_idx, all_c, int(all_idx[b]), float(all_c[b]))
    return SearchResult(all_idx, all_c, -1, float("inf"))


def bowl_cost(space: Space, *, optimum: dict[str, int]) -> Callable[[np.ndarray], np.ndarray]:
    """cost(g) = 1 + Σ_a |log₂(s_{a,0} / optimum[a])|: a toy landscape, 1.0 exactly where each outer tile s_{a,0} of
    a named axis equals ``optimum[a]``.

    A cost with a known optimum that takes microseconds, for examples and tests of the search strategies (the
    ``cost`` argument of :func:`search`); axes not named in ``optimum`` and knobs do not change it.

    >>> import numpy as np
    >>> from jeq.gemm import Axis, Space, bowl_cost
    >>> space = Space([Axis("m", 64, 2), Axis("n", 64, 2)])  # 7 * 7 = 49 configurations
    >>> cost = bowl_cost(space, optimum={"m": 8, "n": 4})
    >>> every = cost(space.genomes(np.arange(space.size)))
    >>> float(every.min()), int((every == 1.0).sum()), float(every.max())  # one optimum; worst m0 = n0 = 64
    (1.0, 1, 8.0)
    """
    where = "jeq.gemm.bowl_cost"
    names = [a.name for a in space.axes]
    for name, value in optimum.items():
        validate.one_of(where, "optimum", name, names)
        validate.integer(where, f"optimum[{name!r}]", value, low=1)

    def cost(genomes: np.ndarray) -> np.ndarray:
        tiles = space.decode(genomes)
        return 1.0 + sum(np.abs(np.log2(tiles[name][:, 0] / value)) for name, value in optimum.items())

    return cost
