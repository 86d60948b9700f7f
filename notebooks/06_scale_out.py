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
# # Scale out: the same jitted step, data-parallel over a mesh of devices
#
# Data parallelism with JAX's SPMD partitioner (`jax.jit` + `NamedSharding`, no `pmap`): parameters are replicated,
# each minibatch is split along its leading axis over the mesh axis `"data"`, and XLA inserts the all-reduce of the
# gradient mean $\nabla L = \sum_d \sum_{n \in d} m_n \nabla \ell_n / \sum_n m_n$ (weights $m_n = 0$ on padding).
#
# On a CPU we simulate 4 devices. This must happen before JAX starts, so the first cell sets `XLA_FLAGS` before
# `import jax` (in jupyter: restart the kernel before running it). The 4 devices share the same cores: this checks
# correctness, not speed.

# %%
import os

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"

import jax  # noqa: E402 (after XLA_FLAGS)
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from jeq import data, equilibrium, sharding  # noqa: E402

print(jax.devices())

# %% [markdown]
# ## 1. A mesh and a sharded batch
#
# `shard_batch` pads the global batch to a multiple of the device count (repeating the last example, weight 0) and
# places it split over `"data"`; 130 examples become 4 shards of 33 rows.

# %%
mesh = sharding.data_mesh(4)
split = data.digits()
x = split.x_train.reshape(len(split.x_train), -1)
y = split.y_train
xb, yb, weight = sharding.shard_batch((x[:130], y[:130]), mesh)
print("global shape", xb.shape, "spec", xb.sharding.spec,
      "rows per device", [shard.data.shape[0] for shard in xb.addressable_shards], "real rows", float(weight.sum()))

# %% [markdown]
# ## 2. The ordinary OptEq train step, made data-parallel
#
# `make_train_step` vmaps `model.apply` over the batch and `jax.grad`s through the equilibrium; `data_parallel`
# jits that same function with the batch arguments split and everything else replicated. The model stops its solver
# on the batch-level residual (`axis_name`), so one device and four devices run the same iterations.

# %%
model = equilibrium.opteq(features=64, hidden=32, classes=10, axis_name=equilibrium.BATCH_AXIS)
optimizer = optax.adam(1e-2)
train_step = equilibrium.make_train_step(model.apply, optimizer)
parallel_step = sharding.data_parallel(train_step, mesh, batch_argnums=(2, 3, 4))

params = model.init(jax.random.key(0))
single = (params, optimizer.init(params))
parallel = sharding.replicate((params, optimizer.init(params)), mesh)
losses = {"1 device": [], "4 devices": []}
for xs, ys in data.batches(x, y, 130, seed=0, epoch=0):
    p, o, metrics = train_step(*single, xs, ys)
    single = (p, o)
    losses["1 device"].append(float(metrics.loss))
    p, o, metrics = parallel_step(*parallel, *sharding.shard_batch((xs, ys), mesh))
    parallel = (p, o)
    losses["4 devices"].append(float(metrics.loss))
difference = max(float(jnp.max(jnp.abs(a - b), initial=0.0))
                 for a, b in zip(jax.tree.leaves(single[0]), jax.tree.leaves(parallel[0])))
print(f"after {len(losses['1 device'])} steps, max |params(1 device) - params(4 devices)| = {difference:.1e}")
print("parameters stay replicated:", {leaf.sharding.spec for leaf in jax.tree.leaves(parallel[0])})

# %% [markdown]
# ## 3. Padding is weighted out: a batch that does not divide evenly gives the single-device numbers
#
# `make_eval_step` returns weighted sums (correct predictions, example count). `data_parallel` is only `jax.jit` with
# shardings, so here it is written out: parameters replicated, the three batch arguments split over `"data"`. The 2
# padding rows of the 130-example batch carry weight 0 and do not count.

# %%
evaluate = equilibrium.make_eval_step(model.apply)
split_rows, replicated = sharding.batch_sharding(mesh), sharding.replicated(mesh)
parallel_evaluate = jax.jit(evaluate, in_shardings=(replicated, split_rows, split_rows, split_rows),
                            out_shardings=replicated)
on_one = evaluate(single[0], x[:130], y[:130])
on_four = parallel_evaluate(parallel[0], xb, yb, weight)
print(f"1 device: {float(on_one.correct):.0f} correct of {float(on_one.count):.0f};  "
      f"4 devices: {float(on_four.correct):.0f} correct of {float(on_four.count):.0f}")

# per-example predictions: jax.vmap over the sharded rows (the solver stops on the batch-level residual, hence the
# axis name); the output stays split over the devices
predict = jax.jit(jax.vmap(lambda x: jnp.argmax(model.apply(parallel[0], x).logits), axis_name=equilibrium.BATCH_AXIS))
predictions = predict(xb)
print("predictions", predictions.shape, "sharded as", predictions.sharding.spec,
      " agree with the eval step:", int(jnp.sum(weight * (predictions == yb))) == int(on_four.correct))

# %% [markdown]
# ## 4. Plot: the two training runs coincide

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(losses["1 device"], "o-", label="1 device")
ax.plot(losses["4 devices"], "x--", label="4 simulated devices")
ax.set(title="OptEq on digits, one epoch", xlabel="step", ylabel="training loss")
ax.legend()
fig.tight_layout()
plt.show()
