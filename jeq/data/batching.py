"""Minibatch iteration over numpy arrays."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from jeq import validate


def batches(
    x: np.ndarray, y: np.ndarray, batch_size: int, *, seed: int, epoch: int = 0, drop_last: bool = True
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Shuffled minibatches ``(x[idx], y[idx])`` for one epoch.

    The order is a permutation drawn from ``numpy.random.default_rng((seed, epoch))``: deterministic for a
    (seed, epoch) pair, different across epochs, and independent of how many epochs ran before, so a run resumed at
    epoch e sees exactly the batches it would have seen. With ``drop_last`` a final partial batch is skipped (fixed
    shapes, no recompilation); without it the last batch is smaller.

    >>> import numpy as np
    >>> from jeq.data import batches
    >>> x, y = np.arange(10.0).reshape(5, 2), np.arange(5)
    >>> [yb.tolist() for _, yb in batches(x, y, 2, seed=0)] == [yb.tolist() for _, yb in batches(x, y, 2, seed=0)]
    True
    >>> [yb.shape for _, yb in batches(x, y, 2, seed=0)]  # the partial last batch is dropped
    [(2,), (2,)]
    >>> sorted(np.concatenate([yb for _, yb in batches(x, y, 2, seed=0, drop_last=False)]).tolist())
    [0, 1, 2, 3, 4]
    >>> all((xb[:, 0] == 2 * yb).all() for xb, yb in batches(x, y, 2, seed=1))  # rows stay paired
    True
    """
    x, y = np.asarray(x), np.asarray(y)
    validate.array("jeq.data.batches", "y", y, shape=(x.shape[0], *y.shape[1:]))
    batch_size = validate.integer("jeq.data.batches", "batch_size", batch_size, low=1)
    n = x.shape[0]
    order = np.random.default_rng((seed, epoch)).permutation(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        yield x[idx], y[idx]
