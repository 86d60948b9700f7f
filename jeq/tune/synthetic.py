"""A synthetic tuning problem with a known optimum: the toy A(θ) = g(θ) + noise that examples and tests tune.

Tuning a real algorithm costs seconds per θ; this one costs microseconds and its optimum is known, so a tuner's
progress can be read off directly. The space holds one hyper-parameter of every kind (float, log-float,
categorical, int), and g is 0 exactly at :data:`SYNTHETIC_OPTIMUM`.
"""

from __future__ import annotations

import jax
import numpy as np

from jeq.tune.algorithms import hyperparameter
from jeq.tune.search import rng_from_key

__all__ = ["SYNTHETIC_OPTIMUM", "SYNTHETIC_SPACE", "synthetic_objective", "synthetic_quality"]

SYNTHETIC_SPACE = (
    hyperparameter("a", "float", low=0.0, high=1.0, default=0.5),
    hyperparameter("b", "float", low=-2.0, high=2.0, default=0.0),
    hyperparameter("c", "log-float", low=1e-4, high=1e2, default=1.0),
    hyperparameter("k", "categorical", choices=("x", "y", "z", "w"), default="x"),
    hyperparameter("n", "int", low=1, high=3, default=1),
)
"""Five hyper-parameters, one of every kind: a ∈ [0, 1], b ∈ [−2, 2], c ∈ [1e-4, 1e2] (log), k ∈ {x, y, z, w},
n ∈ {1, 2, 3}."""

SYNTHETIC_OPTIMUM = {"a": 0.8, "b": -1.2, "c": 10 ** -2.5, "k": "z", "n": 2}
"""The θ where :func:`synthetic_quality` is 0."""


def synthetic_quality(theta: dict) -> float:
    """g(θ) = (a − 0.8)² + ((b + 1.2)/4)² + ((log₁₀ c + 2.5)/6)² + 0.3·[k ≠ z] + 0.2·[n ≠ 2] ≥ 0, noise-free.

    >>> from jeq.tune import SYNTHETIC_OPTIMUM, synthetic_quality
    >>> synthetic_quality(SYNTHETIC_OPTIMUM), round(synthetic_quality({**SYNTHETIC_OPTIMUM, "k": "x"}), 6)
    (0.0, 0.3)
    """
    return float((theta["a"] - 0.8) ** 2 + ((theta["b"] + 1.2) / 4) ** 2 + ((np.log10(theta["c"]) + 2.5) / 6) ** 2
                 + 0.3 * (theta["k"] != "z") + 0.2 * (theta["n"] != 2))


def synthetic_objective(thetas: list[dict], key: jax.Array) -> np.ndarray:
    """A(θ) = g(θ)·exp(0.1 ε) + 0.001, ε ~ N(0, 1), for 2 seeds: a (len(thetas), 2) array of objectives > 0.

    The ``evaluate`` argument of :func:`jeq.tune.tune` with ``seeds_per_theta=2``; multiplicative noise, so the
    objectives span decades near the optimum as real algorithms' final errors do.

    >>> import jax
    >>> from jeq.tune import SYNTHETIC_OPTIMUM, SYNTHETIC_SPACE, default_theta, synthetic_objective
    >>> values = synthetic_objective([SYNTHETIC_OPTIMUM, default_theta(SYNTHETIC_SPACE)], jax.random.key(0))
    >>> values.shape, bool(values[0].max() < values[1].min())
    ((2, 2), True)
    """
    rng = rng_from_key(key)
    values = np.asarray([synthetic_quality(t) for t in thetas])
    return values[:, None] * np.exp(0.1 * rng.normal(size=(len(thetas), 2))) + 1e-3
