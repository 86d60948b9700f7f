"""OptEq vs deep OptEq vs MON vs plain DEQ vs an explicit MLP at equal parameter count (Xie et al., TPAMI 2023).

``python -m experiments.opteq_table --quick`` trains every model on the MNIST-5k split (4000 train / 1000 test,
``jeq.data.mnist_subset()``) with the same optimiser and budget, and reports test accuracy (mean ± std over seeds),
mean forward solver iterations and seconds per epoch. The parameter budget is MON's (87 hidden units: 84,313
parameters); every other model takes the largest width that does not exceed it, except ``opteq_small`` which has
MON's width (87) and hence fewer parameters, to test the paper's claim "OptEq outperforms previous implicit models
even with fewer parameters" (stated for CIFAR-10; here at MNIST scale). All counts are printed and stored.

Ablations (spec opteq.md section 6):
  (i)  l1 prior weight lambda (activation relu(v - lambda), the prox of lambda |z| + indicator): sparsity of z*
       (fraction of exact zeros on the test set) and test accuracy;
  (ii) Halpern (anchor 0) vs Picard: norm of the selected equilibrium, on a layer whose fixed-point set is not a
       singleton (||W||_2 = 1, W^T W a projection P, c in range(I - P)) from several starts, and on the trained OptEq
       with its W rescaled to ||W||_2 = 1.

Without ``--quick`` it runs the paper-scale configuration on full MNIST (``--dataset mnist``, files from
``--data_path`` or ``$JEQ_DATA``), Fashion-MNIST or CIFAR-10 (``--architecture conv``: OptEq-conv vs MON single
conv, 81 channels, 172,218 parameters).
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import harness
from jeq import data
from jeq import equilibrium as eq
from jeq import fixedpoint as fp
from jeq import bench, prox, sharding

DENSE_MODELS = ("opteq", "opteq_small", "deep_opteq", "mon", "deq", "mlp")
CONV_MODELS = ("opteq_conv", "mon_conv")


@dataclasses.dataclass(frozen=True)
class Config(harness.BaseConfig):
    dataset: str = "mnist"
    """mnist5k (embedded, 4000/1000), mnist, fashion_mnist or cifar10 (full sets from --data_path / $JEQ_DATA)."""
    data_path: str = ""
    """Folder with the full dataset files ('' = the loader's defaults, e.g. $JEQ_DATA)."""
    architecture: str = "dense"
    """dense (flattened images) or conv (single-convolution OptEq vs MON)."""
    models: tuple[str, ...] = ()
    """Subset of the models to train (empty = all of the architecture's)."""
    epochs: int = 40
    """Training epochs per model (MON's schedule: 40 epochs, no augmentation)."""
    batch_size: int = 128
    """Minibatch size (MON: 128)."""
    learning_rate: float = 1e-3
    """Adam peak step size, cosine-decayed to 0 over the run."""
    mon_width: int | None = None
    """MON hidden units (dense) or channels (conv): its parameter count is the budget for all models. Default: the
    official models', 87 hidden units (84,313 parameters) dense and 81 channels (172,218 parameters) conv."""
    tol: float = 1e-3
    """Forward tolerance of OptEq / deep OptEq / DEQ (absolute; MON uses its relative 1e-2)."""
    l1_weights: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2)
    """Ablation (i): l1 prior weights lambda."""
    ablation_epochs: int = 20
    """Ablation (i): training epochs per lambda."""
    halpern_starts: int = 8
    """Ablation (ii): random starts per solver."""
    eval_batch: int = 1000
    """Examples per evaluation call."""


# ----------------------------------------------------------------------------------------------------- models
def _mlp(features: int, hidden: int, classes: int):
    """An explicit one-hidden-layer ReLU MLP with the equilibrium models' ``init``/``apply`` interface."""

    def init(key):
        k1, k2 = jax.random.split(key)
        return {
            "w1": jax.random.normal(k1, (hidden, features)) * np.sqrt(2.0 / features), "b1": jnp.zeros(hidden),
            "w2": jax.random.normal(k2, (classes, hidden)) / np.sqrt(hidden), "b2": jnp.zeros(classes),
        }

    def apply(params, x, *, key=None):
        logits = params["w2"] @ jax.nn.relu(params["w1"] @ x + params["b1"]) + params["b2"]
        stats = fp.Stats(jnp.zeros((), jnp.int32), jnp.zeros(()), jnp.zeros(()), jnp.ones((), bool))
        return eq.Output(logits, stats, jnp.zeros(()))

    return init, apply


@functools.lru_cache(maxsize=None)
def _build(config: Config, name: str, width: int, features: int, image_shape, in_channels: int, classes: int):
    """(init, apply) of one model, cached so that every seed uses the same functions (and compiled steps)."""
    return builders(config, features, image_shape, in_channels, classes)[name](width)


def builders(config: Config, features: int, image_shape, in_channels: int, classes: int) -> dict[str, Callable]:
    """Model name -> ``build(width) -> (init, apply)`` for every model of ``config.architecture``.

    ``features``: flattened input size (dense); ``image_shape``, ``in_channels``: one image (conv); ``classes``:
    outputs. ``width`` is the hidden size (dense; deep OptEq: (width, width // 2)) or the channels (conv).
    """
    tol = config.tol
    if config.architecture == "dense":
        def pack(model):
            return model.init, model.apply

        return {
            "opteq": lambda w: pack(eq.opteq(features=features, hidden=w, classes=classes, tol=tol)),
            "opteq_small": lambda w: pack(eq.opteq(features=features, hidden=w, classes=classes, tol=tol)),
            "deep_opteq": lambda w: pack(eq.deep_opteq(features=features, hidden=(w, max(w // 2, 1)),
                                                       classes=classes, tol=tol)),
            "mon": lambda w: pack(eq.mon(features=features, hidden=w, classes=classes)),
            "deq": lambda w: pack(eq.deq(features=features, hidden=w, classes=classes, tol=tol)),
            "mlp": lambda w: _mlp(features, w, classes),
        }
    conv_kw = dict(image_shape=image_shape, in_channels=in_channels, classes=classes)
    return {
        "opteq_conv": lambda w: (lambda m: (m.init, m.apply))(eq.opteq_conv(channels=w, tol=tol, **conv_kw)),
        "mon_conv": lambda w: (lambda m: (m.init, m.apply))(eq.mon_conv(channels=w, **conv_kw)),
    }


def _count(init) -> int:
    return eq.parameter_count(jax.eval_shape(init, jax.random.key(0)))


def _matched_width(build, budget: int, upper: int) -> int:
    """The largest width whose parameter count does not exceed the budget (counts grow with the width)."""
    lo, hi = 1, upper
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _count(build(mid)[0]) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def mon_width(config: Config) -> int:
    """MON's width: ``--mon_width`` or the official model's (87 hidden units dense, 81 channels conv)."""
    if config.mon_width is not None:
        return config.mon_width
    return 87 if config.architecture == "dense" else 81


def widths_and_counts(config: Config, builders: dict[str, Callable]) -> dict[str, tuple[int, int]]:
    mon_name = "mon" if config.architecture == "dense" else "mon_conv"
    base = mon_width(config)
    budget = _count(builders[mon_name](base)[0])
    out = {}
    for name, build in builders.items():
        if name in (mon_name, "opteq_small"):
            width = base
        else:
            width = _matched_width(build, budget, 4 * base)
        out[name] = (width, _count(build(width)[0]))
    return out


# ------------------------------------------------------------------------------------------------------- data
def load(config: Config):
    path = config.data_path or None
    loaders = {
        "mnist5k": lambda: data.mnist_subset(), "mnist": lambda: data.mnist(path),
        "fashion_mnist": lambda: data.fashion_mnist(path), "cifar10": lambda: data.cifar10(path),
    }
    if config.dataset not in loaders:
        raise ValueError(f"opteq_table: dataset={config.dataset!r}; allowed: {sorted(loaders)}")
    if config.architecture not in ("dense", "conv"):
        raise ValueError(f"opteq_table: architecture={config.architecture!r}; allowed: dense, conv")
    split = loaders[config.dataset]()
    if config.architecture == "dense":
        flat = lambda x: x.reshape(len(x), -1)  # noqa: E731
        return split._replace(x_train=flat(split.x_train), x_test=flat(split.x_test))
    return split


def evaluate(evaluate_fn, params, x, y, batch: int, devices: int = 1) -> dict:
    sums = None
    for start in range(0, len(x), batch):
        xb, yb, wb = sharding.shard_batch((x[start:start + batch], y[start:start + batch]), _mesh(devices))
        out = evaluate_fn(params, xb, yb, wb)
        sums = out if sums is None else jax.tree.map(lambda a, b: a + b, sums, out)
    count = float(sums.count)
    return {"accuracy": float(sums.correct) / count, "steps": float(sums.steps) / count,
            "converged": float(sums.converged) / count, "loss": float(sums.loss) / count}


_STEPS: dict = {}


@functools.lru_cache(maxsize=None)
def _mesh(devices: int) -> jax.sharding.Mesh:
    return sharding.data_mesh(devices)


def _steps(apply, learning_rate: float, total_steps: int, devices: int = 1):
    """Jitted (optimizer, train_step, eval_step), cached so that later seeds reuse the compiled steps.

    Both steps run data-parallel over ``devices`` (1 by default: the plain jitted step): parameters replicated,
    batch split over the mesh, padding weighted out, gradient reductions inserted by XLA."""
    key = (apply, learning_rate, total_steps, devices)
    if key not in _STEPS:
        optimizer = optax.adam(optax.cosine_decay_schedule(learning_rate, max(total_steps, 1)))
        mesh = _mesh(devices)
        _STEPS[key] = (
            optimizer,
            sharding.data_parallel(eq.make_train_step(apply, optimizer), mesh, batch_argnums=(2, 3, 4)),
            sharding.data_parallel(eq.make_eval_step(apply), mesh, batch_argnums=(1, 2, 3)),
        )
    return _STEPS[key]


def train(config, seed, name, init, apply, split, epochs, ckpt_state, save, *, desc) -> dict:
    """Train one model with Adam + cosine decay, resuming from ``ckpt_state[name]``; returns its metrics."""
    steps_per_epoch = len(split.x_train) // config.batch_size
    optimizer, train_step, eval_step = _steps(apply, config.learning_rate, epochs * steps_per_epoch, config.devices)
    mesh = _mesh(config.devices)
    state = ckpt_state.get(name)
    if state is None:
        params = init(jax.random.key(seed))
        state = {"params": params, "opt_state": optimizer.init(params), "epoch": 0, "curve": [], "epoch_s": [],
                 "steps": []}
    params, opt_state = sharding.replicate((state["params"], state["opt_state"]), mesh)
    for epoch in harness.progress(range(state["epoch"], epochs), desc=desc, initial=state["epoch"], total=epochs):
        t0 = time.perf_counter()
        for batch in data.batches(split.x_train, split.y_train, config.batch_size, seed=seed, epoch=epoch):
            params, opt_state, metrics = train_step(params, opt_state, *sharding.shard_batch(batch, mesh))
        jax.block_until_ready(params)
        if not np.isfinite(float(metrics.loss)):
            raise FloatingPointError(f"opteq_table: {name} loss became {float(metrics.loss)} at epoch {epoch} "
                                     f"(seed {seed})")
        state["epoch_s"].append(time.perf_counter() - t0)
        result = evaluate(eval_step, params, split.x_test, split.y_test, config.eval_batch, config.devices)
        state["curve"].append(result["accuracy"])
        state["steps"].append(result["steps"])
        state.update(params=params, opt_state=opt_state, epoch=epoch + 1)
        ckpt_state[name] = state
        save()
    final = evaluate(eval_step, params, split.x_test, split.y_test, config.eval_batch, config.devices)
    return {"params": params, "test_accuracy": final["accuracy"], "mean_steps": final["steps"],
            "converged": final["converged"],
            # the first epoch includes compilation
            "seconds_per_epoch": float(np.median(state["epoch_s"][1:] or state["epoch_s"])),
            "curve": state["curve"]}


# -------------------------------------------------------------------------------------------------- ablations
@functools.lru_cache(maxsize=None)
def _l1_model(features: int, width: int, classes: int, tol: float, weight: float):
    """OptEq with an l1 prior of weight lambda: activation relu(v - lambda) (cached across seeds)."""
    return eq.opteq(features=features, hidden=width, classes=classes, tol=tol, activation=prox.relu_l1(weight=weight))


def sparsity(model, params, x) -> float:
    z = jax.jit(jax.vmap(lambda v: model.equilibrium(params, v).value))(x)
    return float(jnp.mean(z == 0))


def degenerate_layer(hidden: int = 40, rank: int = 8, seed: int = 0):
    """A layer with a non-singleton fixed-point set: ||W||_2 = 1, W^T W = P (orthogonal projection of rank ``rank``
    whose range contains the all-ones vector), c in range(I - P); then every c + p (p in range P, c + p >= 0) is an
    equilibrium of z = relu(P z + c)."""
    rng = np.random.default_rng(seed)
    basis = np.concatenate([np.ones((hidden, 1)), rng.normal(size=(hidden, rank - 1))], axis=1)
    q, _ = np.linalg.qr(basis)
    projection = q @ q.T
    c = (np.eye(hidden) - projection) @ rng.normal(size=hidden)
    return jnp.asarray(q.T, jnp.float32), jnp.asarray(c, jnp.float32)  # W = Q^T: W^T W = Q Q^T = P, ||W||_2 = 1


def halpern_vs_picard(w, c, starts, *, iterations: int) -> dict:
    gram = w.T @ w

    def layer(z, gram, c):
        return eq.opteq_map(z, c, gram=lambda v: gram @ v, activation=prox.relu())

    def run(solver, tol, maxiter):
        solve = jax.jit(jax.vmap(lambda z0: fp.solve(layer, z0, gram, c, solver=solver, tol=tol, maxiter=maxiter)))
        return solve(starts)

    picard = run("picard", 1e-5, 1000)
    halpern = run(fp.halpern(anchor=jnp.zeros_like(c)), 1e-6, iterations)
    result = {}
    for name, sol in (("picard", picard), ("halpern", halpern)):
        norms = jnp.linalg.norm(sol.value, axis=-1)
        result[f"{name}_norm_mean"] = float(jnp.mean(norms))
        result[f"{name}_norm_std"] = float(jnp.std(norms))
        result[f"{name}_residual_max"] = float(jnp.max(sol.stats.residual))
        result[f"{name}_spread"] = float(jnp.max(jnp.linalg.norm(sol.value - sol.value[:1], axis=-1)))
    return result


# ------------------------------------------------------------------------------------------------------ seeds
def run_seed(config: Config, seed: int, ckpt: harness.Checkpoint) -> dict:
    split = load(config)
    classes = int(split.y_train.max()) + 1
    image_shape = tuple(split.x_train.shape[1:3]) if config.architecture == "conv" else None
    in_channels = split.x_train.shape[-1] if config.architecture == "conv" else 1
    models = builders(config, int(np.prod(split.x_train.shape[1:])), image_shape, in_channels, classes)
    names = config.models or (DENSE_MODELS if config.architecture == "dense" else CONV_MODELS)
    unknown = [n for n in names if n not in models]
    if unknown:
        raise ValueError(f"opteq_table: models {unknown} not in {sorted(models)} for {config.architecture}")
    sizes = widths_and_counts(config, {n: models[n] for n in models if n in names or n.startswith("mon")})
    print(f"[opteq_table] seed {seed} widths and parameter counts: "
          + ", ".join(f"{n}: width {sizes[n][0]}, {sizes[n][1]:,} params" for n in names), file=sys.stderr)

    state = ckpt.load(default=None) or {"models": {}, "finished": {}, "l1": {}, "l1_done": {}}

    def save():
        ckpt.save(state)

    metrics: dict = {}
    trained = {}
    for name in names:
        width, count = sizes[name]
        init, apply = _build(config, name, width, int(np.prod(split.x_train.shape[1:])), image_shape, in_channels,
                             classes)
        if name in state["finished"]:
            result = state["finished"][name]
        else:
            result = train(config, seed, name, init, apply, split, config.epochs, state["models"], save,
                           desc=f"{name} seed {seed}")
            state["finished"][name] = result
            state["models"].pop(name, None)
            save()
        trained[name] = result["params"]
        metrics.update({
            f"{name}/test_accuracy": result["test_accuracy"], f"{name}/mean_steps": result["mean_steps"],
            f"{name}/converged": result["converged"], f"{name}/seconds_per_epoch": result["seconds_per_epoch"],
            f"{name}/parameters": count, f"{name}/width": width, f"curve/{name}": result["curve"],
        })

    if config.architecture == "dense":
        features = split.x_train.shape[1]
        width = sizes["opteq"][0] if "opteq" in sizes else mon_width(config)
        # (i) l1 prior weight vs sparsity and accuracy.
        for weight in config.l1_weights:
            key = f"{weight:g}"
            model = _l1_model(features, width, classes, config.tol, weight)
            if key not in state["l1_done"]:
                result = train(config, seed, f"l1_{key}", model.init, model.apply, split, config.ablation_epochs,
                               state["l1"], save, desc=f"l1 {key} seed {seed}")
                state["l1_done"][key] = {
                    "test_accuracy": result["test_accuracy"],
                    "sparsity": sparsity(model, result["params"], split.x_test[: config.eval_batch]),
                    "mean_steps": result["mean_steps"],
                }
                state["l1"].pop(f"l1_{key}", None)
                save()
            for field, value in state["l1_done"][key].items():
                metrics[f"l1/{key}/{field}"] = value
        # (ii) Halpern vs Picard on a degenerate layer, from several starts.
        w, c = degenerate_layer(seed=seed)
        starts = 3.0 * jax.random.uniform(jax.random.key(seed), (config.halpern_starts, c.shape[0]))
        for field, value in halpern_vs_picard(w, c, starts, iterations=200_000).items():
            metrics[f"halpern_degenerate/{field}"] = value
        # ... and on the trained OptEq with W rescaled to ||W||_2 = 1 (generically a unique equilibrium).
        if "opteq" in trained:
            params = trained["opteq"]
            v = params.coupling
            w_unit = v / jnp.linalg.norm(v, 2)
            x = jnp.asarray(split.x_test[0])
            c_trained = params.injection @ x + params.bias
            starts = 3.0 * jax.random.uniform(jax.random.key(seed + 1), (config.halpern_starts, c_trained.shape[0]))
            for field, value in halpern_vs_picard(w_unit, c_trained, starts, iterations=200_000).items():
                metrics[f"halpern_trained/{field}"] = value
    return metrics


# ------------------------------------------------------------------------------------------------------- plot
def plot(result: dict, path: pathlib.Path) -> None:
    import matplotlib.pyplot as plt

    stats = result["metrics"]
    names = [k.split("/")[0] for k in stats if k.endswith("/test_accuracy") and not k.startswith("l1/")]
    fig, axes = plt.subplots(1, 4, figsize=(19, 4))
    means = [stats[f"{n}/test_accuracy"]["mean"] for n in names]
    errors = [stats[f"{n}/test_accuracy"]["std"] for n in names]
    labels = [f"{n}\n{int(stats[f'{n}/parameters']['mean']):,}" for n in names]
    axes[0].bar(range(len(names)), means, yerr=errors, capsize=3)
    axes[0].set_xticks(range(len(names)), labels, fontsize=7)
    axes[0].set_ylim(min(means) - 0.03, min(1.0, max(means) + 0.02))
    axes[0].set(ylabel="test accuracy", title=f"{result['config']['dataset']}: equal parameter budget")
    for seed, per_seed in result["per_seed"].items():
        for n in names:
            curve = per_seed.get(f"curve/{n}")
            if curve:
                axes[1].plot(range(1, len(curve) + 1), curve, label=f"{n} (seed {seed})", lw=1)
    axes[1].set(xlabel="epoch", ylabel="test accuracy", title="learning curves")
    axes[1].legend(fontsize=6)
    weights = sorted({k.split("/")[1] for k in stats if k.startswith("l1/")}, key=float)
    if weights:
        acc = [stats[f"l1/{w}/test_accuracy"]["mean"] for w in weights]
        spa = [stats[f"l1/{w}/sparsity"]["mean"] for w in weights]
        axes[2].plot([float(w) for w in weights], acc, "o-", label="test accuracy")
        axes[2].plot([float(w) for w in weights], spa, "s--", label="sparsity of z*")
        axes[2].set(xlabel="l1 prior weight lambda", title="ablation (i): l1 prior")
        axes[2].legend()
    groups = [g for g in ("halpern_degenerate", "halpern_trained") if f"{g}/picard_norm_mean" in stats]
    for i, group in enumerate(groups):
        for j, solver in enumerate(("picard", "halpern")):
            axes[3].bar(i + 0.4 * j, stats[f"{group}/{solver}_norm_mean"]["mean"], width=0.38,
                        yerr=stats[f"{group}/{solver}_norm_std"]["mean"], color=f"C{j}", capsize=3,
                        label=solver if i == 0 else None)
    if groups:
        axes[3].set_xticks([i + 0.2 for i in range(len(groups))], [g.replace("halpern_", "") for g in groups])
        axes[3].set_yscale("log")
        axes[3].set(ylabel="||z*|| (mean, std over starts)", title="ablation (ii): selected equilibrium")
        axes[3].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> dict:
    _limits = bench.single_threaded_blas()  # noqa: F841  (kept alive for the run)
    return harness.run(
        "opteq_table", Config, run_seed, plot=plot,
        quick=dict(dataset="mnist5k", epochs=20, seeds=(0, 1, 2), ablation_epochs=10, l1_weights=(0.0, 0.1, 0.3)),
        headline=("opteq/test_accuracy", "opteq_small/test_accuracy", "mon/test_accuracy", "deep_opteq/test_accuracy",
                  "deq/test_accuracy", "mlp/test_accuracy"),
        argv=argv,
    )


if __name__ == "__main__":
    main()
