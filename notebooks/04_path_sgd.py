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
# # Path-SGD for a ReLU RNN on the adding problem
#
# Neyshabur et al. (NeurIPS 2016): the path regulariser of a ReLU RNN,
# $\gamma(w) = \sum_{\text{paths}} \prod_{e \in \text{path}} w_e^2$, is invariant when a hidden unit's incoming
# weights are multiplied by $c > 0$ and its outgoing ones divided by $c$, and so is Path-SGD's step
# $w_i \leftarrow w_i - \eta \, (\partial L/\partial w_i) / \kappa_i(w)$ with
# $\kappa = \partial \gamma / \partial (w^2)$.
# In jeq, `path_sgd(...)` is an optax `GradientTransformation`: it drops into any training step.

# %%
import functools

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt

from jeq import data, pathsgd

T, hidden, batch = 20, 16, 32
x_train, y_train = data.adding_problem(jax.random.key(0), 2048, T)  # generated: nothing is downloaded
x_test, y_test = data.adding_problem(jax.random.key(1), 512, T)
print("inputs", x_train.shape, "targets", y_train.shape, " predicting 1 everywhere gives MSE",
      float(jnp.mean((y_test - 1.0) ** 2)))

# %% [markdown]
# ## 1. Node-rescaling invariance of the network and of $\gamma$
#
# `rnn_apply` runs one sequence (`jax.vmap` over the batch). Rescale hidden unit 0 by $c = 10$: outputs and
# $\gamma$ stay the same, the Euclidean norm of the weights does not.

# %%
params = pathsgd.init_rnn(jax.random.key(2), input_size=2, hidden_size=hidden, output_size=1, init="np",
                          output_init="equal")


def rescale(p: pathsgd.RNNParams, unit: int, c: float) -> pathsgd.RNNParams:
    """Multiply unit's incoming weights (and bias) by c and divide its outgoing weights by c."""
    return p._replace(w_in=p.w_in.at[unit].multiply(c), b=p.b.at[unit].multiply(c),
                      w_rec=p.w_rec.at[unit].multiply(c).at[:, unit].divide(c), w_out=p.w_out.at[:, unit].divide(c))


rescaled = rescale(params, 0, 10.0)
predict = jax.jit(jax.vmap(pathsgd.rnn_apply, in_axes=(None, 0)))
print("max |output change|:", float(jnp.max(jnp.abs(predict(params, x_test) - predict(rescaled, x_test)))))
print("gamma:", float(pathsgd.gamma(params, T)), "->", float(pathsgd.gamma(rescaled, T)))
print("sum of squared weights:", float(sum(jnp.sum(w ** 2) for w in params)), "->",
      float(sum(jnp.sum(w ** 2) for w in rescaled)))

# %% [markdown]
# ## 2. A jitted training step with Path-SGD or SGD, vmapped over three seeds
#
# `make_rnn_train_step(loss_fn, optimizer)` vmaps the one-sequence loss over the batch and applies the optax
# transform; `jax.vmap` over stacked parameters and optimiser states trains three seeds per call.

# %%
def loss_fn(p, x, y):
    return (pathsgd.rnn_apply(p, x)[0] - y) ** 2


path_sum = functools.partial(pathsgd.rnn_path_sum, length=T)
optimizers = {
    # clip="update" bounds the path-scaled step in the path-norm metric, which keeps the rescaling invariance
    "path_sgd": pathsgd.make_optimizer("path_sgd", learning_rate=0.02, max_norm=1.0, path_sum=path_sum, momentum=0.5,
                                       clip="update"),
    "sgd": pathsgd.make_optimizer("sgd", learning_rate=0.1, max_norm=1.0, momentum=0.5),
}
seeds, steps = 3, 300
init = jax.vmap(lambda key: pathsgd.init_rnn(key, input_size=2, hidden_size=hidden, output_size=1, init="np",
                                             output_init="equal"))
mse = jax.jit(jax.vmap(lambda p: jnp.mean(jax.vmap(loss_fn, in_axes=(None, 0, 0))(p, x_test, y_test))))
curves, steppers = {}, {}
for name, optimizer in optimizers.items():
    stacked = init(jax.random.split(jax.random.key(3), seeds))
    opt_state = jax.vmap(optimizer.init)(stacked)
    steppers[name] = step = jax.jit(jax.vmap(pathsgd.make_rnn_train_step(loss_fn, optimizer),
                                             in_axes=(0, 0, None, None)))
    curves[name] = [mse(stacked)]
    for i in range(steps):
        rows = jax.random.randint(jax.random.key(100 + i), (batch,), 0, len(x_train))
        stacked, opt_state, metrics = step(stacked, opt_state, x_train[rows], y_train[rows])
        if (i + 1) % 25 == 0:
            curves[name].append(mse(stacked))
    print(f"{name:9s} test MSE per seed after {steps} steps:", [round(float(v), 4) for v in curves[name][-1]])

# %% [markdown]
# ## 3. Path-SGD's step is rescaling-invariant, SGD's is not
#
# One step from the original network and from two rescaled copies of it (the same compiled, seed-vmapped steps as
# above, on a stack of the three): after Path-SGD the three still compute the same function.

# %%
copies = [params, rescaled, rescale(params, 1, 0.1)]
stack = jax.tree.map(lambda *leaves: jnp.stack(leaves), *copies)
for name, optimizer in optimizers.items():
    after, _, _ = steppers[name](stack, jax.vmap(optimizer.init)(stack), x_train[:batch], y_train[:batch])
    outputs = jax.vmap(predict, in_axes=(0, None))(after, x_test)
    change = float(jnp.max(jnp.abs(outputs - outputs[0])))
    print(f"{name:9s} after one step, max output difference original vs rescaled copies: {change:.2e}")

# %% [markdown]
# ## 4. Plot: test MSE during training (mean and range over the three seeds)

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
for name, curve in curves.items():
    values = jnp.stack(curve)
    x_axis = jnp.arange(len(curve)) * 25
    ax.plot(x_axis, values.mean(axis=1), label=name)
    ax.fill_between(x_axis, values.min(axis=1), values.max(axis=1), alpha=0.2)
ax.set(title=f"adding problem, T = {T}, {hidden} ReLU units", xlabel="step", ylabel="test MSE")
ax.legend()
fig.tight_layout()
plt.show()
