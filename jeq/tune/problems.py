"""Problems the target algorithms minimise: four shifted benchmark functions and two random-key combinatorial ones.

Every problem is a pure ``objective(data, x) -> scalar`` over a real vector ``x`` (one point, one instance; callers
vmap), an initialisation box ``[low, high]^d`` and a generator of instances. Instances are drawn from
``jax.random.fold_in(key(split seed), index)``: the ``"tune"`` split uses indices ``0, 1, ...`` of one seed and the
``"heldout"`` split the same indices of another, so the two sets are disjoint (different random streams) and each is
reproducible.

Continuous (f(x) = base(x − o), shift o drawn per instance, minimum 0 at x = o by construction)::

    sphere      Σ z_i²                                                  box [-5, 5]
    rosenbrock  Σ 100 (w_{i+1} − w_i²)² + (w_i − 1)², w = z + 1 (CEC)    box [-5, 5]
    rastrigin   10 d + Σ z_i² − 10 cos(2π z_i)                           box [-5.12, 5.12]
    ackley      −20 exp(−0.2 √(Σ z_i²/d)) − exp(Σ cos(2π z_i)/d) + 20 + e box [-32.768, 32.768]

Discrete, decoded from continuous keys so that the same algorithms run on them:

- ``tsp``: ``d`` cities uniform in the unit square; the tour is ``argsort(x)`` (random keys, Bean 1994), the objective
  its closed Euclidean length. Every ``x`` decodes to a valid tour (a permutation).
- ``knapsack``: ``d`` items with weights and values uniform in [0.1, 1], capacity half the total weight. Items with
  ``x_i > 0.5`` are selected; greedy repair then drops the selected items of lowest value/weight ratio until the
  set fits (it keeps the longest ratio-sorted prefix of the selection that fits), so every ``x`` decodes to a
  feasible set. The objective is the relative gap ``(U − value)/U`` to Dantzig's LP upper bound ``U`` (>= 0, small
  is good).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jeq import validate

__all__ = ["PROBLEMS", "Problem", "knapsack_decode", "knapsack_value", "make_problem", "tour_length", "tsp_decode"]

SPLITS = {"tune": 20_031, "heldout": 38_624_177}
"""Seed of the random stream of each instance split (tuning and held-out instances are never the same)."""


class Problem(NamedTuple):
    """A set of instances of one problem, stacked along a leading axis.

    >>> from jeq.tune import Problem, make_problem
    >>> Problem._fields
    ('name', 'dimension', 'low', 'high', 'objective', 'data', 'count', 'split', 'optimum')
    >>> sphere = make_problem("sphere", dimension=10, count=2)
    >>> sphere.data["shift"].shape, sphere.low, sphere.high, sphere.optimum
    ((2, 10), -5.0, 5.0, 0.0)
    """

    name: str
    """Registry name, e.g. ``"rastrigin"``."""
    dimension: int
    """Length d of the search vector ``x``."""
    low: float
    """Lower corner of the initialisation box."""
    high: float
    """Upper corner of the initialisation box."""
    objective: Callable[[Any, jax.Array], jax.Array]
    """``objective(data, x) -> scalar`` for one instance's data and one point (minimised)."""
    data: Any
    """Pytree of instance data, every leaf with leading axis ``count``."""
    count: int
    """Number of instances."""
    split: str
    """``"tune"`` or ``"heldout"``."""
    optimum: float
    """Known optimal objective value of every instance (``nan`` when unknown)."""

    def instance(self, index: int) -> Any:
        """Data of instance ``index``."""
        return jax.tree.map(lambda leaf: leaf[index], self.data)


# --------------------------------------------------------------------------------------------- continuous

def _sphere(z):
    return jnp.sum(z**2)


def _rosenbrock(z):
    w = z + 1.0
    return jnp.sum(100.0 * (w[1:] - w[:-1] ** 2) ** 2 + (w[:-1] - 1.0) ** 2)


def _rastrigin(z):
    return 10.0 * z.shape[0] + jnp.sum(z**2 - 10.0 * jnp.cos(2 * jnp.pi * z))


def _ackley(z):
    d = z.shape[0]
    return (-20.0 * jnp.exp(-0.2 * jnp.sqrt(jnp.sum(z**2) / d)) - jnp.exp(jnp.sum(jnp.cos(2 * jnp.pi * z)) / d)
            + 20.0 + jnp.e)


def _shifted(base: Callable[[jax.Array], jax.Array]) -> Callable[[Any, jax.Array], jax.Array]:
    def objective(data, x):
        return base(x - data["shift"])

    objective.__name__ = base.__name__.lstrip("_")
    return objective


def _shift_instances(box: float):
    def generate(key, dimension):
        return {"shift": jax.random.uniform(key, (dimension,), minval=-0.8 * box, maxval=0.8 * box)}

    return generate


# ------------------------------------------------------------------------------------------------------- TSP

def tsp_decode(x: jax.Array) -> jax.Array:
    """Random-key decoding: the tour visits city ``argsort(x)[0]``, then ``argsort(x)[1]``, ... (a permutation).

    >>> import jax.numpy as jnp
    >>> from jeq.tune import tsp_decode
    >>> tsp_decode(jnp.array([0.7, 0.1, 0.9, 0.3])).tolist()  # cities in increasing key order
    [1, 3, 0, 2]
    """
    return jnp.argsort(x)


def tour_length(cities: jax.Array, tour: jax.Array) -> jax.Array:
    """``Σ_i ‖c_{tour[i]} − c_{tour[i+1 mod n]}‖``: length of the closed tour through ``cities`` (n, 2).

    >>> import jax.numpy as jnp
    >>> from jeq.tune import tour_length
    >>> square = jnp.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    >>> float(tour_length(square, jnp.array([0, 1, 2, 3]))), round(float(tour_length(square, jnp.array([0, 2, 1, 3]))), 4)
    (4.0, 4.8284)
    """
    path = cities[tour]
    return jnp.sum(jnp.linalg.norm(path - jnp.roll(path, -1, axis=0), axis=-1))


def _tsp(data, x):
    return tour_length(data["cities"], tsp_decode(x))


def _tsp_instances(key, dimension):
    return {"cities": jax.random.uniform(key, (dimension, 2))}


# -------------------------------------------------------------------------------------------------- knapsack

def knapsack_decode(x: jax.Array, weights: jax.Array, values: jax.Array, capacity: jax.Array) -> jax.Array:
    """Threshold + greedy repair: select ``x_i > 0.5``, then keep the selected items in decreasing value/weight
    order while their cumulative weight fits ``capacity``. Returns a boolean mask of a feasible set.

    >>> import jax.numpy as jnp
    >>> from jeq.tune import knapsack_decode
    >>> weights, values = jnp.array([3.0, 2.0, 2.0]), jnp.array([3.0, 4.0, 1.0])
    >>> x = jnp.array([0.9, 0.8, 0.6])  # all three selected, weight 7 > capacity 4
    >>> knapsack_decode(x, weights, values, jnp.array(4.0)).tolist()  # ratios 1, 2, 0.5: item 1, then 0 overflows
    [False, True, False]
    """
    selected = x > 0.5
    order = jnp.argsort(-(values / weights))
    cumulative = jnp.cumsum(jnp.where(selected[order], weights[order], 0.0))
    keep_sorted = selected[order] & (cumulative <= capacity)
    return jnp.zeros_like(selected).at[order].set(keep_sorted)


def knapsack_value(x: jax.Array, weights: jax.Array, values: jax.Array, capacity: jax.Array) -> jax.Array:
    """Total value of the decoded (feasible) item set.

    >>> import jax.numpy as jnp
    >>> from jeq.tune import knapsack_value
    >>> weights, values = jnp.array([3.0, 2.0, 2.0]), jnp.array([3.0, 4.0, 1.0])
    >>> float(knapsack_value(jnp.array([0.9, 0.8, 0.6]), weights, values, jnp.array(4.0)))  # only item 1 kept
    4.0
    >>> float(knapsack_value(jnp.array([0.9, 0.1, 0.1]), weights, values, jnp.array(4.0)))
    3.0
    """
    return jnp.sum(jnp.where(knapsack_decode(x, weights, values, capacity), values, 0.0))


def _knapsack(data, x):
    value = knapsack_value(x, data["weights"], data["values"], data["capacity"])
    return (data["bound"] - value) / data["bound"]


def _knapsack_instances(key, dimension):
    kw, kv = jax.random.split(key)
    weights = jax.random.uniform(kw, (dimension,), minval=0.1, maxval=1.0)
    values = jax.random.uniform(kv, (dimension,), minval=0.1, maxval=1.0)
    capacity = 0.5 * jnp.sum(weights)
    # Dantzig's bound: fill by ratio, the first item that does not fit enters fractionally.
    order = jnp.argsort(-(values / weights))
    w, v = weights[order], values[order]
    before = jnp.cumsum(w) - w
    fraction = jnp.clip((capacity - before) / w, 0.0, 1.0)
    return {"weights": weights, "values": values, "capacity": capacity, "bound": jnp.sum(fraction * v)}


# -------------------------------------------------------------------------------------------------- registry

class _Spec(NamedTuple):
    objective: Callable
    generate: Callable
    low: float
    high: float
    dimensions: tuple[int, int]
    optimum: float


PROBLEMS: dict[str, _Spec] = {
    "sphere": _Spec(_shifted(_sphere), _shift_instances(5.0), -5.0, 5.0, (10, 30), 0.0),
    "rosenbrock": _Spec(_shifted(_rosenbrock), _shift_instances(5.0), -5.0, 5.0, (10, 30), 0.0),
    "rastrigin": _Spec(_shifted(_rastrigin), _shift_instances(5.12), -5.12, 5.12, (10, 30), 0.0),
    "ackley": _Spec(_shifted(_ackley), _shift_instances(32.768), -32.768, 32.768, (10, 30), 0.0),
    "tsp": _Spec(_tsp, _tsp_instances, 0.0, 1.0, (4, 1000), float("nan")),
    "knapsack": _Spec(_knapsack, _knapsack_instances, 0.0, 1.0, (2, 1000), float("nan")),
}
"""Problem registry: objective, instance generator, initialisation box, allowed dimensions, known optimum."""


@functools.lru_cache(maxsize=64)
def _instances(name: str, dimension: int, split: str, count: int) -> Any:
    spec = PROBLEMS[name]
    base = jax.random.key(SPLITS[split])
    keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(count))
    return jax.tree.map(np.asarray, jax.vmap(lambda k: spec.generate(k, dimension))(keys))


def make_problem(name: str, *, dimension: int, split: str = "tune", count: int = 4) -> Problem:
    """``count`` instances of problem ``name`` in ``dimension`` variables from the ``split`` stream.

    Raises:
        ArgumentError: unknown problem or split, a dimension outside the problem's range (10-30 for the continuous
            functions), ``count < 1``.

    >>> import jax
    >>> import numpy as np
    >>> from jeq.tune import make_problem
    >>> tuning, heldout = make_problem("sphere", dimension=10), make_problem("sphere", dimension=10, split="heldout")
    >>> shift = tuning.data["shift"][0]
    >>> float(tuning.objective(jax.tree.map(lambda a: a[0], tuning.data), shift))  # f(shift) = optimum
    0.0
    >>> bool(np.allclose(tuning.data["shift"], heldout.data["shift"]))  # disjoint instance streams
    False
    >>> make_problem("sphere", dimension=3)
    Traceback (most recent call last):
    ...
    jeq.validate.ArgumentError: jeq.tune.make_problem(dimension=3): must be ...
    """
    where = "jeq.tune.make_problem"
    validate.one_of(where, "name", name, PROBLEMS)
    validate.one_of(where, "split", split, SPLITS)
    spec = PROBLEMS[name]
    dimension = validate.integer(where, "dimension", dimension, low=spec.dimensions[0], high=spec.dimensions[1])
    count = validate.integer(where, "count", count, low=1)
    data = _instances(name, dimension, split, count)
    return Problem(name, dimension, spec.low, spec.high, spec.objective, data, count, split, spec.optimum)
