"""HNAG: the three-level hierarchical graph generator of NAGO (Ru, Esperança, Carlucci, NeurIPS 2020, §3).

A network is a graph of graphs of graphs (spec ``nago.md`` §2)::

    top     graph of cells       Watts-Strogatz   WS(N_t, K_t, P_t)   cells split into 3 stages by theta_S
    mid     each cell: nodes     Erdős-Rényi      ER(N_m, P_m)        one independent graph per cell
    bottom  each node: ops       Watts-Strogatz   WS(N_b, K_b, P_b)   one independent graph per node

Graphs come from networkx (``connected_watts_strogatz_graph(n, k, p, tries=200, seed)``,
``erdos_renyi_graph(n, p, seed)``), K clipped to N-1 (networkx joins k//2 neighbours per side, so odd K acts as
K-1). Each graph has its own base seed x (derived from the architecture seed and the graph's position) and the seeds
``100 x + counter``, counter = 0..29, are tried until the graph is connected; an ER graph that stays disconnected
after 30 tries is kept as it is (each component gets the input and feeds the averaged output). Edges are oriented
from the lower to the higher node index, so every graph is a DAG; inputs are the nodes with no lower-index neighbour,
outputs those with no higher-index neighbour. Stages use fractional ratios (1/3 each by default) so three stages
exist whatever N_t is (the released ``stage_ratio = 1.0`` puts every cell in stage 0 when N_t != 3).

Everything here is plain Python data (no JAX): :class:`Architecture` is frozen, compares with ``==``, round-trips
through JSON (:meth:`Architecture.to_json` / :meth:`Architecture.from_json`), has a stable content hash
(:meth:`Architecture.fingerprint`) and draws itself (:meth:`Architecture.draw`, one panel per level).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from typing import Any

import networkx as nx
import numpy as np

from jeq import validate

__all__ = [
    "HNAG_SPACE",
    "RNAG_SPACE",
    "Architecture",
    "Cell",
    "Graph",
    "HParams",
    "darts_like",
    "randwire",
    "sample_architecture",
    "stage_of_nodes",
]

HNAG_SPACE: dict[str, tuple[type, float, float]] = {
    "g1_nodes": (int, 3, 10),
    "g1_k": (int, 2, 5),
    "g1_p": (float, 0.1, 1.0),
    "g2_nodes": (int, 3, 10),
    "g2_p": (float, 0.2, 1.0),
    "g3_nodes": (int, 3, 10),
    "g3_k": (int, 2, 5),
    "g3_p": (float, 0.1, 1.0),
}
"""The 8 searched hyper-parameters of the released ``nago.yml`` (spec §3): name -> (type, low, high)."""

RNAG_SPACE: dict[str, tuple[type, float, float]] = {
    "g3_nodes": (int, 3, 10),
    "g3_k": (int, 2, 5),
    "g3_p": (float, 0.1, 1.0),
}
"""The RandWire space (RNAG): top = 3-cell chain, mid = 1 node, only the bottom WS(N, K, P) is searched."""

_MAX_NODES = 64
_TRIES = 30
_WHERE = "jeq.nas.HParams"


@dataclasses.dataclass(frozen=True)
class HParams:
    """theta of HNAG: the 8 searched values (spec §3) plus the stage ratios theta_S and channel ratios theta_C.

    The searched ranges are :data:`HNAG_SPACE`; construction accepts the wider ranges the presets need (1 mid node,
    up to 64 nodes per level) and rejects anything that cannot define a network.

    >>> from jeq.nas import HNAG_SPACE, HParams
    >>> theta = HParams(g1_nodes=4, g1_k=2, g1_p=0.5, g2_nodes=3, g2_p=0.5, g3_nodes=4, g3_k=2, g3_p=0.5)
    >>> sorted(HNAG_SPACE) == sorted(k for k in theta.to_dict() if k.startswith("g"))  # the 8 searched values
    True
    >>> HParams.from_dict(theta.to_dict()) == theta
    True
    >>> HParams(g1_nodes=4, g1_k=2, g1_p=1.5, g2_nodes=3, g2_p=0.5, g3_nodes=4, g3_k=2, g3_p=0.5)
    Traceback (most recent call last):
    ...
    jeq.validate.ArgumentError: jeq.nas.HParams(...): must be ...
    """

    g1_nodes: int
    """N_t: cells in the top WS graph (>= 3, so that each of the three stages holds a cell)."""
    g1_k: int
    """K_t: ring degree of the top WS graph (clipped to N_t - 1 when sampling)."""
    g1_p: float
    """P_t: WS rewiring probability of the top graph."""
    g2_nodes: int
    """N_m: nodes in each cell's ER graph (1 allowed: RandWire / DARTS-like cells)."""
    g2_p: float
    """P_m: ER edge probability."""
    g3_nodes: int
    """N_b: operations (ReLU-Conv3x3-BN) in each node's WS graph."""
    g3_k: int
    """K_b: ring degree of the bottom WS graph."""
    g3_p: float
    """P_b: WS rewiring probability of the bottom graphs."""
    stage_ratios: tuple[float, float, float] = (1 / 3, 1 / 3, 1 / 3)
    """theta_S: fraction of the top cells in stages 0, 1, 2 (positive, summing to 1)."""
    channel_ratios: tuple[float, float, float] = (1.0, 2.0, 4.0)
    """theta_C: channels of stages 0, 1, 2 relative to the width (1:2:4 as released)."""
    top: str = "ws"
    """Top-level generator: ``"ws"`` (HNAG) or ``"chain"`` (a path of g1_nodes cells: RandWire, DARTS-like)."""

    def __post_init__(self) -> None:
        for name in ("g1_nodes", "g3_nodes"):
            object.__setattr__(self, name, validate.integer(_WHERE, name, getattr(self, name), low=3,
                                                            high=_MAX_NODES))
        object.__setattr__(self, "g2_nodes", validate.integer(_WHERE, "g2_nodes", self.g2_nodes, low=1,
                                                              high=_MAX_NODES))
        for name in ("g1_k", "g3_k"):
            object.__setattr__(self, name, validate.integer(_WHERE, name, getattr(self, name), low=2,
                                                            high=_MAX_NODES))
        for name in ("g1_p", "g2_p", "g3_p"):
            object.__setattr__(self, name, validate.real(_WHERE, name, getattr(self, name), low=0.0, high=1.0))
        ratios = _triple("stage_ratios", self.stage_ratios)
        if not math.isclose(sum(ratios), 1.0, rel_tol=0, abs_tol=1e-6):
            validate.fail(_WHERE, "stage_ratios", self.stage_ratios, "must sum to 1 (fractions of the top cells)")
        object.__setattr__(self, "stage_ratios", ratios)
        object.__setattr__(self, "channel_ratios", _triple("channel_ratios", self.channel_ratios))
        validate.one_of(_WHERE, "top", self.top, ("ws", "chain"))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples become lists)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> HParams:
        """Inverse of :meth:`to_dict`; the spec's capitalised keys (``G1_nodes``, ``G1_K`` ...) are accepted too."""
        fields = {f.name for f in dataclasses.fields(cls)}
        clean = {}
        for key, value in values.items():
            name = key.lower()
            if name not in fields:
                validate.fail("jeq.nas.HParams.from_dict", "values", key, f"must be one of {sorted(fields)}")
            clean[name] = tuple(value) if isinstance(value, list) else value
        return cls(**clean)


def _triple(name: str, value: Any) -> tuple[float, float, float]:
    if not isinstance(value, (tuple, list)) or len(value) != 3:
        validate.fail(_WHERE, name, value, "must be three positive numbers (one per stage)")
    return tuple(validate.positive(_WHERE, name, v) for v in value)  # type: ignore[return-value]


@dataclasses.dataclass(frozen=True)
class Graph:
    """One oriented graph: ``nodes`` indices 0..nodes-1 and edges ``(u, v)`` with ``u < v`` (a DAG by construction).

    >>> from jeq.nas import Graph
    >>> graph = Graph(4, ((0, 1), (0, 2), (1, 3), (2, 3)))  # a diamond, oriented low -> high
    >>> graph.inputs, graph.outputs, graph.predecessors(3)
    ((0,), (3,), (1, 2))
    >>> import networkx as nx
    >>> nx.is_directed_acyclic_graph(graph.to_networkx())
    True
    """

    nodes: int
    """Number of nodes."""
    edges: tuple[tuple[int, int], ...]
    """Oriented edges, sorted, each from the lower to the higher index."""

    def predecessors(self, node: int) -> tuple[int, ...]:
        """Nodes with an edge into ``node`` (all of lower index)."""
        return tuple(u for u, v in self.edges if v == node)

    @property
    def inputs(self) -> tuple[int, ...]:
        """Nodes with no lower-index neighbour: they all receive the graph's input."""
        targets = {v for _, v in self.edges}
        return tuple(i for i in range(self.nodes) if i not in targets)

    @property
    def outputs(self) -> tuple[int, ...]:
        """Nodes with no higher-index neighbour: the graph's output is their mean."""
        sources = {u for u, _ in self.edges}
        return tuple(i for i in range(self.nodes) if i not in sources)

    def to_networkx(self) -> nx.DiGraph:
        """The oriented graph as a ``networkx.DiGraph``."""
        graph = nx.DiGraph()
        graph.add_nodes_from(range(self.nodes))
        graph.add_edges_from(self.edges)
        return graph

    @classmethod
    def from_undirected(cls, graph: nx.Graph) -> Graph:
        """Orient an undirected graph on nodes 0..n-1 from the lower to the higher index."""
        edges = sorted({(min(u, v), max(u, v)) for u, v in graph.edges() if u != v})
        return cls(graph.number_of_nodes(), tuple(edges))


@dataclasses.dataclass(frozen=True)
class Cell:
    """A top-level node: the mid graph of its nodes and, per node, the bottom graph of its operations.

    >>> from jeq.nas import HParams, sample_architecture
    >>> small = HParams(g1_nodes=3, g1_k=2, g1_p=0.5, g2_nodes=1, g2_p=0.5, g3_nodes=3, g3_k=2, g3_p=0.5)
    >>> cell = sample_architecture(small, seed=0).cells[0]
    >>> cell.graph.nodes, len(cell.nodes), [g.nodes for g in cell.nodes]  # 1 mid node of 3 operations
    (1, 1, [3])
    """

    graph: Graph
    """Mid-level graph (ER) of the cell's nodes."""
    nodes: tuple[Graph, ...]
    """Bottom-level graph (WS) of operations for each node of ``graph``."""


@dataclasses.dataclass(frozen=True)
class Architecture:
    """A sampled network as plain frozen data: the top graph, the stage of each cell, and the cells.

    >>> from jeq.nas import Architecture, HParams, sample_architecture
    >>> theta = HParams(g1_nodes=4, g1_k=2, g1_p=0.5, g2_nodes=3, g2_p=0.5, g3_nodes=4, g3_k=2, g3_p=0.5)
    >>> arch = sample_architecture(theta, seed=0)
    >>> arch.top.nodes, arch.stages, arch.num_operations == sum(len(c.nodes) and sum(g.nodes for g in c.nodes)
    ...                                                         for c in arch.cells)
    (4, (0, 1, 1, 2), True)
    >>> again = Architecture.from_json(arch.to_json())  # plain data: JSON round trip
    >>> again == arch, again.fingerprint() == arch.fingerprint()
    (True, True)
    """

    top: Graph
    """Top-level graph of cells."""
    stages: tuple[int, ...]
    """Stage (0, 1, 2) of each top node; non-decreasing in the node index."""
    cells: tuple[Cell, ...]
    """One cell per top node."""
    channel_ratios: tuple[float, float, float] = (1.0, 2.0, 4.0)
    """theta_C: channels of each stage relative to the width."""
    hparams: HParams | None = None
    """The theta the architecture was sampled from (None for hand-built graphs)."""
    seed: int | None = None
    """The sampling seed (None for hand-built graphs)."""

    def __post_init__(self) -> None:
        if len(self.stages) != self.top.nodes or len(self.cells) != self.top.nodes:
            raise ValueError(f"jeq.nas.Architecture: {self.top.nodes} top nodes but {len(self.stages)} stages and "
                             f"{len(self.cells)} cells")
        if set(self.stages) != {0, 1, 2} or list(self.stages) != sorted(self.stages):
            raise ValueError(f"jeq.nas.Architecture(stages={self.stages}): must be non-decreasing and use stages 0, 1, "
                             "2")

    @property
    def num_operations(self) -> int:
        """Total number of ReLU-Conv-BN operations (bottom-graph nodes) in the network."""
        return sum(g.nodes for cell in self.cells for g in cell.nodes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready nested dict."""
        def graph(g: Graph) -> dict[str, Any]:
            return {"nodes": g.nodes, "edges": [list(e) for e in g.edges]}

        return {
            "top": graph(self.top),
            "stages": list(self.stages),
            "cells": [{"graph": graph(c.graph), "nodes": [graph(g) for g in c.nodes]} for c in self.cells],
            "channel_ratios": list(self.channel_ratios),
            "hparams": None if self.hparams is None else self.hparams.to_dict(),
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Architecture:
        """Inverse of :meth:`to_dict`."""
        def graph(g: dict[str, Any]) -> Graph:
            return Graph(int(g["nodes"]), tuple((int(u), int(v)) for u, v in g["edges"]))

        return cls(
            top=graph(d["top"]),
            stages=tuple(int(s) for s in d["stages"]),
            cells=tuple(Cell(graph(c["graph"]), tuple(graph(g) for g in c["nodes"])) for c in d["cells"]),
            channel_ratios=tuple(float(r) for r in d["channel_ratios"]),  # type: ignore[arg-type]
            hparams=None if d.get("hparams") is None else HParams.from_dict(d["hparams"]),
            seed=d.get("seed"),
        )

    def to_json(self) -> str:
        """Canonical JSON text (sorted keys): equal architectures give equal text."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Architecture:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))

    def fingerprint(self) -> str:
        """Stable content hash (sha256 of the graphs, stages and channel ratios; the same in every process)."""
        d = self.to_dict()
        d.pop("hparams"), d.pop("seed")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def draw(self, path: str | os.PathLike, *, cell: int = 0, node: int = 0) -> None:
        """Save one picture per level: the top graph (coloured by stage), cell ``cell``'s mid graph, and the bottom
        graph of its node ``node``; inputs are squares, outputs diamonds."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        panels = [
            (self.top, [("C0", "C1", "C2")[s] for s in self.stages], f"top: {self.top.nodes} cells (stage colour)"),
            (self.cells[cell].graph, None, f"mid: cell {cell}, {self.cells[cell].graph.nodes} nodes"),
            (self.cells[cell].nodes[node], None, f"bottom: cell {cell} node {node}, "
                                                 f"{self.cells[cell].nodes[node].nodes} ops"),
        ]
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
        for ax, (g, colours, title) in zip(axes, panels):
            dg = g.to_networkx()
            for v in dg.nodes:
                dg.nodes[v]["layer"] = _depth(g)[v]
            pos = nx.multipartite_layout(dg, subset_key="layer")
            colours = colours or ["C0"] * g.nodes
            for shape, members in (("s", g.inputs), ("D", [v for v in g.outputs if v not in g.inputs]),
                                   ("o", [v for v in range(g.nodes) if v not in g.inputs and v not in g.outputs])):
                nx.draw_networkx_nodes(dg, pos, nodelist=list(members), node_shape=shape, ax=ax, node_size=260,
                                       node_color=[colours[v] for v in members])
            # arcs, so that an edge skipping over collinear nodes (0 -> 2 beside 0 -> 1 -> 2) stays visible
            nx.draw_networkx_edges(dg, pos, ax=ax, arrows=True, arrowsize=10, node_size=260,
                                   connectionstyle="arc3,rad=0.3")
            nx.draw_networkx_labels(dg, pos, ax=ax, font_size=7, font_color="white")
            ax.set_title(title, fontsize=9)
            ax.axis("off")
        fig.suptitle(f"architecture {self.fingerprint()}  ({self.num_operations} ops)", fontsize=10)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)


def _depth(g: Graph) -> list[int]:
    depth = [0] * g.nodes
    for u, v in g.edges:  # edges are sorted by source, sources precede targets
        depth[v] = max(depth[v], depth[u] + 1)
    return depth


def stage_of_nodes(nodes: int, stage_ratios: tuple[float, float, float]) -> tuple[int, ...]:
    """Stage of each top node: the first ``round(N r_0)`` cells in stage 0, up to ``round(N (r_0 + r_1))`` in stage 1,
    the rest in stage 2, with each stage holding at least one cell (``get_stage_list`` with fractional ratios).

    >>> from jeq.nas import stage_of_nodes
    >>> stage_of_nodes(6, (1 / 3, 1 / 3, 1 / 3)), stage_of_nodes(3, (0.1, 0.1, 0.8))  # at least one cell per stage
    ((0, 0, 1, 1, 2, 2), (0, 1, 2))
    """
    nodes = validate.integer("jeq.nas.stage_of_nodes", "nodes", nodes, low=3)
    r0, r1, _ = stage_ratios
    b1 = min(max(round(nodes * r0), 1), nodes - 2)
    b2 = min(max(round(nodes * (r0 + r1)), b1 + 1), nodes - 1)
    return tuple(0 if i < b1 else 1 if i < b2 else 2 for i in range(nodes))


def _graph_seed(seed: int, *position: int) -> int:
    return int(np.random.SeedSequence([seed, *position]).generate_state(1)[0] % 2**24)


def _ws(n: int, k: int, p: float, base: int) -> Graph:
    k = min(k, n - 1)
    for counter in range(_TRIES):
        try:
            return Graph.from_undirected(nx.connected_watts_strogatz_graph(n, k, p, tries=200,
                                                                           seed=100 * base + counter))
        except nx.NetworkXError:
            continue
    return Graph.from_undirected(nx.watts_strogatz_graph(n, k, p, seed=100 * base + _TRIES - 1))


def _er(n: int, p: float, base: int) -> Graph:
    graph = None
    for counter in range(_TRIES):
        graph = nx.erdos_renyi_graph(n, p, seed=100 * base + counter)
        if nx.is_connected(graph):
            break
    return Graph.from_undirected(graph)


def sample_architecture(hparams: HParams, *, seed: int) -> Architecture:
    """Sample a network from HNAG(theta): top WS(N_t, K_t, P_t), per cell ER(N_m, P_m), per node WS(N_b, K_b, P_b).

    Every graph has its own base seed (derived from ``seed`` and its position), oriented low -> high; deterministic
    for a fixed ``(hparams, seed)``.

    >>> from jeq.nas import HParams, sample_architecture
    >>> small = HParams(g1_nodes=3, g1_k=2, g1_p=0.5, g2_nodes=1, g2_p=0.5, g3_nodes=3, g3_k=2, g3_p=0.5)
    >>> a, b = sample_architecture(small, seed=3), sample_architecture(small, seed=3)
    >>> a == b, a.top.nodes, a.num_operations  # deterministic for (theta, seed); 3 cells x 1 node x 3 operations
    (True, 3, 9)
    >>> all(u < v for cell in a.cells for g in cell.nodes for u, v in g.edges)  # every graph is a DAG
    True
    """
    if not isinstance(hparams, HParams):
        validate.fail("jeq.nas.sample_architecture", "hparams", hparams, "must be a jeq.nas.HParams")
    seed = validate.integer("jeq.nas.sample_architecture", "seed", seed, low=0)
    h = hparams
    if h.top == "chain":
        top = Graph(h.g1_nodes, tuple((i, i + 1) for i in range(h.g1_nodes - 1)))
    else:
        top = _ws(h.g1_nodes, h.g1_k, h.g1_p, _graph_seed(seed, 0))
    cells = []
    for c in range(top.nodes):
        mid = _er(h.g2_nodes, h.g2_p, _graph_seed(seed, 1, c))
        bottoms = tuple(_ws(h.g3_nodes, h.g3_k, h.g3_p, _graph_seed(seed, 2, c, m)) for m in range(mid.nodes))
        cells.append(Cell(mid, bottoms))
    return Architecture(top=top, stages=stage_of_nodes(top.nodes, h.stage_ratios), cells=tuple(cells),
                        channel_ratios=h.channel_ratios, hparams=h, seed=seed)


def randwire(*, nodes: int = 32, k: int = 4, p: float = 0.75) -> HParams:
    """RandWire (Xie et al. 2019) as an HNAG special case: top = chain of 3 cells (one per stage), mid = 1 node,
    bottom = WS(nodes, k, p) (the paper's WS(32, 4, 0.75) by default).

    >>> from jeq.nas import randwire, sample_architecture
    >>> arch = sample_architecture(randwire(nodes=8, k=4, p=0.75), seed=0)
    >>> arch.top.edges, arch.stages, [len(c.nodes) for c in arch.cells], arch.cells[0].nodes[0].nodes
    (((0, 1), (1, 2)), (0, 1, 2), [1, 1, 1], 8)
    """
    return HParams(g1_nodes=3, g1_k=2, g1_p=0.0, g2_nodes=1, g2_p=1.0, g3_nodes=nodes, g3_k=k, g3_p=p, top="chain")


def darts_like(*, cells: int = 20, nodes: int = 5, k: int = 4, p: float = 0.0) -> HParams:
    """DARTS-like nets as an HNAG special case: top = chain of ``cells`` cells (stages 1/3 each, so two
    downsamplings as DARTS's reduction cells), mid = 1 node, bottom = WS(nodes, k, p) (a ring lattice when p = 0).

    >>> from jeq.nas import darts_like, sample_architecture
    >>> arch = sample_architecture(darts_like(cells=6, nodes=4), seed=0)
    >>> arch.stages, len(arch.top.edges)  # a chain of 6 cells, two per stage
    ((0, 0, 1, 1, 2, 2), 5)
    >>> len({g.edges for cell in arch.cells for g in cell.nodes})  # p = 0: the same ring lattice everywhere
    1
    """
    return HParams(g1_nodes=cells, g1_k=2, g1_p=0.0, g2_nodes=1, g2_p=1.0, g3_nodes=nodes, g3_k=k, g3_p=p,
                   top="chain")
