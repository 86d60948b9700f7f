"""Examples per second of one data-parallel training step at 1, 2 and 4 devices (OptEq, EP, ReLU RNN).

    python -m benchmarks.bench_sharding                      # CPU: forced host devices 1, 2, 4, one subprocess each
    python -m benchmarks.bench_sharding --devices 1 --no-force   # whatever devices exist (e.g. one GPU)

Each case is the library's own jitted training step wrapped by :func:`jeq.sharding.data_parallel` (parameters
replicated, batch split over a ``("data",)`` mesh, gradients reduced by XLA) and timed with :func:`jeq.bench.time_fn`:

* ``opteq``: dense OptEq 784-87-10, Anderson tol 1e-3, implicit backward, batch 128, Adam;
* ``ep``:    centered EP on a 784-500-10 Hopfield net, 20 free / 4 nudged steps, batch 128;
* ``rnn``:   ReLU RNN with 100 hidden units on the adding problem (T = 100), path-SGD, batch 128.

On a CPU the N "devices" are forced host devices (``--xla_force_host_platform_device_count``) sharing the same two
cores: the numbers show correctness and partitioning overhead, not speed-up. Results go to
``<out>/bench_sharding/<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys

CASES = ("opteq", "ep", "rnn")


def _case(name: str, batch: int):
    """(step, args with the batch last, batch_argnums) for one case, single-device arrays."""
    import jax
    import optax

    from jeq import data

    if name == "opteq":
        from jeq import equilibrium as eq

        model = eq.opteq(features=784, hidden=87, classes=10, tol=1e-3, axis_name=eq.BATCH_AXIS)
        tx = optax.adam(1e-3)
        params = model.init(jax.random.key(0))
        step = eq.make_train_step(model.apply, tx)
        x = data.mnist_subset().x_train[:batch].reshape(batch, -1)
        y = data.mnist_subset().y_train[:batch]
        return step, (params, tx.init(params)), (x, y), 2
    if name == "ep":
        from jeq.eqprop import hopfield

        trainer = hopfield.ep_trainer(hopfield.layer_sgd((0.1, 0.05)), beta=0.5, free_steps=20, nudged_steps=4,
                                      nudging="centered")
        params = hopfield.init(jax.random.key(0), [784, 500, 10])
        x = data.mnist_subset().x_train[:batch].reshape(batch, -1)
        y = data.mnist_subset().y_train[:batch]
        return trainer.train_step, (params, trainer.init(params), jax.random.key(1)), (x, y), 3
    if name == "rnn":
        from jeq import pathsgd

        params = pathsgd.init_rnn(jax.random.key(0), input_size=2, hidden_size=100, output_size=1)
        tx = pathsgd.make_optimizer("path_sgd", learning_rate=1e-3, max_norm=10.0,
                                    path_sum=functools.partial(pathsgd.rnn_path_sum, length=100, head="many_to_one"))

        def loss(p, x, y):
            return (pathsgd.rnn_apply(p, x, head="many_to_one")[0] - y) ** 2

        step = pathsgd.make_rnn_train_step(loss, tx)
        x, y = data.adding_problem(jax.random.key(2), batch, 100)
        return step, (params, tx.init(params)), (x, y), 2
    raise ValueError(f"benchmarks.bench_sharding: unknown case {name!r}; choose from {CASES}")


def measure(name: str, devices: int, batch: int, budget_s: float) -> dict:
    """Examples/second of one sharded training step of case ``name`` on the first ``devices`` devices."""
    import jax

    from jeq import bench, sharding

    step, state, batch_arrays, first_batch_arg = _case(name, batch)
    mesh = sharding.data_mesh(devices)
    n_state = len(state)
    parallel = sharding.data_parallel(step, mesh, batch_argnums=range(first_batch_arg, first_batch_arg + 3))
    placed_state = sharding.replicate(state, mesh)
    *placed_batch, weight = sharding.shard_batch(tuple(batch_arrays), mesh)
    args = (*placed_state, *placed_batch, weight)
    assert n_state == first_batch_arg
    timing = bench.time_fn(parallel, *args, jit=False, budget_s=budget_s, warmup=2, min_calls=3)
    return {
        "case": name, "devices": devices, "batch": batch, "backend": jax.default_backend(),
        "device_kind": jax.devices()[0].device_kind, "median_s": timing.median_s, "p20_s": timing.p20_s,
        "p80_s": timing.p80_s, "examples_per_s": batch / timing.median_s,
    }


def _child(args) -> None:
    rows = [measure(c, args.child_devices, args.batch, args.budget_s) for c in args.cases]
    print("JSON" + json.dumps(rows))


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--budget-s", type=float, default=2.0)
    parser.add_argument("--out", default="results")
    parser.add_argument("--no-force", action="store_true", help="use the real devices, no forced CPU devices")
    parser.add_argument("--child-devices", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.child_devices is not None:
        _child(args)
        return []
    rows: list[dict] = []
    for n in args.devices:
        env = dict(os.environ)
        if not args.no_force:
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={n}").strip()
            env["JAX_PLATFORMS"] = "cpu"
        cmd = [sys.executable, "-m", "benchmarks.bench_sharding", "--child-devices", str(n), "--batch",
               str(args.batch), "--budget-s", str(args.budget_s), "--cases", *args.cases]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            print(f"devices={n}: failed\n{proc.stderr[-3000:]}", file=sys.stderr)
            rows.append({"devices": n, "error": proc.stderr[-2000:]})
            continue
        line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("JSON"))
        rows += json.loads(line[4:])
    forced = "forced CPU devices sharing the same cores" if not args.no_force else "real devices"
    print(f"examples/second of one training step, batch {args.batch} ({forced}):")
    print(f"{'case':8s} " + " ".join(f"{n:>10d}" for n in args.devices))
    for case in args.cases:
        vals = {r["devices"]: r.get("examples_per_s") for r in rows if r.get("case") == case}
        print(f"{case:8s} " + " ".join(f"{vals[n]:10.0f}" if vals.get(n) else f"{'-':>10s}" for n in args.devices))
    from benchmarks import common

    path = common.write(args.out, "bench_sharding", {"rows": rows, "forced_cpu_devices": not args.no_force})
    print(f"written {path}")
    return rows


if __name__ == "__main__":
    main()
