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
    actor_critic_loss,
    cost_model,
    gbfs,
    genetic,
    na2c,
    random_search,
    search,
    simulated_annealing,
    with_deadline,
)
from jeq.gemm.baselines import forest_predictor

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
