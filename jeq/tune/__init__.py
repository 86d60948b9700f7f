"""RL hyper-parameter tuning of stochastic optimisers (Zhang, Sun & Xu, arXiv 2003.02038), spec ``specs/rltune.md``.

Tuning is ``min_θ E[M(A_θ(f))]`` with A(θ) = g(θ) + ε a stochastic algorithm (evosax DE, GA, PSO, SA) and M its final
best objective. The pieces:

- :mod:`jeq.tune.algorithms`: the registry :data:`ALGORITHMS` and its tunable :class:`HyperParameter` s;
- :mod:`jeq.tune.problems`: shifted Sphere/Rosenbrock/Rastrigin/Ackley, random-key TSP and knapsack, tuning vs
  held-out instances (:func:`make_problem`);
- :mod:`jeq.tune.evaluate`: :func:`evaluate` runs a batch of (θ, seed) runs in one vmapped call per shape group;
- :mod:`jeq.tune.search`: the ask/tell :class:`Strategy` and the budgeted, checkpointed loop :func:`tune`;
- :mod:`jeq.tune.policy`: the sequential policy and the REINFORCE tuner :func:`reinforce`;
- :mod:`jeq.tune.baselines`: optuna :func:`tpe` and a scikit-learn GP-EI :func:`gp_ei` (random search is in search);
- :mod:`jeq.tune.synthetic`: a toy A(θ) = g(θ) + noise with a known optimum, for examples and tests.
"""

from jeq.tune.algorithms import (
    ALGORITHMS,
    KINDS,
    Algorithm,
    HyperParameter,
    default_theta,
    get_algorithm,
    hyperparameter,
    population_algorithm,
    validate_theta,
)
from jeq.tune.baselines import decode_unit, encode_unit, gp_ei, tpe
from jeq.tune.evaluate import evaluate, group_thetas
from jeq.tune.policy import action_to_theta, entropy, init_policy, log_prob, reinforce, sample
from jeq.tune.problems import PROBLEMS, Problem, knapsack_decode, knapsack_value, make_problem, tour_length, tsp_decode
from jeq.tune.search import (
    Strategy,
    TuneResult,
    batch_evaluator,
    checkpoint_progress,
    random_search,
    rng_from_key,
    sample_uniform,
    tune,
)
from jeq.tune.synthetic import SYNTHETIC_OPTIMUM, SYNTHETIC_SPACE, synthetic_objective, synthetic_quality

__all__ = [
    "ALGORITHMS", "KINDS", "PROBLEMS", "SYNTHETIC_OPTIMUM", "SYNTHETIC_SPACE", "Algorithm", "HyperParameter", "Problem",
    "Strategy", "TuneResult", "action_to_theta", "batch_evaluator", "checkpoint_progress", "decode_unit",
    "default_theta", "encode_unit", "entropy", "evaluate", "get_algorithm", "gp_ei", "group_thetas", "hyperparameter",
    "init_policy", "knapsack_decode", "knapsack_value", "log_prob", "make_problem", "population_algorithm",
    "random_search", "reinforce", "rng_from_key", "sample", "sample_uniform", "synthetic_objective",
    "synthetic_quality", "tour_length", "tpe", "tsp_decode", "tune", "validate_theta",
]
