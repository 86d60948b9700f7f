"""HNAG's generator: every level is a DAG with inputs and outputs, node counts follow theta, seeds reproduce."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import networkx as nx
import pytest

from jeq.nas import (
    HNAG_SPACE,
    Architecture,
    HParams,
    darts_like,
    randwire,
    sample_architecture,
    stage_of_nodes,
)
from jeq.validate import ArgumentError

THETAS = [
    HParams(g1_nodes=3, g1_k=2, g1_p=0.1, g2_nodes=3, g2_p=0.2, g3_nodes=3, g3_k=2, g3_p=0.1),
    HParams(g1_nodes=7, g1_k=5, g1_p=0.9, g2_nodes=5, g2_p=0.6, g3_nodes=6, g3_k=3, g3_p=0.5),
    HParams(g1_nodes=10, g1_k=4, g1_p=1.0, g2_nodes=10, g2_p=1.0, g3_nodes=10, g3_k=5, g3_p=1.0),
]


def _levels(arch: Architecture):
    yield arch.top
    for cell in arch.cells:
        yield cell.graph
        yield from cell.nodes


@pytest.mark.parametrize("theta", THETAS)
@pytest.mark.parametrize("seed", [0, 1])
def test_every_level_is_a_dag_with_inputs_and_outputs_and_the_asked_node_counts(theta, seed):
    arch = sample_architecture(theta, seed=seed)
    assert arch.top.nodes == theta.g1_nodes and len(arch.cells) == theta.g1_nodes
    for cell in arch.cells:
        assert cell.graph.nodes == theta.g2_nodes and len(cell.nodes) == theta.g2_nodes
        assert all(g.nodes == theta.g3_nodes for g in cell.nodes)
    for g in _levels(arch):
        dg = g.to_networkx()
        assert nx.is_directed_acyclic_graph(dg)
        assert all(u < v for u, v in g.edges)
        assert g.inputs and g.outputs
        assert set(g.inputs) == {v for v in dg if dg.in_degree(v) == 0}
        assert set(g.outputs) == {v for v in dg if dg.out_degree(v) == 0}
    # Watts-Strogatz levels are connected (retries until connected), so every node lies on an input-output path
    for g in [arch.top] + [b for cell in arch.cells for b in cell.nodes]:
        assert nx.is_connected(g.to_networkx().to_undirected())


def test_watts_strogatz_clips_k_to_n_minus_1_and_odd_k_acts_as_k_minus_1():
    # N=3, K=5 -> K=2: the triangle, oriented 0->1, 0->2, 1->2
    arch = sample_architecture(HParams(g1_nodes=3, g1_k=5, g1_p=0.0, g2_nodes=1, g2_p=1.0, g3_nodes=3, g3_k=5,
                                       g3_p=0.0), seed=0)
    assert arch.top.edges == ((0, 1), (0, 2), (1, 2))
    # p = 0 keeps the ring lattice: K=3 joins 3 // 2 = 1 neighbour per side, as K=2 does
    ring = sample_architecture(HParams(g1_nodes=6, g1_k=3, g1_p=0.0, g2_nodes=1, g2_p=1.0, g3_nodes=6, g3_k=2,
                                       g3_p=0.0), seed=0)
    assert ring.top.edges == ring.cells[0].nodes[0].edges == ((0, 1), (0, 5), (1, 2), (2, 3), (3, 4), (4, 5))


def test_same_seed_same_architecture_different_seeds_differ():
    theta = THETAS[1]
    a, b = sample_architecture(theta, seed=3), sample_architecture(theta, seed=3)
    assert a == b and a.fingerprint() == b.fingerprint()
    others = {sample_architecture(theta, seed=s).fingerprint() for s in range(4, 8)}
    assert a.fingerprint() not in others and len(others) == 4
    # every cell and node has its own graph (seeds 100 x + counter per graph), not one graph copied
    assert len({c.graph for c in a.cells}) > 1 and len({g for c in a.cells for g in c.nodes}) > 1


def test_json_round_trip_and_a_fingerprint_that_is_the_same_in_another_process():
    arch = sample_architecture(THETAS[1], seed=5)
    again = Architecture.from_json(arch.to_json())
    assert again == arch and again.to_json() == arch.to_json() and again.hparams == THETAS[1]
    code = ("import sys; from jeq.nas import Architecture; "
            "print(Architecture.from_json(sys.stdin.read()).fingerprint())")
    out = subprocess.run([sys.executable, "-c", code], input=arch.to_json(), capture_output=True, text=True,
                         check=True, env={"PYTHONHASHSEED": "123", "JAX_PLATFORMS": "cpu"})
    assert out.stdout.strip() == arch.fingerprint()
    assert json.loads(arch.to_json())["stages"] == list(arch.stages)


@pytest.mark.parametrize("nodes", [3, 4, 5, 7, 10, 20])
def test_fractional_stage_ratios_give_three_nonempty_stages_in_order(nodes):
    stages = stage_of_nodes(nodes, (1 / 3, 1 / 3, 1 / 3))
    assert list(stages) == sorted(stages) and set(stages) == {0, 1, 2}
    counts = [stages.count(s) for s in range(3)]
    assert max(counts) - min(counts) <= 1


def test_presets_randwire_and_darts_like():
    rw = sample_architecture(randwire(nodes=32, k=4, p=0.75), seed=0)
    assert rw.top.edges == ((0, 1), (1, 2)) and rw.stages == (0, 1, 2)
    assert all(c.graph.nodes == 1 and c.nodes[0].nodes == 32 for c in rw.cells)
    darts = sample_architecture(darts_like(cells=20, nodes=5), seed=0)
    assert darts.top.edges == tuple((i, i + 1) for i in range(19))
    assert [darts.stages.count(s) for s in range(3)] == [7, 6, 7]


def test_draw_writes_one_panel_per_level(tmp_path):
    import matplotlib.image

    path = tmp_path / "arch.png"
    sample_architecture(THETAS[1], seed=0).draw(path)
    assert matplotlib.image.imread(path).shape[1] > 3 * matplotlib.image.imread(path).shape[0] / 2


@pytest.mark.parametrize("field,value", [("g1_nodes", 2), ("g2_p", 1.5), ("g3_k", 1), ("g1_p", -0.1),
                                         ("g3_nodes", 3.5), ("stage_ratios", (0.5, 0.5, 0.5)),
                                         ("channel_ratios", (1.0, 2.0)), ("top", "ring")])
def test_bad_hyper_parameters_raise_naming_the_value(field, value):
    values = dict(g1_nodes=5, g1_k=4, g1_p=0.5, g2_nodes=4, g2_p=0.5, g3_nodes=5, g3_k=4, g3_p=0.5)
    values[field] = value
    with pytest.raises(ArgumentError, match=re.escape(f"jeq.nas.HParams({field}={value!r}): must")):
        HParams(**values)


def test_search_space_is_the_released_one():
    assert HNAG_SPACE == {"g1_nodes": (int, 3, 10), "g1_k": (int, 2, 5), "g1_p": (float, 0.1, 1.0),
                          "g2_nodes": (int, 3, 10), "g2_p": (float, 0.2, 1.0), "g3_nodes": (int, 3, 10),
                          "g3_k": (int, 2, 5), "g3_p": (float, 0.1, 1.0)}
