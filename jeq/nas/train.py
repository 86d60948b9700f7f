"""Training one HNAG network: SGD with momentum, weight decay and the spec's step schedule, scaled to the budget.

The released trainer (spec ``nago.md`` §4): SGD lr 0.1, momentum 0.9, weight decay 1e-4, ``StepLR(20, 0.5)`` over
120 epochs, batch 128. Here the step size scales with the schedule length ``T`` (the largest budget of the search):
``lr(t) = lr_0 * 0.5^floor(t / (T/6 epochs))``, i.e. StepLR(20, 0.5) at T = 120. A trial trained for fewer
epochs (a low Hyperband rung) follows the same schedule and stops early, as in vega.

One jitted call per minibatch (one compilation per architecture: every batch has the same shape, the last partial
batch of an epoch is dropped); after each epoch, validation accuracy on the held-out part of the training set is
passed to ``callback(epoch, accuracy)``: an optuna objective reports it there and raises ``optuna.TrialPruned`` to
stop. The test set is scored only when asked (``evaluate_test``), never used for selection. ``devices > 1`` splits
each batch over a ``jeq.sharding`` mesh (data parallel; padding weighted 0).
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jeq import sharding, validate
from jeq.data import ValidationSplit
from jeq.nas.generator import Architecture
from jeq.nas.network import Network

__all__ = ["DATASETS", "TrainResult", "fit", "load_dataset", "make_optimizer", "make_steps", "train"]

DATASETS = ("mnist5k", "cifar10")
"""Datasets :func:`load_dataset` knows: MNIST-5k (``jeq.data.mnist_subset``) and CIFAR-10 from a path."""


class TrainResult(NamedTuple):
    """What :func:`train` returns.

    >>> from jeq.nas import TrainResult
    >>> TrainResult._fields
    ('val_accuracy', 'test_accuracy', 'params', 'seconds', 'epochs', 'model')
    """

    val_accuracy: list[float]
    """Validation accuracy after each epoch run."""
    test_accuracy: float | None
    """Test accuracy after the last epoch (None unless ``evaluate_test``)."""
    params: int
    """Trainable parameters of the network."""
    seconds: float
    """Wall time of the whole call (build, compile, train, evaluate)."""
    epochs: int
    """Epochs run (fewer than asked when the callback stopped training)."""
    model: nnx.Module
    """The trained network (eval mode)."""


def _resize(x: np.ndarray, size: int) -> np.ndarray:
    if x.shape[1] == size:
        return x
    out = jax.image.resize(jnp.asarray(x), (x.shape[0], size, size, x.shape[3]), method="linear", antialias=True)
    return np.asarray(out, np.float32)


def load_dataset(name: str, *, image_size: int | None = None, validation: int = 500, path: str | None = None,
                 seed: int = 0) -> ValidationSplit:
    """``name`` in :data:`DATASETS`, resized to ``image_size`` (divisible by 4), with ``validation`` training
    examples held out (``jeq.data.split_validation``: a fixed permutation drawn from ``seed``; the test split is the
    dataset's own).

    ``mnist5k`` is the MNIST-5k split (4000 train / 1000 test, 28 px); ``cifar10`` reads the python batches from
    ``path`` or ``$JEQ_DATA`` (``jeq.data.cifar10``).

    >>> from jeq.nas import load_dataset
    >>> data = load_dataset("mnist5k", image_size=8, validation=500)
    >>> data.x_train.shape, data.x_val.shape, data.x_test.shape, data.name
    ((3500, 8, 8, 1), (500, 8, 8, 1), (1000, 8, 8, 1), 'mnist5k@8')
    """
    where = "jeq.nas.load_dataset"
    validate.one_of(where, "name", name, DATASETS)
    from jeq import data

    split = data.mnist_subset() if name == "mnist5k" else data.cifar10(path)
    size = split.x_train.shape[1] if image_size is None else validate.integer(where, "image_size", image_size,
                                                                               low=4)
    if size % 4:
        validate.fail(where, "image_size", image_size, "must be divisible by 4 (three stages halve it twice)")
    validation = validate.integer(where, "validation", validation, low=1, high=len(split.x_train) - 1)
    resized = data.Split(_resize(split.x_train, size), split.y_train, _resize(split.x_test, size), split.y_test)
    return data.split_validation(resized, size=validation, seed=seed)._replace(name=f"{name}@{size}")


def make_optimizer(*, learning_rate: float = 0.1, momentum: float = 0.9, weight_decay: float = 1e-4,
                   steps_per_epoch: int, schedule_epochs: int) -> optax.GradientTransformation:
    """``v <- mu v + (g + lambda w); w <- w - lr(t) v`` with ``lr(t) = lr_0 0.5^floor(t / (T/6 epochs))``
    (PyTorch SGD with coupled weight decay and StepLR(20, 0.5) at T = 120 epochs).

    >>> import jax.numpy as jnp
    >>> from jeq.nas import make_optimizer
    >>> tx = make_optimizer(learning_rate=0.1, momentum=0.0, weight_decay=0.0, steps_per_epoch=1, schedule_epochs=6)
    >>> state, steps = tx.init(jnp.zeros(1)), []
    >>> for _ in range(3):  # lr halves every T/6 = 1 epoch
    ...     update, state = tx.update(jnp.ones(1), state, jnp.zeros(1))
    ...     steps.append(round(float(update[0]), 4))
    >>> steps
    [-0.1, -0.05, -0.025]
    """
    where = "jeq.nas.make_optimizer"
    learning_rate = validate.positive(where, "learning_rate", learning_rate)
    momentum = validate.real(where, "momentum", momentum, low=0.0, high=1.0, high_open=True)
    weight_decay = validate.nonnegative(where, "weight_decay", weight_decay)
    steps_per_epoch = validate.integer(where, "steps_per_epoch", steps_per_epoch, low=1)
    schedule_epochs = validate.integer(where, "schedule_epochs", schedule_epochs, low=1)
    schedule = optax.exponential_decay(learning_rate, transition_steps=max(1, round(steps_per_epoch *
                                                                                    schedule_epochs / 6)),
                                       decay_rate=0.5, staircase=True)
    return optax.chain(optax.add_decayed_weights(weight_decay), optax.sgd(schedule, momentum=momentum))


def _stack(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, epoch: int):
    order = np.random.default_rng((seed, epoch)).permutation(len(x))
    steps = len(x) // batch_size
    idx = order[: steps * batch_size].reshape(steps, batch_size)
    return x[idx], y[idx]


def _eval_batches(x: np.ndarray, y: np.ndarray, batch_size: int):
    steps = math.ceil(len(x) / batch_size)
    pad = steps * batch_size - len(x)
    w = np.concatenate([np.ones(len(x), np.float32), np.zeros(pad, np.float32)])
    x = np.concatenate([x, np.repeat(x[-1:], pad, 0)])
    y = np.concatenate([y, np.repeat(y[-1:], pad, 0)])
    return x.reshape(steps, batch_size, *x.shape[1:]), y.reshape(steps, batch_size), w.reshape(steps, batch_size)


def train(
    architecture: Architecture,
    data: ValidationSplit,
    *,
    epochs: int,
    width: int,
    head_channels: int | None = None,
    seed: int = 0,
    **kwargs,
) -> TrainResult:
    """Train ``Network(architecture, width)`` (parameters from ``seed``) with :func:`fit`; keyword arguments as
    :func:`fit`.

    >>> import numpy as np
    >>> from jeq.data import ValidationSplit
    >>> from jeq.nas import HParams, count_params, sample_architecture, train
    >>> small = HParams(g1_nodes=3, g1_k=2, g1_p=0.5, g2_nodes=1, g2_p=0.5, g3_nodes=3, g3_k=2, g3_p=0.5)
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.uniform(size=(48, 8, 8, 1)).astype(np.float32), (np.arange(48) % 10).astype(np.int32)
    >>> data = ValidationSplit(x[:32], y[:32], x[32:40], y[32:40], x[40:], y[40:], name="noise@8")
    >>> arch = sample_architecture(small, seed=0)
    >>> train(arch, data, epochs=1, width=0)  # checked before anything is built or trained
    Traceback (most recent call last):
    ...
    jeq.validate.ArgumentError: jeq.nas...(width=0): must be ...

    With a valid width it trains (not run here: :func:`fit`'s example trains the same network)::

        result = train(arch, data, epochs=1, width=1, batch_size=16, evaluate_test=True)
        result.params == count_params(arch, width=1)  # True; result.test_accuracy in [0, 1]
    """
    num_classes = int(max(data.y_train.max(), data.y_test.max())) + 1
    model = Network(architecture, width=width, in_channels=data.x_train.shape[-1], num_classes=num_classes,
                    head_channels=head_channels, rngs=nnx.Rngs(params=seed, dropout=seed + 1))
    return fit(model, data, epochs=epochs, seed=seed, name=architecture.fingerprint()[:8], **kwargs)


def fit(
    model: nnx.Module,
    data: ValidationSplit,
    *,
    epochs: int,
    schedule_epochs: int | None = None,
    batch_size: int = 128,
    learning_rate: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    seed: int = 0,
    callback: Callable[[int, float], None] | None = None,
    evaluate_test: bool = False,
    devices: int = 1,
    progress: bool | None = None,
    name: str = "",
) -> TrainResult:
    """Train any NNX classifier (``model(x) -> logits``, BatchNorm/Dropout switched by ``train()``/``eval()``) for
    ``epochs`` epochs of ``min_w mean CE(f_w(x), y)`` with :func:`make_optimizer` (schedule length
    ``schedule_epochs``, default ``epochs``), minibatches drawn from ``(seed, epoch)``; report validation accuracy.

    ``callback(epoch, val_accuracy)`` runs after every epoch (1-based epoch); an exception raised there (e.g.
    ``optuna.TrialPruned``) propagates. Loss NaN stops training with ``FloatingPointError``.

    >>> from flax import nnx
    >>> from jeq.data import ValidationSplit, digits
    >>> from jeq.nas import fit
    >>> class Linear(nnx.Module):  # any NNX classifier: here softmax regression on 8x8 digits
    ...     def __init__(self, rngs):
    ...         self.dense = nnx.Linear(64, 10, rngs=rngs)
    ...     def __call__(self, x):
    ...         return self.dense(x.reshape(x.shape[0], -1))
    >>> d = digits()
    >>> data = ValidationSplit(d.x_train[:1000], d.y_train[:1000], d.x_train[1000:], d.y_train[1000:], d.x_test,
    ...                        d.y_test, name="digits@8")
    >>> curve = []
    >>> result = fit(Linear(nnx.Rngs(0)), data, epochs=2, batch_size=50, callback=lambda epoch, acc: curve.append(epoch),
    ...              progress=False)
    >>> curve, result.epochs, result.params, result.val_accuracy[-1] > 0.5  # ten classes: chance is 0.1
    ([1, 2], 2, 650, True)
    """
    where = "jeq.nas.fit"
    epochs = validate.integer(where, "epochs", epochs, low=1)
    schedule_epochs = epochs if schedule_epochs is None else validate.integer(where, "schedule_epochs",
                                                                              schedule_epochs, low=1)
    batch_size = validate.integer(where, "batch_size", batch_size, low=1, high=len(data.x_train))
    devices = validate.integer(where, "devices", devices, low=1)
    if batch_size % devices:
        validate.fail(where, "batch_size", batch_size, f"must be divisible by devices={devices}")
    t0 = time.perf_counter()
    steps_per_epoch = len(data.x_train) // batch_size
    tx = make_optimizer(learning_rate=learning_rate, momentum=momentum, weight_decay=weight_decay,
                        steps_per_epoch=steps_per_epoch, schedule_epochs=schedule_epochs)
    model.train()
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    graphdef, state = nnx.split((model, optimizer))
    model.eval()
    eval_def = nnx.graphdef(model)
    step_fn, eval_fn, mesh = make_steps(graphdef, eval_def, devices)
    if mesh is not None:
        state = sharding.replicate(state, mesh)

    def accuracy(x, y):
        correct = 0.0
        for xb, yb, wb in zip(*_eval_batches(x, y, batch_size)):
            args = (xb, yb, wb) if mesh is None else sharding.shard_batch((xb, yb, wb), mesh)[:3]
            correct += float(eval_fn(state[0], *args))
        return correct / len(x)

    curve: list[float] = []
    show = (os.environ.get("JEQ_NO_PROGRESS") != "1") if progress is None else progress
    from tqdm import tqdm

    bar = tqdm(range(1, epochs + 1), desc=f"train {name}", leave=False, disable=not show)
    for epoch in bar:
        xs, ys = _stack(data.x_train, data.y_train, batch_size, seed, epoch)
        ones = np.ones(batch_size, np.float32)
        for xb, yb in zip(xs, ys):
            args = (xb, yb, ones) if mesh is None else sharding.shard_batch((xb, yb), mesh)
            state, loss = step_fn(state, *args)
        loss = float(loss)
        if not np.isfinite(loss):
            raise FloatingPointError(f"jeq.nas.fit: loss became {loss} at epoch {epoch} ({name or 'model'})")
        curve.append(accuracy(data.x_val, data.y_val))
        bar.set_postfix(loss=f"{loss:.3f}", val=f"{curve[-1]:.3f}")
        if callback is not None:
            callback(epoch, curve[-1])
    test = accuracy(data.x_test, data.y_test) if evaluate_test else None
    model, _ = nnx.merge(graphdef, state)
    model.eval()
    params = int(sum(np.prod(v.shape) for v in jax.tree.leaves(nnx.state(model, nnx.Param))))
    return TrainResult(curve, test, params, time.perf_counter() - t0, len(curve), model)


@functools.lru_cache(maxsize=8)
def make_steps(graphdef, eval_def, devices: int = 1):
    """``(train_step, eval_step, mesh)`` for one network structure, jitted (cached: a second ``train`` of the same
    architecture and width reuses the compilation; ``mesh`` is None on one device).

    ``train_step(state, x, y, w) -> (state, loss)`` with ``state = nnx.state((model, optimizer))`` and
    ``graphdef`` from ``nnx.split((model, optimizer))`` (train mode); ``eval_step(model_state, x, y, w)`` counts
    correct predictions with ``eval_def = nnx.graphdef(model)`` in eval mode; ``w`` weights examples (0 = padding).
    One jitted call per minibatch: XLA on CPU runs convolutions inside a ``lax.scan`` an order of magnitude slower
    than straight-line code, so epochs are Python loops.

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from jeq.nas import make_optimizer, make_steps
    >>> model = nnx.Linear(64, 10, rngs=nnx.Rngs(0))  # any NNX classifier (jeq.nas.Network in a search)
    >>> optimizer = nnx.Optimizer(model, make_optimizer(steps_per_epoch=1, schedule_epochs=1), wrt=nnx.Param)
    >>> graphdef, state = nnx.split((model, optimizer))
    >>> train_step, eval_step, mesh = make_steps(graphdef, nnx.graphdef(model))
    >>> x, y, w = jnp.ones((8, 64)), jnp.arange(8) % 10, jnp.ones(8)
    >>> cross_entropy = float(-jax.nn.log_softmax(model(x))[jnp.arange(8), y].mean())
    >>> state, loss = train_step(state, x, y, w)  # the state is donated: use the returned one
    >>> make_steps(graphdef, nnx.graphdef(model))[0] is train_step, mesh is None, loss.shape  # cached per structure
    (True, True, ())
    >>> round(float(loss), 4) == round(cross_entropy, 4)  # the weighted mean cross-entropy before the update
    True
    """

    def train_step(state, x, y, w):
        model, opt = nnx.merge(graphdef, state)

        def loss_fn(model):
            losses = optax.softmax_cross_entropy_with_integer_labels(model(x), y)
            return sharding.weighted_mean(losses, w)

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        opt.update(model, grads)
        return nnx.state((model, opt)), loss

    def eval_step(model_state, x, y, w):
        model = nnx.merge(eval_def, model_state)
        return jnp.sum(w * (jnp.argmax(model(x), -1) == y))

    if devices == 1:
        return jax.jit(train_step, donate_argnums=0), jax.jit(eval_step), None
    mesh = sharding.data_mesh(devices)
    return (sharding.data_parallel(train_step, mesh, batch_argnums=(1, 2, 3)),
            sharding.data_parallel(eval_step, mesh, batch_argnums=(1, 2, 3)), mesh)
