"""The RL tuner: exact log-probability gradients, θ always in range, beats random search at equal runs on a synthetic
g(θ) + noise with a known optimum, resumes after SIGKILL spending exactly the budget, and tunes DE to the brute-force
optimum of a 6-city TSP. Baselines (random, TPE, GP-EI) obey the same budget."""

from __future__ import annotations

import itertools
import os
import pathlib
import pickle
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jeq import tune
from jeq.validate import ArgumentError

SPACE, g, noisy = tune.SYNTHETIC_SPACE, tune.synthetic_quality, tune.synthetic_objective
"""The synthetic problem of jeq.tune: every kind of hyper-parameter; g = 0 exactly at a=0.8, b=-1.2, c=10^-2.5, k='z',
n=2; noisy is A(θ) = g(θ)·exp(0.1 ε) + 0.001 for 2 seeds, a multiplicative noise model with objectives > 0."""


def test_policy_log_prob_gradient_matches_finite_differences(x64):
    params = tune.init_policy(jax.random.key(1), SPACE, hidden=6)
    # random head weights, so that every step depends on the earlier ones
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(2), len(leaves))
    params = jax.tree.unflatten(treedef, [leaf + 0.3 * jax.random.normal(k, leaf.shape, jnp.float64)
                                          for leaf, k in zip(leaves, keys)])
    actions = jax.jit(tune.sample, static_argnums=2)(params, jax.random.key(3), SPACE)
    grad = jax.jit(jax.grad(tune.log_prob), static_argnums=2)(params, actions, SPACE)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    flat_grad = jax.flatten_util.ravel_pytree(grad)[0]
    f = jax.jit(lambda v: tune.log_prob(unravel(v), actions, SPACE))
    eps = 1e-6
    for i in np.random.default_rng(0).choice(flat.size, 25, replace=False):
        e = jnp.zeros_like(flat).at[i].set(eps)
        fd = (f(flat + e) - f(flat - e)) / (2 * eps)
        assert float(flat_grad[i]) == pytest.approx(float(fd), rel=1e-5, abs=1e-8)
    # the entropy bonus is differentiable too, and exact for the initial (state-independent) policy
    init = tune.init_policy(jax.random.key(1), SPACE, initial_std=2.0)
    want = 3 * (np.log(2.0) + 0.5 * np.log(2 * np.pi * np.e)) + np.log(4) + np.log(3)
    assert float(jax.jit(tune.entropy, static_argnums=2)(init, actions, SPACE)) == pytest.approx(want)


_sample16 = jax.jit(jax.vmap(lambda params, k: tune.sample(params, k, SPACE), in_axes=(None, 0)))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(-30, 30), st.floats(-4, 2))
def test_sampled_thetas_always_lie_in_their_ranges_and_choices(seed, mean, log_std):
    params = tune.init_policy(jax.random.key(seed), SPACE)
    heads = [dict(h) for h in params["heads"]]
    for hp, head in zip(SPACE, heads):
        if hp.kind in ("float", "log-float"):
            head["b"] = jnp.asarray([mean, log_std])
        else:
            head["b"] = jnp.linspace(-abs(mean), abs(mean), head["b"].shape[0])
    params = {"trunk": params["trunk"], "heads": heads}
    for a in np.asarray(_sample16(params, jax.random.split(jax.random.key(seed), 16))):
        theta = tune.action_to_theta(a, SPACE)
        assert tune.validate_theta(SPACE, theta) == theta


def test_rl_tuner_beats_random_search_at_equal_runs_on_a_synthetic_g_plus_noise():
    """160 runs each (80 θ x 2 seeds), 6 tuner seeds; quality of the returned θ measured by the noise-free g."""
    rl, rnd = [], []
    for seed in range(6):
        for strategy, out in ((tune.reinforce(SPACE, batch_size=8), rl),
                              (tune.random_search(SPACE, batch_size=8), rnd)):
            result = tune.tune(strategy, noisy, budget=160, seeds_per_theta=2, key=jax.random.key(seed))
            assert result.runs == 160 and len(result.thetas) == 80
            out.append(g(result.best_theta))
    assert np.mean(rl) < 0.6 * np.mean(rnd), (rl, rnd)
    assert np.median(rl) < np.median(rnd), (rl, rnd)


def test_baselines_spend_exactly_the_budget_and_improve_on_the_first_batch():
    for strategy in (tune.tpe(SPACE, batch_size=4), tune.gp_ei(SPACE, batch_size=4), tune.random_search(SPACE)):
        result = tune.tune(strategy, noisy, budget=48, seeds_per_theta=2, key=jax.random.key(0))
        assert result.runs == 48 and result.objectives.shape == (24, 2)
        runs, best = result.best_so_far()
        assert runs[-1] == 48 and np.all(np.diff(best) <= 0)
        assert result.runs_to_reach(best[-1]) <= 48


_RESUME_SCRIPT = """
import sys, time, jax, numpy as np
sys.path.insert(0, {tests!r})
from test_tune_tuner import SPACE, noisy
from jeq import tune

def slow(thetas, key):
    time.sleep(0.2)
    return noisy(thetas, key)

result = tune.tune(tune.reinforce(SPACE, batch_size=4), slow, budget=80, seeds_per_theta=2, key=jax.random.key(5),
                   checkpoint={ckpt!r})
print("done", result.runs)
"""


def test_a_tuning_killed_mid_run_resumes_and_spends_exactly_the_budget(tmp_path):
    ckpt = tmp_path / "tuning.pkl"
    script = _RESUME_SCRIPT.format(tests=str(pathlib.Path(__file__).parent), ckpt=str(ckpt))
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    log = tmp_path / "stderr.txt"
    with open(log, "wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists() and tune.checkpoint_progress(ckpt)["step"] >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, log.read_text()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = tune.checkpoint_progress(ckpt)["step"]
    assert 2 <= done < 10

    calls = []

    def counted(thetas, key):
        calls.append(len(thetas))
        return noisy(thetas, key)

    resumed = tune.tune(tune.reinforce(SPACE, batch_size=4), counted, budget=80, seeds_per_theta=2,
                        key=jax.random.key(5), checkpoint=ckpt)
    fresh = tune.tune(tune.reinforce(SPACE, batch_size=4), noisy, budget=80, seeds_per_theta=2, key=jax.random.key(5))
    assert resumed.runs == 80 and sum(calls) * 2 == 80 - 2 * 4 * done  # only the unfinished batches were run again
    np.testing.assert_array_equal(resumed.objectives, fresh.objectives)
    assert resumed.thetas == fresh.thetas and resumed.best_theta == fresh.best_theta


def test_tuned_de_finds_the_brute_force_optimum_of_a_6_city_tsp():
    problem = tune.make_problem("tsp", dimension=6, count=1)
    cities = problem.data["cities"][0]
    optimum = min(float(tune.tour_length(cities, jnp.asarray((0,) + p))) for p in itertools.permutations(range(1, 6)))
    de = tune.ALGORITHMS["de"]
    space = [hp for hp in de.hyperparameters if not hp.grouped]  # population 32, one difference vector
    evaluate = tune.batch_evaluator(
        lambda thetas, keys: tune.evaluate(de, problem, thetas, keys, evaluations=256), seeds_per_theta=2)
    result = tune.tune(
        tune.reinforce(space, batch_size=4), evaluate, budget=24, seeds_per_theta=2, key=jax.random.key(0),
        heldout=lambda theta: tune.evaluate(de, problem, [theta], jax.random.split(jax.random.key(99), 4),
                                            evaluations=256)[0])
    assert result.heldout.shape == (4,)  # the best θ re-run with 4 fresh seeds, outside the budget
    np.testing.assert_allclose(result.heldout, optimum, rtol=1e-5)


def test_bad_tuning_input_gives_clear_errors(tmp_path):
    rl = tune.reinforce(SPACE, batch_size=8)
    with pytest.raises(ArgumentError, match=r"jeq.tune.tune\(budget=10\): must cover at least one batch: 8 θ x 2"):
        tune.tune(rl, noisy, budget=10, seeds_per_theta=2, key=jax.random.key(0))
    with pytest.raises(ArgumentError, match="multiple of seeds_per_theta=2"):
        tune.tune(rl, noisy, budget=33, seeds_per_theta=2, key=jax.random.key(0))
    with pytest.raises(ArgumentError, match=r"jeq.tune.reinforce\(learning_rate=0.0\): must be > 0"):
        tune.reinforce(SPACE, learning_rate=0.0)
    ckpt = tmp_path / "c.pkl"
    tune.tune(tune.random_search(SPACE, batch_size=8), noisy, budget=16, seeds_per_theta=2, key=jax.random.key(0),
              checkpoint=ckpt)
    with pytest.raises(ArgumentError, match="holds another tuning"):
        tune.tune(rl, noisy, budget=16, seeds_per_theta=2, key=jax.random.key(0), checkpoint=ckpt)
    ckpt.write_bytes(pickle.dumps({"step": 1}))
    with pytest.raises(ArgumentError, match="not a jeq.tune checkpoint"):
        tune.tune(rl, noisy, budget=16, seeds_per_theta=2, key=jax.random.key(0), checkpoint=ckpt)

    def broken_ask(key, state, max_count):
        return [{"a": 2.0}], state

    broken = tune.Strategy("broken", SPACE, 1, lambda key: None, broken_ask, lambda s, t, o: s)
    with pytest.raises(RuntimeError, match=r"broken.ask proposed a θ outside the space"):
        tune.tune(broken, noisy, budget=2, seeds_per_theta=2, key=jax.random.key(0))


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_gp_unit_cube_encoding_round_trips_every_theta(seed):
    for space in (SPACE, tune.ALGORITHMS["de"].hyperparameters, tune.ALGORITHMS["sa"].hyperparameters):
        theta = tune.sample_uniform(np.random.default_rng(seed), space)
        u = tune.encode_unit(theta, space)
        assert np.all((0.0 <= u) & (u <= 1.0))
        back = tune.decode_unit(u, space)
        assert back.keys() == theta.keys()
        for hp in space:
            if hp.kind in ("float", "log-float"):
                assert back[hp.name] == pytest.approx(theta[hp.name], rel=1e-9)
            else:
                assert back[hp.name] == theta[hp.name]


@pytest.mark.parametrize("factory", [tune.tpe, tune.gp_ei, tune.random_search, tune.reinforce])
def test_every_strategy_resumes_from_its_checkpoint_to_the_uninterrupted_result(tmp_path, factory):
    fresh = tune.tune(factory(SPACE, batch_size=4), noisy, budget=48, seeds_per_theta=2, key=jax.random.key(3))
    calls = []

    def interrupted(thetas, key):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt  # the 4th batch never finishes
        return noisy(thetas, key)

    ckpt = tmp_path / "tuning.ckpt"
    with pytest.raises(KeyboardInterrupt):
        tune.tune(factory(SPACE, batch_size=4), interrupted, budget=48, seeds_per_theta=2, key=jax.random.key(3),
                  checkpoint=ckpt)
    assert tune.checkpoint_progress(ckpt) | {"fingerprint": None} == {"step": 3, "runs": 24, "fingerprint": None}
    resumed = tune.tune(factory(SPACE, batch_size=4), noisy, budget=48, seeds_per_theta=2, key=jax.random.key(3),
                        checkpoint=ckpt)
    assert resumed.runs == 48 and resumed.thetas == fresh.thetas
    np.testing.assert_array_equal(resumed.objectives, fresh.objectives)
