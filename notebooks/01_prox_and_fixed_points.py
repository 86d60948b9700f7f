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
# # Proximal activations and fixed-point solvers
#
# Two building blocks of every equilibrium model in jeq (Xie et al., *Optimization Induced Equilibrium Networks*,
# TPAMI 2023; Bai et al. 2019):
#
# * `jeq.prox`: an activation is the proximal operator of a convex potential,
#   $\sigma(v) = \mathrm{prox}_f(v) = \arg\min_x f(x) + \tfrac12 (x - v)^2$.
# * `jeq.fixedpoint`: `solve(fn, z0, *args)` finds $z^\star = f(z^\star, \text{args})$ and differentiates through it
#   by the implicit function theorem, $\partial z^\star/\partial \theta = (I - J)^{-1} \partial f/\partial \theta$.
#
# Everything is a pure function of one example: `jax.jit` compiles it and `jax.vmap` batches it.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt

from jeq import fixedpoint, prox

# %% [markdown]
# ## 1. An activation is an argmin
#
# $\mathrm{prox}_f(v) = \arg\min_x f(x) + (x - v)^2/2$: check it by brute force on a grid of $x$, for a batch of
# inputs $v$ at once (`jax.vmap` over $v$, one `jax.jit`-compiled call).

# %%
xs = jnp.linspace(-4.0, 4.0, 8001)  # the search grid for x; f = +inf (or undefined) outside its domain
vs = jnp.linspace(-3.0, 3.0, 61)    # the batch of inputs v


def brute_force_prox(p: prox.Prox, v, xs):
    """argmin over the grid xs of f(x) + (x - v)^2 / 2 (one input v)."""
    objective = jnp.nan_to_num(p.potential(xs), nan=jnp.inf) + 0.5 * (xs - v) ** 2
    return xs[jnp.argmin(objective)]


activations = {"relu": prox.relu(), "tanh": prox.tanh(), "softplus": prox.softplus(), "l1 (w=0.5)": prox.l1(weight=0.5)}
for name, p in activations.items():
    closed_form = jax.vmap(p.apply)(vs)
    argmin = jax.jit(jax.vmap(lambda v, xs: brute_force_prox(p, v, xs), in_axes=(0, None)))(vs, xs)
    print(f"{name:12s} max |prox(v) - argmin| = {float(jnp.max(jnp.abs(closed_form - argmin))):.1e}")

# %% [markdown]
# An activation that is not a prox (not monotone and 1-Lipschitz) is rejected eagerly, with the call named:

# %%
try:
    prox.check_proximal(jax.nn.gelu, name="gelu")
except ValueError as error:
    print("rejected:", str(error)[:160])

# %% [markdown]
# ## 2. A fixed point, four solvers, one batch
#
# $z^\star = \tanh(W z^\star + U x)$ with $\|W\|_2 = 0.9$ (a contraction). `solve` returns
# `Solution(value, stats)`; `stats` holds the steps, the residual $\|f(z) - z\|$ and `converged`. One example per
# call: `jax.vmap` over a batch of inputs $x$.
#
# Halpern's iteration converges at rate O(1/k): it is there to pick the fixed point nearest an anchor when the fixed
# points form a set (a nonexpansive map, $\|W\|_2 = 1$), not for speed; here it stops at `maxiter`, and the stats
# say so.

# %%
hidden, features, batch = 32, 8, 16
k_w, k_u, k_x = jax.random.split(jax.random.key(0), 3)
W = jax.random.normal(k_w, (hidden, hidden))
W = 0.9 * W / jnp.linalg.norm(W, 2)
U = jax.random.normal(k_u, (hidden, features)) / jnp.sqrt(features)
x_batch = jax.random.normal(k_x, (batch, features))


def layer(z, W, U, x):
    return jnp.tanh(W @ z + U @ x)


def equilibrium(W, U, x, solver="anderson"):
    return fixedpoint.solve(layer, jnp.zeros(hidden), W, U, x, solver=solver, tol=1e-5, maxiter=200)


steps = {}
for solver in ("picard", "anderson", "broyden", "halpern"):
    solution = jax.jit(jax.vmap(lambda x: equilibrium(W, U, x, solver)))(x_batch)
    steps[solver] = solution.stats.num_steps
    print(f"{solver:9s} mean steps {float(jnp.mean(solution.stats.num_steps)):6.1f}  "
          f"converged {int(jnp.sum(solution.stats.converged))}/{batch}  "
          f"max residual {float(jnp.max(solution.stats.residual)):.1e}")

# %% [markdown]
# ## 3. `jax.grad` through the equilibrium
#
# The implicit backward solves the adjoint $u = J^\top u + g$ at $z^\star$ instead of backpropagating through the
# iterations. It agrees with differentiating the unrolled solver (`backward="unroll"`, here Picard's iterations) and
# with finite differences.

# %%
def loss(W, backward):
    z = jax.vmap(lambda x: fixedpoint.solve(layer, jnp.zeros(hidden), W, U, x, solver="picard", tol=1e-6,
                                            maxiter=100, backward=backward).value)(x_batch)
    return jnp.mean(z ** 2)


g_implicit = jax.jit(jax.grad(lambda W: loss(W, "implicit")))(W)
g_unroll = jax.jit(jax.grad(lambda W: loss(W, "unroll")))(W)
direction = jax.random.normal(jax.random.key(1), W.shape)
h = 1e-2
implicit_loss = jax.jit(lambda W: loss(W, "implicit"))
finite_difference = (implicit_loss(W + h * direction) - implicit_loss(W - h * direction)) / (2 * h)
print("implicit vs unrolled, relative difference:",
      float(jnp.linalg.norm(g_implicit - g_unroll) / jnp.linalg.norm(g_unroll)))
print("directional derivative: implicit", float(jnp.sum(g_implicit * direction)),
      " finite difference", float(finite_difference))

# %% [markdown]
# ## 4. Plot: the activations, and the solver steps per example

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
for name, p in activations.items():
    left.plot(vs, jax.vmap(p.apply)(vs), label=name)
left.set(title="activations = prox of convex potentials", xlabel="v", ylabel="prox_f(v)")
left.legend()
right.bar(list(steps), [float(jnp.mean(n)) for n in steps.values()])
right.set(title="forward steps to ||f(z) - z|| <= 1e-5 (maxiter 200)", ylabel="mean steps per example")
fig.tight_layout()
plt.show()
