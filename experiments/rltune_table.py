"""RL hyper-parameter tuning vs default / random / TPE / GP-EI at equal target-algorithm runs (Zhang, Sun & Xu,
arXiv 2003.02038; spec ``specs/rltune.md`` §8-9).

``python -m experiments.rltune_table --quick`` tunes, for each (algorithm, problem) pair, the evosax algorithm's θ
on the tuning instances with every tuner at the same budget of target-algorithm runs (θ count × R seeds), then re-runs
each tuner's best θ on held-out instances with fresh seeds (the same held-out keys for every method). Per pair and
method it reports the held-out mean final objective (mean ± std over the harness seeds, which seed the tuners), the
runs each tuner needed to find a θ whose tuning mean reached the default θ's held-out mean (``runs_to_default``) and
the level that every tuner reached by the end of its budget (``runs_to_common``), and best-so-far vs runs curves.
Objectives: shifted functions' final best value (optimum 0), TSP tour length (20 random cities in the unit
square), knapsack relative gap to the LP bound with 100 items (a first quick run with 30 items,
``results/rltune_table/20261206T230734Z.json``, found the default GA already within noise of every tuned θ there).

The default θ is each algorithm's registry default (evosax's defaults; population 32 for DE/GA/PSO, 4 proposals for
SA) and spends no tuning runs. GP-EI is jeq's scikit-learn GP (optuna's GPSampler needs PyTorch, not a dependency).
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
import zlib

import jax
import numpy as np

from . import harness
from jeq import tune

METHODS = ("default", "random", "tpe", "gp", "rl")
QUICK_PAIRS = ("de:tsp", "pso:rastrigin", "ga:knapsack", "sa:ackley")
"""The quick run's pairs: one per algorithm (each distinct population size is one more compilation)."""
HELDOUT_KEY = 1_234_567


@dataclasses.dataclass(frozen=True)
class Config(harness.BaseConfig):
    pairs: tuple[str, ...] = ("de:tsp", "de:rastrigin", "pso:ackley", "ga:knapsack")
    """(algorithm:problem) pairs to tune."""
    methods: tuple[str, ...] = METHODS
    """Tuners to compare (``default`` = the untuned registry θ)."""
    dimension: int = 10
    """Dimension of the continuous problems."""
    tsp_cities: int = 20
    """Cities of the TSP instances."""
    knapsack_items: int = 100
    """Items of the knapsack instances."""
    evaluations: int = 2000
    """Objective evaluations per target-algorithm run."""
    budget: int = 640
    """Target-algorithm runs per tuning (θ count x seeds_per_theta), the same for every tuner."""
    seeds_per_theta: int = 4
    """R: runs per θ during tuning (one per tuning instance)."""
    batch_size: int = 8
    """θ per ask (the RL tuner's B per policy update); one evaluate call per batch."""
    instances: int = 4
    """Tuning instances and, separately, held-out instances."""
    heldout_runs: int = 32
    """Runs of each tuned θ on the held-out instances (fresh seeds, cycling over the instances)."""


def _problem(config: Config, name: str, split: str) -> tune.Problem:
    dimension = {"tsp": config.tsp_cities, "knapsack": config.knapsack_items}.get(name, config.dimension)
    return tune.make_problem(name, dimension=dimension, split=split, count=config.instances)


def _strategy(method: str, algorithm: tune.Algorithm, batch_size: int) -> tune.Strategy:
    factories = {"random": tune.random_search, "tpe": tune.tpe, "gp": tune.gp_ei, "rl": tune.reinforce}
    return factories[method](algorithm, batch_size=batch_size)


def run_seed(config: Config, seed: int, ckpt: harness.Checkpoint) -> dict:
    done = ckpt.load(default={})
    heldout_keys = jax.random.split(jax.random.key(HELDOUT_KEY), config.heldout_runs)
    rows = config.batch_size * config.seeds_per_theta
    for pair in config.pairs:
        algorithm_name, problem_name = pair.split(":")
        algorithm = tune.get_algorithm(algorithm_name)
        tuning, heldout = _problem(config, problem_name, "tune"), _problem(config, problem_name, "heldout")

        def run_batch(thetas, keys, problem=tuning, algorithm=algorithm):
            return tune.evaluate(algorithm, problem, thetas, keys, evaluations=config.evaluations, min_rows=rows,
                                 devices=config.devices if config.devices > 1 else None)

        def heldout_of(theta, algorithm=algorithm, heldout=heldout):
            return tune.evaluate(algorithm, heldout, [theta], heldout_keys, evaluations=config.evaluations,
                                 min_rows=rows, devices=config.devices if config.devices > 1 else None)[0]

        default_theta = tune.default_theta(algorithm)
        if f"{pair}/default" not in done:
            values = heldout_of(default_theta)
            done[f"{pair}/default"] = {"theta": default_theta, "heldout": values.tolist(), "runs": 0, "curve": [],
                                       "seconds": 0.0}
            ckpt.save(done)
        target = float(np.mean(done[f"{pair}/default"]["heldout"]))
        for method in config.methods:
            if method == "default" or f"{pair}/{method}" in done:
                continue
            t0 = time.perf_counter()
            tuner_ckpt = ckpt.path.with_name(f"{ckpt.path.stem}.{pair.replace(':', '-')}.{method}.pkl")
            result = tune.tune(
                _strategy(method, algorithm, config.batch_size),
                tune.batch_evaluator(run_batch, config.seeds_per_theta),
                budget=config.budget, seeds_per_theta=config.seeds_per_theta,
                key=jax.random.fold_in(jax.random.key(seed), zlib.crc32(pair.encode()) % 2**31),
                checkpoint=tuner_ckpt,
            )
            values = heldout_of(result.best_theta)
            runs, best = result.best_so_far()
            reached = result.runs_to_reach(target)
            done[f"{pair}/{method}"] = {
                "theta": result.best_theta, "heldout": values.tolist(), "runs": result.runs,
                "curve": [runs.tolist(), best.tolist()], "tuning_best": result.best_objective,
                "runs_to_default": float("nan") if reached is None else reached,
                "seconds": time.perf_counter() - t0,
            }
            ckpt.save(done)
            tuner_ckpt.unlink(missing_ok=True)
            print(f"[rltune_table] seed {seed} {pair} {method}: held-out {np.mean(values):.4g} "
                  f"(default {target:.4g}), {time.perf_counter() - t0:.0f} s", flush=True)
    for pair in config.pairs:
        # runs each tuner needed to reach the level every tuner reached by the end (the worst final tuning best)
        tuned = [done[f"{pair}/{m}"] for m in config.methods if m != "default"]
        if tuned:
            common = max(entry["curve"][1][-1] for entry in tuned)
            for entry in tuned:
                runs, best = np.asarray(entry["curve"][0]), np.asarray(entry["curve"][1])
                entry["runs_to_common"] = int(runs[np.flatnonzero(best <= common)[0]])
    metrics: dict = {}
    for key, entry in done.items():
        values = np.asarray(entry["heldout"])
        metrics[f"{key}/heldout_mean"] = float(values.mean())
        metrics[f"{key}/heldout_run_std"] = float(values.std())
        if "runs_to_default" in entry:
            metrics[f"{key}/runs_to_default"] = entry["runs_to_default"]
            metrics[f"{key}/runs_to_common"] = entry["runs_to_common"]
            metrics[f"{key}/seconds"] = entry["seconds"]
            metrics[f"curve/{key}"] = entry["curve"]
        metrics[f"theta/{key}"] = entry["theta"]
    return metrics


def table(result: dict) -> str:
    """Markdown table: held-out mean ± std over tuner seeds, per pair (rows) and method (columns)."""
    config, metrics = result["config"], result["metrics"]
    lines = ["| pair | " + " | ".join(config["methods"]) + " |", "|---" * (len(config["methods"]) + 1) + "|"]
    for pair in config["pairs"]:
        cells = []
        for method in config["methods"]:
            m = metrics.get(f"{pair}/{method}/heldout_mean")
            cells.append("-" if m is None else f"{m['mean']:.4g} ± {m['std']:.2g}")
        lines.append(f"| {pair} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(result: dict, path: pathlib.Path) -> None:
    import matplotlib.pyplot as plt

    config = result["config"]
    pairs = config["pairs"]
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.2 * len(pairs), 3.6), squeeze=False)
    for ax, pair in zip(axes[0], pairs):
        for method in config["methods"]:
            if method == "default":
                m = result["metrics"].get(f"{pair}/default/heldout_mean")
                if m is not None:
                    ax.axhline(m["mean"], color="k", ls="--", lw=1, label="default (held-out)")
                continue
            curves = [s[f"curve/{pair}/{method}"] for s in result["per_seed"].values()
                      if f"curve/{pair}/{method}" in s]
            if not curves:
                continue
            runs = np.asarray(curves[0][0])
            best = np.asarray([c[1] for c in curves])
            ax.plot(runs, best.mean(0), label=method)
            ax.fill_between(runs, best.min(0), best.max(0), alpha=0.15)
        ax.set(xlabel="target-algorithm runs", ylabel="best tuning mean objective", title=pair)
        ax.set_yscale("log")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> dict:
    result = harness.run(
        "rltune_table", Config, run_seed, plot=plot,
        quick=dict(pairs=QUICK_PAIRS, evaluations=1000, budget=192, seeds_per_theta=2, heldout_runs=16),
        headline=tuple(f"{p}/{m}/heldout_mean" for p in QUICK_PAIRS for m in ("default", "tpe", "rl")), argv=argv,
    )
    print(table(result))
    return result


if __name__ == "__main__":
    main()
