"""Baseline tuners (ask/tell): random, grid, simulated annealing, AutoTVM's genetic algorithm and cost-model tuner.

The cost-model tuner follows AutoTVM's ``XGBTuner`` (Chen et al., *Learning to Optimize Tensor Programs*, NeurIPS
2018; TVM ``autotvm/tuner/model_based_tuner.py``): measure a random batch, then every ``plan_size`` measurements refit
a gradient-boosted regressor on ``y = flops/cost`` (normalised, failures 0) and run simulated annealing *over the
model* (128 chains, 500 iterations, early stop after 30 without change, one gene re-drawn per step) to collect the
``plan_size`` best-predicted unvisited configurations; measure them in order, the last 5 % of each plan at random.
Here the regressor is scikit-learn's ``HistGradientBoostingRegressor`` (XGBoost is not a dependency).

The genetic algorithm follows AutoTVM's ``GATuner``: keep ``elite_num`` elites, pick parents with probability
proportional to ``flops/cost``, single-point crossover over the genes, re-draw each gene with probability
``mutation_prob``, and re-mutate children that were already visited. A *gene* is one digit of the configuration index:
the whole ordered factorisation of one (axis, prime) pair, or one knob.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

from jeq import validate
from jeq.gemm.ask_tell import Strategy, rng_from_key
from jeq.gemm.space import Space, isin_sorted

__all__ = ["cost_model", "forest_predictor", "genetic", "grid_search", "random_search", "simulated_annealing"]


def _insert(visited: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return np.union1d(visited, np.asarray(idx, dtype=np.int64))


def _scores(costs: np.ndarray) -> np.ndarray:
    """Throughput-like score ``1/cost`` (0 for failures)."""
    c = np.asarray(costs, dtype=np.float64)
    return np.where(np.isfinite(c) & (c > 0), 1.0 / np.where(c > 0, c, 1.0), 0.0)


# ------------------------------------------------------------------------------------------------ random / grid
class RandomState(NamedTuple):
    """State of :func:`random_search`."""

    visited: np.ndarray
    """Sorted indices of every configuration asked so far."""


def random_search(space: Space, *, batch_size: int = 16) -> Strategy:
    """Uniform random search without replacement over the valid configurations.

    >>> import jax
    >>> import numpy as np
    >>> from jeq.gemm import Axis, Space, random_search, search
    >>> space = Space([Axis("m", 64, 2)], constraint=lambda tiles: tiles["m"][:, 0] != 8)  # 6 valid of 7
    >>> result = search(random_search(space), lambda g: np.ones(len(g)), budget=10, key=jax.random.key(0))
    >>> sorted(space.config(g)["m"][0] for g in space.genomes(result.indices))  # every valid one, once
    [1, 2, 4, 16, 32, 64]
    """
    validate.integer("jeq.gemm.random_search", "batch_size", batch_size, low=1)

    def init(key: jax.Array) -> RandomState:
        return RandomState(np.zeros(0, dtype=np.int64))

    def ask(key: jax.Array, state: RandomState, max_count: int) -> tuple[np.ndarray, RandomState]:
        g = space.sample(rng_from_key(key), min(batch_size, max_count), exclude=state.visited)
        return g, RandomState(_insert(state.visited, space.indices(g)))

    def tell(state: RandomState, genomes: np.ndarray, costs: np.ndarray) -> RandomState:
        return state

    return Strategy("random", space, init, ask, tell)


class GridState(NamedTuple):
    """State of :func:`grid_search`."""

    cursor: int
    """Next configuration index to consider (index order)."""


def grid_search(space: Space, *, batch_size: int = 16) -> Strategy:
    """Exhaustive search in index order (AutoTVM's ``GridSearchTuner``), skipping invalid configurations.

    >>> import jax
    >>> import numpy as np
    >>> from jeq.gemm import Axis, Space, grid_search, search
    >>> space = Space([Axis("m", 8, 2)])
    >>> search(grid_search(space), lambda g: np.ones(len(g)), budget=3, key=jax.random.key(0)).indices.tolist()
    [0, 1, 2]
    """
    validate.integer("jeq.gemm.grid_search", "batch_size", batch_size, low=1)

    def init(key: jax.Array) -> GridState:
        return GridState(0)

    def ask(key: jax.Array, state: GridState, max_count: int) -> tuple[np.ndarray, GridState]:
        want = min(batch_size, max_count)
        found = np.zeros(0, dtype=np.int64)
        cursor = state.cursor
        while found.size < want and cursor < space.size:
            idx = np.arange(cursor, min(cursor + 4 * want, space.size), dtype=np.int64)
            found = np.concatenate([found, idx[space.valid(space.genomes(idx))]])[:want]
            cursor = int(found[-1]) + 1 if found.size == want else int(idx[-1]) + 1
        return space.genomes(found), GridState(cursor)

    def tell(state: GridState, genomes: np.ndarray, costs: np.ndarray) -> GridState:
        return state

    return Strategy("grid", space, init, ask, tell)


# ---------------------------------------------------------------------------------------- simulated annealing
class AnnealingState(NamedTuple):
    """State of :func:`simulated_annealing`."""

    chains: np.ndarray
    """(C, G) current genome of each chain."""
    chain_costs: np.ndarray
    """(C,) cost of each chain's current genome (inf before its first measurement)."""
    proposed: np.ndarray
    """(n,) chain that proposed each genome of the last ask."""
    uniforms: np.ndarray
    """(n,) uniform draws for the Metropolis test of each proposal (drawn in ask, so tell is deterministic)."""
    temperature: float
    """Current temperature, in units of log-cost."""
    visited: np.ndarray
    """Sorted indices of every configuration asked so far."""


def simulated_annealing(
    space: Space,
    *,
    num_chains: int = 8,
    initial_temperature: float = 0.5,
    cooling: float = 0.99,
) -> Strategy:
    """Parallel simulated annealing on the measured costs, one prime/knob move per step.

    Each chain proposes a random unvisited neighbour (a random unvisited configuration if it has none) and accepts
    it with the Metropolis rule on log cost: ``P(accept) = min(1, exp(-(log c' − log c)/T))``; ``T ← cooling·T``
    after every batch. Failed configurations are never accepted.

    >>> import jax
    >>> from jeq.gemm import Axis, Space, bowl_cost, search, simulated_annealing
    >>> space = Space([Axis("m", 64, 2), Axis("n", 64, 2)])  # 49 configurations
    >>> cost = bowl_cost(space, optimum={"m": 8, "n": 4})
    >>> result = search(simulated_annealing(space, num_chains=4), cost, budget=30, key=jax.random.key(0))
    >>> len(set(result.indices.tolist())), bool(result.best_cost <= 2.0)
    (30, True)
    """
    where = "jeq.gemm.simulated_annealing"
    validate.integer(where, "num_chains", num_chains, low=1)
    validate.real(where, "initial_temperature", initial_temperature, low=1e-12, high=1e6)
    validate.real(where, "cooling", cooling, low=1e-12, high=1.0)

    def init(key: jax.Array) -> AnnealingState:
        g = space.sample(rng_from_key(key), num_chains)
        empty = np.zeros(0, dtype=np.int64)
        return AnnealingState(g, np.full(g.shape[0], np.inf), empty, np.zeros(0), initial_temperature, empty)

    def ask(key: jax.Array, state: AnnealingState, max_count: int) -> tuple[np.ndarray, AnnealingState]:
        rng = rng_from_key(key)
        visited = state.visited
        out, who = [], []
        for c in rng.permutation(state.chains.shape[0])[:max_count]:
            current = state.chains[c]
            if not np.isfinite(state.chain_costs[c]) and not isin_sorted(space.indices(current[None]), visited)[0]:
                cand = current[None]  # a chain's first point
            else:
                nb, _ = space.neighbours(current)
                nb = nb[~isin_sorted(space.indices(nb), visited)] if nb.size else nb
                cand = nb[rng.integers(nb.shape[0])][None] if nb.shape[0] else space.sample(rng, 1, exclude=visited)
            if cand.shape[0] == 0:
                continue
            visited = _insert(visited, space.indices(cand))
            out.append(cand)
            who.append(c)
        g = np.concatenate(out) if out else np.zeros((0, space.genome_length), dtype=np.int32)
        return g, state._replace(
            proposed=np.asarray(who, dtype=np.int64), uniforms=rng.random(len(who)), visited=visited
        )

    def tell(state: AnnealingState, genomes: np.ndarray, costs: np.ndarray) -> AnnealingState:
        chains, chain_costs = state.chains.copy(), state.chain_costs.copy()
        for c, g, cost, u in zip(state.proposed, genomes, costs, state.uniforms):
            cur = chain_costs[c]
            if not np.isfinite(cost):
                accept = not np.isfinite(cur)  # a chain stuck on a failure moves on
            elif not np.isfinite(cur) or cost <= cur:
                accept = True
            else:
                # an uphill move at T = 0 (cooled to underflow) is never accepted
                rise = np.log(cost) - np.log(cur)
                accept = state.temperature > 0 and u < np.exp(-rise / state.temperature)
            if accept:
                chains[c], chain_costs[c] = g, cost
        return state._replace(chains=chains, chain_costs=chain_costs, temperature=state.temperature * cooling)

    return Strategy("annealing", space, init, ask, tell)


# ---------------------------------------------------------------------------------------------------- genetic
class GeneticState(NamedTuple):
    """State of :func:`genetic`."""

    generation: np.ndarray
    """(P, D) genes (index digits) of the generation being measured."""
    generation_costs: np.ndarray
    """(P,) their costs (nan until measured)."""
    next_position: int
    """How many of the generation have been asked."""
    elites: np.ndarray
    """(E, D) genes of the elites carried over."""
    elite_costs: np.ndarray
    """(E,) their costs."""
    visited: np.ndarray
    """Sorted indices of every configuration asked so far."""


def genetic(space: Space, *, population_size: int = 64, elite_num: int = 3, mutation_prob: float = 0.1) -> Strategy:
    """AutoTVM's genetic algorithm: elitism, fitness-proportional parents, single-point crossover, mutation.

    ``P(parent = i) = s_i / Σ_j s_j`` with ``s = flops/cost`` (failures ~0); child genes ``p1[:c] ++ p2[c:]`` with a
    uniform cut ``c``; each gene re-drawn uniformly with probability ``mutation_prob``; visited or invalid children
    have a random gene re-drawn until they are new.

    >>> import jax
    >>> from jeq.gemm import Axis, Space, bowl_cost, genetic, search
    >>> space = Space([Axis("m", 64, 2), Axis("n", 64, 2)])
    >>> cost = bowl_cost(space, optimum={"m": 8, "n": 4})
    >>> result = search(genetic(space, population_size=8), cost, budget=24, key=jax.random.key(0))
    >>> len(set(result.indices.tolist())), bool(result.best_cost <= 2.0)
    (24, True)
    """
    validate.integer("jeq.gemm.genetic", "population_size", population_size, low=2)
    validate.integer("jeq.gemm.genetic", "elite_num", elite_num, low=0)
    validate.real("jeq.gemm.genetic", "mutation_prob", mutation_prob, low=0.0, high=1.0)
    radices = space.radices

    def init(key: jax.Array) -> GeneticState:
        g = space.sample(rng_from_key(key), population_size)
        d = space.digits(g)
        return GeneticState(d, np.full(d.shape[0], np.nan), 0, np.zeros((0, radices.size), np.int64), np.zeros(0),
                            np.zeros(0, np.int64))

    def breed(state: GeneticState, rng: np.random.Generator) -> GeneticState:
        genes = np.concatenate([state.generation, state.elites])
        costs = np.concatenate([state.generation_costs, state.elite_costs])
        scores = _scores(costs)
        order = np.argsort(-scores, kind="stable")[:elite_num]
        elites, elite_costs = genes[order], costs[order]
        probs = scores + 1e-8 * max(scores.max(), 1e-30)
        probs = probs / probs.sum()
        visited = state.visited
        children: list[np.ndarray] = []
        for _ in range(population_size):
            p1, p2 = rng.choice(genes.shape[0], size=2, replace=genes.shape[0] < 2, p=probs)
            cut = rng.integers(radices.size)
            child = np.concatenate([genes[p1][:cut], genes[p2][cut:]])
            mutate = rng.random(radices.size) < mutation_prob
            child = np.where(mutate, rng.integers(0, radices), child)
            for _ in range(1000):
                g = space.from_digits(child[None])
                i = space.indices(g)
                if not isin_sorted(i, visited)[0] and space.valid(g)[0]:
                    break
                j = rng.integers(radices.size)
                child = child.copy()
                child[j] = rng.integers(radices[j])
            else:  # neighbourhood exhausted: any unvisited configuration
                g = space.sample(rng, 1, exclude=visited)
                if g.shape[0] == 0:
                    break
                child, i = space.digits(g)[0], space.indices(g)
            visited = _insert(visited, i)
            children.append(child)
        gen = np.asarray(children, dtype=np.int64).reshape(-1, radices.size)
        # children were reserved in `visited`; they are handed out by ask
        return GeneticState(gen, np.full(gen.shape[0], np.nan), 0, elites, elite_costs, state.visited)

    def ask(key: jax.Array, state: GeneticState, max_count: int) -> tuple[np.ndarray, GeneticState]:
        if state.next_position >= state.generation.shape[0]:
            if state.generation.shape[0] == 0:
                return np.zeros((0, space.genome_length), dtype=np.int32), state
            state = breed(state, rng_from_key(key))
        lo = state.next_position
        take = state.generation[lo : lo + max_count]
        g = space.from_digits(take) if take.size else np.zeros((0, space.genome_length), dtype=np.int32)
        return g, state._replace(next_position=lo + take.shape[0], visited=_insert(state.visited, space.indices(g)))

    def tell(state: GeneticState, genomes: np.ndarray, costs: np.ndarray) -> GeneticState:
        gc = state.generation_costs.copy()
        lo = state.next_position - genomes.shape[0]
        gc[lo : state.next_position] = costs
        return state._replace(generation_costs=gc)

    return Strategy("genetic", space, init, ask, tell)


# ------------------------------------------------------------------------------------------------- cost model
WALKER_SKLEARN_VERSIONS = ((1, 5), (2, 0))
"""scikit-learn versions ``[low, high)`` whose fitted ``HistGradientBoostingRegressor`` layout (``_predictors`` of
``TreePredictor`` node arrays, ``_baseline_prediction``) the vectorised walker of :func:`forest_predictor` reads;
the range that ``pyproject.toml`` allows, where the walker is tested against ``predict``."""


def _sklearn_version() -> tuple[int, ...]:
    import sklearn

    return tuple(int(part) for part in sklearn.__version__.split(".")[:2] if part.isdigit())


def _tree_walker(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """All trees of a fitted ``HistGradientBoostingRegressor`` walked at once from its private node arrays:
    ``ŷ(x) = baseline + Σ_trees value(leaf_t(x))``, every (row, tree) pair descending one level per step."""
    trees = [p[0].nodes for p in model._predictors]
    size = max(len(t) for t in trees)
    stack = lambda name: np.stack([np.pad(t[name], (0, size - len(t))) for t in trees])  # noqa: E731
    offsets = (np.arange(len(trees)) * size)[:, None]
    feat, thr = stack("feature_idx").astype(np.int64).ravel(), stack("num_threshold").ravel()
    left = (stack("left").astype(np.int64) + offsets).ravel()
    right = (stack("right").astype(np.int64) + offsets).ravel()
    leaf, value = stack("is_leaf").astype(bool).ravel(), stack("value").ravel()
    depth = int(stack("depth").max()) + 1
    base = float(np.ravel(model._baseline_prediction)[0])

    def forest(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        node = np.broadcast_to(offsets.T, (x.shape[0], len(trees))).copy()  # flat node ids, (rows, trees)
        row_offset = (np.arange(x.shape[0]) * x.shape[1])[:, None]
        flat_x = x.ravel()
        for _ in range(depth):
            go_left = flat_x.take(row_offset + feat.take(node)) <= thr.take(node)
            node = np.where(leaf.take(node), node, np.where(go_left, left.take(node), right.take(node)))
        return base + value.take(node).sum(axis=1)

    return forest


def forest_predictor(model: Any, check: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A predictor ``x (B, F) -> ŷ (B,)`` for a fitted regressor: ``model.predict``, or a faster equal one.

    scikit-learn predicts a ``HistGradientBoostingRegressor`` tree by tree (one OpenMP region each), ~100x slower on
    the 128-row batches of the annealing than walking all trees at once in numpy. That walker reads private
    attributes, so it is used only when scikit-learn's version lies in :data:`WALKER_SKLEARN_VERSIONS`, the model has
    the expected tree layout, and the walker reproduces ``model.predict`` on the first 256 rows of ``check``
    (``rtol=1e-6``); otherwise (any other regressor or version, a missing attribute, a mismatch) the public
    ``model.predict`` is returned.
    """
    low, high = WALKER_SKLEARN_VERSIONS
    if not low <= _sklearn_version() < high:
        return model.predict
    try:
        forest = _tree_walker(model)
        if np.allclose(forest(check[:256]), model.predict(check[:256]), rtol=1e-6, atol=1e-9):
            return forest
    except (AttributeError, KeyError, ValueError, IndexError, TypeError):
        pass
    return model.predict


class CostModelState(NamedTuple):
    """State of :func:`cost_model`."""

    features: np.ndarray
    """(n, F) features of every measured configuration."""
    costs: np.ndarray
    """(n,) their costs."""
    plan: np.ndarray
    """(plan_size,) configuration indices proposed by the last model search, best predicted first."""
    plan_position: int
    """Next position in the plan."""
    fits: int
    """How many times the model has been fitted."""
    sa_points: np.ndarray
    """(chains,) indices where the annealing over the model stopped (its next start, as in AutoTVM)."""
    visited: np.ndarray
    """Sorted indices of every configuration asked so far."""


def cost_model(
    space: Space,
    *,
    plan_size: int = 64,
    random_fraction: float = 0.05,
    batch_size: int = 8,
    sa_iterations: int = 500,
    sa_chains: int = 128,
    sa_early_stop: int = 30,
    regressor: Any = None,
) -> Strategy:
    """AutoTVM-style model-based tuner: gradient-boosted cost model + simulated annealing over the model.

    Model: a regressor of ``y = (flops/cost) / max(flops/cost)`` (failures 0) on :meth:`Space.features`, refitted
    every ``plan_size`` measurements (default ``HistGradientBoostingRegressor(max_depth=3, learning_rate=0.3)``, the
    depth and step of AutoTVM's XGBoost settings). Search over the model: ``sa_chains`` chains, at most
    ``sa_iterations`` steps, acceptance ``min(1, exp((ŷ' − ŷ)/t))`` with ``t`` cooled linearly from 1 to 0, stop after
    ``sa_early_stop`` steps without a change of the top-``plan_size`` heap; visited configurations are excluded. The
    last ``random_fraction`` of each plan (and everything before the first fit) is drawn at random.

    >>> import jax
    >>> import numpy as np
    >>> from jeq.gemm import Axis, Space, bowl_cost, cost_model, search
    >>> space = Space([Axis("m", 64, 2), Axis("n", 64, 2)])
    >>> cost = bowl_cost(space, optimum={"m": 8, "n": 4})
    >>> tuner = cost_model(space, plan_size=8, batch_size=4, sa_iterations=20, sa_chains=8)
    >>> result = search(tuner, cost, budget=24, key=jax.random.key(0))
    >>> every = cost(space.genomes(np.arange(space.size)))
    >>> len(set(result.indices.tolist())), bool(result.best_cost <= np.quantile(every, 0.1))  # top 10 %
    (24, True)
    """
    for name, value in (("plan_size", plan_size), ("batch_size", batch_size), ("sa_iterations", sa_iterations),
                        ("sa_chains", sa_chains), ("sa_early_stop", sa_early_stop)):
        validate.integer("jeq.gemm.cost_model", name, value, low=1)
    validate.real("jeq.gemm.cost_model", "random_fraction", random_fraction, low=0.0, high=1.0)
    radices, strides = space.radices, space.strides

    def make_model() -> Any:
        if regressor is not None:
            from sklearn.base import clone

            return clone(regressor)
        from sklearn.ensemble import HistGradientBoostingRegressor

        return HistGradientBoostingRegressor(max_depth=3, learning_rate=0.3, max_iter=100, early_stopping=False)

    def init(key: jax.Array) -> CostModelState:
        return CostModelState(
            np.zeros((0, space.num_features), np.float32), np.zeros(0), np.zeros(0, np.int64), 0, 0,
            np.zeros(0, np.int64), np.zeros(0, np.int64),
        )

    def random_walk(idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Re-draw one gene (index digit) of each point to a different value."""
        j = rng.integers(radices.size, size=idx.size)
        old = (idx // strides[j]) % radices[j]
        new = (old + rng.integers(1, np.maximum(radices[j], 2), size=idx.size)) % radices[j]
        moved = idx + (new - old) * strides[j]
        if space.constraint is not None:
            moved = np.where(space.valid(space.genomes(moved)), moved, idx)
        return moved

    def find_maximums(model: Any, state: CostModelState, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        points = state.sa_points
        if points.size < sa_chains:
            extra = space.indices(space.sample(rng, sa_chains - points.size))
            points = np.concatenate([points, extra])
        forest = forest_predictor(model, state.features)

        def predict(p: np.ndarray) -> np.ndarray:
            return forest(space.features(space.genomes(p)))

        scores = predict(points)
        top, top_scores = np.zeros(0, np.int64), np.zeros(0)  # the best `plan_size` unvisited points seen
        temperature, cool = 1.0, 1.0 / (sa_iterations + 1)
        last_change, k = 0, 0
        while k < sa_iterations and k < last_change + sa_early_stop:
            new = random_walk(points, rng)
            new_scores = predict(new)
            accept = rng.random(points.size) < np.exp(np.minimum((new_scores - scores) / (temperature + 1e-5), 1.0))
            points = np.where(accept, new, points)
            scores = np.where(accept, new_scores, scores)
            fresh = ~isin_sorted(new, state.visited)
            merged = np.concatenate([top, new[fresh]])
            merged_scores = np.concatenate([top_scores, new_scores[fresh]])
            _, first = np.unique(merged, return_index=True)
            keep = first[np.argsort(-merged_scores[first], kind="stable")[:plan_size]]
            if not np.array_equal(np.sort(merged[keep]), np.sort(top)):
                last_change = k
            top, top_scores = merged[keep], merged_scores[keep]
            k += 1
            temperature -= cool
        plan = top[np.argsort(-top_scores, kind="stable")]
        return plan.astype(np.int64), points

    def ask(key: jax.Array, state: CostModelState, max_count: int) -> tuple[np.ndarray, CostModelState]:
        rng = rng_from_key(key)
        if state.costs.size >= plan_size * (state.fits + 1) and np.isfinite(state.costs).any():
            y = _scores(state.costs)
            from threadpoolctl import threadpool_limits  # a scikit-learn dependency, imported with it

            model = make_model()  # imports scikit-learn (and its OpenMP runtime) before limiting its threads
            # One OpenMP thread: thread start-up dominates these small fits/predictions on a busy machine (~50x).
            with threadpool_limits(1):
                model.fit(state.features, y / y.max())
                plan, points = find_maximums(model, state, rng)
            state = state._replace(plan=plan, plan_position=0, fits=state.fits + 1, sa_points=points)
        visited, pos, out = state.visited, state.plan_position, []
        n_plan = state.plan.size
        for _ in range(min(batch_size, max_count)):
            while pos < n_plan and isin_sorted(state.plan[pos : pos + 1], visited)[0]:
                pos += 1
            if pos >= n_plan - int(random_fraction * plan_size):  # no plan yet, or its last 5 %: random
                g = space.sample(rng, 1, exclude=visited)
                if g.shape[0] == 0:
                    break
                i = space.indices(g)
                pos += 1
            else:
                i = state.plan[pos : pos + 1]
                pos += 1
            visited = _insert(visited, i)
            out.append(i)
        idx = np.concatenate(out) if out else np.zeros(0, np.int64)
        return space.genomes(idx), state._replace(plan_position=pos, visited=visited)

    def tell(state: CostModelState, genomes: np.ndarray, costs: np.ndarray) -> CostModelState:
        return state._replace(
            features=np.concatenate([state.features, space.features(genomes)]),
            costs=np.concatenate([state.costs, np.asarray(costs, dtype=np.float64)]),
        )

    return Strategy("cost_model", space, init, ask, tell)
