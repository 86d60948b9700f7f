"""GPU check of jeq.gemm: tune the compiled Pallas (Triton) matmul and XLA's GEMM autotuner flags on a few shapes.

    python -m benchmarks.gemm_gpu --out OUT_DIR                 # ~3-4 minutes on one H100/H200
    python -m benchmarks.gemm_gpu --out OUT_DIR --jobs 1024x1024x1024:bfloat16 --pallas-budget 8 --xla-budget 2

For every job (shape and dtype) it runs ``jeq.gemm.tune`` twice — the ``pallas`` family (block_m, block_n, block_k,
num_warps, num_stages; every configuration checked against ``jnp.dot`` before it is timed) with G-BFS, and the
``xla_flags`` family (``xla_gpu_autotune_level``, triton GEMM on/off, cuBLAS fallback, exhaustive tiling search; XLA's
autotune results dumped per configuration and loaded back for the final kernel) — and records the tuned time, the
``jnp.dot`` time from the same interleaved run, their ratio, failures and the first lines of XLA's autotune results
(which show the tiling tuple XLA chose). Each job is wrapped in try/except; ``OUT_DIR/gemm_gpu.json`` is rewritten
atomically after every job, so a killed run leaves its partial results. A wall-clock deadline (``--deadline-s``)
stops new measurements so the script ends in time. On a machine without a GPU it exits with status 2 and a message.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
import traceback
from typing import Any

from benchmarks import common
from jeq.io import atomic_write_json


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="output folder (gemm_gpu.json and the measurement cache go here)")
    p.add_argument("--jobs", nargs="+", default=["512x1024x1024:float32", "1024x1024x1024:bfloat16",
                                                   "2048x2048x2048:bfloat16", "4096x4096x4096:bfloat16"],
                   help="MxNxK:dtype jobs")
    p.add_argument("--pallas-budget", type=int, default=16, help="Pallas configurations measured per job")
    p.add_argument("--xla-budget", type=int, default=4, help="XLA flag settings measured per job")
    p.add_argument("--strategy", default="gbfs")
    p.add_argument("--time-budget-s", type=float, default=0.03, help="timing budget per configuration")
    p.add_argument("--deadline-s", type=float, default=200.0, help="no new measurement starts after this many seconds")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import jax

    if jax.default_backend() != "gpu":
        print(f"benchmarks.gemm_gpu: needs a GPU, but JAX's backend is {jax.default_backend()!r} "
              f"({jax.devices()[0].device_kind}); nothing was run.", file=sys.stderr)
        raise SystemExit(2)

    from jeq.gemm import STRATEGIES, Cache, Strategy, tune, with_deadline
    from jeq.gemm import kernels as K
    from jeq.gemm.measurement import measurement_key
    from jeq.gemm.tuning import autotune_path

    start = time.perf_counter()
    out_dir = pathlib.Path(args.out)
    cache_dir = out_dir / "cache"
    json_path = out_dir / "gemm_gpu.json"

    def stopping_at_deadline(name: str):
        """The strategy factory, its strategies asking for nothing once the deadline has passed (the search stops)."""
        factory = STRATEGIES[name]

        def make(space, **options) -> Strategy:
            return with_deadline(factory(space, **options), start + args.deadline_s)

        return make

    import jaxlib

    params_cls = None
    try:
        from jax.experimental.pallas import triton as plgpu

        params_cls = "CompilerParams" if hasattr(plgpu, "CompilerParams") else "TritonCompilerParams"
    except Exception as e:  # noqa: BLE001
        params_cls = f"unavailable: {type(e).__name__}: {e}"
    report: dict[str, Any] = {
        "jax": jax.__version__, "jaxlib": jaxlib.__version__, "device_kind": jax.devices()[0].device_kind,
        **common.provenance(),
        "pallas_triton_params": params_cls, "args": vars(args), "jobs": [],
    }
    atomic_write_json(json_path, report)
    report["xla_flags_supported"] = [f.name for f in K.xla_flags().space(8, 8, 8).knobs]
    for spec in args.jobs:
        shape, dtype = spec.split(":")
        m, n, k = (int(v) for v in shape.lower().split("x"))
        for family, budget in (("pallas", args.pallas_budget), ("xla_flags", args.xla_budget)):
            job: dict[str, Any] = {"shape": [m, n, k], "dtype": dtype, "family": family, "budget": budget}
            if time.perf_counter() - start > args.deadline_s:
                job["status"] = "skipped: deadline"
                report["jobs"].append(job)
                continue
            t0 = time.perf_counter()
            try:
                result = tune(m, n, k, dtype=dtype, strategy=stopping_at_deadline(args.strategy), budget=budget,
                              kernel=family, cache_dir=str(cache_dir), time_budget_s=args.time_budget_s,
                              top_k=4, rerank_budget_s=0.5)
                fam = K.family(family)
                space = fam.space(m, n, k)
                cache = Cache(cache_dir)
                failures = []
                for idx, cost in zip(result.search.indices, result.search.costs):
                    if cost == float("inf"):
                        rec = cache.get_measurement(measurement_key(fam, space.config(idx), (m, n, k), dtype))
                        failures.append({"config": space.config(idx), "error": rec.error[:300] if rec else "?"})
                job.update(
                    status="ok", config=result.config, tuned_s=result.time_s, jnp_dot_s=result.reference_s,
                    tuned_over_dot=result.time_s / result.reference_s, measured=result.measured,
                    searched=int(result.search.indices.size), failed=len(failures), failures=failures[:5],
                    best_search_s=float(result.search.best_cost),
                )
                if family == "xla_flags":
                    path = autotune_path(cache, fam, measurement_key(fam, result.config, (m, n, k), dtype))
                    job["autotune_results"] = path.read_text()[:3000] if path is not None and path.exists() else None
            except Exception as e:  # noqa: BLE001 - record and go on with the next job
                job.update(status=f"error: {type(e).__name__}: {e}"[:1000], traceback=traceback.format_exc()[-3000:])
            job["seconds"] = time.perf_counter() - t0
            report["jobs"].append(job)
            report["elapsed_s"] = time.perf_counter() - start
            atomic_write_json(json_path, report)
            line = (f"{shape:>16} {dtype:>9} {family:>9}: " + (
                f"tuned {job['tuned_s'] * 1e6:9.1f} us  jnp.dot {job['jnp_dot_s'] * 1e6:9.1f} us  "
                f"tuned/dot {job['tuned_over_dot']:.3f}  measured {job['measured']} failed {job['failed']}  "
                f"config {job['config']}" if job["status"] == "ok" else job["status"]))
            print(line, flush=True)
    report["elapsed_s"] = time.perf_counter() - start
    atomic_write_json(json_path, report)
    print(f"benchmarks.gemm_gpu: {len(report['jobs'])} jobs in {report['elapsed_s']:.0f} s -> {json_path}")
    return report


if __name__ == "__main__":
    main()
