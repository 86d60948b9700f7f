"""Synthetic tasks: the adding problem, logic gates, and images as pixel sequences."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jeq import validate


def adding_problem(key: jax.Array, n: int, T: int) -> tuple[np.ndarray, np.ndarray]:
    """The adding problem (Hochreiter & Schmidhuber 1997; as used by Le et al. 2015 and Arjovsky et al. 2016).

    Each sequence has ``T`` steps of two channels: channel 0 holds values ``u_t ~ U(0, 1)``; channel 1 is a marker,
    1 at exactly two positions and 0 elsewhere. Following Arjovsky et al., the first marker is uniform in the first
    half ``[0, T/2)`` and the second uniform in the second half ``[T/2, T)``. The target is the sum of the two marked
    values, ``y = u_i + u_j``. Always predicting 1 gives MSE = Var(u_i + u_j) = 1/6 ≈ 0.167, the baseline to beat.

    Args:
        key: a ``jax.random.key``; the same key gives the same data.
        n: number of sequences (>= 1).
        T: sequence length (>= 2).

    Returns:
        ``(x, y)``: float32 arrays of shapes ``(n, T, 2)`` and ``(n,)``.

    >>> import jax
    >>> import numpy as np
    >>> from jeq.data import adding_problem
    >>> x, y = adding_problem(jax.random.key(0), 8, 5)
    >>> x.shape, y.shape, x.dtype
    ((8, 5, 2), (8,), dtype('float32'))
    >>> set(x[:, :, 1].sum(axis=1).tolist())  # exactly two markers per sequence
    {2.0}
    >>> bool(np.allclose(y, (x[:, :, 0] * x[:, :, 1]).sum(axis=1)))  # y = u_i + u_j
    True
    """
    n = validate.integer("jeq.data.adding_problem", "n", n, low=1)
    T = validate.integer("jeq.data.adding_problem", "T", T, low=2)
    k_val, k_first, k_second = jax.random.split(key, 3)
    values = jax.random.uniform(k_val, (n, T))
    half = T // 2
    first = jax.random.randint(k_first, (n,), 0, half)
    second = jax.random.randint(k_second, (n,), half, T)
    positions = jnp.arange(T)
    markers = ((positions == first[:, None]) | (positions == second[:, None])).astype(jnp.float32)
    x = jnp.stack([values, markers], axis=-1)
    y = jnp.sum(values * markers, axis=1)
    return np.asarray(x, np.float32), np.asarray(y, np.float32)


_GATES = {
    "AND": (2, lambda a, b: a & b),
    "OR": (2, lambda a, b: a | b),
    "XOR": (2, lambda a, b: a ^ b),
    "NOT": (1, lambda a: 1 - a),
    "ID": (1, lambda a: a),
}


def logic_gates(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Truth table of a logic gate with a bias input, as used by the DEEP notebooks (Farinha et al. 2020).

    Rows enumerate the binary inputs in order (00, 01, 10, 11 for two-input gates); the last column of ``x`` is the
    bias neuron, clamped at 1. So AND/OR/XOR have ``x`` of shape ``(4, 3)`` and NOT/ID ``(2, 2)``; ``y`` is
    ``(m, 1)``; both float32.

    Args:
        name: one of ``AND``, ``OR``, ``XOR``, ``NOT``, ``ID`` (case-insensitive).

    >>> from jeq.data import logic_gates
    >>> x, y = logic_gates("xor")
    >>> x.tolist()  # inputs 00, 01, 10, 11 and the bias column
    [[0.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 1.0]]
    >>> y.ravel().tolist()
    [0.0, 1.0, 1.0, 0.0]
    """
    key = str(name).upper()
    if key not in _GATES:
        validate.fail("jeq.data.logic_gates", "name", name, f"must be one of {sorted(_GATES)} (case-insensitive)")
    arity, fn = _GATES[key]
    rows = np.array(np.meshgrid(*[[0, 1]] * arity, indexing="ij")).reshape(arity, -1).T.astype(np.int64)
    y = fn(*rows.T).reshape(-1, 1)
    x = np.concatenate([rows, np.ones((len(rows), 1), np.int64)], axis=1)
    return x.astype(np.float32), y.astype(np.float32)


def sequential_images(x: np.ndarray, permutation: np.ndarray | None = None) -> np.ndarray:
    """Images as pixel-by-pixel sequences (sequential MNIST, Le et al. 2015), optionally permuted.

    ``x`` of shape ``(n, H, W, C)`` becomes ``(n, H*W, C)`` in row-major scan order. ``permutation`` (an integer
    array, a permutation of ``range(H*W)``; e.g. ``np.random.default_rng(0).permutation(H*W)``) reorders the time
    axis identically for every image: permuted sequential MNIST.

    >>> import numpy as np
    >>> from jeq.data import sequential_images
    >>> images = np.arange(2 * 2 * 3, dtype=np.float32).reshape(2, 2, 3, 1)  # two 2x3 images
    >>> sequential_images(images).shape
    (2, 6, 1)
    >>> sequential_images(images)[0, :, 0].tolist()  # row-major scan
    [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    >>> sequential_images(images, np.array([5, 4, 3, 2, 1, 0]))[0, :, 0].tolist()
    [5.0, 4.0, 3.0, 2.0, 1.0, 0.0]
    """
    x = validate.array("jeq.data.sequential_images", "x", np.asarray(x), ndim=4)
    n, h, w, c = x.shape
    seq = x.reshape(n, h * w, c).astype(np.float32)
    if permutation is None:
        return seq
    perm = np.asarray(permutation)
    if perm.shape != (h * w,) or not np.issubdtype(perm.dtype, np.integer) or not np.array_equal(
        np.sort(perm), np.arange(h * w)
    ):
        raise validate.ArgumentError(
            f"jeq.data.sequential_images(permutation): must be an integer permutation of range({h * w}), got an array "
            f"of shape {perm.shape} dtype {perm.dtype}"
        )
    return seq[:, perm]
