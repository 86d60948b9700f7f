"""N-A2C: a neighbourhood actor-critic that proposes tiling moves around the best configuration found so far.

Zhang, Cheng, Zang, Park (arXiv 1909.10616), §4.2, as re-implemented in NNI's OpEvo examples:

* state ``s``: the configuration's feature vector (:meth:`Space.features`); actions: every prime move
  ``(axis, i, j, p)`` and knob move; an illegal action leaves the state unchanged;
* network: shared ``Linear(F → 128) + ReLU``, a softmax actor head ``π(a|s)`` and a scalar critic head ``V(s)``;
* every round starts at the incumbent ``s*`` and rolls out ``T`` steps (ε-greedy: a uniform action with probability
  ε, else ``a ~ π(·|s)``) until ``batch_size`` new configurations are collected; they are measured with reward
  ``r = min(cost(s*) / cost(s'), 10)`` (throughput relative to the incumbent; 0 for failures) and the network takes one Adam
  step on

      L = mean_t [ −log π(a_t|s_t) · stop_grad(A_t) + A_t² ],      A_t = r_t − V(s_t).

NNI's code adds ``+log π · A`` (no minus sign), which *lowers* the probability of actions with positive advantage;
jeq uses the correct sign. If the rollouts find no new configuration (the neighbourhood of ``s*`` is exhausted),
unvisited neighbours of ``s*`` and then random configurations fill the batch.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jeq import validate
from jeq.gemm.ask_tell import Strategy, rng_from_key
from jeq.gemm.space import Space, isin_sorted

__all__ = ["ActorCritic", "Na2cState", "actor_critic_loss", "na2c"]


class ActorCritic(nnx.Module):
    """Shared hidden layer with a policy head (logits over actions) and a value head (a thin NNX wrapper)."""

    def __init__(self, num_features: int, num_actions: int, hidden_size: int, *, rngs: nnx.Rngs) -> None:
        self.hidden = nnx.Linear(num_features, hidden_size, rngs=rngs)
        self.actor = nnx.Linear(hidden_size, num_actions, rngs=rngs)
        self.critic = nnx.Linear(hidden_size, 1, rngs=rngs)

    def __call__(self, features: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``features`` (..., F) -> (action logits (..., A), values (...))."""
        h = jax.nn.relu(self.hidden(features))
        return self.actor(h), self.critic(h)[..., 0]


def actor_critic_loss(
    logits: jax.Array, values: jax.Array, actions: jax.Array, rewards: jax.Array, mask: jax.Array
) -> jax.Array:
    """Advantage actor-critic loss ``mean[−log π(a|s)·stop_grad(A) + A²]``, ``A = r − V(s)`` over ``mask``-ed rows.

    ``logits`` (B, A), ``values``/``actions``/``rewards``/``mask`` (B,). Minimising it raises ``log π(a|s)`` for
    actions with positive advantage and regresses ``V`` on the reward.
    """
    log_pi = jnp.take_along_axis(jax.nn.log_softmax(logits), actions[:, None], axis=1)[:, 0]
    advantage = rewards - values
    per_row = -log_pi * jax.lax.stop_gradient(advantage) + advantage**2
    return jnp.sum(per_row * mask) / jnp.maximum(jnp.sum(mask), 1.0)


@functools.lru_cache(maxsize=None)
def _adam(learning_rate: float) -> optax.GradientTransformation:
    """One Adam object per learning rate, so the jitted update is compiled once per setting."""
    return optax.adam(learning_rate)


def _masked(logits: jax.Array, action_mask: jax.Array) -> jax.Array:
    return jnp.where(action_mask, logits, -jnp.inf)


@functools.partial(jax.jit, static_argnums=0)
def _policy(graphdef: Any, params: Any, features: jax.Array, action_mask: jax.Array) -> jax.Array:
    """π(·|s) for a batch of states (jitted once per padded network shape)."""
    return jax.nn.softmax(_masked(nnx.merge(graphdef, params)(features)[0], action_mask))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _update(graphdef, optimizer, params, opt_state, features, actions, rewards, mask, action_mask):
    """One optimiser step on :func:`actor_critic_loss`."""

    def loss_fn(p):
        logits, values = nnx.merge(graphdef, p)(features)
        return actor_critic_loss(_masked(logits, action_mask), values, actions, rewards, mask)

    grads = jax.grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


class Na2cState(NamedTuple):
    """State of :func:`na2c`."""

    params: Any
    """Network parameters (``nnx.State``)."""
    opt_state: Any
    """Adam state."""
    best_genome: np.ndarray
    """(G,) incumbent configuration (rollouts start here)."""
    best_cost: float
    """Its cost (inf before the first success)."""
    transitions: tuple[np.ndarray, np.ndarray, np.ndarray]
    """Of the last ask: (features (n, F), actions (n,), has_action (n,)) of the state each proposal came from."""
    reference_cost: float
    """Incumbent cost when the last ask was made (reward denominator)."""
    visited: np.ndarray
    """Sorted indices of every configuration asked so far."""
    updates: int
    """Number of gradient steps taken."""


def na2c(
    space: Space,
    *,
    hidden_size: int = 128,
    learning_rate: float = 1e-3,
    rollout_steps: int = 3,
    batch_size: int = 6,
    epsilon: float = 0.1,
    max_rollouts: int = 32,
) -> Strategy:
    """N-A2C (NNI defaults: 128 hidden, Adam 1e-3, T = 3 steps, 6 new configurations per round, ε = 0.1).

    Each round simulates ``max_rollouts`` rollouts of ``rollout_steps`` steps from the incumbent together (one batched
    policy call per step) and collects their new configurations rollout by rollout, as NNI's sequential rollouts do;
    after 4 rounds without enough new configurations the batch is filled from the incumbent's unvisited neighbours
    (then random configurations).
    """
    where = "jeq.gemm.na2c"
    for name, value in (("hidden_size", hidden_size), ("rollout_steps", rollout_steps), ("batch_size", batch_size),
                        ("max_rollouts", max_rollouts)):
        validate.integer(where, name, value, low=1)
    learning_rate = validate.positive(where, "learning_rate", learning_rate)
    validate.real(where, "epsilon", epsilon, low=0.0, high=1.0)
    num_actions = space.num_actions
    if num_actions == 0:
        validate.fail(where, "space", space, "must have at least one action (the space has none)")
    optimizer = _adam(learning_rate)
    # Inputs and actions are padded (features with zeros, actions masked out) so that spaces of similar size share
    # one compiled policy and update.
    features_padded = -(-space.num_features // 16) * 16
    actions_padded = -(-num_actions // 32) * 32
    action_mask = np.arange(actions_padded) < num_actions
    graphdef, _ = nnx.split(ActorCritic(features_padded, actions_padded, hidden_size, rngs=nnx.Rngs(0)))

    def features_of(genomes: np.ndarray) -> np.ndarray:
        f = space.features(genomes)
        return np.pad(f, ((0, 0), (0, features_padded - f.shape[1])))

    def policy(params: Any, features: np.ndarray) -> jax.Array:
        return _policy(graphdef, params, features, action_mask)

    def update(params, opt_state, features, actions, rewards, mask):
        return _update(graphdef, optimizer, params, opt_state, features, actions, rewards, mask, action_mask)

    def init(key: jax.Array) -> Na2cState:
        seed = int(np.asarray(jax.random.key_data(key)).ravel()[-1])
        _, params = nnx.split(ActorCritic(features_padded, actions_padded, hidden_size, rngs=nnx.Rngs(seed)))
        empty = (np.zeros((0, features_padded), np.float32), np.zeros(0, np.int32), np.zeros(0, bool))
        return Na2cState(
            params, optimizer.init(params), space.start(), float("inf"), empty, float("inf"),
            np.zeros(0, dtype=np.int64), 0,
        )

    def ask(key: jax.Array, state: Na2cState, max_count: int) -> tuple[np.ndarray, Na2cState]:
        rng = rng_from_key(key)
        want = min(batch_size, max_count)
        visited = state.visited
        if visited.size == 0:  # measure the start first
            s0 = state.best_genome
            g = s0[None] if space.valid(s0[None])[0] else space.sample(rng, 1)
            empty = (np.zeros((0, features_padded), np.float32), np.zeros(0, np.int32), np.zeros(0, bool))
            return g, state._replace(best_genome=g[0], transitions=empty, visited=space.indices(g))
        genomes, feats, acts, has = [], [], [], []
        taken = visited
        pad = 1 << max(0, (max_rollouts - 1).bit_length())
        for _ in range(4):  # a few rounds of max_rollouts rollouts, simulated together
            states = np.repeat(state.best_genome[None], max_rollouts, axis=0)
            steps = []  # per step t: (features of s_t, a_t, s_{t+1}, legal, index of s_{t+1}) for every rollout
            for _ in range(rollout_steps):
                f = features_of(states)
                probs = np.asarray(policy(state.params, np.pad(f, ((0, pad - max_rollouts), (0, 0)))))[:max_rollouts]
                probs = probs.astype(np.float64) / probs.sum(axis=1, keepdims=True)
                sampled = (probs.cumsum(axis=1) < rng.random((max_rollouts, 1))).sum(axis=1)
                actions = np.where(rng.random(max_rollouts) < epsilon, rng.integers(num_actions, size=max_rollouts),
                                   np.minimum(sampled, num_actions - 1))
                new, legal = space.step(states, actions)
                steps.append((f, actions, new, legal, space.indices(new)))
                states = new
            # Collect in rollout order (all T steps of rollout 0, then rollout 1, ...), as sequential rollouts would.
            for r in range(max_rollouts):
                for f, actions, new, legal, idx in steps:
                    if len(genomes) < want and legal[r] and not isin_sorted(idx[r : r + 1], taken)[0]:
                        taken = np.union1d(taken, idx[r : r + 1])
                        genomes.append(new[r])
                        feats.append(f[r])
                        acts.append(actions[r])
                        has.append(True)
            if len(genomes) >= want:
                break
        if len(genomes) < want:  # neighbourhood of the incumbent exhausted by the policy: fill the batch
            nb, nb_actions = space.neighbours(state.best_genome)
            fresh = ~isin_sorted(space.indices(nb), taken) if nb.size else np.zeros(0, bool)
            f0 = features_of(state.best_genome[None])[0]
            for j in rng.permutation(np.flatnonzero(fresh))[: want - len(genomes)]:
                taken = np.union1d(taken, space.indices(nb[j : j + 1]))
                genomes.append(nb[j])
                feats.append(f0)
                acts.append(nb_actions[j])
                has.append(True)
            if len(genomes) < want:
                extra = space.sample(rng, want - len(genomes), exclude=taken)
                taken = np.union1d(taken, space.indices(extra))
                for g in extra:
                    genomes.append(g)
                    feats.append(np.zeros(features_padded, np.float32))
                    acts.append(0)
                    has.append(False)
        g = np.asarray(genomes, dtype=np.int32).reshape(-1, space.genome_length)
        transitions = (np.asarray(feats, np.float32).reshape(-1, features_padded), np.asarray(acts, np.int32),
                       np.asarray(has, bool))
        return g, state._replace(transitions=transitions, reference_cost=state.best_cost, visited=taken)

    def tell(state: Na2cState, genomes: np.ndarray, costs: np.ndarray) -> Na2cState:
        costs = np.asarray(costs, dtype=np.float64)
        best_genome, best_cost = state.best_genome, state.best_cost
        if costs.size and np.min(costs) < best_cost:
            i = int(np.argmin(costs))
            best_genome, best_cost = np.asarray(genomes[i], np.int32), float(costs[i])
        feats, acts, has = state.transitions
        params, opt_state, updates = state.params, state.opt_state, state.updates
        if has.any() and np.isfinite(state.reference_cost):
            ratio = state.reference_cost / np.where(np.isfinite(costs), costs, 1.0)
            rewards = np.where(np.isfinite(costs), np.minimum(ratio, 10.0), 0.0)
            rows = 1 << max(0, (batch_size - 1).bit_length())
            n = min(len(has), rows)
            padded = lambda a: np.pad(a[:n], [(0, rows - n)] + [(0, 0)] * (a.ndim - 1))  # noqa: E731
            params, opt_state = update(
                params, opt_state, padded(feats), padded(acts), padded(rewards.astype(np.float32)),
                padded(has.astype(np.float32)),
            )
            updates += 1
        return state._replace(params=params, opt_state=opt_state, best_genome=best_genome, best_cost=best_cost,
                              updates=updates)

    return Strategy("na2c", space, init, ask, tell)
