"""The Path-SGD experiments compare the spec's baselines (section 10): SGD from the Gaussian, IRNN and np-RNN
initialisations, with the same clipping as Path-SGD, on every task; the clip option reaches every method."""

from __future__ import annotations

import functools

import jax
import optax
import pytest

from experiments import pathsgd_adding, pathsgd_charlm, pathsgd_seqmnist
from experiments.pathsgd_common import parse_methods
from jeq import pathsgd

SPEC_BASELINES = {"sgd/gaussian", "sgd/identity", "sgd/np"}


@pytest.mark.parametrize("module", [pathsgd_adding, pathsgd_seqmnist, pathsgd_charlm], ids=lambda m: m.__name__)
def test_every_task_runs_path_sgd_and_the_three_sgd_baselines(module):
    config = module.Config()
    assert SPEC_BASELINES <= set(config.methods), config.methods
    assert any(m.startswith("path_sgd/") for m in config.methods)
    methods = parse_methods(config.methods, config.learning_rates, config.momenta)
    assert [m.name for m in methods] == list(config.methods)
    assert config.clip == "gradient"  # the published runs clip the raw gradient, identically for every method


def test_the_clip_option_reaches_the_path_methods_optimizer():
    """``--clip update`` bounds Path-SGD's scaled step in the path-norm metric; ``gradient`` bounds the raw one."""
    path_sum = functools.partial(pathsgd.rnn_path_sum, length=3, head="many_to_one")
    method = parse_methods(("path_sgd/gaussian",), (1.0,))[0]
    params = method.init_params(jax.random.key(0), input_size=2, hidden_size=4, output_size=1)
    grads = jax.tree_util.tree_map(lambda p: 100.0 * jax.numpy.ones_like(p), params)
    kappa1 = pathsgd.path_kappa(path_sum, params).kappa1
    for clip in pathsgd.CLIPS:
        tx = method.make_optimizer(max_norm=0.1, path_sum=path_sum, clip=clip)
        updates, _ = tx.update(grads, tx.init(params), params)
        if clip == "update":
            norm = jax.numpy.sqrt(sum(jax.numpy.sum((k + 1e-8) * u * u)
                                      for k, u in zip(jax.tree_util.tree_leaves(kappa1),
                                                      jax.tree_util.tree_leaves(updates))))
        else:
            norm = optax.tree.norm(jax.tree_util.tree_map(lambda u, k: u * (k + 1e-8), updates, kappa1))
        assert abs(float(norm) - 0.1) < 1e-4, clip
