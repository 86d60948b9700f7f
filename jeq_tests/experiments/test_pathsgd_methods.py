"""The method strings of the Path-SGD experiments: optimizer/init[+equal], learning rate, momentum."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from experiments.pathsgd_adding import Config
from experiments.pathsgd_common import parse_methods


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


def test_methods_flag_alone_keeps_each_methods_default_rate_and_momentum():
    """``--methods`` without ``--learning-rates``/``--momenta`` looks the per-method defaults up by name."""
    from experiments import harness

    config = harness.parse_config(Config, ["--methods", "sgd/np+equal", "path_sgd/np+equal"])
    assert (config.learning_rates, config.momenta) == ((0.05, 0.02), (0.5, 0.5))
    explicit = harness.parse_config(Config, ["--methods", "sgd/np+equal", "path_sgd/np+equal", "--momenta", "0", "0"])
    assert (explicit.learning_rates, explicit.momenta) == ((0.05, 0.02), (0.0, 0.0))
    assert harness.config_hash(harness.parse_config(Config, [])) == harness.config_hash(Config())  # defaults as is
    with pytest.raises(SystemExit):  # an argparse error naming the missing flag
        harness.parse_config(Config, ["--methods", "adam/np"])
    with pytest.raises(ValueError, match="no default learning rates: pass --learning-rates"):
        Config(methods=("adam/np",))


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


def test_train_methods_starts_every_method_from_the_same_network_and_resumes_finished_runs(tmp_path):
    """One task, two methods: same initial test loss, metrics under <prefix>/<method>/, a rerun trains nothing."""
    import functools

    from experiments import harness
    from experiments.pathsgd_adding import mse_loss, mse_loss_and_path_sum
    from experiments.pathsgd_common import RNNMethodsConfig, Task, train_methods
    from jeq import data, pathsgd

    config = RNNMethodsConfig(hidden=4, batch_size=8, methods=("path_sgd/gaussian", "sgd/gaussian"),
                              learning_rates=(0.1, 0.1))
    x, y = data.adding_problem(jax.random.key(0), 8, 5)
    evaluate_mse = pathsgd.make_eval_fn(mse_loss)
    calls = []

    def next_batch(step):
        calls.append(step)
        return x, y

    task = Task(loss_fn=mse_loss, fused_loss_fn=functools.partial(mse_loss_and_path_sum, path_length=5),
                path_sum=functools.partial(pathsgd.rnn_path_sum, length=5),
                evaluate=lambda p: {"test_mse": float(evaluate_mse(p, x, y))}, next_batch=next_batch, steps=4,
                eval_every=2)
    where = dict(prefix="T5", key=jax.random.key(1), input_size=2, output_size=1)
    ckpt = harness.Checkpoint(tmp_path / "seed.ckpt")
    out = train_methods(config, task, ckpt=ckpt, state={"finished": {}, "current": None}, **where)
    path, sgd = (out[f"T5/{m}/curve/test_mse"] for m in config.methods)
    assert path[0] == sgd[0] and len(path) == len(sgd) == 3  # step 0, 2, 4
    assert path[-1] != sgd[-1] and out["T5/sgd/gaussian/curve/step"] == [0, 2, 4]
    assert calls == [0, 1, 2, 3] * 2
    again = train_methods(config, task, ckpt=ckpt, state=ckpt.load(), **where)
    assert json.dumps(again, sort_keys=True) == json.dumps(out, sort_keys=True)  # as text: NaN == NaN
    assert calls == [0, 1, 2, 3] * 2  # finished runs are read back, not retrained
