"""NAGO speed: one training step of a sampled ~100k-parameter HNAG network, and the search's own overhead.

``python -m benchmarks.bench_nas`` reports

1. examples/second of one SGD train step (forward, backward, update; BatchNorm in train mode) of an architecture
   sampled from HNAG and width-fitted to ~100k parameters, on MNIST-sized 16 x 16 batches of 128: the first call
   (tracing + XLA compile + run, what every new trial pays once) against the compiled step (``jeq.bench.time_fn``:
   AOT compile reported apart, warm-up, median and p20/p80);
2. the overhead of the search machinery: a HNAG-BOHB study on a journal file runs ``--trials`` trials whose
   evaluator costs nothing (a deterministic learning curve of the sampled architecture), so all wall time is
   optuna's (TPE sampling, Hyperband, journal reads/writes, stale-trial checks) and architecture sampling; per
   trial, that is compared with the time of one real trial (one epoch of MNIST-5k at 16 px incl. compilation) as a
   fraction (goal < 5 %).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmarks import common
from jeq import bench, nas

THETA = dict(g1_nodes=4, g1_k=4, g1_p=0.5, g2_nodes=2, g2_p=0.5, g3_nodes=4, g3_k=2, g3_p=0.5)


def step_case(budget: int, batch: int, size: int):
    """(jitted train step, args, architecture, params) for the benchmark network."""
    arch = nas.sample_architecture(nas.HParams(**THETA), seed=0)
    width = nas.fit_width(arch, budget=budget)
    model = nas.Network(arch, width=width, rngs=nnx.Rngs(0))
    model.train()
    optimizer = nnx.Optimizer(model, nas.make_optimizer(steps_per_epoch=27, schedule_epochs=4), wrt=nnx.Param)
    graphdef, state = nnx.split((model, optimizer))
    model.eval()
    donating, _, _ = nas.make_steps(graphdef, nnx.graphdef(model), 1)
    step = jax.jit(donating.__wrapped__)  # the same step without buffer donation, so timed calls can reuse args
    x = jax.random.uniform(jax.random.key(0), (batch, size, size, 1))
    y = jnp.arange(batch) % 10
    return step, (state, x, y, jnp.ones(batch)), arch, nas.param_count(model)


def overhead(trials: int) -> dict:
    """Seconds per trial of the search machinery alone (zero-cost evaluator)."""
    spent = []

    def evaluator(config, theta, *, epochs, report):
        t0 = time.perf_counter()
        arch = nas.sample_architecture(nas.hparams_of(config.method, theta), seed=config.seed)
        for epoch in range(1, epochs + 1):
            report(epoch, 1.0 - 1.0 / (epoch + arch.num_operations / 10.0))
        spent.append(time.perf_counter() - t0)
        return nas.Evaluation(0.5, arch.num_operations, epochs, arch.fingerprint())

    config = nas.SearchConfig(method="hnag-bohb", trials=trials, min_epochs=1, max_epochs=4, dataset="mnist5k")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        nas.run_search(config, storage=f"journal:{tmp}/bench.journal", study_name="bench", evaluate=evaluator,
                       progress=False)
        total = time.perf_counter() - t0
    return {"trials": trials, "seconds_per_trial": total / trials, "evaluator_s_per_trial": float(np.mean(spent))}


def real_trial_seconds(size: int, budget: int) -> float:
    """Wall time of one real 1-epoch trial (build, compile, train an epoch, validate) of the benchmark network."""
    data = nas.load_dataset("mnist5k", image_size=size, validation=500)
    arch = nas.sample_architecture(nas.HParams(**THETA), seed=1)
    width = nas.fit_width(arch, budget=budget)
    return nas.train(arch, data, epochs=1, width=width, progress=False).seconds


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=100_000, help="parameter budget of the sampled network")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=16, help="image size (MNIST resized)")
    parser.add_argument("--trials", type=int, default=40, help="trials of the overhead study")
    parser.add_argument("--budget-s", type=float, default=5.0, help="timing budget of the compiled step")
    args = parser.parse_args(argv)
    print(f"backend: {jax.default_backend()} ({jax.devices()[0].device_kind})", flush=True)
    step, step_args, arch, params = step_case(args.budget, args.batch, args.size)
    t0 = time.perf_counter()
    jax.block_until_ready(step(*step_args))
    first = time.perf_counter() - t0
    timing = bench.time_fn(step, *step_args, budget_s=args.budget_s)
    results = {
        "architecture": arch.fingerprint(), "operations": arch.num_operations, "params": params,
        "batch": args.batch, "image_size": args.size,
        "first_call_s": first, "compile_s": timing.compile_s, "step_median_s": timing.median_s,
        "step_p20_s": timing.p20_s, "step_p80_s": timing.p80_s,
        "examples_per_s_jit": args.batch / timing.median_s, "examples_per_s_first_call": args.batch / first,
    }
    print(f"train step, {arch.num_operations} ops, {params:,} params, batch {args.batch} @ {args.size}px: "
          f"first call {first:.1f} s ({args.batch / first:.1f} ex/s); compiled {timing.summary()} "
          f"= {args.batch / timing.median_s:,.0f} ex/s", flush=True)
    over = overhead(args.trials)
    trial = real_trial_seconds(args.size, args.budget)
    results.update({"search_overhead_s_per_trial": over["seconds_per_trial"], "real_1epoch_trial_s": trial,
                    "overhead_fraction": over["seconds_per_trial"] / trial, "overhead_trials": over["trials"]})
    print(f"search overhead: {over['seconds_per_trial'] * 1e3:.0f} ms per trial over {over['trials']} trials; one "
          f"real 1-epoch trial {trial:.1f} s -> {100 * over['seconds_per_trial'] / trial:.2f} % (goal < 5 %)",
          flush=True)
    results["provenance"] = common.provenance()
    print(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
