"""Path-SGD for ReLU networks (Neyshabur et al., NIPS 2015; NeurIPS 2016).

- ``rnn``: the ReLU RNN (init: Gaussian, identity/IRNN, np-RNN; many-to-one and many-to-many heads);
- ``mlp``: the ReLU MLP of the feed-forward Path-SGD;
- ``path_norm``: the path regulariser gamma and its curvature terms kappa1, kappa2;
- ``optimizer``: ``path_sgd`` / ``scale_by_path_norm`` as optax transformations;
- ``methods``: Path-SGD and the SGD / Adam baselines with identical clipping (``make_optimizer``);
- ``train``: a pure jitted training step with per-example weights.

Constants: ``METHODS`` the optimisers :func:`make_optimizer` builds (``path_sgd``, ``path_sgd_kappa2``, ``sgd``,
``adam``) and ``CLIPS`` what its ``clip`` may bound (the raw ``gradient`` or the method's ``update``); ``INITS`` the
recurrent initialisations of :func:`init_rnn` (``gaussian``, ``identity`` = IRNN, ``np`` = np-RNN), ``OUTPUT_INITS``
its output-weight draws (``gaussian``, ``equal``) and ``IRNN_SCALE`` = 0.001 the IRNN's input/output weight scale (Le
et al. 2015); ``HEADS`` the output conventions (``many_to_one`` reads y_T, ``many_to_many`` every y_t).

>>> import jax
>>> import numpy as np
>>> import optax
>>> from jeq.data import adding_problem
>>> from jeq.pathsgd import init_rnn, make_optimizer, make_rnn_train_step, rnn_apply, rnn_path_sum
>>> import functools
>>> x, y = adding_problem(jax.random.key(0), 8, 5)
>>> params = init_rnn(jax.random.key(0), input_size=2, hidden_size=3, output_size=1)
>>> tx = make_optimizer("path_sgd", learning_rate=1e-3, max_norm=10.0,
...                     path_sum=functools.partial(rnn_path_sum, length=5))
>>> train_step = make_rnn_train_step(lambda p, xs, t: (rnn_apply(p, xs)[0] - t) ** 2, tx)
>>> opt_state, losses = tx.init(params), []
>>> for _ in range(3):
...     params, opt_state, metrics = train_step(params, opt_state, x, y)
...     losses.append(float(metrics.loss))
>>> bool(losses[-1] < losses[0])
True
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
