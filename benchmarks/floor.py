"""How close the equilibrium training steps run to the hardware floor (issue 19).

``python -m benchmarks.floor [--quick] [--models deq opteq mon ep solvers]``

For each model, the *floor* is the same arithmetic as the real training step written as one dense jitted function
with no solver machinery, at the iteration counts the real step used on the same batch (read from the real step's
stats, so the floor moves with them):

* DEQ, OptEq, MON (MNIST-5k settings of ``benchmarks.bench_equilibrium``: float32, batch 128, width 87; DEQ and MON
  in the PyTorch reference settings, batch-level forward stop; OptEq with its defaults, per-example stop):
  ``prepare`` (the same weights, SVD or PR inverse), ``c = U x + b`` for the batch, n_fwd evaluations of the
  layer on the (128, 87) batch with no tape, the readout's cotangent g = d loss / d s*, n_adj products
  u <- J^T u + g, one VJP of the layer and of prepare/inject for the parameters, and Adam: the arithmetic of the
  implicit (IFT) step as fixed loops, with no stopping tests, solver state or custom VJP. n_fwd and n_adj are the
  map evaluations of the real solves on the batch (steps + 1, the largest over the batch: a vmapped ``while_loop``
  runs until its slowest example); the adjoint is solved with the cotangent the training step gives it
  (d mean-CE / d s*, each example's gradient over the batch size), not the unscaled one of ``adjoint_report``.
* EP (Laborieux et al.'s 784-512-10, T1 30, T2 10, batch 50, the ``bench_eqprop`` trainer): one ``lax.scan`` over the
  80 batches of an epoch, each with the static input drive x W_0, 40 relaxation steps
  s <- sigma(s - dF/ds) written out by hand, and the outer-product EP update with Adam.

DEQ and OptEq solve with Anderson acceleration (forward and adjoint), whose own per-step work (history buffers, the
small Gram matrix and solve, the mixing) the floor above leaves out: it is a lower bound, the cost of the iteration
counts alone. Each equilibrium model is therefore also timed against a second floor, ``solver_floor`` in the JSON
(``floor_step(..., arithmetic="solver")``): the same dense step with the model's forward and adjoint solvers'
``init``/``update`` vmapped over the batch in fixed-count loops, i.e. the real step's arithmetic without its
per-example stopping tests, ``while_loop`` and custom VJP. real/layer-floor is what the step costs over the bare map
evaluations; real/solver-floor is what jeq's solver machinery costs over the solver's own arithmetic.

Real and floor are timed interleaved in one process (``jeq.bench.compare``); the ratio real/floor (median of paired
ratios, p20/p80) is the number to read. The models are first trained ``--epochs`` epochs (DEQ's solver needs more
iterations once trained), and the real step is timed on the trained parameters. Results go to
``results/bench_floor/<timestamp>.json`` with the git SHA, versions and device.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import common
from benchmarks.bench_eqprop import laborieux_trainer
from jeq import bench, data
from jeq import equilibrium as eq
from jeq import fixedpoint as fp
from jeq.eqprop import hopfield

WIDTH = 87
BATCH = 128


def equilibrium_models() -> dict:
    """The three equilibrium models in the MNIST-5k settings of ``benchmarks.bench_equilibrium``."""
    return {
        "deq": eq.deq(features=784, hidden=WIDTH, classes=10, solver="anderson", tol=1e-3, maxiter=40,
                      axis_name=eq.BATCH_AXIS),
        "opteq": eq.opteq(features=784, hidden=WIDTH, classes=10, tol=1e-3),
        "mon": eq.mon(features=784, hidden=WIDTH, classes=10, splitting="pr", alpha=1.0, tol=1e-6, rtol=1e-2,
                      maxiter=300, axis_name=eq.BATCH_AXIS),
    }


def floor_step(model, optimizer, n_fwd: int, n_adj: int, *, arithmetic: str = "layer"):
    """The dense step: prepare, c = U x + b, the forward iterations on the batch with no tape, the readout's
    cotangent g, the adjoint iterations for u = J^T u + g, one VJP of the layer and of prepare/inject for the
    parameters, Adam. No stopping tests, no while loop, no custom VJP.

    ``arithmetic="layer"``: n_fwd layer evaluations and n_adj products u <- J^T u + g (the iteration counts of the
    real solves, none of the solvers' own work). ``arithmetic="solver"``: the model's forward and adjoint solvers
    themselves (their ``init``/``update``, e.g. Anderson's history, Gram matrix and mixing), vmapped over the batch
    for n_fwd - 1 and n_adj - 1 updates after ``init`` (n_fwd and n_adj map evaluations, as in the real solves), in
    a fixed-count ``fori_loop``: the real step's arithmetic without its per-example stopping machinery."""
    if arithmetic not in ("layer", "solver"):
        raise ValueError(f"benchmarks.floor.floor_step: arithmetic={arithmetic!r} must be 'layer' or 'solver'")
    layer = jax.vmap(model.layer, in_axes=(0, None, 0))
    settings = model.settings
    solver, backward = fp.check_settings(solver=settings.solver, tol=settings.tol, rtol=settings.rtol,
                                         maxiter=settings.maxiter, backward=settings.backward)
    adjoint_solver = fp.get_solver(backward.solver) if arithmetic == "solver" else None  # a Krylov adjoint: error

    def iterate(step_solver, f, z0, updates):
        state = step_solver.init(f, z0)
        return jax.lax.fori_loop(0, updates, lambda _, st: step_solver.update(f, st), state).z

    def forward_one(prepared, c):
        return iterate(solver, lambda z: model.layer(z, prepared, c), model.initial_state(c), n_fwd - 1)

    def adjoint_one(s, prepared, c, g):
        _, vjp = jax.vjp(lambda z: model.layer(z, prepared, c), s)
        return iterate(adjoint_solver, lambda u: vjp(u)[0] + g, g, n_adj - 1)

    def pieces(params, xb):
        return model.prepare(params), jax.vmap(model.inject, in_axes=(None, 0))(params, xb)

    def head(params, s, prepared, c, yb):
        z = jax.vmap(model.hidden, in_axes=(0, None, 0))(s, prepared, c)
        logits = jax.vmap(model.readout, in_axes=(None, 0))(params, z)
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    def step(params, opt_state, xb, yb):
        (prepared, c), pieces_vjp = jax.vjp(lambda p: pieces(p, xb), params)
        if arithmetic == "solver":
            s = jax.vmap(forward_one, in_axes=(None, 0))(prepared, c)
        else:
            s = jax.vmap(model.initial_state)(c)
            s = jax.lax.fori_loop(0, n_fwd, lambda _, v: layer(v, prepared, c), s)
        g_head, g_s, g_prepared, g_c = jax.grad(head, argnums=(0, 1, 2, 3))(params, s, prepared, c, yb)
        _, layer_vjp = jax.vjp(layer, s, prepared, c)
        if arithmetic == "solver":
            u = jax.vmap(adjoint_one, in_axes=(0, None, 0, 0))(s, prepared, c, g_s)
        else:
            u = jax.lax.fori_loop(0, n_adj, lambda _, v: layer_vjp(v)[0] + g_s, g_s)
        _, g_p, g_cu = layer_vjp(u)
        g_pieces = pieces_vjp((jax.tree.map(jnp.add, g_prepared, g_p), g_c + g_cu))[0]
        grads = jax.tree.map(jnp.add, g_head, g_pieces)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    return step


def _counts(model, params, xb, yb) -> dict:
    """Forward and adjoint step counts of the real step on this batch (per example: mean, max; converged).

    The adjoint is solved with the cotangent the training step gives it, d mean-CE / d s* (each example's own
    gradient divided by the batch size), with the model's backward settings."""
    settings, n = model.settings, xb.shape[0]

    def one(x, y):
        prepared, c = model.prepare(params), model.inject(params, x)
        solution = fp.solve(model.layer, model.initial_state(c), prepared, c, solver=settings.solver,
                            tol=settings.tol, rtol=settings.rtol, maxiter=settings.maxiter,
                            backward=settings.backward, axis_name=settings.axis_name)

        def loss(state):
            logits = model.readout(params, model.hidden(state, prepared, c))
            return optax.softmax_cross_entropy_with_integer_labels(logits, y) / n

        adjoint = fp.adjoint_solve(model.layer, solution.value, prepared, c, cotangent=jax.grad(loss)(solution.value),
                                   backward=settings.backward, tol=settings.tol, rtol=settings.rtol)
        return solution.stats, adjoint.stats

    forward, adjoint = jax.jit(jax.vmap(one, axis_name=eq.BATCH_AXIS))(xb, yb)
    return {
        "forward_steps_mean": float(jnp.mean(forward.num_steps)), "forward_steps_max": int(jnp.max(forward.num_steps)),
        "forward_converged_fraction": float(jnp.mean(forward.converged)),
        "adjoint_steps_mean": float(jnp.mean(adjoint.num_steps)), "adjoint_steps_max": int(jnp.max(adjoint.num_steps)),
        "adjoint_converged_fraction": float(jnp.mean(adjoint.converged)),
        "adjoint_max_residual": float(jnp.max(adjoint.residual)),
    }


def _row(name: str, comparison: bench.Comparison, extra: dict) -> dict:
    row = {"ratio_real_over_floor": comparison.ratio, "ratio_p20": comparison.ratio_p20,
           "ratio_p80": comparison.ratio_p80, "real_ms": comparison.a.median_s * 1e3,
           "real_p20_ms": comparison.a.p20_s * 1e3, "real_p80_ms": comparison.a.p80_s * 1e3,
           "floor_ms": comparison.b.median_s * 1e3, "floor_p20_ms": comparison.b.p20_s * 1e3,
           "floor_p80_ms": comparison.b.p80_s * 1e3, **extra}
    print(f"  {name:6s} real/floor {comparison.ratio:.2f} [p20 {comparison.ratio_p20:.2f}, p80 "
          f"{comparison.ratio_p80:.2f}]  real {row['real_ms']:.2f} ms  floor {row['floor_ms']:.2f} ms  "
          + "  ".join(f"{k} {v:.3g}" for k, v in extra.items() if isinstance(v, (int, float))), flush=True)
    return row


def equilibrium_floor(name: str, split, epochs: int, budget: float) -> dict:
    """Real training step vs its floor for one of :func:`equilibrium_models`, after ``epochs`` of training."""
    model = equilibrium_models()[name]
    optimizer = optax.adam(1e-3)
    step = eq.make_train_step(model.apply, optimizer)
    params = model.init(jax.random.key(0))
    opt_state = optimizer.init(params)
    x_train = split.x_train.reshape(len(split.x_train), -1)
    for epoch in range(epochs):
        for xbatch, ybatch in data.batches(x_train, split.y_train, BATCH, seed=0, epoch=epoch):
            params, opt_state, _ = step(params, opt_state, xbatch, ybatch)
    xb, yb = jnp.asarray(x_train[:BATCH]), jnp.asarray(split.y_train[:BATCH])
    counts = _counts(model, params, xb, yb)
    # every solver step evaluates the map once, and its init once more: steps + 1 evaluations (the adjoint's too)
    floor = floor_step(model, optimizer, counts["forward_steps_max"] + 1, counts["adjoint_steps_max"] + 1)
    real = lambda p, o, a, b: step(p, o, a, b)[:2]  # noqa: E731 (same outputs as the floor)
    # same update as the real step (a check that the floor is the same arithmetic, not just the same cost)
    p_real, p_floor = jax.jit(real)(params, opt_state, xb, yb)[0], jax.jit(floor)(params, opt_state, xb, yb)[0]
    counts["max_parameter_gap_after_1_step"] = max(
        float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(p_real), jax.tree.leaves(p_floor)) if a.size)
    comparison = bench.compare(real, floor, params, opt_state, xb, yb, budget_s=budget, warmup=5)
    row = _row(name, comparison, {"trained_epochs": epochs, **counts})
    # the same with the solvers' own arithmetic in the floor: what is left is the stopping machinery alone
    solver_floor = floor_step(model, optimizer, counts["forward_steps_max"] + 1, counts["adjoint_steps_max"] + 1,
                              arithmetic="solver")
    p_solver = jax.jit(solver_floor)(params, opt_state, xb, yb)[0]
    gap = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(p_real), jax.tree.leaves(p_solver))
              if a.size)
    row["solver_floor"] = _row(f"{name} (solver arithmetic)",
                               bench.compare(real, solver_floor, params, opt_state, xb, yb, budget_s=budget, warmup=5),
                               {"max_parameter_gap_after_1_step": gap})
    return row


# ------------------------------------------------------------------------------------------------------ solvers
SOLVER_UPDATES = 13
"""Updates per timed loop in :func:`solver_step_costs` (DEQ's forward count in the floor run)."""


def solver_step_costs(budget: float) -> dict:
    """What one update of each fixed-point solver costs beyond its map evaluation, at the equilibrium models' shape.

    ``SOLVER_UPDATES`` updates of ``picard``, ``anderson`` and ``broyden`` (jeq.fixedpoint defaults) on the map
    z -> relu(W z + c) (width 87, ||W||_2 ~ 0.5), vmapped over a batch of 128 in a fixed-count ``fori_loop``, each timed
    interleaved against the same number of layer evaluations alone. ``ratio`` = solver loop / layer loop; the
    solver's own per-update work is ``(ratio - 1) * layer_us``."""
    rng = np.random.default_rng(0)
    w = jnp.asarray(rng.normal(size=(WIDTH, WIDTH)) * 0.5 / np.sqrt(WIDTH), jnp.float32)
    c = jnp.asarray(rng.normal(size=(BATCH, WIDTH)), jnp.float32)

    def layer(z, c):
        return jax.nn.relu(w @ z + c)

    def layers(c):
        return jax.lax.fori_loop(0, SOLVER_UPDATES, lambda _, z: jax.vmap(layer)(z, c), jnp.zeros_like(c))

    def updates(solver):
        def one(c):
            f = lambda z: layer(z, c)  # noqa: E731
            state = solver.init(f, jnp.zeros(WIDTH, jnp.float32))
            return jax.lax.fori_loop(0, SOLVER_UPDATES, lambda _, st: solver.update(f, st), state).z
        return jax.vmap(one)

    rows = {}
    for name in ("picard", "anderson", "broyden"):
        comparison = bench.compare(updates(fp.get_solver(name)), layers, c, budget_s=budget, warmup=5)
        layer_us = comparison.b.median_s / SOLVER_UPDATES * 1e6
        rows[name] = _row(name, comparison, {"updates": SOLVER_UPDATES, "layer_us": layer_us,
                                             "update_us": comparison.a.median_s / SOLVER_UPDATES * 1e6})
    return rows


# ------------------------------------------------------------------------------------------------------------- EP
def ep_floor_epoch(optimizer, *, beta: float, free_steps: int, nudged_steps: int):
    """One epoch of Laborieux et al.'s EP MLP (two layers, one-sided beta, eps = 1) written out densely."""
    sigma = hopfield.scaled_sigmoid

    def relax(params, s1, s2, drive, y, b, steps):
        w1, (b1, b2) = params.weights[1], params.biases

        def body(_, s):
            s1, s2 = s
            r1, r2 = jnp.clip(s1, 0.0, 1.0), jnp.clip(s2, 0.0, 1.0)
            m1 = ((s1 >= 0) & (s1 <= 1)).astype(s1.dtype)
            m2 = ((s2 >= 0) & (s2 <= 1)).astype(s2.dtype)
            g1 = m1 * (r1 - b1 - drive - r2 @ w1.T)
            g2 = m2 * (r2 - b2 - r1 @ w1)
            if y is not None:
                g2 = g2 + b * (s2 - y)
            return sigma(s1 - g1), sigma(s2 - g2)

        return jax.lax.fori_loop(0, steps, body, (s1, s2))

    def step(carry, batch):
        params, opt_state = carry
        xb, yb = batch
        y = jax.nn.one_hot(yb, params.weights[1].shape[1], dtype=xb.dtype)
        drive = xb @ params.weights[0]
        zeros = (jnp.zeros((xb.shape[0], params.weights[0].shape[1]), xb.dtype),
                 jnp.zeros((xb.shape[0], params.weights[1].shape[1]), xb.dtype))
        lo = relax(params, *zeros, drive, None, 0.0, free_steps)
        hi = relax(params, *lo, drive, y, beta, nudged_steps)
        (l1, l2), (h1, h2) = [tuple(jnp.clip(v, 0.0, 1.0) for v in s) for s in (lo, hi)]
        scale = -1.0 / (beta * xb.shape[0])
        grads = hopfield.HopfieldParams(
            (scale * xb.T @ (h1 - l1), scale * (h1.T @ h2 - l1.T @ l2)),
            (scale * jnp.sum(h1 - l1, 0), scale * jnp.sum(h2 - l2, 0)))
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), None

    def epoch(params, opt_state, xs, ys):
        return jax.lax.scan(step, (params, opt_state), (xs, ys))[0]

    return epoch


def ep_floor(split, budget: float) -> dict:
    """One EP epoch of the ``bench_eqprop`` PyTorch-target setting vs the dense floor epoch."""
    trainer = laborieux_trainer()
    x = split.x_train.reshape(len(split.x_train), -1)
    nb = len(x) // 50
    perm = np.random.default_rng([0, 0]).permutation(len(x))[: nb * 50].reshape(nb, 50)
    xs, ys = jnp.asarray(x[perm]), jnp.asarray(split.y_train[perm])
    params = hopfield.init(jax.random.key(0), [784, 512, 10])
    opt_state = trainer.init(params)
    key = jax.random.key(0)
    real = lambda p, o, a, b: trainer.train_epoch(p, o, key, a, b)[:2]  # noqa: E731 (not donated: reused args)
    floor = ep_floor_epoch(optax.adam(5e-4), beta=0.1, free_steps=30, nudged_steps=10)
    # same update as the real epoch (a check that the floor is the same arithmetic, not just the same cost)
    p_real, _ = jax.jit(real)(params, opt_state, xs[:2], ys[:2])
    p_floor, _ = jax.jit(floor)(params, opt_state, xs[:2], ys[:2])
    gap = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(p_real), jax.tree.leaves(p_floor)))
    comparison = bench.compare(real, floor, params, opt_state, xs, ys, budget_s=budget, warmup=2, min_rounds=5)
    return _row("ep", comparison, {"batches": int(nb), "free_steps": 30, "nudged_steps": 10,
                                   "max_parameter_gap_after_2_steps": gap})


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short timing budgets")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs before timing the equilibrium steps")
    parser.add_argument("--budget", type=float, default=None, help="seconds of interleaved timing per model")
    parser.add_argument("--models", nargs="+", default=["deq", "opteq", "mon", "ep", "solvers"],
                        choices=["deq", "opteq", "mon", "ep", "solvers"],
                        help="models to time against their floors; 'solvers': each solver's update against the layer")
    parser.add_argument("--out", default="results", help="results folder")
    args = parser.parse_args(argv)
    budget = args.budget or (3.0 if args.quick else 10.0)
    _limits = bench.single_threaded_blas()  # noqa: F841  (kept alive for the run)
    split = data.mnist_subset()
    start = time.perf_counter()
    result = {"budget_s": budget, "epochs": args.epochs, "models": {}}
    print("real training step / dense floor, interleaved in one process")
    for name in args.models:
        if name == "ep":
            result["models"][name] = ep_floor(split, 3 * budget)
        elif name == "solvers":
            result["models"][name] = solver_step_costs(budget)
        else:
            result["models"][name] = equilibrium_floor(name, split, args.epochs, budget)
    result["wall_s"] = time.perf_counter() - start
    path = common.write(args.out, "bench_floor", result)  # with git SHA, versions, device, command, load
    print(f"written {path}")
    return result


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
