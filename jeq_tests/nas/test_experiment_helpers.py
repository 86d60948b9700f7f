"""The NAGO experiment's own pieces: the LeNet reference's parameter count and the best-so-far curve."""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from experiments.nago_search import QUICK, LeNet, best_so_far, lenet_params


def test_lenet_parameter_formula_matches_the_module():
    for c in (3, 8):
        model = nnx.eval_shape(lambda c=c: LeNet(c, image_size=16, in_channels=1, num_classes=10, rngs=nnx.Rngs(0)))
        leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
        assert lenet_params(c, 16, 1, 10) == sum(int(np.prod(x.shape)) for x in leaves)


def test_best_so_far_counts_every_epoch_and_only_full_budget_trials_set_the_incumbent():
    trials = [
        {"state": "PRUNED", "epochs": 1, "accuracy": 0.9, "complete": "1"},
        {"state": "COMPLETE", "epochs": 4, "accuracy": 0.5, "complete": "2"},
        {"state": "FAIL", "epochs": 2, "accuracy": None, "complete": "3"},
        {"state": "PRUNED", "epochs": 2, "accuracy": 0.95, "complete": "4"},
        {"state": "COMPLETE", "epochs": 4, "accuracy": 0.7, "complete": "5"},
        {"state": "COMPLETE", "epochs": 4, "accuracy": 0.6, "complete": "6"},
    ]
    xs, ys = best_so_far(trials)
    assert xs == [1, 5, 7, 11, 15]
    assert np.isnan(ys[0]) and ys[1:] == [0.5, 0.5, 0.7, 0.7]


def test_quick_mode_is_mnist_at_16_px_with_hyperband_eta_2_budgets():
    assert QUICK["dataset"] == "mnist5k" and QUICK["image_size"] % 4 == 0
    assert QUICK["max_epochs"] == QUICK["min_epochs"] * 2 ** 2  # three rungs 1 -> 2 -> 4 with eta = 2
