"""Path-SGD on sequential and permuted MNIST (Neyshabur et al., NeurIPS 2016, section 5; task of Le et al. 2015).

``python -m experiments.pathsgd_seqmnist --quick`` feeds MNIST-5k digits (4000 train / 1000 test, embedded in the
package) downsampled to 14x14 pixel by pixel (T = 196) to a 100-unit ReLU RNN and compares Path-SGD, SGD
(Gaussian), SGD (IRNN, Le et al.'s init), SGD (np-RNN) and Adam at the same number of epochs, batch size and clipping, on the plain and the
permuted pixel order. Without ``--quick`` it uses full MNIST at 28x28 (T = 784; needs ``jeq.data.mnist(path)``,
``--data-path`` or ``$JEQ_DATA``). Paper: RNN-Path 96.9 % test accuracy on sequential MNIST (T = 784).

Selection (issue 16): ``validation_size`` training images (a fixed draw; ``--quick``: 500 of the 4000) are held out
as the validation split and every run trains on the rest. Each method's learning rate (the np-RNN SGD baseline's
included) is the best of ``centre * {1/3, 1, 3}`` by the FINAL validation cross-entropy of ``sweep_epochs``-epoch
runs on the first pixel order and the sweep seeds (``--quick``: 1 epoch, seed 100; full: 2 epochs, seeds 100 and
101); the test images are never read by the sweep. The headline is the FINAL test accuracy / loss on the headline
seeds; ``best_val/test_accuracy`` is the test accuracy at the evaluation with the best validation accuracy.

``--quick`` with validation selection (results/pathsgd_seqmnist/20261207T012847Z.json, seed 0, 3500 training
images; FINAL test accuracy sequential / permuted, selected learning rate): Path-SGD 0.222 / 0.196 (0.9), SGD
0.353 / 0.589 (0.09), SGD-IRNN 0.1 / 0.145 (0.033), SGD-np 0.299 / 0.369 (0.09), Adam 0.458 / 0.609 (0.001). The
1-epoch quick sweep barely separates the rates (validation cross-entropy 2.27-2.30 for every SGD and Path-SGD
candidate, ln 10 = 2.303), and four of the five picks sit at an edge of their grid. Before (test-picked rates, all
4000 images, 20261207T000859Z.json): 0.218 / 0.166, 0.315 / 0.46, 0.1 / 0.1, 0.246 / 0.336, 0.424 / 0.657. The IRNN
with Le et al.'s N(0, 0.001^2) input and output weights stays near chance (test loss ln 10) in the 8 quick epochs.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import harness
from .pathsgd_common import RNNMethodsConfig, Task, plot_curves, select_learning_rates, train_methods
from jeq import data, pathsgd


@dataclasses.dataclass(frozen=True)
class Config(RNNMethodsConfig):
    """Sequential / permuted MNIST: epochs over a fixed training set, ``batch_size`` images per step."""

    dataset: Literal["mnist", "mnist5k"] = "mnist"
    """``mnist`` (60k/10k from --data-path or $JEQ_DATA) or ``mnist5k`` (embedded 4000/1000 subset)."""
    data_path: str = ""
    """Folder with the MNIST IDX files for ``--dataset mnist`` (empty: $JEQ_DATA)."""
    image_size: int = 28
    """Images are average-pooled to image_size x image_size (28 or 14); T = image_size^2."""
    variants: tuple[str, ...] = ("sequential", "permuted")
    """Pixel orders: ``sequential`` (row-major) and/or ``permuted`` (one fixed random permutation)."""
    epochs: int = 20
    """Training epochs per method."""
    evals_per_epoch: int = 1
    """Test evaluations per epoch."""
    methods: tuple[str, ...] = ("path_sgd/gaussian", "sgd/gaussian", "sgd/identity", "sgd/np", "adam/gaussian")
    """Path-SGD, the spec's three SGD baselines (Gaussian, IRNN and np-RNN initialisations) and Adam."""
    learning_rates: tuple[float, ...] = (0.3, 0.03, 0.1, 0.03, 0.001)
    """Learning-rate grid centre per method (the grid is ``centre * sweep_factors``, scored on the validation split
    of the first variant; the selected rate serves every variant). The centres are the rates of an earlier
    test-scored 2-epoch sweep on the quick task (seed 0); the selection inside the grid uses validation data only."""
    validation_size: int = 5000
    """Training images held out (a fixed, seed-independent draw) as the validation split: the sweep's score and
    ``best_val/``; every run trains on the rest."""
    sweep_epochs: int = 2
    """Training epochs of each learning-rate sweep run (every method and grid point alike)."""


def downsample(x: np.ndarray, size: int) -> np.ndarray:
    """Average-pool (n, H, W, C) images to (n, size, size, C); H must be a multiple of size."""
    n, h, w, c = x.shape
    if h % size or w % size:
        raise ValueError(f"experiments.pathsgd_seqmnist: image size {h}x{w} is not a multiple of {size}")
    f = h // size
    return x.reshape(n, size, f, size, f, c).mean(axis=(2, 4))


def load(config: Config) -> data.ValidationSplit:
    """The dataset at ``image_size``, with ``validation_size`` training images (drawn with ``default_rng(0)``, the
    same for every seed) held out as the validation split."""
    split = data.mnist_subset() if config.dataset == "mnist5k" else data.mnist(config.data_path or None)
    if config.image_size != split.x_train.shape[1]:
        split = data.Split(downsample(split.x_train, config.image_size), split.y_train,
                           downsample(split.x_test, config.image_size), split.y_test)
    return data.split_validation(split, size=config.validation_size, seed=0)


def cross_entropy(params, xs, label):
    logits = pathsgd.rnn_apply(params, xs, head="many_to_one")
    return optax.softmax_cross_entropy_with_integer_labels(logits, label)


def cross_entropy_and_path_sum(params, squared_params, xs, label):
    """:func:`cross_entropy` and the path sum Gamma(squared_params) from one fused scan (Path-SGD's kappa1)."""
    logits, path_sum = pathsgd.rnn_apply_with_path_sum(params, squared_params, xs, head="many_to_one")
    return optax.softmax_cross_entropy_with_integer_labels(logits, label), path_sum


def correct(params, xs, label):
    return (jnp.argmax(pathsgd.rnn_apply(params, xs, head="many_to_one")) == label).astype(jnp.float32)


EVALUATE_CE, EVALUATE_ACC = pathsgd.make_eval_fn(cross_entropy), pathsgd.make_eval_fn(correct)


@functools.lru_cache(maxsize=None)
def path_sum_for(length: int):
    """Gamma of the many-to-one RNN over ``length`` steps, built once per length (one compiled step per method)."""
    return functools.partial(pathsgd.rnn_path_sum, length=length, head="many_to_one")


def make_task(config: Config, splits: data.ValidationSplit, seed: int, variant: str, *, epochs: int, with_test: bool
              ) -> tuple[Task, jax.Array]:
    """One seed's task on one pixel order: ``(task, init_key)``; batches from the training part only, ``evaluate``
    gives ``val_accuracy`` / ``val_loss`` and, only when ``with_test`` (headline runs), ``test_accuracy`` /
    ``test_loss``."""
    if variant not in ("sequential", "permuted"):
        raise ValueError(f"experiments.pathsgd_seqmnist: variant {variant!r} must be sequential or permuted")
    length = config.image_size**2
    steps_per_epoch = len(splits.x_train) // config.batch_size
    permutation = np.random.default_rng(1000 + seed).permutation(length) if variant == "permuted" else None
    x_train = data.sequential_images(splits.x_train, permutation)
    x_val = data.sequential_images(splits.x_val, permutation)
    x_test = data.sequential_images(splits.x_test, permutation) if with_test else None

    def next_batch(step):
        epoch, i = divmod(step, steps_per_epoch)
        order = np.random.default_rng([seed, epoch]).permutation(len(x_train))
        idx = order[i * config.batch_size:(i + 1) * config.batch_size]
        return x_train[idx], splits.y_train[idx]

    def evaluate(params):
        out = {"val_accuracy": float(EVALUATE_ACC(params, x_val, splits.y_val)),
               "val_loss": float(EVALUATE_CE(params, x_val, splits.y_val))}
        if with_test:
            out.update(test_accuracy=float(EVALUATE_ACC(params, x_test, splits.y_test)),
                       test_loss=float(EVALUATE_CE(params, x_test, splits.y_test)))
        return out

    steps = epochs * steps_per_epoch
    eval_every = max(1, steps_per_epoch // config.evals_per_epoch) if with_test else steps
    task = Task(loss_fn=cross_entropy, fused_loss_fn=cross_entropy_and_path_sum, path_sum=path_sum_for(length),
                evaluate=evaluate, next_batch=next_batch, steps=steps, eval_every=eval_every)
    return task, jax.random.key(seed)


def select(config: Config, splits: data.ValidationSplit, ckpt: harness.Checkpoint) -> tuple[dict[str, float], dict]:
    """Each method's learning rate by the final validation cross-entropy of ``sweep_epochs``-epoch runs on the first
    variant and the sweep seeds (:func:`experiments.pathsgd_common.select_learning_rates`); never reads test data."""
    variant = config.variants[0]

    def sweep_task(seed):
        return make_task(config, splits, seed, variant, epochs=config.sweep_epochs, with_test=False)

    chosen, record = select_learning_rates(config, sweep_task, prefix=variant, metric="val_loss", input_size=1,
                                           output_size=10, ckpt=ckpt)
    record["sweep/variant"] = variant
    return chosen, record


def run_seed(config: Config, seed: int, ckpt: harness.Checkpoint) -> dict:
    state = ckpt.load(default=None) or {"finished": {}, "current": None}
    splits = load(config)
    learning_rates, out = select(config, splits, ckpt)
    for variant in config.variants:
        task, key = make_task(config, splits, seed, variant, epochs=config.epochs, with_test=True)
        out.update({f"{variant}/{m}/learning_rate": eta for m, eta in learning_rates.items()})
        out.update(train_methods(config, task, prefix=variant, key=key, input_size=1, output_size=10, ckpt=ckpt,
                                 state=state, learning_rates=learning_rates))
    return out


def plot(result: dict, path: pathlib.Path) -> None:
    plot_curves(result, path, metric="test_accuracy", ylabel="test accuracy", panels=list(result["config"]["variants"]))


QUICK = dict(dataset="mnist5k", image_size=14, epochs=8, seeds=(0,), validation_size=500, sweep_epochs=1,
             sweep_seeds=(100,))


def main(argv=None):
    return harness.run("pathsgd_seqmnist", Config, run_seed, plot=plot, quick=QUICK, argv=argv,
                       headline=[f"sequential/{m}/final/test_accuracy" for m in Config.methods])


if __name__ == "__main__":
    main()
