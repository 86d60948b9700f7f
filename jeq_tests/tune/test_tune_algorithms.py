"""Target algorithms (evosax DE/GA/PSO/SA): each beats a random guess on Sphere, is deterministic per key, runs under
jit/vmap/scan, and grouped evaluation equals one-by-one evaluation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jeq import tune
from jeq.validate import ArgumentError

EVALUATIONS = 2048
SPHERE = tune.make_problem("sphere", dimension=10, count=2)


def _keys(n: int, seed: int = 0) -> jax.Array:
    return jax.random.split(jax.random.key(seed), n)


@pytest.mark.parametrize("name", sorted(tune.ALGORITHMS))
def test_each_algorithm_beats_a_random_guess_on_sphere_within_its_budget(name):
    """The best of `evaluations` uniform points in the box is the 'random guess' at the same number of evaluations."""
    keys = _keys(4)
    found = tune.evaluate(name, SPHERE, [{}], keys, evaluations=EVALUATIONS)[0]
    rng = np.random.default_rng(0)
    guesses = []
    for j in range(4):
        x = rng.uniform(SPHERE.low, SPHERE.high, (EVALUATIONS, SPHERE.dimension))
        shift = SPHERE.data["shift"][j % SPHERE.count]
        guesses.append(np.min(np.sum((x - shift) ** 2, axis=1)))
    assert np.all(np.isfinite(found))
    assert np.mean(found) < 0.5 * np.mean(guesses), (found, guesses)
    # same key, same result; another key, another result
    again = tune.evaluate(name, SPHERE, [{}], keys, evaluations=EVALUATIONS)[0]
    np.testing.assert_array_equal(found, again)
    other = tune.evaluate(name, SPHERE, [{}], _keys(4, seed=1), evaluations=EVALUATIONS)[0]
    assert not np.array_equal(found, other)


def test_runs_under_jit_vmap_and_scan_and_match_evaluate():
    """One program: jit of a vmap over θ of a lax.scan over seeds, for every registered algorithm."""
    keys = _keys(3)
    for algorithm in tune.ALGORITHMS.values():
        theta = tune.default_theta(algorithm)
        static = {hp.name: theta[hp.name] for hp in algorithm.hyperparameters if hp.grouped}
        traced_names = [hp for hp in algorithm.hyperparameters if not hp.grouped]

        def traced_of(value_row):
            return {hp.name: value_row[i] for i, hp in enumerate(traced_names)}

        row = [hp.choices.index(theta[hp.name]) if hp.kind == "categorical" else theta[hp.name]
               for hp in traced_names]
        dtype = [jnp.int32 if hp.kind in ("categorical", "int") else jnp.float32 for hp in traced_names]
        thetas = [jnp.asarray([v, v], d) for v, d in zip(row, dtype)]

        def per_theta(values):
            def body(carry, inputs):
                key, j = inputs
                data = jax.tree.map(lambda leaf: jnp.asarray(leaf)[j % SPHERE.count], SPHERE.data)
                best = algorithm.run(static, traced_of(values), key, SPHERE.objective, data, low=SPHERE.low,
                                     high=SPHERE.high, dimension=SPHERE.dimension, evaluations=EVALUATIONS)
                return carry, best

            return jax.lax.scan(body, 0, (keys, jnp.arange(3)))[1]

        fn = jax.jit(jax.vmap(per_theta)).lower(thetas).compile({"xla_backend_optimization_level": 0})
        got = np.asarray(fn(thetas))
        want = tune.evaluate(algorithm, SPHERE, [theta], keys, evaluations=EVALUATIONS)
        assert got.shape == (2, 3)
        np.testing.assert_allclose(got, np.repeat(want, 2, axis=0), rtol=1e-4, atol=1e-5)


def test_grouped_evaluation_equals_one_by_one():
    rng = np.random.default_rng(3)
    de = tune.ALGORITHMS["de"]
    thetas = [{"population_size": int(rng.choice([8, 16])), "base_vector": str(rng.choice(["rand", "best"])),
               "crossover_rate": float(rng.random()), "differential_weight": float(2 * rng.random())}
              for _ in range(5)]
    keys = _keys(3)
    batch = tune.evaluate(de, SPHERE, thetas, keys, evaluations=EVALUATIONS)
    one = np.stack([tune.evaluate(de, SPHERE, [t], keys, evaluations=EVALUATIONS)[0] for t in thetas])
    assert batch.shape == (5, 3)
    np.testing.assert_allclose(batch, one, rtol=1e-6)
    assert len(tune.group_thetas(de, [tune.validate_theta(de, t) for t in thetas])) >= 2


def test_registry_declares_kinds_ranges_and_defaults():
    for algorithm in tune.ALGORITHMS.values():
        names = [hp.name for hp in algorithm.hyperparameters]
        assert len(set(names)) == len(names)
        assert any(hp.grouped for hp in algorithm.hyperparameters)  # population size
        for hp in algorithm.hyperparameters:
            assert hp.kind in tune.KINDS
            assert hp.contains(hp.default)
        assert tune.validate_theta(algorithm, {}) == tune.default_theta(algorithm)
    kinds = {hp.kind for a in tune.ALGORITHMS.values() for hp in a.hyperparameters}
    assert kinds == set(tune.KINDS)


def test_bad_input_gives_clear_errors():
    with pytest.raises(ArgumentError, match=r"jeq.tune.hyperparameter\(high=1.0\): must be > low=1.0"):
        tune.hyperparameter("x", "float", low=1.0, high=1.0, default=1.0)
    with pytest.raises(ArgumentError, match="empty or inverted"):
        tune.hyperparameter("x", "float", low=2.0, high=1.0, default=1.5)
    with pytest.raises(ArgumentError, match="choices"):
        tune.hyperparameter("x", "categorical", choices=(), default=None)
    with pytest.raises(ArgumentError, match="log-float"):
        tune.hyperparameter("x", "log-float", low=0.0, high=1.0, default=0.5)
    with pytest.raises(ArgumentError, match=r"jeq.tune.get_algorithm\(name='cmaes'\): must be one of"):
        tune.get_algorithm("cmaes")
    with pytest.raises(ArgumentError, match=r"crossover_rate=1.5\): must be in \[0.0, 1.0\]"):
        tune.evaluate("de", SPHERE, [{"crossover_rate": 1.5}], _keys(2), evaluations=EVALUATIONS)
    with pytest.raises(ArgumentError, match="unknown hyper-parameters"):
        tune.evaluate("de", SPHERE, [{"learning_rate": 0.1}], _keys(2), evaluations=EVALUATIONS)
    with pytest.raises(ArgumentError, match=r"population_size=12\): must be one of \[8, 16, 32, 64\]"):
        tune.evaluate("de", SPHERE, [{"population_size": 12}], _keys(2), evaluations=EVALUATIONS)
    with pytest.raises(ArgumentError, match="at least one"):
        tune.evaluate("de", SPHERE, [], _keys(2), evaluations=EVALUATIONS)
    with pytest.raises(ArgumentError, match="jax.random.key"):
        tune.evaluate("de", SPHERE, [{}], np.zeros((2, 2), np.uint32), evaluations=EVALUATIONS)
    with pytest.raises(ArgumentError,
                       match=r"jeq.tune.evaluate\(evaluations=40\): must allow >= 2 generations of population_size=32"):
        tune.evaluate("de", SPHERE, [{}], _keys(2), evaluations=40)
