"""Path-SGD on the adding problem (Neyshabur et al., NeurIPS 2016, section 5; task of Hochreiter & Schmidhuber).

``python -m experiments.pathsgd_adding --quick`` trains a 100-unit ReLU RNN on the adding problem with T = 100 and
compares, at the same number of steps, batch size and clipping (``jeq.pathsgd.make_optimizer``):

- ``path_sgd/<init>``: Path-SGD (kappa1), ``sgd/gaussian``, ``sgd/identity`` (IRNN), ``sgd/np`` (np-RNN),
  ``adam/gaussian``;
- optionally ``path_sgd_kappa2/<init>`` (exact kappa2; small hidden sizes only) for the kappa2 ablation
  (``--methods path_sgd/gaussian path_sgd_kappa2/gaussian --hidden 16``).

Reported per seed, per T and per method: the final and best test MSE (1000 fresh sequences; predicting 1 gives
1/6 = 0.167), the first step at which the test MSE fell below 0.01, seconds per step, and the test-MSE curve.
Without ``--quick`` it runs T = 100, 400 and 750. The paper reports that Path-SGD solves all three (spec: unverified).

Commands and runtimes (2-core shared CPU; 20 000 steps x 7 methods x 3 seeds per T; the long-run
estimates below were measured with 4 methods: scale by 7/4):

- ``python -m experiments.pathsgd_adding --quick``: T = 100, 4000 steps, 7 methods, 3 seeds: 10 min (7 ms per step);
- ``python -m experiments.pathsgd_adding --lengths 100``: one train step 6.5 ms (path-SGD 6.6 ms): about 30 min;
- ``python -m experiments.pathsgd_adding --lengths 400``: 25-26 ms per step: about 2 h;
- ``python -m experiments.pathsgd_adding --lengths 750``: 0.05-0.1 s per step (timed over 100 steps): 4-8 h.
  The learning rates were swept at T = 100 only; at T = 750, SGD at 0.1 blows up within 100 steps (test MSE
  ~1e19): sweep them again for the long sequences.
- shorter long-sequence runs, one seed (measured; ``results/pathsgd_adding``):
  ``--lengths 400 --steps 5000 --eval-every 500 --seeds 0``: 10 min (26-27 ms per step); final test MSE
  path-SGD 0.163, SGD 0.158, IRNN diverges (best 0.157), Adam 0.019.
  ``--lengths 750 --steps 2000 --eval-every 250 --seeds 0``: 8 min (47-50 ms per step); path-SGD 0.191 (stable,
  not learning), SGD and IRNN diverge (~1e19), Adam 0.160 (best 0.125).
- kappa2 ablation: ``python -m experiments.pathsgd_adding --lengths 50 --hidden 16 --steps 3000 --methods
  path_sgd/gaussian path_sgd_kappa2/gaussian path_sgd/identity path_sgd_kappa2/identity --learning-rates 0.1 0.1
  0.3 0.3`` (exact kappa2 costs one Hessian-vector product per weight: 2.5 min for 3 seeds).

Status (Done-when "Path-SGD < 0.01 within the quick budget in >= 2/3 seeds"): met, with a protocol the paper does not
state. ``--quick`` (4000 steps, 3 seeds, results/pathsgd_adding/20261128T211547Z.json): ``path_sgd/np+equal``
(kappa1 over T_kappa = T, raw clip 1.0 like every method, momentum 0.5, lr 0.02, np-RNN W_rec with equal-magnitude
output weights) falls below 0.01 in 2/3 seeds (steps 3250 and 2750; best 0.0079 / 0.183 / 0.0043, final 0.0079 /
0.183 / 0.018: seed 2 rebounds, seed 1 never leaves the plateau). At the same budget: Path-SGD from the Gaussian init
(the paper's plain protocol) 0.165-0.203, SGD 0.046-0.083, SGD-IRNN 0.027-0.040, SGD-np 0.069-0.152, the SGD control
with Path-SGD's init and momentum 0.065-0.098 (none below 0.01), Adam below 0.01 in 3/3 (steps 1750-2250; final
0.006-0.014). Why the output init matters (``results/pathsgd_adding/variants/NOTES.md``, session 4): kappa1 of
W_rec[i, j] carries W_out[i]^2 and the gradient W_out[i], so the step on row i of W_rec scales like 1/|W_out[i]|;
near-zero Gaussian output weights give a few rows steps that lift the recurrent spectral radius from 1.00 to 1.26
within 50 steps, and the state overflows. Path-SGD is invariant to node rescaling, so only a different function at
initialisation removes it. Earlier screens (same notes): truncated path length T_kappa in {2, 5, 10, 25}, batch 16 /
clip 10, warm-up + cosine, momentum 0.9, the official code's squared-output-norm Gamma, clipping the path-scaled
update, per-group bias steps, per-coordinate update clipping, scaled Gaussian W_rec: none reaches 0.01 in 2000
steps. Against the diagonal Gauss-Newton curvature kappa1 overstates W_rec's by ~1e6 (Gaussian init, T_kappa = T)
and the other weights' by ~5e3 while the output bias c's is exact; from the np-RNN init the spread is ~2 decades.

Path-SGD runs use ``jeq.pathsgd.make_rnn_train_step(..., fused_path_sum=True)``: kappa1 comes from the same
``lax.scan`` as the loss (same numbers as the separate kappa pass).

This module also holds the training loop the other Path-SGD experiments share (:func:`train_method`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import pathlib
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

from experiments import harness
from jeq import data, pathsgd, sharding


@dataclasses.dataclass(frozen=True)
class Config(harness.BaseConfig):
    lengths: tuple[int, ...] = (100, 400, 750)
    """Sequence lengths T of the adding problem."""
    hidden: int = 100
    """Hidden units H of the ReLU RNN (the paper: 100)."""
    steps: int = 20_000
    """Training steps per method (same budget for every method)."""
    batch_size: int = 50
    """Sequences per step (fresh ones every step)."""
    eval_every: int = 250
    """Steps between test evaluations."""
    test_size: int = 1000
    """Test sequences (fixed per seed)."""
    max_norm: float = 1.0
    """Global-norm clipping of the raw gradient, the same for every method (see jeq.pathsgd.methods)."""
    path_length: int = 0
    """T_kappa: the unrolled length of the graph whose path sum Gamma defines kappa1 (0: the sequence length T;
    the paper does not say whether it used T or a truncated length, see the module docstring)."""
    methods: tuple[str, ...] = ("path_sgd/np+equal", "path_sgd/gaussian", "sgd/gaussian", "sgd/identity", "sgd/np",
                                "sgd/np+equal", "adam/gaussian")
    """``optimizer/init[+equal]``: optimizer in jeq.pathsgd.METHODS, init in jeq.pathsgd.INITS, ``+equal`` for
    equal-magnitude output weights (``init_rnn(output_init="equal")``). The spec's baselines: SGD from the Gaussian,
    IRNN and np-RNN initialisations, plus Adam; Path-SGD from the np-RNN init with equal output weights and
    momentum 0.5 (the configuration that solves the task, session-4 screen in
    ``results/pathsgd_adding/variants/NOTES.md``), from the Gaussian init (the paper's plain protocol, which does
    not), and SGD with the same init and momentum as the first (the control)."""
    learning_rates: tuple[float, ...] = (0.02, 0.3, 0.1, 0.1, 0.1, 0.05, 0.0003)
    """One learning rate per method. Path-SGD np+equal: 3-seed screen {0.005, 0.01, 0.02, 0.04} without momentum,
    0.015 / 0.02 with momentum 0.5; the others: best of a 1500-step sweep at T = 100, seed 0 (path-SGD Gaussian
    {0.1, 0.3, 0.6}, SGD {0.003, 0.01, 0.03, 0.1}, Adam {3e-4, 1e-3, 3e-3}; SGD from np-RNN: 2000 steps, {0.01, 0.03,
    0.1, 0.3}); the SGD control takes sgd/np's 0.1 halved for momentum 0.5 (same effective step)."""
    momenta: tuple[float, ...] = (0.5, 0.0, 0.0, 0.0, 0.0, 0.5, 0.0)
    """Heavy-ball momentum per method (empty: none)."""


# ----------------------------------------------------------------------------------------- shared machinery


class Method(NamedTuple):
    """One compared method: ``optimizer/init[+equal]`` with its learning rate and momentum."""

    name: str
    optimizer: str
    """One of jeq.pathsgd.METHODS."""
    init: str
    """Recurrent initialisation, one of jeq.pathsgd.INITS."""
    output_init: str
    """``"equal"`` for a ``+equal`` suffix (``W_out = +-1/sqrt(H)``), else ``"gaussian"``."""
    learning_rate: float
    momentum: float
    """Heavy-ball momentum (0: none)."""

    @property
    def is_path(self) -> bool:
        return self.optimizer.startswith("path_sgd")

    def init_params(self, key: jax.Array, *, input_size: int, hidden_size: int, output_size: int):
        return pathsgd.init_rnn(key, input_size=input_size, hidden_size=hidden_size, output_size=output_size,
                                init=self.init, output_init=self.output_init)

    def make_optimizer(self, *, max_norm: float, path_sum: Callable):
        return pathsgd.make_optimizer(self.optimizer, learning_rate=self.learning_rate, max_norm=max_norm,
                                      path_sum=path_sum, momentum=self.momentum)


def parse_methods(methods: tuple[str, ...], learning_rates: tuple[float, ...],
                  momenta: tuple[float, ...] = ()) -> list[Method]:
    """:class:`Method` s from ``optimizer/init`` or ``optimizer/init+equal`` strings; clear errors otherwise.

    ``momenta`` is empty (no momentum anywhere) or one value per method.
    """
    if len(methods) != len(learning_rates):
        raise ValueError(
            f"experiments: {len(methods)} methods {methods} but {len(learning_rates)} learning rates {learning_rates}"
        )
    if momenta and len(momenta) != len(methods):
        raise ValueError(f"experiments: {len(methods)} methods {methods} but {len(momenta)} momenta {momenta}")
    if len(set(methods)) != len(methods):
        raise ValueError(f"experiments: methods {methods} list a method twice (each name is one run; compare "
                         "learning rates in separate runs)")
    out = []
    for i, (name, lr) in enumerate(zip(methods, learning_rates)):
        optimizer, _, init = name.partition("/")
        init, plus, output = init.partition("+")
        if optimizer not in pathsgd.METHODS or init not in pathsgd.INITS or (plus and output != "equal"):
            raise ValueError(
                f"experiments: method {name!r} must be 'optimizer/init' or 'optimizer/init+equal' with optimizer in "
                f"{pathsgd.METHODS} and init in {pathsgd.INITS}"
            )
        out.append(Method(name, optimizer, init, "equal" if plus else "gaussian", float(lr),
                          float(momenta[i]) if momenta else 0.0))
    return out


def train_method(
    *,
    run_name: str,
    params: Any,
    optimizer,
    loss_fn: Callable,
    evaluate: Callable[[Any], dict[str, float]],
    next_batch: Callable[[int], tuple[np.ndarray, np.ndarray]],
    steps: int,
    eval_every: int,
    ckpt: harness.Checkpoint,
    state: dict,
    fused_loss_fn: Callable | None = None,
    devices: int = 1,
) -> dict:
    """Train one (method, task) run with periodic evaluation, resumable through ``state['current']``.

    ``fused_loss_fn(params, squared_params, x, y) -> (loss, Gamma)`` (Path-SGD only): train with
    ``make_rnn_train_step(..., fused_path_sum=True)``, which takes kappa1 from the same scan as the loss (same
    numbers as the separate kappa pass, fewer sequential scans on an accelerator).

    ``state`` is the seed's checkpoint dict: finished runs live in ``state['finished'][run_name]``; the run in
    progress in ``state['current']`` (params, optimizer state, step, curve), saved after every evaluation.
    The run stops early, with ``diverged = True`` and a message on stderr, when the training loss turns NaN/inf.
    ``devices`` > 1 runs the same jitted step data-parallel (``jeq.sharding``: parameters replicated, each batch
    split over the devices, padding weighted out).

    Returns:
      ``{"curve/step": [...], "curve/<metric>": [...], "final/<metric>": x, "best/<metric>": x, "diverged": bool,
      "seconds_per_step": s}``.
    """
    if run_name in state["finished"]:
        return state["finished"][run_name]
    if fused_loss_fn is None:
        train_step = pathsgd.make_rnn_train_step(loss_fn, optimizer)
    else:
        train_step = pathsgd.make_rnn_train_step(fused_loss_fn, optimizer, fused_path_sum=True)
    mesh = sharding.data_mesh(devices)
    train_step = sharding.data_parallel(train_step, mesh, batch_argnums=(2, 3, 4))
    current = state.get("current")
    if current is None or current["name"] != run_name:
        current = {"name": run_name, "params": params, "opt_state": optimizer.init(params), "step": 0,
                   "curve": {"step": [], "train_loss": []}, "train_seconds": 0.0, "timed_steps": 0,
                   "diverged": False}
        first = evaluate(params)
        current["curve"]["step"].append(0)
        current["curve"]["train_loss"].append(math.nan)
        for k, v in first.items():
            current["curve"].setdefault(k, []).append(v)
    params, opt_state = sharding.replicate((current["params"], current["opt_state"]), mesh)
    bar = harness.progress(range(current["step"], steps), desc=run_name, initial=current["step"], total=steps)
    losses = []
    t0, timed_from = None, None  # the first step of a (resumed) run compiles: it is not timed
    for step in bar:
        params, opt_state, metrics = train_step(params, opt_state, *sharding.shard_batch(next_batch(step), mesh))
        losses.append(metrics.loss)
        if t0 is None:
            jax.block_until_ready(metrics.loss)
            t0, timed_from = time.perf_counter(), step + 1
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            loss = float(np.mean(jax.device_get(losses)))
            losses = []
            current["train_seconds"] += time.perf_counter() - t0
            current["timed_steps"] = current.get("timed_steps", 0) + (step + 1 - timed_from)
            if not math.isfinite(loss):
                print(f"[{run_name}] training loss is {loss} at step {step + 1}: stopping this run (diverged)",
                      file=sys.stderr)
                current["diverged"] = True
                current["step"] = steps
                break
            results = evaluate(params)
            current["curve"]["step"].append(step + 1)
            current["curve"]["train_loss"].append(loss)
            for k, v in results.items():
                current["curve"][k].append(v)
            current.update(params=params, opt_state=opt_state, step=step + 1)
            state["current"] = current
            ckpt.save(state)
            t0, timed_from = time.perf_counter(), step + 1
    curve = current["curve"]
    out: dict[str, Any] = {f"curve/{k}": v for k, v in curve.items()}
    for k, v in curve.items():
        if k in ("step", "train_loss"):
            continue
        finite = [x for x in v if math.isfinite(x)]
        out[f"final/{k}"] = v[-1] if not current["diverged"] else math.nan
        out[f"best/{k}"] = (min(finite) if "loss" in k or "mse" in k or "bpc" in k else max(finite)) if finite \
            else math.nan
    out["diverged"] = current["diverged"]
    # steps actually run after compilation (a diverged run stops early; its budget is not its step count)
    timed = current.get("timed_steps", 0)
    out["seconds_per_step"] = current["train_seconds"] / timed if timed else math.nan
    state["finished"][run_name] = out
    state["current"] = None
    ckpt.save(state)
    return out


def first_step_below(steps: list[int], values: list[float], threshold: float) -> int | None:
    """The first evaluated step whose value is below ``threshold`` (None if never)."""
    for s, v in zip(steps, values):
        if math.isfinite(v) and v < threshold:
            return int(s)
    return None


def plot_curves(result: dict, path: pathlib.Path, *, metric: str, ylabel: str, panels: list[str],
                log: bool = False, hline: float | None = None) -> None:
    """One panel per task prefix (e.g. ``T100``), one line per method and seed, from the results JSON."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    methods = result["config"]["methods"]
    colors = {m: f"C{i}" for i, m in enumerate(methods)}
    for ax, panel in zip(axes[0], panels):
        for seed, metrics in result["per_seed"].items():
            for m in methods:
                steps = metrics.get(f"{panel}/{m}/curve/step")
                values = metrics.get(f"{panel}/{m}/curve/{metric}")
                if steps is None:
                    continue
                ax.plot(steps, values, color=colors[m], alpha=0.8, label=m if seed == str(result["seeds"][0]) else None)
        if hline is not None:
            ax.axhline(hline, color="gray", ls="--", lw=1)
        if log:
            ax.set_yscale("log")
        ax.set_title(panel)
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


# ----------------------------------------------------------------------------------------- the adding problem


def mse_loss(params: pathsgd.RNNParams, xs: jax.Array, y: jax.Array) -> jax.Array:
    """Squared error of the many-to-one RNN on one sequence."""
    return (pathsgd.rnn_apply(params, xs, head="many_to_one")[0] - y) ** 2


def mse_loss_and_path_sum(params: pathsgd.RNNParams, squared_params: pathsgd.RNNParams, xs: jax.Array,
                          y: jax.Array, *, path_length: int) -> tuple[jax.Array, jax.Array]:
    """:func:`mse_loss` and ``Gamma(squared_params)`` over ``path_length`` steps, from one fused scan."""
    out, path_sum = pathsgd.rnn_apply_with_path_sum(params, squared_params, xs, head="many_to_one",
                                                    path_length=path_length)
    return (out[0] - y) ** 2, path_sum


def run_seed(config: Config, seed: int, ckpt: harness.Checkpoint) -> dict:
    state = ckpt.load(default=None) or {"finished": {}, "current": None}
    methods = parse_methods(config.methods, config.learning_rates, config.momenta)
    out: dict[str, Any] = {}
    key = jax.random.key(seed)
    evaluate_mse = pathsgd.make_eval_fn(mse_loss)
    chunk = 100  # batches generated at once
    for length in config.lengths:
        k_test, k_train, k_init = jax.random.split(jax.random.fold_in(key, length), 3)
        x_test, y_test = data.adding_problem(k_test, config.test_size, length)
        cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

        def next_batch(step, k_train=k_train, length=length, cache=cache):
            block = step // chunk
            if block not in cache:
                cache.clear()
                x, y = data.adding_problem(jax.random.fold_in(k_train, block), chunk * config.batch_size, length)
                cache[block] = (x.reshape(chunk, config.batch_size, length, 2), y.reshape(chunk, config.batch_size))
            x, y = cache[block]
            return x[step % chunk], y[step % chunk]

        def evaluate(params, x_test=x_test, y_test=y_test):
            return {"test_mse": float(evaluate_mse(params, x_test, y_test))}

        path_length = config.path_length or length
        if not 1 <= path_length <= length:
            raise ValueError(f"experiments.pathsgd_adding: path_length={config.path_length} must be in [0, T={length}]")
        path_sum = functools.partial(pathsgd.rnn_path_sum, length=path_length, head="many_to_one")
        fused = functools.partial(mse_loss_and_path_sum, path_length=path_length)
        for method in methods:
            params = method.init_params(k_init, input_size=2, hidden_size=config.hidden, output_size=1)
            optimizer = method.make_optimizer(max_norm=config.max_norm, path_sum=path_sum)
            res = train_method(run_name=f"T{length}/{method.name}", params=params, optimizer=optimizer,
                               loss_fn=mse_loss, evaluate=evaluate, next_batch=next_batch, steps=config.steps,
                               eval_every=config.eval_every, ckpt=ckpt, state=state,
                               fused_loss_fn=fused if method.is_path else None, devices=config.devices)
            prefix = f"T{length}/{method.name}"
            for k, v in res.items():
                out[f"{prefix}/{k}"] = v
            solved = first_step_below(res["curve/step"], res["curve/test_mse"], 0.01)
            out[f"{prefix}/steps_to_mse_0.01"] = solved
            out[f"{prefix}/solved"] = float(solved is not None)
    return out


def plot(result: dict, path: pathlib.Path) -> None:
    panels = [f"T{t}" for t in result["config"]["lengths"]]
    plot_curves(result, path, metric="test_mse", ylabel="test MSE (0.167 = predict 1)", panels=panels, log=True,
                hline=1 / 6)


QUICK = dict(lengths=(100,), steps=4000, eval_every=250, seeds=(0, 1, 2))


def main(argv=None):
    return harness.run("pathsgd_adding", Config, run_seed, plot=plot, quick=QUICK, argv=argv,
                       headline=[f"T100/{m}/final/test_mse" for m in Config.methods])


if __name__ == "__main__":
    main()
