"""Classic and centered equilibrium propagation on MNIST (Scellier & Bengio 2017; Laborieux et al. 2021).

``python -m experiments.eqprop_mnist --quick`` trains layered Hopfield networks with EP on the MNIST-5k split
(``jeq.data.mnist_subset()``: 4000 train / 1000 test):

* ``784-500-10``      Scellier & Bengio's net1: free / nudged steps 20 / 4, eps 0.5, beta 0.5, alphas .1 / .05,
                      batch 20, 25 epochs (spec ``eqprop.md`` §5)
* ``784-500-500-10``  net2: 150 / 6 steps, beta 1.0, alphas .4 / .1 / .01, 60 epochs

each with ``random_sign`` nudging (classic EP: the sign of beta drawn per minibatch, as in Scellier's code) and
``centered`` nudging (+-beta, Laborieux et al.). Reported per run: test accuracy / error (mean +- std over seeds),
learning curves, seconds per epoch, the energy E(t) along a free phase of the trained net on test images (the
Lyapunov function of the relaxation, with :func:`jeq.eqprop.hopfield.energy_certificate`'s verdict), and a
sparsity-vs-accuracy curve: the trained net is fine-tuned with Boltzmann pruning of weak incoming weights after every
step (:func:`jeq.eqprop.boltzmann_prune`, permanent masks) at several thresholds.

Full mode (no ``--quick``) runs both nets on MNIST (or ``--dataset fashion_mnist``) read from ``--data-path`` or
``$JEQ_DATA`` (60k train / 10k test), 3 seeds:
``python -m experiments.eqprop_mnist --dataset mnist --data-path /path/to/mnist``. Expected runtime on 2 busy CPU
cores: net1 5-8 s per epoch (measured 7.5 s on Fashion-MNIST; 18 min for one seed with both nudgings and the pruning
curve), net2 3-4 min per epoch (12-17 s per epoch on MNIST-5k, times 15), i.e. 3-4 h per seed and nudging for its
60 epochs: about 20-25 h for the default 3 seeds, dominated by net2. ``--networks 784-500-10`` alone takes about an
hour for 3 seeds.
``--devices N`` splits every minibatch over N devices (data parallel, same results up to float reordering; on a CPU
simulate devices with ``XLA_FLAGS=--xla_force_host_platform_device_count=N``).
``--quick`` (MNIST-5k, 2 seeds, net1 for 12 epochs and net2 for 3 epochs) took 8 minutes on a busy 2-core machine
(about half of that unloaded).
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from . import harness
from jeq import data, sharding, validate
from jeq.eqprop import boltzmann_prune, hopfield

NETWORKS = {
    "784-500-10": dict(hidden=(500,), free_steps=20, nudged_steps=4, beta=0.5, learning_rates=(0.1, 0.05),
                       epochs=25),
    "784-500-500-10": dict(hidden=(500, 500), free_steps=150, nudged_steps=6, beta=1.0,
                           learning_rates=(0.4, 0.1, 0.01), epochs=60),
}


@dataclasses.dataclass(frozen=True)
class Config(harness.BaseConfig):
    dataset: str = "mnist"
    """mnist_subset (MNIST-5k, embedded), mnist or fashion_mnist (60k / 10k, read from data_path or $JEQ_DATA)."""
    data_path: str | None = None
    """Folder with the IDX files for the full datasets."""
    networks: tuple[str, ...] = ("784-500-10", "784-500-500-10")
    """Architectures (keys of NETWORKS: Scellier & Bengio's net1 and net2)."""
    nudgings: tuple[str, ...] = ("random_sign", "centered")
    """random_sign = classic EP; centered = +-beta."""
    epochs: tuple[int, ...] = ()
    """Epochs per network (same order as networks); empty = the paper's (25, 60)."""
    free_steps: tuple[int, ...] = ()
    """Free-phase steps per network; empty = the paper's (20, 150)."""
    batch_size: int = 20
    """Minibatch size (the paper's 20)."""
    step_size: float = 0.5
    """eps of the relaxation s <- clip(s - eps dF/ds)."""
    persistent: bool = False
    """Start each example's free phase from its previous free state (Scellier's persistent particles)."""
    prune_thresholds: tuple[float, ...] = (0.0, 0.01, 0.02, 0.04)
    """tol_W values of the sparsity curve (0 = fine-tuning without pruning, the reference point)."""
    prune_temperature: float = 0.01
    """Boltzmann temperature of the pruning (weights are O(0.05) here, so T = 0.01 favours the weakest)."""
    prune_epochs: int = 4
    """Fine-tuning epochs with pruning after every step, per threshold (784-500-10 only); each epoch can remove
    about one weak incoming edge per neuron and step (the probabilities of a neuron's weak edges sum to 1)."""
    prune_normalisation: str = "weak"
    """Z_j of the pruning probabilities (:func:`jeq.eqprop.pruning_probabilities`): "weak" (default here; no paper
    prunes these nets, and it is the setting of the published curve) or "all" (the DEEP notebook's, the library
    default: over all 784 / 500 rows of a column, strong weights included)."""
    seeds: tuple[int, ...] = (0, 1, 2)


def _load(config: Config) -> data.Split:
    validate.one_of("experiments.eqprop_mnist", "dataset", config.dataset, ("mnist_subset", "mnist", "fashion_mnist"))
    if config.dataset == "mnist_subset":
        split = data.mnist_subset()
    else:
        split = getattr(data, config.dataset)(config.data_path)
    flat = lambda x: x.reshape(len(x), -1).astype(np.float32)  # noqa: E731
    return data.Split(flat(split.x_train), split.y_train, flat(split.x_test), split.y_test)


def _settings(config: Config, network: str) -> dict:
    validate.one_of("experiments.eqprop_mnist", "networks", network, NETWORKS)
    settings = dict(NETWORKS[network])
    i = config.networks.index(network)
    if config.epochs:
        settings["epochs"] = config.epochs[i]
    if config.free_steps:
        settings["free_steps"] = config.free_steps[i]
    return settings


@functools.lru_cache(maxsize=None)
def _functions(config: Config, network: str, nudging: str):
    """Jitted epoch / evaluation / pruning functions, compiled once per (network, nudging)."""
    s = _settings(config, network)
    trainer = hopfield.ep_trainer(hopfield.layer_sgd(s["learning_rates"]), beta=s["beta"],
                                  free_steps=s["free_steps"], nudged_steps=s["nudged_steps"],
                                  step_size=config.step_size, nudging=nudging)
    step = trainer.train_step

    def prune_all(key, params, masks, threshold):
        keys = jax.random.split(key, len(params.weights))
        out = [boltzmann_prune(k, w * m, m, threshold=threshold, temperature=config.prune_temperature,
                               normalisation=config.prune_normalisation)
               for k, w, m in zip(keys, params.weights, masks)]
        return params._replace(weights=tuple(o.weights for o in out)), tuple(o.mask for o in out)

    def epoch(params, opt_state, particles, masks, key, xs, ys, idx, ws, threshold=None):
        """One epoch as a lax.scan over minibatches; optional persistent particles and, with a threshold, permanent
        Boltzmann pruning after every step (pruned weights stay 0: the masks are carried and re-applied).
        ``ws`` weights each example (0 for the padding that makes a minibatch divide over the devices)."""

        def body(carry, batch):
            p, o, part, msk = carry
            k, xb, yb, ib, wb = batch
            init = jax.tree.map(lambda a: a[ib], part) if config.persistent else None
            p, o, m = step(p, o, k, xb, yb, wb, init)
            if config.persistent:
                part = jax.tree.map(lambda a, f: a.at[ib].set(f), part, m.free_state)
            if threshold is not None:
                p, msk = prune_all(jax.random.fold_in(k, 1), p, msk, threshold)
            return (p, o, part, msk), m._replace(free_state=())

        keys = jax.random.split(key, xs.shape[0])
        (params, opt_state, particles, masks), metrics = jax.lax.scan(
            body, (params, opt_state, particles, masks), (keys, xs, ys, idx, ws))
        return params, opt_state, particles, masks, metrics

    # Data parallel over config.devices (1 by default): parameters replicated, every minibatch of the stacked epoch
    # split over the devices along axis 1, gradient sums reduced by XLA. One device is the plain jitted epoch.
    epoch = sharding.data_parallel(epoch, _mesh(config.devices), batch_argnums=(5, 6, 7, 8), batch_axis=1,
                                   donate_argnums=(0, 1, 2))

    @jax.jit
    def evaluate(params, x, y):
        phase = trainer.predict(params, x)
        return jnp.mean(jnp.argmax(phase.state[-1], -1) == y)

    @jax.jit
    def energy_trace(params, x):
        phase = jax.vmap(lambda xi: hopfield.free_phase(params, xi, steps=2 * s["free_steps"],
                                                         step_size=config.step_size))(x)
        monotone = jnp.all(jnp.diff(phase.energy, axis=1) <= 1e-5 * (1 + jnp.abs(phase.energy[:, 1:])), axis=1)
        return jnp.mean(phase.energy, axis=0), jnp.mean(monotone)

    prune_once = jax.jit(prune_all, static_argnames=("threshold",))
    return trainer, s, epoch, evaluate, energy_trace, prune_once


@functools.lru_cache(maxsize=None)
def _mesh(devices: int) -> jax.sharding.Mesh:
    return sharding.data_mesh(devices)


def _batches(n: int, batch_size: int, seed: int, epoch: int) -> np.ndarray:
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    nb = n // batch_size
    return perm[: nb * batch_size].reshape(nb, batch_size)


def _train(config, split, network, nudging, seed, params, opt_state, particles, masks, first, last, curves,
           threshold=None, state=None, save=None):
    """Epochs ``first .. last - 1``; after each, ``state`` (the run's entry of the checkpointed store) is updated and
    ``save()`` persists the whole store."""
    trainer, s, epoch_fn, evaluate, _, _ = _functions(config, network, nudging)
    for epoch in harness.progress(range(first, last), desc=f"{network} {nudging} seed {seed}",
                                  initial=first, total=last):
        idx = _batches(len(split.x_train), config.batch_size, seed, epoch)
        t0 = time.perf_counter()
        xs, ys, idx, ws = sharding.shard_batch((split.x_train[idx], split.y_train[idx], idx),
                                               _mesh(config.devices), axis=1)
        params, opt_state, particles, masks, metrics = epoch_fn(
            params, opt_state, particles, masks, jax.random.key(seed * 100_003 + epoch), xs, ys, idx, ws,
            threshold=threshold)
        jax.block_until_ready(params)
        seconds = time.perf_counter() - t0
        if not bool(jnp.all(metrics.finite)):
            raise FloatingPointError(f"eqprop_mnist: {network} {nudging} seed {seed} epoch {epoch}: states or "
                                     "weights became NaN/inf; stopping")
        curves["seconds"].append(seconds)
        curves["train_accuracy"].append(float(jnp.mean(metrics.accuracy)))
        curves["train_loss"].append(float(jnp.mean(metrics.loss)))
        curves["test_accuracy"].append(float(evaluate(params, split.x_test, split.y_test)))
        if save is not None:
            state.update(params=params, opt_state=opt_state, particles=particles, epoch=epoch + 1, curves=curves)
            save()
    return params, opt_state, particles, masks


def run_one(config: Config, split: data.Split, network: str, nudging: str, seed: int, store: dict,
            ckpt: harness.Checkpoint) -> dict:
    """Train one (network, nudging) for one seed, resuming from ``store[name]`` when present."""
    trainer, s, _, evaluate, energy_trace, _ = _functions(config, network, nudging)
    sizes = [split.x_train.shape[1], *s["hidden"], 10]
    name = f"{network}/{nudging}"
    state = store.get(name)
    if state is None:
        params = hopfield.init(jax.random.key(seed), sizes)
        particles = tuple(jnp.zeros((len(split.x_train), n)) for n in sizes[1:]) if config.persistent else ()
        state = dict(params=params, opt_state=trainer.init(params), particles=particles, epoch=0,
                     curves=dict(seconds=[], train_accuracy=[], train_loss=[], test_accuracy=[]))
        store[name] = state
    masks = tuple(jnp.ones_like(w) for w in state["params"].weights)
    params, opt_state, particles, _ = _train(
        config, split, network, nudging, seed, state["params"], state["opt_state"], state["particles"], masks,
        state["epoch"], s["epochs"], state["curves"], state=state, save=lambda: ckpt.save(store))
    curves = state["curves"]
    trace, monotone = energy_trace(params, split.x_test[:200])
    cert = hopfield.energy_certificate(params, step_size=config.step_size)
    out = {
        "test_accuracy": curves["test_accuracy"][-1],
        "test_error": 1.0 - curves["test_accuracy"][-1],
        "train_accuracy": curves["train_accuracy"][-1],
        "seconds_per_epoch": float(np.median(curves["seconds"][1:] or curves["seconds"])),
        "energy_monotone_fraction": float(monotone),
        "energy_certified": float(cert.certified),
        "energy_lipschitz": float(cert.lipschitz),
        "curve/test_accuracy": curves["test_accuracy"],
        "curve/train_accuracy": curves["train_accuracy"],
        "curve/free_energy": np.asarray(trace).tolist(),
    }
    if len(s["hidden"]) == 1 and config.prune_thresholds:
        out.update(_sparsity_curve(config, split, network, nudging, seed, params, state, store, ckpt))
    return out


def _sparsity_curve(config, split, network, nudging, seed, params, state, store, ckpt) -> dict:
    """Fine-tune copies of the trained net with permanent Boltzmann pruning after every step, one per threshold;
    record (fraction of weights pruned, test accuracy) after each fine-tuning epoch."""
    trainer = _functions(config, network, nudging)[0]
    done = state.setdefault("pruning", {})
    for threshold in config.prune_thresholds:
        key = str(threshold)
        if key in done:
            continue
        p = jax.tree.map(jnp.array, params)
        opt_state = trainer.init(p)
        masks = tuple(jnp.ones_like(w) for w in p.weights)
        particles = tuple(jnp.zeros_like(a) for a in state["particles"])
        curves = dict(seconds=[], train_accuracy=[], train_loss=[], test_accuracy=[])
        fractions = []
        for e in range(config.prune_epochs):
            p, opt_state, particles, masks = _train(config, split, network, nudging, seed, p, opt_state, particles,
                                                    masks, e, e + 1, curves,
                                                    threshold=None if threshold == 0 else threshold)
            fractions.append(sum(float(jnp.sum(m == 0)) for m in masks) / sum(m.size for m in masks))
        done[key] = dict(sparsity=fractions, accuracy=curves["test_accuracy"])
        ckpt.save(store)
    out = {"curve/prune_threshold": [float(t) for t in config.prune_thresholds]}
    out["curve/prune_sparsity"] = [done[str(t)]["sparsity"] for t in config.prune_thresholds]
    out["curve/prune_accuracy"] = [done[str(t)]["accuracy"] for t in config.prune_thresholds]
    for t in config.prune_thresholds:
        out[f"pruned_tol{t:g}/sparsity"] = done[str(t)]["sparsity"][-1]
        out[f"pruned_tol{t:g}/test_accuracy"] = done[str(t)]["accuracy"][-1]
    return out


def run_seed(config: Config, seed: int, ckpt: harness.Checkpoint) -> dict:
    split = _load(config)
    store = ckpt.load(default={})
    out = {}
    for network in config.networks:
        for nudging in config.nudgings:
            metrics = run_one(config, split, network, nudging, seed, store, ckpt)
            store[f"{network}/{nudging}"]["done"] = True
            ckpt.save(store)
            for k, v in metrics.items():
                out[f"curve/{network}/{nudging}/{k[6:]}" if k.startswith("curve/") else f"{network}/{nudging}/{k}"] = v
    return out


def plot(result: dict, path: pathlib.Path) -> None:
    import matplotlib.pyplot as plt

    config = result["config"]
    runs = [f"{n}/{g}" for n in config["networks"] for g in config["nudgings"]]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for run in runs:
        for ax, name, ylabel in ((axes[0], "test_accuracy", "test accuracy"),
                                 (axes[1], "free_energy", "mean energy E(t) on 200 test images")):
            curves = [m[f"curve/{run}/{name}"] for m in result["per_seed"].values() if f"curve/{run}/{name}" in m]
            if curves:
                c = np.asarray(curves, dtype=float)
                ax.plot(np.arange(1, c.shape[1] + 1) if name == "test_accuracy" else np.arange(c.shape[1]),
                        c.mean(0), label=run)
                ax.set(ylabel=ylabel)
        first = next((m for m in result["per_seed"].values() if f"curve/{run}/prune_sparsity" in m), None)
        if first is not None:
            for i, t in enumerate(first[f"curve/{run}/prune_threshold"]):
                if t == 0:
                    continue
                s_ = np.mean([m[f"curve/{run}/prune_sparsity"][i] for m in result["per_seed"].values()], axis=0)
                a_ = np.mean([m[f"curve/{run}/prune_accuracy"][i] for m in result["per_seed"].values()], axis=0)
                axes[2].plot(s_, a_, "o-", label=f"{run} tol {t:g}")
    axes[0].set(xlabel="epoch", title=f"EP on {config['dataset']}")
    axes[1].set(xlabel="relaxation step t", title="Lyapunov function along a free phase")
    axes[2].set(xlabel="fraction of weights pruned", ylabel="test accuracy", title="Boltzmann pruning")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> dict:
    return harness.run(
        "eqprop_mnist", Config, run_seed, plot=plot,
        quick=dict(dataset="mnist_subset", seeds=(0, 1), epochs=(12, 3), prune_thresholds=(0.0, 0.01, 0.04)),
        headline=("784-500-10/random_sign/test_accuracy", "784-500-10/centered/test_accuracy",
                  "784-500-500-10/random_sign/test_accuracy", "784-500-500-10/centered/test_accuracy"),
        argv=argv,
    )


if __name__ == "__main__":
    main()
