"""The Path-SGD experiments pick every learning rate on validation data (issue 16): the sweep never reads test data,
runs on seeds disjoint from the headline seeds, gives every method the same grid size and seeds, and the results
report the FINAL test value with the best-on-validation value beside it."""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib

import jax
import numpy as np
import pytest

from experiments import harness, pathsgd_adding, pathsgd_charlm, pathsgd_seqmnist
from experiments.pathsgd_common import check_sweep, compiled_train_step, parse_methods
from jeq import data, pathsgd, sharding

TINY = dict(hidden=4, sweep_seeds=(100,), seeds=(0,), methods=("path_sgd/gaussian", "sgd/gaussian"))


def adding_config(**kw):
    return pathsgd_adding.Config(**{**TINY, "seeds": (3,), "lengths": (6,), "batch_size": 8, "steps": 4,
                                    "eval_every": 2, "test_size": 16, "validation_size": 16, "sweep_steps": 4,
                                    "learning_rates": (0.3, 0.1), "momenta": (), **kw})


def seqmnist_config(**kw):
    return pathsgd_seqmnist.Config(**{**TINY, "dataset": "mnist5k", "image_size": 7, "batch_size": 700,
                                      "epochs": 1, "validation_size": 500, "sweep_epochs": 1,
                                      "variants": ("sequential",), "learning_rates": (0.3, 0.03), **kw})


def charlm_config(**kw):
    return pathsgd_charlm.Config(**{**TINY, "window": 5, "batch_size": 8, "steps": 4, "eval_every": 2,
                                    "test_chars": 200, "val_chars": 200, "sweep_steps": 4,
                                    "learning_rates": (1000.0, 1.0), **kw})


def sweep_adding(tmp, noise_test: bool, monkeypatch):
    calls = []

    def test_set(key, size, length):
        calls.append(size)
        rng = np.random.default_rng(7)
        return rng.normal(size=(size, length, 2)).astype(np.float32), rng.normal(size=size).astype(np.float32)

    if noise_test:
        monkeypatch.setattr(pathsgd_adding, "test_set", test_set)
    _, record = pathsgd_adding.select(adding_config(), 6, harness.Checkpoint(tmp / "seed_3.ckpt"))
    assert calls == []  # the sweep never even builds a test set
    return record


def sweep_seqmnist(tmp, noise_test: bool, monkeypatch):
    config = seqmnist_config()
    splits = pathsgd_seqmnist.load(config)
    if noise_test:
        rng = np.random.default_rng(7)
        splits = splits._replace(x_test=rng.uniform(size=splits.x_test.shape).astype(np.float32),
                                 y_test=rng.integers(0, 10, len(splits.y_test)).astype(np.int32))
    return pathsgd_seqmnist.select(config, splits, harness.Checkpoint(tmp / "seed_0.ckpt"))[1]


def sweep_charlm(tmp, noise_test: bool, monkeypatch):
    corpus = data.char_corpus()
    if noise_test:
        corpus = corpus._replace(test=np.random.default_rng(7).integers(0, 80, len(corpus.test)).astype(np.int32))
    return pathsgd_charlm.select(charlm_config(), corpus, harness.Checkpoint(tmp / "seed_0.ckpt"))[1]


@pytest.mark.parametrize("sweep", [sweep_adding, sweep_seqmnist, sweep_charlm], ids=lambda f: f.__name__)
def test_the_learning_rate_selection_is_unchanged_when_the_test_data_are_noise(sweep, tmp_path, monkeypatch):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    clean = sweep(tmp_path / "a", False, monkeypatch)
    noisy = sweep(tmp_path / "b", True, monkeypatch)
    assert json.dumps(clean, sort_keys=True) == json.dumps(noisy, sort_keys=True)
    prefix = next(k.split("/")[0] for k in clean if k.endswith("/sweep/seeds"))
    metric = clean[f"{prefix}/sweep/metric"]
    assert metric.startswith("val_") and clean[f"{prefix}/sweep/seeds"] == [100]
    sizes = set()
    for method in TINY["methods"]:
        grid = clean[f"{prefix}/{method}/sweep/learning_rates"]
        scores = np.asarray(clean[f"{prefix}/{method}/sweep/{metric}"])
        sizes.add((len(grid), len(clean[f"{prefix}/{method}/sweep/{metric}_per_seed"])))
        ranked = np.where(np.isfinite(scores), scores, np.inf)
        assert clean[f"{prefix}/{method}/learning_rate"] == grid[int(np.argmin(ranked))]
    assert sizes == {(3, 1)}  # the same grid size and sweep seeds for Path-SGD and SGD


@pytest.mark.parametrize("make", [adding_config, seqmnist_config, charlm_config], ids=lambda f: f.__name__)
def test_sweep_seeds_that_overlap_the_headline_seeds_are_refused(make):
    config = make()
    check_sweep(config, "test")
    with pytest.raises(ValueError, match="share .* with the headline seeds"):
        check_sweep(dataclasses.replace(config, sweep_seeds=(config.seeds[0], 100)), "test")
    check_sweep(dataclasses.replace(config, sweep_factors=(1.0,), sweep_seeds=config.seeds), "test")  # no sweep


@pytest.mark.parametrize("module", [pathsgd_adding, pathsgd_seqmnist, pathsgd_charlm], ids=lambda m: m.__name__)
def test_default_and_quick_configurations_sweep_on_seeds_the_headline_never_uses(module):
    for config in (module.Config(), dataclasses.replace(module.Config(), **module.QUICK)):
        check_sweep(config, module.__name__)
        assert len(config.sweep_factors) > 1 and not set(config.sweep_seeds) & set(config.seeds)


def test_seqmnist_validation_images_are_carved_from_the_training_set_only():
    config = seqmnist_config()
    splits = pathsgd_seqmnist.load(config)
    full = data.mnist_subset()
    assert len(splits.x_val) == 500 and len(splits.x_train) + len(splits.x_val) == len(full.x_train)
    assert len(splits.x_test) == len(full.x_test)
    train_rows = {row.tobytes() for row in splits.x_train.reshape(len(splits.x_train), -1)}
    assert not any(row.tobytes() in train_rows for row in splits.x_val.reshape(len(splits.x_val), -1))


def test_adding_results_report_final_test_mse_best_on_validation_solved_and_the_sweep(tmp_path):
    config = dataclasses.replace(adding_config(), out=str(tmp_path), allow_dirty=True)
    result = harness.run("pathsgd_adding", pathsgd_adding.Config, pathsgd_adding.run_seed, config=config,
                         headline=["T6/path_sgd/gaussian/final/test_mse"])
    stored = json.loads(pathlib.Path(result["json_path"]).read_text())
    seed = stored["per_seed"]["3"]
    for method in config.methods:
        p = f"T6/{method}"
        for key in ("final/test_mse", "best_val/test_mse", "best_val/step", "final/val_mse", "solved",
                    "learning_rate"):
            assert f"{p}/{key}" in stored["metrics"], key
        assert f"{p}/best/test_mse" not in seed  # nothing is selected by its test value
        assert seed[f"{p}/learning_rate"] in seed[f"{p}/sweep/learning_rates"]
        val, test, steps = (seed[f"{p}/curve/{k}"] for k in ("val_mse", "test_mse", "step"))
        i = int(np.nanargmin(val))
        assert seed[f"{p}/best_val/test_mse"] == test[i] and seed[f"{p}/best_val/step"] == steps[i]
        assert seed[f"{p}/final/test_mse"] == test[-1] or seed[f"{p}/diverged"]
        assert val[0] != test[0]  # validation sequences come from their own key stream
    assert seed["T6/sweep/seeds"] == [100] and seed["T6/sweep/metric"] == "val_mse"
    assert stored["headline"] == ["T6/path_sgd/gaussian/final/test_mse"]


def test_one_compiled_step_serves_every_learning_rate_with_the_updates_of_make_optimizer():
    """eta lives in the optimizer state: the same step object for any eta and init, and bit-identical updates."""
    task, _ = pathsgd_adding.make_task(adding_config(), 100, 6, steps=2, eval_every=2, with_test=False)
    x, y = task.next_batch(0)
    steps = set()
    for name, eta, momentum in [("path_sgd/np+equal", 0.02, 0.5), ("path_sgd/np+equal", 0.06, 0.5),
                                ("sgd/gaussian", 0.1, 0.0), ("sgd/np", 0.3, 0.0)]:
        method = parse_methods((name,), (eta,), (momentum,))[0]
        step, optimizer = compiled_train_step(task, method, max_norm=1.0, clip="gradient")
        steps.add((method.optimizer, id(step)))
        params = method.init_params(jax.random.key(0), input_size=2, hidden_size=4, output_size=1)
        reference = pathsgd.make_optimizer(method.optimizer, learning_rate=eta, max_norm=1.0, path_sum=task.path_sum,
                                           momentum=momentum)
        fused = method.is_path
        ref_step = pathsgd.make_rnn_train_step(task.fused_loss_fn if fused else task.loss_fn, reference,
                                               fused_path_sum=fused)
        a, sa, b, sb = params, optimizer.init(params), params, reference.init(params)
        for _ in range(3):
            a, sa, _ = step(a, sa, *sharding.shard_batch((x, y), sharding.data_mesh(1)))
            b, sb, _ = ref_step(b, sb, x, y)
        for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
            np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    assert len(steps) == 2  # one step for Path-SGD (both rates), one for SGD (both inits and rates)


def test_best_on_validation_is_the_test_value_at_the_first_validation_metrics_best_point(tmp_path):
    """Early stopping on val_accuracy picks the second evaluation: both test metrics are read there, never at their
    own best (the third evaluation has the best test values and the best val_loss)."""
    from experiments.pathsgd_common import Task, train_method

    evaluations = iter([{"val_accuracy": 0.1, "val_loss": 2.0, "test_accuracy": 0.2, "test_loss": 2.1},
                        {"val_accuracy": 0.5, "val_loss": 1.5, "test_accuracy": 0.3, "test_loss": 1.4},
                        {"val_accuracy": 0.4, "val_loss": 1.0, "test_accuracy": 0.9, "test_loss": 0.9}])
    method = parse_methods(("sgd/gaussian",), (0.1,))[0]
    params = method.init_params(jax.random.key(0), input_size=2, hidden_size=4, output_size=1)
    x, y = data.adding_problem(jax.random.key(0), 8, 3)
    task = Task(loss_fn=pathsgd_adding.mse_loss, fused_loss_fn=None,
                path_sum=functools.partial(pathsgd.rnn_path_sum, length=3), evaluate=lambda p: next(evaluations),
                next_batch=lambda s: (x, y), steps=4, eval_every=2)
    out = train_method(task, run_name="r", params=params, optimizer=method.make_optimizer(
        max_norm=1.0, path_sum=task.path_sum), fused=False, ckpt=harness.Checkpoint(tmp_path / "c.ckpt"),
        state={"finished": {}, "current": None})
    assert out["best_val/step"] == 2
    assert (out["best_val/test_accuracy"], out["best_val/test_loss"]) == (0.3, 1.4)
    assert (out["final/test_accuracy"], out["best/val_accuracy"], out["best/val_loss"]) == (0.9, 0.5, 1.0)
    assert not any(k.startswith("best/test") for k in out)
