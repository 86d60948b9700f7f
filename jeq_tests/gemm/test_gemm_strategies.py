"""Ask/tell strategies: one budget accounting, no repeats, optimum found, G-BFS and N-A2C beat random (paper §5)."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sklearn
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from jeq.gemm import (
    STRATEGIES,
    AnalyticLandscape,
    Axis,
    Knob,
    Space,
    action_probabilities,
    actor_critic_loss,
    cost_model,
    gbfs,
    genetic,
    na2c,
    na2c_rewards,
    random_search,
    search,
    simulated_annealing,
    with_deadline,
)
from jeq.gemm.baselines import forest_predictor
from jeq.gemm.space import isin_sorted

FACTORIES = STRATEGIES  # every strategy jeq.gemm.tune knows, by name


def bowl_space() -> Space:
    return Space([Axis("m", 64, 3), Axis("n", 32, 2), Axis("k", 16, 2)], [Knob("w", (1, 2, 4, 8))])


class Bowl:
    """A smooth landscape with a unique, known optimum: 1 + ||features − features(target)||²."""

    def __init__(self, space: Space, target: dict):
        self.space = space
        self.target = space.genome_of(target)
        self.centre = space.features(self.target[None])[0]
        self.calls = 0

    def __call__(self, genomes: np.ndarray) -> np.ndarray:
        self.calls += genomes.shape[0]
        return 1.0 + ((self.space.features(genomes) - self.centre) ** 2).sum(axis=1)


TARGET = {"m": (4, 4, 4), "n": (8, 4), "k": (4, 4), "w": 4}


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_budget_respected_and_no_repeats(name):
    space = bowl_space()
    land = Bowl(space, TARGET)
    result = search(FACTORIES[name](space), land, budget=100, key=jax.random.key(0))
    assert result.indices.size == result.costs.size == land.calls == 100
    assert np.unique(result.indices).size == 100
    assert result.best_cost == result.costs.min() == land(space.genomes([result.best_index]))[0]


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_exhausts_a_small_constrained_space_exactly_once(name):
    space = Space(
        [Axis("m", 16, 2), Axis("k", 8, 2)], [Knob("w", (1, 2, 4))],
        constraint=lambda t: t["m"][:, 1] * t["k"][:, 1] <= 32,
    )
    land = Bowl(space, {"m": (4, 4), "k": (2, 4), "w": 2})
    count = space.count()
    result = search(FACTORIES[name](space), land, budget=10 * count, key=jax.random.key(1))
    assert result.indices.size == count and np.unique(result.indices).size == count
    assert space.valid(space.genomes(result.indices)).all()
    assert result.best_index == space.indices(land.target[None])[0]


@pytest.mark.parametrize("name", ["gbfs", "na2c", "annealing", "cost_model"])
def test_local_search_finds_known_optimum_in_a_quarter_of_the_space(name):
    space = bowl_space()
    land = Bowl(space, TARGET)
    budget = space.size // 4
    options = {"sa_iterations": 100} if name == "cost_model" else {}  # a cheaper model search keeps the test short
    for seed in (0,) if name == "cost_model" else (0, 1):
        result = search(FACTORIES[name](space, **options), land, budget=budget, key=jax.random.key(seed))
        assert result.best_index == space.indices(land.target[None])[0], (name, seed)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_same_key_same_trajectory(name):
    """Determinism given the key and the costs: what lets a killed tuning run replay from its cache."""
    space = bowl_space()
    a = search(FACTORIES[name](space), Bowl(space, TARGET), budget=70, key=jax.random.key(3))
    b = search(FACTORIES[name](space), Bowl(space, TARGET), budget=70, key=jax.random.key(3))
    np.testing.assert_array_equal(a.indices, b.indices)


@pytest.fixture(scope="module")
def paper_landscape():
    return AnalyticLandscape.tvm_gemm(512, 1024, 1024, prune=False)


def best_costs(factory, land, budget, seeds):
    return [search(factory(land.space), land, budget=budget, key=jax.random.key(s)).best_cost for s in seeds]


def test_gbfs_and_na2c_beat_random_on_the_analytic_model(paper_landscape):
    """Paper §5 on the 512×1024×1024 TVM space (4.15M configurations, ~96 % of them cannot launch)."""
    seeds, budget = (0, 1, 2), 256
    rand = np.median(best_costs(random_search, paper_landscape, budget, seeds))
    g = np.median(best_costs(gbfs, paper_landscape, budget, seeds))
    n = np.median(best_costs(na2c, paper_landscape, budget, seeds))
    assert g < rand and n < rand, (g, n, rand)


class TestActorCriticLoss(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_actor_critic_loss_has_the_correct_sign(self):
        """One gradient step on the loss raises log π(a|s) for a positive advantage and lowers it for a negative one;
        NNI's sign (+log π · A) would do the opposite."""
        loss = self.variant(actor_critic_loss)
        logits = jnp.zeros((1, 4))
        action = jnp.array([2])
        mask = jnp.ones(1)
        for reward, direction in ((1.0, 1.0), (-1.0, -1.0)):
            grad = jax.grad(lambda l: loss(l, jnp.zeros(1), action, jnp.array([reward]), mask))(logits)
            after = jax.nn.log_softmax(logits - 0.1 * grad)[0, 2] - jax.nn.log_softmax(logits)[0, 2]
            assert direction * after > 0
        # the critic is regressed on the reward: d/dV (r − V)² = −2 (r − V)
        dv = jax.grad(lambda v: loss(logits, v, action, jnp.array([1.0]), mask))(jnp.zeros(1))
        chex.assert_trees_all_close(dv, jnp.array([-2.0]))
        # rows outside the mask do not count: the loss is the mean over the masked rows only
        two = loss(jnp.zeros((2, 4)), jnp.zeros(2), jnp.array([2, 0]), jnp.array([1.0, 5.0]), jnp.array([1.0, 0.0]))
        one = loss(logits, jnp.zeros(1), action, jnp.array([1.0]), mask)
        chex.assert_trees_all_close(two, one)


def test_bad_hyper_parameters_and_budget():
    space = bowl_space()
    with pytest.raises(ValueError, match=r"jeq.gemm.gbfs\(num_neighbours=0\)"):
        gbfs(space, num_neighbours=0)
    with pytest.raises(ValueError, match=r"jeq.gemm.gbfs\(start=\[0, 0"):
        gbfs(space, start=np.zeros(space.genome_length, np.int32))  # exponents do not factor the dimensions
    with pytest.raises(ValueError, match=r"jeq.gemm.gbfs\(start=\[1, 2\]\): not a genome of this space"):
        gbfs(space, start=[1, 2])
    with pytest.raises(ValueError, match=r"jeq.gemm.gbfs\(unvisited_only='yes'\): must be one of"):
        gbfs(space, unvisited_only="yes")
    with pytest.raises(ValueError, match=r"jeq.gemm.simulated_annealing\(cooling=0.0\)"):
        simulated_annealing(space, cooling=0.0)
    with pytest.raises(ValueError, match=r"jeq.gemm.na2c\(learning_rate=-1.0\)"):
        na2c(space, learning_rate=-1.0)
    with pytest.raises(ValueError, match=r"jeq.gemm.na2c\(epsilon=2\)"):
        na2c(space, epsilon=2)
    with pytest.raises(ValueError, match=r"jeq.gemm.genetic\(mutation_prob=1.5\)"):
        genetic(space, mutation_prob=1.5)
    with pytest.raises(ValueError, match=r"jeq.gemm.cost_model\(plan_size=0\)"):
        cost_model(space, plan_size=0)
    with pytest.raises(ValueError, match=r"jeq.gemm.search\(budget=0\)"):
        search(random_search(space), Bowl(space, TARGET), budget=0, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"jeq.gemm.with_deadline\(deadline=nan\): must be finite"):
        with_deadline(random_search(space), float("nan"))


def test_a_search_with_a_deadline_stops_when_the_clock_passes_it():
    """The strategy asks for nothing once ``clock() > deadline``: the search keeps the batches asked before it, the
    same ones the search without a deadline measures first."""
    space = bowl_space()
    ticks = iter(range(1000))
    strategy = with_deadline(random_search(space, batch_size=4), 2.5, clock=lambda: next(ticks))
    stopped = search(strategy, Bowl(space, TARGET), budget=100, key=jax.random.key(0))
    full = search(random_search(space, batch_size=4), Bowl(space, TARGET), budget=100, key=jax.random.key(0))
    assert stopped.indices.size == 12  # asks at clock 0, 1, 2; the ask at clock 3 > 2.5 ends the search
    np.testing.assert_array_equal(stopped.indices, full.indices[:12])


@functools.cache
def fitted_forest(rows: int = 400, features: int = 6) -> tuple[HistGradientBoostingRegressor, np.ndarray]:
    """The cost model's regressor (AutoTVM's depth and step) fitted on a smooth function of features in [-0.5, 0.5]."""
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (rows, features)).astype(np.float32)
    y = np.sin(3 * x[:, 0]) + x[:, 1] * x[:, 2] - x[:, 3] ** 2
    model = HistGradientBoostingRegressor(max_depth=3, learning_rate=0.3, max_iter=100, early_stopping=False)
    with threadpool_limits(1):  # as in the cost model: OpenMP start-up dominates such small fits
        return model.fit(x, y), x


def test_vectorised_forest_predicts_what_scikit_learn_predicts():
    """In the supported scikit-learn versions the cost model walks all trees at once; on unseen rows it gives
    scikit-learn's own predictions."""
    model, x = fitted_forest()
    fast = forest_predictor(model, x)
    assert fast != model.predict  # the walker, not the public fallback
    unseen = np.random.default_rng(1).uniform(-0.6, 0.6, (1000, x.shape[1])).astype(np.float32)
    chex.assert_trees_all_close(fast(unseen), model.predict(unseen), rtol=1e-6, atol=1e-9)


def test_forest_predictor_falls_back_to_public_predict(monkeypatch):
    """Without the private tree layout (another regressor) or outside the tested scikit-learn versions, the public
    ``predict`` is used."""
    model, x = fitted_forest()

    class PublicOnly:  # a regressor with only the public API
        predict = staticmethod(model.predict)

    assert forest_predictor(PublicOnly(), x) == model.predict
    monkeypatch.setattr(sklearn, "__version__", "2.0.0")
    assert forest_predictor(model, x) == model.predict


def test_search_rejects_a_strategy_that_repeats():
    space = bowl_space()
    honest = random_search(space)
    liar = honest._replace(ask=lambda key, state, n: (space.genomes([0]), state))
    with pytest.raises(RuntimeError, match="already measured"):
        search(liar, Bowl(space, TARGET), budget=5, key=jax.random.key(0))


class BestFirstOracle:
    """Replays Algorithm 1 beside a G-BFS search (as its ``search`` callback) and records every departure from it.

    Before each batch the cheapest measured state not yet expanded (cost, then index) that still has an unvisited
    neighbour must be the one expanded: the batch is ``min(ρ, |U|)`` of its unvisited neighbours ``U``; states whose
    neighbours are all visited are passed over; a random restart is allowed only when no such state is left.
    """

    def __init__(self, space: Space, rho: int, budget: int):
        self.space, self.rho, self.left = space, rho, budget
        self.costs: dict[int, float] = {}
        self.expanded: set[int] = set()
        self.violations: list[str] = []
        self.expansions = self.restarts = 0

    def unvisited_neighbours(self, index: int) -> set[int]:
        nb, _ = self.space.neighbours(self.space.genomes([index])[0])
        return set(self.space.indices(nb).tolist()) - set(self.costs) if nb.size else set()

    def __call__(self, indices: np.ndarray, costs: np.ndarray) -> None:
        batch = indices.tolist()
        if self.costs:  # the first batch is the start configuration
            parent, fresh = None, set()
            unexpanded = [(c, i) for i, c in self.costs.items() if np.isfinite(c) and i not in self.expanded]
            for _, index in sorted(unexpanded):
                self.expanded.add(index)
                fresh = self.unvisited_neighbours(index)
                if fresh:
                    parent = index
                    break
            if parent is None:
                self.restarts += 1
                if len(batch) != 1 or batch[0] in self.costs:
                    self.violations.append(f"restart proposed {batch}")
            else:
                self.expansions += 1
                want = min(self.rho, len(fresh), self.left)
                if not set(batch) <= fresh or len(batch) != want:
                    self.violations.append(f"expanding {parent}: {len(batch)} proposed, {want} unvisited expected")
        self.costs.update(zip(batch, costs.tolist()))
        self.left -= len(batch)


def faulty_bowl(space: Space):
    """The bowl, with every configuration at the largest knob value a failed measurement (never expanded)."""
    bowl = Bowl(space, TARGET)
    return lambda g: np.where(np.asarray(g)[:, -1] == 3, np.inf, bowl(g))


def test_gbfs_always_expands_the_cheapest_unexpanded_state_and_never_stalls():
    """G-BFS (Algorithm 1) pops the cheapest state not yet expanded and measures ρ of its unvisited neighbours; it
    never comes back empty-handed, and never restarts at random, while a measured state has unvisited neighbours."""
    space, rho, budget = bowl_space(), 2, 400
    for seed in (0, 1):
        oracle = BestFirstOracle(space, rho, budget)
        result = search(gbfs(space, num_neighbours=rho), faulty_bowl(space), budget=budget, key=jax.random.key(seed),
                        callback=oracle)
        assert result.indices.size == budget
        assert oracle.violations == [], oracle.violations[:3]
        assert oracle.restarts == 0 and oracle.expansions > budget // (2 * rho)


def test_gbfs_paper_literal_draw_can_expand_a_state_to_nothing():
    """``unvisited_only=False`` draws ρ of all legal moves and drops visited neighbours (paper, NNI): on the same runs
    expansions come back short of ρ unvisited neighbours, which the default draw never does."""
    space, rho, budget = bowl_space(), 2, 400
    oracle = BestFirstOracle(space, rho, budget)
    search(gbfs(space, num_neighbours=rho, unvisited_only=False), faulty_bowl(space), budget=budget,
           key=jax.random.key(0), callback=oracle)
    assert any("unvisited expected" in v for v in oracle.violations)


def test_gbfs_finishes_an_expansion_that_max_count_cut_short():
    """An ask limited to fewer configurations than the expansion holds leaves the rest for the next ask, which
    proposes them before popping another state."""
    space = bowl_space()
    strategy = gbfs(space, num_neighbours=5)
    key = jax.random.key(0)
    state = strategy.init(key)
    land = Bowl(space, TARGET)
    g0, state = strategy.ask(key, state, 10)
    state = strategy.tell(state, g0, land(g0))
    first, state = strategy.ask(key, state, 2)
    rest, state = strategy.ask(key, state, 10)
    nb, _ = space.neighbours(g0[0])
    expansion = np.concatenate([first, rest])
    assert first.shape[0] == 2 and rest.shape[0] == 3  # 5 = ρ neighbours of the start, split 2 + 3
    assert isin_sorted(space.indices(expansion), np.sort(space.indices(nb))).all()


def chain_space() -> Space:
    """16 moves; the move ``m: part 0 → part 1`` (factor 2) is legal for 60 steps from the start."""
    return Space([Axis("m", 2**60, 2), Axis("n", 64, 3), Axis("k", 64, 3)], [Knob("w", tuple(range(8)))])


def chain_landscape(space: Space):
    """One move is always best: it halves the cost; every other move from the incumbent adds 10 % or doubles it."""

    def cost(genomes: np.ndarray) -> np.ndarray:
        d = space.decode(genomes)
        off = 12 - np.log2(d["n"][:, 0]) - np.log2(d["k"][:, 0]) + np.asarray(genomes)[:, -1]
        return 2.0 ** -np.log2(d["m"][:, 1]) * (1.0 + 0.1 * off)

    return cost


def na2c_rounds(strategy, state, key, rounds, *, first=0):
    """Ask/tell ``rounds`` rounds; returns the state and π(best move | incumbent) after each round."""
    space = strategy.space
    land = chain_landscape(space)
    best = space.action_labels.index(("m", 0, 1, 2))
    probs = []
    for t in range(first, first + rounds):
        genomes, state = strategy.ask(jax.random.fold_in(key, t), state, 64)
        state = strategy.tell(state, genomes, land(genomes))
        probs.append(action_probabilities(space, state, state.best_genome[None])[0, best])
    return state, np.asarray(probs)


@functools.cache
def na2c_trained(seed: int):
    """25 rounds of N-A2C (one-step rollouts, lr 1e-2) on the chain landscape, from a uniform policy."""
    strategy = na2c(chain_space(), learning_rate=1e-2, rollout_steps=1)
    key = jax.random.key(seed)
    state = strategy.init(key)
    start = action_probabilities(strategy.space, state, strategy.space.start()[None])[0, 0]
    state, probs = na2c_rounds(strategy, state, key, 25)
    return state, np.concatenate([[start], probs])


@pytest.mark.parametrize("seed", [0, 1])
def test_na2c_raises_the_probability_of_the_move_that_is_always_best(seed):
    """On a landscape where one move always halves the cost, π(that move | incumbent) rises over rounds from the
    uniform 1/16 to near 1."""
    _, probs = na2c_trained(seed)
    assert probs[0] == pytest.approx(1 / 16, rel=0.5)
    assert probs[10] > 2 * probs[0] and probs[-1] > 0.9, np.round(probs, 3)


@pytest.mark.parametrize("seed", [0, 1])
def test_na2c_fill_in_moves_do_not_bias_the_policy_gradient(seed):
    """Once the rollouts keep finding the best move, the rest of each batch is filled with uniformly drawn neighbours
    of the incumbent. With the paper's GFLOPS reward the critic lags far below the reward, every advantage is positive,
    and counting those fill-ins as if π had sampled them pulls π towards uniform; trained on its own moves only
    (``off_policy="importance"``, the default) the policy keeps the best move."""
    trained, before = na2c_trained(seed)
    key = jax.random.key(seed)
    final = {}
    for mode in ("importance", "as_policy"):
        strategy = na2c(chain_space(), learning_rate=1e-2, rollout_steps=1, max_rollouts=1, reward="gflops",
                        flops=1e11, off_policy=mode)
        _, probs = na2c_rounds(strategy, trained, key, 15, first=25)
        final[mode] = probs
    assert final["importance"].min() > before[-1] - 0.02 and final["importance"][-1] > 0.95, final
    assert final["as_policy"][-1] < before[-1] - 0.2, final  # the biased estimator drags the best move down


def test_na2c_rewards_ratio_and_gflops():
    """Ratio: speed-up over the incumbent, capped at 10; GFLOPS: flops / cost / 1e9 (the paper's); failures earn 0."""
    costs = np.array([0.5, 2.0, 0.01, np.inf, np.nan])
    chex.assert_trees_all_close(na2c_rewards(costs, reference_cost=1.0), np.array([2.0, 0.5, 10.0, 0.0, 0.0]))
    chex.assert_trees_all_close(na2c_rewards(costs, reward="gflops", flops=2e9), np.array([4.0, 1.0, 200.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match=r"jeq.gemm.na2c_rewards\(flops=None\)"):
        na2c_rewards(costs, reward="gflops")
    space = bowl_space()
    with pytest.raises(ValueError, match=r"jeq.gemm.na2c\(reward='time'\): must be one of"):
        na2c(space, reward="time")
    with pytest.raises(ValueError, match=r"jeq.gemm.na2c\(flops=None\)"):
        na2c(space, reward="gflops")
    with pytest.raises(ValueError, match=r"jeq.gemm.na2c\(flops=1000.0\): is used by reward=\"gflops\" only"):
        na2c(space, flops=1e3)
    with pytest.raises(ValueError, match=r"jeq.gemm.na2c\(off_policy='ignore'\)"):
        na2c(space, off_policy="ignore")
    result = search(na2c(space, reward="gflops", flops=1e9), Bowl(space, TARGET), budget=60, key=jax.random.key(0))
    assert result.indices.size == 60
