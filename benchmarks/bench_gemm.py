"""CPU GEMM kernel landscape (spec §8) as interleaved A/B ratios against ``jnp.dot`` in one process.

    python -m benchmarks.bench_gemm                 # 512³ f32
    python -m benchmarks.bench_gemm --size 256 --budget-s 0.5

Rows: the ``xla_tiled`` family (``lax.map`` over M/N tiles, ``lax.scan`` over K tiles) at several tile shapes, and
the Pallas matmul in interpret mode at several block sizes. Each ratio is ``time(kernel) / time(jnp.dot)`` from
``jeq.bench.compare`` (paired, interleaved calls), so common-mode drift of the shared machine cancels.
"""

from __future__ import annotations

import argparse
import functools

import jax

from jeq import bench
from jeq.gemm import pallas_matmul, tiled_matmul


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--budget-s", type=float, default=1.0)
    args = p.parse_args(argv)
    s = args.size
    kx, ky = jax.random.split(jax.random.key(0))
    x, y = jax.random.normal(kx, (s, s)), jax.random.normal(ky, (s, s))
    rows = []
    cases = [("tiled", (s, s, b)) for b in (s, s // 4, s // 16, s // 64)]
    cases += [("tiled", (b, s, s)) for b in (s // 4, s // 16)] + [("tiled", (s // 2, s // 2, s // 2)), ("tiled", (s // 8, s // 8, s // 8))]
    cases += [("pallas_interpret", (b, b, b)) for b in (s, s // 2, s // 4, s // 8)]
    for name, (bm, bn, bk) in cases:
        if min(bm, bn, bk) < 1:
            continue
        kernel = tiled_matmul if name == "tiled" else pallas_matmul
        fn = functools.partial(kernel, block_m=bm, block_n=bn, block_k=bk)
        c = bench.compare(fn, jax.numpy.dot, x, y, budget_s=args.budget_s)
        row = {"kernel": name, "blocks": (bm, bn, bk), "ratio_vs_dot": c.ratio, "p20": c.ratio_p20, "p80": c.ratio_p80,
               "kernel_ms": c.a.median_s * 1e3, "dot_ms": c.b.median_s * 1e3}
        rows.append(row)
        print(f"{name:>17} bm,bn,bk={str((bm, bn, bk)):>16}: time/jnp.dot {c.ratio:6.2f} [{c.ratio_p20:.2f}, "
              f"{c.ratio_p80:.2f}]  ({row['kernel_ms']:.2f} ms vs {row['dot_ms']:.2f} ms)", flush=True)
    return rows


if __name__ == "__main__":
    main()
