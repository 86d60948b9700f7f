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
# # Equilibrium propagation on a Hopfield network
#
# Scellier & Bengio (2017): the network relaxes to a minimum $s_0$ of the energy
# $E(s) = \tfrac12\sum_l \|\rho(s_l)\|^2 - \sum_l b_l\cdot\rho(s_l) - \sum_l \rho(s_l)^\top W_l \rho(s_{l+1})$
# (free phase), then to a minimum $s_\beta$ of $E + \beta C$ with $C = \tfrac12\|s_L - y\|^2$ (nudged phase), and
# learns from the energy difference alone:
# $g = [\partial_\theta E(s_\beta) - \partial_\theta E(s_0)]/\beta \to \mathrm{d}C(s_0)/\mathrm{d}\theta$ as
# $\beta \to 0$. Centered EP (Laborieux et al. 2021) nudges with $\pm\beta$ and has error $O(\beta^2)$.
#
# All functions act on one example (`jax.vmap` over a batch); `ep_trainer` returns jitted steps.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from jax.flatten_util import ravel_pytree

from jeq import data
from jeq.eqprop import hopfield

split = data.digits()  # scikit-learn's 8x8 digits: 1442 train / 355 test
x_train = split.x_train.reshape(len(split.x_train), -1)
x_test = split.x_test.reshape(len(split.x_test), -1)
params = hopfield.init(jax.random.key(0), [64, 32, 10])  # input 64, hidden 32, output 10

# %% [markdown]
# ## 1. The free phase descends the energy (`jax.vmap` over a batch, `jax.jit`)
#
# `free_phase` returns a `Phase(state, energy, residual, finite)`; `energy` is the trajectory $E(s_t)$.

# %%
free = jax.jit(jax.vmap(lambda x: hopfield.free_phase(params, x, steps=40)))(x_test[:32])
increases = np.diff(np.asarray(free.energy), axis=1).max()
print("energy trajectories:", free.energy.shape, " largest increase along any trajectory:", float(increases))
print("last-step change (residual), worst example:", float(free.residual.max()))

# %% [markdown]
# ## 2. EP gradient vs `jax.grad` through the relaxation
#
# The reference is ordinary backpropagation through the free-phase iterations (`jax.grad` of $C(s_0(\theta))$).
# The EP estimate needs no backward pass; its error shrinks like $\beta$ (one-sided) and $\beta^2$ (centered).

# %%
x, y = x_train[0], jax.nn.one_hot(split.y_train[0], 10)
steps = 60
bptt = jax.jit(jax.grad(lambda p: hopfield.cost(hopfield.free_phase(p, x, steps=steps).state, y)))(params)
true = ravel_pytree(bptt)[0]
ep_grad = jax.jit(hopfield.eqprop_grad, static_argnames=("free_steps", "nudged_steps", "centered"))
betas = [0.4, 0.2, 0.1, 0.05]
errors = {}
for centered in (False, True):
    errors[centered] = []
    for beta in betas:
        g, info = ep_grad(params, x, y, beta, free_steps=steps, nudged_steps=steps, centered=centered)
        errors[centered].append(float(jnp.linalg.norm(ravel_pytree(g)[0] - true) / jnp.linalg.norm(true)))
    print("centered" if centered else "one-sided", "relative error:", [f"{e:.3f}" for e in errors[centered]])

# %% [markdown]
# ## 3. Train with centered EP: one jitted epoch (`lax.scan` over minibatches)
#
# `ep_trainer(optimizer, beta=..., ...)` gives `train_epoch(params, opt_state, key, xs, ys)` over stacked
# minibatches `(steps, batch, features)`; every step vmaps `eqprop_grad` over the batch and applies any optax
# transform (here per-layer SGD, `layer_sgd`).

# %%
trainer = hopfield.ep_trainer(hopfield.layer_sgd([0.2, 0.1]), beta=0.5, free_steps=10, nudged_steps=4,
                              nudging="centered")


def test_accuracy(p):
    return float(jnp.mean(jnp.argmax(trainer.predict(p, x_test).state[-1], -1) == split.y_test))


n, batch = 600, 20
p, opt_state = params, trainer.init(params)
accuracies = [test_accuracy(p)]
for epoch in range(6):
    order = np.random.default_rng(epoch).permutation(len(x_train))[:n]
    p, opt_state, metrics = trainer.train_epoch(p, opt_state, jax.random.key(epoch),
                                                x_train[order].reshape(n // batch, batch, 64),
                                                split.y_train[order].reshape(n // batch, batch))
    accuracies.append(test_accuracy(p))
print("test accuracy per epoch:", [round(a, 3) for a in accuracies])

# %% [markdown]
# ## 4. Plot: energy along the free phase, EP error vs beta, test accuracy

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
axes[0].plot(np.asarray(free.energy).T, alpha=0.5)
axes[0].set(title="E(s_t) along the free phase (32 digits)", xlabel="relaxation step t")
for centered, label in ((False, "one-sided EP"), (True, "centered EP")):
    axes[1].loglog(betas, errors[centered], "o-", label=label)
axes[1].set(title="||g_EP - g_BPTT|| / ||g_BPTT||", xlabel="beta")
axes[1].legend()
axes[2].plot(accuracies, "o-")
axes[2].set(title="centered EP on digits", xlabel="epoch", ylabel="test accuracy")
fig.tight_layout()
plt.show()
