"""Path-SGD for ReLU networks (Neyshabur et al., NIPS 2015; NeurIPS 2016).

- ``rnn``: the ReLU RNN (init: Gaussian, identity/IRNN, np-RNN; many-to-one and many-to-many heads);
- ``mlp``: the ReLU MLP of the feed-forward Path-SGD;
- ``path_norm``: the path regulariser gamma and its curvature terms kappa1, kappa2;
- ``optimizer``: ``path_sgd`` / ``scale_by_path_norm`` as optax transformations;
- ``methods``: Path-SGD and the SGD / Adam baselines with identical clipping (``make_optimizer``);
- ``train``: a pure jitted training step with per-example weights.
"""

from jeq.pathsgd.methods import CLIPS, METHODS, make_optimizer
from jeq.pathsgd.mlp import Dense, init_mlp, mlp_apply
from jeq.pathsgd.optimizer import ScaleByPathNormState, path_sgd, scale_by_path_norm
from jeq.pathsgd.path_norm import (
    Kappa,
    gamma,
    kappa,
    mlp_path_sum,
    path_kappa,
    rnn_apply_with_path_sum,
    rnn_path_sum,
)
from jeq.pathsgd.rnn import HEADS, INITS, IRNN_SCALE, OUTPUT_INITS, RNNParams, init_rnn, rnn_apply
from jeq.pathsgd.train import RNNTrainMetrics, make_eval_fn, make_rnn_train_step

__all__ = [
    "CLIPS",
    "Dense",
    "HEADS",
    "INITS",
    "IRNN_SCALE",
    "Kappa",
    "METHODS",
    "OUTPUT_INITS",
    "RNNParams",
    "RNNTrainMetrics",
    "ScaleByPathNormState",
    "gamma",
    "init_mlp",
    "init_rnn",
    "kappa",
    "make_eval_fn",
    "make_optimizer",
    "make_rnn_train_step",
    "mlp_apply",
    "mlp_path_sum",
    "path_kappa",
    "path_sgd",
    "rnn_apply",
    "rnn_apply_with_path_sum",
    "rnn_path_sum",
    "scale_by_path_norm",
]
