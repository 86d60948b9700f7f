"""Problems: shifted optima at 0, random-key decoders always give a valid tour / a feasible item set (hypothesis),
tuning and held-out instances are disjoint, and a sharded evaluation equals the one-device evaluation."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jeq import tune
from jeq.validate import ArgumentError

CONTINUOUS = ("sphere", "rosenbrock", "rastrigin", "ackley")


@pytest.mark.parametrize("name", CONTINUOUS)
def test_shifted_benchmarks_have_minimum_zero_at_the_shift(name):
    problem = tune.make_problem(name, dimension=10, count=3)
    objective = jax.jit(jax.vmap(problem.objective))
    shift = problem.data["shift"]
    np.testing.assert_allclose(objective(problem.data, shift), 0.0, atol=1e-4)
    rng = np.random.default_rng(0)
    for _ in range(5):
        away = shift + rng.normal(scale=0.3, size=shift.shape)
        assert np.all(np.asarray(objective(problem.data, away)) > 1e-3)


def test_tuning_and_heldout_instances_are_disjoint_and_reproducible():
    for name in ("rastrigin", "tsp", "knapsack"):
        dimension = 10
        tuning = tune.make_problem(name, dimension=dimension, split="tune", count=8)
        heldout = tune.make_problem(name, dimension=dimension, split="heldout", count=8)
        leaf_t, leaf_h = jax.tree.leaves(tuning.data)[0], jax.tree.leaves(heldout.data)[0]
        flat_t = {tuple(np.round(np.ravel(x), 6)) for x in leaf_t}
        flat_h = {tuple(np.round(np.ravel(x), 6)) for x in leaf_h}
        assert len(flat_t) == 8 and not flat_t & flat_h
        again = tune.make_problem(name, dimension=dimension, split="tune", count=8)
        np.testing.assert_array_equal(jax.tree.leaves(again.data)[0], leaf_t)


_decode_tour = jax.jit(tune.tsp_decode)
_decode_set = jax.jit(tune.knapsack_decode)
_KNAPSACK = tune.make_problem("knapsack", dimension=12, count=1)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float32, 9, elements=st.floats(-3, 3, width=32)))
def test_tsp_decoder_always_returns_a_valid_tour(x):
    tour = np.asarray(_decode_tour(x))
    assert sorted(tour.tolist()) == list(range(9))


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float32, 12, elements=st.floats(-1, 2, width=32)))
def test_knapsack_decoder_always_returns_a_feasible_subset_of_the_selection(x):
    data = _KNAPSACK.instance(0)
    chosen = np.asarray(_decode_set(x, data["weights"], data["values"], data["capacity"]))
    assert chosen.dtype == bool
    assert np.sum(data["weights"][chosen]) <= data["capacity"] + 1e-6
    assert not np.any(chosen & ~(x > 0.5))  # repair only removes
    # greedy repair drops the worst value/weight ratios first: no dropped item beats a kept one
    dropped = (x > 0.5) & ~chosen
    ratio = data["values"] / data["weights"]
    if dropped.any() and chosen.any():
        assert ratio[dropped].max() <= ratio[chosen].min() + 1e-6
    gap = float(_KNAPSACK.objective(data, x))
    assert 0.0 <= gap <= 1.0


def test_knapsack_gap_is_measured_against_the_lp_bound():
    """Brute force over 2^12 subsets: the best feasible value lies below Dantzig's bound, and its gap is >= 0."""
    data = _KNAPSACK.instance(0)
    best = 0.0
    for bits in itertools.product([0, 1], repeat=12):
        chosen = np.asarray(bits, bool)
        if data["weights"][chosen].sum() <= data["capacity"]:
            best = max(best, data["values"][chosen].sum())
    assert best <= data["bound"] + 1e-5
    assert best >= 0.9 * data["bound"]


def test_tour_length_of_a_square_is_its_perimeter():
    cities = jnp.asarray([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    assert float(tune.tour_length(cities, jnp.asarray([0, 1, 2, 3]))) == pytest.approx(4.0)
    assert float(tune.tour_length(cities, jnp.asarray([0, 2, 1, 3]))) == pytest.approx(2 + 2 * np.sqrt(2))


def test_bad_problem_input_gives_clear_errors():
    with pytest.raises(ArgumentError, match=r"jeq.tune.make_problem\(name='griewank'\): must be one of"):
        tune.make_problem("griewank", dimension=10)
    with pytest.raises(ArgumentError, match=r"dimension=5\): must be an int in \[10, 30\]"):
        tune.make_problem("sphere", dimension=5)
    with pytest.raises(ArgumentError, match=r"split='test'"):
        tune.make_problem("tsp", dimension=10, split="test")


def test_four_forced_cpu_devices_give_the_one_device_result(multidevice):
    code = """
        import jax, numpy as np
        from jeq import tune
        problem = tune.make_problem("tsp", dimension=10, count=3)
        thetas = [{}, {"population_size": 16, "crossover_rate": 0.3}, {"base_vector": "rand"}]
        keys = jax.random.split(jax.random.key(7), 5)
        one = tune.evaluate("de", problem, thetas, keys, evaluations=256)
        four = tune.evaluate("de", problem, thetas, keys, evaluations=256, devices=4)
        assert jax.device_count() == 4, jax.devices()
        print(np.abs(one - four).max(), one.shape)
    """
    out = multidevice(code, devices=4).split()
    assert float(out[0]) < 1e-6 and out[1:] == ["(3,", "5)"]
