"""NAGO (Ru, Esperança, Carlucci, NeurIPS 2020): hierarchical graph generators, NNX networks and optuna searches.

- :mod:`jeq.nas.generator`: HNAG's three-level generator (networkx WS / ER graphs) -> :class:`Architecture` data.
- :mod:`jeq.nas.network`: the flax NNX network of an architecture, exact parameter counts, width for a budget.
- :mod:`jeq.nas.train`: SGD training of one network with per-epoch validation accuracy (for pruning).
- :mod:`jeq.nas.search`: HNAG-BOHB, HNAG-RS, RNAG-BOHB and HNAG-MOBO on optuna storages (resumable, many workers).
"""

from jeq.nas.generator import (
    HNAG_SPACE,
    RNAG_SPACE,
    Architecture,
    Cell,
    Graph,
    HParams,
    darts_like,
    randwire,
    sample_architecture,
    stage_of_nodes,
)
from jeq.nas.network import Network, Plan, count_params, fit_width, merge_graph, param_count, plan
from jeq.nas.search import (
    METHODS,
    Evaluation,
    SearchConfig,
    SearchResult,
    TrialSettings,
    evaluate_theta,
    hparams_of,
    open_storage,
    pareto_front,
    run_search,
    search,
    structure_evaluator,
    trial_log,
)
from jeq.nas.train import DATASETS, TrainResult, fit, load_dataset, make_optimizer, make_steps, train

__all__ = [
    "DATASETS", "HNAG_SPACE", "METHODS", "RNAG_SPACE", "Architecture", "Cell", "Evaluation", "Graph",
    "HParams", "Network", "Plan", "SearchConfig", "SearchResult", "TrainResult", "TrialSettings", "count_params", "darts_like",
    "evaluate_theta", "fit", "fit_width", "hparams_of", "load_dataset", "make_optimizer", "make_steps", "merge_graph",
    "open_storage",
    "param_count", "pareto_front", "plan", "randwire", "run_search", "sample_architecture", "search",
    "stage_of_nodes", "structure_evaluator", "train", "trial_log",
]
