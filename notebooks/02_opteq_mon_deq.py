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
# # OptEq, MON and a plain DEQ on the embedded digits
#
# OptEq (Xie et al., TPAMI 2023): the hidden state is the equilibrium
# $z^\star = \mathrm{prox}_f(W^\top W z^\star + U x + b)$, which is the minimiser of the convex hidden objective
# $G(z) = \sum_i f(z_i) + \tfrac12\|z\|^2 - \tfrac12\|W z\|^2 - \langle U x + b, z\rangle$;
# logits $= W_c z^\star + b_c$.
# MON (Winston & Kolter 2020) and the plain DEQ (Bai et al. 2019) are the baselines.
#
# Each model is an `EquilibriumModel` of pure functions acting on ONE example: `init(key)`, `apply(params, x)`,
# `objective(params, z, x)`. Below: build them, `jax.jit` + `jax.vmap` the forward pass, check that the equilibrium
# is the argmin of G with `jax.grad`, and train three OptEq seeds at once with optax and `jax.vmap`.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import optax

from jeq import data, equilibrium

split = data.digits()  # scikit-learn's 8x8 digits, installed with jeq: 1442 train / 355 test
x_train = split.x_train.reshape(len(split.x_train), -1)
x_test = split.x_test.reshape(len(split.x_test), -1)
y_train, y_test = split.y_train, split.y_test
print(x_train.shape, x_test.shape)

# %% [markdown]
# ## 1. Build the three models; one jitted, vmapped forward pass each
#
# `model.apply(params, x) -> Output(logits, stats, jacobian)` for one example; `jax.vmap` maps it over the batch and
# the solver statistics come back per example.

# %%
sizes = dict(features=64, hidden=32, classes=10)
models = {"opteq": equilibrium.opteq(**sizes), "mon": equilibrium.mon(**sizes), "deq": equilibrium.deq(**sizes)}
params = {name: model.init(jax.random.key(0)) for name, model in models.items()}

for name, model in models.items():
    out = jax.jit(jax.vmap(model.apply, in_axes=(None, 0)))(params[name], x_test[:64])
    print(f"{name:6s} params {equilibrium.parameter_count(params[name]):5d}  logits {out.logits.shape}  "
          f"mean solver steps {float(jnp.mean(out.stats.num_steps)):.1f}  "
          f"converged {float(jnp.mean(out.stats.converged)):.0%}")

# %% [markdown]
# ## 2. The equilibrium is the argmin of the hidden objective G
#
# At $z^\star$ the gradient of $G$ vanishes (up to the solver tolerance): `jax.grad` of `model.objective` with
# respect to $z$, vmapped over examples.

# %%
opteq = models["opteq"]
z_star = jax.jit(jax.vmap(lambda x: opteq.equilibrium(params["opteq"], x, tol=1e-6, maxiter=200).value))(x_test[:64])
grad_G = jax.jit(jax.vmap(jax.grad(opteq.objective, argnums=1), in_axes=(None, 0, 0)))(params["opteq"], z_star,
                                                                                       x_test[:64])
active = z_star > 0  # ReLU's potential is the indicator of z >= 0: on inactive units only grad_G >= 0 is required
print("max |dG/dz| on active units:", float(jnp.max(jnp.abs(jnp.where(active, grad_G, 0.0)))))
print("G at z* vs at a perturbed z*:",
      float(opteq.objective(params["opteq"], z_star[0], x_test[0])),
      float(opteq.objective(params["opteq"], z_star[0] + 0.05 * active[0], x_test[0])))

# %% [markdown]
# ## 3. Train three OptEq seeds at once: a jitted step, `jax.vmap` over seeds, `jax.grad` through the equilibrium
#
# `make_train_step(model.apply, optimizer)` returns a pure, jitted
# `train_step(params, opt_state, xb, yb) -> (params, opt_state, metrics)`; its gradient goes through the equilibrium
# by implicit differentiation (the adjoint solve $u = J^\top u + g$). Being pure, it vmaps over a stack of parameter
# pytrees: three independent seeds train in one compiled call per batch.

# %%
optimizer = optax.adam(1e-2)
seeds, epochs, batch_size = 3, 2, 128
stacked = jax.vmap(opteq.init)(jax.random.split(jax.random.key(1), seeds))
opt_states = jax.vmap(optimizer.init)(stacked)
train_step = equilibrium.make_train_step(opteq.apply, optimizer)
seed_step = jax.jit(jax.vmap(train_step, in_axes=(0, 0, None, None)))
losses = []
for epoch in range(epochs):
    for xb, yb in data.batches(x_train, y_train, batch_size, seed=0, epoch=epoch):
        stacked, opt_states, metrics = seed_step(stacked, opt_states, xb, yb)
        losses.append(metrics.loss)
test_logits = jax.jit(jax.vmap(jax.vmap(opteq.apply, in_axes=(None, 0)), in_axes=(0, None)))(stacked, x_test).logits
accuracy = jnp.mean(jnp.argmax(test_logits, -1) == y_test, axis=-1)
print(f"test accuracy per seed after {epochs} epochs:", [round(float(a), 3) for a in accuracy])

# %% [markdown]
# ## 4. Plot: training loss per seed, and the input gradient of one logit
#
# `jax.grad` of a logit with respect to the input image, through the equilibrium: which pixels move the OptEq
# prediction.

# %%
first_seed = jax.tree.map(lambda leaf: leaf[0], stacked)
label = int(y_test[0])
saliency = jax.jit(jax.grad(lambda x: opteq.apply(first_seed, x).logits[label]))(x_test[0])

fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
left.plot(jnp.stack(losses))
left.set(title=f"OptEq, {seeds} seeds in one vmapped step", xlabel="step", ylabel="training cross-entropy")
right.imshow(saliency.reshape(8, 8), cmap="RdBu")
right.set(title=f"d logit[{label}] / d x for one test digit")
right.axis("off")
fig.tight_layout()
plt.show()
