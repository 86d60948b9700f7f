"""NAGO (Ru, Esperança, Carlucci, NeurIPS 2020): HNAG-BOHB vs HNAG-RS vs RNAG-BOHB at equal compute, the MOBO
Pareto front, a hand-designed LeNet reference, and the best HNAG architecture retrained.

``python -m experiments.nago_search --quick`` (MNIST-5k at 16 px, one seed, CPU proxy of spec §6):

1. three searches with the same compute, ``epoch_budget`` training epochs each (a search starts no trial once its
   finished trials have trained that many epochs): HNAG-BOHB (TPE + Hyperband, eta 2, epochs 1 -> 2 -> 4),
   HNAG-RS (random theta, every trial trained 4 epochs), RNAG-BOHB (BOHB over the RandWire space);
2. HNAG-MOBO: multi-objective TPE over theta and the parameter budget, (validation accuracy up, parameters down);
3. the best HNAG theta by validation accuracy (HNAG-BOHB and HNAG-RS trials at the full budget), its sampled
   architecture saved as JSON and drawn, retrained for ``final_epochs`` at ``final_budget`` parameters: test
   accuracy (the quick goal is >= 95 %);
4. a LeNet-style CNN (conv5x5-pool-conv5x5-pool-dense-dense, no search) of about ``final_budget`` parameters,
   trained with the same optimiser, schedule and epochs as the retrained architecture.

Selection uses validation accuracy only (500 examples carved from the 4000 training digits); test accuracy is
recorded for the report. Studies live in ``<out>/nago_search/studies/<config hash>/*.journal`` (or ``--storage``):
a killed run restarted with the same command resumes every search where it stopped.

Medium (the 3-seed comparison on MNIST-5k; the committed medium results came from this command)::

    python -m experiments.nago_search --quick --seeds 0 1 2

Full (the paper's setting: CIFAR-10 from a path, 4M parameters, BOHB epochs 30 -> 60 -> 120, 350 trials' worth of
epochs per search, 600-epoch retraining; days on a GPU)::

    python -m experiments.nago_search --data-path /data/cifar-10-batches-py --seeds 0 --workers 1
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import time

import jax
import numpy as np
from flax import nnx

from . import harness
from jeq import nas
from jeq.io import atomic_write_text


@dataclasses.dataclass(frozen=True)
class Config(harness.BaseConfig, nas.TrialSettings):
    """The data, training proxy, budget and space bounds of every search are ``jeq.nas.TrialSettings``; this adds
    the schedule of searches, the MOBO study and the final retraining."""

    epoch_budget: int = 7 * 50 * 60
    """Training epochs each of HNAG-BOHB / HNAG-RS / RNAG-BOHB may spend (equal compute); 50 brackets of
    4x30 + 2x60 + 1x120 = 360 epochs = 21 000 by default."""
    max_trials: int = 1000
    """Cap on finished trials per search (the epoch budget normally ends it first)."""
    mobo_trials: int = 50
    """Finished trials of HNAG-MOBO."""
    mobo_epochs: int = 30
    """Epochs of every MOBO trial (of the ``max_epochs`` learning-rate schedule)."""
    final_epochs: int = 600
    """Epochs of the final retraining of the best architecture (and of the LeNet reference)."""
    final_budget: int = 4_000_000
    """Parameter budget of the retrained architecture and of the LeNet reference."""
    workers: int = 1
    """Worker processes per search (one optuna study each)."""
    storage: str = ""
    """Optuna storage URL for the studies (empty: journal files under the results folder)."""


QUICK = dict(dataset="mnist5k", image_size=16, validation=500, budget=30_000, min_epochs=1, max_epochs=4,
             epoch_budget=12, max_trials=50, mobo_trials=4, mobo_epochs=2, max_nodes=4, min_mid_nodes=1,
             startup_trials=3, final_epochs=20, final_budget=40_000, seeds=(0,))
SEARCHES = ("hnag-bohb", "hnag-rs", "rnag-bohb")


class LeNet(nnx.Module):
    """conv5x5(c) - ReLU - maxpool2 - conv5x5(2c) - ReLU - maxpool2 - dense(4c) - ReLU - dense(classes)."""

    def __init__(self, c: int, *, image_size: int, in_channels: int, num_classes: int, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(in_channels, c, (5, 5), padding="SAME", rngs=rngs)
        self.conv2 = nnx.Conv(c, 2 * c, (5, 5), padding="SAME", rngs=rngs)
        self.fc1 = nnx.Linear((image_size // 4) ** 2 * 2 * c, 4 * c, rngs=rngs)
        self.fc2 = nnx.Linear(4 * c, num_classes, rngs=rngs)

    def __call__(self, x):
        x = nnx.max_pool(jax.nn.relu(self.conv1(x)), (2, 2), (2, 2))
        x = nnx.max_pool(jax.nn.relu(self.conv2(x)), (2, 2), (2, 2))
        return self.fc2(jax.nn.relu(self.fc1(x.reshape(x.shape[0], -1))))


def lenet_params(c: int, image_size: int, in_channels: int, num_classes: int) -> int:
    """Parameters of :class:`LeNet` (weights and biases)."""
    flat = (image_size // 4) ** 2 * 2 * c
    return (25 * in_channels * c + c) + (25 * c * 2 * c + 2 * c) + (flat * 4 * c + 4 * c) + (4 * c * num_classes
                                                                                              + num_classes)


def _search_config(config: Config, method: str, seed: int) -> nas.SearchConfig:
    shared = {f.name: getattr(config, f.name) for f in dataclasses.fields(nas.TrialSettings)}
    if method == "hnag-mobo":
        shared.update(epoch_budget=0, min_epochs=config.mobo_epochs, max_epochs=config.mobo_epochs)
    return nas.SearchConfig(**shared, method=method, trials=config.mobo_trials if method == "hnag-mobo"
                            else config.max_trials, reduction_factor=2, schedule_epochs=config.max_epochs, seed=seed,
                            devices=config.devices)


def best_so_far(trials: list[dict]) -> tuple[list[int], list[float]]:
    """(cumulative training epochs, best validation accuracy among finished full-budget trials so far), in trial
    order; a pruned trial spends epochs without improving the incumbent."""
    epochs, best, xs, ys = 0, math.nan, [], []
    top = max((t["epochs"] or 0) for t in trials) if trials else 0
    for t in sorted(trials, key=lambda t: t["complete"] or ""):
        if t["state"] not in ("COMPLETE", "PRUNED"):
            continue
        epochs += t["epochs"] or 0
        if t["state"] == "COMPLETE" and t["epochs"] == top and t["accuracy"] is not None:
            best = t["accuracy"] if math.isnan(best) else max(best, t["accuracy"])
        xs.append(epochs)
        ys.append(best)
    return xs, ys


def run_seed(config: Config, seed: int, ckpt: harness.Checkpoint) -> dict:
    from jeq import io

    out_dir = pathlib.Path(config.out) / "nago_search"
    study_dir = out_dir / "studies" / harness.config_hash(config)
    state = ckpt.load(default={})
    metrics: dict = {}
    logs: dict = {}
    for method in SEARCHES + ("hnag-mobo",):
        storage = config.storage or f"journal:{study_dir / f'{method}-seed{seed}.journal'}"
        t0 = time.perf_counter()
        result = nas.search(_search_config(config, method, seed), storage=storage,
                            study_name=f"{method}-seed{seed}", workers=config.workers)
        seconds = state.setdefault("seconds", {}).setdefault(method, time.perf_counter() - t0)
        ckpt.save(state)
        rows = result.trials
        finished = [r for r in rows if r["state"] in ("COMPLETE", "PRUNED")]
        logs[method] = rows
        metrics[f"{method}/trials"] = len(finished)
        metrics[f"{method}/pruned"] = sum(r["state"] == "PRUNED" for r in finished)
        metrics[f"{method}/epochs"] = sum(r["epochs"] or 0 for r in finished)
        metrics[f"{method}/seconds"] = seconds
        if method == "hnag-mobo":
            metrics["hnag-mobo/pareto"] = [{k: r[k] for k in ("number", "theta", "accuracy", "params",
                                                              "test_accuracy")} for r in result.pareto]
            continue
        best = result.best
        metrics[f"{method}/best_val_accuracy"] = best["accuracy"]
        metrics[f"{method}/best_test_accuracy"] = best["test_accuracy"]
        metrics[f"{method}/best_params"] = best["params"]
        metrics[f"{method}/best_theta"] = best["theta"]
        metrics[f"curve/{method}"] = best_so_far(rows)
    metrics["trials"] = logs

    # the best HNAG theta (validation only), its architecture, retrained for the final budget
    method = max(("hnag-bohb", "hnag-rs"), key=lambda m: metrics[f"{m}/best_val_accuracy"])
    theta = metrics[f"{method}/best_theta"]
    arch = nas.sample_architecture(nas.hparams_of(method, theta), seed=seed)
    stem = out_dir / f"best_architecture_seed{seed}"
    atomic_write_text(stem.with_suffix(".json"), json.dumps(arch.to_dict(), indent=1))
    arch.draw(stem.with_suffix(".png"))
    data = nas.load_dataset(config.dataset, image_size=config.image_size, validation=config.validation,
                            path=config.data_path or None)
    kwargs = dict(epochs=config.final_epochs, batch_size=config.batch_size, learning_rate=config.learning_rate,
                  weight_decay=config.weight_decay,
                  evaluate_test=True, devices=config.devices)
    if "final" not in state:
        width = nas.fit_width(arch, budget=config.final_budget, in_channels=data.x_train.shape[-1])
        final = nas.train(arch, data, width=width, seed=seed, **kwargs)
        state["final"] = {"val_accuracy": final.val_accuracy, "test_accuracy": final.test_accuracy,
                          "params": final.params, "seconds": final.seconds, "width": width}
        ckpt.save(state)
    if "lenet" not in state:
        classes = int(data.y_train.max()) + 1
        c = max(c for c in range(1, 512) if c == 1 or lenet_params(c, config.image_size, data.x_train.shape[-1],
                                                                     classes) <= config.final_budget)
        model = LeNet(c, image_size=config.image_size, in_channels=data.x_train.shape[-1], num_classes=classes,
                      rngs=nnx.Rngs(seed))
        ref = nas.fit(model, data, seed=seed, name="lenet", **kwargs)
        state["lenet"] = {"val_accuracy": ref.val_accuracy, "test_accuracy": ref.test_accuracy,
                          "params": ref.params, "seconds": ref.seconds, "channels": c}
        ckpt.save(state)
    final, lenet = state["final"], state["lenet"]
    metrics.update({
        "final/method": method, "final/fingerprint": arch.fingerprint(), "final/operations": arch.num_operations,
        "final/theta": theta, "final/val_accuracy": final["val_accuracy"][-1],
        "final/test_accuracy": final["test_accuracy"], "final/params": final["params"],
        "final/seconds": final["seconds"], "curve/final_val": final["val_accuracy"],
        "lenet/val_accuracy": lenet["val_accuracy"][-1], "lenet/test_accuracy": lenet["test_accuracy"],
        "lenet/params": lenet["params"], "lenet/seconds": lenet["seconds"], "curve/lenet_val": lenet["val_accuracy"],
    })
    del io
    return metrics


def plot(result: dict, path: pathlib.Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    colours = {"hnag-bohb": "C0", "hnag-rs": "C1", "rnag-bohb": "C2"}
    for seed, m in result["per_seed"].items():
        for method in SEARCHES:
            xs, ys = m[f"curve/{method}"]
            axes[0].step(xs, ys, where="post", color=colours[method], alpha=0.8,
                         label=method.upper() if seed == str(result["seeds"][0]) else None)
        front = sorted(m["hnag-mobo/pareto"], key=lambda r: r["params"])
        everything = [r for r in m["trials"]["hnag-mobo"] if r["state"] == "COMPLETE"]
        axes[1].scatter([r["params"] for r in everything], [r["accuracy"] for r in everything], color="0.7", s=12)
        axes[1].plot([r["params"] for r in front], [r["accuracy"] for r in front], "o-", color="C3",
                     label="MOBO Pareto front" if seed == str(result["seeds"][0]) else None)
    axes[0].set(xlabel="training epochs spent (compute)", ylabel="best validation accuracy so far",
                title="search at equal compute")
    axes[0].legend()
    axes[1].set(xlabel="parameters", ylabel="validation accuracy", xscale="log", title="HNAG-MOBO")
    axes[1].legend()
    seeds = list(result["per_seed"].values())
    names = ["best HNAG (retrained)", "LeNet reference"]
    tests = [[m["final/test_accuracy"] for m in seeds], [m["lenet/test_accuracy"] for m in seeds]]
    params = [np.mean([m["final/params"] for m in seeds]), np.mean([m["lenet/params"] for m in seeds])]
    axes[2].bar(range(2), [np.mean(t) for t in tests], yerr=[np.std(t) for t in tests], color=["C0", "C7"])
    axes[2].set_xticks(range(2), [f"{n}\n{p:,.0f} params" for n, p in zip(names, params)])
    lo = min(min(t) for t in tests)
    axes[2].set(ylim=(max(0.0, lo - 0.05), 1.0), ylabel="test accuracy", title="equal parameters and epochs")
    for i, t in enumerate(tests):
        axes[2].text(i, np.mean(t), f"{np.mean(t):.3f}", ha="center", va="bottom")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> dict:
    return harness.run(
        "nago_search", Config, run_seed, plot=plot, quick=QUICK, argv=argv,
        headline=("final/test_accuracy", "lenet/test_accuracy", "hnag-bohb/best_val_accuracy",
                  "hnag-rs/best_val_accuracy", "rnag-bohb/best_val_accuracy"),
    )


if __name__ == "__main__":
    main()
