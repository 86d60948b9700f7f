"""What the three Path-SGD experiments share: method strings, the shared config fields, the resumable training loop
over every method, and the curve plot.

``pathsgd_adding``, ``pathsgd_seqmnist`` and ``pathsgd_charlm`` each define a :class:`Task` (data, per-example loss,
the fused loss + path sum of Path-SGD, evaluation, budget) and call :func:`train_methods`, which trains every ``optimizer/init`` method
of the config from the same initial key with the same clipping (``jeq.pathsgd.make_optimizer``) and the same
jitted step (``jeq.pathsgd.make_rnn_train_step``), resumably, and returns the metrics under
``<prefix>/<method>/...``.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

from . import harness
from jeq import pathsgd, sharding


@dataclasses.dataclass(frozen=True)
class RNNMethodsConfig(harness.BaseConfig):
    """Flags every Path-SGD experiment has: the RNN's width, the batch, the clipping and the compared methods."""

    hidden: int = 100
    """Hidden units H of the ReLU RNN (the paper: 100)."""
    batch_size: int = 50
    """Examples (sequences, images, windows) per training step."""
    max_norm: float = 1.0
    """Clipping bound, the same for every method (see jeq.pathsgd.methods)."""
    clip: str = "gradient"
    """What ``max_norm`` clips (``jeq.pathsgd.make_optimizer(clip=...)``): ``gradient`` (the raw gradient, identical
    for every method; breaks Path-SGD's rescaling invariance whenever active) or ``update`` (each method's direction,
    Path-SGD's in the path-norm metric, which keeps the invariance)."""
    methods: tuple[str, ...] = ("path_sgd/gaussian", "sgd/gaussian", "sgd/identity", "adam/gaussian")
    """``optimizer/init[+equal]``: optimizer in jeq.pathsgd.METHODS, init in jeq.pathsgd.INITS, ``+equal`` for
    equal-magnitude output weights (``init_rnn(output_init="equal")``)."""
    learning_rates: tuple[float, ...] = ()
    """One learning rate per method (each experiment sets its tuned defaults)."""
    momenta: tuple[float, ...] = ()
    """Heavy-ball momentum per method (empty: none)."""


class Method(NamedTuple):
    """One compared method: ``optimizer/init[+equal]`` with its learning rate and momentum."""

    name: str
    """The method string as given, ``optimizer/init[+equal]`` (its runs and metrics are named by it)."""
    optimizer: str
    """One of jeq.pathsgd.METHODS."""
    init: str
    """Recurrent initialisation, one of jeq.pathsgd.INITS."""
    output_init: str
    """``"equal"`` for a ``+equal`` suffix (``W_out = +-1/sqrt(H)``), else ``"gaussian"``."""
    learning_rate: float
    """eta > 0."""
    momentum: float
    """Heavy-ball momentum (0: none)."""

    @property
    def is_path(self) -> bool:
        """Whether the optimizer divides by the path-norm curvature (needs Gamma, trains with the fused loss)."""
        return self.optimizer.startswith("path_sgd")

    def init_params(self, key: jax.Array, *, input_size: int, hidden_size: int, output_size: int):
        """``jeq.pathsgd.init_rnn`` with this method's recurrent and output initialisations."""
        return pathsgd.init_rnn(key, input_size=input_size, hidden_size=hidden_size, output_size=output_size,
                                init=self.init, output_init=self.output_init)

    def make_optimizer(self, *, max_norm: float, path_sum: Callable, clip: str = "gradient"):
        """``jeq.pathsgd.make_optimizer`` with this method's optimizer, learning rate and momentum."""
        return pathsgd.make_optimizer(self.optimizer, learning_rate=self.learning_rate, max_norm=max_norm,
                                      path_sum=path_sum, momentum=self.momentum, clip=clip)


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


class Task(NamedTuple):
    """One task every compared method trains on: its losses, Gamma, data, evaluation and budget."""

    loss_fn: Callable
    """``loss_fn(params, x, y)``: the loss of ONE example (the non-path methods train on it)."""
    fused_loss_fn: Callable
    """``fused_loss_fn(params, squared_params, x, y) -> (loss, Gamma(squared_params))`` from one fused scan (the
    path methods train on it: kappa1 = dGamma/du comes with the gradient)."""
    path_sum: Callable
    """``Gamma(u)``, the network's squared-weight path sum (``jeq.pathsgd.make_optimizer(path_sum=...)``)."""
    evaluate: Callable[[Any], dict[str, float]]
    """``evaluate(params) -> {metric: value}`` on the test data."""
    next_batch: Callable[[int], tuple[np.ndarray, np.ndarray]]
    """``next_batch(step) -> (xb, yb)``, deterministic in ``step`` (a resumed run sees the same batches)."""
    steps: int
    """Training steps per method."""
    eval_every: int
    """Steps between evaluations (and checkpoints)."""


def train_method(
    task: Task,
    *,
    run_name: str,
    params: Any,
    optimizer,
    fused: bool,
    ckpt: harness.Checkpoint,
    state: dict,
    devices: int = 1,
) -> dict:
    """Train one (method, task) run with periodic evaluation, resumable through ``state['current']``.

    ``fused`` (Path-SGD): train on ``task.fused_loss_fn`` with ``make_rnn_train_step(..., fused_path_sum=True)``,
    which takes kappa1 from the same scan as the loss (same numbers as the separate kappa pass, fewer sequential scans
    on an accelerator); otherwise on ``task.loss_fn``.

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
    if fused:
        train_step = pathsgd.make_rnn_train_step(task.fused_loss_fn, optimizer, fused_path_sum=True)
    else:
        train_step = pathsgd.make_rnn_train_step(task.loss_fn, optimizer)
    mesh = sharding.data_mesh(devices)
    train_step = sharding.data_parallel(train_step, mesh, batch_argnums=(2, 3, 4))
    current = state.get("current")
    if current is None or current["name"] != run_name:
        current = {"name": run_name, "params": params, "opt_state": optimizer.init(params), "step": 0,
                   "curve": {"step": [], "train_loss": []}, "train_seconds": 0.0, "timed_steps": 0,
                   "diverged": False}
        first = task.evaluate(params)
        current["curve"]["step"].append(0)
        current["curve"]["train_loss"].append(math.nan)
        for k, v in first.items():
            current["curve"].setdefault(k, []).append(v)
    params, opt_state = sharding.replicate((current["params"], current["opt_state"]), mesh)
    steps = task.steps
    bar = harness.progress(range(current["step"], steps), desc=run_name, initial=current["step"], total=steps)
    losses = []
    t0, timed_from = None, None  # the first step of a (resumed) run compiles: it is not timed
    for step in bar:
        params, opt_state, metrics = train_step(params, opt_state, *sharding.shard_batch(task.next_batch(step), mesh))
        losses.append(metrics.loss)
        if t0 is None:
            jax.block_until_ready(metrics.loss)
            t0, timed_from = time.perf_counter(), step + 1
        if (step + 1) % task.eval_every == 0 or step + 1 == steps:
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
            results = task.evaluate(params)
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


def train_methods(
    config: RNNMethodsConfig,
    task: Task,
    *,
    prefix: str,
    key: jax.Array,
    input_size: int,
    output_size: int,
    ckpt: harness.Checkpoint,
    state: dict,
) -> dict[str, Any]:
    """Train every method of ``config`` on ``task`` with :func:`train_method`; metrics as ``<prefix>/<method>/<k>``.

    Each method starts from ``init_rnn(key, ...)`` with its own initialisation (the same key for all), clips the raw
    gradient (or, with ``config.clip = "update"``, its direction) at ``config.max_norm`` and runs ``task.steps`` steps; the path methods train on ``task.fused_loss_fn``,
    the others on ``task.loss_fn``. Runs are named ``<prefix>/<method>`` in the seed's checkpoint ``state``.
    """
    out: dict[str, Any] = {}
    for method in parse_methods(config.methods, config.learning_rates, config.momenta):
        params = method.init_params(key, input_size=input_size, hidden_size=config.hidden, output_size=output_size)
        optimizer = method.make_optimizer(max_norm=config.max_norm, path_sum=task.path_sum, clip=config.clip)
        res = train_method(task, run_name=f"{prefix}/{method.name}", params=params, optimizer=optimizer,
                           fused=method.is_path, ckpt=ckpt, state=state, devices=config.devices)
        out.update({f"{prefix}/{method.name}/{k}": v for k, v in res.items()})
    return out


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
