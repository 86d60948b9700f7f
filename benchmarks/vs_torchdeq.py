"""jeq's plain DEQ against TorchDEQ's, trained side by side in one process with identical settings.

``python -m benchmarks.vs_torchdeq [--quick] [--epochs N]`` (needs the ``anchors`` extra: torch CPU and torchdeq;
jeq itself never imports torch).

Both sides train the same model from the same initial weights on the same minibatches of MNIST-5k
(``jeq.data.mnist_subset``: pixels in [0, 1], flattened, float32), batch 128, Adam 1e-3:

    z* = relu(W z* + U x + b),   logits = W_c z* + b_c,   loss = mean cross-entropy

* forward: Anderson (history 6, ridge 1e-4), stop when every example of the batch has ||f(z) - z|| <= 1e-3
  (absolute; TorchDEQ's batch-level test, jeq's ``axis_name`` batch stop), at most 40 evaluations;
* backward: implicit differentiation, the adjoint u = J^T u + g solved by Anderson to ||.|| <= 1e-6 (absolute),
  at most 40 steps (TorchDEQ ``ift=True, b_solver='anderson', b_tol=1e-6``).

Known differences that remain: TorchDEQ's Anderson ridge is absolute (lam * I added to G G^T), jeq's is relative to the
mean squared residual; TorchDEQ returns f(z*) (one more layer evaluation, with graph) where jeq returns z*; TorchDEQ
keeps the lowest-residual iterate, jeq the last.

Timing: every training step is one pair (jeq step, TorchDEQ step), run back to back in alternating order, each ended
by ``jax.block_until_ready`` / a synchronous CPU step. jeq's step is compiled before the loop; the first ``--warmup``
pairs are left out of the statistics. Reported: median and p20/p80 of the per-step ratio t_TorchDEQ / t_jeq (> 1:
jeq faster), each side's median ms/step, forward steps and converged fraction of every step on both sides, the
backward (adjoint) steps (TorchDEQ per step through its ``backward_writer``; jeq's adjoint runs inside the VJP and is
re-solved on a fixed batch after every epoch with ``jeq.equilibrium.adjoint_report``), and test accuracy and test-set
forward steps after training (plus, untimed, TorchDEQ's test-set solve with its absolute ridge lowered to 1e-8: the
default 1e-4 outweighs G G^T once residuals are ~1e-3, which slows its Anderson late in training). One run's test
accuracy moves by ~0.01 with the initialisation (and with float rounding), so ``--accuracy-seeds N`` trains both sides
again from seeds 1..N (untimed) and records the mean and spread of both accuracies over the N + 1 seeds. Written to
``results/bench_vs_torchdeq/<timestamp>.json`` with git SHA, versions and device.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import common
from experiments.speed_table import ratio_summary
from jeq import bench, data
from jeq import equilibrium as eq
from jeq import fixedpoint as fp

SETTINGS = dict(features=784, hidden=87, classes=10, batch=128, learning_rate=1e-3, forward_tol=1e-3,
                forward_maxiter=40, adjoint_tol=1e-6, adjoint_maxiter=40, anderson_history=6, anderson_ridge=1e-4,
                dtype="float32", seed=0, init="jeq.equilibrium.deq init (W spectral norm 0.5), copied to torch")


def jeq_model():
    """jeq's plain DEQ in the shared settings (batch-level stop over ``eq.BATCH_AXIS``, as TorchDEQ stops)."""
    s = SETTINGS
    solver = fp.anderson(history=s["anderson_history"], ridge=s["anderson_ridge"])
    return eq.deq(features=s["features"], hidden=s["hidden"], classes=s["classes"], solver=solver,
                  tol=s["forward_tol"], rtol=0.0, maxiter=s["forward_maxiter"],
                  backward=fp.implicit(solver=solver, tol=s["adjoint_tol"], rtol=0.0, maxiter=s["adjoint_maxiter"]),
                  axis_name=eq.BATCH_AXIS)


def torch_model(params):
    """TorchDEQ's plain DEQ with jeq's initial ``params`` copied in (imports torch: only here)."""
    import torch
    import torchdeq

    s = SETTINGS

    class PlainDEQ(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Linear(s["hidden"], s["hidden"], bias=False)
            self.injection = torch.nn.Linear(s["features"], s["hidden"])
            self.readout = torch.nn.Linear(s["hidden"], s["classes"])
            self.deq = torchdeq.get_deq(core="sliced", ift=True, f_solver="anderson", b_solver="anderson",
                                        f_max_iter=s["forward_maxiter"], b_max_iter=s["adjoint_maxiter"],
                                        f_tol=s["forward_tol"], b_tol=s["adjoint_tol"], f_stop_mode="abs",
                                        b_stop_mode="abs")
            with torch.no_grad():
                for module, weight, bias in ((self.weight, params.weight, None),
                                             (self.injection, params.injection, params.bias),
                                             (self.readout, params.readout, params.readout_bias)):
                    module.weight.copy_(torch.from_numpy(np.array(weight)))
                    if bias is not None:
                        module.bias.copy_(torch.from_numpy(np.array(bias)))

        def forward(self, x, writer=None, solver_kwargs=None):
            c = self.injection(x)
            z0 = torch.zeros(x.shape[0], s["hidden"], dtype=x.dtype)
            z_out, info = self.deq(lambda z: torch.relu(self.weight(z) + c), z0, backward_writer=writer,
                                   solver_kwargs=solver_kwargs)
            return self.readout(z_out[-1]), info

    return PlainDEQ()


def train(epochs: int, warmup: int, seed: int | None = None) -> dict:
    import torch
    import torch.nn.functional as F

    s = SETTINGS
    seed = s["seed"] if seed is None else seed
    split = data.mnist_subset()
    x_train = split.x_train.reshape(len(split.x_train), -1).astype(np.float32)
    x_test = split.x_test.reshape(len(split.x_test), -1).astype(np.float32)
    model = jeq_model()
    params = model.init(jax.random.key(seed))
    optimizer = optax.adam(s["learning_rate"])
    opt_state = optimizer.init(params)
    step = eq.make_train_step(model.apply, optimizer)
    net = torch_model(params)
    torch_opt = torch.optim.Adam(net.parameters(), lr=s["learning_rate"])
    xb0, yb0 = jnp.asarray(x_train[:s["batch"]]), jnp.asarray(split.y_train[:s["batch"]])
    t0 = time.perf_counter()
    jax.block_until_ready(step(params, opt_state, xb0, yb0))  # compile (result discarded: the step is pure)
    compile_s = time.perf_counter() - t0

    def jeq_step(p, o, xb, yb):
        start = time.perf_counter()
        p, o, metrics = step(p, o, xb, yb)
        jax.block_until_ready((p, o, metrics))
        return p, o, metrics, time.perf_counter() - start

    backward_infos = []

    def torch_step(xb, yb):
        start = time.perf_counter()
        torch_opt.zero_grad(set_to_none=True)
        logits, info = net(xb, writer=backward_infos.append)
        loss = F.cross_entropy(logits, yb)
        loss.backward()
        torch_opt.step()
        return info, loss.detach(), time.perf_counter() - start

    rec = {k: [] for k in ("epoch", "jeq_first", "jeq_s", "torchdeq_s", "jeq_forward_steps", "jeq_converged",
                           "torchdeq_forward_steps", "torchdeq_converged", "torchdeq_adjoint_steps",
                           "torchdeq_adjoint_converged", "jeq_loss", "torchdeq_loss")}
    adjoint = []
    pair = 0
    for epoch in range(epochs):
        for xb, yb in data.batches(x_train, split.y_train, s["batch"], seed=seed, epoch=epoch):
            jx, jy = jnp.asarray(xb), jnp.asarray(yb)
            jax.block_until_ready((jx, jy))
            tx, ty = torch.from_numpy(np.ascontiguousarray(xb)), torch.from_numpy(yb.astype(np.int64))
            backward_infos.clear()
            jeq_first = pair % 2 == 0
            if jeq_first:
                params, opt_state, metrics, tj = jeq_step(params, opt_state, jx, jy)
                info, loss_t, tt = torch_step(tx, ty)
            else:
                info, loss_t, tt = torch_step(tx, ty)
                params, opt_state, metrics, tj = jeq_step(params, opt_state, jx, jy)
            pair += 1
            (b_info,) = backward_infos
            rec["epoch"].append(epoch)
            rec["jeq_first"].append(jeq_first)
            rec["jeq_s"].append(tj)
            rec["torchdeq_s"].append(tt)
            rec["jeq_forward_steps"].append(float(metrics.mean_steps))
            rec["jeq_converged"].append(float(metrics.converged))
            rec["jeq_loss"].append(float(metrics.loss))
            rec["torchdeq_forward_steps"].append(float(info["nstep"].float().mean()))
            rec["torchdeq_converged"].append(float((info["abs_lowest"] <= s["forward_tol"]).float().mean()))
            rec["torchdeq_adjoint_steps"].append(float(b_info["nstep"].float().mean()))
            rec["torchdeq_adjoint_converged"].append(float((b_info["abs_lowest"] <= s["adjoint_tol"]).float().mean()))
            rec["torchdeq_loss"].append(float(loss_t))
        report = eq.adjoint_report(model, params, xb0, yb0)
        adjoint.append({"epoch": epoch, "mean_steps": report.mean_steps,
                        "converged_fraction": report.converged_fraction,
                        "max_residual": report.max_residual})
        print(f"  epoch {epoch + 1}/{epochs}: last step jeq {1e3 * tj:.2f} ms ({rec['jeq_forward_steps'][-1]:.0f} "
              f"fwd steps), TorchDEQ {1e3 * tt:.2f} ms ({rec['torchdeq_forward_steps'][-1]:.1f} fwd steps); jeq "
              f"adjoint on the fixed batch {report.mean_steps:.1f} steps, {100 * report.converged_fraction:.0f} % "
              f"converged", flush=True)
    return dict(records=rec, jeq_adjoint_per_epoch=adjoint, jeq_compile_s=compile_s,
                test=_test(model, params, net, x_test, split.y_test))


def _test(model, params, net, x_test, y_test) -> dict:
    import torch

    evaluate = eq.make_eval_step(model.apply)
    sums = evaluate(params, jnp.asarray(x_test), jnp.asarray(y_test))
    count = float(sums.count)
    net.eval()
    with torch.no_grad():
        logits, info = net(torch.from_numpy(x_test))
        _, small_ridge = net(torch.from_numpy(x_test), solver_kwargs={"lam": 1e-8})
    net.train()
    return {
        "jeq": {"accuracy": float(sums.correct) / count, "mean_forward_steps": float(sums.steps) / count},
        "torchdeq": {"accuracy": float((logits.argmax(-1).numpy() == y_test).mean()),
                     "mean_forward_steps": float(info["nstep"].float().mean()),
                     "forward_converged": float((info["abs_lowest"] <= SETTINGS["forward_tol"]).float().mean())},
        "torchdeq_ridge_1e-8_diagnostic": {
            "note": "TorchDEQ's Anderson ridge lam is absolute (lam * I + G G^T); at residuals ~1e-3 the default 1e-4 "
                    "outweighs G G^T ~1e-6. The trained model's test-set forward solve rerun with lam 1e-8 (not "
                    "timed, not used in training) shows how much of the step gap that explains.",
            "mean_forward_steps": float(small_ridge["nstep"].float().mean()),
            "forward_converged": float((small_ridge["abs_lowest"] <= SETTINGS["forward_tol"]).float().mean())},
    }


def summarise(rec: dict, keep: np.ndarray) -> dict:
    """Ratio statistics and per-side means over the step pairs selected by the boolean mask ``keep``."""
    pick = {k: np.asarray(v)[keep] for k, v in rec.items()}

    def side(name):
        t = pick[f"{name}_s"]
        out = {"median_ms": float(np.median(t) * 1e3), "p20_ms": float(np.percentile(t, 20) * 1e3),
               "p80_ms": float(np.percentile(t, 80) * 1e3),
               "forward_steps": float(pick[f"{name}_forward_steps"].mean()),
               "forward_converged": float(pick[f"{name}_converged"].mean()),
               "hit_maxiter_fraction": float((pick[f"{name}_forward_steps"] >= SETTINGS["forward_maxiter"]).mean())}
        if name == "torchdeq":
            out["adjoint_steps"] = float(pick["torchdeq_adjoint_steps"].mean())
            out["adjoint_converged"] = float(pick["torchdeq_adjoint_converged"].mean())
        return out

    return {"ratio_torchdeq_over_jeq": ratio_summary(pick["torchdeq_s"], pick["jeq_s"]),
            "jeq": side("jeq"), "torchdeq": side("torchdeq")}


def set_threads(threads: int) -> str:
    """One thread count for both sides: torch's intra-op pool and XLA's CPU Eigen pool (XLA_FLAGS is read when the
    CPU backend starts, so this must run before the first JAX computation). Returns the XLA flags used."""
    import os

    import torch

    if threads < 1:
        raise ValueError(f"benchmarks.vs_torchdeq.set_threads(threads={threads}): must be >= 1")
    torch.set_num_threads(threads)
    flags = (f"--xla_cpu_multi_thread_eigen={'false' if threads == 1 else 'true'} "
             f"intra_op_parallelism_threads={threads}")
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()
    return flags


def accuracy_over_seeds(test: dict, epochs: int, warmup: int, extra: int) -> dict:
    """Test accuracy of both sides over seed 0 (the timed run's ``test``) and seeds 1..``extra`` (trained the same
    way, timings discarded): a single 20-epoch run's accuracy moves by ~0.01 with the initialisation and with float
    rounding, so equal accuracy is judged on the mean over seeds."""
    runs = {SETTINGS["seed"]: test}
    for seed in range(1, extra + 1):
        runs[seed] = train(epochs, warmup, seed=seed)["test"]
        print(f"  seed {seed}: test accuracy jeq {runs[seed]['jeq']['accuracy']:.3f}, TorchDEQ "
              f"{runs[seed]['torchdeq']['accuracy']:.3f}", flush=True)
    out = {"seeds": list(runs)}
    for side in ("jeq", "torchdeq"):
        values = [run[side]["accuracy"] for run in runs.values()]
        out[side] = {"values": values, "mean": float(np.mean(values)), "std": float(np.std(values))}
    print(f"  over {len(runs)} seeds: test accuracy jeq {out['jeq']['mean']:.4f} +- {out['jeq']['std']:.4f}, "
          f"TorchDEQ {out['torchdeq']['mean']:.4f} +- {out['torchdeq']['std']:.4f}", flush=True)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 epochs instead of 20")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default 20, --quick 2)")
    parser.add_argument("--warmup", type=int, default=3, help="first step pairs left out of the statistics")
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads of BOTH sides (torch.set_num_threads and XLA's CPU Eigen pool); "
                             "default 1: on a loaded 2-core machine torch's 2-thread OpenMP steps stall (measured "
                             "0.4-3 s per step instead of ~40 ms)")
    parser.add_argument("--accuracy-seeds", type=int, default=0,
                        help="train both sides again from this many more initialisations (seeds 1..N: init and batch "
                             "order), untimed, for the spread of the test accuracies")
    parser.add_argument("--out", default="results", help="results folder")
    args = parser.parse_args(argv)
    xla_flags = set_threads(args.threads)
    limits = bench.single_threaded_blas()  # noqa: F841  (scipy's OpenBLAS behind JAX's LAPACK calls: one thread)
    import torch

    epochs = args.epochs or (2 if args.quick else 20)
    print(f"vs_torchdeq: {epochs} epochs of MNIST-5k, batch {SETTINGS['batch']}; torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), jax {jax.__version__} ({jax.default_backend()})", flush=True)
    run = train(epochs, args.warmup)
    rec = run["records"]
    n = len(rec["jeq_s"])
    index = np.arange(n)
    epoch = np.asarray(rec["epoch"])
    summary = {"all": summarise(rec, index >= args.warmup), "last_epoch": summarise(rec, epoch == epoch.max())}
    for name, s in summary.items():
        r, j, t = s["ratio_torchdeq_over_jeq"], s["jeq"], s["torchdeq"]
        print(f"  {name:10s} TorchDEQ / jeq = {r['median']:.2f} [p20 {r['p20']:.2f}, p80 {r['p80']:.2f}] over "
              f"{r['n']} steps; jeq {j['median_ms']:.2f} ms, {j['forward_steps']:.1f} fwd steps, "
              f"{100 * j['forward_converged']:.0f} % conv.; TorchDEQ {t['median_ms']:.2f} ms, "
              f"{t['forward_steps']:.1f} fwd steps, {100 * t['forward_converged']:.0f} % conv., adjoint "
              f"{t['adjoint_steps']:.1f} steps ({100 * t['adjoint_converged']:.0f} % conv.)", flush=True)
    test = run["test"]
    diag = test["torchdeq_ridge_1e-8_diagnostic"]
    print(f"  test accuracy jeq {test['jeq']['accuracy']:.3f}, TorchDEQ {test['torchdeq']['accuracy']:.3f}; test-set "
          f"forward steps jeq {test['jeq']['mean_forward_steps']:.1f}, TorchDEQ "
          f"{test['torchdeq']['mean_forward_steps']:.1f} ({100 * test['torchdeq']['forward_converged']:.0f} % conv.), "
          "TorchDEQ with ridge 1e-8 "
          f"{diag['mean_forward_steps']:.1f} ({100 * diag['forward_converged']:.0f} % conv.)")
    if args.accuracy_seeds:
        test["seeds"] = accuracy_over_seeds(test, epochs, args.warmup, args.accuracy_seeds)
    result = {"benchmark": "vs_torchdeq", "settings": SETTINGS, "epochs": epochs, "warmup_pairs": args.warmup,
              "threads": {"torch": torch.get_num_threads(), "xla_flags": xla_flags}, "summary": summary, "test": test,
              "jeq_adjoint_per_epoch": run["jeq_adjoint_per_epoch"], "jeq_compile_s": run["jeq_compile_s"],
              "steps": rec}
    path = common.write(args.out, "bench_vs_torchdeq", result, extra_packages=("torch", "torchdeq"))
    print(f"written {path}")
    return result


if __name__ == "__main__":
    main()
