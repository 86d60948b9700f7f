"""Cost of one Path-SGD step relative to one SGD step (same model, same batch, same clipping).

``python -m benchmarks.bench_pathsgd`` times ``train_step`` (forward, backward, optimizer update) built by
``jeq.pathsgd.make_rnn_train_step`` with ``make_optimizer("path_sgd")`` against ``make_optimizer("sgd")``,
interleaved A B A B in one process (``jeq.bench.compare``), for the shapes of the three experiments, in two
forms of the same update:

- ``fused`` (what the experiments use): ``fused_path_sum=True``, one ``value_and_grad`` of ``L(w) + Gamma(u)``
  whose forward pass runs the batch RNN and the squared-weight path recursion in the same ``lax.scan``
  (``jeq.pathsgd.rnn_apply_with_path_sum``), so a step has one forward and one reverse scan, like SGD's;
- ``separate``: ``grad L`` then kappa1 = ``grad Gamma`` in its own forward + reverse scan (``path_kappa``).

kappa1 depends only on the weights, so its arithmetic is that of one extra example (ratio -> 1 + 1/batch on a
CPU); on an accelerator the step is latency-bound by the sequential scans, which is what fusing removes. The
target is <= 1.3x. The exact kappa2 variant (one Hessian-vector product per weight) is timed on a small model for
information. ``--budget-s 1.5`` keeps a GPU run under a minute.
"""

from __future__ import annotations

import argparse
import functools
import json

import jax
import jax.numpy as jnp

from benchmarks import common
from jeq import bench, pathsgd

CASES = {
    # name: (input_size, hidden, output_size, T, batch, head)
    "adding_T100": (2, 100, 1, 100, 50, "many_to_one"),
    "adding_T400": (2, 100, 1, 400, 50, "many_to_one"),
    "seqmnist14": (1, 100, 10, 196, 50, "many_to_one"),
    "charlm_quick": (80, 128, 80, 50, 32, "many_to_many"),
}


def make_case(name, method: str = "path_sgd", *, fused: bool = True):
    """``((path_step, args), (sgd_step, args))`` for a named case or an explicit shape tuple."""
    d, h, k, length, batch, head = CASES[name] if name in CASES else name

    def loss_fn(params, xs, y):
        return jnp.mean((pathsgd.rnn_apply(params, xs, head=head) - y) ** 2)

    def fused_loss_fn(params, squared_params, xs, y):
        out, path_sum = pathsgd.rnn_apply_with_path_sum(params, squared_params, xs, head=head)
        return jnp.mean((out - y) ** 2), path_sum

    params = pathsgd.init_rnn(jax.random.key(0), input_size=d, hidden_size=h, output_size=k)
    kx, ky = jax.random.split(jax.random.key(1))
    xb = jax.random.uniform(kx, (batch, length, d))
    yb = jax.random.normal(ky, (batch, k) if head == "many_to_one" else (batch, length, k))
    path_sum = functools.partial(pathsgd.rnn_path_sum, length=length, head=head)
    steps = {}
    for m in (method, "sgd"):
        tx = pathsgd.make_optimizer(m, learning_rate=0.01, max_norm=1.0, path_sum=path_sum)
        use_fused = fused and m != "sgd"
        step = pathsgd.make_rnn_train_step(fused_loss_fn if use_fused else loss_fn, tx, fused_path_sum=use_fused)
        steps[m] = (step, (params, tx.init(params), xb, yb))
    return steps[method], steps["sgd"]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-s", type=float, default=3.0, help="interleaved timing budget per comparison")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--no-kappa2", action="store_true", help="skip the exact-kappa2 timing")
    args = parser.parse_args(argv)
    print(f"backend: {jax.default_backend()} ({jax.devices()[0].device_kind})", flush=True)
    results = {}
    for name in args.cases:
        results[name] = {}
        for form in ("fused", "separate"):
            (path_step, path_args), (sgd_step, sgd_args) = make_case(name, fused=form == "fused")
            cmp = bench.compare(path_step, sgd_step, *path_args, args_b=sgd_args, budget_s=args.budget_s)
            results[name][form] = {"ratio": cmp.ratio, "ratio_p20": cmp.ratio_p20, "ratio_p80": cmp.ratio_p80,
                                   "path_sgd_ms": cmp.a.median_s * 1e3, "sgd_ms": cmp.b.median_s * 1e3}
            print(f"{name:14s} path-SGD ({form:8s}) / SGD step = {cmp.summary()}", flush=True)
    if not args.no_kappa2:
        small = (2, 16, 1, 50, 50, "many_to_one")
        (k2_step, k2_args), (sgd_step, sgd_args) = make_case(small, "path_sgd_kappa2", fused=False)
        cmp = bench.compare(k2_step, sgd_step, *k2_args, args_b=sgd_args, budget_s=args.budget_s)
        results["kappa2_H16_T50"] = {"ratio": cmp.ratio, "ratio_p20": cmp.ratio_p20, "ratio_p80": cmp.ratio_p80}
        print(f"{'kappa2_H16_T50':14s} path-SGD(kappa1+kappa2) / SGD step = {cmp.summary()}", flush=True)
    results["provenance"] = common.provenance()
    print(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
