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
# # NAGO: sample networks from a hierarchical graph generator
#
# Ru, Esperança & Carlucci (NeurIPS 2020) search over the 8 parameters $\theta$ of a *generator* instead of over
# single architectures: HNAG($\theta$) draws a top-level Watts-Strogatz graph WS($N_t, K_t, P_t$) of cells, each cell
# an Erdős-Rényi graph ER($N_m, P_m$) of nodes, each node a WS($N_b, K_b, P_b$) graph of ReLU-conv-BN operations;
# nodes merge their inputs as $x_v = \sum_{u \to v} \mathrm{sigmoid}(w_{uv})\, h_u$. The search (BOHB, random,
# multi-objective) scores a $\theta$ by the accuracy of networks sampled from it
# (`python -m experiments.nago_search --quick`); here: sample, count, build and batch-evaluate a few.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import networkx as nx
from flax import nnx

from jeq import data, nas

theta = nas.HParams(g1_nodes=4, g1_k=2, g1_p=0.5, g2_nodes=3, g2_p=0.5, g3_nodes=3, g3_k=2, g3_p=0.5)
print("searched ranges:", nas.HNAG_SPACE)

# %% [markdown]
# ## 1. One theta, many architectures: exact parameter counts without building anything
#
# `sample_architecture(theta, seed=...)` is deterministic plain data (networkx graphs underneath); `count_params`
# reads the shapes from the pure plan, and `fit_width` picks the widest network under a parameter budget.

# %%
architectures = [nas.sample_architecture(theta, seed=seed) for seed in range(6)]
budget = 20_000
for seed, arch in enumerate(architectures):
    width = nas.fit_width(arch, budget=budget)
    print(f"seed {seed}: {len(arch.top.edges)} top edges, {sum(len(c.graph.edges) for c in arch.cells)} mid edges, "
          f"width {width} -> {nas.count_params(arch, width=width)} parameters (budget {budget})")

# %% [markdown]
# ## 2. Build the flax NNX network: the plan's count is the module's
#
# `Network(architecture, width=..., rngs=...)` allocates exactly the parameters the plan names; `__call__` maps NHWC
# images to logits (here the embedded 8x8 digits). To keep this notebook quick on a CPU we build a RandWire network
# (Xie et al. 2019), an HNAG special case: a chain of 3 cells, 1 node each, a WS(3, 2, 0.5) graph of operations.
# Training one (`nas.fit`, SGD + momentum, one jitted step per minibatch) and the optuna searches over theta take
# minutes on a CPU: `python -m experiments.nago_search --quick`.

# %%
split = data.digits()
arch = nas.sample_architecture(nas.randwire(nodes=3, k=2, p=0.5), seed=0)
model = nas.Network(arch, width=4, rngs=nnx.Rngs(0))
print("parameters:", nas.param_count(model), "= planned", nas.count_params(arch, width=4))

# %% [markdown]
# ## 3. `jax.vmap` over seeds: three initialisations of one architecture evaluated in one call
#
# NNX modules split into a static graph definition and a pytree of state; stacking the states of three networks and
# `jax.vmap`-ing `nnx.merge(graphdef, state)(x)` runs all three on a batch in one compiled call.

# %%
models = [nas.Network(arch, width=4, rngs=nnx.Rngs(seed)) for seed in range(3)]
for m in models:
    m.eval()  # BatchNorm on running statistics, no dropout
graphdef, _ = nnx.split(models[0])
states = jax.tree.map(lambda *leaves: jnp.stack(leaves), *[nnx.split(m)[1] for m in models])


@jax.jit
def logits_of(state, x):
    return nnx.merge(graphdef, state)(x)


ensemble_logits = jax.jit(jax.vmap(logits_of, in_axes=(0, None)))
logits = ensemble_logits(states, split.x_test[:64])
one_by_one = jnp.stack([logits_of(nnx.split(m)[1], split.x_test[:64]) for m in models])
print("logits of 3 untrained seeds:", logits.shape,
      " max |vmapped - one by one|:", float(jnp.max(jnp.abs(logits - one_by_one))))

# %% [markdown]
# ## 4. Plot: the three levels of one HNAG sample

# %%
fig, (left, middle, right) = plt.subplots(1, 3, figsize=(12, 3.5))
hnag = architectures[0]  # the HNAG sample of section 1
for ax, graph, title in ((left, hnag.top, "top level: cells (WS)"), (middle, hnag.cells[0].graph, "cell 0: nodes (ER)"),
                         (right, hnag.cells[0].nodes[0], "node 0: operations (WS)")):
    g = nx.DiGraph()
    g.add_nodes_from(range(graph.nodes))
    g.add_edges_from(graph.edges)
    nx.draw_networkx(g, pos=nx.circular_layout(g), ax=ax, node_color="tab:orange", arrows=True)
    ax.set_title(title)
    ax.axis("off")
fig.tight_layout()
plt.show()
