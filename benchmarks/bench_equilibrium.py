"""Speed of equilibrium models: backward modes, model families, and MON in its original's reference settings.

``python -m benchmarks.bench_equilibrium [--quick]`` (interleaved timing with ``jeq.bench``; ratios are the
numbers to read, absolute times drift between processes on a shared machine):

1. Backward modes of OptEq (94 hidden, batch 128 of MNIST-5k): forward + backward time of the loss for
   ``implicit`` (IFT through jaxopt, Anderson adjoint) vs ``unroll`` (backprop through every solver step) vs
   ``phantom`` (5 damped steps), and the gradient error of each vs a tight implicit reference.
2. Model families at about 84k parameters: OptEq vs MON (Peaceman-Rachford) vs plain DEQ, forward + backward, all
   under ONE stopping rule (``FAMILY_RULE``: ||f(z) - z|| <= 1e-3 absolute, per example, at most 100 steps); each
   ratio is printed with both models' mean forward steps and converged fraction on the timed batch.
3. MON in the reference settings of locuslab/monotone_op_net, one training step (forward, backward, Adam) and test
   accuracy on MNIST-5k: single FC, 87 hidden, Peaceman-Rachford, relative tolerance 1e-2 (batch-level, as the
   official code), batch 128. The original's figure is quoted from ``results/external_references.json`` (an
   external reference, timed by its own code in a separate process); ratio = reference ms / our ms. Recorded with
   the time: the forward steps and converged fraction of the timed step, and how the adjoint solve went on the
   timed batch (``jeq.equilibrium.adjoint_report`` where the backward is implicit; MON's splitting adjoint is not).
   The plain DEQ against TorchDEQ is measured in one process by ``benchmarks.vs_torchdeq``.
4. What the MON step spends its time on (prepare / forward solve / full step) and per-example vs batch-level
   stopping.
5. ||V||_2 of OptEq at the reference width (94 hidden): the exact SVD norm (``norm="svd"``, default) vs the persistent
   power iteration (``norm="power"`` with ``refresh_power_vector`` in the chain; spec section 4): ``prepare`` alone
   and one training step (forward, backward, Adam), interleaved; and how far the power estimate is below the SVD
   norm after the timed steps.

``--sections 5`` runs only the listed sections (e.g. the short run of section 5 alone).

Results are printed and written to ``results/bench_equilibrium/<timestamp>.json`` with the git SHA, library versions
and device (``benchmarks.common.write``).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import optax

from benchmarks import common
from jeq import bench, data
from jeq import equilibrium as eq
from jeq import fixedpoint as fp

FAMILY_RULE = dict(tol=1e-3, rtol=0.0, maxiter=100)
"""The one stopping rule of the model-family comparison (section 2): absolute 1e-3, per example, 100 steps."""


def _batch(split, size=128):
    return jnp.asarray(split.x_train[:size].reshape(size, -1)), jnp.asarray(split.y_train[:size])


def _loss_fn(model):
    def loss(params, xb, yb):
        logits = jax.vmap(lambda x: model.apply(params, x).logits, axis_name=eq.BATCH_AXIS)(xb)
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    return jax.value_and_grad(loss)


def _adjoint(model, params, xb, yb) -> dict:
    """:func:`jeq.equilibrium.adjoint_report` on the batch, as the JSON record of earlier runs."""
    report = eq.adjoint_report(model, params, xb, yb)
    return {"mean_adjoint_steps": report.mean_steps, "adjoint_converged_fraction": report.converged_fraction,
            "max_adjoint_residual": report.max_residual,
            "adjoint_settings": {k: str(v) for k, v in model.settings.backward._asdict().items()}}


def _fmt(t: bench.Timing) -> str:
    return f"{t.median_s * 1e3:8.3f} ms (p20 {t.p20_s * 1e3:.3f}, p80 {t.p80_s * 1e3:.3f}; compile {t.compile_s:.1f} s)"


def backward_modes(split, budget: float) -> dict:
    xb, yb = _batch(split)
    modes = {
        "implicit": "implicit",
        "unroll": "unroll",
        "phantom": fp.phantom(steps=5, damping=0.5),
    }
    fns, params = [], None
    for mode in modes.values():
        model = eq.opteq(features=784, hidden=94, classes=10, tol=1e-3, maxiter=50, backward=mode)
        params = model.init(jax.random.key(0)) if params is None else params
        fns.append(_loss_fn(model))
    reference_model = eq.opteq(features=784, hidden=94, classes=10, tol=1e-6, maxiter=200,
                               backward=fp.implicit(tol=1e-8, rtol=0.0, maxiter=500))
    _, reference = jax.jit(_loss_fn(reference_model))(params, xb, yb)
    timings = bench.interleave(fns, [(params, xb, yb)] * len(fns), budget_s=budget)
    out = {}
    for (name, _), fn, timing in zip(modes.items(), fns, timings):
        _, grads = jax.jit(fn)(params, xb, yb)
        err = optax.tree.norm(jax.tree.map(lambda a, b: a - b, grads, reference)) / optax.tree.norm(reference)
        out[name] = {"ms": timing.median_s * 1e3, "p20_ms": timing.p20_s * 1e3, "p80_ms": timing.p80_s * 1e3,
                     "relative_gradient_error": float(err)}
        print(f"  {name:9s} {_fmt(timing)}  gradient error vs tight implicit {float(err):.2e}")
    for name in ("unroll", "phantom"):
        out[f"ratio_{name}_over_implicit"] = out[name]["ms"] / out["implicit"]["ms"]
        print(f"  ratio {name}/implicit: {out[f'ratio_{name}_over_implicit']:.2f}")
    return out


def families(split, budget: float) -> dict:
    xb, yb = _batch(split)
    models = {
        "opteq": eq.opteq(features=784, hidden=94, classes=10, **FAMILY_RULE),
        "mon": eq.mon(features=784, hidden=87, classes=10, splitting="pr", alpha=1.0, **FAMILY_RULE),
        "deq": eq.deq(features=784, hidden=94, classes=10, **FAMILY_RULE),
    }
    fns = [_loss_fn(m) for m in models.values()]
    args = [(m.init(jax.random.key(0)), xb, yb) for m in models.values()]
    timings = bench.interleave(fns, args, budget_s=budget)
    out = {"stopping_rule": "||f(z) - z|| <= 1e-3 absolute, per example, at most 100 steps (all three)"}
    for (name, model), timing, arg in zip(models.items(), timings, args):
        stats = jax.jit(jax.vmap(lambda x, p=arg[0], m=model: m.apply(p, x).stats))(xb)
        out[name] = {"ms": timing.median_s * 1e3, "p20_ms": timing.p20_s * 1e3, "p80_ms": timing.p80_s * 1e3,
                     "parameters": eq.parameter_count(arg[0]), "forward_steps": float(stats.num_steps.mean()),
                     "forward_converged": float(stats.converged.mean()), "forward_maxiter": FAMILY_RULE["maxiter"]}
        print(f"  {name:6s} {out[name]['parameters']:,} params  {_fmt(timing)}  "
              f"{out[name]['forward_steps']:.1f} fwd steps, {100 * out[name]['forward_converged']:.0f} % converged")
    for name in ("mon", "deq"):
        out[f"ratio_{name}_over_opteq"] = out[name]["ms"] / out["opteq"]["ms"]
        print(f"  ratio {name}/opteq: {out[f'ratio_{name}_over_opteq']:.2f} ({name} "
              f"{out[name]['forward_steps']:.1f} steps, {100 * out[name]['forward_converged']:.0f} % conv. / opteq "
              f"{out['opteq']['forward_steps']:.1f} steps, {100 * out['opteq']['forward_converged']:.0f} % conv.)")
    return out


def reference_models():
    """MON in the original's reference settings (Peaceman-Rachford, alpha 1, rtol 1e-2, batch-level stop, 300
    steps), the model section 3 and ``benchmarks.mon_original`` train."""
    return {
        "mon": eq.mon(features=784, hidden=87, classes=10, splitting="pr", alpha=1.0, tol=1e-6, rtol=1e-2,
                      maxiter=300, axis_name=eq.BATCH_AXIS),
    }


def reference_settings(split, epochs: int, budget: float) -> dict:
    """Per-step time and accuracy after training, in the reference settings of the original (MON).

    The step is timed on the TRAINED parameters: an equilibrium model's solver may need more iterations as it trains,
    so a step at initialisation could flatter it. ``train_seconds / train_steps`` (the whole training run,
    compilation included) is recorded as a cross-check, and so are the forward steps and converged fraction of the
    timed step (from the step's own metrics).
    """
    x_train, x_test = split.x_train.reshape(len(split.x_train), -1), split.x_test.reshape(len(split.x_test), -1)
    xb, yb = _batch(split)
    models = reference_models()
    optimizer = optax.adam(1e-3)
    steps, states, out = {}, {}, {}
    for name, model in models.items():
        steps[name] = eq.make_train_step(model.apply, optimizer)
        params = model.init(jax.random.key(0))
        opt_state = optimizer.init(params)
        evaluate = eq.make_eval_step(model.apply)
        t0, train_steps = time.perf_counter(), 0
        for epoch in range(epochs):
            for xbatch, ybatch in data.batches(x_train, split.y_train, 128, seed=0, epoch=epoch):
                params, opt_state, metrics = steps[name](params, opt_state, xbatch, ybatch)
                train_steps += 1
        jax.block_until_ready(params)
        train_s = time.perf_counter() - t0
        sums = evaluate(params, x_test, split.y_test)
        states[name] = (params, opt_state)
        _, _, timed = steps[name](params, opt_state, xb, yb)
        out[name] = {"test_accuracy": float(sums.correct) / float(sums.count), "epochs": epochs,
                     "mean_steps_test": float(sums.steps) / float(sums.count), "train_seconds": train_s,
                     "train_steps": train_steps, "timed": "after training",
                     "forward_steps": float(timed.mean_steps), "forward_converged": float(timed.converged),
                     "forward_maxiter": model.settings.maxiter,
                     "stopping_rule": f"tol {model.settings.tol:g} + rtol {model.settings.rtol:g} * ||f(z)||, "
                                      f"batch-level, at most {model.settings.maxiter} steps"}
        backward = model.settings.backward
        if backward == "implicit" or isinstance(backward, fp.Implicit):
            out[name]["adjoint"] = _adjoint(model, params, xb, yb)
            print(f"  {name:4s} adjoint solve on the timed batch after training: "
                  f"{out[name]['adjoint']['mean_adjoint_steps']:.1f} steps, "
                  f"{100 * out[name]['adjoint']['adjoint_converged_fraction']:.0f} % converged, "
                  f"max residual {out[name]['adjoint']['max_adjoint_residual']:.2g}")
    timings = bench.interleave([steps[n] for n in models], [(*states[n], xb, yb) for n in models], budget_s=budget)
    for name, timing in zip(models, timings):
        reference = common.external_reference(name)
        figure = reference["figure"]
        accuracy = out[name]["test_accuracy"]
        out[name].update({
            "ms_per_step": timing.median_s * 1e3, "p20_ms": timing.p20_s * 1e3, "p80_ms": timing.p80_s * 1e3,
            "reference": {"source": reference["source"]["name"], "label": reference["label"], **figure},
            "speedup": figure["ms_per_step"] / (timing.median_s * 1e3),
        })
        print(f"  {name:4s} {_fmt(timing)}  {out[name]['forward_steps']:.1f} fwd steps, "
              f"{100 * out[name]['forward_converged']:.0f} % converged; test {accuracy:.3f} after {epochs} epochs "
              f"({out[name]['mean_steps_test']:.1f} solver steps)  {reference['label']}: "
              f"{figure['ms_per_step']} ms, {figure['test_accuracy']:.3f} -> ratio {out[name]['speedup']:.1f}x")
    return out


def mon_breakdown(split, budget: float) -> dict:
    """Where a MON training step goes, and per-example vs batch-level stopping."""
    xb, yb = _batch(split)
    batch_level = reference_models()["mon"]
    per_example = eq.mon(features=784, hidden=87, classes=10, splitting="pr", tol=1e-6, rtol=1e-2, maxiter=300)
    params = batch_level.init(jax.random.key(0))
    optimizer = optax.adam(1e-3)
    opt_state = optimizer.init(params)

    def forward(model):
        return lambda p, x: jax.vmap(lambda v: model.apply(p, v).logits, axis_name=eq.BATCH_AXIS)(x)

    def inject_only(p, x):
        return jax.vmap(lambda v: batch_level.readout(p, jax.nn.relu(batch_level.inject(p, v))))(x)

    named = {
        "prepare (W, PR inverse)": (batch_level.prepare, (params,)),
        "explicit layer (U x, readout)": (inject_only, (params, xb)),
        "forward, batch-level stop": (forward(batch_level), (params, xb)),
        "forward, per-example stop": (forward(per_example), (params, xb)),
        "train step, batch-level stop": (eq.make_train_step(batch_level.apply, optimizer), (params, opt_state, xb, yb)),
        "train step, per-example stop": (eq.make_train_step(per_example.apply, optimizer),
                                         (params, opt_state, xb, yb)),
    }
    timings = bench.interleave([f for f, _ in named.values()], [a for _, a in named.values()], budget_s=budget)
    out = {}
    for name, timing in zip(named, timings):
        out[name] = timing.median_s * 1e3
        print(f"  {name:30s} {_fmt(timing)}")
    return out


def spectral_norms(split, budget: float, steps: int = 200) -> dict:
    """OptEq ||V||_2 by SVD vs by the persistent power iteration at 94 hidden: prepare and a training step."""
    xb, yb = _batch(split)
    out, fns, fn_args, trained = {}, [], [], {}
    for norm in ("svd", "power"):
        model = eq.opteq(features=784, hidden=94, classes=10, tol=1e-3, norm=norm)
        params = model.init(jax.random.key(0))
        optimizer = optax.chain(optax.adam(1e-3), eq.refresh_power_vector())
        opt_state = optimizer.init(params)
        step = eq.make_train_step(model.apply, optimizer)
        for _ in range(steps):  # warm the persistent vector as training would
            params, opt_state, _ = step(params, opt_state, xb, yb)
        trained[norm] = params
        fns += [model.prepare, step]
        fn_args += [(params,), (params, opt_state, xb, yb)]
    timings = bench.interleave(fns, fn_args, budget_s=budget)
    names = ["prepare svd", "train step svd", "prepare power", "train step power"]
    for name, timing in zip(names, timings):
        out[name] = {"ms": timing.median_s * 1e3, "p20_ms": timing.p20_s * 1e3, "p80_ms": timing.p80_s * 1e3}
        print(f"  {name:18s} {_fmt(timing)}")
    out["ratio_prepare_power_over_svd"] = out["prepare power"]["ms"] / out["prepare svd"]["ms"]
    out["ratio_step_power_over_svd"] = out["train step power"]["ms"] / out["train step svd"]["ms"]
    power = trained["power"]
    exact = float(jnp.linalg.norm(power.coupling, 2))
    out["power_estimate_relative_gap"] = (exact - float(eq.power_norm(power.coupling, power.power_vector))) / exact
    out["warm_steps"] = steps
    print(f"  ratio power/svd: prepare {out['ratio_prepare_power_over_svd']:.2f}, "
          f"train step {out['ratio_step_power_over_svd']:.2f}; power estimate "
          f"{out['power_estimate_relative_gap']:.1e} below ||V||_2 after {steps} steps")
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short budgets and 5 training epochs")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs for the reference settings")
    parser.add_argument("--budget", type=float, default=None, help="seconds of interleaved timing per section")
    parser.add_argument("--out", default="results", help="results folder")
    parser.add_argument("--sections", type=int, nargs="+", default=[1, 2, 3, 4, 5], choices=[1, 2, 3, 4, 5],
                        help="which sections to run (default all)")
    args = parser.parse_args(argv)
    epochs = args.epochs or (5 if args.quick else 20)
    budget = args.budget or (2.0 if args.quick else 10.0)
    _limits = bench.single_threaded_blas()  # noqa: F841  (kept alive for the run)
    split = data.mnist_subset()
    result = {"device": str(jax.devices()[0]), "epochs": epochs, "budget_s": budget}
    sections = {
        1: ("OptEq backward modes, forward + backward per batch of 128", "backward_modes",
            lambda: backward_modes(split, budget)),
        2: ("model families, forward + backward per batch of 128", "families", lambda: families(split, budget)),
        3: ("MON reference settings: one training step, and test accuracy on MNIST-5k", "reference_settings",
            lambda: reference_settings(split, epochs, budget)),
        4: ("MON step breakdown", "mon_breakdown", lambda: mon_breakdown(split, budget)),
        5: ("OptEq ||V||_2: SVD vs persistent power iteration, 94 hidden, batch of 128", "spectral_norms",
            lambda: spectral_norms(split, budget)),
    }
    for number in sorted(set(args.sections)):
        title, key, run = sections[number]
        print(f"{number}. {title}")
        result[key] = run()
    path = common.write(args.out, "bench_equilibrium", result)
    print(f"written {path}")
    return result


if __name__ == "__main__":
    main()
