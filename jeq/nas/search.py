"""NAGO's searches over generator hyper-parameters theta, on optuna (spec ``nago.md`` §4).

=============  ==========================================  =================================================
method         sampler                                     pruner / objective
=============  ==========================================  =================================================
``hnag-bohb``  TPE (multivariate) over HNAG's 8 values      Hyperband over epochs, reduction factor 2
``hnag-rs``    random over HNAG's 8 values                  none: every trial trains for the full budget
``rnag-bohb``  TPE over the RandWire space (bottom WS)      Hyperband, reduction factor 2
``hnag-mobo``  multi-objective TPE over HNAG + budget       none; objectives (val accuracy up, params down)
=============  ==========================================  =================================================

BOHB here is optuna's TPE + Hyperband (Falkner et al.'s KDE proposer is TPE's; vega used a GP-EI proposer instead).
A theta is scored by the validation accuracy of one sampled network (as vega), or the mean over
``samples_per_theta`` samples. The full-mode schedule is vega's: epochs 30 -> 60 -> 120 with eta = 2; quick mode
scales the epochs down with the same eta.

Storage and workers
-------------------
A study lives in an optuna storage named by a URL: ``journal:PATH`` (default: a journal file under the results
folder; ``optuna.storages.JournalStorage`` with the file backend and its lock) or any SQLAlchemy URL
(``sqlite:///x.db``, ``postgresql://user:pw@host/db``). Every worker runs :func:`run_search` on the same URL and
study name; the budget is a number of *finished* (complete or pruned) trials, plus optionally a total number of
training epochs, and the study ends with exactly that many finished trials however many workers share it:

- a trial whose number is preceded by ``trials`` live trials (running, waiting or finished) is surplus and is
  closed as failed without training (trial numbers are handed out atomically by the storage);
- a RUNNING trial left by a killed worker is marked failed and its theta re-enqueued, so the next worker trains it
  again: on this host a worker is dead when its pid no longer runs (or runs a younger process); on other hosts
  (RDB storage) optuna's heartbeat (``heartbeat_interval``) declares it dead after the grace period.

So a search killed at any point resumes with the same command, loses no finished trial and repeats none. Many
machines on one PostgreSQL study (each host runs the same command)::

    createdb nago   # once, on the database host
    python -m jeq.nas.search --method hnag-bohb --trials 350 --storage postgresql://user:pw@dbhost/nago \\
        --study hnag-bohb-cifar --dataset cifar10 --data-path /data/cifar --budget 4000000 --workers 4

Every trial's theta, epochs trained, validation accuracy, parameters, seconds and architecture fingerprint are user
attributes of the trial; :func:`trial_log` reads them back for the results JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import json
import math
import multiprocessing
import os
import pathlib
import socket
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import optuna
from optuna.trial import TrialState

from jeq import validate
from jeq.nas.generator import HNAG_SPACE, RNAG_SPACE, HParams, randwire, sample_architecture
from jeq.nas.network import fit_width

__all__ = ["METHODS", "SearchConfig", "SearchResult", "TrialSettings", "Evaluation", "evaluate_theta", "hparams_of",
           "open_storage",
           "pareto_front", "run_search", "search", "structure_evaluator", "trial_log"]

METHODS = ("hnag-bohb", "hnag-rs", "rnag-bohb", "hnag-mobo")
"""Search strategies (see the module docstring)."""

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
_ALIVE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


@dataclasses.dataclass(frozen=True)
class TrialSettings:
    """What every trial of a search shares: the data, the training proxy, the parameter budget and the search
    space bounds. :class:`SearchConfig` adds the strategy; ``experiments.nago_search`` adds its own schedule of
    searches on top of the same fields.

    >>> from jeq.nas import SearchConfig, TrialSettings
    >>> settings = TrialSettings(dataset="mnist5k", min_epochs=1, max_epochs=4)
    >>> issubclass(SearchConfig, TrialSettings), settings.budget, settings.batch_size
    (True, 4000000, 128)
    """

    epoch_budget: int = 0
    """If > 0, no new trial starts once the finished trials have trained this many epochs in total (equal compute)."""
    min_epochs: int = 30
    """Hyperband's smallest budget in epochs (vega: 30)."""
    max_epochs: int = 120
    """Largest budget; also the length of the learning-rate schedule (vega: 120)."""
    budget: int = 4_000_000
    """Parameter budget of every sampled network (``fit_width``); MOBO samples budgets in [budget/8, budget]."""
    dataset: str = "cifar10"
    """``mnist5k`` or ``cifar10`` (``jeq.nas.train.DATASETS``)."""
    data_path: str = ""
    """Folder of the CIFAR-10 batches (empty: ``$JEQ_DATA``)."""
    image_size: int = 32
    """Images are resized to this size (divisible by 4)."""
    validation: int = 5000
    """Training examples held out for validation (selection and pruning)."""
    batch_size: int = 128
    """Minibatch size."""
    learning_rate: float = 0.1
    """SGD step size lr_0 (momentum 0.9, StepLR halving every schedule/6 epochs)."""
    weight_decay: float = 1e-4
    """Coupled weight decay."""
    samples_per_theta: int = 1
    """Networks sampled per theta; the score is their mean validation accuracy."""
    max_nodes: int = 10
    """Upper bound of the node counts searched (10 as released; smaller for the CPU proxy)."""
    min_mid_nodes: int = 3
    """Lower bound of N_m searched (3 as released; 1 allows single-node cells)."""
    startup_trials: int = 10
    """TPE's random start-up trials before its density model is used (optuna's default 10)."""

    def __post_init__(self) -> None:
        cls = type(self)
        where = f"jeq.nas.{cls.__name__}" if cls.__module__.startswith("jeq.") else f"{cls.__module__}.{cls.__name__}"
        from jeq.nas.train import DATASETS

        validate.one_of(where, "dataset", self.dataset, DATASETS)
        validate.integer(where, "epoch_budget", self.epoch_budget, low=0)
        validate.integer(where, "min_epochs", self.min_epochs, low=1)
        validate.integer(where, "max_epochs", self.max_epochs, low=self.min_epochs)
        validate.integer(where, "budget", self.budget, low=1)
        validate.integer(where, "samples_per_theta", self.samples_per_theta, low=1)
        validate.integer(where, "max_nodes", self.max_nodes, low=3, high=64)
        validate.integer(where, "min_mid_nodes", self.min_mid_nodes, low=1, high=self.max_nodes)
        validate.integer(where, "startup_trials", self.startup_trials, low=1)


@dataclasses.dataclass(frozen=True)
class SearchConfig(TrialSettings):
    """One search: strategy, budget and the training proxy every trial uses (:class:`TrialSettings`).

    >>> from jeq.nas import METHODS, SearchConfig
    >>> METHODS
    ('hnag-bohb', 'hnag-rs', 'rnag-bohb', 'hnag-mobo')
    >>> SearchConfig(method="hnag-rs", trials=20, dataset="mnist5k").method
    'hnag-rs'
    >>> SearchConfig(method="bohb")
    Traceback (most recent call last):
    ...
    jeq.validate.ArgumentError: jeq.nas.SearchConfig(method='bohb'): must be one of [...]
    """

    method: str = "hnag-bohb"
    """One of :data:`METHODS`."""
    trials: int = 350
    """Finished trials (complete + pruned) the study ends with (vega: 50 brackets x 7 = 350)."""
    reduction_factor: int = 2
    """Hyperband's eta (vega: 2)."""
    schedule_epochs: int = 0
    """Length of the learning-rate schedule (0: ``max_epochs``); MOBO trains ``max_epochs`` epochs of a longer
    schedule, like a low Hyperband rung."""
    seed: int = 0
    """Sampler seed (salted per method, so two strategies never share a sample stream) and network-sampling
    seed."""
    devices: int = 1
    """Devices to split each batch over (``jeq.sharding``)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        where = "jeq.nas.SearchConfig"
        validate.one_of(where, "method", self.method, METHODS)
        validate.integer(where, "trials", self.trials, low=1)
        validate.integer(where, "reduction_factor", self.reduction_factor, low=2)
        validate.integer(where, "schedule_epochs", self.schedule_epochs, low=0)
        validate.integer(where, "seed", self.seed, low=0)


class Evaluation(NamedTuple):
    """What an evaluator returns for one theta.

    >>> from jeq.nas import Evaluation
    >>> Evaluation._fields
    ('accuracy', 'params', 'epochs', 'fingerprint', 'test_accuracy')
    """

    accuracy: float
    """Validation accuracy (mean over the samples)."""
    params: int
    """Trainable parameters (mean over the samples, rounded)."""
    epochs: int
    """Epochs trained (per sample)."""
    fingerprint: str
    """Fingerprint of the (first) sampled architecture."""
    test_accuracy: float | None = None
    """Test accuracy of the same networks, recorded for the report only (never used to select)."""


class SearchResult(NamedTuple):
    """What :func:`run_search` returns.

    Fields by name; ``best`` is one row of ``trials`` (a single-objective search has no ``pareto``):

    >>> from jeq.nas import SearchResult
    >>> rows = [{"number": 0, "accuracy": 0.8}, {"number": 1, "accuracy": 0.9}]
    >>> result = SearchResult("demo", "sqlite:///demo.db", rows, rows[1], None)
    >>> result.best["number"], result.pareto is None
    (1, True)
    """

    study_name: str
    """Name of the optuna study."""
    storage: str
    """Storage URL."""
    trials: list[dict[str, Any]]
    """:func:`trial_log` of the study."""
    best: dict[str, Any] | None
    """Best finished trial at the largest budget (single-objective) or None (MOBO; see ``pareto``)."""
    pareto: list[dict[str, Any]]
    """MOBO's Pareto front (accuracy up, parameters down); empty for single-objective searches."""


# ----------------------------------------------------------------------------------------------- the space


def space_of(config: SearchConfig) -> dict[str, tuple[type, float, float]]:
    """The searched ranges: :data:`HNAG_SPACE` or :data:`RNAG_SPACE`, node counts capped at ``max_nodes``."""
    base = RNAG_SPACE if config.method == "rnag-bohb" else HNAG_SPACE
    space = {}
    for name, (kind, low, high) in base.items():
        if name.endswith("_nodes"):
            low = config.min_mid_nodes if name == "g2_nodes" else low
            high = min(high, config.max_nodes)
        space[name] = (kind, low, high)
    return space


def hparams_of(method: str, theta: dict[str, Any]) -> HParams:
    """theta (the trial's sampled values) -> generator hyper-parameters (RNAG: the RandWire preset).

    >>> from jeq.nas import hparams_of
    >>> hparams_of("rnag-bohb", {"g3_nodes": 8, "g3_k": 4, "g3_p": 0.75})  # RNAG: RandWire with theta's bottom graph
    HParams(g1_nodes=3, ..., g2_nodes=1, ..., g3_nodes=8, g3_k=4, g3_p=0.75, ...)
    """
    values = {k: v for k, v in theta.items() if k in HNAG_SPACE}
    if method == "rnag-bohb":
        return randwire(nodes=values["g3_nodes"], k=values["g3_k"], p=values["g3_p"])
    return HParams(**values)


def _suggest(trial: optuna.Trial, config: SearchConfig) -> dict[str, Any]:
    theta: dict[str, Any] = {}
    for name, (kind, low, high) in space_of(config).items():
        theta[name] = (trial.suggest_int(name, int(low), int(high)) if kind is int
                       else trial.suggest_float(name, float(low), float(high)))
    if config.method == "hnag-mobo":
        theta["budget"] = trial.suggest_int("budget", max(1, config.budget // 8), config.budget, log=True)
    return theta


# ----------------------------------------------------------------------------------------------- evaluation


@functools.lru_cache(maxsize=2)
def _dataset(name: str, image_size: int, validation: int, path: str):
    from jeq.nas.train import load_dataset

    return load_dataset(name, image_size=image_size, validation=validation, path=path or None)


def evaluate_theta(config: SearchConfig, theta: dict[str, Any], *, epochs: int,
                   report: Callable[[int, float], None]) -> Evaluation:
    """Score theta: sample ``samples_per_theta`` networks from HNAG(theta) (seeds ``seed, seed+1, ...``), fit each
    to the parameter budget, train for ``epochs`` (schedule length ``max_epochs``), average validation accuracy.

    ``report(epoch, accuracy)`` gets the first sample's validation curve (pruning raises from there).

    Typical use (trains networks, so not run here; ``jeq_tests/nas/test_search.py`` runs it)::

        config = SearchConfig(method="hnag-rs", trials=1, min_epochs=1, max_epochs=2, dataset="mnist5k",
                              image_size=8, min_mid_nodes=1, budget=5_000, batch_size=100)
        result = evaluate_theta(config, theta, epochs=2, report=lambda epoch, accuracy: None)
        result.accuracy, result.params  # validation accuracy, parameters <= config.budget

    Every sample is fitted to the parameter budget before any training, so an impossible budget fails at once:

    >>> from jeq.nas import SearchConfig, evaluate_theta
    >>> config = SearchConfig(method="hnag-rs", trials=1, min_epochs=1, max_epochs=1, dataset="mnist5k", image_size=8,
    ...                       validation=500, min_mid_nodes=1, budget=10)
    >>> theta = dict(g1_nodes=3, g1_k=2, g1_p=0.5, g2_nodes=1, g2_p=0.2, g3_nodes=3, g3_k=2, g3_p=0.5)
    >>> evaluate_theta(config, theta, epochs=1, report=lambda epoch, accuracy: None)
    Traceback (most recent call last):
    ...
    jeq.validate.ArgumentError: jeq.nas.fit_width(budget=10): must be ...
    """
    from jeq.nas.train import train

    data = _dataset(config.dataset, config.image_size, config.validation, config.data_path)
    hp = hparams_of(config.method, theta)
    budget = int(theta.get("budget", config.budget))
    accs, tests, params, fingerprint = [], [], [], ""
    for s in range(config.samples_per_theta):
        arch = sample_architecture(hp, seed=config.seed + s)
        fingerprint = fingerprint or arch.fingerprint()
        width = fit_width(arch, budget=budget, in_channels=data.x_train.shape[-1])
        result = train(arch, data, epochs=epochs, width=width,
                       schedule_epochs=max(config.schedule_epochs or config.max_epochs, epochs),
                       batch_size=config.batch_size, learning_rate=config.learning_rate,
                       weight_decay=config.weight_decay, seed=config.seed + s, devices=config.devices,
                       callback=report if s == 0 else None, evaluate_test=True)
        accs.append(result.val_accuracy[-1])
        tests.append(result.test_accuracy)
        params.append(result.params)
    return Evaluation(sum(accs) / len(accs), round(sum(params) / len(params)), epochs, fingerprint,
                      sum(tests) / len(tests))


# ----------------------------------------------------------------------------------------------- storage


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """``journal:PATH`` -> JournalStorage on a journal file (created with its folder; a lock left by a killed writer
    is broken after 5 s); an SQLAlchemy URL (``sqlite:``, ``postgresql:``, ``mysql:``) -> RDBStorage with a 60 s
    heartbeat. Anything else is an error.

    >>> import pathlib, tempfile
    >>> from jeq.nas import open_storage
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     storage = open_storage(f"journal:{pathlib.Path(folder) / 'studies' / 'nago.journal'}")
    ...     print(type(storage).__name__)
    JournalStorage
    >>> open_storage("redis://localhost")
    Traceback (most recent call last):
    ...
    jeq.validate.ArgumentError: jeq.nas.open_storage(url='redis://localhost'): must be ...
    """
    where = "jeq.nas.open_storage"
    if not isinstance(url, str):
        validate.fail(where, "url", url, "must be a string")
    if url.startswith("journal:"):
        path = pathlib.Path(url[len("journal:"):].removeprefix("//"))
        if not str(path) or str(path) == ".":
            validate.fail(where, "url", url, "must name a journal file, e.g. journal:results/nago/study.journal")
        path.parent.mkdir(parents=True, exist_ok=True)
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

        lock = JournalFileOpenLock(str(path), grace_period=5)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path), lock_obj=lock))
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if scheme in ("sqlite", "postgresql", "mysql") and "://" in url:
        return optuna.storages.RDBStorage(url, heartbeat_interval=60, grace_period=180)
    validate.fail(where, "url", url, "must be journal:PATH or an SQLAlchemy URL (sqlite:///f.db, "
                                     "postgresql://user:pw@host/db, mysql://...)")


def _process_start(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except OSError:
        return None


def _me() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": _process_start(os.getpid())}


def _dead(worker: dict[str, Any] | None) -> bool:
    if not worker or worker.get("host") != socket.gethostname():
        return False  # another host: left to the RDB heartbeat
    if worker.get("pid") == os.getpid():
        return worker.get("start") != _process_start(os.getpid())
    start = _process_start(int(worker["pid"]))
    return start is None or start != worker.get("start")


def _recover_stale(study: optuna.Study, storage: optuna.storages.BaseStorage) -> None:
    """Mark RUNNING trials of dead workers failed and re-enqueue their theta (once: the storage rejects a second
    state change of the same trial, so two workers cannot both retry it)."""
    if isinstance(storage, optuna.storages.RDBStorage):
        optuna.storages.fail_stale_trials(study)
    now = datetime.datetime.now()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker")
        # a worker tags its trial right after asking for it: untagged after 30 s means it died in between
        orphan = worker is None and t.datetime_start is not None and (now - t.datetime_start).total_seconds() > 30
        if not (orphan or _dead(worker)):
            continue
        try:
            # optuna's ask/tell has no public "fail another worker's trial": go through the storage by trial id
            storage.set_trial_user_attr(t._trial_id, "failed_as", "stale")  # noqa: SLF001
            storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)  # noqa: SLF001
        except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError):
            continue
        if t.params:
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number}, skip_if_exists=False)


# ----------------------------------------------------------------------------------------------- the loop


def _make_study(config: SearchConfig, storage: optuna.storages.BaseStorage, study_name: str, salt: int):
    seed = config.seed * 100_003 + METHODS.index(config.method) * 1_000_003 + salt
    if config.method == "hnag-mobo":
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=config.startup_trials)
        return optuna.create_study(study_name=study_name, storage=storage, sampler=sampler, load_if_exists=True,
                                   directions=["maximize", "minimize"])
    if config.method == "hnag-rs":
        sampler, pruner = optuna.samplers.RandomSampler(seed=seed), optuna.pruners.NopPruner()
    else:
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=config.startup_trials)
        pruner = optuna.pruners.HyperbandPruner(min_resource=config.min_epochs, max_resource=config.max_epochs,
                                                reduction_factor=config.reduction_factor)
    return optuna.create_study(study_name=study_name, storage=storage, sampler=sampler, pruner=pruner,
                               load_if_exists=True, direction="maximize")


def _epochs_used(trials) -> int:
    return sum(int(t.user_attrs.get("epochs", 0)) for t in trials if t.state in _FINISHED)


def structure_evaluator(config: SearchConfig, theta: dict[str, Any], *, epochs: int,
                        report: Callable[[int, float], None]) -> Evaluation:
    """A training-free stand-in for :func:`evaluate_theta`: accuracy = 1 - 1 / (1 + ops / 10) with ``ops`` the
    sampled architecture's operation count, reported unchanged after every epoch. It exercises a search's plumbing
    (sampling, pruning, storage, resume) in seconds; it says nothing about real accuracy.

    >>> from jeq.nas import SearchConfig, structure_evaluator
    >>> config = SearchConfig(method="hnag-rs", dataset="mnist5k", max_nodes=4)
    >>> theta = dict(g1_nodes=3, g1_k=2, g1_p=0.5, g2_nodes=2, g2_p=0.5, g3_nodes=3, g3_k=2, g3_p=0.5)
    >>> seen = []
    >>> result = structure_evaluator(config, theta, epochs=2, report=lambda epoch, acc: seen.append(epoch))
    >>> seen, 0.0 < result.accuracy < 1.0, result.epochs
    ([1, 2], True, 2)
    """
    architecture = sample_architecture(hparams_of(config.method, theta), seed=config.seed)
    accuracy = 1.0 - 1.0 / (1.0 + architecture.num_operations / 10.0)
    for epoch in range(1, epochs + 1):
        report(epoch, accuracy)
    return Evaluation(accuracy, architecture.num_operations, epochs, architecture.fingerprint())


def run_search(config: SearchConfig, *, storage: str, study_name: str, worker: int = 0,
               evaluate: Callable[..., Evaluation] | None = None, progress: bool = True) -> SearchResult:
    """One worker on the study ``study_name`` at ``storage``: ask, evaluate, tell until the study holds
    ``config.trials`` finished trials (or the epoch budget is spent). Safe to run in several processes at once and to
    rerun after a kill (see the module docstring).

    ``evaluate(config, theta, *, epochs, report) -> Evaluation`` defaults to :func:`evaluate_theta` (train the
    sampled networks); ``report(epoch, accuracy)`` forwards to the trial and raises ``optuna.TrialPruned``.

    >>> import tempfile
    >>> from jeq.nas import SearchConfig, run_search, structure_evaluator
    >>> config = SearchConfig(method="hnag-rs", trials=4, min_epochs=1, max_epochs=2, dataset="mnist5k", max_nodes=4)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     result = run_search(config, storage=f"journal:{folder}/nago.journal", study_name="demo",
    ...                         evaluate=structure_evaluator,
    ...                         progress=False)
    >>> len(result.trials), result.best["accuracy"] == max(t["accuracy"] for t in result.trials)
    (4, True)
    """
    if not isinstance(config, SearchConfig):
        validate.fail("jeq.nas.run_search", "config", config, "must be a jeq.nas.SearchConfig")
    store = open_storage(storage)
    evaluate = evaluate or evaluate_theta
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    probe = _make_study(config, store, study_name, 0)
    study = _make_study(config, store, study_name, 7919 * len(probe.get_trials(deepcopy=False)) + worker)
    study.set_user_attr(f"config/{config.method}", dataclasses.asdict(config))
    multi = config.method == "hnag-mobo"
    failures = 0
    while True:
        _recover_stale(study, store)
        trials = study.get_trials(deepcopy=False)
        finished = sum(t.state in _FINISHED for t in trials)
        waiting = sum(t.state == TrialState.WAITING for t in trials)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        if finished >= config.trials or (config.epoch_budget and _epochs_used(trials) >= config.epoch_budget):
            break
        if finished + running >= config.trials and not waiting:
            break  # the remaining trials are being trained by live workers
        trial = study.ask()
        trial.set_user_attr("worker", _me())
        before = [t for t in study.get_trials(deepcopy=False) if t.number < trial.number and t.state in _ALIVE]
        if len(before) >= config.trials:
            trial.set_user_attr("failed_as", "surplus")
            study.tell(trial, state=TrialState.FAIL)
            break
        t0 = time.perf_counter()
        theta = _suggest(trial, config)

        def report(epoch: int, accuracy: float, trial=trial) -> None:
            trial.set_user_attr("epochs", int(epoch))
            trial.set_user_attr("accuracy", float(accuracy))
            if isinstance(store, optuna.storages.RDBStorage):
                store.record_heartbeat(trial._trial_id)  # noqa: SLF001
            if multi:
                return
            trial.report(float(accuracy), int(epoch))
            if epoch < config.max_epochs and trial.should_prune():  # the top rung trains to the end
                raise optuna.TrialPruned(f"pruned at epoch {epoch} with validation accuracy {accuracy:.4f}")

        epochs = config.max_epochs
        try:
            result = evaluate(config, theta, epochs=epochs, report=report)
        except optuna.TrialPruned:
            trial.set_user_attr("seconds", time.perf_counter() - t0)
            study.tell(trial, state=TrialState.PRUNED)
            _say(progress, study_name, trial, "pruned")
            failures = 0
            continue
        except (ValueError, FloatingPointError) as err:
            # an infeasible theta (e.g. a MOBO budget below the architecture's width-1 size) or a diverged run:
            # recorded as failed with its reason, not counted towards the budget; five in a row stop the search
            trial.set_user_attr("error", f"{type(err).__name__}: {err}")
            trial.set_user_attr("failed_as", "error")
            study.tell(trial, state=TrialState.FAIL)
            _say(progress, study_name, trial, "failed")
            failures += 1
            if failures >= 5:
                raise RuntimeError(f"jeq.nas.run_search: five trials in a row failed, the last with {err}") from err
            continue
        failures = 0
        trial.set_user_attr("seconds", time.perf_counter() - t0)
        trial.set_user_attr("epochs", int(result.epochs))
        trial.set_user_attr("accuracy", float(result.accuracy))
        trial.set_user_attr("params", int(result.params))
        trial.set_user_attr("fingerprint", result.fingerprint)
        if result.test_accuracy is not None:
            trial.set_user_attr("test_accuracy", float(result.test_accuracy))
        study.tell(trial, [result.accuracy, float(result.params)] if multi else result.accuracy)
        _say(progress, study_name, trial, "complete")
    return SearchResult(study_name, storage, trial_log(study), _best(study, config), pareto_front(study))


def _say(progress: bool, name: str, trial, state: str) -> None:
    if progress and os.environ.get("JEQ_NO_PROGRESS") != "1":
        a = trial.user_attrs
        print(f"[{name}] trial {trial.number} {state}: epochs {a.get('epochs')} val {a.get('accuracy', math.nan):.4f} "
              f"({a.get('seconds', 0):.0f} s)", file=sys.stderr)


def trial_log(study: optuna.Study) -> list[dict[str, Any]]:
    """Every trial of the study: number, state, theta, epochs trained, validation accuracy, parameters, seconds.

    >>> import tempfile
    >>> import optuna
    >>> from jeq.nas import SearchConfig, open_storage, run_search, structure_evaluator, trial_log
    >>> config = SearchConfig(method="hnag-rs", trials=2, min_epochs=1, max_epochs=1, dataset="mnist5k", max_nodes=4)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     url = f"journal:{folder}/nago.journal"
    ...     _ = run_search(config, storage=url, study_name="demo", evaluate=structure_evaluator, progress=False)
    ...     rows = trial_log(optuna.load_study(study_name="demo", storage=open_storage(url)))
    >>> [row["state"] for row in rows], sorted(rows[0]["theta"]) == sorted(rows[1]["theta"])
    (['COMPLETE', 'COMPLETE'], True)
    """
    rows = []
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        rows.append({"number": t.number, "state": t.state.name, "theta": dict(t.params),
                     "epochs": a.get("epochs"), "accuracy": a.get("accuracy"), "params": a.get("params"),
                     "seconds": a.get("seconds"), "fingerprint": a.get("fingerprint"),
                     "test_accuracy": a.get("test_accuracy"), "error": a.get("error"),
                     "retry_of": a.get("retry_of"), "failed_as": a.get("failed_as"),
                     "start": t.datetime_start.isoformat() if t.datetime_start else None,
                     "complete": t.datetime_complete.isoformat() if t.datetime_complete else None})
    return rows


def _best(study: optuna.Study, config: SearchConfig) -> dict[str, Any] | None:
    if config.method == "hnag-mobo":
        return None
    done = [r for r in trial_log(study) if r["state"] == "COMPLETE" and r["epochs"] == config.max_epochs]
    done = done or [r for r in trial_log(study) if r["state"] in ("COMPLETE", "PRUNED") and r["accuracy"] is not None]
    return max(done, key=lambda r: (r["epochs"] or 0, r["accuracy"]), default=None)


def pareto_front(study: optuna.Study) -> list[dict[str, Any]]:
    """The trials on the Pareto front of a multi-objective study (empty for single-objective studies).

    >>> import tempfile
    >>> from jeq.nas import SearchConfig, run_search, structure_evaluator
    >>> config = SearchConfig(method="hnag-mobo", trials=4, min_epochs=1, max_epochs=1, dataset="mnist5k", max_nodes=4)
    >>> with tempfile.TemporaryDirectory() as folder:  # run_search's result carries pareto_front(study)
    ...     front = run_search(config, storage=f"journal:{folder}/m.journal", study_name="mobo",
    ...                        evaluate=structure_evaluator,
    ...                        progress=False).pareto
    >>> def dominates(b, a):  # b at least as accurate and as small as a, and better in one
    ...     return (b["accuracy"] >= a["accuracy"] and b["params"] <= a["params"]
    ...             and (b["accuracy"], b["params"]) != (a["accuracy"], a["params"]))
    >>> len(front) >= 1, any(dominates(b, a) for a in front for b in front)
    (True, False)
    """
    if len(study.directions) < 2:
        return []
    numbers = {t.number for t in study.best_trials}
    return sorted((r for r in trial_log(study) if r["number"] in numbers), key=lambda r: r["params"] or 0)


def _worker_main(args: tuple) -> None:
    config, storage, study_name, worker = args
    run_search(config, storage=storage, study_name=study_name, worker=worker)


def search(config: SearchConfig, *, storage: str, study_name: str, workers: int = 1) -> SearchResult:
    """:func:`run_search` in ``workers`` processes on one study (``workers - 1`` spawned, one here).

    >>> import tempfile
    >>> from jeq.nas import SearchConfig, run_search, search, structure_evaluator
    >>> config = SearchConfig(method="hnag-rs", trials=3, min_epochs=1, max_epochs=1, dataset="mnist5k", max_nodes=4)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     storage = f"journal:{folder}/nago.journal"
    ...     done = run_search(config, storage=storage, study_name="demo", evaluate=structure_evaluator, progress=False)
    ...     again = search(config, storage=storage, study_name="demo")  # the study is complete: nothing to train
    >>> [t["number"] for t in again.trials] == [t["number"] for t in done.trials], len(again.trials)
    (True, 3)
    """
    workers = validate.integer("jeq.nas.search", "workers", workers, low=1)
    open_storage(storage)  # fail early on a bad URL
    if workers == 1:
        return run_search(config, storage=storage, study_name=study_name)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker_main, args=((config, storage, study_name, w),)) for w in range(1, workers)]
    for p in procs:
        p.start()
    run_search(config, storage=storage, study_name=study_name, worker=0)
    for p in procs:
        p.join()
    study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    return SearchResult(study_name, storage, trial_log(study), _best(study, config), pareto_front(study))


def main(argv: list[str] | None = None) -> SearchResult:
    """``python -m jeq.nas.search --method hnag-bohb --trials 350 --storage URL --workers N ...`` (flags = the
    :class:`SearchConfig` fields); prints the best trial (or the Pareto front) as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for f in dataclasses.fields(SearchConfig):
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=type(f.default), default=f.default)
    parser.add_argument("--storage", default="", help="journal:PATH or an SQLAlchemy URL (default: a journal file "
                                                      "results/nas_search/<study>.journal)")
    parser.add_argument("--study", default="", help="study name (default: the method)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes on this machine")
    args = vars(parser.parse_args(argv))
    storage, study, workers = args.pop("storage"), args.pop("study"), args.pop("workers")
    config = SearchConfig(**args)
    study = study or config.method
    storage = storage or f"journal:results/nas_search/{study}.journal"
    result = search(config, storage=storage, study_name=study, workers=workers)
    print(json.dumps({"best": result.best, "pareto": result.pareto,
                      "finished": sum(r["state"] in ("COMPLETE", "PRUNED") for r in result.trials)}, indent=1))
    return result


if __name__ == "__main__":
    main()
