"""Logic gates with DEEP vs EP_asym (Farinha et al., ESANN 2020; spec ``eqprop.md`` §2-§3).

``python -m experiments.eqprop_gates`` trains, for each seed (one network per seed and method, 10 seeds as the
paper's ``num_net``), on AND, OR, XOR, NOT, ID with the notebooks' hyper-parameters (5 hidden neurons on a complete
graph, 200 full-batch epochs, T1 = T2 = 1000, dt 0.05, beta 10, W ~ N(0, 0.05^2), s0 ~ U(0, 0.1)):

* ``deep``          DEEP, trajectory (STDP) rule, dt_W = 100 (notebook default)
* ``deep_lr10``     DEEP with dt_W = 10 (the spec's second column)
* ``deep_endpoint`` DEEP with the cheap endpoint rule s0 (x) (s_beta - s0) / T2, dt_W = 100
* ``deep_sparse``   DEEP + L1 (reg_W 1.5e-4) + Boltzmann pruning (tol_W 0.01, temp 5) every ``prune_interval``
                    epochs (1, the notebook's), normalised over all rows of a column as in the notebook;
                    permanent unless ``--no-prune-permanent`` (the notebook only zeroes the weight)
* ``deep_sparse_weak`` the same with the probabilities normalised over each neuron's weak edges only (jeq's
                    earlier ``deep_sparse``; a neuron with one weak edge loses it every round)
* ``deep_layered``  DEEP on the notebooks' layered graph (one hidden layer of 5), dt_W = 100
* ``deep_onehot``   the ``logical_operations_DEEP_oh`` notebook: 2 one-hot outputs, 2 hidden, beta 1, dt_W 200,
                    prediction = argmax
* ``ep_asym``       vector-field EP baseline, dt_W = 1

A gate is *solved* when a fresh free phase (new random initial state) classifies all patterns (threshold 0.5; argmax
for the one-hot variant). ``epochs_to_solve`` uses the training free phase with the 0.5 threshold on every output. The
aggregated ``<gate>/<method>/success`` mean over seeds is the success rate. Also reported: epochs until the training
free phase first has zero class error, the final free-phase MSE, divergence (NaN), sparsity, and the stability of the
trained free phase (:func:`jeq.eqprop.free_phase_stability`: fraction of patterns where it is provably locally
stable, whether it is a global contraction, and the Gershgorin row flag of the full system matrix, which the spec
reports as never satisfied). ``--quick`` runs 2 seeds of DEEP and EP_asym (about 1-2 minutes on 2 CPU cores); the
default (10 seeds, 8 methods) takes about 5-10 minutes (531 s on 2 busy cores).
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from . import harness
from jeq import validate
from jeq.data import logic_gates
from jeq.eqprop import (
    complete_graph,
    deep,
    deep_field,
    ep_asym,
    free_phase_stability,
    gershgorin,
    layered_graph,
    leaky_field,
    scheduled_prune,
    sparsity,
    system_matrix,
)

METHODS = ("deep", "deep_lr10", "deep_endpoint", "deep_sparse", "deep_sparse_weak", "deep_layered", "deep_onehot",
           "ep_asym")


@dataclasses.dataclass(frozen=True)
class Config(harness.BaseConfig):
    seeds: tuple[int, ...] = tuple(range(10))
    """One network per seed and method (the notebooks train num_net = 10)."""
    gates: tuple[str, ...] = ("AND", "OR", "XOR", "NOT", "ID")
    """Tasks (jeq.data.logic_gates; the bias is the last input column)."""
    methods: tuple[str, ...] = METHODS
    """Learners to compare (see the module docstring)."""
    hidden: int = 5
    """Hidden neurons N_H of the complete graph."""
    epochs: int = 200
    """Full-batch epochs."""
    free_steps: int = 1000
    """T1."""
    nudged_steps: int = 1000
    """T2."""
    dt: float = 0.05
    """Euler step of the neurons."""
    beta: float = 10.0
    """Nudging strength."""
    l1_strength: float = 1.5e-4
    """reg_W of deep_sparse."""
    prune_threshold: float = 0.01
    """tol_W of deep_sparse."""
    prune_temperature: float = 5.0
    """temp of deep_sparse."""
    prune_interval: int = 1
    """deep_sparse prunes after every ``prune_interval``-th epoch (the notebook: 1, after every epoch)."""
    prune_permanent: bool = True
    """deep_sparse keeps pruned edges out (jeq's default) or, False, only zeroes them as the notebook does."""


def _learner(method: str, graph, config: Config):
    common = dict(dt=config.dt, free_steps=config.free_steps, nudged_steps=config.nudged_steps, beta=config.beta)
    if method == "deep":
        return deep(graph, learning_rate=100.0, **common)
    if method == "deep_lr10":
        return deep(graph, learning_rate=10.0, **common)
    if method == "deep_endpoint":
        return deep(graph, learning_rate=100.0, rule="endpoint", **common)
    if method in ("deep_sparse", "deep_sparse_weak"):
        return deep(graph, learning_rate=100.0, l1_strength=config.l1_strength, **common)
    if method == "deep_layered":
        return deep(graph, learning_rate=100.0, **common)
    if method == "deep_onehot":
        return deep(graph, learning_rate=200.0, **dict(common, beta=1.0))
    if method == "ep_asym":
        return ep_asym(graph, learning_rate=1.0, **common)
    validate.fail("experiments.eqprop_gates", "methods", method, f"must be one of {list(METHODS)}")


@functools.lru_cache(maxsize=None)
def _trainer(config: Config, method: str, num_inputs: int, num_outputs: int):
    """One jitted training run (all epochs, then a fresh test free phase and its stability), compiled once per
    method and gate shape and reused for every seed."""
    if method == "deep_layered":
        graph = layered_graph(num_inputs=num_inputs, hidden_sizes=[config.hidden], num_outputs=num_outputs)
    elif method == "deep_onehot":
        graph = complete_graph(num_inputs=num_inputs, num_hidden=2, num_outputs=2)
    else:
        graph = complete_graph(num_inputs=num_inputs, num_hidden=config.hidden, num_outputs=num_outputs)
    learner = _learner(method, graph, config)
    prune = method in ("deep_sparse", "deep_sparse_weak")
    normalisation = "weak" if method == "deep_sparse_weak" else "all"
    field = leaky_field if method == "ep_asym" else deep_field
    structural = jnp.asarray(graph.mask)

    @jax.jit
    def run(key, x, y):
        k_init, k_train, k_test = jax.random.split(key, 3)

        def epoch(carry, inputs):
            w, mask = carry
            k, step = inputs
            k_update, k_prune = jax.random.split(k)
            w, info = learner.update(w, k_update, x, y)
            if prune:
                pruned = scheduled_prune(k_prune, w * mask, mask, step, interval=config.prune_interval,
                                         permanent=config.prune_permanent, threshold=config.prune_threshold,
                                         temperature=config.prune_temperature, normalisation=normalisation)
                w, mask = pruned.weights, pruned.mask
            return (w, mask), info

        (w, _), infos = jax.lax.scan(epoch, (learner.init(k_init), structural),
                                     (jax.random.split(k_train, config.epochs), jnp.arange(config.epochs)))
        test = learner.predict(w, k_test, x)
        stability = jax.vmap(lambda s: free_phase_stability(w, s, num_inputs=num_inputs, dt=config.dt,
                                                            field=field, tolerance=1e-5))(test.final)
        full = gershgorin(system_matrix(w, num_inputs=num_inputs, field=field))
        return w, infos, test.final, stability.locally_stable, full.row_dominant, stability.globally_stable

    return graph, run


def train_gate(config: Config, gate: str, method: str, seed: int) -> dict:
    """Train one network on one gate; return its scalar metrics and curves."""
    x, y = logic_gates(gate)
    if method == "deep_onehot":
        labels = y[:, 0].astype(int)
        y = np.eye(2, dtype=np.float32)[labels]
    graph, run = _trainer(config, method, x.shape[1], y.shape[1])
    w, infos, final, locally_stable, row_dominant, globally_stable = jax.device_get(run(jax.random.key(seed), x, y))
    outputs = final[:, -y.shape[1]:]
    finite = bool(np.all(np.isfinite(w)) and np.all(infos.finite))
    if method == "deep_onehot":
        correct = np.argmax(outputs, axis=1) == labels
    else:
        correct = np.all((outputs >= 0.5) == (y > 0.5), axis=1)
    solved_epochs = np.flatnonzero(np.asarray(infos.free_error) == 0)
    return {
        "success": float(finite and bool(np.all(correct))),
        "test_accuracy": float(np.mean(correct)) if finite else 0.0,
        "epochs_to_solve": float(solved_epochs[0] + 1) if solved_epochs.size else float("nan"),
        "final_mse": float(infos.free_cost[-1]),
        "diverged": float(not finite),
        "sparsity": float(sparsity(w, graph.mask)),
        "locally_stable_fraction": float(np.mean(locally_stable)),
        "gershgorin_row_full": float(row_dominant),
        "globally_stable": float(np.all(globally_stable)),
        "curve/free_mse": np.asarray(infos.free_cost).tolist(),
    }


def run_seed(config: Config, seed: int, ckpt: harness.Checkpoint) -> dict:
    state = ckpt.load(default={})
    todo = [(g, m) for g in config.gates for m in config.methods if f"{g}/{m}" not in state]
    for gate, method in harness.progress(todo, desc=f"gates seed {seed}"):
        state[f"{gate}/{method}"] = train_gate(config, gate, method, seed)
        ckpt.save(state)
    out = {}
    for name, metrics in state.items():
        for key, value in metrics.items():
            if key.startswith("curve/"):
                out[f"curve/{name}/{key[6:]}"] = value
            else:
                out[f"{name}/{key}"] = value
    return out


def plot(result: dict, path: pathlib.Path) -> None:
    import matplotlib.pyplot as plt

    config = result["config"]
    gates, methods = config["gates"], config["methods"]
    metrics = result["metrics"]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / len(methods)
    for i, method in enumerate(methods):
        rates = [metrics.get(f"{g}/{method}/success", {"mean": np.nan})["mean"] for g in gates]
        ax.bar(np.arange(len(gates)) + i * width, rates, width, label=method)
    ax.set_xticks(np.arange(len(gates)) + 0.4 - width / 2, gates)
    ax.set(ylabel=f"success rate ({len(result['seeds'])} networks)", ylim=(0, 1.05), title="Logic gates")
    ax.legend(fontsize=7)
    for method in methods:
        curves = [s[f"curve/XOR/{method}/free_mse"] for s in result["per_seed"].values()
                  if f"curve/XOR/{method}/free_mse" in s]
        if curves:
            ax2.plot(np.nanmedian(np.asarray(curves, dtype=float), axis=0), label=method)
    ax2.set(xlabel="epoch", ylabel="free-phase MSE (median over networks)", yscale="log", title="XOR learning")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> dict:
    return harness.run(
        "eqprop_gates", Config, run_seed, plot=plot, quick=dict(seeds=(0, 1), methods=("deep", "ep_asym")),
        headline=("AND/deep/success", "OR/deep/success", "XOR/deep/success", "XOR/ep_asym/success"), argv=argv,
    )


if __name__ == "__main__":
    main()
