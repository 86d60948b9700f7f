"""Target-algorithm runs per second: ``jeq.tune.evaluate`` (one vmapped call) vs one jitted run at a time vs scipy.

``python -m benchmarks.bench_tune`` times, in one process and interleaved (``jeq.bench.compare``, A B A B), the same
differential-evolution runs three ways:

- **evaluate**: ``jeq.tune.evaluate`` on a batch of 256 (θ x seed) runs, 32 random (F, CR) θ x 8 seeds, evosax DE
  with population 32 for 200 generations (6432 evaluations) on 10-D shifted Rastrigin, compiled with full XLA
  optimisation (``fast_compile=False``);
- **one-at-a-time**: the same runs, each a call of one jitted single-run function (``Algorithm.run``) in a Python loop,
  blocked once at the end (dispatch overlaps compute);
- **scipy**: ``scipy.optimize.differential_evolution`` at the same population (``init`` = 32 uniform points), 200
  generations, ``best1bin`` (evosax's default base vector is the best member), the same F and CR, ``tol=0`` (no
  early stop), ``polish=False``, in its default form (``updating="immediate"``, one Python call per evaluation), and
  in its vectorised form (``updating="deferred", vectorized=True``) for reference.

Each comparison reports the ratio of runs per second, median with p20/p80 over interleaved rounds. Goal: evaluate >=
30x scipy on CPU; on a GPU >= 20x the one-at-a-time loop. Results are printed and written to
``results/rltune_table/bench/<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from jeq import bench, tune
from jeq.io import atomic_write_json, device_info, git_sha, versions

POPULATION, GENERATIONS, DIMENSION = 32, 200, 10
EVALUATIONS = POPULATION * (GENERATIONS + 1)


def _rastrigin_np(z: np.ndarray) -> np.ndarray:
    return 10.0 * z.shape[0] + np.sum(z**2 - 10.0 * np.cos(2 * np.pi * z), axis=0)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--thetas", type=int, default=32, help="θ in the batch")
    parser.add_argument("--seeds", type=int, default=8, help="seeds per θ (batch = thetas x seeds runs)")
    parser.add_argument("--scipy-runs", type=int, default=2, help="scipy runs per timed sample")
    parser.add_argument("--budget-s", type=float, default=20.0, help="seconds per comparison")
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)

    de = tune.ALGORITHMS["de"]
    problem = tune.make_problem("rastrigin", dimension=DIMENSION, count=1)
    rng = np.random.default_rng(0)
    thetas = [{"population_size": POPULATION, "differential_weight": float(rng.uniform(0.3, 1.0)),
               "crossover_rate": float(rng.uniform(0.1, 1.0))} for _ in range(args.thetas)]
    keys = jax.random.split(jax.random.key(0), args.seeds)
    n_runs = args.thetas * args.seeds

    def batched():
        return tune.evaluate(de, problem, thetas, keys, evaluations=EVALUATIONS, fast_compile=False,
                             min_rows=n_runs)

    # one jitted run; the θ and key are arguments, so every call reuses one compilation
    static = {"population_size": POPULATION, "num_diff": 1}
    data = problem.instance(0)

    @jax.jit
    def single(values, key):
        traced = {"differential_weight": values[0], "crossover_rate": values[1], "base_vector": jnp.int32(1)}
        return de.run(static, traced, key, problem.objective, data, low=problem.low, high=problem.high,
                      dimension=DIMENSION, evaluations=EVALUATIONS)

    rows = [(jnp.asarray([t["differential_weight"], t["crossover_rate"]], jnp.float32), k)
            for t in thetas for k in keys]
    compiled_single, single_compile_s = bench.compile_fn(single, *rows[0])

    def one_at_a_time():
        return jax.block_until_ready([compiled_single(v, k) for v, k in rows])

    shift = np.asarray(data["shift"], np.float64)
    scipy_thetas = thetas[: args.scipy_runs]

    def scipy_runs(vectorized: bool):
        from scipy.optimize import differential_evolution

        out = []
        for i, theta in enumerate(scipy_thetas):
            init = np.random.default_rng(i).uniform(problem.low, problem.high, (POPULATION, DIMENSION))
            kwargs = dict(updating="deferred", vectorized=True) if vectorized else {}
            f = (lambda x: _rastrigin_np(x - shift[:, None])) if vectorized else (
                lambda x: float(_rastrigin_np(x - shift)))
            result = differential_evolution(
                f, [(problem.low, problem.high)] * DIMENSION, strategy="best1bin", maxiter=GENERATIONS,
                init=init, mutation=theta["differential_weight"], recombination=theta["crossover_rate"], tol=0.0,
                atol=0.0, polish=False, rng=i, **kwargs)
            out.append(result.fun)
        return out

    # sanity: the batched and one-at-a-time runs compute the same thing
    batch_values = batched()
    t0 = one_at_a_time()
    single_values = np.asarray(t0, np.float64).reshape(args.thetas, args.seeds)
    agree = float(np.max(np.abs(batch_values - single_values) / np.maximum(1.0, np.abs(single_values))))
    scipy_values = scipy_runs(False)

    compare_kwargs = dict(jit=False, warmup=1, budget_s=args.budget_s, min_rounds=5, min_sample_s=0.0)
    rounds = {}
    for name, fn, runs in (("one_at_a_time", one_at_a_time, n_runs),
                           ("scipy", lambda: scipy_runs(False), len(scipy_thetas)),
                           ("scipy_vectorized", lambda: scipy_runs(True), len(scipy_thetas))):
        c = bench.compare(fn, batched, **compare_kwargs)
        # c.ratio = t(other)/t(evaluate) per call; runs/s ratio = (n_runs/t_eval) / (runs/t_other)
        scale = n_runs / runs
        rounds[name] = {
            "speedup": c.ratio * scale, "speedup_p20": c.ratio_p20 * scale, "speedup_p80": c.ratio_p80 * scale,
            "evaluate_runs_per_s": n_runs / c.b.median_s, "other_runs_per_s": runs / c.a.median_s,
            "evaluate": c.b._asdict(), "other": c.a._asdict(), "rounds": c.a.calls,
        }
        print(f"evaluate vs {name}: {rounds[name]['speedup']:.1f}x runs/s "
              f"[p20 {rounds[name]['speedup_p20']:.1f}, p80 {rounds[name]['speedup_p80']:.1f}]; "
              f"evaluate {rounds[name]['evaluate_runs_per_s']:.1f} runs/s, {name} "
              f"{rounds[name]['other_runs_per_s']:.2f} runs/s", flush=True)
    result = {
        "config": {"population": POPULATION, "generations": GENERATIONS, "dimension": DIMENSION,
                   "evaluations": EVALUATIONS, "batch_runs": n_runs, "scipy_runs_per_sample": len(scipy_thetas),
                   "budget_s": args.budget_s},
        "comparisons": rounds,
        "single_compile_s": single_compile_s,
        "batched_vs_single_max_rel_diff": agree,
        "mean_final": {"evaluate": float(batch_values.mean()), "scipy": float(np.mean(scipy_values))},
        "git_sha": git_sha(), "versions": versions(["evosax", "scipy"]), **device_info(),
    }
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = pathlib.Path(args.out) / "rltune_table" / "bench" / f"{stamp}.json"
    atomic_write_json(path, result)
    print(f"batched vs one-at-a-time results agree to {agree:.2g} (relative); written {path}")
    return result


if __name__ == "__main__":
    main()
