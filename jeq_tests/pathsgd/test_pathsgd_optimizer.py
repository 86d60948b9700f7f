"""Path-SGD as an optax transformation: the update rule, its rescaling invariance, composition and errors."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jeq import pathsgd

SETTINGS = settings(max_examples=25, deadline=None)
LENGTH = 4
PATH_SUM = functools.partial(pathsgd.rnn_path_sum, length=LENGTH, head="many_to_one")


def tiny_rnn(seed: int, dtype=jnp.float64) -> pathsgd.RNNParams:
    keys = jax.random.split(jax.random.key(seed), 5)
    shapes = [(3, 2), (3, 3), (3,), (2, 3), (2,)]
    params = pathsgd.RNNParams(*(0.8 * jax.random.normal(k, s, dtype) for k, s in zip(keys, shapes)))
    return params._replace(b=params.b + 0.5)  # mostly active units


def batch(seed: int, dtype=jnp.float64):
    kx, ky = jax.random.split(jax.random.key(seed + 12345))
    return jax.random.normal(kx, (4, LENGTH, 2), dtype), jax.random.normal(ky, (4, 2), dtype)


def mse(params, xs, y):
    return jnp.mean((pathsgd.rnn_apply(params, xs) - y) ** 2)


def batch_loss(params, xb, yb):
    return jnp.mean(jax.vmap(mse, in_axes=(None, 0, 0))(params, xb, yb))


def one_step(tx):
    @jax.jit
    def step(params, xb, yb):
        grads = jax.grad(batch_loss)(params, xb, yb)
        updates, _ = tx.update(grads, tx.init(params), params)
        return optax.apply_updates(params, updates)

    return step


PATH_STEP = one_step(pathsgd.path_sgd(0.1, path_sum=PATH_SUM, eps=0.0))
PATH_STEP_K2 = one_step(pathsgd.path_sgd(0.1, path_sum=PATH_SUM, eps=0.0, include_kappa2=True))
SGD_STEP = one_step(optax.sgd(0.1))


def tree_max_abs_diff(a, b) -> float:
    return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def as_jnp(params):
    return pathsgd.RNNParams(*(jnp.asarray(x) for x in params))


class TestPathSGDUpdateJittedAndNot(chex.TestCase):
    """The update of path_sgd / scale_by_path_norm / make_optimizer, jitted and not jitted (chex variants)."""

    @pytest.fixture(autouse=True)
    def _helpers(self, brute_force, traced_once):
        self.brute_force, self.traced_once = brute_force, traced_once  # conftest

    @chex.variants(with_jit=True, without_jit=True)
    def test_update_divides_the_gradient_by_kappa(self):
        with jax.enable_x64(True):
            params, (xb, yb) = tiny_rnn(0), batch(0)
            tx1 = pathsgd.path_sgd(0.05, path_sum=PATH_SUM, eps=1e-3)
            tx2 = pathsgd.path_sgd(0.05, path_sum=PATH_SUM, eps=1e-3, include_kappa2=True)

            @self.variant
            def updates_of_both(params):
                grads = jax.grad(batch_loss)(params, xb, yb)
                return (grads, tx1.update(grads, tx1.init(params), params)[0],
                        tx2.update(grads, tx2.init(params), params)[0])

            grads, updates1, updates2 = updates_of_both(params)
            _, kappa1, kappa2 = self.brute_force(params, LENGTH, "many_to_one")  # path enumeration
            for updates, denominator in ((updates1, kappa1),
                                         (updates2, jax.tree_util.tree_map(np.add, kappa1, kappa2))):
                expected = jax.tree_util.tree_map(lambda g, k: -0.05 * g / (k + 1e-3), grads, denominator)
                chex.assert_trees_all_close(updates, expected, atol=1e-12, rtol=0)

    @chex.variants(with_jit=True, without_jit=True)
    def test_chain_with_clipping_and_momentum_matches_the_manual_rule(self):
        with jax.enable_x64(True):
            params, (xb, yb) = tiny_rnn(3), batch(3)
            tx = optax.chain(
                optax.clip_by_global_norm(0.5),
                pathsgd.path_sgd(0.1, path_sum=PATH_SUM, eps=1e-6, momentum=0.9),
            )
            state = tx.init(params)
            update = self.traced_once(self, tx.update)  # jitted: one trace for the three steps
            grad_fn = jax.jit(jax.grad(batch_loss))

            @jax.jit
            def manual_step(manual, velocity):  # clip, divide by kappa1 + eps, heavy ball, scale
                g = jax.grad(batch_loss)(manual, xb, yb)
                norm = optax.tree.norm(g)
                g = jax.tree_util.tree_map(lambda x: x * jnp.minimum(1.0, 0.5 / norm), g)
                k1 = pathsgd.kappa(manual, LENGTH).kappa1
                velocity = jax.tree_util.tree_map(lambda v, gi, k: 0.9 * v + gi / (k + 1e-6), velocity, g, k1)
                return jax.tree_util.tree_map(lambda w, v: w - 0.1 * v, manual, velocity), velocity

            velocity = jax.tree_util.tree_map(jnp.zeros_like, params)
            manual = params
            for _ in range(3):
                updates, state = update(grad_fn(params, xb, yb), state, params)
                params = optax.apply_updates(params, updates)
                manual, velocity = manual_step(manual, velocity)
            chex.assert_trees_all_close(params, manual, atol=1e-12, rtol=0)

    @chex.variants(with_jit=True, without_jit=True)
    def test_match_first_step_norm_fixes_the_ratio_at_the_first_update(self):
        with jax.enable_x64(True):
            params, (xb, yb) = tiny_rnn(4), batch(4)
            tx = pathsgd.path_sgd(0.1, path_sum=PATH_SUM, match_first_step_norm=True)
            state = tx.init(params)
            update, grad_fn = self.variant(tx.update), jax.jit(jax.grad(batch_loss))
            grads = grad_fn(params, xb, yb)
            updates, state = update(grads, state, params)
            chex.assert_trees_all_close(optax.tree.norm(updates), 0.1 * optax.tree.norm(grads), rtol=1e-10)
            ratio = state[0].ratio
            assert isinstance(state[0], pathsgd.ScaleByPathNormState) and int(state[0].count) == 1
            params2 = optax.apply_updates(params, updates)
            grads2 = grad_fn(params2, xb, yb)
            updates2, state = update(grads2, state, params2)
            assert float(state[0].ratio) == float(ratio) and int(state[0].count) == 2
            k1 = jax.jit(functools.partial(pathsgd.kappa, length=LENGTH))(params2).kappa1
            expected = jax.tree_util.tree_map(lambda g, k: -0.1 * ratio * g / (k + 1e-8), grads2, k1)
            chex.assert_trees_all_close(updates2, expected, atol=1e-12, rtol=0)

    @chex.variants(with_jit=True, without_jit=True)
    def test_schedule_learning_rate_is_accepted(self):
        params = tiny_rnn(0, jnp.float32)
        tx = pathsgd.path_sgd(optax.linear_schedule(0.1, 0.0, 10), path_sum=PATH_SUM)
        grads = jax.tree_util.tree_map(jnp.ones_like, params)
        updates, _ = self.variant(tx.update)(grads, tx.init(params), params)
        assert all(jnp.all(u < 0) for u in jax.tree_util.tree_leaves(updates))

    @chex.variants(with_jit=True, without_jit=True)
    def test_make_optimizer_clips_the_raw_gradient_identically_for_every_method(self):
        with jax.enable_x64(True):
            params, (xb, yb) = tiny_rnn(5), batch(5)
            grads = jax.tree_util.tree_map(lambda g: 100.0 * g, jax.grad(batch_loss)(params, xb, yb))  # clips
            clipped = jax.tree_util.tree_map(lambda g: g * 0.5 / optax.tree.norm(grads), grads)
            k1 = jax.jit(functools.partial(pathsgd.kappa, length=LENGTH))(params).kappa1
            expected = {
                "sgd": jax.tree_util.tree_map(lambda g: -0.1 * g, clipped),
                "path_sgd": jax.tree_util.tree_map(lambda g, k: -0.1 * g / (k + 1e-8), clipped, k1),
                "adam": optax.adam(0.1).update(clipped, optax.adam(0.1).init(params))[0],
            }
            for method, want in expected.items():
                tx = pathsgd.make_optimizer(method, learning_rate=0.1, max_norm=0.5, path_sum=PATH_SUM)
                updates, _ = self.variant(tx.update)(grads, tx.init(params), params)
                chex.assert_trees_all_close(updates, want, atol=1e-12, rtol=0, custom_message=method)

    @chex.variants(with_jit=True, without_jit=True)
    def test_precomputed_kappa1_is_used(self):
        params = tiny_rnn(0, jnp.float32)
        grads = jax.tree_util.tree_map(jnp.ones_like, params)
        tx = pathsgd.path_sgd(0.5, path_sum=PATH_SUM, eps=0.0)
        twos = jax.tree_util.tree_map(lambda p: jnp.full_like(p, 2.0), params)
        updates, _ = self.variant(tx.update)(grads, tx.init(params), params, kappa1=twos)
        chex.assert_trees_all_close(updates, jax.tree_util.tree_map(lambda p: jnp.full_like(p, -0.25), params))


def test_precomputed_kappa1_is_checked():
    params = tiny_rnn(0, jnp.float32)
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    tx = pathsgd.path_sgd(0.5, path_sum=PATH_SUM, eps=0.0)
    twos = jax.tree_util.tree_map(lambda p: jnp.full_like(p, 2.0), params)
    with pytest.raises(ValueError, match=r"scale_by_path_norm: update\(\.\.\., kappa1=\.\.\.\) must be a pytree shaped"):
        tx.update(grads, tx.init(params), params, kappa1=(1.0, 2.0))
    wrong_leaf = twos._replace(w_in=jnp.ones((1,)))  # same tree, one leaf that would silently broadcast
    with pytest.raises(ValueError, match="leaf shapes"):
        tx.update(grads, tx.init(params), params, kappa1=wrong_leaf)


scales_strategy = st.lists(st.floats(min_value=0.2, max_value=5.0), min_size=3, max_size=3)


@SETTINGS
@given(seed=st.integers(0, 2**16), scales=scales_strategy, include_kappa2=st.booleans())
def test_path_sgd_step_commutes_with_node_rescaling(rescale, seed, scales, include_kappa2):
    """step(D w) = D step(w): rescaling then stepping equals stepping then rescaling (spec section 6)."""
    with jax.enable_x64(True):
        params, (xb, yb) = tiny_rnn(seed), batch(seed)
        step = PATH_STEP_K2 if include_kappa2 else PATH_STEP
        stepped_then_rescaled = as_jnp(rescale(step(params, xb, yb), scales))
        rescaled_then_stepped = step(as_jnp(rescale(params, scales)), xb, yb)
        scale = max(float(jnp.max(jnp.abs(x))) for x in jax.tree_util.tree_leaves(stepped_then_rescaled))
        chex.assert_trees_all_close(rescaled_then_stepped, stepped_then_rescaled, atol=1e-9 * scale, rtol=0)


@SETTINGS
@given(seed=st.integers(0, 2**16), scales=st.lists(st.floats(min_value=2.0, max_value=5.0), min_size=3, max_size=3))
def test_sgd_step_does_not_commute_with_node_rescaling(rescale, seed, scales):
    """SGD's step on D w is D^-1 g, not D g: the two orders end at different networks."""
    with jax.enable_x64(True):
        params, (xb, yb) = tiny_rnn(seed), batch(seed)
        path_gap = tree_max_abs_diff(
            PATH_STEP(as_jnp(rescale(params, scales)), xb, yb), as_jnp(rescale(PATH_STEP(params, xb, yb), scales))
        )
        sgd_gap = tree_max_abs_diff(
            SGD_STEP(as_jnp(rescale(params, scales)), xb, yb), as_jnp(rescale(SGD_STEP(params, xb, yb), scales))
        )
        assert sgd_gap > 1e-4 and sgd_gap > 1e4 * path_gap


def test_feed_forward_path_sgd_is_rescaling_invariant_through_the_same_transform(x64):
    params = pathsgd.init_mlp(jax.random.key(1), layer_sizes=(4, 6, 5, 3), dtype=jnp.float64)
    x = jax.random.normal(jax.random.key(2), (8, 4), jnp.float64)
    y = jax.random.normal(jax.random.key(3), (8, 3), jnp.float64)
    loss = lambda p: jnp.mean((jax.vmap(pathsgd.mlp_apply, in_axes=(None, 0))(p, x) - y) ** 2)  # noqa: E731
    tx = pathsgd.path_sgd(0.1, path_sum=pathsgd.mlp_path_sum, eps=0.0)

    sgd = optax.sgd(0.1)

    def step(p):
        updates, _ = tx.update(jax.grad(loss)(p), tx.init(p), p)
        return optax.apply_updates(p, updates)

    def sgd_step(p):
        return optax.apply_updates(p, sgd.update(jax.grad(loss)(p), sgd.init(p))[0])

    c = jnp.linspace(0.3, 3.0, 6)  # rescale the first hidden layer's units

    def rescale(p):
        first, second, *rest = p
        return (pathsgd.Dense(first.w * c[:, None], first.b * c), pathsgd.Dense(second.w / c[None, :], second.b),
                *rest)

    @jax.jit
    def both_orders(p):
        return (loss(rescale(p)), loss(p), step(rescale(p)), rescale(step(p)), sgd_step(rescale(p)),
                rescale(sgd_step(p)))

    loss_rescaled, loss_plain, path_a, path_b, sgd_a, sgd_b = both_orders(params)
    chex.assert_trees_all_close(loss_rescaled, loss_plain, rtol=1e-12)
    chex.assert_trees_all_close(path_a, path_b, atol=1e-10, rtol=0)
    assert tree_max_abs_diff(sgd_a, sgd_b) > 1e-3


def test_missing_params_is_a_clear_error():
    params = tiny_rnn(0, jnp.float32)
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    for tx in (pathsgd.path_sgd(0.1, path_sum=PATH_SUM), optax.chain(optax.clip(1.0), pathsgd.scale_by_path_norm(PATH_SUM))):
        with pytest.raises(ValueError, match=r"jeq\.pathsgd\.scale_by_path_norm: .*params=None"):
            tx.update(grads, tx.init(params))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(learning_rate=0.0), r"jeq\.pathsgd\.path_sgd\(learning_rate=0\.0\): must be > 0"),
        (dict(learning_rate=-1.0), r"jeq\.pathsgd\.path_sgd\(learning_rate=-1\.0\): must be > 0"),
        (dict(learning_rate=float("nan")), r"path_sgd\(learning_rate=nan\): must be > 0"),
        (dict(learning_rate=0.1, momentum=1.0), r"path_sgd\(momentum=1\.0\): must be in \[0, 1\)"),
        (dict(learning_rate=0.1, nesterov=True), r"path_sgd\(nesterov=True\): needs momentum"),
        (dict(learning_rate=0.1, eps=-1.0), r"scale_by_path_norm\(eps=-1\.0\): must be >= 0"),
        (dict(learning_rate=0.1, path_sum=3), r"scale_by_path_norm\(path_sum=3\): must be callable"),
    ],
)
def test_bad_hyper_parameters_are_rejected(kwargs, message):
    kwargs = {"path_sum": PATH_SUM, **kwargs}
    with pytest.raises(ValueError, match=message):
        pathsgd.path_sgd(**kwargs)


# ---------------------------------------------------------------- baselines with identical clipping


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(method="rmsprop"), r"make_optimizer\(method='rmsprop'\): must be one of"),
        (dict(method="sgd", learning_rate=0.0), r"make_optimizer\(learning_rate=0\.0\): must be > 0"),
        (dict(method="sgd", max_norm=-1.0), r"make_optimizer\(max_norm=-1\.0\): must be > 0"),
        (dict(method="path_sgd", path_sum=None), r"make_optimizer\(method='path_sgd'\): needs path_sum"),
        (dict(method="sgd", momentum=1.0), r"make_optimizer\(momentum=1\.0\): must be in \[0, 1\)"),
        (dict(method="adam", momentum=0.5), r"make_optimizer\(momentum=0\.5\): .* 0 for adam"),
    ],
)
def test_make_optimizer_rejects_bad_arguments(kwargs, message):
    full = {"learning_rate": 0.1, "max_norm": 1.0, "path_sum": PATH_SUM, **kwargs}
    method = full.pop("method")
    with pytest.raises(ValueError, match=message):
        pathsgd.make_optimizer(method, **full)


def test_make_optimizer_momentum_is_heavy_ball_on_the_methods_direction(x64):
    """v <- d + m v, step -eta v, with d the clipped (and, for Path-SGD, kappa-scaled) gradient."""
    params, (xb, yb) = tiny_rnn(5), batch(5)
    grads = jax.grad(batch_loss)(params, xb, yb)
    k1 = pathsgd.kappa(params, length=LENGTH).kappa1
    for method, direction in (("sgd", grads),
                              ("path_sgd", jax.tree_util.tree_map(lambda g, k: g / (k + 1e-8), grads, k1))):
        tx = pathsgd.make_optimizer(method, learning_rate=0.1, max_norm=1e6, path_sum=PATH_SUM, momentum=0.5)
        state = tx.init(params)
        first, state = tx.update(grads, state, params)
        second, _ = tx.update(grads, state, params)  # same gradient twice: v = d, then d + 0.5 d
        chex.assert_trees_all_close(first, jax.tree_util.tree_map(lambda d: -0.1 * d, direction), atol=1e-12, rtol=0)
        chex.assert_trees_all_close(second, jax.tree_util.tree_map(lambda d: -0.15 * d, direction), atol=1e-12,
                                    rtol=0)


# ---------------------------------------------------------------- kappa1 from the fused scan


def fused_mse(params, squared_params, xs, y):
    out, path_sum = pathsgd.rnn_apply_with_path_sum(params, squared_params, xs)
    return jnp.mean((out - y) ** 2), path_sum


@pytest.fixture(scope="module")
def fused_and_separate_steps():
    tx = pathsgd.make_optimizer("path_sgd", learning_rate=0.1, max_norm=0.5, path_sum=PATH_SUM, eps=1e-6)
    return (tx, pathsgd.make_rnn_train_step(fused_mse, tx, fused_path_sum=True), pathsgd.make_rnn_train_step(mse, tx))


def test_fused_train_step_equals_the_separate_kappa_pass(x64, fused_and_separate_steps):
    """One value_and_grad of L(w) + Gamma(u) gives the same dL/dw and kappa1, hence the same Path-SGD steps."""
    tx, fused_step, separate_step = fused_and_separate_steps
    params, (xb, yb) = tiny_rnn(6), batch(6)
    a, sa, b, sb = params, tx.init(params), params, tx.init(params)
    for _ in range(3):
        a, sa, ma = fused_step(a, sa, xb, yb)
        b, sb, mb = separate_step(b, sb, xb, yb)
        chex.assert_trees_all_close((ma.loss, ma.grad_norm), (mb.loss, mb.grad_norm), rtol=1e-12)
    chex.assert_trees_all_close(a, b, atol=1e-12, rtol=0)
    assert tree_max_abs_diff(a, params) > 1e-3
    assert fused_step._cache_size() == 1


def test_fused_path_sgd_step_commutes_with_node_rescaling(x64, rescale):
    params, (xb, yb) = tiny_rnn(8), batch(8)
    scales = [0.3, 2.0, 4.5]
    # clipping acts on the raw gradient, which rescaling changes: compare with a bound that never clips
    tx_free = pathsgd.make_optimizer("path_sgd", learning_rate=0.1, max_norm=1e9, path_sum=PATH_SUM, eps=0.0)
    free_step = pathsgd.make_rnn_train_step(fused_mse, tx_free, fused_path_sum=True)
    step = lambda p: free_step(p, tx_free.init(p), xb, yb)[0]  # noqa: E731
    stepped_then_rescaled = as_jnp(rescale(step(params), scales))
    rescaled_then_stepped = step(as_jnp(rescale(params, scales)))
    chex.assert_trees_all_close(rescaled_then_stepped, stepped_then_rescaled, atol=1e-10, rtol=0)


def test_a_weight_on_no_path_does_not_move_even_with_eps_zero():
    params = tiny_rnn(0, jnp.float32)._replace(w_out=jnp.zeros((2, 3)))  # no path reaches the output
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    tx = pathsgd.path_sgd(0.5, path_sum=PATH_SUM, eps=0.0)
    updates, _ = tx.update(grads, tx.init(params), params)
    assert all(np.all(np.isfinite(u)) for u in jax.tree_util.tree_leaves(updates))
    assert np.all(updates.w_in == 0) and np.all(updates.w_rec == 0) and np.all(updates.b == 0)
    assert np.all(updates.w_out != 0)  # W_out's paths do not run through W_out itself
    with pytest.raises(ValueError, match=r"make_rnn_train_step\(fused_path_sum='yes'\): must be a bool"):
        pathsgd.make_rnn_train_step(fused_mse, tx, fused_path_sum="yes")


# ---------------------------------------------------------------- clipping inside the chain (issue 15, item 11)


def train_from(params, tx, xb, yb, steps):
    """``steps`` fused Path-SGD steps of ``tx`` on one batch, with the per-step raw-gradient norm."""
    step = pathsgd.make_rnn_train_step(fused_mse, tx, fused_path_sum=True)
    state, norms = tx.init(params), []
    for _ in range(steps):
        params, state, metrics = step(params, state, xb, yb)
        norms.append(float(metrics.grad_norm))
    return params, norms


def test_clipping_the_path_scaled_update_keeps_training_runs_rescaling_invariant(x64, rescale):
    """With the clip active at every step, 10 Path-SGD steps from w and from D w end at networks with the same
    function when the scaled update is clipped in the path-norm metric (``clip="update"``), and at different
    functions when the raw gradient is clipped in front (``clip="gradient"``, the experiments' default)."""
    params, (xb, yb) = tiny_rnn(8), batch(8)
    rescaled = as_jnp(rescale(params, [0.3, 2.0, 4.5]))
    x_test = batch(99)[0]
    outputs = jax.jit(jax.vmap(pathsgd.rnn_apply, in_axes=(None, 0)))
    gaps = {}
    for clip in pathsgd.CLIPS:
        tx = pathsgd.make_optimizer("path_sgd", learning_rate=0.5, max_norm=0.05, path_sum=PATH_SUM, eps=0.0,
                                    clip=clip)
        from_plain, norms = train_from(params, tx, xb, yb, 10)
        from_rescaled, _ = train_from(rescaled, tx, xb, yb, 10)
        # the clip is active at every step of both runs
        assert min(norms) > 0.05
        kappa1 = pathsgd.kappa(params, LENGTH).kappa1
        grads = jax.grad(batch_loss)(params, xb, yb)
        assert float(jnp.sqrt(sum(jnp.sum(g * g / k) for g, k in zip(grads, kappa1)))) > 0.05
        assert tree_max_abs_diff(from_plain, params) > 1e-3  # the runs went somewhere
        gaps[clip] = float(jnp.max(jnp.abs(outputs(from_plain, x_test) - outputs(from_rescaled, x_test))))
    assert gaps["update"] < 1e-9
    assert gaps["gradient"] > 1e-2  # measured 0.10


@SETTINGS
@given(seed=st.integers(0, 2**16), scales=scales_strategy)
def test_path_sgd_step_with_an_active_update_clip_commutes_with_node_rescaling(rescale, seed, scales):
    """step(D w) = D step(w) with ``path_sgd(max_norm=...)`` clipping every step (a bound far below the norm)."""
    with jax.enable_x64(True):
        params, (xb, yb) = tiny_rnn(seed), batch(seed)
        step = CLIPPED_PATH_STEP
        stepped_then_rescaled = as_jnp(rescale(step(params, xb, yb), scales))
        rescaled_then_stepped = step(as_jnp(rescale(params, scales)), xb, yb)
        scale = max(float(jnp.max(jnp.abs(x))) for x in jax.tree_util.tree_leaves(stepped_then_rescaled))
        chex.assert_trees_all_close(rescaled_then_stepped, stepped_then_rescaled, atol=1e-9 * scale, rtol=0)


CLIPPED_PATH_STEP = one_step(pathsgd.path_sgd(0.1, path_sum=PATH_SUM, eps=0.0, max_norm=1e-6))


def test_update_clip_bounds_the_path_metric_norm_and_keeps_the_direction(x64):
    """d = g / kappa is scaled by min(1, c / ||d||_kappa), ||d||_kappa^2 = sum kappa d^2; a loose bound is a no-op;
    for SGD, clipping the update is clipping the gradient."""
    params, (xb, yb) = tiny_rnn(5), batch(5)
    grads = jax.grad(batch_loss)(params, xb, yb)
    k1 = pathsgd.kappa(params, LENGTH).kappa1
    direction = jax.tree_util.tree_map(lambda g, k: g / k, grads, k1)
    metric_norm = float(jnp.sqrt(sum(jnp.sum(k * d * d) for k, d in zip(k1, direction))))
    for bound in (0.5 * metric_norm, 2.0 * metric_norm):
        tx = pathsgd.make_optimizer("path_sgd", learning_rate=1.0, max_norm=bound, path_sum=PATH_SUM, eps=0.0,
                                    clip="update")
        updates, _ = tx.update(grads, tx.init(params), params)
        want = jax.tree_util.tree_map(lambda d: -min(1.0, bound / metric_norm) * d, direction)
        chex.assert_trees_all_close(updates, want, atol=1e-12, rtol=1e-10)
    for clip in pathsgd.CLIPS:
        tx = pathsgd.make_optimizer("sgd", learning_rate=1.0, max_norm=1e-3, clip=clip)
        updates, _ = tx.update(grads, tx.init(params), params)
        chex.assert_trees_all_close(optax.tree.norm(updates), 1e-3, rtol=1e-10)
    with pytest.raises(ValueError, match=r"make_optimizer\(clip='raw'\): must be one of"):
        pathsgd.make_optimizer("sgd", learning_rate=1.0, max_norm=1.0, clip="raw")
    with pytest.raises(ValueError, match=r"scale_by_path_norm\(max_norm=0\.0\): must be > 0"):
        pathsgd.path_sgd(0.1, path_sum=PATH_SUM, max_norm=0.0)
