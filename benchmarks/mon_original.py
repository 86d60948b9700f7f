"""The original MON code (locuslab/monotone_op_net, PyTorch) against jeq's MON, trained side by side in one process.

``python -m benchmarks.mon_original --repo PATH --commit SHA [--epochs 20]``

``PATH`` is a checkout of https://github.com/locuslab/monotone_op_net (not a package: its ``mon.py``,
``splitting.py`` and ``utils.py`` are imported from there as they are; ``SHA`` is recorded). The model is the
repository's ``SingleFcNet(MONPeacemanRachford, in_dim=784, out_dim=87, alpha=1.0, max_iter=300, tol=1e-2, m=1.0)``
(its ``experiments.ipynb`` MNIST FC cell), built from the same three lines as ``train.SingleFcNet``, because
``train.py`` needs torchvision for its data loaders: its only helper that ``utils.py`` imports, ``cuda()``, is the
identity on a CPU machine and is supplied as such. Training: MNIST-5k (``jeq.data.mnist_subset``, pixels in [0, 1],
flattened, float32; the same minibatches as jeq's benchmark), batch 128, Adam 1e-3 at a constant rate (the notebook's
StepLR(10) decays only after epoch 10; jeq's side trains at a constant 1e-3), from jeq's initial weights (A, B, U, b,
W_c, b_c copied in, so both sides start from the same model).

jeq's MON in bench_equilibrium's reference settings (Peaceman-Rachford, alpha 1, tol 1e-6 + rtol 1e-2 on the
residual, batch-level stop, 300 steps, Adam 1e-3) trains side by side in the same process on the same minibatches:
each training step is a pair (original step, jeq step) run back to back in alternating order, with one intra-op thread
on both sides (``--threads``). Recorded per step: both wall times (forward, backward, Adam), the original's forward
and backward splitting iterations (its own ``stats.fwd_iters`` / ``bkwd_iters``) and whether its forward stopped before
``max_iter`` (its stop: relative change ||z_k+1 - z_k|| / ||z_k+1|| <= 1e-2 over the batch), jeq's mean forward steps
and converged fraction. Reported over the last epoch (trained parameters): median and p20/p80 ms per step of the
original, and the paired ratio t_original / t_jeq (median, p20, p80), with test accuracy of both. Written to
``results/bench_mon_original/<timestamp>.json`` with git SHA, versions (torch included), device and the original's
commit; ``experiments.speed_table`` prefers this same-process row to the quoted figure in
``results/external_references.json``.
"""

from __future__ import annotations

import argparse
import importlib
import pathlib
import platform
import sys
import time
import types

import numpy as np

from benchmarks import common
from benchmarks.bench_equilibrium import reference_models as jeq_reference_models
from benchmarks.vs_torchdeq import set_threads
from experiments.speed_table import ratio_summary
from jeq import bench, data
from jeq import equilibrium as eq

SETTINGS = dict(in_dim=784, out_dim=87, alpha=1.0, max_iter=300, tol=1e-2, m=1.0, batch=128, learning_rate=1e-3,
                seed=0)


def load_original(repo: pathlib.Path):
    """Import the original's ``mon`` and ``splitting`` modules from ``repo`` (``train.cuda`` supplied as identity)."""
    if not (repo / "splitting.py").exists():
        raise FileNotFoundError(f"benchmarks.mon_original.load_original(repo={str(repo)!r}): no splitting.py there; "
                                "must be a checkout of locuslab/monotone_op_net")
    sys.modules.setdefault("train", types.SimpleNamespace(cuda=lambda tensor: tensor))
    sys.path.insert(0, str(repo))
    return importlib.import_module("mon"), importlib.import_module("splitting")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True, type=pathlib.Path, help="checkout of locuslab/monotone_op_net")
    parser.add_argument("--commit", required=True, help="the checkout's commit (recorded)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1: 2-thread OpenMP steps stall on a loaded 2-core machine)")
    parser.add_argument("--out", default=None, help="results folder (default results)")
    args = parser.parse_args(argv)
    xla_flags = set_threads(args.threads)
    limits = bench.single_threaded_blas()  # noqa: F841  (scipy's OpenBLAS behind JAX's LAPACK calls: one thread)
    import jax
    import jax.numpy as jnp
    import optax
    import torch

    mon, splitting = load_original(args.repo.resolve())
    s = SETTINGS
    layer = splitting.MONPeacemanRachford(mon.MONSingleFc(s["in_dim"], s["out_dim"], m=s["m"]), mon.MONReLU(),
                                          alpha=s["alpha"], tol=s["tol"], max_iter=s["max_iter"])
    readout = torch.nn.Linear(s["out_dim"], 10)
    jeq_model = jeq_reference_models()["mon"]
    jeq_opt = optax.adam(s["learning_rate"])
    params = jeq_model.init(jax.random.key(s["seed"]))
    with torch.no_grad():  # the same initial weights on both sides
        linear = layer.linear_module
        for module, weight, bias in ((linear.A, params.a, None), (linear.B, params.b, None),
                                     (linear.U, params.injection, params.bias),
                                     (readout, params.readout, params.readout_bias)):
            module.weight.copy_(torch.from_numpy(np.array(weight)))
            if bias is not None:
                module.bias.copy_(torch.from_numpy(np.array(bias)))
    model = torch.nn.ModuleDict({"mon": layer, "Wout": readout})

    def forward(x):
        return readout(layer(x)[-1])  # train.SingleFcNet.forward

    optimizer = torch.optim.Adam(model.parameters(), lr=s["learning_rate"])
    split = data.mnist_subset()
    x_train = split.x_train.reshape(len(split.x_train), -1).astype(np.float32)
    x_test = torch.from_numpy(split.x_test.reshape(len(split.x_test), -1).astype(np.float32))
    opt_state = jeq_opt.init(params)
    jeq_step = eq.make_train_step(jeq_model.apply, jeq_opt)
    jax.block_until_ready(jeq_step(params, opt_state, jnp.asarray(x_train[:128]), jnp.asarray(split.y_train[:128])))

    def original_step(x, y):
        start = time.perf_counter()
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(forward(x), y).backward()
        optimizer.step()
        return time.perf_counter() - start

    def jeq_timed(p, o, x, y):
        start = time.perf_counter()
        p, o, metrics = jeq_step(p, o, x, y)
        jax.block_until_ready((p, o, metrics))
        return p, o, metrics, time.perf_counter() - start

    rec = {k: [] for k in ("epoch", "seconds", "forward_iters", "backward_iters", "jeq_seconds", "jeq_forward_steps",
                           "jeq_converged")}
    pair = 0
    for epoch in range(args.epochs):
        for xb, yb in data.batches(x_train, split.y_train, s["batch"], seed=s["seed"], epoch=epoch):
            x, y = torch.from_numpy(np.ascontiguousarray(xb)), torch.from_numpy(yb.astype(np.int64))
            jx, jy = jnp.asarray(xb), jnp.asarray(yb)
            if pair % 2 == 0:
                seconds = original_step(x, y)
                params, opt_state, metrics, jeq_seconds = jeq_timed(params, opt_state, jx, jy)
            else:
                params, opt_state, metrics, jeq_seconds = jeq_timed(params, opt_state, jx, jy)
                seconds = original_step(x, y)
            pair += 1
            rec["seconds"].append(seconds)
            rec["jeq_seconds"].append(jeq_seconds)
            rec["jeq_forward_steps"].append(float(metrics.mean_steps))
            rec["jeq_converged"].append(float(metrics.converged))
            rec["epoch"].append(epoch)
            rec["forward_iters"].append(layer.stats.fwd_iters.val)
            rec["backward_iters"].append(layer.stats.bkwd_iters.val)
        print(f"  epoch {epoch + 1}/{args.epochs}: {1e3 * np.median(rec['seconds'][-31:]):.2f} ms/step, "
              f"{np.mean(rec['forward_iters'][-31:]):.1f} fwd / {np.mean(rec['backward_iters'][-31:]):.1f} bwd iters",
              flush=True)
    with torch.no_grad():
        accuracy = float((forward(x_test).argmax(1).numpy() == split.y_test).mean())
    sums = eq.make_eval_step(jeq_model.apply)(params, jnp.asarray(x_test.numpy()), jnp.asarray(split.y_test))
    last = np.asarray(rec["epoch"]) == args.epochs - 1
    t = np.asarray(rec["seconds"])[last] * 1e3
    tj = np.asarray(rec["jeq_seconds"])[last] * 1e3
    fwd = np.asarray(rec["forward_iters"])[last]
    jeq_side = {"ms_per_step": float(np.median(tj)), "p20_ms": float(np.percentile(tj, 20)),
                "p80_ms": float(np.percentile(tj, 80)), "test_accuracy": float(sums.correct) / float(sums.count),
                "forward_steps": float(np.mean(np.asarray(rec["jeq_forward_steps"])[last])),
                "forward_converged": float(np.mean(np.asarray(rec["jeq_converged"])[last])),
                "forward_maxiter": jeq_model.settings.maxiter}
    ratio = ratio_summary(t, tj)
    figure = {"ms_per_step": float(np.median(t)), "p20_ms": float(np.percentile(t, 20)),
              "p80_ms": float(np.percentile(t, 80)), "test_accuracy": accuracy,
              "forward_steps": float(fwd.mean()), "forward_converged": float((fwd < s["max_iter"]).mean()),
              "backward_steps": float(np.mean(np.asarray(rec["backward_iters"])[last])), "epochs": args.epochs,
              "same_process_ratio_original_over_jeq": ratio, "jeq_in_same_process": jeq_side,
              "unit_note": "one training step (forward, backward, Adam) of a batch of 128, median over the last "
                           "epoch's steps; converged = the forward stopped before max_iter 300"}
    print(f"  original MON: {figure['ms_per_step']:.2f} ms/step [p20 {figure['p20_ms']:.2f}, p80 "
          f"{figure['p80_ms']:.2f}], {figure['forward_steps']:.1f} fwd iters "
          f"({100 * figure['forward_converged']:.0f} % before max_iter), test {accuracy:.3f} after {args.epochs} "
          "epochs")
    print(f"  jeq MON: {jeq_side['ms_per_step']:.2f} ms/step, {jeq_side['forward_steps']:.1f} fwd steps "
          f"({100 * jeq_side['forward_converged']:.0f} % converged), test {jeq_side['test_accuracy']:.3f}; original / "
          f"jeq = {ratio['median']:.2f} [p20 {ratio['p20']:.2f}, p80 {ratio['p80']:.2f}] over {ratio['n']} steps")
    result = {"figure": figure, "settings": SETTINGS, "threads": {"torch": args.threads, "xla_flags": xla_flags},
              "commit": args.commit, "steps": rec}
    path = common.write("results" if args.out is None else args.out, "bench_mon_original", result,
                        extra_packages=("torch",))
    print(f"written {path}")
    print(f"python {platform.python_version()}, torch {torch.__version__}")
    return result


if __name__ == "__main__":
    main()
