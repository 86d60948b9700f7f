"""The method strings of the Path-SGD experiments: optimizer/init[+equal], learning rate, momentum."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from experiments.pathsgd_adding import Config, parse_methods


def test_parse_methods_builds_inits_and_optimizers():
    methods = parse_methods(("path_sgd/np+equal", "sgd/identity"), (0.02, 0.1), (0.5, 0.0))
    path, sgd = methods
    assert (path.optimizer, path.init, path.output_init, path.momentum, path.is_path) == (
        "path_sgd", "np", "equal", 0.5, True)
    assert (sgd.optimizer, sgd.init, sgd.output_init, sgd.momentum, sgd.is_path) == (
        "sgd", "identity", "gaussian", 0.0, False)
    params = path.init_params(jax.random.key(0), input_size=2, hidden_size=4, output_size=1)
    np.testing.assert_allclose(np.abs(params.w_out), 0.5)
    assert parse_methods(("sgd/np",), (0.1,))[0].momentum == 0.0  # no momenta: none anywhere
    config = Config()
    assert len(parse_methods(config.methods, config.learning_rates, config.momenta)) == len(config.methods)


@pytest.mark.parametrize(
    "args,match",
    [
        ((("sgd/np",), (0.1, 0.2)), "1 methods .* but 2 learning rates"),
        ((("sgd/np", "adam/np"), (0.1, 0.2), (0.5,)), "2 methods .* but 1 momenta"),
        ((("sgd/np+wide",), (0.1,)), "'optimizer/init\\+equal'"),
        ((("sgd/np", "sgd/np"), (0.1, 0.2)), "list a method twice"),
    ],
)
def test_parse_methods_rejects_bad_specs(args, match):
    with pytest.raises(ValueError, match=match):
        parse_methods(*args)
