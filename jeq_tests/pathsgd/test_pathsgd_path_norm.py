"""The path regulariser gamma and its curvature terms kappa1, kappa2 (Neyshabur et al. 2016, section 4)."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.flatten_util import ravel_pytree
from jax.test_util import check_grads

from jeq import pathsgd

SETTINGS = settings(max_examples=25, deadline=None)


def tiny_rnn(seed: int, *, hidden=3, inputs=2, outputs=2, dtype=jnp.float64) -> pathsgd.RNNParams:
    """Random weights on every leaf (biases too, so every kind of path carries weight)."""
    keys = jax.random.split(jax.random.key(seed), 5)
    shapes = [(hidden, inputs), (hidden, hidden), (hidden,), (outputs, hidden), (outputs,)]
    return pathsgd.RNNParams(*(0.8 * jax.random.normal(k, s, dtype) for k, s in zip(keys, shapes)))


@functools.partial(jax.jit, static_argnames=("length", "head", "include_kappa2"))
def jit_kappa(params, length, head="many_to_one", include_kappa2=True):
    return pathsgd.kappa(params, length, head=head, include_kappa2=include_kappa2)


@functools.partial(jax.jit, static_argnames=("length", "head"))
def jit_gamma(params, length, head="many_to_one"):
    return pathsgd.gamma(params, length, head=head)


jit_apply = jax.jit(pathsgd.rnn_apply, static_argnames=("head",))


CASES = [(length, head, hidden) for length in (1, 2, 3) for head in pathsgd.HEADS for hidden in (2, 3)]


@pytest.mark.parametrize("length,head,hidden", CASES)
def test_gamma_kappa1_kappa2_equal_brute_force_path_sums(x64, brute_force, length, head, hidden):
    params = tiny_rnn(length * 10 + hidden, hidden=hidden)
    gamma_bf, kappa1_bf, kappa2_bf = brute_force(params, length, head)
    chex.assert_trees_all_close(jit_gamma(params, length, head), gamma_bf, rtol=1e-12)
    kap = jit_kappa(params, length, head)
    chex.assert_trees_all_close(kap.kappa1, kappa1_bf, rtol=1e-10, atol=1e-14)
    chex.assert_trees_all_close(kap.kappa2, kappa2_bf, rtol=1e-10, atol=1e-14)


def test_gamma_gradients_match_finite_differences(x64):
    params = tiny_rnn(3)
    check_grads(jax.jit(lambda p: pathsgd.gamma(p, 3, head="many_to_many")), (params,), order=2, modes=("rev",))


@pytest.mark.parametrize("head", pathsgd.HEADS)
def test_kappa2_vanishes_off_the_recurrent_weights_and_is_small_at_t3(x64, head):
    params = tiny_rnn(11)
    kap = jit_kappa(params, 5, head)
    for name in ("w_in", "b", "w_out", "c"):
        assert np.all(np.asarray(getattr(kap.kappa2, name)) == 0.0), name
    assert np.all(np.asarray(kap.kappa2.w_rec) >= 0) and np.any(np.asarray(kap.kappa2.w_rec) > 0)
    # at T = 3 only diagonal entries of W_rec can be used twice by one path (j->j->j)
    k3 = jit_kappa(params, 3, head)
    off_diagonal = np.asarray(k3.kappa2.w_rec)[~np.eye(3, dtype=bool)]
    assert np.all(off_diagonal == 0.0)


class TestPathNormJittedAndNot(chex.TestCase):
    """gamma, rnn_path_sum, kappa, path_kappa, mlp_path_sum and the fused scan, each jitted and not jitted."""

    @pytest.fixture(autouse=True)
    def _oracles(self, brute_force):
        self.brute_force = brute_force  # path enumeration (conftest)

    @chex.variants(with_jit=True, without_jit=True)
    def test_identity_rnn_has_closed_form_gamma(self):
        """IRNN with zero biases: gamma = sum_t=1..T sum_j (sum_d W_in[j,d]^2) (sum_k W_out[k,j]^2), many_to_one."""
        with jax.enable_x64(True):
            params = pathsgd.init_rnn(jax.random.key(0), input_size=2, hidden_size=4, output_size=3, init="identity",
                                      dtype=jnp.float64)
            length = 6
            per_unit = jnp.sum(params.w_in**2, axis=1) * jnp.sum(params.w_out**2, axis=0)
            gamma = self.variant(pathsgd.gamma, static_argnums=1)(params, length)
            chex.assert_shape(gamma, ())
            chex.assert_trees_all_close(gamma, length * jnp.sum(per_unit), rtol=1e-12)
            path_sum = self.variant(functools.partial(pathsgd.rnn_path_sum, length=length))
            chex.assert_trees_all_close(path_sum(jax.tree_util.tree_map(jnp.square, params)), gamma, rtol=1e-12)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(*pathsgd.HEADS)
    def test_second_derivative_of_gamma_is_two_kappa1_plus_four_kappa2(self, head):
        with jax.enable_x64(True):
            length = 3
            params = tiny_rnn(7)
            flat, unravel = ravel_pytree(params)
            hess_diag = jnp.diag(jax.jit(jax.hessian(lambda v: pathsgd.gamma(unravel(v), length, head=head)))(flat))
            kap = self.variant(functools.partial(pathsgd.kappa, length=length, head=head, include_kappa2=True))(params)
            identity = ravel_pytree(jax.tree_util.tree_map(lambda k1, k2: 2 * k1 + 4 * k2, kap.kappa1, kap.kappa2))[0]
            chex.assert_trees_all_close(hess_diag, identity, rtol=1e-10)
            # and the first derivative: dgamma/dw = 2 w kappa1
            grad = jax.grad(pathsgd.gamma)(params, length, head=head)
            chex.assert_trees_all_close(grad, jax.tree_util.tree_map(lambda w, k: 2 * w * k, params, kap.kappa1),
                                        rtol=1e-10)

    @chex.variants(with_jit=True, without_jit=True)
    def test_feed_forward_kappa1_equals_gamma_in_times_gamma_out(self):
        """w_{u->v} <- w - eta g / (gamma_in(u) gamma_out(v)): that denominator is kappa1 (bias: gamma_in = 1)."""
        with jax.enable_x64(True):
            params = pathsgd.init_mlp(jax.random.key(4), layer_sizes=(5, 4, 3, 2), dtype=jnp.float64)
            params = tuple(pathsgd.Dense(layer.w, layer.b + 0.3) for layer in params)
            kap = self.variant(functools.partial(pathsgd.path_kappa, pathsgd.mlp_path_sum, include_kappa2=True))(params)
            gin, gout = gamma_in_out(params)
            for layer_index, (k1, k2) in enumerate(zip(kap.kappa1, kap.kappa2)):
                chex.assert_trees_all_close(k1.w, jnp.outer(gout[layer_index + 1], gin[layer_index]), rtol=1e-12)
                chex.assert_trees_all_close(k1.b, gout[layer_index + 1], rtol=1e-12)
                # no weight sharing in an MLP: no path uses an edge twice
                assert np.all(np.asarray(k2.w) == 0) and np.all(np.asarray(k2.b) == 0)
            path_sum = self.variant(pathsgd.mlp_path_sum)(jax.tree_util.tree_map(jnp.square, params))
            chex.assert_trees_all_close(path_sum, jnp.sum(gin[-1]), rtol=1e-12)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(("many_to_one", 5, None), ("many_to_many", 5, 2), ("many_to_one", 3, 1))
    def test_fused_scan_gives_the_network_output_gamma_and_kappa1_of_the_separate_passes(
        self, head, length, path_length
    ):
        with jax.enable_x64(True):
            params = tiny_rnn(21 + length, hidden=3)
            xb = jax.random.normal(jax.random.key(5), (4, length, 2), jnp.float64)
            t_kappa = length if path_length is None else path_length

            @self.variant
            def fused(params):
                (ys, path_sum), vjp = jax.vjp(lambda u: fused_batch(params, u, xb, head, path_length), _sq(params))
                return ys, path_sum, vjp((jnp.zeros_like(ys), jnp.ones_like(path_sum)))[0]

            ys, path_sum, kappa1 = fused(params)
            chex.assert_trees_all_close(ys, jax.vmap(lambda x: jit_apply(params, x, head=head))(xb), rtol=1e-12)
            chex.assert_trees_all_close(path_sum, jit_gamma(params, t_kappa, head), rtol=1e-12)
            chex.assert_trees_all_close(kappa1, jit_kappa(params, t_kappa, head, include_kappa2=False).kappa1,
                                        rtol=1e-12)
            gamma_bf, kappa1_bf, _ = self.brute_force(params, t_kappa, head)  # and both against path enumeration
            chex.assert_trees_all_close(path_sum, gamma_bf, rtol=1e-12)
            chex.assert_trees_all_close(kappa1, kappa1_bf, rtol=1e-10, atol=1e-14)


def rescaled(params, scales, rescale):
    return pathsgd.RNNParams(*(jnp.asarray(x) for x in rescale(params, scales)))


scales_strategy = st.lists(
    st.floats(min_value=0.2, max_value=5.0, allow_nan=False), min_size=3, max_size=3
)


@SETTINGS
@given(seed=st.integers(0, 2**16), scales=scales_strategy, head=st.sampled_from(pathsgd.HEADS))
def test_gamma_and_network_function_are_invariant_to_node_rescaling(rescale, seed, scales, head):
    with jax.enable_x64(True):
        params = tiny_rnn(seed)
        params_c = rescaled(params, scales, rescale)
        chex.assert_trees_all_close(jit_gamma(params_c, 4, head), jit_gamma(params, 4, head), rtol=1e-10)
        xs = jax.random.normal(jax.random.key(seed + 1), (4, 2), jnp.float64)
        chex.assert_trees_all_close(jit_apply(params_c, xs, head=head), jit_apply(params, xs, head=head),
                                    rtol=1e-10, atol=1e-12)


@SETTINGS
@given(seed=st.integers(0, 2**16), scales=scales_strategy)
def test_kappa_scales_like_one_over_the_square_of_the_weight_scale(rescale, rescale_factor, seed, scales):
    """A weight multiplied by a has kappa1 and kappa2 divided by a^2 (spec section 6: kappa -> D^-2 kappa)."""
    with jax.enable_x64(True):
        params = tiny_rnn(seed)
        factor = rescale_factor(params, scales)
        before = jit_kappa(params, 4)
        after = jit_kappa(rescaled(params, scales, rescale), 4)
        for k_before, k_after in ((before.kappa1, after.kappa1), (before.kappa2, after.kappa2)):
            expected = jax.tree_util.tree_map(lambda k, a: k / a**2, k_before, factor)
            chex.assert_trees_all_close(k_after, expected, rtol=1e-9, atol=1e-14)


# ---------------------------------------------------------------- feed-forward (NIPS 2015)


def gamma_in_out(params):
    """gamma_in(u) and gamma_out(v) of every node: squared-weight path sums from the inputs (and the bias units)
    to u, and from v to the outputs, by explicit layer recursions (the NIPS 2015 formulation)."""
    gin = [jnp.ones(params[0].w.shape[1])]
    for layer in params:
        gin.append(layer.w**2 @ gin[-1] + layer.b**2)
    gout = [jnp.ones(params[-1].w.shape[0])]
    for layer in reversed(params):
        gout.insert(0, (layer.w**2).T @ gout[0])
    return gin, gout


# ---------------------------------------------------------------- API: shapes, jit, vmap, errors


def test_gamma_kappa_dtype_jit_vmap_and_no_recompilation():
    params = pathsgd.init_rnn(jax.random.key(0), input_size=2, hidden_size=5, output_size=1)
    jitted = jax.jit(functools.partial(pathsgd.gamma, length=10))
    g = jitted(params)
    chex.assert_shape(g, ())
    chex.assert_type(g, jnp.float32)
    kap = jax.jit(functools.partial(pathsgd.kappa, length=10))(params)
    assert kap.kappa2 is None
    chex.assert_trees_all_equal_shapes_and_dtypes(kap.kappa1, params)
    jitted(jax.tree_util.tree_map(lambda x: x * 1.1, params))
    assert jitted._cache_size() == 1
    stacked = jax.tree_util.tree_map(lambda x: jnp.stack([x, 2 * x]), params)
    batched = jax.jit(jax.vmap(functools.partial(pathsgd.gamma, length=10)))(stacked)
    chex.assert_shape(batched, (2,))
    chex.assert_trees_all_close(batched[0], g, rtol=1e-6)


@pytest.mark.parametrize("length", [0, -3, 2.5])
def test_length_below_one_is_rejected(length):
    params = pathsgd.init_rnn(jax.random.key(0), input_size=2, hidden_size=3, output_size=1)
    with pytest.raises(ValueError, match=rf"jeq\.pathsgd\.gamma\(length={length}\): must be an int >= 1"):
        pathsgd.gamma(params, length)
    with pytest.raises(ValueError, match=r"jeq\.pathsgd\.kappa\(length="):
        pathsgd.kappa(params, length)
    with pytest.raises(ValueError, match=r"jeq\.pathsgd\.rnn_path_sum\(length="):
        pathsgd.rnn_path_sum(params, length=length)


def test_bad_head_and_inconsistent_shapes_are_rejected():
    params = pathsgd.init_rnn(jax.random.key(0), input_size=2, hidden_size=3, output_size=1)
    with pytest.raises(ValueError, match=r"gamma\(head='all'\): must be one of"):
        pathsgd.gamma(params, 3, head="all")
    broken = params._replace(w_rec=jnp.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"params\.w_rec\): must have shape \(3, 3\), got shape \(3, 4\)"):
        pathsgd.gamma(broken, 3)


# ---------------------------------------------------------------- the fused scan (network + path sum)


def _sq(params):
    return jax.tree_util.tree_map(jnp.square, params)


def fused_batch(params, squared, xb, head, path_length):
    """vmap over the batch with Gamma unbatched (out_axes=None raises if it depended on the example)."""
    fn = functools.partial(pathsgd.rnn_apply_with_path_sum, head=head, path_length=path_length)
    return jax.vmap(fn, in_axes=(None, None, 0), out_axes=(0, None))(params, squared, xb)


def test_fused_scan_runs_the_path_recursion_once_per_step_not_once_per_example():
    """Under vmap the h~ recursion stays unbatched: one scan, and its matrix-vector product has no batch axis."""
    params = pathsgd.init_rnn(jax.random.key(0), input_size=2, hidden_size=7, output_size=1)
    xb = jnp.ones((5, 4, 2))
    jaxpr = jax.make_jaxpr(lambda p: fused_batch(p, _sq(p), xb, "many_to_one", None))(params).jaxpr
    (scan,) = [e for e in jaxpr.eqns if e.primitive.name == "scan"]
    dots = [e for e in scan.params["jaxpr"].jaxpr.eqns if e.primitive.name == "dot_general"]
    out_shapes = sorted(tuple(e.outvars[0].aval.shape) for e in dots)
    # U_rec h~ once, unbatched, next to the batch's W_in x_t and W_rec h (batch axis 5 in some position)
    assert out_shapes.count((7,)) == 1 and all(5 in shape for shape in out_shapes if shape != (7,))
    assert len(out_shapes) == 3


def test_fused_scan_rejects_bad_path_length_and_mismatched_squared_params():
    params = pathsgd.init_rnn(jax.random.key(0), input_size=2, hidden_size=3, output_size=1)
    xs = jnp.ones((4, 2))
    for bad in (0, 5, 2.0):
        with pytest.raises(ValueError, match=rf"rnn_apply_with_path_sum\(path_length={bad}\): must be an int in "
                                             r"\[1, 4\]"):
            pathsgd.rnn_apply_with_path_sum(params, _sq(params), xs, path_length=bad)
    small = pathsgd.init_rnn(jax.random.key(0), input_size=2, hidden_size=2, output_size=1)
    with pytest.raises(ValueError, match=r"rnn_apply_with_path_sum\(squared_params\.w_in\): must have shape \(3, 2\), "
                                         r"got shape \(2, 2\)"):
        pathsgd.rnn_apply_with_path_sum(params, _sq(small), xs)
    with pytest.raises(ValueError, match=r"rnn_apply_with_path_sum\(xs\): must have shape \(\*, 2\), got shape \(4, 3\)"):
        pathsgd.rnn_apply_with_path_sum(params, _sq(params), jnp.ones((4, 3)))
    with pytest.raises(ValueError, match=r"rnn_apply_with_path_sum\(head='all'\)"):
        pathsgd.rnn_apply_with_path_sum(params, _sq(params), xs, head="all")
