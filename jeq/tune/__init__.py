"""RL hyper-parameter tuning of stochastic optimisers (Zhang, Sun & Xu, arXiv 2003.02038), spec ``specs/rltune.md``.

Tuning is ``min_θ E[M(A_θ(f))]`` with A(θ) = g(θ) + ε a stochastic algorithm (evosax DE, GA, PSO, SA) and M its final
best objective. The pieces:

- :mod:`jeq.tune.algorithms`: the registry :data:`ALGORITHMS` and its tunable :class:`HyperParameter` s;
- :mod:`jeq.tune.problems`: shifted Sphere/Rosenbrock/Rastrigin/Ackley, random-key TSP and knapsack, tuning vs
  held-out instances (:func:`make_problem`);
- :mod:`jeq.tune.evaluate`: :func:`evaluate` runs a batch of (θ, seed) runs in one vmapped call per shape group.
"""

from jeq.tune.algorithms import (
    ALGORITHMS,
    KINDS,
    Algorithm,
    HyperParameter,
    default_theta,
    get_algorithm,
    hyperparameter,
    validate_theta,
)
from jeq.tune.evaluate import evaluate, group_thetas
from jeq.tune.problems import PROBLEMS, Problem, knapsack_decode, knapsack_value, make_problem, tour_length, tsp_decode

__all__ = [
    "ALGORITHMS", "KINDS", "PROBLEMS", "Algorithm", "HyperParameter", "Problem", "default_theta", "evaluate",
    "get_algorithm", "group_thetas", "hyperparameter", "knapsack_decode", "knapsack_value", "make_problem",
    "tour_length", "tsp_decode", "validate_theta",
]
