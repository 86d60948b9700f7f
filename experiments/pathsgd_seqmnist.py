"""Path-SGD on sequential and permuted MNIST (Neyshabur et al., NeurIPS 2016, section 5; task of Le et al. 2015).

``python -m experiments.pathsgd_seqmnist --quick`` feeds MNIST-5k digits (4000 train / 1000 test, embedded in the
package) downsampled to 14x14 pixel by pixel (T = 196) to a 100-unit ReLU RNN and compares Path-SGD, SGD
(Gaussian), SGD (IRNN, Le et al.'s init), SGD (np-RNN) and Adam at the same number of epochs, batch size and clipping, on the plain and the
permuted pixel order. Without ``--quick`` it uses full MNIST at 28x28 (T = 784; needs ``jeq.data.mnist(path)``,
``--data-path`` or ``$JEQ_DATA``). Paper: RNN-Path 96.9 % test accuracy on sequential MNIST (T = 784).

``--quick`` (results/pathsgd_seqmnist/20261206T235111Z.json, seed 0, final test accuracy sequential / permuted):
Path-SGD 0.218 / 0.166, SGD 0.315 / 0.46, SGD-IRNN 0.1 / 0.1, SGD-np 0.246 / 0.336, Adam 0.424 / 0.657. The IRNN
with Le et al.'s N(0, 0.001^2) input and output weights stays at chance (test loss ln 10) in the 8 quick epochs, and
at lr 0.3 and 1 too (2 epochs); with the earlier N(0, 1/D), N(0, 1/H) draw it reached 0.196 / 0.437.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import harness
from .pathsgd_common import RNNMethodsConfig, Task, plot_curves, train_methods
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
    """One learning rate per method (best of a 2-epoch sweep on the quick task, seed 0: path-SGD {0.1, 0.3, 1, 3},
    SGD {0.01, 0.03, 0.1}, Adam {3e-4, 1e-3, 3e-3}; SGD from the np-RNN init {0.01, 0.03, 0.1, 0.3}: test accuracy
    0.162, 0.229, 0.217, 0.116, sequential order only)."""


def downsample(x: np.ndarray, size: int) -> np.ndarray:
    """Average-pool (n, H, W, C) images to (n, size, size, C); H must be a multiple of size."""
    n, h, w, c = x.shape
    if h % size or w % size:
        raise ValueError(f"experiments.pathsgd_seqmnist: image size {h}x{w} is not a multiple of {size}")
    f = h // size
    return x.reshape(n, size, f, size, f, c).mean(axis=(2, 4))


def load(config: Config) -> data.Split:
    split = data.mnist_subset() if config.dataset == "mnist5k" else data.mnist(config.data_path or None)
    if config.image_size != split.x_train.shape[1]:
        split = data.Split(downsample(split.x_train, config.image_size), split.y_train,
                           downsample(split.x_test, config.image_size), split.y_test)
    return split


def cross_entropy(params, xs, label):
    logits = pathsgd.rnn_apply(params, xs, head="many_to_one")
    return optax.softmax_cross_entropy_with_integer_labels(logits, label)


def cross_entropy_and_path_sum(params, squared_params, xs, label):
    """:func:`cross_entropy` and the path sum Gamma(squared_params) from one fused scan (Path-SGD's kappa1)."""
    logits, path_sum = pathsgd.rnn_apply_with_path_sum(params, squared_params, xs, head="many_to_one")
    return optax.softmax_cross_entropy_with_integer_labels(logits, label), path_sum


def correct(params, xs, label):
    return (jnp.argmax(pathsgd.rnn_apply(params, xs, head="many_to_one")) == label).astype(jnp.float32)


def run_seed(config: Config, seed: int, ckpt: harness.Checkpoint) -> dict:
    state = ckpt.load(default=None) or {"finished": {}, "current": None}
    split = load(config)
    length = config.image_size**2
    steps_per_epoch = len(split.x_train) // config.batch_size
    steps = config.epochs * steps_per_epoch
    eval_every = max(1, steps_per_epoch // config.evals_per_epoch)
    evaluate_ce, evaluate_acc = pathsgd.make_eval_fn(cross_entropy), pathsgd.make_eval_fn(correct)
    path_sum = functools.partial(pathsgd.rnn_path_sum, length=length, head="many_to_one")
    out: dict[str, Any] = {}
    for variant in config.variants:
        if variant not in ("sequential", "permuted"):
            raise ValueError(f"experiments.pathsgd_seqmnist: variant {variant!r} must be sequential or permuted")
        permutation = np.random.default_rng(1000 + seed).permutation(length) if variant == "permuted" else None
        x_train = data.sequential_images(split.x_train, permutation)
        x_test = data.sequential_images(split.x_test, permutation)

        def next_batch(step, x_train=x_train):
            epoch, i = divmod(step, steps_per_epoch)
            order = np.random.default_rng([seed, epoch]).permutation(len(x_train))
            idx = order[i * config.batch_size:(i + 1) * config.batch_size]
            return x_train[idx], split.y_train[idx]

        def evaluate(params, x_test=x_test):
            return {"test_accuracy": float(evaluate_acc(params, x_test, split.y_test)),
                    "test_loss": float(evaluate_ce(params, x_test, split.y_test))}

        task = Task(loss_fn=cross_entropy, fused_loss_fn=cross_entropy_and_path_sum, path_sum=path_sum,
                    evaluate=evaluate, next_batch=next_batch, steps=steps, eval_every=eval_every)
        out.update(train_methods(config, task, prefix=variant, key=jax.random.key(seed), input_size=1,
                                 output_size=10, ckpt=ckpt, state=state))
    return out


def plot(result: dict, path: pathlib.Path) -> None:
    plot_curves(result, path, metric="test_accuracy", ylabel="test accuracy", panels=list(result["config"]["variants"]))


QUICK = dict(dataset="mnist5k", image_size=14, epochs=8, seeds=(0,))


def main(argv=None):
    return harness.run("pathsgd_seqmnist", Config, run_seed, plot=plot, quick=QUICK, argv=argv,
                       headline=[f"sequential/{m}/final/test_accuracy" for m in Config.methods])


if __name__ == "__main__":
    main()
