"""Hopfield EP: energy, relaxation as a Lyapunov descent, EP gradient -> true gradient, train step, bad input."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree
from jax.test_util import check_grads

from jeq.data import digits
from jeq.eqprop import hopfield as H

EP_GRAD = jax.jit(H.eqprop_grad, static_argnames=("free_steps", "nudged_steps", "step_size", "activation",
                                                   "centered"))
FREE = jax.jit(H.free_phase, static_argnames=("steps", "step_size", "activation"))
PHASES = jax.jit(H.ep_phases, static_argnames=("free_steps", "nudged_steps", "centered"))


def _small(dtype=jnp.float32, sizes=(4, 6, 3), gain=2.0, seed=3):
    k1, k2 = jax.random.split(jax.random.key(seed))
    params = H.init(k1, list(sizes), gain=gain, dtype=dtype)
    x = jax.random.uniform(k2, (sizes[0],), dtype)
    return params, x


class TestHopfieldOpsJittedAndNot(chex.TestCase):
    """rho, the energy, the relaxation phases, the EP gradient and the EP objective: each checked jitted and not."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_rho_clips_with_unit_slope_on_the_closed_interval(self):
        with jax.enable_x64(True):
            u = jnp.array([-0.5, 0.0, 0.3, 1.0, 1.5])
            rho = self.variant(H.rho)
            np.testing.assert_array_equal(rho(u), [0.0, 0.0, 0.3, 1.0, 1.0])
            np.testing.assert_array_equal(self.variant(jax.vmap(jax.grad(H.rho)))(u), [0.0, 1.0, 1.0, 1.0, 0.0])
            check_grads(rho, (jnp.array([-0.4, 0.2, 0.7, 1.3]),), order=1, modes=("fwd", "rev"))
            chex.assert_trees_all_close(self.variant(H.scaled_sigmoid)(jnp.array([0.5])), jnp.array([0.5]))

    @chex.variants(with_jit=True, without_jit=True)
    def test_energy_is_the_papers_formula_and_its_gradients_check(self):
        with jax.enable_x64(True):
            params, x = _small(jnp.float64)
            state = (jnp.linspace(0.1, 0.9, 6), jnp.array([0.2, 0.5, 0.8]))
            (w0, w1), (b1, b2) = jax.tree.map(np.asarray, (params.weights, params.biases))
            s1, s2, xn = np.asarray(state[0]), np.asarray(state[1]), np.asarray(x)
            expected = (0.5 * (s1 @ s1 + s2 @ s2) - b1 @ s1 - b2 @ s2 - xn @ w0 @ s1 - s1 @ w1 @ s2)
            energy = self.variant(H.energy)
            chex.assert_trees_all_close(energy(params, state, x), expected, rtol=1e-12)
            check_grads(lambda s: energy(params, s, x), (state,), order=1, modes=("fwd", "rev"))
            g = self.variant(jax.grad(H.energy))(params, state, x)  # dE/dW_l = -rho_l rho_{l+1}^T (Scellier's terms)
            chex.assert_trees_all_close((g.weights, g.biases[1]), ((-np.outer(xn, s1), -np.outer(s1, s2)), -s2),
                                        rtol=1e-12)

    @chex.variants(with_jit=True, without_jit=True)
    def test_energy_is_non_increasing_along_the_free_and_nudged_relaxations(self):
        params, x = _small(sizes=(12, 10, 5), gain=1.0, seed=0)
        assert bool(H.energy_certificate(params, step_size=0.5).certified)
        y = jnp.eye(5)[2]

        @self.variant
        def phases(params, x, y):
            free = H.free_phase(params, x, steps=40, step_size=0.5)
            return free, H.nudged_phase(params, free.state, x, y, 0.5, steps=40, step_size=0.5)

        free, nudged = phases(params, x, y)
        chex.assert_shape([free.energy, free.state[0]], [(41,), (10,)])
        assert free.state[0].dtype == jnp.float32
        assert np.all(np.diff(np.asarray(free.energy)) <= 1e-6)
        assert float(free.residual) < 1e-4 and bool(free.finite)
        assert np.all(np.diff(np.asarray(nudged.energy)) <= 1e-6)
        assert float(H.cost(nudged.state, y)) < float(H.cost(free.state, y))  # nudging pulls the output to y

    @chex.variants(with_jit=True, without_jit=True)
    def test_persistent_particles_continue_the_relaxation(self):
        params, x = _small()
        y = jnp.array([0.0, 1.0, 0.0])
        free = self.variant(H.free_phase, static_argnames="steps")
        ep_grad = self.variant(H.eqprop_grad, static_argnames=("free_steps", "nudged_steps"))
        _, info = ep_grad(params, x, y, 0.5, free_steps=7, nudged_steps=2, state=free(params, x, steps=7).state)
        chex.assert_trees_all_close(info.free_state, free(params, x, steps=14).state, rtol=1e-6, atol=1e-7)

    @chex.variants(with_jit=True, without_jit=True)
    def test_ep_objective_is_the_energy_difference_whose_gradient_is_the_ep_estimate(self):
        """[E(high) - E(low)] / scale with the states held fixed; its theta-gradient is eqprop_grad's, both signs."""
        with jax.enable_x64(True):
            params, x = _small(jnp.float64)
            y = jnp.array([0.0, 0.0, 1.0])
            objective = self.variant(H.ep_objective)
            for centered, beta in ((False, 0.3), (True, -0.2)):
                low, high, info = PHASES(params, x, y, beta, free_steps=30, nudged_steps=6, centered=centered)
                free = FREE(params, x, steps=30).state
                chex.assert_trees_all_close(info.free_state, free)
                if not centered:
                    chex.assert_trees_all_close(low, free)  # one-sided EP: low = s_0
                scale = 2 * beta if centered else beta
                chex.assert_trees_all_close(objective(params, low, high, x, scale),
                                            (H.energy(params, high, x) - H.energy(params, low, x)) / scale,
                                            rtol=1e-12)
                grads, _ = EP_GRAD(params, x, y, beta, free_steps=30, nudged_steps=6, centered=centered)
                chex.assert_trees_all_close(self.variant(jax.grad(H.ep_objective))(params, low, high, x, scale), grads,
                                            rtol=1e-12)


def test_energy_certificate_fails_for_a_too_large_step():
    params, _ = _small(sizes=(12, 10, 5), gain=1.0, seed=0)
    cert = H.energy_certificate(params, step_size=0.5)
    assert not bool(H.energy_certificate(params, step_size=2.5 / float(cert.lipschitz)).certified)
    # the nudged phase's F = E + beta C is stiffer: a step certified for E alone is not certified for a large beta
    just_under = 1.9 / float(cert.lipschitz)
    assert bool(H.energy_certificate(params, step_size=just_under).certified)
    assert not bool(H.energy_certificate(params, step_size=just_under, beta=3.0).certified)
    assert not bool(H.energy_certificate(params, step_size=just_under, beta=-3.0).certified)


@jax.jit
def _true_gradient(params, x, y, state, step_size=0.5):
    """dC(s*)/dtheta by implicit differentiation of the fixed point s* = T(s*, theta) of the relaxation map."""
    flat, unravel = ravel_pytree(state)
    pflat, punravel = ravel_pytree(params)

    def t(sflat, pf):
        s = unravel(sflat)
        g = jax.grad(H.energy, argnums=1)(punravel(pf), s, x)
        return ravel_pytree(tuple(H.rho(a - step_size * b) for a, b in zip(s, g)))[0]

    ds = jax.jacobian(t, argnums=0)(flat, pflat)
    dp = jax.jacobian(t, argnums=1)(flat, pflat)
    dc = jax.grad(lambda sf: H.cost(unravel(sf), y))(flat)
    return jnp.linalg.solve((jnp.eye(flat.size) - ds).T, dc) @ dp


def test_ep_gradient_tends_to_the_true_gradient_as_beta_goes_to_zero(x64):
    """Scellier & Bengio's theorem: O(beta) error one-sided, O(beta^2) centered (Laborieux et al.)."""
    params, x = _small(jnp.float64)
    y = jnp.array([1.0, 0.0, 0.0])
    free = FREE(params, x, steps=200)
    assert float(free.residual) < 1e-13
    interior = sum(int(jnp.sum((s > 0) & (s < 1))) for s in free.state)
    assert interior >= 3  # a non-trivial equilibrium (not all units saturated)
    true = _true_gradient(params, x, y, free.state)
    bptt = jax.jit(jax.grad(lambda p: H.cost(FREE(p, x, steps=200).state, y)))(params)
    chex.assert_trees_all_close(ravel_pytree(bptt)[0], true, atol=1e-10, rtol=0)  # unrolled differentiation agrees
    errors = {False: [], True: []}
    for centered in (False, True):
        for beta in (0.04, 0.02, 0.01):
            g, info = EP_GRAD(params, x, y, beta, free_steps=200, nudged_steps=200, centered=centered)
            assert jax.tree.structure(g) == jax.tree.structure(params)
            errors[centered].append(float(jnp.linalg.norm(ravel_pytree(g)[0] - true) / jnp.linalg.norm(true)))
    one, two = np.array(errors[False]), np.array(errors[True])
    np.testing.assert_allclose(one[1:] / one[:-1], 0.5, atol=0.06)  # first order
    np.testing.assert_allclose(two[1:] / two[:-1], 0.25, atol=0.04)  # second order
    assert one[-1] < 0.03 and two[-1] < 1e-3 and np.all(two < one)


@pytest.fixture(scope="module")
def trainer():
    return H.ep_trainer(H.layer_sgd([0.1, 0.05]), beta=0.5, free_steps=15, nudged_steps=4, nudging="random_sign")


def _batch(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(size=(n, 4)).astype(np.float32), rng.integers(0, 3, n).astype(np.int32)


def test_train_step_applies_the_weighted_mean_of_per_example_ep_gradients(trainer):
    params, _ = _small(gain=1.0)
    xb, yb = _batch()
    key = jax.random.key(11)
    beta = 0.5 * (1.0 if bool(jax.random.bernoulli(key)) else -1.0)
    per_example = jax.vmap(lambda x, y: EP_GRAD(params, x, y, beta, free_steps=15, nudged_steps=4)[0])(
        jnp.asarray(xb), jax.nn.one_hot(yb, 3))
    mean = jax.tree.map(lambda g: jnp.mean(g, axis=0), per_example)
    copy = jax.tree.map(jnp.array, params)
    new, _, metrics = trainer.train_step(copy, trainer.init(params), key, xb, yb)
    expected = optax.apply_updates(params, jax.tree.map(lambda g, lr: -lr * g, mean,
                                                        H.HopfieldParams((0.1, 0.05), (0.1, 0.05))))
    chex.assert_trees_all_close(new, expected, rtol=1e-4, atol=1e-6)
    assert float(metrics.beta) == beta and bool(metrics.finite)
    chex.assert_shape(metrics.free_state, [(6, 6), (6, 3)])
    assert 0 <= float(metrics.accuracy) <= 1


def test_padded_examples_with_zero_weight_do_not_change_the_step(trainer):
    params, _ = _small(gain=1.0)
    xb, yb = _batch(6)
    xp = np.concatenate([xb, np.random.default_rng(9).uniform(size=(2, 4)).astype(np.float32)])
    yp = np.concatenate([yb, np.array([2, 2], np.int32)])
    key = jax.random.key(2)
    a, _, ma = trainer.train_step(jax.tree.map(jnp.array, params), trainer.init(params), key, xb, yb)
    b, _, mb = trainer.train_step(jax.tree.map(jnp.array, params), trainer.init(params), key, xp, yp,
                                  np.array([1, 1, 1, 1, 1, 1, 0, 0], np.float32))
    chex.assert_trees_all_close(a, b, rtol=1e-5, atol=1e-7)
    assert float(ma.loss) == pytest.approx(float(mb.loss), rel=1e-5)


def test_train_step_does_not_recompile_and_draws_both_beta_signs(trainer):
    params, _ = _small(gain=1.0)
    xb, yb = _batch()
    opt_state = trainer.init(params)
    signs = set()
    for i in range(8):
        params, opt_state, metrics = trainer.train_step(params, opt_state, jax.random.key(i), xb, yb)
        signs.add(float(jnp.sign(metrics.beta)))
        if i == 1:
            size = trainer.train_step._cache_size()
    assert trainer.train_step._cache_size() == size
    assert signs == {-1.0, 1.0}


def test_centered_ep_trains_a_small_digits_classifier():
    data = digits()
    x = data.x_train.reshape(len(data.x_train), -1)[:300]
    y = data.y_train[:300]
    xt, yt = data.x_test.reshape(len(data.x_test), -1), data.y_test
    tr = H.ep_trainer(H.layer_sgd([0.2, 0.1]), beta=0.5, free_steps=10, nudged_steps=4, nudging="centered")
    params = H.init(jax.random.key(0), [64, 32, 10])
    opt_state = tr.init(params)
    before = float(jnp.mean(jnp.argmax(tr.predict(params, xt).state[-1], -1) == yt))
    for epoch in range(10):
        perm = np.random.default_rng(epoch).permutation(300)
        params, opt_state, m = tr.train_epoch(params, opt_state, jax.random.key(epoch),
                                              x[perm].reshape(15, 20, 64), y[perm].reshape(15, 20))
    assert bool(jnp.all(m.finite))
    after = float(jnp.mean(jnp.argmax(tr.predict(params, xt).state[-1], -1) == yt))
    assert after > 0.7 and after > before + 0.5


def test_bad_input_gives_clear_errors(trainer):
    params, x = _small()
    y = jnp.zeros(3)
    with pytest.raises(ValueError, match=r"jeq.eqprop.hopfield.eqprop_grad\(beta=0\): must be != 0"):
        H.eqprop_grad(params, x, y, 0)
    with pytest.raises(ValueError, match=r"ep_trainer\(beta=0.0\)"):
        H.ep_trainer(optax.sgd(0.1), beta=0.0, free_steps=5, nudged_steps=2)
    with pytest.raises(ValueError, match=r"ep_trainer\(free_steps=0\)"):
        H.ep_trainer(optax.sgd(0.1), beta=0.5, free_steps=0, nudged_steps=2)
    with pytest.raises(ValueError, match=r"ep_trainer\(step_size=-1\)"):
        H.ep_trainer(optax.sgd(0.1), beta=0.5, free_steps=5, nudged_steps=2, step_size=-1)
    H.ep_trainer(optax.sgd(0.1), beta=np.float32(0.5), free_steps=5, nudged_steps=2)  # numpy scalars are numbers
    grads, info = H.eqprop_grad(params, x, y, jnp.array(0.0))  # a traced zero beta cannot be refused eagerly...
    assert not bool(info.finite)  # ...but the NaN gradient is reported
    with pytest.raises(ValueError, match=r"ep_trainer\(nudging='sideways'\)"):
        H.ep_trainer(optax.sgd(0.1), beta=0.5, free_steps=5, nudged_steps=2, nudging="sideways")
    with pytest.raises(ValueError, match=r"relax_energy\(x\): must have shape \(4,\), got shape \(5,\)"):
        H.eqprop_grad(params, jnp.zeros(5), y, 0.5)
    with pytest.raises(ValueError, match=r"relax_energy\(y\): must have shape \(3,\), got shape \(4,\)"):
        H.eqprop_grad(params, x, jnp.zeros(4), 0.5)
    with pytest.raises(ValueError, match=r"jeq.eqprop.hopfield.relax_energy\(step_size=-0.5\): must be > 0"):
        H.free_phase(params, x, step_size=-0.5)
    with pytest.raises(ValueError, match=r"relax_energy\(state\): must have shape \(3,\), got shape \(2,\)"):
        H.free_phase(params, x, (jnp.zeros(6), jnp.zeros(2)))
    with pytest.raises(ValueError, match=r"relax_energy\(state=\(\(6,\),\)\): must hold one array per layer"):
        H.free_phase(params, x, (jnp.zeros(6),))
    with pytest.raises(ValueError, match=r"energy\(x\): must have shape \(4,\)"):
        H.energy(params, (jnp.zeros(6), jnp.zeros(3)), jnp.zeros(2))
    with pytest.raises(ValueError, match=r"train_step\(xb\): must have shape \(\*, 4\), got shape \(6, 5\)"):
        trainer.train_step(params, trainer.init(params), jax.random.key(0), np.zeros((6, 5), np.float32),
                           np.zeros(6, np.int32))
    with pytest.raises(ValueError, match=r"train_step\(yb\): must have shape \(6, 3\), got shape \(6, 4\)"):
        trainer.train_step(params, trainer.init(params), jax.random.key(0), np.zeros((6, 4), np.float32),
                           np.zeros((6, 4), np.float32))
    with pytest.raises(ValueError, match=r"init\(layer_sizes=\[4\]\)"):
        H.init(jax.random.key(0), [4])
    with pytest.raises(ValueError, match=r"train_step\(yb\): must have shape \(6,\), got shape \(5,\)"):
        trainer.train_step(params, trainer.init(params), jax.random.key(0), np.zeros((6, 4), np.float32),
                           np.zeros(5, np.int32))
    with pytest.raises(ValueError, match=r"3 rates for 2 layers"):
        H.layer_sgd([0.1, 0.1, 0.1]).init(params)
    with pytest.raises(ValueError, match=r"layer_sgd\(learning_rates=-0.1\): must be > 0"):
        H.layer_sgd([0.1, -0.1])
    with pytest.raises(ValueError, match=r"energy_certificate\(beta='big'\): must be a real number"):
        H.energy_certificate(params, step_size=0.5, beta="big")
