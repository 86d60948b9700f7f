"""GEMM tiling tuners compared at equal budgets: G-BFS and N-A2C vs AutoTVM-style baselines (arXiv 1909.10616).

Part 1 (analytic GPU landscapes). For each GEMM shape the whole TVM tiling space (``m`` in 4 parts, ``n`` in 4,
``k`` in 3; 4.15M configurations at 512×1024×1024) is evaluated once with the analytic V100 model of
``jeq.gemm.landscape`` (a dense table, cached on disk), so the optimum is known and every strategy replays it:
random, grid, simulated annealing, AutoTVM's GA and cost-model (gradient boosting + SA) tuners, G-BFS and N-A2C.
Configurations that exceed the GPU's resources are failed measurements, as in TVM (variant ``tvm``); the
``pruned`` variant removes them from the space instead. Budget: 0.1 % of the space, capped at ``max_budget``.
Reported per strategy and seed: best modelled time / optimum after each number of measurements, measurements to get
within 5 % of the optimum, fraction of the space explored; across seeds: medians and the % saving of GEMM time at
equal budgets against the cost-model (XGBoost-style) and random tuners.

Part 2 (live CPU). The ``xla_tiled`` kernel family (``lax.map`` over M/N tiles, ``lax.scan`` over K tiles) at
``live_size``³ with tiles ≥ ``live_min_tile`` is measured exhaustively once (``jeq.gemm.measurement``, cached); every
strategy replays that table (measurements to find its best configuration, success within 25 % of the space), and a
live ``jeq.gemm.tune`` run per seed reports the tuned kernel's speed relative to ``jnp.dot`` (interleaved timing).

    python -m experiments.gemm_tuners --quick      # one shape, 2 seeds, 1024 measurements, small live space
    python -m experiments.gemm_tuners              # 4 shapes (512×1024×1024, 1024³, 2048³, 4096³), 10 seeds
    python -m experiments.gemm_tuners --landscapes 512x1024x1024 --live-size 0 \
        --strategies na2c:rollout_steps=1 na2c na2c:rollout_steps=6     # N-A2C rollout-length ablation
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import io
import math
import pathlib
import sys
import tempfile
import warnings
from typing import Any

import jax
import numpy as np

from . import harness
from jeq import bench, sharding
from jeq import io as jeq_io
from jeq.gemm import AnalyticLandscape, ReplayLandscape, STRATEGIES, search, tune, xla_tiled
from jeq.gemm import landscape as landscape_module
from jeq.gemm.measurement import Cache, measure, measurement_key, reference

NAME = "gemm_tuners"
OUT_DIRNAME = NAME


@dataclasses.dataclass(frozen=True)
class Config(harness.BaseConfig):
    seeds: tuple[int, ...] = tuple(range(10))
    landscapes: tuple[str, ...] = (
        "512x1024x1024", "512x1024x1024:pruned", "1024x1024x1024", "2048x2048x2048", "4096x4096x4096"
    )
    """Analytic landscapes ``MxNxK`` (TVM space, failures measured) or ``MxNxK:pruned`` (failures removed)."""
    strategies: tuple[str, ...] = ("random", "grid", "annealing", "genetic", "cost_model", "gbfs", "na2c")
    """Strategy names of ``jeq.gemm.STRATEGIES``, optionally with options: ``na2c:rollout_steps=1``."""
    fraction: float = 0.001
    """Budget as a fraction of the space (the paper's 0.1 %)."""
    max_budget: int = 4153
    """Cap on the budget (0.1 % of the 512×1024×1024 space)."""
    live_size: int = 256
    """Live CPU GEMM is live_size³ (0 disables part 2)."""
    live_min_tile: int = 16
    """Smallest tile of the live space."""
    live_time_budget_s: float = 0.1
    """Timing budget per live configuration."""
    live_tune: bool = True
    """Also run a live jeq.gemm.tune per seed (G-BFS, 25 % of the space)."""


QUICK = dict(seeds=(0, 1), landscapes=("512x1024x1024",), max_budget=1024, live_size=128, live_time_budget_s=0.05)
CHECKPOINTS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4153, 8192)


def parse_shape(text: str) -> tuple[int, int, int]:
    m, n, k = (int(v) for v in text.lower().split("x"))
    return m, n, k


def work_dir(config: Config) -> pathlib.Path:
    """Caches of this experiment (analytic tables, live measurements): under ``runs/``, which git ignores."""
    return pathlib.Path(config.out) / OUT_DIRNAME / "runs"


@functools.cache
def model_version() -> str:
    """Hash of the analytic cost model's source: cached tables of an older model are never reused."""
    return hashlib.sha256(inspect.getsource(landscape_module).encode()).hexdigest()[:12]


def tables_dir(config: Config) -> pathlib.Path:
    return work_dir(config) / "tables"


def analytic_replay(config: Config, shape: str, prune: bool) -> ReplayLandscape:
    """The dense table of the analytic model over the whole space (memory-mapped from a cached ``.npy``)."""
    m, n, k = parse_shape(shape)
    land = AnalyticLandscape.tvm_gemm(m, n, k, prune=prune)
    path = tables_dir(config) / f"tvm_{shape}_{model_version()}.npy"  # a changed cost model gets a new table
    if not path.exists():
        # the exhaustive table is the heavy batched evaluation: chunks of 2^18 candidates split over --devices
        full = AnalyticLandscape.tvm_gemm(m, n, k, prune=False, mesh=sharding.data_mesh(config.devices))
        costs = np.empty(full.space.size, dtype=np.float32)
        for idx, g in harness.progress(full.space.enumerate(chunk=1 << 18, valid_only=False),
                                       total=math.ceil(full.space.size / (1 << 18)), desc=f"table {shape}"):
            costs[idx] = full.evaluate(g)
        buffer = io.BytesIO()
        np.save(buffer, costs)
        jeq_io.atomic_write_bytes(path, buffer.getvalue())
    return ReplayLandscape(land.space, None, np.load(path, mmap_mode="r"), flops=land.flops)


def curve_at(best_so_far: np.ndarray, optimum: float, budget: int) -> dict[str, float]:
    return {str(c): float(best_so_far[c - 1] / optimum) for c in CHECKPOINTS if c <= budget}


def make_strategy(spec: str, space: Any) -> Any:
    """``name`` or ``name:option=value,option=value`` (values parsed as int, float or str)."""
    name, _, opts = spec.partition(":")
    options: dict[str, Any] = {}
    for item in filter(None, opts.split(",")):
        key, _, value = item.partition("=")
        for cast in (int, float, str):
            try:
                options[key] = cast(value)
                break
            except ValueError:
                continue
    return STRATEGIES[name](space, **options)


def run_strategy(land: ReplayLandscape, name: str, budget: int, seed: int, optimum: float) -> dict[str, Any]:
    result = search(make_strategy(name, land.space), land.evaluate, budget=budget, key=jax.random.key(seed))
    best = result.best_so_far()
    reach = result.measurements_to_reach(1.05 * optimum)
    return {
        "best_ratio": float(result.best_cost / optimum),
        "to_5pct": reach,  # None: not reached within the budget
        "to_optimum": result.measurements_to_reach(optimum),
        "failed_fraction": float(np.mean(~np.isfinite(result.costs))),
        "ratio_at": curve_at(best, optimum, budget),
        # log-spaced curve for plots
        "curve": [float(best[i - 1] / optimum) for i in sorted({int(v) for v in np.geomspace(1, budget, 60)})],
    }


# ------------------------------------------------------------------------------------------------- live part
def live_family(config: Config):
    return xla_tiled(min_tile=config.live_min_tile)


def live_table(config: Config) -> tuple[ReplayLandscape, dict[str, Any]]:
    """Measure the small live space exhaustively (cached per configuration) and return it as a replay."""
    fam = live_family(config)
    s = config.live_size
    space = fam.space(s, s, s)
    cache = Cache(work_dir(config) / "live_cache")
    kx, ky = jax.random.split(jax.random.key(0))
    x, y = jax.random.normal(kx, (s, s)), jax.random.normal(ky, (s, s))
    expected = reference(x, y)
    idx_all, costs = [], []
    for idx, genomes in space.enumerate():
        for i, g in harness.progress(list(zip(idx, genomes)), desc=f"live table {s}^3"):
            cfg = space.config(g)
            key = measurement_key(fam, cfg, (s, s, s), "float32")
            m = cache.get_measurement(key)
            if m is None:
                m = measure(fam, cfg, x, y, expected=expected, time_budget_s=config.live_time_budget_s)
                cache.put_measurement(key, m)
            idx_all.append(int(i))
            costs.append(m.cost)
    land = ReplayLandscape(space, idx_all, costs, flops=2.0 * s**3)
    best_i, best_c = land.optimum()
    return land, {"size": len(costs), "best_config": space.config(best_i), "best_s": best_c,
                  "spread": float(np.max(np.asarray(costs)[np.isfinite(costs)]) / best_c)}


def live_tune(config: Config, seed: int, land: ReplayLandscape) -> dict[str, Any]:
    """A real ``jeq.gemm.tune`` (fresh cache per seed and run) and paired timing against the exhaustive best and
    jnp.dot."""
    fam = live_family(config)
    s = config.live_size
    budget = max(1, int(0.25 * land.costs.size))
    with tempfile.TemporaryDirectory(prefix=f"jeq_live_tune_seed{seed}_") as cache_dir:  # never an earlier run's
        result = tune(s, s, s, kernel=fam, strategy="gbfs", budget=budget, seed=seed, cache_dir=cache_dir,
                      time_budget_s=config.live_time_budget_s, top_k=4, rerank_budget_s=1.0)
    best_i, _ = land.optimum()
    best_cfg = land.space.config(best_i)
    x = jax.random.normal(jax.random.key(1), (s, s))
    tuned, exhaustive = result.kernel, jax.jit(fam.build(best_cfg))
    ratio = bench.compare(tuned, exhaustive, x, x, budget_s=1.0)
    return {"measured": result.measured, "budget": budget, "speedup_vs_dot": result.speedup,
            "tuned_over_exhaustive_best": ratio.ratio, "found_exhaustive_best": result.config == best_cfg,
            "tuned_config": result.config}


# ------------------------------------------------------------------------------------------------- per seed
def run_seed(config: Config, seed: int, ckpt: harness.Checkpoint) -> dict:
    state: dict[str, Any] = ckpt.load(default=None) or {}
    for spec in config.landscapes:
        shape, _, variant = spec.partition(":")
        variant = variant or "tvm"
        if variant not in ("tvm", "pruned"):
            raise ValueError(f"experiments.gemm_tuners: landscape {spec!r}: variant must be 'pruned' or absent")
        land = analytic_replay(config, shape, prune=variant == "pruned")
        _, optimum = land.optimum()
        budget = int(min(math.ceil(config.fraction * land.space.size), config.max_budget))
        for name in config.strategies:
            tag = f"{shape}/{variant}/{name}"
            if tag in state:
                continue
            state[tag] = {**run_strategy(land, name, budget, seed, optimum), "budget": budget,
                          "fraction": budget / land.space.size}
            ckpt.save(state)
            print(f"[{NAME}] seed {seed} {tag}: best/opt {state[tag]['best_ratio']:.3f} "
                  f"to 5% {state[tag]['to_5pct']}", file=sys.stderr)
    if config.live_size:
        land, info = live_table(config)
        _, best = land.optimum()
        budget = land.costs.size
        for name in config.strategies:
            tag = f"live/{name}"
            if tag not in state:
                state[tag] = {**run_strategy(land, name, budget, seed, best), "budget": budget, "fraction": 1.0}
                ckpt.save(state)
        state["live/table"] = info
        if config.live_tune and "live/tune" not in state:
            state["live/tune"] = live_tune(config, seed, land)
            ckpt.save(state)
    metrics: dict[str, Any] = {"runs": state}
    for tag, r in state.items():
        for field in ("best_ratio", "to_5pct", "to_optimum"):
            if isinstance(r, dict) and field in r:
                metrics[f"{tag}/{field}"] = math.nan if r[field] is None else r[field]
    if "live/tune" in state:
        for field in ("speedup_vs_dot", "tuned_over_exhaustive_best", "measured"):
            metrics[f"live/tune/{field}"] = state["live/tune"][field]
    return metrics


# ------------------------------------------------------------------------------------------------- summary
def strategy_groups(runs: dict[str, Any]) -> dict[str, list[str]]:
    """``{landscape: [strategy, ...]}`` for the strategy runs of one seed (entries that carry a curve)."""
    groups: dict[str, list[str]] = {}
    for tag, r in runs.items():
        if isinstance(r, dict) and "curve" in r:
            group, name = tag.rsplit("/", 1)
            groups.setdefault(group, []).append(name)
    return groups


def summarise(result: dict) -> dict[str, Any]:
    """Medians over seeds, success counts, and % savings at equal budgets vs the cost-model and random tuners."""
    per_seed = [result["per_seed"][str(s)]["runs"] for s in result["seeds"]]
    out: dict[str, Any] = {}
    for group, names in strategy_groups(per_seed[0]).items():
        rows = {}
        for name in names:
            runs = [s[f"{group}/{name}"] for s in per_seed]
            budget = runs[0]["budget"]
            reach = np.asarray([np.inf if r["to_5pct"] is None else r["to_5pct"] for r in runs], dtype=float)
            hit = np.isfinite(reach)
            to_opt = np.asarray([np.inf if r["to_optimum"] is None else r["to_optimum"] for r in runs], dtype=float)
            rows[name] = {
                "budget": budget,
                "fraction": runs[0]["fraction"],
                "median_best_ratio": float(np.median([r["best_ratio"] for r in runs])),
                "seeds_within_5pct": int(hit.sum()),
                "seeds": len(runs),
                "median_to_5pct": float(np.median(reach)),
                "found_optimum": int(np.isfinite(to_opt).sum()),
                "median_to_optimum": float(np.median(to_opt)),
                "found_optimum_within_25pct": int((to_opt <= 0.25 * runs[0]["budget"] / runs[0]["fraction"]).sum()),
                "median_ratio_at": {c: float(np.median([r["ratio_at"][c] for r in runs])) for c in runs[0]["ratio_at"]},
            }
        for name, row in rows.items():
            for base in ("cost_model", "random"):
                if base in rows:
                    row[f"saving_vs_{base}_pct"] = {  # None until both have a finite median
                        c: (100.0 * (1.0 - row["median_ratio_at"][c] / rows[base]["median_ratio_at"][c])
                            if np.isfinite([row["median_ratio_at"][c], rows[base]["median_ratio_at"][c]]).all()
                            else None)
                        for c in row["median_ratio_at"]
                    }
        out[group] = rows
    if "live/tune" in per_seed[0]:
        lt = [s["live/tune"] for s in per_seed]
        out["live_tune"] = {
            "median_speedup_vs_dot": float(np.median([r["speedup_vs_dot"] for r in lt])),
            "median_tuned_over_exhaustive_best": float(np.median([r["tuned_over_exhaustive_best"] for r in lt])),
            "found_exhaustive_best": int(sum(r["found_exhaustive_best"] for r in lt)),
            "seeds": len(lt),
            "table": per_seed[0]["live/table"],
        }
    return out


def format_summary(summary: dict[str, Any]) -> str:
    lines = []
    for group, rows in summary.items():
        if group == "live_tune":
            continue
        any_row = next(iter(rows.values()))
        lines.append(f"\n{group}: budget {any_row['budget']} ({100 * any_row['fraction']:.3g} % of the space)")
        cps = list(any_row["median_ratio_at"])
        lines.append(f"  {'strategy':<11} {'≤5%':>6} {'opt':>5} {'med→5%':>7} {'med→opt':>7} "
                     + " ".join(f"@{c:>5}" for c in cps)
                     + "   saving vs cost_model % @" + ",".join(cps[-3:]))
        for name, r in rows.items():
            sv = r.get("saving_vs_cost_model_pct", {})
            lines.append(
                f"  {name:<11} {r['seeds_within_5pct']:>3}/{r['seeds']:<2} {r['found_optimum']:>5} "
                f"{r['median_to_5pct']:>7.0f} {r['median_to_optimum']:>7.0f} "
                + " ".join(f"{r['median_ratio_at'][c]:6.3f}" for c in cps)
                + "   " + ",".join("n/a" if sv[c] is None else f"{sv[c]:+.1f}" for c in cps[-3:] if c in sv)
            )
    if "live" in summary:
        lines.append("  live: seeds that found the exhaustive best within 25 % of the table: " + ", ".join(
            f"{name} {r['found_optimum_within_25pct']}/{r['seeds']}" for name, r in summary["live"].items()))
    if "live_tune" in summary:
        lt = summary["live_tune"]
        lines.append(
            f"\nlive tune: speedup vs jnp.dot (median) {lt['median_speedup_vs_dot']:.3f}; tuned/exhaustive-best "
            f"{lt['median_tuned_over_exhaustive_best']:.3f}; found exhaustive best {lt['found_exhaustive_best']}/"
            f"{lt['seeds']}; table {lt['table']['size']} configs, best {lt['table']['best_config']} "
            f"{lt['table']['best_s'] * 1e3:.3f} ms, spread x{lt['table']['spread']:.1f}"
        )
    return "\n".join(lines)


def plot(result: dict, path: pathlib.Path) -> None:
    import matplotlib.pyplot as plt

    per_seed = [result["per_seed"][str(s)]["runs"] for s in result["seeds"]]
    groups = strategy_groups(per_seed[0])
    cols = min(3, len(groups))
    rows = math.ceil(len(groups) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 4 * rows), squeeze=False)
    for ax, (group, names) in zip(axes.ravel(), groups.items()):
        for name in names:
            runs = [s[f"{group}/{name}"] for s in per_seed]
            budget = runs[0]["budget"]
            xs = sorted({int(v) for v in np.geomspace(1, budget, 60)})
            curves = np.asarray([r["curve"] for r in runs], dtype=float)
            curves[~np.isfinite(curves)] = np.nan  # nothing valid measured yet
            with warnings.catch_warnings():  # columns where no seed has a valid measurement yet are all-NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                med = np.nanmedian(curves, axis=0)
                lo, hi = np.nanpercentile(curves, 25, axis=0), np.nanpercentile(curves, 75, axis=0)
            ax.plot(xs, med, label=name, lw=2 if name in ("gbfs", "na2c") else 1)
            ax.fill_between(xs, lo, hi, alpha=0.15)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.axhline(1.05, color="k", ls=":", lw=0.8)
        ax.set_title(group, fontsize=9)
        ax.set_xlabel("measurements")
        ax.set_ylabel("best time / optimum (median, IQR)")
    for ax in axes.ravel()[len(groups):]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> dict:
    result = harness.run(NAME, Config, run_seed, plot=plot, quick=QUICK, argv=argv,
                         headline=("512x1024x1024/tvm/gbfs/to_5pct", "512x1024x1024/tvm/na2c/to_5pct",
                                   "512x1024x1024/tvm/cost_model/to_5pct", "live/tune/speedup_vs_dot"))
    summary = summarise(result)
    jeq_io.atomic_write_json(pathlib.Path(result["json_path"]).with_suffix(".summary.json"), summary)
    print(format_summary(summary))
    return result


if __name__ == "__main__":
    main()
