"""Ask/tell tuning of a target algorithm's θ with one budget accounting for every tuner (the RL policy and baselines).

A :class:`Strategy` is a triple of functions over an explicit state (evosax style, as ``jeq.gemm.search``)::

    state = strategy.init(key)
    thetas, state = strategy.ask(key, state, max_count)     # 1..max_count θ dicts
    state = strategy.tell(state, thetas, objectives)         # objectives (n, R): R seeds per θ

:func:`tune` runs a strategy for a budget counted in target-algorithm runs (θ count × R seeds per θ, the same R for
every tuner), checks the contract (1..max_count θ, each inside its ranges/choices), evaluates each batch in one call,
and checkpoints after every tell: a tuning killed at any point and restarted with the same arguments resumes from its
last finished batch and spends exactly the budget (keys are derived from the batch index, so the resumed run is the
uninterrupted run).
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from jeq import validate
from jeq.io import UnreadableFile, atomic_write_bytes, dumps_checkpoint, loads_checkpoint
from jeq.tune.algorithms import Algorithm, HyperParameter, validate_theta

__all__ = ["Strategy", "TuneResult", "batch_evaluator", "checkpoint_progress", "random_search", "rng_from_key",
           "sample_uniform", "tune"]


class Strategy(NamedTuple):
    """An ask/tell tuner over one hyper-parameter space.

    >>> import jax
    >>> import numpy as np
    >>> from jeq.tune import Strategy, hyperparameter, random_search
    >>> Strategy._fields
    ('name', 'space', 'batch_size', 'init', 'ask', 'tell')
    >>> strategy = random_search((hyperparameter("step_size", "float", low=0.0, high=1.0, default=0.5),), batch_size=3)
    >>> state = strategy.init(jax.random.key(0))
    >>> thetas, state = strategy.ask(jax.random.key(1), state, 3)
    >>> state = strategy.tell(state, thetas, np.ones(3))
    >>> len(thetas), sorted(thetas[0])
    (3, ['step_size'])
    """

    name: str
    """Short name, e.g. ``"rl"``, ``"tpe"``."""
    space: tuple[HyperParameter, ...]
    """The hyper-parameters tuned."""
    batch_size: int
    """Largest number of θ one ask returns (the budget must cover one full batch)."""
    init: Callable[[jax.Array], Any]
    """``init(key) -> state``."""
    ask: Callable[[jax.Array, Any, int], tuple[list[dict], Any]]
    """``ask(key, state, max_count) -> (thetas, state)`` with 1 <= len(thetas) <= max_count."""
    tell: Callable[[Any, list[dict], np.ndarray], Any]
    """``tell(state, thetas, objectives) -> state`` with the θ of the last ask and their (n, R) objectives."""


class TuneResult(NamedTuple):
    """History of one tuning run.

    >>> from jeq.tune import TuneResult
    >>> TuneResult._fields
    ('thetas', 'objectives', 'best_theta', 'best_objective', 'runs', 'heldout')
    """

    thetas: list[dict]
    """Every θ evaluated, in order."""
    objectives: np.ndarray
    """(n, R) final best objective of each run (``inf`` = failed)."""
    best_theta: dict
    """θ with the lowest mean objective over its R seeds."""
    best_objective: float
    """That mean."""
    runs: int
    """Target-algorithm runs spent (n × R)."""
    heldout: np.ndarray | None = None
    """Objectives of ``best_theta`` re-run on held-out seeds and instances (``tune(heldout=...)``), else ``None``."""

    def best_so_far(self) -> tuple[np.ndarray, np.ndarray]:
        """(runs spent after each θ, running minimum of the θ means): the best-so-far vs runs curve."""
        means = self.objectives.mean(axis=1)
        runs = np.arange(1, len(means) + 1) * self.objectives.shape[1]
        return runs, np.minimum.accumulate(means)

    def runs_to_reach(self, target: float) -> int | None:
        """Runs spent until a θ with mean objective ``<= target`` was first evaluated (``None`` if never)."""
        runs, best = self.best_so_far()
        hit = np.flatnonzero(best <= target)
        return int(runs[hit[0]]) if hit.size else None


def rng_from_key(key: jax.Array) -> np.random.Generator:
    """A numpy generator seeded from a ``jax.random.key`` (host-side sampling inside strategies).

    >>> import jax
    >>> from jeq.tune import rng_from_key
    >>> a, b = rng_from_key(jax.random.key(0)), rng_from_key(jax.random.key(0))
    >>> a.integers(1000, size=3).tolist() == b.integers(1000, size=3).tolist()
    True
    """
    return np.random.default_rng(np.asarray(jax.random.key_data(key)).astype(np.uint32).tolist())


def _hps(space: Algorithm | Sequence[HyperParameter]) -> tuple[HyperParameter, ...]:
    return space.hyperparameters if isinstance(space, Algorithm) else tuple(space)


def sample_uniform(rng: np.random.Generator, space: Algorithm | Sequence[HyperParameter]) -> dict[str, Any]:
    """One θ drawn uniformly: uniform choice, uniform real (log-uniform for ``log-float``), uniform integer.

    >>> import numpy as np
    >>> from jeq.tune import hyperparameter, sample_uniform
    >>> space = (hyperparameter("step_size", "log-float", low=1e-3, high=10.0, default=1.0),
    ...          hyperparameter("population_size", "categorical", choices=(4, 16), default=4))
    >>> rng = np.random.default_rng(0)
    >>> draws = [sample_uniform(rng, space) for _ in range(400)]
    >>> round(float(np.mean([np.log10(t["step_size"]) < -1 for t in draws])), 1)  # log-uniform: half below 0.1
    0.5
    """
    theta = {}
    for hp in _hps(space):
        if hp.kind in ("categorical", "int"):
            theta[hp.name] = hp.values[int(rng.integers(len(hp.values)))]
        elif hp.kind == "log-float":
            theta[hp.name] = float(np.clip(np.exp(rng.uniform(np.log(hp.low), np.log(hp.high))), hp.low, hp.high))
        else:
            theta[hp.name] = float(rng.uniform(hp.low, hp.high))
    return theta


def random_search(space: Algorithm | Sequence[HyperParameter], *, batch_size: int = 8) -> Strategy:
    """Random search: θ drawn independently by :func:`sample_uniform`.

    >>> import jax
    >>> from jeq.tune import SYNTHETIC_SPACE, random_search, synthetic_objective, tune
    >>> result = tune(random_search(SYNTHETIC_SPACE, batch_size=4), synthetic_objective, budget=16, seeds_per_theta=2,
    ...               key=jax.random.key(0))
    >>> result.runs, len(result.thetas), result.objectives.shape  # 8 theta x 2 seeds
    (16, 8, (8, 2))
    >>> bool(result.best_objective == result.objectives.mean(axis=1).min())
    True
    """
    batch_size = validate.integer("jeq.tune.random_search", "batch_size", batch_size, low=1)
    hps = _hps(space)

    def init(key):
        return None

    def ask(key, state, max_count):
        rng = rng_from_key(key)
        return [sample_uniform(rng, hps) for _ in range(min(batch_size, max_count))], state

    def tell(state, thetas, objectives):
        return state

    return Strategy("random", hps, batch_size, init, ask, tell)


def _save(path: pathlib.Path, fingerprint: dict, state: Any, step: int, thetas: list[dict],
          objectives: list[np.ndarray]) -> None:
    """Atomically write the tuning so far (:func:`jeq.io.dumps_checkpoint`): the strategy state's leaves (its
    structure comes from ``init`` on load)."""
    leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(jax.device_get(state))]
    tree = {"fingerprint": json.dumps(fingerprint), "step": step, "thetas": json.dumps(thetas),
            "objectives": np.concatenate(objectives), "leaves": leaves}
    atomic_write_bytes(path, dumps_checkpoint(tree))


def _read(path: pathlib.Path, where: str) -> dict:
    try:
        tree = loads_checkpoint(path.read_bytes(), where=str(path))
    except UnreadableFile as err:
        validate.fail(where, "checkpoint", str(path), f"is not a jeq.tune checkpoint ({err}): delete it to start the "
                      "tuning afresh")
    if not (isinstance(tree, dict) and {"fingerprint", "step", "thetas", "objectives", "leaves"} <= tree.keys()):
        validate.fail(where, "checkpoint", str(path), "is not a jeq.tune checkpoint (another checkpoint's contents)")
    return tree


def _load(path: pathlib.Path, fingerprint: dict, initial_state: Any) -> tuple[Any, int, list[dict], list[np.ndarray]]:
    """Inverse of :func:`_save`; the state's leaves are put back into the structure of ``initial_state``."""
    where = "jeq.tune.tune"
    tree = _read(path, where)
    saved = json.loads(tree["fingerprint"])
    if saved != fingerprint:
        validate.fail(where, "checkpoint", str(path), f"holds another tuning ({saved}), not {fingerprint}")
    treedef = jax.tree.structure(initial_state)
    leaves = tree["leaves"]
    if len(leaves) != treedef.num_leaves:
        validate.fail(where, "checkpoint", str(path), f"holds {len(leaves)} state leaves, the strategy has "
                      f"{treedef.num_leaves}")
    objectives = np.asarray(tree["objectives"])
    return jax.tree.unflatten(treedef, leaves), int(tree["step"]), json.loads(tree["thetas"]), [objectives]


def checkpoint_progress(path: str | os.PathLike) -> dict[str, Any]:
    """What a tuning checkpoint holds so far: ``{"step": batches done, "runs": runs spent, "fingerprint": ...}``.

    >>> import pathlib, tempfile
    >>> import jax
    >>> from jeq.tune import SYNTHETIC_SPACE, checkpoint_progress, random_search, synthetic_objective, tune
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = pathlib.Path(folder) / "tune.msgpack"
    ...     _ = tune(random_search(SYNTHETIC_SPACE, batch_size=4), synthetic_objective, budget=16, seeds_per_theta=2,
    ...              key=jax.random.key(0), checkpoint=path)
    ...     progress = checkpoint_progress(path)
    >>> progress["step"], progress["runs"]
    (2, 16)
    """
    tree = _read(pathlib.Path(path), "jeq.tune.checkpoint_progress")
    return {"step": int(tree["step"]), "runs": int(np.asarray(tree["objectives"]).size),
            "fingerprint": json.loads(tree["fingerprint"])}


def tune(
    strategy: Strategy,
    evaluate: Callable[[list[dict], jax.Array], np.ndarray],
    *,
    budget: int,
    seeds_per_theta: int,
    key: jax.Array,
    checkpoint: str | os.PathLike | None = None,
    callback: Callable[[list[dict], np.ndarray], None] | None = None,
    heldout: Callable[[dict], np.ndarray] | None = None,
) -> TuneResult:
    """Minimise E[M(A_θ)] over θ with ``strategy``, spending exactly ``budget`` target-algorithm runs.

    Args:
        strategy: the tuner (:func:`jeq.tune.reinforce`, :func:`random_search`, :func:`jeq.tune.tpe`, ...).
        evaluate: ``evaluate(thetas, key) -> (len(thetas), seeds_per_theta)`` objectives, e.g. a
            ``functools.partial`` of :func:`jeq.tune.evaluate` with fresh keys split from ``key``.
        budget: target-algorithm runs (θ count × ``seeds_per_theta``); a multiple of ``seeds_per_theta`` that covers
            at least one full batch.
        seeds_per_theta: R, runs per θ.
        key: ``jax.random.key``; batch ``i`` asks with ``fold_in(k_ask, i)`` and evaluates with ``fold_in(k_eval, i)``.
        checkpoint: file to save the tuning state to after every batch (msgpack: the strategy state must be a pytree
            of arrays and numbers, rebuilt on resume in the structure ``strategy.init`` returns); if it exists, the
            tuning resumes from it (it must come from the same strategy, budget, R and key).
        callback: ``callback(thetas, objectives)`` after every batch.
        heldout: ``heldout(theta) -> objectives`` re-runs the best θ on held-out seeds and instances (not counted in
            the budget); its result is :attr:`TuneResult.heldout`.

    Raises:
        ArgumentError: a budget smaller than one batch or not a multiple of R; a checkpoint of another tuning.
        RuntimeError: a strategy that breaks the ask contract, or an ``evaluate`` of the wrong shape.

    >>> import pathlib, tempfile
    >>> import jax
    >>> import numpy as np
    >>> from jeq.tune import SYNTHETIC_SPACE, random_search, synthetic_objective, tune
    >>> def killed_after_one_batch(thetas, objectives):
    ...     raise KeyboardInterrupt
    >>> def command(**kwargs):  # the same command, run three times
    ...     return tune(random_search(SYNTHETIC_SPACE, batch_size=4), synthetic_objective, budget=16, seeds_per_theta=2,
    ...                 key=jax.random.key(0), **kwargs)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = pathlib.Path(folder) / "tune.msgpack"
    ...     try:
    ...         command(checkpoint=path, callback=killed_after_one_batch)
    ...     except KeyboardInterrupt:
    ...         pass
    ...     resumed = command(checkpoint=path)  # the same command continues
    >>> fresh = command()
    >>> resumed.runs, bool(np.allclose(resumed.objectives, fresh.objectives))  # exactly `budget` runs; resume = fresh
    (16, True)
    """
    where = "jeq.tune.tune"
    if not isinstance(strategy, Strategy):
        validate.fail(where, "strategy", strategy, "must be a jeq.tune.Strategy")
    seeds_per_theta = validate.integer(where, "seeds_per_theta", seeds_per_theta, low=1)
    budget = validate.integer(where, "budget", budget, low=1)
    one_batch = strategy.batch_size * seeds_per_theta
    if budget < one_batch:
        validate.fail(where, "budget", budget, f"must cover at least one batch: {strategy.batch_size} θ x "
                      f"{seeds_per_theta} seeds = {one_batch} runs")
    if budget % seeds_per_theta:
        validate.fail(where, "budget", budget, f"must be a multiple of seeds_per_theta={seeds_per_theta}")
    fingerprint = {"strategy": strategy.name, "space": [hp.name for hp in strategy.space], "budget": budget,
                   "seeds_per_theta": seeds_per_theta,
                   "key": np.asarray(jax.random.key_data(key)).tolist()}
    ask_key, eval_key, init_key = jax.random.split(key, 3)
    path = None if checkpoint is None else pathlib.Path(checkpoint)
    state, step, thetas, objectives = strategy.init(init_key), 0, [], []
    if path is not None and path.exists():
        state, step, thetas, objectives = _load(path, fingerprint, state)
    used = sum(len(o) for o in objectives) * seeds_per_theta
    while used < budget:
        max_count = (budget - used) // seeds_per_theta
        batch, state = strategy.ask(jax.random.fold_in(ask_key, step), state, max_count)
        batch = list(batch)
        if not 1 <= len(batch) <= max_count:
            raise RuntimeError(f"{strategy.name}.ask returned {len(batch)} θ, expected 1..{max_count}")
        try:
            batch = [validate_theta(strategy.space, t, where=f"{strategy.name}.ask") for t in batch]
        except validate.ArgumentError as error:
            raise RuntimeError(f"{strategy.name}.ask proposed a θ outside the space: {error}") from error
        values = np.asarray(evaluate(batch, jax.random.fold_in(eval_key, step)), np.float64)
        if values.shape != (len(batch), seeds_per_theta):
            raise RuntimeError(f"evaluate returned shape {values.shape}, expected {(len(batch), seeds_per_theta)}")
        values = np.where(np.isnan(values), np.inf, values)
        state = strategy.tell(state, batch, values)
        thetas.extend(batch)
        objectives.append(values)
        used += values.size
        step += 1
        if path is not None:
            _save(path, fingerprint, state, step, thetas, objectives)
        if callback is not None:
            callback(batch, values)
    all_objectives = np.concatenate(objectives)
    means = all_objectives.mean(axis=1)
    best = int(np.argmin(means))
    final = None if heldout is None else np.asarray(heldout(thetas[best]), np.float64)
    return TuneResult(thetas, all_objectives, thetas[best], float(means[best]), int(all_objectives.size), final)


def batch_evaluator(evaluate_fn: Callable[..., np.ndarray], seeds_per_theta: int) -> Callable:
    """``evaluate(thetas, key)`` for :func:`tune` from ``evaluate_fn(thetas, keys)`` with R fresh keys per batch.

    >>> import jax
    >>> import numpy as np
    >>> from jeq.tune import batch_evaluator
    >>> def evaluate_fn(thetas, keys):  # (n_theta,) x (R,) keys -> (n_theta, R)
    ...     return np.array([[t["x"] + float(jax.random.uniform(k)) for k in keys] for t in thetas])
    >>> evaluate = batch_evaluator(evaluate_fn, seeds_per_theta=3)
    >>> M = evaluate([{"x": 0.0}, {"x": 10.0}], jax.random.key(0))
    >>> M.shape, bool((M[1] - M[0] == 10.0).all())  # the same R keys for every theta of a batch
    ((2, 3), True)
    """

    def evaluate(thetas: list[dict], key: jax.Array) -> np.ndarray:
        return evaluate_fn(thetas, jax.random.split(key, seeds_per_theta))

    return evaluate

