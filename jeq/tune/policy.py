"""A sequential policy over hyper-parameters, trained by REINFORCE: the RL tuner (spec ``rltune.md`` §3-5).

An episode builds one θ = (θ_1, ..., θ_K), one hyper-parameter per step in the algorithm's declared order. The state
s_t is the padded encoding of θ_1..θ_{t-1} (one-hot for discrete choices, the squashed value for continuous ones,
zeros for steps not taken yet) plus a one-hot of t; one tanh layer h(s_t) feeds a head per hyper-parameter:

- categorical (``categorical`` and ``int`` kinds): a_t ~ softmax(W_t h + b_t) over the choices / integers;
- squashed Gaussian (``float``, ``log-float``): z_t ~ N(μ_t, σ_t²), (μ_t, log σ_t) = W_t h + b_t, and
  θ_t = lo + (hi − lo)·sigmoid(z_t), or log θ_t = log lo + (log hi − log lo)·sigmoid(z_t) for ``log-float`` (ranges
  spanning decades). The action stored is z_t, so ∇_φ log p(θ_t) = ∇_φ log N(z_t; μ_t, σ_t²): the squash's Jacobian
  does not depend on φ.

An episode's action vector a (length K, float32) holds the choice index of each discrete step and z of each
continuous one. The reward of θ is r = −log M̄ (or −M̄), M̄ the mean final objective over R seeds. The update is

    ∇J ≈ (1/B) Σ_b Σ_t ∇_φ log π_φ(a_{b,t} | s_{b,t}) · (r_b − b̄)/s  +  β ∇_φ (1/B) Σ_b Σ_t H[π_φ(· | s_{b,t})]

with b̄ an exponential moving average of the batch-mean rewards (the baseline), s the batch's reward standard
deviation (z-scoring within the batch so problems of any scale train alike) and β the entropy bonus; optax Adam
with a large ε (see :func:`reinforce`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jeq import validate
from jeq.tune.algorithms import Algorithm, HyperParameter
from jeq.tune.search import Strategy

__all__ = ["PolicyState", "action_to_theta", "entropy", "init_policy", "log_prob", "reinforce", "sample"]

LOG_STD_MIN, LOG_STD_MAX = -4.0, 1.5
"""Bounds on log σ of the Gaussian heads (σ in z units; sigmoid(z) is nearly flat beyond |z| ≈ 6)."""


def _hps(space: Algorithm | Sequence[HyperParameter]) -> tuple[HyperParameter, ...]:
    return space.hyperparameters if isinstance(space, Algorithm) else tuple(space)


def _is_discrete(hp: HyperParameter) -> bool:
    return hp.kind in ("categorical", "int")


def _encoding_sizes(hps: Sequence[HyperParameter]) -> list[int]:
    return [len(hp.values) if _is_discrete(hp) else 2 for hp in hps]


def init_policy(key: jax.Array, space: Algorithm | Sequence[HyperParameter], *, hidden: int = 32,
                initial_std: float = 1.0) -> dict[str, Any]:
    """Policy parameters φ: a tanh layer over the state encoding and one linear head per hyper-parameter.

    The heads' weights start at zero, so the initial policy ignores the state: uniform over each discrete choice and
    z ~ N(0, ``initial_std``²) for each continuous one (θ around the middle of its (log) range).

    >>> import jax
    >>> from jeq.tune import action_to_theta, hyperparameter, init_policy, sample
    >>> space = (hyperparameter("step_size", "log-float", low=1e-3, high=10.0, default=1.0),
    ...          hyperparameter("population_size", "categorical", choices=(4, 16), default=4))
    >>> params = init_policy(jax.random.key(0), space)
    >>> jax.jit(lambda key: sample(params, key, space))(jax.random.key(1)).shape  # one action per hyper-parameter
    (2,)
    """
    where = "jeq.tune.init_policy"
    hps = _hps(space)
    if not hps:
        validate.fail(where, "space", space, "must hold at least one hyper-parameter")
    hidden = validate.integer(where, "hidden", hidden, low=1)
    initial_std = validate.positive(where, "initial_std", initial_std)
    inputs = sum(_encoding_sizes(hps)) + len(hps)
    heads = []
    for hp in hps:
        width = len(hp.values) if _is_discrete(hp) else 2
        bias = jnp.zeros(width)
        if not _is_discrete(hp):
            bias = bias.at[1].set(math.log(initial_std))
        heads.append({"w": jnp.zeros((hidden, width)), "b": bias})
    return {
        "trunk": {"w": jax.random.normal(key, (inputs, hidden)) / math.sqrt(inputs), "b": jnp.zeros(hidden)},
        "heads": heads,
    }


def _step_inputs(actions: jax.Array, hps: Sequence[HyperParameter]) -> jax.Array:
    """(K, inputs): row t encodes a_0..a_{t-1} (later steps zero) and the one-hot of t."""
    pieces = []
    for k, hp in enumerate(hps):
        if _is_discrete(hp):
            pieces.append(jax.nn.one_hot(actions[k].astype(jnp.int32), len(hp.values)))
        else:
            pieces.append(jnp.stack([jax.nn.sigmoid(actions[k]) - 0.5, jnp.ones(())]))
    sizes = _encoding_sizes(hps)
    full = jnp.concatenate(pieces)
    owner = jnp.repeat(jnp.arange(len(hps)), np.asarray(sizes), total_repeat_length=sum(sizes))
    steps = jnp.arange(len(hps))
    prefix = jnp.where(owner[None, :] < steps[:, None], full[None, :], 0.0)
    return jnp.concatenate([prefix, jnp.eye(len(hps))], axis=1)


def _head_outputs(params: dict, inputs: jax.Array, k: int) -> jax.Array:
    h = jnp.tanh(inputs @ params["trunk"]["w"] + params["trunk"]["b"])
    return h @ params["heads"][k]["w"] + params["heads"][k]["b"]


def _gaussian(out: jax.Array) -> tuple[jax.Array, jax.Array]:
    return out[0], jnp.clip(out[1], LOG_STD_MIN, LOG_STD_MAX)


def sample(params: dict, key: jax.Array, space: Algorithm | Sequence[HyperParameter]) -> jax.Array:
    """a ~ π_φ: one episode's (K,) action vector (choice indices and pre-squash z), sampled step by step.

    >>> import jax
    >>> import numpy as np
    >>> from jeq.tune import action_to_theta, hyperparameter, init_policy, sample
    >>> space = (hyperparameter("step_size", "log-float", low=1e-3, high=10.0, default=1.0),
    ...          hyperparameter("population_size", "categorical", choices=(4, 16), default=4))
    >>> params = init_policy(jax.random.key(0), space)
    >>> draw = jax.jit(jax.vmap(lambda k: sample(params, k, space)))  # a batch of episodes in one call
    >>> actions = draw(jax.random.split(jax.random.key(1), 32))
    >>> thetas = [action_to_theta(np.asarray(a), space) for a in actions]
    >>> sorted({t["population_size"] for t in thetas}), all(1e-3 <= t["step_size"] <= 10.0 for t in thetas)
    ([4, 16], True)
    """
    hps = _hps(space)
    keys = jax.random.split(key, len(hps))
    actions = jnp.zeros(len(hps))
    for k, hp in enumerate(hps):
        out = _head_outputs(params, _step_inputs(actions, hps)[k], k)
        if _is_discrete(hp):
            a = jax.random.categorical(keys[k], out).astype(jnp.float32)
        else:
            mean, log_std = _gaussian(out)
            a = mean + jnp.exp(log_std) * jax.random.normal(keys[k])
        actions = actions.at[k].set(a)
    return actions


def _per_step(params: dict, actions: jax.Array, hps: Sequence[HyperParameter]) -> tuple[jax.Array, jax.Array]:
    """(log π(a_t | s_t), H[π(· | s_t)]) for every step t, teacher-forced on ``actions``."""
    inputs = _step_inputs(actions, hps)
    logps, ents = [], []
    for k, hp in enumerate(hps):
        out = _head_outputs(params, inputs[k], k)
        if _is_discrete(hp):
            logp = jax.nn.log_softmax(out)
            logps.append(logp[actions[k].astype(jnp.int32)])
            ents.append(-jnp.sum(jnp.exp(logp) * logp))
        else:
            mean, log_std = _gaussian(out)
            logps.append(-0.5 * ((actions[k] - mean) / jnp.exp(log_std)) ** 2 - log_std - 0.5 * math.log(2 * math.pi))
            ents.append(log_std + 0.5 * math.log(2 * math.pi * math.e))
    return jnp.stack(logps), jnp.stack(ents)


def log_prob(params: dict, actions: jax.Array, space: Algorithm | Sequence[HyperParameter]) -> jax.Array:
    """log π_φ(a) = Σ_t log π_φ(a_t | s_t): categorical log-softmax terms plus Gaussian log-densities of z_t.

    >>> import jax
    >>> import numpy as np
    >>> from jeq.tune import hyperparameter, init_policy, log_prob
    >>> space = (hyperparameter("population_size", "categorical", choices=(4, 8, 16, 32), default=4),)
    >>> params = init_policy(jax.random.key(0), space)  # starts uniform over the choices
    >>> round(float(log_prob(params, np.array([2.0]), space)), 4), round(float(np.log(1 / 4)), 4)
    (-1.3863, -1.3863)
    """
    return jnp.sum(_per_step(params, actions, _hps(space))[0])


def entropy(params: dict, actions: jax.Array, space: Algorithm | Sequence[HyperParameter]) -> jax.Array:
    """Σ_t H[π_φ(· | s_t)] along the episode ``actions`` (Gaussian entropies in z units).

    >>> import jax
    >>> import numpy as np
    >>> from jeq.tune import entropy, hyperparameter, init_policy
    >>> space = (hyperparameter("population_size", "categorical", choices=(4, 8, 16, 32), default=4),)
    >>> params = init_policy(jax.random.key(0), space)
    >>> round(float(entropy(params, np.array([0.0]), space)), 4)  # uniform over 4 choices: log 4
    1.3863
    """
    return jnp.sum(_per_step(params, actions, _hps(space))[1])


def action_to_theta(actions: np.ndarray, space: Algorithm | Sequence[HyperParameter]) -> dict[str, Any]:
    """θ of one action vector: the chosen values, and lo + (hi − lo)·sigmoid(z) (in log space for ``log-float``).

    >>> import numpy as np
    >>> from jeq.tune import action_to_theta, hyperparameter
    >>> space = (hyperparameter("step_size", "log-float", low=1e-3, high=10.0, default=1.0),
    ...          hyperparameter("population_size", "categorical", choices=(4, 16), default=4))
    >>> theta = action_to_theta(np.array([0.0, 1.0]), space)  # z = 0: the middle of the log range
    >>> round(theta["step_size"], 6), theta["population_size"]
    (0.1, 16)
    """
    theta = {}
    for a, hp in zip(np.asarray(actions, np.float64), _hps(space)):
        if _is_discrete(hp):
            theta[hp.name] = hp.values[int(round(a))]
            continue
        u = 1.0 / (1.0 + math.exp(-a)) if a > -700 else 0.0
        if hp.kind == "log-float":
            value = math.exp(math.log(hp.low) + (math.log(hp.high) - math.log(hp.low)) * u)
        else:
            value = hp.low + (hp.high - hp.low) * u
        theta[hp.name] = float(min(max(value, hp.low), hp.high))
    return theta


@functools.lru_cache(maxsize=32)
def _compiled(hps: tuple[HyperParameter, ...], learning_rate: float, adam_eps: float, entropy_weight: float):
    """Jitted batch sampler and REINFORCE update, shared by every tuner over the same space and settings."""
    tx = optax.adam(learning_rate, eps=adam_eps)
    sample_batch = jax.jit(jax.vmap(lambda p, k: sample(p, k, hps), in_axes=(None, 0)))

    def loss(params, actions, advantages):
        logps, ents = jax.vmap(lambda a: _per_step(params, a, hps))(actions)
        return -jnp.mean(advantages * logps.sum(-1)) - entropy_weight * jnp.mean(ents.sum(-1))

    @jax.jit
    def update(params, opt_state, actions, advantages):
        grads = jax.grad(loss)(params, actions, advantages)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    return sample_batch, update, tx


class PolicyState(NamedTuple):
    """State of the :func:`reinforce` tuner between ask and tell."""

    params: dict
    """Policy parameters φ."""
    opt_state: Any
    """Adam state."""
    baseline: float
    """EMA of the batch-mean rewards (``nan`` before the first batch)."""
    actions: np.ndarray
    """(n, K) action vectors of the θ handed out by the last ask."""
    updates: int
    """Policy updates done so far."""


def reinforce(
    space: Algorithm | Sequence[HyperParameter],
    *,
    batch_size: int = 8,
    learning_rate: float = 0.4,
    adam_eps: float = 1.0,
    entropy_weight: float = 0.01,
    baseline_decay: float = 0.8,
    hidden: int = 32,
    initial_std: float = 1.0,
    log_objective: bool = True,
    steps_per_batch: int = 1,
) -> Strategy:
    """The RL tuner: sample ``batch_size`` θ from π_φ per ask, one REINFORCE step per tell (module docstring).

    Args:
        space: the algorithm (or hyper-parameters) to tune.
        batch_size: B, θ per policy update (evaluated in one call).
        learning_rate: Adam step size.
        adam_eps: Adam's ε. With the usual 1e-8, Adam's per-parameter normalisation turns the small, noisy REINFORCE
            gradients of the first batches into full-size steps and, in a synthetic screen (5 hyper-parameters, 80 θ),
            collapsed categorical heads onto random choices; ε = 1 makes small gradients give small steps.
        entropy_weight: β, weight of the entropy bonus.
        baseline_decay: b̄ ← decay·b̄ + (1 − decay)·mean(r).
        hidden: width of the policy's hidden layer.
        initial_std: σ of the Gaussian heads at initialisation.
        log_objective: reward −log M̄ (objectives must be >= 0; suits objectives spanning decades) instead of −M̄.
        steps_per_batch: Adam steps on each batch's REINFORCE loss (1 = plain REINFORCE; more reuse the batch,
            slightly off-policy after the first step).

    >>> import jax
    >>> from jeq.tune import SYNTHETIC_SPACE, reinforce, synthetic_objective, tune
    >>> result = tune(reinforce(SYNTHETIC_SPACE, batch_size=8), synthetic_objective, budget=64, seeds_per_theta=2,
    ...               key=jax.random.key(0))
    >>> first, last = result.objectives[:8].mean(), result.objectives[-8:].mean()
    >>> result.runs, bool(last < first)  # the policy moved towards better theta
    (64, True)
    """
    where = "jeq.tune.reinforce"
    hps = _hps(space)
    batch_size = validate.integer(where, "batch_size", batch_size, low=1)
    learning_rate = validate.positive(where, "learning_rate", learning_rate)
    adam_eps = validate.positive(where, "adam_eps", adam_eps)
    entropy_weight = validate.nonnegative(where, "entropy_weight", entropy_weight)
    baseline_decay = validate.real(where, "baseline_decay", baseline_decay, low=0.0, high=1.0, high_open=True)
    hidden = validate.integer(where, "hidden", hidden, low=1)
    initial_std = validate.positive(where, "initial_std", initial_std)
    steps_per_batch = validate.integer(where, "steps_per_batch", steps_per_batch, low=1)
    sample_batch, update, tx = _compiled(hps, learning_rate, adam_eps, entropy_weight)

    def init(key: jax.Array) -> PolicyState:
        params = init_policy(key, hps, hidden=hidden, initial_std=initial_std)
        return PolicyState(params, tx.init(params), float("nan"), np.zeros((0, len(hps)), np.float32), 0)

    def ask(key: jax.Array, state: PolicyState, max_count: int) -> tuple[list[dict], PolicyState]:
        n = min(batch_size, max_count)
        actions = np.asarray(sample_batch(state.params, jax.random.split(key, n)))
        return [action_to_theta(a, hps) for a in actions], state._replace(actions=actions)

    def tell(state: PolicyState, thetas: list[dict], objectives: np.ndarray) -> PolicyState:
        mean = np.mean(np.asarray(objectives, np.float64), axis=1)
        if log_objective:
            if np.any(mean < 0):
                validate.fail(where, "log_objective", True, f"needs objectives >= 0, got a mean of {mean.min()}")
            rewards = -np.log(np.maximum(mean, 1e-30))
        else:
            rewards = -mean
        finite = np.isfinite(rewards)
        if not finite.any():
            return state._replace(actions=state.actions[:0])
        rewards = np.where(finite, rewards, rewards[finite].min() - 1.0)  # a failed run is the worst of its batch
        baseline = float(np.mean(rewards)) if math.isnan(state.baseline) else state.baseline
        scale = float(np.std(rewards)) if rewards.size > 1 else 0.0
        advantages = (rewards - baseline) / (scale if scale > 1e-12 else 1.0)
        params, opt_state = state.params, state.opt_state
        for _ in range(steps_per_batch):
            params, opt_state = update(params, opt_state, jnp.asarray(state.actions),
                                       jnp.asarray(advantages, jnp.float32))
        baseline = baseline_decay * baseline + (1.0 - baseline_decay) * float(np.mean(rewards))
        return PolicyState(params, opt_state, baseline, state.actions[:0], state.updates + 1)

    return Strategy("rl", hps, batch_size, init, ask, tell)
