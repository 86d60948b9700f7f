"""What the three Path-SGD experiments share: method strings, the shared config fields, the learning-rate sweep
scored on validation data, the resumable training loop over every method, and the curve plot.

``pathsgd_adding``, ``pathsgd_seqmnist`` and ``pathsgd_charlm`` each define a :class:`Task` (data, per-example loss,
the fused loss + path sum of Path-SGD, evaluation, budget) and call :func:`train_methods`, which trains every ``optimizer/init`` method
of the config from the same initial key with the same clipping (``jeq.pathsgd.make_optimizer``) and the same
jitted step (``jeq.pathsgd.make_rnn_train_step``), resumably, and returns the metrics under
``<prefix>/<method>/...``.

Learning rates are selected on validation data, never on test data (:func:`select_learning_rates`): each method's
rate is the best of the grid ``learning_rates[i] * sweep_factors`` by the final validation score of short runs on the
sweep seeds (disjoint from the headline seeds, checked), and the headline runs then train on the headline seeds with
the selected rates. Every method gets the same grid size, the same sweep seeds and the same sweep budget. The headline
metrics are the FINAL test values (``final/test_<m>``); ``best_val/test_<m>`` is the test value at the evaluation
point with the best validation value (no statistic picks a point by its test value).
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import numpy as np
import optax

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
    """One learning-rate grid centre per method (each experiment sets its defaults); each method trains with the
    rate from ``centre * sweep_factors`` that scores best on validation data (a single factor: that rate, no sweep)."""
    momenta: tuple[float, ...] = ()
    """Heavy-ball momentum per method (empty: none)."""
    sweep_factors: tuple[float, ...] = (1 / 3, 1.0, 3.0)
    """Learning-rate grid of every method: its ``learning_rates`` entry times these factors (same grid size, seeds and
    steps for every method, Path-SGD and the SGD controls alike)."""
    sweep_seeds: tuple[int, ...] = (100, 101)
    """Seeds of the learning-rate sweep runs (their own initialisation, training data and validation data); must be
    disjoint from ``--seeds``, the headline seeds."""

    def __post_init__(self) -> None:
        """``--methods`` alone keeps each named method's default learning rate and momentum.

        The per-method tuples are positional; when ``methods`` is not the experiment's default list and
        ``learning_rates`` or ``momenta`` is still the default tuple, its entries are looked up by method name in the
        default lists (a method without a default needs the flag). Explicit tuples are left alone.
        """
        defaults = {field.name: field.default for field in dataclasses.fields(self)}
        if self.methods == defaults["methods"]:
            return
        for name, flag in (("learning_rates", "--learning-rates"), ("momenta", "--momenta")):
            values, default = getattr(self, name), defaults[name]
            if values != default or not default:
                continue
            by_method = dict(zip(defaults["methods"], default))
            missing = [m for m in self.methods if m not in by_method]
            if missing:
                raise ValueError(f"experiments: methods {missing} have no default {name.replace('_', ' ')}: pass "
                                 f"{flag} with one value per method {self.methods}")
            object.__setattr__(self, name, tuple(by_method[m] for m in self.methods))


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
        """``jeq.pathsgd.make_optimizer`` with this method's optimizer and momentum at unit learning rate, followed by
        ``optax.scale(eta)`` with eta held in the optimizer state (``optax.inject_hyperparams``).

        The updates are those of ``make_optimizer(learning_rate=eta)`` bit for bit (``(-d) * eta == d * (-eta)``), and
        one compiled train step serves every eta of a sweep (:func:`compiled_train_step`).
        """
        unit = pathsgd.make_optimizer(self.optimizer, learning_rate=1.0, max_norm=max_norm, path_sum=path_sum,
                                      momentum=self.momentum, clip=clip)
        return optax.chain(unit, optax.inject_hyperparams(optax.scale)(step_size=self.learning_rate))


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
    """``evaluate(params) -> {metric: value}``: ``val_<m>`` on the validation data, and ``test_<m>`` on the test data
    for a headline run (a sweep run's task has no test metrics and never touches the test data)."""
    next_batch: Callable[[int], tuple[np.ndarray, np.ndarray]]
    """``next_batch(step) -> (xb, yb)``, deterministic in ``step`` (a resumed run sees the same batches)."""
    steps: int
    """Training steps per method."""
    eval_every: int
    """Steps between evaluations (and checkpoints)."""


COMPILED_STEPS: dict[tuple, Callable] = {}
"""Train steps built by :func:`compiled_train_step`, by (task functions, optimizer, momentum, clip, devices)."""


def compiled_train_step(task: Task, method: Method, *, max_norm: float, clip: str, devices: int = 1
                        ) -> tuple[Callable, optax.GradientTransformation]:
    """``(train_step, optimizer)`` for ``method`` on ``task``: one jitted step per task functions, optimizer,
    momentum, clip and device count, shared by every learning rate and initialisation (eta lives in the optimizer
    state, see :meth:`Method.make_optimizer`), so a sweep and the seeds after the first compile nothing new.

    The task's ``loss_fn``, ``fused_loss_fn`` and ``path_sum`` key the cache by identity: an experiment that wants
    the reuse builds them once per configuration.
    """
    optimizer = method.make_optimizer(max_norm=max_norm, path_sum=task.path_sum, clip=clip)
    key = (task.loss_fn, task.fused_loss_fn, task.path_sum, method.optimizer, method.momentum, max_norm, clip,
           devices)
    if key not in COMPILED_STEPS:
        if method.is_path:
            step = pathsgd.make_rnn_train_step(task.fused_loss_fn, optimizer, fused_path_sum=True)
        else:
            step = pathsgd.make_rnn_train_step(task.loss_fn, optimizer)
        COMPILED_STEPS[key] = sharding.data_parallel(step, sharding.data_mesh(devices), batch_argnums=(2, 3, 4))
    return COMPILED_STEPS[key], optimizer


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of ``metric`` is better (losses, MSE, bits per character; not accuracies)."""
    return any(word in metric for word in ("loss", "mse", "bpc", "error"))


def best_index(values: list[float], metric: str) -> int | None:
    """Index of the best finite value of ``metric`` (the first one on ties); None when none is finite."""
    finite = [(v if lower_is_better(metric) else -v, i) for i, v in enumerate(values) if math.isfinite(v)]
    return min(finite)[1] if finite else None


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
    train_step: Callable | None = None,
) -> dict:
    """Train one (method, task) run with periodic evaluation, resumable through ``state['current']``.

    ``fused`` (Path-SGD): train on ``task.fused_loss_fn`` with ``make_rnn_train_step(..., fused_path_sum=True)``,
    which takes kappa1 from the same scan as the loss (same numbers as the separate kappa pass, fewer sequential scans
    on an accelerator); otherwise on ``task.loss_fn``.

    ``state`` is the seed's checkpoint dict: finished runs live in ``state['finished'][run_name]``; the run in
    progress in ``state['current']`` (params, optimizer state, step, curve), saved after every evaluation.
    The run stops early, with ``diverged = True`` and a message on stderr, when the training loss turns NaN/inf.
    ``devices`` > 1 runs the same jitted step data-parallel (``jeq.sharding``: parameters replicated, each batch
    split over the devices, padding weighted out). ``train_step`` (from :func:`compiled_train_step`, built for
    ``optimizer``) reuses a compiled step; without it one is built here.

    Returns:
      ``{"curve/step": [...], "curve/<metric>": [...], "final/<metric>": x, "diverged": bool, "seconds_per_step": s}``
      plus ``best/val_<m>`` (the best validation value) and, when there are validation and test metrics,
      ``best_val/test_<m>`` for every test metric: its value at the evaluation (``best_val/step``) with the best
      value of the FIRST validation metric that ``evaluate`` returns (early stopping on validation). No statistic
      selects an evaluation point by its test value.
    """
    if run_name in state["finished"]:
        return state["finished"][run_name]
    mesh = sharding.data_mesh(devices)
    if train_step is None:
        if fused:
            train_step = pathsgd.make_rnn_train_step(task.fused_loss_fn, optimizer, fused_path_sum=True)
        else:
            train_step = pathsgd.make_rnn_train_step(task.loss_fn, optimizer)
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
        out[f"final/{k}"] = v[-1] if not current["diverged"] else math.nan
        if k.startswith("val_"):
            i = best_index(v, k)
            out[f"best/{k}"] = v[i] if i is not None else math.nan
    # early stopping on the first validation metric: every test metric at its best evaluation
    primary = next((k for k in curve if k.startswith("val_")), None)
    tests = [k for k in curve if k.startswith("test_")]
    if primary is not None and tests:
        i = best_index(curve[primary], primary)
        out["best_val/step"] = curve["step"][i] if i is not None else math.nan
        for k in tests:
            out[f"best_val/{k}"] = curve[k][i] if i is not None else math.nan
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
    learning_rates: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Train every method of ``config`` on ``task`` with :func:`train_method`; metrics as ``<prefix>/<method>/<k>``.

    Each method starts from ``init_rnn(key, ...)`` with its own initialisation (the same key for all), clips the raw
    gradient (or, with ``config.clip = "update"``, its direction) at ``config.max_norm`` and runs ``task.steps``
    steps; the path methods train on ``task.fused_loss_fn``, the others on ``task.loss_fn``. ``learning_rates``
    (method name -> eta, e.g. from :func:`select_learning_rates`) replaces the config's. Runs are named
    ``<prefix>/<method>`` in the seed's checkpoint ``state``.
    """
    out: dict[str, Any] = {}
    for method in parse_methods(config.methods, config.learning_rates, config.momenta):
        if learning_rates is not None:
            method = method._replace(learning_rate=float(learning_rates[method.name]))
        params = method.init_params(key, input_size=input_size, hidden_size=config.hidden, output_size=output_size)
        step, optimizer = compiled_train_step(task, method, max_norm=config.max_norm, clip=config.clip,
                                              devices=config.devices)
        res = train_method(task, run_name=f"{prefix}/{method.name}", params=params, optimizer=optimizer,
                           fused=method.is_path, ckpt=ckpt, state=state, devices=config.devices, train_step=step)
        out.update({f"{prefix}/{method.name}/{k}": v for k, v in res.items()})
    return out


def check_sweep(config: RNNMethodsConfig, where: str) -> None:
    """Eager checks of the sweep flags: positive distinct factors, at least one sweep seed, and sweep seeds disjoint
    from the headline seeds whenever there is a sweep (more than one factor)."""
    if not config.sweep_factors or any(not (f > 0 and math.isfinite(f)) for f in config.sweep_factors):
        raise ValueError(f"{where}: sweep_factors={config.sweep_factors} must be one or more finite values > 0")
    if len(set(config.sweep_factors)) != len(config.sweep_factors):
        raise ValueError(f"{where}: sweep_factors={config.sweep_factors} list a factor twice")
    if len(config.sweep_factors) > 1:
        if not config.sweep_seeds:
            raise ValueError(f"{where}: sweep_seeds=(): a sweep needs at least one seed")
        shared = sorted(set(config.sweep_seeds) & set(config.seeds))
        if shared:
            raise ValueError(f"{where}: sweep_seeds={config.sweep_seeds} share {shared} with the headline seeds "
                             f"{config.seeds}; the learning rate must be selected on seeds the headline never uses")


def select_learning_rates(
    config: RNNMethodsConfig,
    make_task: Callable[[int], tuple[Task, jax.Array]],
    *,
    prefix: str,
    metric: str,
    input_size: int,
    output_size: int,
    ckpt: harness.Checkpoint,
) -> tuple[dict[str, float], dict[str, Any]]:
    """eta_m = argmin over eta in c_m * F (6 significant digits) of (1/|S|) sum_{s in S} V_s(eta): each method's learning rate by its final
    validation score.

    c_m is method m's ``config.learning_rates`` entry, F = ``config.sweep_factors``, S = ``config.sweep_seeds`` and
    V_s(eta) the FINAL value of the validation metric ``metric`` (lower is better; a diverged or non-finite run scores
    +inf) after ``task.steps`` steps on ``make_task(s) -> (task, init_key)``, whose ``evaluate`` must return
    validation metrics only (the sweep never builds or reads test data). Ties go to the smaller eta. Every method
    gets the same grid size, seeds and steps. With one factor the grid is that one rate and nothing is trained.

    The sweep runs are resumable and shared by every headline seed: their checkpoint is ``sweep_<prefix>.ckpt``
    beside ``ckpt`` (the harness's per-configuration, per-commit run folder).

    Returns:
      ``({method: eta}, record)`` with the record as metrics: ``<prefix>/<method>/learning_rate`` (selected),
      ``<prefix>/<method>/sweep/learning_rates`` (grid), ``<prefix>/<method>/sweep/<metric>`` (mean score per eta,
      NaN where a run diverged) and ``.../sweep/<metric>_per_seed``, plus ``<prefix>/sweep/seeds``,
      ``<prefix>/sweep/steps``, ``<prefix>/sweep/metric``.
    """
    check_sweep(config, "experiments.pathsgd")
    if not lower_is_better(metric):
        raise ValueError(f"experiments.pathsgd: the sweep metric {metric!r} must be a loss, MSE or BPC (lower is "
                         "better)")
    methods = parse_methods(config.methods, config.learning_rates, config.momenta)
    grids = {m.name: [float(f"{m.learning_rate * f:.6g}") for f in config.sweep_factors] for m in methods}
    record: dict[str, Any] = {}
    chosen: dict[str, float] = {}
    if len(config.sweep_factors) == 1:
        for m in methods:
            chosen[m.name] = grids[m.name][0]
            record.update({f"{prefix}/{m.name}/learning_rate": chosen[m.name],
                           f"{prefix}/{m.name}/sweep/learning_rates": grids[m.name]})
        record.update({f"{prefix}/sweep/seeds": [], f"{prefix}/sweep/steps": 0, f"{prefix}/sweep/metric": metric})
        return chosen, record
    sweep_ckpt = harness.Checkpoint(ckpt.path.with_name(f"sweep_{prefix}.ckpt"))
    try:
        state = sweep_ckpt.load(default=None)
    except harness.UnreadableFile as err:
        harness.warn(f"{err}; redoing the learning-rate sweep")
        state = None
    state = state or {"finished": {}, "current": None}
    scores = {m.name: [] for m in methods}  # [seed][eta]
    steps = 0
    for seed in config.sweep_seeds:
        task, key = make_task(seed)
        steps = task.steps
        for m in methods:
            row = []
            for eta in grids[m.name]:
                trial = m._replace(learning_rate=eta)
                params = trial.init_params(key, input_size=input_size, hidden_size=config.hidden,
                                           output_size=output_size)
                step, optimizer = compiled_train_step(task, trial, max_norm=config.max_norm, clip=config.clip,
                                                      devices=config.devices)
                res = train_method(task, run_name=f"sweep/{prefix}/{m.name}/eta={eta:.6g}/seed={seed}", params=params,
                                   optimizer=optimizer, fused=trial.is_path, ckpt=sweep_ckpt, state=state,
                                   devices=config.devices, train_step=step)
                value = res.get(f"final/{metric}", math.nan)
                if metric not in [k[len("curve/"):] for k in res if k.startswith("curve/")]:
                    raise ValueError(f"experiments.pathsgd: the sweep task's evaluate() has no {metric!r}")
                row.append(float(value) if not res["diverged"] and math.isfinite(value) else math.nan)
            scores[m.name].append(row)
    for m in methods:
        per_eta = np.asarray(scores[m.name], dtype=np.float64).mean(axis=0)  # NaN if any seed diverged
        ranked = np.where(np.isfinite(per_eta), per_eta, np.inf)
        chosen[m.name] = grids[m.name][int(np.argmin(ranked))]
        record.update({
            f"{prefix}/{m.name}/learning_rate": chosen[m.name],
            f"{prefix}/{m.name}/sweep/learning_rates": grids[m.name],
            f"{prefix}/{m.name}/sweep/{metric}": [float(v) for v in per_eta],
            f"{prefix}/{m.name}/sweep/{metric}_per_seed": scores[m.name],
        })
    record.update({f"{prefix}/sweep/seeds": list(config.sweep_seeds), f"{prefix}/sweep/steps": steps,
                   f"{prefix}/sweep/metric": metric})
    return chosen, record


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
