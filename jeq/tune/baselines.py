"""Baseline tuners at equal target-algorithm runs (ask/tell :class:`~jeq.tune.search.Strategy` s).

- :func:`jeq.tune.random_search` (in :mod:`jeq.tune.search`): independent uniform θ.
- :func:`tpe`: optuna's ``TPESampler`` through optuna's own ask/tell, a batch of ``batch_size`` trials per ask with the
  constant-liar strategy for the pending ones (optuna defaults otherwise: 10 random start-up trials, γ(n) =
  min(⌈0.1 n⌉, 25), 24 EI candidates). The finished trials are the strategy state; each ask rebuilds the study.
- :func:`gp_ei`: Gaussian-process Bayesian optimisation with expected improvement. optuna 5.1's ``GPSampler`` needs
  PyTorch, which jeq does not depend on, so this is scikit-learn's ``GaussianProcessRegressor`` (constant × Matérn-5/2
  with one length scale per input, plus white noise; marginal-likelihood fit, 2 restarts) on θ encoded in the unit
  cube (log scale for ``log-float``, one-hot for categorical), fitted to the standardised log (or raw) mean objective.
  EI is maximised over 1024 uniform candidates plus 1024 perturbations of the 4 best θ seen (Gaussian, σ = 0.1 in the
  cube, on about half the coordinates; projected back onto valid encodings); a batch is filled by the
  kriging believer (the chosen point's predicted mean is added as an observation, the GP refitted with the kernel fixed,
  repeat). The first batch is uniform random.

Every objective handed to ``tell`` is the (n, R) matrix of runs; these tuners see the mean over R per θ.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
from threadpoolctl import threadpool_limits

from jeq import validate
from jeq.tune.algorithms import Algorithm, HyperParameter
from jeq.tune.search import Strategy, rng_from_key, sample_uniform

__all__ = ["GPState", "TPEState", "decode_unit", "encode_unit", "gp_ei", "tpe"]


def _hps(space: Algorithm | Sequence[HyperParameter]) -> tuple[HyperParameter, ...]:
    return space.hyperparameters if isinstance(space, Algorithm) else tuple(space)


def _scalar_objectives(objectives: np.ndarray, log_objective: bool) -> np.ndarray:
    mean = np.mean(np.asarray(objectives, np.float64), axis=1)
    if log_objective:
        mean = np.log(np.maximum(mean, 1e-30))
    worst = np.max(mean[np.isfinite(mean)]) if np.isfinite(mean).any() else 0.0
    return np.where(np.isfinite(mean), mean, worst + 1.0)


# --------------------------------------------------------------------------------------------------------- TPE

def _distributions(hps: Sequence[HyperParameter]) -> dict[str, Any]:
    import optuna

    out = {}
    for hp in hps:
        if hp.kind == "categorical":
            out[hp.name] = optuna.distributions.CategoricalDistribution(hp.choices)
        elif hp.kind == "int":
            out[hp.name] = optuna.distributions.IntDistribution(int(hp.low), int(hp.high))
        else:
            out[hp.name] = optuna.distributions.FloatDistribution(hp.low, hp.high, log=hp.kind == "log-float")
    return out


class TPEState(NamedTuple):
    """State of :func:`tpe`: the finished trials (optuna's study is rebuilt from them at every ask)."""

    rows: np.ndarray
    """(n, K) θ told so far: the value of each real/int hyper-parameter, the choice index of each categorical one."""
    values: np.ndarray
    """(n,) their (log) mean objectives."""


def _row(theta: dict, hps: Sequence[HyperParameter]) -> list[float]:
    return [float(hp.choices.index(theta[hp.name])) if hp.kind == "categorical" else float(theta[hp.name])
            for hp in hps]


def _theta(row: np.ndarray, hps: Sequence[HyperParameter]) -> dict:
    out = {}
    for v, hp in zip(row, hps):
        if hp.kind == "categorical":
            out[hp.name] = hp.choices[int(v)]
        elif hp.kind == "int":
            out[hp.name] = int(v)
        else:
            out[hp.name] = float(v)
    return out


def tpe(space: Algorithm | Sequence[HyperParameter], *, batch_size: int = 8, log_objective: bool = True,
        n_startup_trials: int = 10) -> Strategy:
    """Optuna TPE (Bergstra et al. 2011) asked for ``batch_size`` θ at a time (constant liar for pending trials).

    Each ask rebuilds an in-memory study from the finished trials and a ``TPESampler`` seeded from the ask key, so the
    state is plain arrays (checkpointable without pickling optuna objects) and a resumed tuning repeats the
    uninterrupted one. ``log_objective``: tell optuna log M̄ rather than M̄ (the RL tuner's reward transform).

    >>> import jax
    >>> from jeq.tune import SYNTHETIC_SPACE, synthetic_objective, tpe, tune
    >>> result = tune(tpe(SYNTHETIC_SPACE, batch_size=4, n_startup_trials=4), synthetic_objective, budget=32,
    ...               seeds_per_theta=2, key=jax.random.key(0))
    >>> result.runs, len(result.thetas), bool(result.best_objective < 1.0)
    (32, 16, True)
    """
    where = "jeq.tune.tpe"
    batch_size = validate.integer(where, "batch_size", batch_size, low=1)
    n_startup_trials = validate.integer(where, "n_startup_trials", n_startup_trials, low=1)
    hps = _hps(space)
    distributions = _distributions(hps)

    def init(key: jax.Array) -> TPEState:
        return TPEState(np.zeros((0, len(hps))), np.zeros(0))

    def ask(key: jax.Array, state: TPEState, max_count: int) -> tuple[list[dict], TPEState]:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        seed = int(rng_from_key(key).integers(2**31 - 1))
        sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True, n_startup_trials=n_startup_trials)
        study = optuna.create_study(direction="minimize", sampler=sampler)
        study.add_trials([optuna.trial.create_trial(params=_theta(row, hps), distributions=distributions,
                                                    value=float(value))
                          for row, value in zip(state.rows, state.values)])
        trials = [study.ask(distributions) for _ in range(min(batch_size, max_count))]
        return [{hp.name: t.params[hp.name] for hp in hps} for t in trials], state

    def tell(state: TPEState, thetas: list[dict], objectives: np.ndarray) -> TPEState:
        rows = np.asarray([_row(t, hps) for t in thetas]).reshape(len(thetas), len(hps))
        return TPEState(np.vstack([state.rows, rows]), np.append(state.values, _scalar_objectives(objectives,
                                                                                                 log_objective)))

    return Strategy("tpe", hps, batch_size, init, ask, tell)


# ------------------------------------------------------------------------------------------------------- GP-EI

def encode_unit(theta: dict, space: Algorithm | Sequence[HyperParameter]) -> np.ndarray:
    """θ as a point of the unit cube: (v − lo)/(hi − lo) (of log v for ``log-float``), one-hot for categorical.

    >>> from jeq.tune import encode_unit, hyperparameter
    >>> space = (hyperparameter("step_size", "log-float", low=1e-3, high=10.0, default=1.0),
    ...          hyperparameter("population_size", "categorical", choices=(4, 16), default=4))
    >>> encode_unit({"step_size": 0.1, "population_size": 16}, space).round(4).tolist()  # log10: (-1 + 3) / 4
    [0.5, 0.0, 1.0]
    """
    out: list[float] = []
    for hp in _hps(space):
        v = theta[hp.name]
        if hp.kind == "categorical":
            out.extend(float(c == v) for c in hp.choices)
        elif hp.kind == "log-float":
            out.append((math.log(v) - math.log(hp.low)) / (math.log(hp.high) - math.log(hp.low)))
        else:
            out.append((float(v) - hp.low) / (hp.high - hp.low))
    return np.asarray(out)


def decode_unit(u: np.ndarray, space: Algorithm | Sequence[HyperParameter]) -> dict[str, Any]:
    """Inverse of :func:`encode_unit` (clipped into the cube; argmax of a categorical block; nearest integer).

    >>> import numpy as np
    >>> from jeq.tune import decode_unit, encode_unit, hyperparameter
    >>> space = (hyperparameter("step_size", "log-float", low=1e-3, high=10.0, default=1.0),
    ...          hyperparameter("population_size", "categorical", choices=(4, 16), default=4))
    >>> theta = decode_unit(np.array([0.5, 0.2, 0.7]), space)
    >>> round(theta["step_size"], 6), theta["population_size"]
    (0.1, 16)
    >>> decode_unit(encode_unit(theta, space), space) == theta
    True
    """
    theta, i = {}, 0
    for hp in _hps(space):
        if hp.kind == "categorical":
            theta[hp.name] = hp.choices[int(np.argmax(u[i:i + len(hp.choices)]))]
            i += len(hp.choices)
            continue
        x = float(np.clip(u[i], 0.0, 1.0))
        i += 1
        if hp.kind == "log-float":
            theta[hp.name] = float(np.clip(math.exp(math.log(hp.low) + x * (math.log(hp.high) - math.log(hp.low))),
                                           hp.low, hp.high))
        elif hp.kind == "int":
            theta[hp.name] = int(round(hp.low + x * (hp.high - hp.low)))
        else:
            theta[hp.name] = float(hp.low + x * (hp.high - hp.low))
    return theta


def _unit_blocks(hps: Sequence[HyperParameter]) -> list[tuple[str, int, int]]:
    """(kind, first column, width) of each hyper-parameter's block in the unit-cube encoding."""
    blocks, i = [], 0
    for hp in hps:
        width = len(hp.choices) if hp.kind == "categorical" else 1
        blocks.append((hp.kind, i, width, (hp.high - hp.low) if hp.kind == "int" else 0))
        i += width
    return blocks


def _snap(u: np.ndarray, blocks: list) -> np.ndarray:
    """Project rows of ``u`` onto valid encodings: clip to [0, 1], one-hot of each categorical block's argmax,
    integers onto their grid."""
    u = np.clip(u, 0.0, 1.0)
    for kind, i, width, steps in blocks:
        if kind == "categorical":
            u[:, i:i + width] = np.eye(width)[np.argmax(u[:, i:i + width], axis=1)]
        elif kind == "int":
            u[:, i] = np.round(u[:, i] * steps) / steps
    return u


class GPState(NamedTuple):
    """State of :func:`gp_ei`."""

    x: np.ndarray
    """(n, D) unit-cube encodings of the θ told so far."""
    y: np.ndarray
    """(n,) their (log) mean objectives."""


def _expected_improvement(mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
    from scipy.stats import norm

    std = np.maximum(std, 1e-12)
    z = (best - mean) / std
    return (best - mean) * norm.cdf(z) + std * norm.pdf(z)


def gp_ei(space: Algorithm | Sequence[HyperParameter], *, batch_size: int = 8, log_objective: bool = True,
          candidates: int = 1024) -> Strategy:
    """GP-BO with expected improvement and kriging-believer batches (module docstring); scikit-learn's GP.

    >>> import jax
    >>> from jeq.tune import SYNTHETIC_SPACE, default_theta, gp_ei, synthetic_objective, synthetic_quality, tune
    >>> result = tune(gp_ei(SYNTHETIC_SPACE, batch_size=4, candidates=64), synthetic_objective, budget=32,
    ...               seeds_per_theta=2, key=jax.random.key(0))
    >>> g = synthetic_quality  # noise-free, 0 at the optimum
    >>> bool(g(result.best_theta) < g(default_theta(SYNTHETIC_SPACE)) / 2)  # 16 theta: half the default's gap
    True
    """
    where = "jeq.tune.gp_ei"
    batch_size = validate.integer(where, "batch_size", batch_size, low=1)
    candidates = validate.integer(where, "candidates", candidates, low=1)
    hps = _hps(space)

    def init(key: jax.Array) -> GPState:
        width = len(encode_unit({hp.name: hp.default for hp in hps}, hps))
        return GPState(np.zeros((0, width)), np.zeros(0))

    blocks = _unit_blocks(hps)

    def ask(key: jax.Array, state: GPState, max_count: int) -> tuple[list[dict], GPState]:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

        rng = rng_from_key(key)
        n = min(batch_size, max_count)
        if state.x.shape[0] < 2:
            return [sample_uniform(rng, hps) for _ in range(n)], state
        # BLAS threads spin on these tiny factorisations; on a shared machine one thread is 10-100x faster
        with threadpool_limits(1):
            return _ask_gp(rng, state, n)

    def _ask_gp(rng: np.random.Generator, state: GPState, n: int) -> tuple[list[dict], GPState]:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

        width = state.x.shape[1]
        kernel = (ConstantKernel(1.0, (1e-3, 1e3)) * Matern(np.full(width, 0.5), (1e-2, 1e2), nu=2.5)
                  + WhiteKernel(1e-2, (1e-6, 1.0)))
        gp = GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=2,
                                      random_state=int(rng.integers(2**31 - 1)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gp.fit(state.x, state.y)
        centres = state.x[np.argsort(state.y)[:4]]
        local = np.repeat(centres, candidates // 4 or 1, axis=0)
        local = local + rng.normal(0.0, 0.1, local.shape) * (rng.random(local.shape) < 0.5)
        pool = _snap(np.vstack([rng.random((candidates, width)), local]), blocks)
        x, y = state.x, state.y
        chosen: list[dict] = []
        for _ in range(n):
            mean, std = gp.predict(pool, return_std=True)
            pick = int(np.argmax(_expected_improvement(mean, std, float(np.min(y)))))
            chosen.append(decode_unit(pool[pick], hps))
            # kriging believer: pretend the prediction was observed, refit with the kernel fixed
            x = np.vstack([x, pool[pick]])
            y = np.append(y, mean[pick])
            gp = GaussianProcessRegressor(gp.kernel_, normalize_y=True, optimizer=None).fit(x, y)
            pool = np.delete(pool, pick, axis=0)
        return chosen, state

    def tell(state: GPState, thetas: list[dict], objectives: np.ndarray) -> GPState:
        new_x = np.asarray([encode_unit(t, hps) for t in thetas]).reshape(len(thetas), state.x.shape[1])
        return GPState(np.vstack([state.x, new_x]), np.append(state.y, _scalar_objectives(objectives, log_objective)))

    return Strategy("gp", hps, batch_size, init, ask, tell)
