"""Configuration space: closed-form counts, valid and symmetric neighbours, round-tripping codecs (paper §3)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jeq.gemm import Axis, Knob, Space, tvm_gemm_space
from jeq.gemm.space import prime_factors


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def brute_force_factorisations(n: int, parts: int) -> list[tuple[int, ...]]:
    """Every ordered factorisation of n into `parts` factors, by exhaustive search over divisors."""
    if parts == 1:
        return [(n,)]
    return [(d, *rest) for d in divisors(n) for rest in brute_force_factorisations(n // d, parts - 1)]


def closed_form(n: int, parts: int) -> int:
    return math.prod(math.comb(a + parts - 1, parts - 1) for a in prime_factors(n).values())


@pytest.mark.parametrize("n,parts", [(1, 3), (7, 2), (12, 3), (18, 2), (64, 4), (360, 3), (1024, 3)])
def test_count_matches_closed_form_and_brute_force(n, parts):
    space = Space([Axis("a", n, parts)])
    assert space.size == closed_form(n, parts) == len(brute_force_factorisations(n, parts))
    configs = {space.config(i)["a"] for i in range(space.size)}
    assert configs == set(brute_force_factorisations(n, parts))


def test_paper_space_size_512x1024x1024():
    """Spec §2: 220 · 286 · 66 ≈ 4.15M ordered factorisations of the TVM GEMM template."""
    space = tvm_gemm_space(512, 1024, 1024, prune=False)
    assert space.size == 220 * 286 * 66 == 4_152_720
    assert space.num_actions == 12 + 12 + 6  # (i, j) pairs per axis, one prime (2)


def small_space() -> Space:
    return Space(
        [Axis("m", 12, 3), Axis("k", 18, 2)],
        [Knob("w", (1, 2, 4))],
        constraint=lambda t: (t["m"][:, 0] <= 6) & ~((t["w"] == 4) & (t["k"][:, 1] == 1)),
    )


def test_constrained_count_matches_filter():
    space = small_space()
    brute = 0
    for m in brute_force_factorisations(12, 3):
        for k in brute_force_factorisations(18, 2):
            for w in (1, 2, 4):
                brute += m[0] <= 6 and not (w == 4 and k[1] == 1)
    assert space.size == closed_form(12, 3) * closed_form(18, 2) * 3
    assert space.count() == brute
    idx = np.concatenate([i for i, _ in space.enumerate(chunk=7)])
    assert len(set(idx.tolist())) == idx.size == brute


def test_codecs_round_trip_on_whole_space():
    space = small_space()
    idx = np.arange(space.size)
    g = space.genomes(idx)
    np.testing.assert_array_equal(space.indices(g), idx)
    np.testing.assert_array_equal(space.from_features(space.features(g)), g)
    for i in range(0, space.size, 17):
        assert space.indices(space.genome_of(space.config(g[i]))[None])[0] == i
    genes = space.digits(g)  # the genetic algorithm's genes: the mixed-radix digits of the index
    assert genes.shape == (space.size, space.radices.size) and (genes < space.radices).all() and (genes >= 0).all()
    np.testing.assert_array_equal(genes @ space.strides, idx)
    np.testing.assert_array_equal(space.from_digits(genes), g)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 4_152_719))
def test_neighbours_valid_symmetric_one_prime_move(index):
    space = tvm_gemm_space(512, 1024, 1024, prune=False)
    g = space.genomes([index])[0]
    here = space.config(g)
    neighbours, actions = space.neighbours(g)
    assert neighbours.shape[0] == space.legal_actions(g).sum() > 0
    for nb, a in zip(neighbours, actions):
        there = space.config(nb)
        for axis in ("m", "n", "k"):
            assert math.prod(there[axis]) == math.prod(here[axis])  # divisibility kept
        changed = [(axis, i) for axis in ("m", "n", "k") for i in range(len(here[axis])) if here[axis][i] != there[axis][i]]
        axis, i, j, p = space.action_labels[a]
        assert sorted(changed) == sorted([(axis, i), (axis, j)])
        assert there[axis][i] * p == here[axis][i] and there[axis][j] == here[axis][j] * p
        back, _ = space.neighbours(nb)
        assert (back == g).all(axis=1).any()  # symmetric


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10**9))
def test_pruned_neighbours_satisfy_constraint(seed):
    space = tvm_gemm_space(256, 512, 512, prune=True)
    g = space.sample(np.random.default_rng(seed), 1)[0]
    neighbours, _ = space.neighbours(g)
    assert space.valid(neighbours).all()
    for nb in neighbours:
        assert (space.neighbours(nb)[0] == g).all(axis=1).any()


def test_features_round_trip_and_range():
    space = tvm_gemm_space(512, 1024, 1024, prune=False)
    g = space.genomes(np.arange(0, space.size, 9973))
    f = space.features(g)
    assert f.shape == (g.shape[0], 11) and f.min() >= -0.5 and f.max() <= 0.5
    np.testing.assert_array_equal(space.from_features(f), g)


def test_step_leaves_illegal_moves_unchanged():
    space = small_space()
    start = space.start()  # m = [12, 1, 1], k = [18, 1], w = 1
    moves = np.arange(space.num_actions)
    new, legal = space.step(np.repeat(start[None], moves.size, 0), moves)
    np.testing.assert_array_equal(new[~legal], np.repeat(start[None], (~legal).sum(), 0))
    assert legal.sum() == space.legal_actions(start).sum()
    # the start has m[0] = 12 > 6: it violates the constraint, and so do moves that keep m[0] = 12
    assert not space.valid(start[None])[0]


def test_sample_distinct_valid_and_excluding():
    space = small_space()
    rng = np.random.default_rng(0)
    first = space.sample(rng, 50)
    idx = space.indices(first)
    assert len(set(idx.tolist())) == 50 and space.valid(first).all()
    rest = space.sample(rng, 10_000, exclude=np.sort(idx))
    assert rest.shape[0] == space.count() - 50  # exhausts exactly the remainder
    assert not set(space.indices(rest).tolist()) & set(idx.tolist())


def test_bad_input_errors():
    with pytest.raises(ValueError, match="names must be unique"):
        Space([Axis("m", 4, 2), Axis("m", 4, 2)])
    with pytest.raises(ValueError, match=r"size=0.*must be an int >= 1"):
        Space([Axis("m", 0, 2)])
    with pytest.raises(ValueError, match="must be non-empty and unique"):
        Space([Axis("m", 4, 2)], [Knob("w", ())])
    space = small_space()
    with pytest.raises(ValueError, match=r"genome_of\(m=\(2, 2, 2\)\)"):
        space.genome_of({"m": (2, 2, 2), "k": (18, 1), "w": 1})
    with pytest.raises(ValueError, match=r"genome_of\(w=3\)"):
        space.genome_of({"m": (1, 12, 1), "k": (18, 1), "w": 3})
    with pytest.raises(ValueError, match=r"Space.indices\(genomes\): must have shape \(\*, 11\), got shape \(3,\)"):
        space.indices(np.zeros(3))
    with pytest.raises(ValueError, match="must lie in"):
        space.genomes([space.size])
    with pytest.raises(ValueError, match=r"tvm_gemm_space\(m=0\)"):
        tvm_gemm_space(0, 4, 4)


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 200), min_size=1, max_size=3),
    parts=st.lists(st.integers(1, 4), min_size=3, max_size=3),
    knob=st.integers(1, 4),
    seed=st.integers(0, 10**6),
)
def test_random_spaces_round_trip_and_count(sizes, parts, knob, seed):
    axes = [Axis(f"a{i}", s, p) for i, (s, p) in enumerate(zip(sizes, parts))]
    space = Space(axes, [Knob("w", tuple(range(knob)))])
    assert space.size == math.prod(closed_form(a.size, a.parts) for a in axes) * knob
    idx = np.random.default_rng(seed).integers(0, space.size, 20)
    g = space.genomes(idx)
    np.testing.assert_array_equal(space.indices(g), idx)
    np.testing.assert_array_equal(space.from_features(space.features(g)), g)
    for a in axes:
        assert (np.prod(space.decode(g)[a.name], axis=1) == a.size).all()
