"""The path regulariser gamma and its curvature terms kappa1, kappa2 (Neyshabur et al., NeurIPS 2016, sec. 4).

Path regulariser (p = 2 path norm, squared) of a ReLU network whose unrolled graph maps edge e to weight pi(e):

    gamma(w) = sum_{paths p: input -> output} prod_{e in p} w_{pi(e)}^2 = Gamma(u),   u = w * w.

Biases are weights from a constant-1 unit. ``Gamma(u)`` is the *linear* network with weights u evaluated on
all-ones inputs, summed over its outputs; for the RNN this is the recursion

    h~_0 = 0,   h~_t = U_in 1 + U_rec h~_{t-1} + u_b,   Gamma = sum_{t read} 1^T (U_out h~_t + u_c),

i.e. :func:`jeq.pathsgd.rnn_apply` on squared weights with the identity activation. Output-time convention:
the sum runs over the outputs the loss reads, so ``head="many_to_one"`` sums t = T only (adding problem,
sequential MNIST) and ``head="many_to_many"`` sums every t = 1..T (language modelling); ``length`` is the
sequence (or truncated-BPTT window) length the network is trained on.

Curvature terms (derived in the spec, section 4); with ``Gamma`` as above,

    dgamma/dw_i = 2 w_i kappa1_i,   d^2gamma/dw_i^2 = 2 kappa1_i + 4 kappa2_i,
    kappa1_i = dGamma/du_i,         kappa2_i = u_i d^2Gamma/du_i^2.

In path form kappa1_i sums, over every edge e with pi(e) = i and every path through e, the product of the
other squared weights; kappa2_i = w_i^2 times the same over ordered pairs of distinct edges sharing weight i.
kappa2 vanishes for weights that no path can use twice (W_in, W_out, b, c, every MLP weight).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from jeq import validate
from jeq.pathsgd.mlp import Dense, check_layers, mlp_apply
from jeq.pathsgd.rnn import HEADS, RNNParams, check_rnn_shapes, check_sequence, rnn_apply

__all__ = [
    "Kappa",
    "rnn_path_sum",
    "rnn_apply_with_path_sum",
    "mlp_path_sum",
    "gamma",
    "path_kappa",
    "kappa",
]

PyTree = Any


class Kappa(NamedTuple):
    """Per-weight curvature terms of the path regulariser, each a pytree shaped like the params.

    >>> import jax
    >>> from jeq.pathsgd import Kappa, init_rnn, kappa
    >>> Kappa._fields
    ('kappa1', 'kappa2')
    >>> params = init_rnn(jax.random.key(0), input_size=2, hidden_size=3, output_size=1)
    >>> k = kappa(params, 4)
    >>> k.kappa1.w_rec.shape, k.kappa2 is None
    ((3, 3), True)
    """

    kappa1: PyTree
    """``kappa1_i = dGamma/du_i`` at ``u = w^2`` (one reverse-mode pass of the squared-weight network)."""
    kappa2: PyTree | None
    """``kappa2_i = u_i d^2Gamma/du_i^2`` (exact diagonal of the Hessian; ``None`` unless requested)."""


def _identity(x: jax.Array) -> jax.Array:
    return x


def _check_length_and_head(where: str, length, head) -> int:
    """The unrolled length T (an int >= 1) and the output-time convention (one of :data:`HEADS`)."""
    length = validate.integer(where, "length", length, low=1)
    validate.one_of(where, "head", head, HEADS)
    return length


def rnn_path_sum(
    squared_params: RNNParams,
    *,
    length: int,
    head: Literal["many_to_one", "many_to_many"] = "many_to_one",
) -> jax.Array:
    """``Gamma(u)``: the RNN's path sum as a function of the squared weights ``u = w^2``.

    ``h~_0 = 0``, ``h~_t = U_in 1 + U_rec h~_{t-1} + u_b``, ``Gamma = sum_t 1^T (U_out h~_t + u_c)`` with t = T
    (``many_to_one``) or t = 1..T (``many_to_many``). Pass it to :func:`jeq.pathsgd.path_sgd` as
    ``functools.partial(rnn_path_sum, length=T, head=...)``.

    Args:
      squared_params: :class:`RNNParams` holding u (the element-wise squares of the weights).
      length: T >= 1, the number of time steps of the unrolled graph.
      head: which outputs the loss reads (see module docstring).

    Returns:
      A scalar.

    >>> import jax
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> from jeq.pathsgd import init_rnn, rnn_apply, rnn_path_sum
    >>> params = init_rnn(jax.random.key(0), input_size=2, hidden_size=3, output_size=1)
    >>> u = jax.tree.map(jnp.square, params)
    >>> linear = rnn_apply(u, jnp.ones((4, 2)), head="many_to_many", activation=lambda z: z)  # all-ones input
    >>> bool(np.allclose(rnn_path_sum(u, length=4), linear[-1].sum()))
    True
    >>> bool(np.allclose(rnn_path_sum(u, length=4, head="many_to_many"), linear.sum()))
    True
    """
    length = _check_length_and_head("jeq.pathsgd.rnn_path_sum", length, head)
    ones = jnp.ones((length, squared_params.w_in.shape[1]), jnp.result_type(squared_params.w_in))
    return jnp.sum(rnn_apply(squared_params, ones, head=head, activation=_identity))


def rnn_apply_with_path_sum(
    params: RNNParams,
    squared_params: RNNParams,
    xs: jax.Array,
    *,
    head: Literal["many_to_one", "many_to_many"] = "many_to_one",
    path_length: int | None = None,
) -> tuple[jax.Array, jax.Array]:
    """The ReLU RNN on one sequence and the path sum ``Gamma(u)``, fused into ONE ``lax.scan`` over time.

    Each step advances both recursions (module docstring):

        h_t = ReLU(W_in x_t + W_rec h_{t-1} + b),     h~_t = U_in 1 + U_rec h~_{t-1} + u_b   (t <= T_kappa),

    and returns ``(y, Gamma)`` with ``y`` as :func:`jeq.pathsgd.rnn_apply` and ``Gamma`` as
    :func:`rnn_path_sum` ``(u, length=T_kappa, head=head)``. ``Gamma`` does not depend on ``xs``: under
    ``jax.vmap(..., in_axes=(None, None, 0), out_axes=(0, None))`` over a batch the h~ recursion stays unbatched
    (computed once per step, not once per example), so ``jax.value_and_grad`` of ``mean loss(y) + Gamma`` with
    respect to ``(params, u)`` yields dL/dw and kappa1 = dGamma/du from one forward and one reverse scan, instead
    of the two scan pairs of ``grad L`` followed by :func:`path_kappa` (on accelerators the scans are
    latency-bound, so the second pair costs about as much as the first). ``u`` is an independent argument:
    pass ``w * w`` (``jax.lax.stop_gradient`` is not needed when differentiating with respect to ``u`` only).

    Args:
      params: :class:`RNNParams` w.
      squared_params: :class:`RNNParams` u (normally ``w * w``).
      xs: one input sequence (T, D).
      head: output-time convention of both the network and ``Gamma``.
      path_length: ``T_kappa``, the unrolled length of the graph whose path sum is taken (default T);
        ``1 <= T_kappa <= T``.

    Returns:
      ``(y, Gamma)``: ``y_T`` (K,) or ``y_{1..T}`` (T, K), and a scalar.

    >>> import jax
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> from jeq.pathsgd import init_rnn, rnn_apply, rnn_apply_with_path_sum, rnn_path_sum
    >>> params = init_rnn(jax.random.key(0), input_size=2, hidden_size=3, output_size=1)
    >>> u = jax.tree.map(jnp.square, params)
    >>> xs = jax.random.normal(jax.random.key(1), (5, 2))
    >>> y, path_sum = rnn_apply_with_path_sum(params, u, xs)
    >>> bool(np.allclose(y, rnn_apply(params, xs))), bool(np.allclose(path_sum, rnn_path_sum(u, length=5)))
    (True, True)
    """
    where = "jeq.pathsgd.rnn_apply_with_path_sum"
    validate.one_of(where, "head", head, HEADS)
    check_rnn_shapes(where, params)
    for name, w in zip(RNNParams._fields, params):
        validate.array(where, f"squared_params.{name}", getattr(squared_params, name), shape=jnp.shape(w))
    check_sequence(where, params, xs)
    length = xs.shape[0]
    path_length = length if path_length is None else validate.integer(where, "path_length", path_length, low=1,
                                                                      high=length)
    u = squared_params
    drive = u.w_in @ jnp.ones((u.w_in.shape[1],), u.w_in.dtype) + u.b  # U_in 1 + u_b, the same at every step
    read = jnp.sum(u.w_out, axis=0)  # 1^T U_out
    many = head == "many_to_many"

    def cell(carry, inputs):
        h, h_path, gamma_acc = carry
        x_t, t = inputs
        h = jax.nn.relu(params.w_in @ x_t + params.w_rec @ h + params.b)
        active = t < path_length
        h_path = jnp.where(active, drive + u.w_rec @ h_path, h_path)
        if many:
            gamma_acc = gamma_acc + jnp.where(active, read @ h_path + jnp.sum(u.c), 0)
        return (h, h_path, gamma_acc), h

    dtype = jnp.result_type(params.b, xs)
    h0 = jnp.zeros(params.b.shape, dtype)
    path0 = jnp.zeros(u.b.shape, jnp.result_type(u.b))
    (h_last, h_path, gamma_acc), hs = jax.lax.scan(
        cell, (h0, path0, jnp.zeros((), path0.dtype)), (xs, jnp.arange(length))
    )
    if many:
        return hs @ params.w_out.T + params.c, gamma_acc
    return params.w_out @ h_last + params.c, read @ h_path + jnp.sum(u.c)


def mlp_path_sum(squared_params: tuple[Dense, ...]) -> jax.Array:
    """``Gamma(u)`` of a ReLU MLP: the linear network with squared weights on an all-ones input, summed.

    ``gamma(w) = sum_{paths input -> output} prod_{e in path} w_e^2`` (Neyshabur, Salakhutdinov & Srebro,
    NIPS 2015, with biases as edges from a constant-1 unit).

    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> from jeq.pathsgd import Dense, mlp_path_sum
    >>> u = (Dense(w=jnp.array([[4.0]]), b=jnp.array([0.0])), Dense(w=jnp.array([[9.0]]), b=jnp.array([0.0])))
    >>> float(mlp_path_sum(u))  # 1-1-1 network with w1 = 2, w2 = 3: one path, (2 * 3)^2
    36.0
    >>> float(mlp_path_sum((u[0]._replace(b=jnp.array([1.0])), u[1])))  # plus the path b1 -> y: 1^2 * 3^2
    45.0
    """
    check_layers("jeq.pathsgd.mlp_path_sum", squared_params, argument="squared_params")
    ones = jnp.ones((squared_params[0].w.shape[1],), jnp.result_type(squared_params[0].w))
    return jnp.sum(mlp_apply(squared_params, ones, activation=_identity))


def _square(params: PyTree) -> PyTree:
    return jax.tree_util.tree_map(jnp.square, params)


def gamma(
    params: RNNParams,
    length: int,
    *,
    head: Literal["many_to_one", "many_to_many"] = "many_to_one",
) -> jax.Array:
    """Path regulariser of the ReLU RNN unrolled over ``length`` steps.

    ``gamma(w) = sum_{paths input@s -> output@t, t >= s} prod_{e in path} w_{pi(e)}^2 = Gamma(w * w)``
    (Neyshabur et al. 2016, eq. for gamma_net with shared weights), computed by the squared-weight linear
    recursion of :func:`rnn_path_sum` in O(T H^2) instead of enumerating paths.

    Args:
      params: :class:`RNNParams`.
      length: T >= 1.
      head: ``"many_to_one"`` sums paths ending at t = T, ``"many_to_many"`` paths ending at any t.

    Returns:
      A scalar (invariant under node rescaling).

    >>> import jax
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> from jeq.pathsgd import gamma, init_rnn, rnn_apply
    >>> params = init_rnn(jax.random.key(0), input_size=2, hidden_size=3, output_size=1)
    >>> # T = 1, zero biases: the paths are x_d -> h_i -> y_k, so gamma = sum_{k,i,d} W_out[k,i]^2 W_in[i,d]^2
    >>> bool(np.allclose(gamma(params, 1), jnp.sum(params.w_out ** 2 @ params.w_in ** 2)))
    True
    >>> c = jnp.array([0.5, 2.0, 3.0])  # rescale hidden unit i by c_i > 0: the same function ...
    >>> rescaled = params._replace(w_in=c[:, None] * params.w_in, b=c * params.b,
    ...                            w_rec=c[:, None] * params.w_rec / c[None, :], w_out=params.w_out / c[None, :])
    >>> xs = jax.random.normal(jax.random.key(1), (5, 2))
    >>> bool(np.allclose(rnn_apply(params, xs), rnn_apply(rescaled, xs), atol=1e-6))
    True
    >>> bool(np.allclose(gamma(params, 5), gamma(rescaled, 5), rtol=1e-5))  # ... and the same gamma
    True
    """
    length = _check_length_and_head("jeq.pathsgd.gamma", length, head)
    return rnn_path_sum(_square(params), length=length, head=head)


def path_kappa(
    path_sum: Callable[[PyTree], jax.Array],
    params: PyTree,
    *,
    include_kappa2: bool = False,
    kappa2_batch_size: int = 64,
) -> Kappa:
    """kappa1 (and optionally the exact kappa2) of any network given its squared-weight path sum Gamma(u).

    ``kappa1 = grad Gamma(u)`` at ``u = w^2``: one forward and one reverse pass of the squared-weight network at
    batch size 1, independent of the data. ``kappa2 = u * diag(Hess Gamma(u))``: the exact Hessian diagonal by
    one forward-over-reverse product per weight (``jax.jvp`` of ``jax.grad`` along each basis vector), so its
    cost is (number of weights) x kappa1's: for small models only. Together
    ``d^2 gamma/dw_i^2 = 2 kappa1_i + 4 kappa2_i``.

    Args:
      path_sum: ``Gamma``, e.g. ``functools.partial(rnn_path_sum, length=T)`` or :func:`mlp_path_sum`.
      params: the weights w (any pytree ``path_sum`` accepts).
      include_kappa2: also compute the exact kappa2.
      kappa2_batch_size: how many Hessian-vector products run at once (memory vs speed).

    Returns:
      :class:`Kappa` with pytrees shaped like ``params``.

    >>> import jax
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> from jeq.pathsgd import init_mlp, mlp_path_sum, path_kappa
    >>> params = init_mlp(jax.random.key(0), layer_sizes=(2, 3, 1))
    >>> k = path_kappa(mlp_path_sum, params, include_kappa2=True)
    >>> grad = jax.grad(mlp_path_sum)(jax.tree.map(jnp.square, params))
    >>> all(bool(np.allclose(a, b)) for a, b in zip(jax.tree.leaves(k.kappa1), jax.tree.leaves(grad)))
    True
    >>> max(float(jnp.abs(leaf).max()) for leaf in jax.tree.leaves(k.kappa2))  # no MLP path uses a weight twice
    0.0
    """
    kappa2_batch_size = validate.integer("jeq.pathsgd.path_kappa", "kappa2_batch_size", kappa2_batch_size, low=1)
    u = _square(params)
    kappa1 = jax.grad(path_sum)(u)
    if not include_kappa2:
        return Kappa(kappa1=kappa1, kappa2=None)
    flat_u, unravel = ravel_pytree(u)
    flat_grad = jax.grad(lambda v: path_sum(unravel(v)))

    def hessian_diagonal_entry(i):
        basis = jnp.zeros_like(flat_u).at[i].set(1)
        return jax.jvp(flat_grad, (flat_u,), (basis,))[1][i]

    n = flat_u.shape[0]
    diagonal = jax.lax.map(hessian_diagonal_entry, jnp.arange(n), batch_size=min(n, kappa2_batch_size))
    return Kappa(kappa1=kappa1, kappa2=unravel(flat_u * diagonal))


def kappa(
    params: RNNParams,
    length: int,
    *,
    head: Literal["many_to_one", "many_to_many"] = "many_to_one",
    include_kappa2: bool = False,
) -> Kappa:
    """kappa1 (and optionally the exact kappa2) of the ReLU RNN's path regulariser.

    ``kappa1_i = sum_{e: pi(e)=i} sum_{p ∋ e} prod_{e' in p, e' != e} w_{pi(e')}^2 = dGamma/du_i``,
    ``kappa2_i = w_i^2 sum_{e1 != e2: pi(e1)=pi(e2)=i} sum_{p ∋ e1, e2} prod_{e' not in {e1, e2}} w_{pi(e')}^2
    = u_i d^2Gamma/du_i^2``; ``d^2 gamma/dw_i^2 = 2 kappa1_i + 4 kappa2_i``. kappa2 is zero on W_in, W_out, b
    and c (a path uses each of them at most once) and nonzero only on W_rec.

    Args:
      params: :class:`RNNParams`.
      length: T >= 1.
      head: output-time convention, as in :func:`gamma`.
      include_kappa2: also compute the exact kappa2 (H^2 + ... Hessian-vector products: small models).

    Returns:
      :class:`Kappa` of :class:`RNNParams`.

    >>> import jax
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> from jeq.pathsgd import init_rnn, kappa, rnn_path_sum
    >>> params = init_rnn(jax.random.key(0), input_size=2, hidden_size=3, output_size=1)
    >>> k = kappa(params, 4, include_kappa2=True)
    >>> grad = jax.grad(lambda u: rnn_path_sum(u, length=4))(jax.tree.map(jnp.square, params))
    >>> bool(np.allclose(k.kappa1.w_rec, grad.w_rec))  # kappa1 = dGamma/du
    True
    >>> float(jnp.abs(k.kappa2.w_in).max()), bool((k.kappa2.w_rec >= 0).all())  # kappa2 lives on W_rec only
    (0.0, True)
    """
    length = _check_length_and_head("jeq.pathsgd.kappa", length, head)
    return path_kappa(
        functools.partial(rnn_path_sum, length=length, head=head), params, include_kappa2=include_kappa2
    )
