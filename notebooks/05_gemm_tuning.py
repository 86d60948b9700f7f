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
# # GEMM tiling search: G-BFS against random search and annealing
#
# Zhang et al., *Compiler-Level Matrix Multiplication Optimization for Deep Learning* (2019): a tiling of
# $C = AB$ splits each loop axis into ordered factors, e.g. $m = m_0 m_1 m_2 m_3$; the search looks for
# $\arg\min_{s \in S} \mathrm{cost}(s)$ with as few measurements as possible. Greedy best-first search (G-BFS) pops
# the cheapest measured configuration and measures $\rho$ of its neighbours (one prime factor moved between two
# parts).
#
# Here the cost is jeq's analytic GPU model of TVM's GEMM schedule (`tvm_gemm_time`, one configuration, vmapped over
# candidate batches), small enough to enumerate, so every search can be scored against the true optimum. The last
# cell tunes a real (tiny) CPU kernel.

# %%
import tempfile

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from jeq import gemm

landscape = gemm.AnalyticLandscape.tvm_gemm(32, 64, 64)  # m, n, k; the resource-violating tilings are pruned
space = landscape.space
print(space)

# %% [markdown]
# ## 1. The cost model is one configuration in, seconds out: `jax.vmap` + `jax.jit` over a batch
#
# `space.decode` turns genomes into the tile sizes of every axis; `tvm_gemm_time` models one of them.

# %%
genomes = space.sample(np.random.default_rng(0), 256)
tiles = space.decode(genomes)
batched = jax.jit(jax.vmap(lambda t: gemm.tvm_gemm_time(t, m=32, n=64, k=64)))
seconds = batched({axis: jnp.asarray(parts, jnp.int32) for axis, parts in tiles.items()})
print("first configuration:", space.config(genomes[0]))
print(f"modelled times of 256 random tilings: {float(seconds.min()) * 1e6:.2f} to {float(seconds.max()) * 1e6:.2f} us")
best_index, best_seconds = landscape.optimum()  # exhaustive: every valid configuration, vmapped in chunks
print(f"optimum over all {space.count()} valid configurations: {best_seconds * 1e6:.2f} us")

# %% [markdown]
# ## 2. Three ask/tell strategies under the same measurement budget
#
# `search(strategy, landscape, budget=..., key=...)` asks a batch, checks it (no repeats, valid), evaluates it in one
# vmapped call and tells the costs back.

# %%
budget = 96
strategies = {
    "G-BFS": lambda: gemm.gbfs(space, num_neighbours=5),
    "simulated annealing": lambda: gemm.simulated_annealing(space),
    "random search": lambda: gemm.random_search(space),
}
traces = {}
for name, make in strategies.items():
    traces[name] = []
    for seed in range(3):
        result = gemm.search(make(), landscape, budget=budget, key=jax.random.key(seed))
        traces[name].append(np.minimum.accumulate(result.costs) / best_seconds)
    finals = [trace[-1] for trace in traces[name]]
    print(f"{name:20s} best / optimum after {budget} measurements, 3 seeds: {np.round(finals, 3)}")

# %% [markdown]
# ## 3. Tune a real kernel: `jeq.gemm.tune` on a 64 x 64 x 64 CPU product
#
# Live measurements of the tiled XLA kernel family (`tiled_matmul`: `lax.map` over M and N tiles, `lax.scan` over K
# tiles), cached on disk (a temporary folder here), then the best few are re-ranked against `jnp.dot` by
# interleaved timing. On a CPU this tiny shape rarely beats `jnp.dot`; the point is the API.

# %%
with tempfile.TemporaryDirectory() as cache:
    tuned = gemm.tune(64, 64, 64, budget=6, cache_dir=cache, time_budget_s=0.02, top_k=2, rerank_budget_s=0.1)
a, b = jax.random.normal(jax.random.key(0), (64, 64)), jax.random.normal(jax.random.key(1), (64, 64))
print("winner:", tuned.config, f"{tuned.time_s * 1e6:.1f} us vs jnp.dot {tuned.reference_s * 1e6:.1f} us",
      " max |error|:", float(jnp.max(jnp.abs(tuned.kernel(a, b) - a @ b))))

# %% [markdown]
# ## 4. Plot: best modelled time found so far, relative to the optimum

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
for name, trace in traces.items():
    mean = np.mean(trace, axis=0)
    ax.plot(np.arange(1, len(mean) + 1), mean, label=name)
ax.set(yscale="log", xlabel="measurements", ylabel="best so far / optimum (mean of 3 seeds)",
       title="32 x 64 x 64 GEMM, analytic TVM model")
ax.legend()
fig.tight_layout()
plt.show()
