"""The ReLU RNN / MLP as pure functions and the shared jitted training step."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import parameterized

from jeq import pathsgd


def loop_rnn(params, xs, head):
    """Reference: the recursion h_t = relu(W_in x_t + W_rec h_{t-1} + b), y_t = W_out h_t + c as a Python loop."""
    h = np.zeros(params.b.shape)
    ys = []
    for x in np.asarray(xs):
        h = np.maximum(params.w_in @ x + params.w_rec @ h + params.b, 0.0)
        ys.append(params.w_out @ h + params.c)
    return ys[-1] if head == "many_to_one" else np.stack(ys)


class TestRNNAndMLPJittedAndNot(chex.TestCase):
    """rnn_apply and mlp_apply, each jitted and not jitted (chex variants), against hand-written recursions."""

    @pytest.fixture(autouse=True)
    def _helpers(self, traced_once):
        self.traced_once = traced_once  # conftest: a variant that must not retrace

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(("many_to_one", (3,)), ("many_to_many", (7, 3)))
    def test_rnn_apply_matches_the_recursion_shapes_vmap(self, head, shape):
        params = pathsgd.init_rnn(jax.random.key(0), input_size=2, hidden_size=5, output_size=3)
        params = params._replace(b=params.b + 0.1, c=params.c - 0.2)
        xs = jax.random.normal(jax.random.key(1), (4, 7, 2))
        apply = self.variant(functools.partial(pathsgd.rnn_apply, head=head))
        out = jax.vmap(apply, in_axes=(None, 0))(params, xs)
        chex.assert_shape(out, (4, *shape))
        chex.assert_type(out, jnp.float32)
        chex.assert_trees_all_close(out[2], loop_rnn(jax.tree_util.tree_map(np.asarray, params), xs[2], head),
                                    rtol=1e-5, atol=1e-6)
        once = self.traced_once(self, functools.partial(pathsgd.rnn_apply, head=head))
        chex.assert_trees_all_close(once(params, xs[0]), out[0], rtol=1e-5, atol=1e-6)
        once(params, xs[1])  # same shapes: no second trace

    @chex.variants(with_jit=True, without_jit=True)
    def test_mlp_apply_is_the_layer_recursion(self):
        params = pathsgd.init_mlp(jax.random.key(0), layer_sizes=(4, 8, 2))
        x = jnp.ones((4,))
        manual = params[1].w @ jax.nn.relu(params[0].w @ x + params[0].b) + params[1].b
        out = self.variant(pathsgd.mlp_apply)(params, x)
        chex.assert_shape(out, (2,))
        chex.assert_trees_all_close(out, manual, rtol=1e-6)


def test_initialisations(key):
    kw = dict(input_size=2, hidden_size=20, output_size=1)
    irnn = pathsgd.init_rnn(key, init="identity", **kw)
    np.testing.assert_array_equal(irnn.w_rec, np.eye(20))
    assert np.all(irnn.b == 0) and np.all(irnn.c == 0)
    np_rnn = pathsgd.init_rnn(key, init="np", **kw)
    w = np.asarray(np_rnn.w_rec, np.float64)
    np.testing.assert_allclose(w, w.T, atol=1e-6)
    eig = np.linalg.eigvalsh(w)
    assert eig[0] > -1e-5 and abs(eig[-1] - 1.0) < 1e-4  # positive semi-definite, largest eigenvalue 1
    gauss = pathsgd.init_rnn(key, init="gaussian", **kw)
    assert abs(float(jnp.std(gauss.w_rec)) - 20**-0.5) < 0.03
    assert gauss.w_in.shape == (20, 2) and gauss.w_out.shape == (1, 20)
    small = pathsgd.init_rnn(key, init="identity", input_scale=1e-3, **kw)
    assert float(jnp.std(small.w_in)) < 2e-3
    for a, b in zip(irnn, gauss):
        assert a.shape == b.shape
    equal = pathsgd.init_rnn(key, init="gaussian", output_init="equal", **kw)  # same draw, signs only
    np.testing.assert_allclose(equal.w_out, np.sign(gauss.w_out) * 20**-0.5, rtol=1e-6)
    for name in ("w_in", "w_rec", "b", "c"):
        np.testing.assert_array_equal(getattr(equal, name), getattr(gauss, name))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(init="orthogonal"), r"init_rnn\(init='orthogonal'\): must be one of \['gaussian', 'identity', 'np'\]"),
        (dict(hidden_size=0), r"init_rnn\(hidden_size=0\): must be an int >= 1"),
        (dict(output_init="uniform"), r"init_rnn\(output_init='uniform'\): must be one of \['equal', 'gaussian'\]"),
        (dict(input_size=2.0), r"init_rnn\(input_size=2\.0\): must be an int >= 1"),
    ],
)
def test_init_rejects_bad_arguments(key, kwargs, message):
    full = {**dict(input_size=2, hidden_size=3, output_size=1), **kwargs}
    with pytest.raises(ValueError, match=message):
        pathsgd.init_rnn(key, **full)


def test_rnn_apply_rejects_bad_shapes_and_heads(key):
    params = pathsgd.init_rnn(key, input_size=2, hidden_size=3, output_size=1)
    with pytest.raises(ValueError, match=r"rnn_apply\(xs\): must have shape \(\*, 2\), got shape \(5, 3\) .*"
                                         r"w_in of shape \(3, 2\)"):
        pathsgd.rnn_apply(params, jnp.ones((5, 3)))
    with pytest.raises(ValueError, match=r"rnn_apply\(xs\): .*got shape \(4, 5, 2\).*vmap over a batch"):
        pathsgd.rnn_apply(params, jnp.ones((4, 5, 2)))
    with pytest.raises(ValueError, match=r"rnn_apply\(head='last'\): must be one of"):
        pathsgd.rnn_apply(params, jnp.ones((5, 2)), head="last")


def test_mlp_errors(key):
    params = pathsgd.init_mlp(key, layer_sizes=(4, 8, 2))
    with pytest.raises(ValueError, match=r"mlp_apply\(x\): must have shape \(4,\), got shape \(3,\) .*first layer's "
                                         r"w of shape \(8, 4\)"):
        pathsgd.mlp_apply(params, jnp.ones((3,)))
    with pytest.raises(ValueError, match=r"init_mlp\(layer_sizes=\(4,\)\)"):
        pathsgd.init_mlp(key, layer_sizes=(4,))


# ------------------------------------------------------------------ training step


def mse(params, xs, y):
    return jnp.mean((pathsgd.rnn_apply(params, xs) - y) ** 2)


@functools.cache
def make_adding_setup():
    # identity recurrence with O(1) input and output weights (not Le et al.'s 1e-3): the loss moves within 30 steps
    params = pathsgd.init_rnn(jax.random.key(0), input_size=2, hidden_size=8, output_size=1, init="identity",
                              input_scale=2**-0.5, output_scale=8**-0.5)
    tx = optax.chain(
        optax.clip_by_global_norm(10.0),
        pathsgd.path_sgd(0.05, path_sum=functools.partial(pathsgd.rnn_path_sum, length=6)),
    )
    return params, tx, pathsgd.make_rnn_train_step(mse, tx)


@pytest.fixture(scope="module")
def adding_setup():
    return make_adding_setup()


class TestTrainStepJittedAndNot(chex.TestCase):
    """The step of make_rnn_train_step and the mean of make_eval_fn, jitted and not: both return jitted functions,
    whose ``__wrapped__`` runs under chex variants."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_padding_rows_with_zero_weight_do_not_change_the_step(self):
        params, tx, step = make_adding_setup()
        step = self.variant(step.__wrapped__)
        kx, ky = jax.random.split(jax.random.key(5))
        xb, yb = jax.random.uniform(kx, (6, 6, 2)), jax.random.uniform(ky, (6, 1))
        plain, _, metrics = step(params, tx.init(params), xb[:4], yb[:4])
        padded_x = xb.at[4:].set(100.0)  # garbage in the padding rows
        padded, _, metrics_pad = step(params, tx.init(params), padded_x, yb, jnp.array([1, 1, 1, 1, 0, 0.0]))
        chex.assert_trees_all_close(plain, padded, rtol=2e-5, atol=1e-7)
        chex.assert_trees_all_close(metrics.loss, metrics_pad.loss, rtol=1e-6)
        assert isinstance(metrics, pathsgd.RNNTrainMetrics) and metrics.grad_norm > 0 and metrics.update_norm > 0

    @chex.variants(with_jit=True, without_jit=True)
    def test_eval_fn_is_the_weighted_mean_of_the_per_example_metric(self):
        params, _, _ = make_adding_setup()
        evaluate = self.variant(pathsgd.make_eval_fn(mse).__wrapped__)
        x, y = jnp.ones((3, 6, 2)), jnp.array([[0.0], [1.0], [5.0]])  # three different per-example losses
        per_example = np.array([float(evaluate(params, x[i:i + 1], y[i:i + 1])) for i in range(3)])
        assert len(set(per_example.round(6))) == 3
        weighted = evaluate(params, x, y, jnp.array([1.0, 1.0, 0.0]))
        chex.assert_trees_all_close(weighted, per_example[:2].mean(), rtol=1e-5)
        assert not np.isclose(float(weighted), per_example.mean())


def test_train_step_reduces_the_loss_without_recompiling(adding_setup):
    params, tx, step = adding_setup
    from jeq.data import adding_problem

    x, y = adding_problem(jax.random.key(2), 64, 6)
    x, y = jnp.asarray(x), jnp.asarray(y)[:, None]
    state = tx.init(params)
    losses = []
    for i in range(30):
        params, state, metrics = step(params, state, x, y)
        losses.append(float(metrics.loss))
        if i == 0:
            compiled = step._cache_size()
    assert losses[-1] < 0.5 * losses[0]
    assert step._cache_size() == compiled


def test_train_step_rejects_mismatched_batches(adding_setup):
    params, tx, step = adding_setup
    with pytest.raises(ValueError, match=r"train_step\(xb, yb\): must share a leading batch axis, got shapes "
                                         r"\(4, 6, 2\) and \(3, 1\)"):
        step(params, tx.init(params), jnp.ones((4, 6, 2)), jnp.ones((3, 1)))
    with pytest.raises(ValueError, match=r"train_step\(weights\): must have shape \(4,\), got shape \(3,\)"):
        step(params, tx.init(params), jnp.ones((4, 6, 2)), jnp.ones((4, 1)), jnp.ones(3))


def test_irnn_uses_le_et_al_init_for_the_non_recurrent_weights(key):
    """Le, Jaitly & Hinton (2015): W_rec = I, biases 0, every other weight N(0, 0.001^2); the Gaussian and np-RNN
    inits keep N(0, 1/D) and N(0, 1/H); explicit scales win."""
    kw = dict(input_size=64, hidden_size=100, output_size=10)
    irnn = pathsgd.init_rnn(key, init="identity", **kw)
    for w in (irnn.w_in, irnn.w_out):
        assert 0.8e-3 < float(jnp.std(w)) < 1.2e-3
    assert pathsgd.IRNN_SCALE == 1e-3
    np.testing.assert_array_equal(irnn.w_rec, np.eye(100))
    for init in ("gaussian", "np"):
        other = pathsgd.init_rnn(key, init=init, **kw)
        assert abs(float(jnp.std(other.w_in)) - 64**-0.5) < 0.01
        assert abs(float(jnp.std(other.w_out)) - 100**-0.5) < 0.01
    wide = pathsgd.init_rnn(key, init="identity", input_scale=0.125, output_scale=0.1, **kw)
    assert abs(float(jnp.std(wide.w_in)) - 0.125) < 0.01 and abs(float(jnp.std(wide.w_out)) - 0.1) < 0.01
    equal = pathsgd.init_rnn(key, init="identity", output_init="equal", **kw)
    np.testing.assert_allclose(np.abs(equal.w_out), 1e-3, rtol=1e-6)
    with pytest.raises(ValueError, match=r"init_rnn\(output_scale=0\.0\): must be > 0"):
        pathsgd.init_rnn(key, init="identity", output_scale=0.0, **kw)
