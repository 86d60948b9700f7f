"""Explicit-MLP baseline on the MNIST-5k split: the reference point every implicit model is compared with.

``python -m experiments.mlp_baseline --quick`` trains a 784-256-10 ReLU MLP with Adam on ``jeq.data.mnist_subset()``
(4000 train / 1000 test) and reports test accuracy (mean ± std over seeds) and seconds per epoch. Spec sanity
number (``specs/data.md``): about 92 % after 10 epochs.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import harness
from jeq import data


@dataclasses.dataclass(frozen=True)
class Config(harness.BaseConfig):
    hidden: int = 256
    """Hidden width."""
    epochs: int = 20
    """Training epochs."""
    batch_size: int = 128
    """Minibatch size."""
    learning_rate: float = 1e-3
    """Adam step size."""


def init_mlp(key: jax.Array, sizes: tuple[int, ...]) -> list[dict[str, jax.Array]]:
    """He-initialised dense layers ``[{w: (d_in, d_out), b: (d_out,)}, ...]``."""
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        {"w": jax.random.normal(k, (a, b)) * jnp.sqrt(2.0 / a), "b": jnp.zeros(b)}
        for k, a, b in zip(keys, sizes[:-1], sizes[1:])
    ]


def mlp_logits(params: list[dict[str, jax.Array]], x: jax.Array) -> jax.Array:
    """``W_L relu(... relu(W_1 x + b_1) ...) + b_L`` for one flattened example."""
    h = x
    for layer in params[:-1]:
        h = jax.nn.relu(h @ layer["w"] + layer["b"])
    return h @ params[-1]["w"] + params[-1]["b"]


def run_seed(config: Config, seed: int, ckpt: harness.Checkpoint) -> dict:
    split = data.mnist_subset()
    x_train, x_test = split.x_train.reshape(len(split.x_train), -1), split.x_test.reshape(len(split.x_test), -1)
    tx = optax.adam(config.learning_rate)

    def loss_fn(params, xb, yb):
        logits = jax.vmap(mlp_logits, (None, 0))(params, xb)
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    @jax.jit
    def train_step(params, opt_state, xb, yb):
        loss, grads = jax.value_and_grad(loss_fn)(params, xb, yb)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    @jax.jit
    def accuracy(params, x, y):
        return jnp.mean(jnp.argmax(jax.vmap(mlp_logits, (None, 0))(params, x), -1) == y)

    state = ckpt.load(default=None)
    if state is None:
        params = init_mlp(jax.random.key(seed), (x_train.shape[1], config.hidden, 10))
        state = {"params": params, "opt_state": tx.init(params), "epoch": 0, "curve": [], "epoch_s": []}
    params, opt_state = state["params"], state["opt_state"]
    for epoch in harness.progress(range(state["epoch"], config.epochs), desc=f"mlp seed {seed}",
                                  initial=state["epoch"], total=config.epochs):
        t0 = time.perf_counter()
        for xb, yb in data.batches(x_train, split.y_train, config.batch_size, seed=seed, epoch=epoch):
            params, opt_state, loss = train_step(params, opt_state, xb, yb)
        if not np.isfinite(float(loss)):
            raise FloatingPointError(f"mlp_baseline: loss became {float(loss)} at epoch {epoch} (seed {seed})")
        state["epoch_s"].append(time.perf_counter() - t0)
        state["curve"].append(float(accuracy(params, x_test, split.y_test)))
        state.update(params=params, opt_state=opt_state, epoch=epoch + 1)
        ckpt.save(state)
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
    return {
        "test_accuracy": state["curve"][-1],
        "seconds_per_epoch": float(np.median(state["epoch_s"][1:] or state["epoch_s"])),
        "parameters": n_params,
        "curve/test_accuracy": state["curve"],
    }


def plot(result: dict, path: pathlib.Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for seed, metrics in result["per_seed"].items():
        curve = metrics["curve/test_accuracy"]
        ax.plot(range(1, len(curve) + 1), curve, label=f"seed {seed}")
    ax.set(xlabel="epoch", ylabel="test accuracy", title="MLP 784-256-10 on MNIST-5k")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> dict:
    return harness.run(
        "mlp_baseline", Config, run_seed, plot=plot, quick=dict(epochs=10, seeds=(0, 1)),
        headline=("test_accuracy", "seconds_per_epoch"), argv=argv,
    )


if __name__ == "__main__":
    main()
