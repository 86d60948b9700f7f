"""N-A2C: a neighbourhood actor-critic that proposes tiling moves around the best configuration found so far.

Zhang, Cheng, Zang, Park (arXiv 1909.10616), §4.2, as re-implemented in NNI's OpEvo examples:

* state ``s``: the configuration's feature vector (:meth:`Space.features`); actions: every prime move
  ``(axis, i, j, p)`` and knob move; an illegal action leaves the state unchanged;
* network: shared ``Linear(F → 128) + ReLU``, a softmax actor head ``π(a|s)`` and a scalar critic head ``V(s)``;
* every round starts at the incumbent ``s*`` and rolls out ``T`` steps with the behaviour policy
  ``μ(a|s) = (1 − ε) π(a|s) + ε/|A|`` (ε-greedy) until ``batch_size`` new configurations are collected; they are
  measured with reward ``r`` and the network takes one Adam step on

      L = Σ_{t ∈ R} w_t [ −log π(a_t|s_t) · stop_grad(A_t) ] / |R|  +  Σ_{t ∈ C} A_t² / |C|,
      A_t = r_t − V(s_t),      w_t = π(a_t|s_t) / μ(a_t|s_t)   (π of the rollout, before the step),

  over the moves ``R`` the rollouts sampled and the rows ``C`` the critic learns from.

Choices, and what the paper / NNI do:

* **Advantage without bootstrap.** ``A = r − V(s)``: a one-step Monte-Carlo advantage with no ``γ V(s')`` term, as in
  NNI's ``na2c.py`` (the paper gives no return); every proposal is scored on its own.
* **Reward.** ``reward="ratio"`` (default): ``r = min(cost(s*) / cost(s'), 10)``, the speed-up over the incumbent
  ``s*`` at the time of the ask, 0 for a failure. Its reference moves with ``s*``, so the same configuration earns
  less once a better one is found; it is scale-free, so the critic (Adam, lr 1e-3) can fit it on any GEMM.
  ``reward="gflops"``: the paper's and NNI's ``r = flops / cost / 1e9`` (0 for a failure), given ``flops``; rewards in
  the thousands leave ``V`` far below ``r`` for many rounds, so every sampled move is reinforced.
* **Sign.** NNI's code adds ``+log π · A`` (no minus sign), which *lowers* the probability of actions with positive
  advantage; jeq uses the correct sign.
* **On-policy actor.** If the rollouts find too few new configurations (the neighbourhood of ``s*`` is exhausted),
  unvisited neighbours of ``s*`` drawn uniformly, then random configurations, fill the batch. Those fill-in moves were
  not sampled by the policy: with ``off_policy="importance"`` (default) they train the critic only (neighbours of
  ``s*``; random fill-ins have no state and train neither), and each rollout move is weighted by ``w_t`` so the ε
  exploration does not bias the policy gradient either. ``off_policy="as_policy"`` counts every stored move with
  weight 1 as if π had sampled it (NNI keeps its ε moves that way; fill-ins then pull π towards uniform), for
  ablations.
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

__all__ = [
    "OFF_POLICY", "REWARDS", "ActorCritic", "Na2cState", "action_probabilities", "actor_critic_loss", "na2c",
    "na2c_rewards",
]

REWARDS = ("ratio", "gflops")
"""Reward choices of :func:`na2c` (see :func:`na2c_rewards`)."""
OFF_POLICY = ("importance", "as_policy")
"""How :func:`na2c` treats moves the policy did not sample (see the module docstring)."""


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
    logits: jax.Array,
    values: jax.Array,
    actions: jax.Array,
    rewards: jax.Array,
    mask: jax.Array,
    *,
    actor_mask: jax.Array | None = None,
    weights: jax.Array | None = None,
) -> jax.Array:
    """``Σ_R w·[−log π(a|s)·stop_grad(A)] / |R| + Σ_C A² / |C|``, ``A = r − V(s)``, R = ``actor_mask``, C = ``mask``.

    ``logits`` (B, A), ``values``/``actions``/``rewards``/``mask`` (B,). ``actor_mask`` (default ``mask``) selects
    the rows the policy sampled, ``weights`` (default 1) their importance weights ``π/μ``; with the defaults it is
    ``mean_C[−log π(a|s)·stop_grad(A) + A²]``. Minimising it raises ``log π(a|s)`` for actions with positive
    advantage and regresses ``V`` on the reward.

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq.gemm import actor_critic_loss
    >>> logits, values = jnp.zeros((2, 2)), jnp.zeros(2)  # uniform policy, V = 0
    >>> actions, rewards, mask = jnp.array([0, 1]), jnp.array([1.0, 0.0]), jnp.array([1.0, 1.0])
    >>> round(float(actor_critic_loss(logits, values, actions, rewards, mask)), 4)  # mean(-log(1/2) A + A^2)
    0.8466
    >>> grad = jax.grad(actor_critic_loss)(logits, values, actions, rewards, mask)
    >>> bool(grad[0, 0] < 0)  # descending raises log pi(a|s) of the rewarded action
    True
    """
    actor_mask = mask if actor_mask is None else actor_mask
    weights = jnp.ones_like(rewards) if weights is None else weights
    log_pi = jnp.take_along_axis(jax.nn.log_softmax(logits), actions[:, None], axis=1)[:, 0]
    advantage = rewards - values
    actor = -log_pi * weights * jax.lax.stop_gradient(advantage)
    return (jnp.sum(actor * actor_mask) / jnp.maximum(jnp.sum(actor_mask), 1.0)
            + jnp.sum(advantage**2 * mask) / jnp.maximum(jnp.sum(mask), 1.0))


def na2c_rewards(
    costs: Any, *, reward: str = "ratio", reference_cost: float | None = None, flops: float | None = None
) -> np.ndarray:
    """Rewards of measured costs (seconds): ``min(reference_cost / cost, 10)`` or ``flops / cost / 1e9``; 0 if failed.

    ``reward="ratio"`` needs the incumbent's ``reference_cost`` (the speed-up over it, capped at 10);
    ``reward="gflops"`` needs the GEMM's ``flops`` (the paper's reward). A failed measurement (inf or NaN) earns 0.

    >>> import numpy as np
    >>> from jeq.gemm import na2c_rewards
    >>> na2c_rewards([1.0, 4.0, np.inf, 0.01], reference_cost=2.0).tolist()  # speed-up, capped at 10; failed: 0
    [2.0, 0.5, 0.0, 10.0]
    >>> na2c_rewards([1e-3], reward="gflops", flops=2e9).tolist()  # 2 GFLOP in 1 ms
    [2000.0]
    """
    where = "jeq.gemm.na2c_rewards"
    validate.one_of(where, "reward", reward, REWARDS)
    c = np.asarray(costs, dtype=np.float64)
    ok = np.isfinite(c) & (c > 0)
    safe = np.where(ok, c, 1.0)
    if reward == "ratio":
        reference_cost = validate.positive(where, "reference_cost", reference_cost)
        r = np.minimum(reference_cost / safe, 10.0)
    else:
        flops = validate.positive(where, "flops", flops)
        r = flops / safe / 1e9
    return np.where(ok, r, 0.0)


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


@functools.lru_cache(maxsize=None)
def _graphdef(num_features: int, num_actions: int, hidden_size: int) -> Any:
    """The (hashable) graph of an :class:`ActorCritic` of these sizes."""
    return nnx.split(ActorCritic(num_features, num_actions, hidden_size, rngs=nnx.Rngs(0)))[0]


def action_probabilities(space: Space, state: Na2cState, genomes: Any) -> np.ndarray:
    """``π(·|s)`` of :func:`na2c`'s current policy at configurations ``genomes`` (B, G): (B, num_actions) float64.

    The network's sizes are read off ``state.params`` (its inputs and actions are padded to multiples of 16 / 32).

    >>> import jax
    >>> import numpy as np
    >>> from jeq.gemm import Axis, Space, action_probabilities, na2c
    >>> space = Space([Axis("m", 16, 2), Axis("n", 16, 2)])
    >>> strategy = na2c(space, hidden_size=16)
    >>> state = strategy.init(jax.random.key(0))
    >>> probabilities = action_probabilities(space, state, space.genomes([0, 3]))
    >>> probabilities.shape == (2, space.num_actions), bool(np.allclose(probabilities.sum(axis=1), 1.0))
    (True, True)
    """
    g = np.asarray(genomes, dtype=np.int32).reshape(-1, space.genome_length)
    kernel_in = state.params["hidden"]["kernel"].get_value()
    kernel_out = state.params["actor"]["kernel"].get_value()
    (features_padded, hidden_size), actions_padded = kernel_in.shape, kernel_out.shape[1]
    if actions_padded < space.num_actions or features_padded < space.num_features:
        validate.fail("jeq.gemm.action_probabilities", "space", space, "must be the space the strategy searches")
    f = space.features(g)
    f = np.pad(f, ((0, 0), (0, features_padded - f.shape[1])))
    action_mask = np.arange(actions_padded) < space.num_actions
    probs = _policy(_graphdef(features_padded, actions_padded, hidden_size), state.params, f, action_mask)
    return np.asarray(probs, dtype=np.float64)[:, : space.num_actions]


@functools.partial(jax.jit, static_argnums=(0, 1))
def _update(graphdef, optimizer, params, opt_state, features, actions, rewards, mask, actor_mask, weights,
            action_mask):
    """One optimiser step on :func:`actor_critic_loss`."""

    def loss_fn(p):
        logits, values = nnx.merge(graphdef, p)(features)
        return actor_critic_loss(_masked(logits, action_mask), values, actions, rewards, mask,
                                 actor_mask=actor_mask, weights=weights)

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
    transitions: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    """Of the last ask, per proposal: (features (n, F) of the state it came from, action (n,), critic row (n,) bool,
    actor weight (n,): ``π/μ`` for a rollout move, 0 for a fill-in under ``off_policy="importance"``)."""
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
    reward: str = "ratio",
    flops: float | None = None,
    off_policy: str = "importance",
) -> Strategy:
    """N-A2C: roll out ``a ~ (1−ε)π + ε/|A|`` from the incumbent, step on ``−w log π(a|s)·A + A²``, ``A = r − V(s)``.

    NNI defaults: 128 hidden, Adam 1e-3, T = 3 steps, 6 new configurations per round, ε = 0.1. Each round simulates
    ``max_rollouts`` rollouts of ``rollout_steps`` steps from the incumbent together (one batched policy call per
    step) and collects their new configurations rollout by rollout, as NNI's sequential rollouts do; after 4 rounds
    without enough new configurations the batch is filled from the incumbent's unvisited neighbours (then random
    configurations). ``reward`` is ``"ratio"`` (default: speed-up over the incumbent, scale-free) or ``"gflops"``
    (the paper's; needs the GEMM's ``flops``); ``off_policy`` is ``"importance"`` (default: the actor learns from the
    rollout moves only, weighted ``π/μ``) or ``"as_policy"`` (every move with weight 1, biased). The module docstring
    gives the reasons.

    >>> import jax
    >>> from jeq.gemm import Axis, Space, bowl_cost, na2c, search
    >>> space = Space([Axis("m", 64, 2), Axis("n", 64, 2)])
    >>> cost = bowl_cost(space, optimum={"m": 8, "n": 4})
    >>> result = search(na2c(space, hidden_size=16, max_rollouts=4), cost, budget=12, key=jax.random.key(0))
    >>> len(set(result.indices.tolist())), bool(result.best_cost < cost(space.genomes(result.indices[:1]))[0])
    (12, True)
    """
    where = "jeq.gemm.na2c"
    for name, value in (("hidden_size", hidden_size), ("rollout_steps", rollout_steps), ("batch_size", batch_size),
                        ("max_rollouts", max_rollouts)):
        validate.integer(where, name, value, low=1)
    learning_rate = validate.positive(where, "learning_rate", learning_rate)
    validate.real(where, "epsilon", epsilon, low=0.0, high=1.0)
    validate.one_of(where, "reward", reward, REWARDS)
    validate.one_of(where, "off_policy", off_policy, OFF_POLICY)
    if reward == "gflops":
        flops = validate.positive(where, "flops", flops)
    elif flops is not None:
        validate.fail(where, "flops", flops, 'is used by reward="gflops" only')
    num_actions = space.num_actions
    if num_actions == 0:
        validate.fail(where, "space", space, "must have at least one action (the space has none)")
    optimizer = _adam(learning_rate)
    # Inputs and actions are padded (features with zeros, actions masked out) so that spaces of similar size share
    # one compiled policy and update.
    features_padded = -(-space.num_features // 16) * 16
    actions_padded = -(-num_actions // 32) * 32
    action_mask = np.arange(actions_padded) < num_actions
    graphdef = _graphdef(features_padded, actions_padded, hidden_size)
    fill_weight = 0.0 if off_policy == "importance" else 1.0

    def features_of(genomes: np.ndarray) -> np.ndarray:
        f = space.features(genomes)
        return np.pad(f, ((0, 0), (0, features_padded - f.shape[1])))

    def policy(params: Any, features: np.ndarray) -> jax.Array:
        return _policy(graphdef, params, features, action_mask)

    def update(params, opt_state, features, actions, rewards, mask, actor_mask, weights):
        return _update(graphdef, optimizer, params, opt_state, features, actions, rewards, mask, actor_mask, weights,
                       action_mask)

    empty = (np.zeros((0, features_padded), np.float32), np.zeros(0, np.int32), np.zeros(0, bool), np.zeros(0))

    def init(key: jax.Array) -> Na2cState:
        seed = int(np.asarray(jax.random.key_data(key)).ravel()[-1])
        _, params = nnx.split(ActorCritic(features_padded, actions_padded, hidden_size, rngs=nnx.Rngs(seed)))
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
            return g, state._replace(best_genome=g[0], transitions=empty, visited=space.indices(g))
        genomes, feats, acts, has, weights = [], [], [], [], []
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
                pi = probs[np.arange(max_rollouts), actions]  # π(a|s) and the ε-greedy μ(a|s) that drew a
                if off_policy == "importance":
                    w = pi / ((1.0 - epsilon) * pi + epsilon / num_actions)
                else:
                    w = np.ones(max_rollouts)
                steps.append((f, actions, new, legal, space.indices(new), w))
                states = new
            # Collect in rollout order (all T steps of rollout 0, then rollout 1, ...), as sequential rollouts would.
            for r in range(max_rollouts):
                for f, actions, new, legal, idx, w in steps:
                    if len(genomes) < want and legal[r] and not isin_sorted(idx[r : r + 1], taken)[0]:
                        taken = np.union1d(taken, idx[r : r + 1])
                        genomes.append(new[r])
                        feats.append(f[r])
                        acts.append(actions[r])
                        has.append(True)
                        weights.append(w[r])
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
                has.append(True)  # the critic learns V(s*) from it; the actor only under "as_policy"
                weights.append(fill_weight)
            if len(genomes) < want:
                extra = space.sample(rng, want - len(genomes), exclude=taken)
                taken = np.union1d(taken, space.indices(extra))
                for g in extra:
                    genomes.append(g)
                    feats.append(np.zeros(features_padded, np.float32))
                    acts.append(0)
                    has.append(False)  # no state, no action: trains nothing
                    weights.append(0.0)
        g = np.asarray(genomes, dtype=np.int32).reshape(-1, space.genome_length)
        transitions = (np.asarray(feats, np.float32).reshape(-1, features_padded), np.asarray(acts, np.int32),
                       np.asarray(has, bool), np.asarray(weights, np.float64))
        return g, state._replace(transitions=transitions, reference_cost=state.best_cost, visited=taken)

    def tell(state: Na2cState, genomes: np.ndarray, costs: np.ndarray) -> Na2cState:
        costs = np.asarray(costs, dtype=np.float64)
        best_genome, best_cost = state.best_genome, state.best_cost
        if costs.size and np.min(costs) < best_cost:
            i = int(np.argmin(costs))
            best_genome, best_cost = np.asarray(genomes[i], np.int32), float(costs[i])
        feats, acts, has, weights = state.transitions
        params, opt_state, updates = state.params, state.opt_state, state.updates
        if has.any() and (reward == "gflops" or np.isfinite(state.reference_cost)):
            if reward == "ratio":
                rewards = na2c_rewards(costs, reward="ratio", reference_cost=state.reference_cost)
            else:
                rewards = na2c_rewards(costs, reward="gflops", flops=flops)
            rows = 1 << max(0, (batch_size - 1).bit_length())
            n = min(len(has), rows)
            padded = lambda a: np.pad(a[:n], [(0, rows - n)] + [(0, 0)] * (a.ndim - 1))  # noqa: E731
            params, opt_state = update(
                params, opt_state, padded(feats), padded(acts), padded(rewards.astype(np.float32)),
                padded(has.astype(np.float32)), padded((weights > 0).astype(np.float32)),
                padded(weights.astype(np.float32)),
            )
            updates += 1
        return state._replace(params=params, opt_state=opt_state, best_genome=best_genome, best_cost=best_cost,
                              updates=updates)

    return Strategy("na2c", space, init, ask, tell)
