"""Speed of equilibrium propagation training in JAX (``python -m benchmarks.bench_eqprop [--quick]``).

1. **Batch sweep**: examples/second of one EP training step (free + nudged phases + update) of Scellier & Bengio's
   784-500-10 net (20 free / 4 nudged steps, random-sign beta) for batch sizes 1 ... 512 (jit + vmap).
2. **PyTorch target**: Laborieux et al.'s EP MLP in their ``check/train_mnist.sh`` setting (784-512-10, T1 30,
   T2 10, batch 50, beta 0.1 one-sided, ``my_sigmoid`` dynamics s <- sigma(dPhi/ds), Adam 5e-4 on both layers,
   2 epochs) on MNIST-5k (4000 training examples = 80 steps per epoch). The PyTorch original's seconds per epoch
   and test accuracy are quoted from ``results/external_references.json`` (entry ``laborieux_ep``: an external
   reference, timed by its own code in a separate process); we report our seconds per epoch (one fused
   ``lax.scan`` over the epoch), the ratio reference / ours, and the test accuracy after 2 epochs (mean +- std over
   seeds) and per epoch. Both sides relax for a fixed 30 + 10 steps (no stopping rule).
3. **A/B of the optimisations** (interleaved in one process, ratio = time(A) / time(B), < 1 means A is faster):
   batched weight gradient (one contraction over the batch) vs per-example EP gradients averaged; the EP objective
   E(s_beta) - E(s_0) with one shared input drive x W_0 vs two full energies; the input drive hoisted out of the
   relaxation vs recomputed at every step; the fused epoch scan vs a Python loop of jitted steps.

Results are printed and written to ``results/bench_eqprop/<timestamp>.json`` with the git SHA, library versions and
device (``benchmarks.common.write``). Runs on any backend (CPU here; the
same command on a GPU machine gives the accelerator numbers). ``--quick`` uses smaller timing budgets.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import common
from jeq import bench, data
from jeq.eqprop import hopfield


def _labels(n, seed=0):
    return np.random.default_rng(seed).integers(0, 10, n).astype(np.int32)


def batch_sweep(budget_s: float) -> list[dict]:
    """Examples/second of one Scellier net1 training step vs batch size."""
    trainer = hopfield.ep_trainer(hopfield.layer_sgd([0.1, 0.05]), beta=0.5, free_steps=20, nudged_steps=4,
                                  step_size=0.5, nudging="random_sign")
    params = hopfield.init(jax.random.key(0), [784, 500, 10])
    opt_state = trainer.init(params)
    rng = np.random.default_rng(0)
    rows = []
    for batch in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512):
        x = rng.uniform(size=(batch, 784)).astype(np.float32)
        y = _labels(batch)
        step = lambda p, o, k, xb, yb: trainer.train_step(p, o, k, xb, yb)  # noqa: E731 (not donated: reused args)
        t = bench.time_fn(step, params, opt_state, jax.random.key(1), x, y, budget_s=budget_s)
        rows.append(dict(batch=batch, median_s=t.median_s, p20_s=t.p20_s, p80_s=t.p80_s,
                         examples_per_s=batch / t.median_s, compile_s=t.compile_s))
        print(f"  batch {batch:4d}: {t.summary()}  -> {batch / t.median_s:10.0f} examples/s", flush=True)
    return rows


def laborieux_trainer():
    """EP with Laborieux et al.'s MLP dynamics: s <- my_sigmoid(dPhi/ds) (eps = 1), one-sided beta = 0.1, Adam."""
    return hopfield.ep_trainer(optax.adam(5e-4), beta=0.1, free_steps=30, nudged_steps=10,
                               step_size=1.0, activation=hopfield.scaled_sigmoid, nudging="positive")


def pytorch_target(budget_s: float, seeds: int, epochs: int) -> dict:
    split = data.mnist_subset()
    x = split.x_train.reshape(len(split.x_train), -1)
    xt = split.x_test.reshape(len(split.x_test), -1)
    trainer = laborieux_trainer()
    reference = common.external_reference("laborieux_ep")
    ref_seconds, ref_accuracy = reference["figure"]["seconds_per_epoch"], reference["figure"]["test_accuracy"]
    nb = len(x) // 50
    order = lambda seed, e: np.random.default_rng([seed, e]).permutation(len(x))[: nb * 50].reshape(nb, 50)  # noqa
    params = hopfield.init(jax.random.key(0), [784, 512, 10])
    opt_state = trainer.init(params)
    perm = order(0, 0)
    xs, ys = jnp.asarray(x[perm]), jnp.asarray(split.y_train[perm])
    epoch = lambda p, o, k, a, b: trainer.train_epoch(p, o, k, a, b)  # noqa: E731 (not donated: reused args)
    t = bench.time_fn(epoch, params, opt_state, jax.random.key(0), xs, ys, budget_s=budget_s, warmup=1,
                      min_calls=3)
    print(f"  one epoch (80 steps of batch 50): {t.summary()}", flush=True)
    print(f"  PyTorch original ({reference['label']}) {ref_seconds} s / ours {t.median_s:.3f} s = "
          f"{ref_seconds / t.median_s:.1f}x", flush=True)
    evaluate = jax.jit(lambda p: jnp.mean(jnp.argmax(trainer.predict(p, xt).state[-1], -1) == split.y_test))
    curves = []
    for seed in range(seeds):
        params = hopfield.init(jax.random.key(seed), [784, 512, 10])
        opt_state = trainer.init(params)
        curve = []
        for e in range(epochs):
            perm = order(seed, e)
            params, opt_state, _ = trainer.train_epoch(params, opt_state, jax.random.key(1000 * seed + e),
                                                       x[perm], split.y_train[perm])
            curve.append(float(evaluate(params)))
        curves.append(curve)
        print(f"  seed {seed}: test accuracy per epoch {[round(a, 4) for a in curve]}", flush=True)
    at2 = np.asarray([c[1] for c in curves])
    print(f"  test accuracy after 2 epochs: {at2.mean():.4f} +- {at2.std():.4f} ({seeds} seeds; PyTorch "
          f"{ref_accuracy:.3f})", flush=True)
    return dict(seconds_per_epoch=t.median_s, p20_s=t.p20_s, p80_s=t.p80_s, compile_s=t.compile_s,
                speedup_vs_pytorch=ref_seconds / t.median_s, test_accuracy_curves=curves,
                relaxation_steps={"free": 30, "nudged": 10, "stopping_rule": "none (fixed step counts)"},
                reference={"source": reference["source"]["name"], "label": reference["label"], **reference["figure"]},
                test_accuracy_epoch2_mean=float(at2.mean()), test_accuracy_epoch2_std=float(at2.std()))


def _naive_relax(params, state, x, y, beta, steps, step_size, activation):
    """Reference relaxation that recomputes the full energy (x W_0 included) at every step."""

    def total(s):
        f = hopfield.energy(params, s, x)
        return f if y is None else f + beta * hopfield.cost(s, y)

    def step(s, _):
        g = jax.grad(total)(s)
        return tuple(activation(si - step_size * gi) for si, gi in zip(s, g)), None

    return jax.lax.scan(step, state, None, length=steps)[0]


def ablations(budget_s: float) -> dict:
    """Interleaved A/B of the optimisations in the Laborieux setting (batch 50)."""
    trainer = laborieux_trainer()
    optimizer = optax.adam(5e-4)
    params = hopfield.init(jax.random.key(0), [784, 512, 10])
    opt_state = trainer.init(params)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(50, 784)).astype(np.float32)
    y = _labels(50)
    key = jax.random.key(0)
    kw = dict(free_steps=30, nudged_steps=10, step_size=1.0, activation=hopfield.scaled_sigmoid)
    batched = lambda p, o, k, xb, yb: trainer.train_step(p, o, k, xb, yb)[:2]  # noqa: E731

    def per_example(p, o, k, xb, yb):
        g = jax.vmap(lambda a, b: hopfield.eqprop_grad(p, a, b, 0.1, **kw)[0])(xb, jax.nn.one_hot(yb, 10))
        updates, o = optimizer.update(jax.tree.map(lambda t: t.mean(0), g), o, p)
        return optax.apply_updates(p, updates), o

    def phases(p, xb, yb, relax_fn):
        zeros = jax.vmap(lambda _: hopfield.zero_state(p))(xb)
        free = jax.vmap(lambda s, a: relax_fn(p, s, a, None, 0.0, 30))(zeros, xb)
        return free, jax.vmap(lambda s, a, b: relax_fn(p, s, a, b, 0.1, 10))(free, xb, yb)

    def library_relax(p, s, a, b, beta, steps):
        return hopfield.relax_energy(p, s, a, b, beta=beta, steps=steps, step_size=1.0,
                                     activation=hopfield.scaled_sigmoid).state

    def naive_relax(p, s, a, b, beta, steps):
        return _naive_relax(p, s, a, b, beta, steps, 1.0, hopfield.scaled_sigmoid)

    def update(p, o, grads):
        updates, o = optimizer.update(grads, o, p)
        return optax.apply_updates(p, updates), o

    def two_energies(p, o, k, xb, yb):
        free, nudged = phases(p, xb, jax.nn.one_hot(yb, 10), library_relax)

        def objective(q):
            e = jax.vmap(lambda lo, hi, a: hopfield.energy(q, hi, a) - hopfield.energy(q, lo, a))(free, nudged, xb)
            return jnp.mean(e) / 0.1

        return update(p, o, jax.grad(objective)(p))

    def recomputed_drive(p, o, k, xb, yb):
        free, nudged = phases(p, xb, jax.nn.one_hot(yb, 10), naive_relax)
        objective = lambda q: jnp.mean(jax.vmap(  # noqa: E731
            lambda lo, hi, a: hopfield.ep_objective(q, lo, hi, a, 0.1))(free, nudged, xb))
        return update(p, o, jax.grad(objective)(p))

    out = {}
    c = bench.compare(batched, per_example, params, opt_state, key, x, y, budget_s=budget_s)
    print(f"  batched weight gradient vs per-example gradients: {c.summary()}", flush=True)
    out["batched_vs_per_example"] = c._asdict()
    c = bench.compare(batched, two_energies, params, opt_state, key, x, y, budget_s=budget_s)
    print(f"  EP objective with one shared input drive vs two full energies: {c.summary()}", flush=True)
    out["shared_drive_vs_two_energies"] = c._asdict()
    c = bench.compare(batched, recomputed_drive, params, opt_state, key, x, y, budget_s=budget_s)
    print(f"  input drive hoisted out of the relaxation vs recomputed per step: {c.summary()}", flush=True)
    out["hoisted_vs_recomputed_drive"] = c._asdict()

    xs = jnp.asarray(rng.uniform(size=(20, 50, 784)).astype(np.float32))
    ys = jnp.asarray(rng.integers(0, 10, (20, 50)).astype(np.int32))
    fused = jax.jit(lambda p, o, k, a, b: trainer.train_epoch(p, o, k, a, b)[:2])
    step = jax.jit(lambda p, o, k, a, b: trainer.train_step(p, o, k, a, b)[:2])

    def python_loop(p, o, k, a, b):
        for i in range(a.shape[0]):
            p, o = step(p, o, jax.random.fold_in(k, i), a[i], b[i])
        return p, o

    step(params, opt_state, key, xs[0], ys[0])  # compile both outside the timing
    fused(params, opt_state, key, xs, ys)
    c = bench.compare(fused, python_loop, params, opt_state, key, xs, ys, budget_s=budget_s, jit=False)
    print(f"  fused epoch scan vs Python loop of jitted steps (20 steps): {c.summary()}", flush=True)
    out["fused_scan_vs_python_loop"] = c._asdict()
    return out


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "_asdict"):
        return _jsonable(obj._asdict())
    return obj


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller timing budgets and fewer epochs")
    parser.add_argument("--out", default="results", help="output folder")
    parser.add_argument("--sections", type=int, nargs="+", default=[1, 2, 3], choices=[1, 2, 3],
                        help="which sections to run (default all; the speed table reads section 2)")
    args = parser.parse_args(argv)
    budget = 0.5 if args.quick else 2.0
    device = jax.devices()[0].device_kind
    print(f"bench_eqprop on {device} ({jax.default_backend()})")
    result = dict(device_kind=device, backend=jax.default_backend(), sections=sorted(set(args.sections)))
    if 1 in args.sections:
        print("1. one EP training step, 784-500-10, 20 free + 4 nudged steps:")
        result["batch_sweep"] = batch_sweep(budget)
    if 2 in args.sections:
        print("2. Laborieux et al. EP MLP, MNIST-5k, 784-512-10, T1 30, T2 10, batch 50:")
        result["pytorch_target"] = pytorch_target(3 * budget, seeds=2 if args.quick else 5,
                                                  epochs=2 if args.quick else 5)
    if 3 in args.sections:
        print("3. optimisations, interleaved A/B (ratio < 1: A faster):")
        result["ablations"] = ablations(budget)
    path = common.write(args.out, "bench_eqprop", _jsonable(result))
    print(f"written {path}")
    return result


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"total {time.perf_counter() - start:.0f} s")
