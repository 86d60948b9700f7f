"""HNAG networks: an :class:`~jeq.nas.generator.Architecture` as a flax NNX module (spec ``nago.md`` §2).

The network, with stage channels ``C_s = round(width * theta_C[s])`` (1:2:4) and resolutions ``R / 2^s``::

    stem    conv3x3(C_in -> C_0)-BN-ReLU-conv3x3-BN                     (the CIFAR stem; stride 1)
    top     each cell v of stage s:  x_v = sum_{u -> v} sigmoid(w_uv) * P_uv(h_u)     (inputs get P(stem))
            h_v = cell_v(x_v);  P = avg-pool to R / 2^s, then a 1x1 conv when the channels differ
    cell    mid graph of nodes, node j:  x_j = sum_{i -> j} sigmoid(w_ij) h_i  (inputs get the cell input)
            h_j = node_j(x_j); the cell's output is the mean of its output nodes
    node    bottom graph of operations, same merge; operation = ReLU -> Conv3x3 -> BN; mean of its outputs
    outputs top output cells pooled to the smallest resolution, 1x1 conv to the widest channels, averaged
    head    ReLU -> 1x1 conv to H -> BN -> ReLU -> global average pool -> Dropout(0.2) -> Dense(classes)

H = 1280 in the paper; for small parameter budgets the default is ``min(1280, 4 C_2)`` (MobileNetV2's head also
widens its last stage 4x, 320 -> 1280). Edge scalars w start at 1 (SUM merge with sigmoid-bounded weights).

The graph logic is pure: :func:`plan` lists every parameter's name and shape from the architecture and width (so
:func:`count_params` is exact without building anything, and :func:`fit_width` solves the budget by bisection), and
:func:`merge_graph` is the DAG walk of the mid and bottom levels (the top level adds pooling and projections on
its edges). :class:`Network` only allocates the layers the plan names: a cell's N_m x N_b operations are stored
stacked (:class:`CellOps`: one kernel array per cell). BatchNorm follows ``model.train()`` / ``model.eval()``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jeq import validate
from jeq.nas.generator import Architecture, Cell, Graph

__all__ = ["CellOps", "Network", "Plan", "conv_bn", "count_params", "fit_width", "merge_graph", "param_count",
           "plan"]

Array = jax.Array


class Plan(NamedTuple):
    """Everything about a network's shape that follows from the architecture and the width (pure Python).

    >>> from jeq.nas import HParams, Plan, plan, sample_architecture
    >>> small = HParams(g1_nodes=3, g1_k=2, g1_p=0.5, g2_nodes=1, g2_p=0.5, g3_nodes=3, g3_k=2, g3_p=0.5)
    >>> p = plan(sample_architecture(small, seed=0), width=4)
    >>> p.channels, p.in_channels, p.num_classes  # theta_C = (1, 2, 4) times the width
    ((4, 8, 16), 1, 10)
    """

    channels: tuple[int, int, int]
    """Channels of stages 0, 1, 2."""
    head_channels: int
    """Width H of the head's 1x1 conv."""
    in_channels: int
    """Image channels."""
    num_classes: int
    """Classes of the final dense layer."""
    shapes: dict[str, tuple[int, ...]]
    """Every ``nnx.Param`` of :class:`Network` by path-like name, with its shape."""


def _head(channels: tuple[int, int, int], head_channels: int | None) -> int:
    return min(1280, 4 * channels[2]) if head_channels is None else head_channels


def _source_channels(arch: Architecture, channels: tuple[int, int, int]):
    """(cell v, source u or -1 for the stem) -> (from channels, to channels) for every top-level input edge."""
    top = arch.top
    for v in range(top.nodes):
        preds = top.predecessors(v)
        for u in (preds or (-1,)):
            c_from = channels[0] if u < 0 else channels[arch.stages[u]]
            yield v, u, c_from, channels[arch.stages[v]]


def _uniform(architecture: Architecture, where: str) -> tuple[int, int]:
    """(N_m, N_b): every cell must have the same number of nodes and every node the same number of operations (true
    for every HNAG sample and preset), so that a cell's weights stack into one array per cell."""
    n_m = {cell.graph.nodes for cell in architecture.cells}
    n_b = {g.nodes for cell in architecture.cells for g in cell.nodes}
    if len(n_m) != 1 or len(n_b) != 1:
        validate.fail(where, "architecture", architecture.fingerprint(),
                      f"must have the same node count in every cell (got {sorted(n_m)}) and the same operation count "
                      f"in every node (got {sorted(n_b)})")
    return n_m.pop(), n_b.pop()


def plan(architecture: Architecture, *, width: int, in_channels: int = 1, num_classes: int = 10,
         head_channels: int | None = None) -> Plan:
    """Parameter names and shapes of :class:`Network` (``width`` = channels of stage 0 before theta_C).

    A cell's operations are stacked: ``cell{v}/kernels`` has shape ``(N_m, N_b, 3, 3, C_s, C_s)``; its edge scalars
    are one vector per level (``cell{v}/mid_edges``: one per mid edge, ``cell{v}/node_edges``: one per bottom edge
    of all its nodes), so the count is exactly one scalar per edge.

    >>> import math
    >>> from jeq.nas import HParams, count_params, plan, sample_architecture
    >>> small = HParams(g1_nodes=3, g1_k=2, g1_p=0.5, g2_nodes=1, g2_p=0.5, g3_nodes=3, g3_k=2, g3_p=0.5)
    >>> arch = sample_architecture(small, seed=0)
    >>> shapes = plan(arch, width=4).shapes
    >>> shapes["cell0/kernels"]  # (N_m, N_b, 3, 3, C_s, C_s)
    (1, 3, 3, 3, 4, 4)
    >>> len(shapes["cell0/node_edges"]) if False else shapes["cell0/node_edges"] == (len(arch.cells[0].nodes[0].edges),)
    True
    """
    where = "jeq.nas.plan"
    if not isinstance(architecture, Architecture):
        validate.fail(where, "architecture", architecture, "must be a jeq.nas.Architecture")
    width = validate.integer(where, "width", width, low=1)
    in_channels = validate.integer(where, "in_channels", in_channels, low=1)
    num_classes = validate.integer(where, "num_classes", num_classes, low=2)
    if head_channels is not None:
        head_channels = validate.integer(where, "head_channels", head_channels, low=1)
    n_m, n_b = _uniform(architecture, where)
    channels = tuple(max(1, int(round(width * r))) for r in architecture.channel_ratios)
    head = _head(channels, head_channels)  # type: ignore[arg-type]
    c0 = channels[0]
    shapes: dict[str, tuple[int, ...]] = {
        "stem/conv1": (3, 3, in_channels, c0), "stem/bn1/scale": (c0,), "stem/bn1/bias": (c0,),
        "stem/conv2": (3, 3, c0, c0), "stem/bn2/scale": (c0,), "stem/bn2/bias": (c0,),
    }
    top = architecture.top
    shapes["top/edges"] = (len(top.edges),)
    for v, u, c_from, c_to in _source_channels(architecture, channels):
        if c_from != c_to:
            shapes[f"top/proj/{v}/{u}"] = (1, 1, c_from, c_to)
    for v, cell in enumerate(architecture.cells):
        c = channels[architecture.stages[v]]
        shapes[f"cell{v}/mid_edges"] = (len(cell.graph.edges),)
        shapes[f"cell{v}/node_edges"] = (sum(len(g.edges) for g in cell.nodes),)
        shapes[f"cell{v}/kernels"] = (n_m, n_b, 3, 3, c, c)
        shapes[f"cell{v}/bn/scale"] = (n_m, n_b, c)
        shapes[f"cell{v}/bn/bias"] = (n_m, n_b, c)
    c_out = max(channels[architecture.stages[o]] for o in top.outputs)
    for o in top.outputs:
        if channels[architecture.stages[o]] != c_out:
            shapes[f"out/proj/{o}"] = (1, 1, channels[architecture.stages[o]], c_out)
    shapes.update({"head/conv": (1, 1, c_out, head), "head/bn/scale": (head,), "head/bn/bias": (head,),
                   "head/dense/kernel": (head, num_classes), "head/dense/bias": (num_classes,)})
    return Plan(channels, head, in_channels, num_classes, shapes)  # type: ignore[arg-type]


def count_params(architecture: Architecture, *, width: int, in_channels: int = 1, num_classes: int = 10,
                 head_channels: int | None = None) -> int:
    """``sum_p prod(shape_p)`` over the trainable parameters (``nnx.Param``) of :class:`Network`; BatchNorm running
    statistics are not parameters. Exact, and computed without building the network.

    >>> from flax import nnx
    >>> from jeq.nas import HParams, Network, count_params, param_count, sample_architecture
    >>> small = HParams(g1_nodes=3, g1_k=2, g1_p=0.5, g2_nodes=1, g2_p=0.5, g3_nodes=3, g3_k=2, g3_p=0.5)
    >>> arch = sample_architecture(small, seed=0)
    >>> model = nnx.eval_shape(lambda: Network(arch, width=4, rngs=nnx.Rngs(0)))  # shapes only, nothing allocated
    >>> count_params(arch, width=4) == param_count(model)
    True
    """
    p = plan(architecture, width=width, in_channels=in_channels, num_classes=num_classes,
             head_channels=head_channels)
    return int(sum(int(np.prod(s)) for s in p.shapes.values()))


def fit_width(architecture: Architecture, *, budget: int, in_channels: int = 1, num_classes: int = 10,
              head_channels: int | None = None) -> int:
    """The width multiplier for a parameter budget: ``max { m >= 1 : count_params(m) <= budget }``.

    The paper's ``m = int(sqrt(n_limit / n_base))`` assumes parameters grow as m^2; counting exactly instead keeps
    every sample at or under the budget. Raises when even width 1 does not fit.

    >>> from jeq.nas import HParams, count_params, fit_width, sample_architecture
    >>> small = HParams(g1_nodes=3, g1_k=2, g1_p=0.5, g2_nodes=1, g2_p=0.5, g3_nodes=3, g3_k=2, g3_p=0.5)
    >>> arch = sample_architecture(small, seed=0)
    >>> width = fit_width(arch, budget=20_000)
    >>> count_params(arch, width=width) <= 20_000 < count_params(arch, width=width + 1)
    True
    >>> fit_width(arch, budget=10)
    Traceback (most recent call last):
    ...
    jeq.validate.ArgumentError: jeq.nas.fit_width(budget=10): must be ...
    """
    where = "jeq.nas.fit_width"
    budget = validate.integer(where, "budget", budget, low=1)

    def count(m: int) -> int:
        return count_params(architecture, width=m, in_channels=in_channels, num_classes=num_classes,
                            head_channels=head_channels)

    smallest = count(1)
    if smallest > budget:
        validate.fail(where, "budget", budget, f"must be >= {smallest}, the parameters of this architecture at "
                                               f"width 1 ({architecture.num_operations} operations)")
    low, high = 1, 2
    while count(high) <= budget:
        low, high = high, high * 2
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if count(mid) <= budget else (low, mid)
    return low


def merge_graph(graph: Graph, x: Array, op: Callable[[int, Array], Array], gates: Array) -> Array:
    """One level of the hierarchy, node by node in index order:

        h_v = op_v(x)                                     if v is an input (no predecessor)
        h_v = op_v(sum_{u -> v} sigmoid(w_uv) h_u)        otherwise (SUM merge)
        y   = mean_{v in outputs} h_v

    ``gates[e] = sigmoid(w_e)`` belongs to ``graph.edges[e]``. The walk is unrolled (the graph is static): XLA on
    CPU runs convolutions inside ``lax.scan`` loops an order of magnitude slower than straight-line ones.

    >>> import jax.numpy as jnp
    >>> from jeq.nas import Graph, merge_graph
    >>> graph = Graph(3, ((0, 1), (0, 2), (1, 2)))
    >>> double = lambda v, h: 2 * h  # op_v
    >>> float(merge_graph(graph, jnp.array(1.0), double, jnp.ones(3)))  # h0 = 2, h1 = 4, y = h2 = 2 (2 + 4)
    12.0
    >>> float(merge_graph(graph, jnp.array(1.0), double, jnp.full(3, 0.5)))  # gates halve each edge
    4.0
    """
    incoming: dict[int, list[int]] = {}
    for e, (_, v) in enumerate(graph.edges):
        incoming.setdefault(v, []).append(e)
    h: dict[int, Array] = {}
    for v in range(graph.nodes):
        if v not in incoming:
            h[v] = op(v, x)
        else:
            h[v] = op(v, sum(gates[e] * h[graph.edges[e][0]] for e in incoming[v]))
    outs = graph.outputs
    return sum(h[o] for o in outs) / len(outs)


@functools.partial(jax.jit, static_argnames=("train", "eps"))
def conv_bn(x: Array, kernel: Array, scale: Array, bias: Array, mean: Array, var: Array, *, train: bool,
            eps: float = 1e-5) -> tuple[Array, tuple[Array, Array]]:
    """``BN(conv3x3(relu(x)))`` of one operation; BN uses the batch statistics when ``train`` (returned, for the
    running averages) and ``mean``/``var`` otherwise."""
    y = jax.lax.conv_general_dilated(jax.nn.relu(x), kernel, (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if train:
        mu = jnp.mean(y, axis=(0, 1, 2))
        sigma2 = jnp.var(y, axis=(0, 1, 2))
    else:
        mu, sigma2 = mean, var
    return (y - mu) * jax.lax.rsqrt(sigma2 + eps) * scale + bias, (mu, sigma2)


def _pool(x: Array, factor: int) -> Array:
    if factor == 1:
        return x
    return nnx.avg_pool(x, window_shape=(factor, factor), strides=(factor, factor))


class _ConvBN(nnx.Module):
    def __init__(self, c_in: int, c_out: int, *, kernel: int, rngs: nnx.Rngs):
        self.conv = nnx.Conv(c_in, c_out, (kernel, kernel), padding="SAME", use_bias=False, rngs=rngs)
        self.bn = nnx.BatchNorm(c_out, momentum=0.9, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        return self.bn(self.conv(x))


class CellOps(nnx.Module):
    """The stacked operations of one cell: kernels (N_m, N_b, 3, 3, C, C), BN scale/bias/statistics (N_m, N_b, C),
    and the edge scalars of its mid graph and of all its bottom graphs (initialised to 1)."""

    def __init__(self, cell: Cell, channels: int, *, momentum: float = 0.9, rngs: nnx.Rngs):
        n_m, n_b = cell.graph.nodes, cell.nodes[0].nodes
        init = nnx.initializers.variance_scaling(1.0, "fan_in", "truncated_normal", in_axis=(2, 3, 4),
                                                 out_axis=5)
        self.kernels = nnx.Param(init(rngs.params(), (n_m, n_b, 3, 3, channels, channels)))
        self.scale = nnx.Param(jnp.ones((n_m, n_b, channels)))
        self.bias = nnx.Param(jnp.zeros((n_m, n_b, channels)))
        self.mean = nnx.BatchStat(jnp.zeros((n_m, n_b, channels)))
        self.var = nnx.BatchStat(jnp.ones((n_m, n_b, channels)))
        self.mid_edges = nnx.Param(jnp.ones(len(cell.graph.edges)))
        self.node_edges = nnx.Param(jnp.ones(sum(len(g.edges) for g in cell.nodes)))
        self.cell = nnx.static(cell)
        self.momentum = momentum
        self.use_running_average = False

    def __call__(self, x: Array) -> Array:
        cell = self.cell
        train = not self.use_running_average
        kernels, scale, bias, mean, var = (self.kernels[...], self.scale[...], self.bias[...], self.mean[...],
                                           self.var[...])
        node_gates = jax.nn.sigmoid(self.node_edges[...])
        offsets = np.cumsum([0] + [len(g.edges) for g in cell.nodes])
        stats: dict[tuple[int, int], tuple[Array, Array]] = {}

        def node(j: int, z: Array) -> Array:
            def op(k: int, zk: Array) -> Array:
                y, stats[j, k] = conv_bn(zk, kernels[j, k], scale[j, k], bias[j, k], mean[j, k], var[j, k],
                                         train=train)
                return y

            return merge_graph(cell.nodes[j], z, op, node_gates[offsets[j]:offsets[j + 1]])

        y = merge_graph(cell.graph, x, node, jax.nn.sigmoid(self.mid_edges[...]))
        if train:
            n_m, n_b = kernels.shape[:2]
            mu = jnp.stack([jnp.stack([stats[j, k][0] for k in range(n_b)]) for j in range(n_m)])
            sigma2 = jnp.stack([jnp.stack([stats[j, k][1] for k in range(n_b)]) for j in range(n_m)])
            m = self.momentum
            self.mean[...] = m * mean + (1 - m) * jax.lax.stop_gradient(mu)
            self.var[...] = m * var + (1 - m) * jax.lax.stop_gradient(sigma2)
        return y


class Network(nnx.Module):
    """The flax NNX network of an architecture (see the module docstring); ``__call__(x)`` maps NHWC images
    ``(batch, R, R, in_channels)`` to logits ``(batch, num_classes)``; R must be divisible by 4.

    >>> import jax
    >>> from flax import nnx
    >>> from jeq.nas import HParams, Network, count_params, param_count, sample_architecture
    >>> small = HParams(g1_nodes=3, g1_k=2, g1_p=0.5, g2_nodes=1, g2_p=0.5, g3_nodes=3, g3_k=2, g3_p=0.5)
    >>> arch = sample_architecture(small, seed=0)
    >>> model = nnx.eval_shape(lambda: Network(arch, width=2, rngs=nnx.Rngs(0)))  # shapes only
    >>> graphdef, state = nnx.split(model)
    >>> jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x), state, jax.ShapeDtypeStruct((4, 8, 8, 1), "float32")).shape
    (4, 10)
    >>> param_count(model) == count_params(arch, width=2)
    True
    """

    def __init__(self, architecture: Architecture, *, width: int, in_channels: int = 1, num_classes: int = 10,
                 head_channels: int | None = None, dropout: float = 0.2, rngs: nnx.Rngs):
        p = plan(architecture, width=width, in_channels=in_channels, num_classes=num_classes,
                 head_channels=head_channels)
        dropout = validate.real("jeq.nas.Network", "dropout", dropout, low=0.0, high=1.0, high_open=True)
        self.architecture = nnx.static(architecture)
        self.in_channels = nnx.static(p.in_channels)
        c = p.channels
        arch = architecture
        self.stem1 = _ConvBN(in_channels, c[0], kernel=3, rngs=rngs)
        self.stem2 = _ConvBN(c[0], c[0], kernel=3, rngs=rngs)
        self.top_edges = nnx.Param(jnp.ones(len(arch.top.edges)))
        self.proj = nnx.Dict({f"{v}/{u}": nnx.Conv(a, b, (1, 1), use_bias=False, rngs=rngs)
                              for v, u, a, b in _source_channels(arch, c) if a != b})
        self.cells = nnx.List([CellOps(cell, c[arch.stages[v]], rngs=rngs) for v, cell in enumerate(arch.cells)])
        c_out = max(c[arch.stages[o]] for o in arch.top.outputs)
        self.out_proj = nnx.Dict({str(o): nnx.Conv(c[arch.stages[o]], c_out, (1, 1), use_bias=False, rngs=rngs)
                                  for o in arch.top.outputs if c[arch.stages[o]] != c_out})
        self.head = _ConvBN(c_out, p.head_channels, kernel=1, rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)
        self.dense = nnx.Linear(p.head_channels, num_classes, rngs=rngs)

    def _adapt(self, v: int, u: int, h: Array, stage_from: int) -> Array:
        h = _pool(h, 2 ** (self.architecture.stages[v] - stage_from))
        key = f"{v}/{u}"
        return self.proj[key](h) if key in self.proj else h

    def __call__(self, x: Array) -> Array:
        arch = self.architecture
        if x.ndim != 4 or x.shape[1] % 4 or x.shape[2] % 4 or x.shape[3] != self.in_channels:
            raise ValueError(f"jeq.nas.Network: expected images (batch, R, R, {self.in_channels}) with R "
                             f"divisible by 4, got shape {x.shape}")
        stem = self.stem2(jax.nn.relu(self.stem1(x)))
        top = arch.top
        gates = jax.nn.sigmoid(self.top_edges[...])
        h: dict[int, Array] = {}
        for v in range(top.nodes):
            preds = [e for e, (_, t) in enumerate(top.edges) if t == v]
            if not preds:
                xv = self._adapt(v, -1, stem, 0)
            else:
                xv = sum(gates[e] * self._adapt(v, top.edges[e][0], h[top.edges[e][0]],
                                                arch.stages[top.edges[e][0]]) for e in preds)
            h[v] = self.cells[v](xv)
        outs = top.outputs
        last = max(arch.stages[o] for o in outs)
        merged = []
        for o in outs:
            y = _pool(h[o], 2 ** (last - arch.stages[o]))
            merged.append(self.out_proj[str(o)](y) if str(o) in self.out_proj else y)
        y = sum(merged) / len(merged)
        y = jax.nn.relu(self.head(jax.nn.relu(y)))
        y = self.dropout(jnp.mean(y, axis=(1, 2)))
        return self.dense(y)


def param_count(model: nnx.Module) -> int:
    """Sum of the sizes of a module's ``nnx.Param`` leaves (what :func:`count_params` predicts).

    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from jeq.nas import param_count
    >>> param_count(nnx.Linear(3, 2, rngs=nnx.Rngs(0))), param_count(nnx.BatchNorm(5, rngs=nnx.Rngs(0)))  # stats excluded
    (8, 10)
    """
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, nnx.Param))))
