# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # RL hyper-parameter tuning of a stochastic optimiser
#
# Zhang, Sun & Xu (2020): tune $\theta$ of a stochastic algorithm $A_\theta$ (here evosax's particle swarm) by
# $\min_\theta \mathbb{E}[M(A_\theta(f))]$, $M$ the best objective value a run reaches, with a policy
# $\pi_\phi$ that emits $\theta$ one hyper-parameter at a time and learns by REINFORCE,
# $\nabla_\phi J = \mathbb{E}[(r - b)\, \nabla_\phi \log \pi_\phi(a)]$.
#
# `jeq.tune.evaluate` runs a whole batch of ($\theta$, seed) runs in one vmapped call; the tuners are ask/tell
# strategies driven by one budgeted loop, `jeq.tune.tune`.

# %%
import functools

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from jeq import tune

algorithm = tune.get_algorithm("pso")
problem = tune.make_problem("rastrigin", dimension=10, split="tune", count=4)  # 4 shifted instances, generated
# tune the three PSO coefficients; the population size stays at its default (one compiled shape)
space = tuple(h for h in algorithm.hyperparameters if h.name != "population_size")
for h in space:
    print(f"{h.name:16s} {h.kind:6s} [{h.low}, {h.high}] default {h.default}")

# %% [markdown]
# ## 1. A batch of runs in one call: $M[i, j]$ for $\theta_i$ and seed $j$
#
# Inside `evaluate` the algorithm's whole run is a `lax.scan`, `jax.vmap`ped over the (θ, seed) rows and jitted.

# %%
evaluations = 600
run = functools.partial(tune.evaluate, algorithm, problem, evaluations=evaluations, min_rows=16)
thetas = [tune.default_theta(algorithm), {"inertia_coeff": 0.4, "cognitive_coeff": 1.0, "social_coeff": 1.0}]
M = run(thetas, jax.random.split(jax.random.key(0), 8))
print("M has shape", M.shape, "(theta x seed); mean per theta:", np.round(M.mean(axis=1), 2))

# %% [markdown]
# ## 2. The policy: `jax.grad` of $\log \pi_\phi(a)$, the REINFORCE direction
#
# `init_policy` / `sample` / `log_prob` are pure functions of the policy parameters $\phi$ (a pytree).

# %%
phi = tune.init_policy(jax.random.key(1), space)
actions = jax.vmap(lambda key: tune.sample(phi, key, space))(jax.random.split(jax.random.key(2), 4))
print("4 sampled thetas:", [{k: round(float(v), 2) for k, v in tune.action_to_theta(np.asarray(a), space).items()}
                            for a in actions])
score = jax.jit(jax.grad(lambda phi, a: tune.log_prob(phi, a, space)))(phi, actions[0])
print("grad log pi has the structure of phi:", jax.tree.map(jnp.shape, score))

# %% [markdown]
# ## 3. Tune: REINFORCE against random search, same budget of target-algorithm runs

# %%
budget, seeds_per_theta, batch_size = 96, 2, 8
evaluate = tune.batch_evaluator(lambda thetas, keys: run(thetas, keys), seeds_per_theta)
results = {}
for name, strategy in (("RL (REINFORCE)", tune.reinforce(space, batch_size=batch_size)),
                       ("random search", tune.random_search(space, batch_size=batch_size))):
    results[name] = tune.tune(strategy, evaluate, budget=budget, seeds_per_theta=seeds_per_theta,
                              key=jax.random.key(3))
    best = {k: round(float(v), 2) for k, v in results[name].best_theta.items()}
    print(f"{name:15s} best mean M {results[name].best_objective:7.2f} at {best}")
print(f"default theta: mean M {float(M[0].mean()):7.2f}")

# %% [markdown]
# ## 4. Plot: best mean objective found so far against target-algorithm runs

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
for name, result in results.items():
    runs, best = result.best_so_far()
    ax.plot(runs, best, label=name)
ax.axhline(float(M[0].mean()), color="gray", linestyle=":", label="default theta")
ax.set(title=f"PSO on 10-d Rastrigin, {evaluations} evaluations per run", xlabel="target-algorithm runs",
       ylabel="best mean M so far")
ax.legend()
fig.tight_layout()
plt.show()
