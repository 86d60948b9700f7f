"""A plain ReLU recurrent network as pure functions (Neyshabur et al., NeurIPS 2016, section 2).

    h_0 = 0,   h_t = ReLU(W_in x_t + W_rec h_{t-1} + b),   y_t = W_out h_t + c,   t = 1..T.

Unrolled over T steps this is a feed-forward network whose edges share weights; ``jeq.pathsgd.path_norm``
computes the path regulariser of exactly this graph by running :func:`rnn_apply` on squared weights with the
identity activation.

Initialisations (``W_in ~ N(0, s_in^2)``, ``W_out ~ N(0, s_out^2)``, ``b = c = 0``; ``s_in = 1/sqrt(D)`` and
``s_out = 1/sqrt(H)`` except for the IRNN):

- ``"gaussian"``: ``W_rec ~ N(0, 1/H)``;
- ``"identity"`` (IRNN, Le, Jaitly & Hinton 2015): ``W_rec = I`` and, as in Le et al., the non-recurrent weights
  ``W_in``, ``W_out`` with standard deviation ``s_in = s_out = 0.001`` (an identity recurrence sums T inputs into
  the state: O(1) input weights would start it at O(T));
- ``"np"`` (np-RNN, Talathi & Vartak 2015): ``W_rec = R / lambda_max(R)`` with ``R = A^T A / H``,
  ``A ~ N(0, 1)^{H x H}``: symmetric positive semi-definite with largest eigenvalue 1.

``output_init="equal"`` draws ``W_out = +-output_scale`` (random signs; ``1/sqrt(H)`` by default) instead: every
hidden unit has the same output weight magnitude. Path-SGD needs it from the np-RNN init: its step on row i of ``W_rec`` scales like
``1 / |W_out[i]|`` (kappa1 of ``W_rec[i, j]`` carries ``W_out[i]^2``, the gradient ``W_out[i]``), so a Gaussian
``W_out`` with a few near-zero entries gives those rows huge steps that lift the recurrent spectral radius above 1
(``results/pathsgd_adding/variants/NOTES.md``, session 4). Node rescaling cannot fix this, Path-SGD being
invariant to it; a different function at initialisation can.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp

from jeq import validate

__all__ = ["RNNParams", "init_rnn", "rnn_apply", "check_rnn_shapes", "check_sequence", "HEADS", "INITS",
           "IRNN_SCALE", "OUTPUT_INITS"]

HEADS = ("many_to_one", "many_to_many")
INITS = ("gaussian", "identity", "np")
OUTPUT_INITS = ("gaussian", "equal")
IRNN_SCALE = 1e-3
"""Standard deviation of the IRNN's non-recurrent weights (Le, Jaitly & Hinton 2015: N(0, 0.001^2))."""


class RNNParams(NamedTuple):
    """Weights of a one-layer ReLU RNN with H hidden units, D inputs and K outputs.

    >>> import jax
    >>> from jeq.pathsgd import RNNParams, init_rnn
    >>> RNNParams._fields
    ('w_in', 'w_rec', 'b', 'w_out', 'c')
    >>> params = init_rnn(jax.random.key(0), input_size=2, hidden_size=3, output_size=1)
    >>> [leaf.shape for leaf in params]
    [(3, 2), (3, 3), (3,), (1, 3), (1,)]
    """

    w_in: jax.Array
    """Input-to-hidden weights ``W_in``, shape (H, D)."""
    w_rec: jax.Array
    """Hidden-to-hidden (recurrent) weights ``W_rec``, shape (H, H); ``w_rec[i, j]`` is the edge j -> i."""
    b: jax.Array
    """Hidden bias ``b``, shape (H,); for the path regulariser a weight from a constant-1 unit."""
    w_out: jax.Array
    """Hidden-to-output weights ``W_out``, shape (K, H)."""
    c: jax.Array
    """Output bias ``c``, shape (K,); for the path regulariser a weight from a constant-1 unit."""


def init_rnn(
    key: jax.Array,
    *,
    input_size: int,
    hidden_size: int,
    output_size: int,
    init: Literal["gaussian", "identity", "np"] = "gaussian",
    input_scale: float | None = None,
    output_init: Literal["gaussian", "equal"] = "gaussian",
    output_scale: float | None = None,
    dtype=jnp.float32,
) -> RNNParams:
    """Initial weights of the ReLU RNN ``h_t = ReLU(W_in x_t + W_rec h_{t-1} + b)``, ``y_t = W_out h_t + c``.

    Args:
      key: a ``jax.random.key``.
      input_size, hidden_size, output_size: D, H and K.
      init: the recurrent initialisation, ``"gaussian"`` (``W_rec ~ N(0, 1/H)``), ``"identity"`` (IRNN,
        ``W_rec = I``) or ``"np"`` (np-RNN: ``W_rec = R / lambda_max(R)``, ``R = A^T A / H``).
        Zero biases in all three.
      input_scale: standard deviation of ``W_in`` (default ``1/sqrt(D)``, and 0.001 for ``init="identity"``:
        Le et al.'s IRNN init, whose identity recurrence otherwise sums T inputs of size O(1) into the state).
      output_init: ``"gaussian"`` (``W_out ~ N(0, output_scale^2)``) or ``"equal"``
        (``W_out = sign(N(0, 1)) * output_scale``, the same draw's signs; see the module docstring).
      output_scale: standard deviation (``"gaussian"``) or magnitude (``"equal"``) of ``W_out``: default
        ``1/sqrt(H)``, and 0.001 for ``init="identity"`` (Le et al. draw every non-recurrent IRNN weight from
        N(0, 0.001^2)).
      dtype: floating dtype of the weights.

    Returns:
      :class:`RNNParams`.

    >>> import jax
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> from jeq.pathsgd import init_rnn
    >>> irnn = init_rnn(jax.random.key(0), input_size=2, hidden_size=3, output_size=1, init="identity")
    >>> irnn.w_rec.tolist()
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    >>> np_rnn = init_rnn(jax.random.key(0), input_size=2, hidden_size=3, output_size=1, init="np")
    >>> round(float(jnp.linalg.eigvalsh(np_rnn.w_rec).max()), 4)  # np-RNN: largest eigenvalue 1
    1.0
    >>> equal = init_rnn(jax.random.key(0), input_size=2, hidden_size=3, output_size=1, output_init="equal")
    >>> sorted(set(jnp.abs(equal.w_out * 3 ** 0.5).round(4).ravel().tolist()))  # |W_out| = 1/sqrt(H)
    [1.0]
    """
    where = "jeq.pathsgd.init_rnn"
    input_size = validate.integer(where, "input_size", input_size, low=1)
    hidden_size = validate.integer(where, "hidden_size", hidden_size, low=1)
    output_size = validate.integer(where, "output_size", output_size, low=1)
    validate.one_of(where, "init", init, INITS)
    validate.one_of(where, "output_init", output_init, OUTPUT_INITS)
    if input_scale is not None:
        input_scale = validate.positive(where, "input_scale", input_scale)
    if output_scale is not None:
        output_scale = validate.positive(where, "output_scale", output_scale)
    k_in, k_rec, k_out = jax.random.split(key, 3)
    h = hidden_size
    irnn = init == "identity"
    s_in = (IRNN_SCALE if irnn else input_size**-0.5) if input_scale is None else input_scale
    w_in = jax.random.normal(k_in, (h, input_size), dtype) * jnp.asarray(s_in, dtype)
    w_out = jax.random.normal(k_out, (output_size, h), dtype)
    w_out = jnp.sign(w_out) if output_init == "equal" else w_out
    if output_scale is None and not irnn:
        w_out = w_out / jnp.sqrt(jnp.asarray(h, dtype))
    else:
        w_out = w_out * jnp.asarray(IRNN_SCALE if output_scale is None else output_scale, dtype)
    if init == "gaussian":
        w_rec = jax.random.normal(k_rec, (h, h), dtype) / jnp.sqrt(jnp.asarray(h, dtype))
    elif init == "identity":
        w_rec = jnp.eye(h, dtype=dtype)
    else:
        a = jax.random.normal(k_rec, (h, h), dtype)
        r = a.T @ a / h
        w_rec = r / jnp.linalg.eigvalsh(r)[-1]
    return RNNParams(
        w_in=w_in, w_rec=w_rec, b=jnp.zeros((h,), dtype), w_out=w_out, c=jnp.zeros((output_size,), dtype)
    )


def rnn_apply(
    params: RNNParams,
    xs: jax.Array,
    *,
    head: Literal["many_to_one", "many_to_many"] = "many_to_one",
    activation: Callable[[jax.Array], jax.Array] = jax.nn.relu,
) -> jax.Array:
    """Run the RNN over one sequence (callers ``jax.vmap`` over a batch).

    ``h_0 = 0``, ``h_t = activation(W_in x_t + W_rec h_{t-1} + b)``, ``y_t = W_out h_t + c`` (``lax.scan`` over t).

    Args:
      params: :class:`RNNParams` with shapes (H, D), (H, H), (H,), (K, H), (K,).
      xs: one input sequence, shape (T, D).
      head: ``"many_to_one"`` returns ``y_T`` with shape (K,) (adding problem, sequential MNIST);
        ``"many_to_many"`` returns every ``y_t``, shape (T, K) (language modelling).
      activation: ``jax.nn.relu`` for the network; the identity gives the linear network used by the path
        regulariser.

    Returns:
      ``y_T`` (K,) or ``y_{1..T}`` (T, K).

    >>> import jax
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> from jeq.pathsgd import init_rnn, rnn_apply
    >>> params = init_rnn(jax.random.key(0), input_size=2, hidden_size=3, output_size=1)
    >>> xs = jax.random.normal(jax.random.key(1), (6, 5, 2))  # a batch of 6 sequences of length 5
    >>> jax.vmap(lambda x: rnn_apply(params, x))(xs).shape
    (6, 1)
    >>> every = jax.vmap(lambda x: rnn_apply(params, x, head="many_to_many"))(xs)
    >>> every.shape, bool(np.allclose(every[0, -1], rnn_apply(params, xs[0])))
    ((6, 5, 1), True)
    """
    where = "jeq.pathsgd.rnn_apply"
    validate.one_of(where, "head", head, HEADS)
    check_rnn_shapes(where, params)
    check_sequence(where, params, xs)

    def cell(h, x_t):
        h = activation(params.w_in @ x_t + params.w_rec @ h + params.b)
        return h, h

    h0 = jnp.zeros(params.b.shape, jnp.result_type(params.b, xs))
    h_last, hs = jax.lax.scan(cell, h0, xs)
    if head == "many_to_one":
        return params.w_out @ h_last + params.c
    return hs @ params.w_out.T + params.c


def check_rnn_shapes(where: str, params: RNNParams, *, argument: str = "params") -> None:
    """Raise :class:`jeq.validate.ArgumentError` naming ``where`` and the first inconsistent weight unless the shapes
    are ``w_in (H, D), w_rec (H, H), b (H,), w_out (K, H), c (K,)``.

    ``where`` is the public name of the call (``"jeq.pathsgd.gamma"``); the message reads
    ``jeq.pathsgd.gamma(params.w_rec): must have shape (3, 3), got shape (3, 4) dtype float32``.
    """
    h, _ = validate.array(where, f"{argument}.w_in", params.w_in, ndim=2).shape
    k, _ = validate.array(where, f"{argument}.w_out", params.w_out, ndim=2).shape
    for name, shape in (("w_rec", (h, h)), ("b", (h,)), ("w_out", (k, h)), ("c", (k,))):
        validate.array(where, f"{argument}.{name}", getattr(params, name), shape=shape)


def check_sequence(where: str, params: RNNParams, xs, *, argument: str = "xs") -> None:
    """Raise :class:`jeq.validate.ArgumentError` unless ``xs`` is ONE input sequence ``(T, D)`` with ``T >= 1`` and
    ``D = w_in.shape[1]`` (a batch is vmapped by the caller); the message shows both shapes."""
    d = params.w_in.shape[1]
    hint = f"one sequence (T, D) with T >= 1 and D = w_in.shape[1] for w_in of shape {tuple(params.w_in.shape)}; " \
        "vmap over a batch"
    try:
        validate.array(where, argument, xs, shape=(None, d))
    except validate.ArgumentError as err:
        raise validate.ArgumentError(f"{err} ({hint})") from None
    if xs.shape[0] < 1:
        raise validate.ArgumentError(f"{where}({argument}): must have T >= 1 steps, got shape {tuple(xs.shape)} "
                                     f"({hint})")
