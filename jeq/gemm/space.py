"""Configuration space of a tiled GEMM: ordered factorisations of each loop axis plus discrete kernel knobs.

Zhang, Cheng, Zang, Park, *Compiler-Level Matrix Multiplication Optimization for Deep Learning* (arXiv 1909.10616),
§3: a loop of extent ``d`` is split into ``parts`` nested loops whose extents multiply to ``d``,

    d = s_0 · s_1 · … · s_{parts-1},        s_i ∈ ℕ,

and a state of the search is the ordered factorisation of every axis. An *action* ``(axis, i, j, p)`` with ``p`` a prime
factor of the axis divides part ``i`` by ``p`` and multiplies part ``j`` by ``p``; it is legal iff ``p | s_i``. The
neighbours of a state are the states one legal action away; the reverse action ``(axis, j, i, p)`` undoes it, so the
neighbour relation is symmetric. The canonical start is ``[d, 1, …, 1]`` on every axis.

Representation (derived). Write ``d = ∏_p p^{a_p}``. An ordered factorisation of ``d`` into ``k`` parts is, for every
prime ``p``, a composition of ``a_p`` into ``k`` non-negative parts (the exponents of ``p`` in each part), so

    #factorisations(d, k) = ∏_p C(a_p + k − 1, k − 1)                                  (stars and bars)

e.g. 512 into 4 parts: C(12, 3) = 220; 1024 into 4: 286; 1024 into 3: 66; 220·286·66 ≈ 4.15M for 512×1024×1024.
A configuration is stored as an integer *genome*: the exponent of every prime in every part (one block of ``k``
entries per axis and prime) followed by one index per knob. A prime move adds ``+1`` at ``(p, j)`` and ``-1`` at
``(p, i)``; a knob move adds ``±1`` to the knob's index. Every configuration also has a unique integer *index* in
``[0, size)`` (mixed radix over the composition ranks and knob indices), used for de-duplication, replay tables and
grid order. All batch methods act on arrays with a leading batch axis.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from jeq import validate

__all__ = ["Axis", "Knob", "Space", "isin_sorted", "prime_factors"]


class Axis(NamedTuple):
    """A loop axis of extent ``size`` split into ``parts`` nested loops (an ordered factorisation).

    >>> from jeq.gemm import Axis, Space
    >>> space = Space([Axis("m", 12, 2)])  # 12 = m0 * m1, in order
    >>> space.count()
    6
    >>> sorted(space.config(g)["m"] for g in space.genomes(range(6)))
    [(1, 12), (2, 6), (3, 4), (4, 3), (6, 2), (12, 1)]
    """

    name: str
    """Name of the axis, e.g. ``"m"``; it is the key of the axis in decoded configurations."""
    size: int
    """Extent of the loop (the product of all parts)."""
    parts: int
    """Number of nested loops the axis is split into."""


class Knob(NamedTuple):
    """A discrete kernel knob (e.g. ``num_warps``); neighbours move to the adjacent value in ``values``.

    >>> from jeq.gemm import Axis, Knob, Space
    >>> space = Space([Axis("m", 4, 2)], [Knob("num_warps", (2, 4, 8))])
    >>> space.count()  # 3 factorisations of 4 times 3 knob values
    9
    >>> space.config(space.genome_of({"m": (2, 2), "num_warps": 8}))
    {'m': (2, 2), 'num_warps': 8}
    """

    name: str
    """Name of the knob; its key in decoded configurations."""
    values: tuple
    """Allowed values, in the order that defines adjacency."""


Constraint = Callable[[Mapping[str, np.ndarray]], np.ndarray]
"""Validity predicate on a decoded batch: axis name -> (B, parts) ints, knob name -> (B,) values; returns (B,) bool."""


def prime_factors(n: int) -> dict[int, int]:
    """Prime factorisation ``n = ∏ p^a`` as ``{p: a}`` (empty for ``n = 1``)."""
    out: dict[int, int] = {}
    p = 2
    while p * p <= n:
        while n % p == 0:
            out[p] = out.get(p, 0) + 1
            n //= p
        p += 1
    if n > 1:
        out[n] = out.get(n, 0) + 1
    return out


def _compositions(total: int, parts: int) -> np.ndarray:
    """All compositions of ``total`` into ``parts`` non-negative integers, shape (C(total+parts-1, parts-1), parts)."""
    rows = []
    for bars in itertools.combinations(range(total + parts - 1), parts - 1):
        edges = (-1, *bars, total + parts - 1)
        rows.append([edges[i + 1] - edges[i] - 1 for i in range(parts)])
    return np.asarray(rows, dtype=np.int32).reshape(-1, parts)


class _Block(NamedTuple):
    axis: int
    prime: int
    exponent: int
    parts: int
    offset: int
    table: np.ndarray  # (count, parts) compositions
    codes: np.ndarray  # sorted base-(exponent+1) codes of the table rows
    order: np.ndarray  # rank of the composition with code codes[i]


class Space:
    """Ordered factorisations of the GEMM loop axes times discrete knobs, restricted by a validity constraint.

    Args:
        axes: the split loop axes (``Axis(name, size, parts)``).
        knobs: discrete knobs (``Knob(name, values)``).
        constraint: optional predicate on decoded batches (see :data:`Constraint`); configurations it rejects are
            never sampled, enumerated or returned as neighbours (e.g. shared memory, registers, threads per block).
        name: a label used in messages and cache keys.

    >>> import numpy as np
    >>> from jeq.gemm import Axis, Knob, Space
    >>> space = Space([Axis("m", 16, 2), Axis("n", 8, 2)], [Knob("w", (1, 2, 4))])
    >>> space.size, space.count()  # 5 * 4 * 3 configurations
    (60, 60)
    >>> genome = space.genome_of({"m": (4, 4), "n": (2, 4), "w": 2})
    >>> space.config(space.genomes(space.indices(genome[None]))[0])  # index <-> genome <-> config round trip
    {'m': (4, 4), 'n': (2, 4), 'w': 2}
    >>> neighbours, actions = space.neighbours(genome)  # one prime moved between parts, or a knob step
    >>> sorted(space.config(g)["m"] for g in neighbours)
    [(2, 8), (4, 4), (4, 4), (4, 4), (4, 4), (8, 2)]
    >>> small = Space([Axis("m", 16, 2)], constraint=lambda tiles: tiles["m"][:, 0] <= 4)  # a validity rule
    >>> small.count(), bool(small.valid(small.sample(np.random.default_rng(0), 3)).all())
    (3, True)
    """

    def __init__(
        self,
        axes: Sequence[Axis],
        knobs: Sequence[Knob] = (),
        *,
        constraint: Constraint | None = None,
        name: str = "space",
    ) -> None:
        axes = tuple(Axis(*a) for a in axes)
        knobs = tuple(Knob(k[0], tuple(k[1])) for k in knobs)
        where = "jeq.gemm.Space"
        names = [a.name for a in axes] + [k.name for k in knobs]
        if len(set(names)) != len(names):
            validate.fail(where, "axes/knobs", names, "names must be unique")
        if not names:
            validate.fail(where, "axes", axes, "must hold at least one axis, or knobs at least one knob")
        for a in axes:
            validate.integer(where, f"axis {a.name!r} size", a.size, low=1)
            validate.integer(where, f"axis {a.name!r} parts", a.parts, low=1)
        for k in knobs:
            if not k.values or len(set(k.values)) != len(k.values):
                validate.fail(where, f"knob {k.name!r} values", k.values, "must be non-empty and unique")
        self.axes = axes
        self.knobs = knobs
        self.constraint = constraint
        self.name = name

        blocks: list[_Block] = []
        offset = 0
        for ai, a in enumerate(axes):
            for p, e in sorted(prime_factors(int(a.size)).items()):
                table = _compositions(e, a.parts)
                codes = table.astype(np.int64) @ (np.int64(e + 1) ** np.arange(a.parts, dtype=np.int64))
                order = np.argsort(codes)
                blocks.append(_Block(ai, p, e, a.parts, offset, table, codes[order], order))
                offset += a.parts
        self._blocks = tuple(blocks)
        self._knob_offset = offset
        self.genome_length = offset + len(knobs)
        radices = [len(b.table) for b in blocks] + [len(k.values) for k in knobs]
        self._radices = np.asarray(radices, dtype=np.int64)
        self.size = math.prod(radices)
        """Number of configurations before the constraint (closed form: ∏ C(a_p + k − 1, k − 1) · ∏ |knob|)."""
        if self.size >= 2**62:
            validate.fail(where, "axes/knobs", names, f"{self.size} configurations do not fit an int64 index")
        strides = np.ones(len(radices), dtype=np.int64)
        for i in range(len(radices) - 2, -1, -1):
            strides[i] = strides[i + 1] * radices[i + 1]
        self._strides = strides
        self._radices.setflags(write=False)
        self._strides.setflags(write=False)

        moves, labels = [], []
        for b in blocks:
            for i in range(b.parts):
                for j in range(b.parts):
                    if i != j:
                        d = np.zeros(self.genome_length, dtype=np.int32)
                        d[b.offset + i] -= 1
                        d[b.offset + j] += 1
                        moves.append(d)
                        labels.append((axes[b.axis].name, i, j, b.prime))
        for ki, k in enumerate(knobs):
            if len(k.values) > 1:
                for s in (-1, 1):
                    d = np.zeros(self.genome_length, dtype=np.int32)
                    d[self._knob_offset + ki] = s
                    moves.append(d)
                    labels.append((k.name, s))
        self.moves = np.asarray(moves, dtype=np.int32).reshape(len(moves), self.genome_length)
        """(num_actions, genome_length) genome deltas, one per action (prime moves, then knob ±1 moves)."""
        self.action_labels = tuple(labels)
        """Readable action names: ``(axis, i, j, prime)`` or ``(knob, ±1)``."""
        self._knob_sizes = np.asarray([len(k.values) for k in knobs], dtype=np.int32)
        self._primes = np.asarray([b.prime for b in blocks], dtype=np.int64)

    # ------------------------------------------------------------------ sizes
    @property
    def num_actions(self) -> int:
        """Number of actions (rows of :attr:`moves`)."""
        return int(self.moves.shape[0])

    @property
    def num_features(self) -> int:
        """Length of :meth:`features` vectors: one per axis part plus one per knob."""
        return sum(a.parts for a in self.axes) + len(self.knobs)

    def count(self) -> int:
        """Number of valid configurations (enumerates the space in chunks when there is a constraint)."""
        if self.constraint is None:
            return self.size
        return sum(len(idx) for idx, _ in self.enumerate())

    def __repr__(self) -> str:
        axes = ", ".join(f"{a.name}={a.size}/{a.parts}" for a in self.axes)
        knobs = ", ".join(f"{k.name}={list(k.values)}" for k in self.knobs)
        return f"Space({self.name}: {axes}{'; ' + knobs if knobs else ''}; size {self.size})"

    # ------------------------------------------------------- index <-> genome
    @property
    def radices(self) -> np.ndarray:
        """(D,) read-only: how many values each *gene* takes. A gene is one digit of the mixed-radix configuration
        index: the rank of the composition of one (axis, prime) block, in block order, then the index of each knob."""
        return self._radices

    @property
    def strides(self) -> np.ndarray:
        """(D,) read-only place values of the genes: ``index = Σ_j digit_j · strides_j``."""
        return self._strides

    def _index_digits(self, idx: np.ndarray) -> np.ndarray:
        return (idx[:, None] // self._strides[None, :]) % self._radices[None, :]

    def digits(self, genomes: Any) -> np.ndarray:
        """Genes of genomes: (B, genome_length) -> (B, D) int64 index digits (``digit_j < radices_j``)."""
        return self._index_digits(self.indices(genomes))

    def from_digits(self, digits: Any) -> np.ndarray:
        """Genomes of genes: (B, D) index digits -> (B, genome_length) int32 (inverse of :meth:`digits`)."""
        return self.genomes(np.asarray(digits, dtype=np.int64) @ self._strides)

    def genomes(self, indices: Any) -> np.ndarray:
        """Genomes of configuration indices: (B,) int -> (B, genome_length) int32 (batched unrank)."""
        idx = validate.array("jeq.gemm.Space.genomes", "indices", np.asarray(indices, dtype=np.int64), ndim=1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.size):
            validate.fail("jeq.gemm.Space.genomes", "indices", idx, f"must lie in [0, {self.size})")
        digits = self._index_digits(idx)
        out = np.empty((idx.size, self.genome_length), dtype=np.int32)
        for bi, b in enumerate(self._blocks):
            out[:, b.offset : b.offset + b.parts] = b.table[digits[:, bi]]
        nb = len(self._blocks)
        out[:, self._knob_offset :] = digits[:, nb:]
        return out

    def indices(self, genomes: Any) -> np.ndarray:
        """Indices of genomes: (B, genome_length) -> (B,) int64 (batched rank; inverse of :meth:`genomes`)."""
        g = self._check_genomes(genomes, "indices")
        digits = np.empty((g.shape[0], len(self._radices)), dtype=np.int64)
        for bi, b in enumerate(self._blocks):
            part = g[:, b.offset : b.offset + b.parts].astype(np.int64)
            if part.size and (part.min() < 0 or (part.sum(axis=1) != b.exponent).any()):
                validate.fail("jeq.gemm.Space.indices", "genomes", g.tolist() if g.size <= 64 else g.shape,
                              f"the exponents of prime {b.prime} on axis {self.axes[b.axis].name!r} "
                              f"must be >= 0 and sum to {b.exponent}")
            code = part @ (np.int64(b.exponent + 1) ** np.arange(b.parts, dtype=np.int64))
            digits[:, bi] = b.order[np.searchsorted(b.codes, code)]
        nb = len(self._blocks)
        kn = g[:, self._knob_offset :].astype(np.int64)
        if kn.size and (kn.min() < 0 or (kn >= self._knob_sizes[None, :]).any()):
            validate.fail("jeq.gemm.Space.indices", "genomes", g.tolist() if g.size <= 64 else g.shape,
                          f"knob indices must lie in [0, {self._knob_sizes.tolist()})")
        digits[:, nb:] = kn
        return digits @ self._strides

    def _check_genomes(self, genomes: Any, where: str) -> np.ndarray:
        g = validate.array(f"jeq.gemm.Space.{where}", "genomes", np.asarray(genomes), shape=(None, self.genome_length))
        return g.astype(np.int32, copy=False)

    # --------------------------------------------------------------- decoding
    def decode(self, genomes: Any) -> dict[str, np.ndarray]:
        """Decoded batch: axis name -> (B, parts) int64 part extents; knob name -> (B,) knob values."""
        g = self._check_genomes(genomes, "decode")
        out: dict[str, np.ndarray] = {
            a.name: np.ones((g.shape[0], a.parts), dtype=np.int64) for a in self.axes
        }
        for b in self._blocks:
            out[self.axes[b.axis].name] *= np.int64(b.prime) ** g[:, b.offset : b.offset + b.parts].astype(np.int64)
        for ki, k in enumerate(self.knobs):
            out[k.name] = np.asarray(k.values)[g[:, self._knob_offset + ki]]
        return out

    def valid(self, genomes: Any) -> np.ndarray:
        """(B,) bool: which genomes satisfy the constraint (all of them when there is none)."""
        g = self._check_genomes(genomes, "valid")
        if self.constraint is None or g.shape[0] == 0:
            return np.ones(g.shape[0], dtype=bool)
        return np.asarray(self.constraint(self.decode(g)), dtype=bool).reshape(g.shape[0])

    def config(self, genome: Any) -> dict[str, Any]:
        """One genome (or index) as a plain dict: axis -> tuple of part extents, knob -> value."""
        g = np.asarray(genome)
        if g.ndim == 0:
            g = self.genomes(g[None])[0]
        dec = self.decode(g[None])
        return {
            name: (tuple(int(v) for v in val[0]) if val.ndim == 2 else val[0].item())
            for name, val in dec.items()
        }

    def genome_of(self, config: Mapping[str, Any]) -> np.ndarray:
        """Inverse of :meth:`config`: a dict of part tuples and knob values -> (genome_length,) int32."""
        g = np.zeros(self.genome_length, dtype=np.int32)
        for ai, a in enumerate(self.axes):
            if a.name not in config:
                validate.fail("jeq.gemm.Space.genome_of", "config", dict(config), f"must have the axis {a.name!r}")
            parts = tuple(int(v) for v in config[a.name])
            if len(parts) != a.parts or math.prod(parts) != a.size or min(parts) < 1:
                validate.fail("jeq.gemm.Space.genome_of", a.name, parts,
                              f"must be {a.parts} positive ints with product {a.size}")
            for b in self._blocks:
                if b.axis == ai:
                    for i, v in enumerate(parts):
                        while v % b.prime == 0:
                            g[b.offset + i] += 1
                            v //= b.prime
        for ki, k in enumerate(self.knobs):
            if k.name not in config or config[k.name] not in k.values:
                validate.fail("jeq.gemm.Space.genome_of", k.name, config.get(k.name),
                              f"must be one of {list(k.values)}")
            g[self._knob_offset + ki] = k.values.index(config[k.name])
        return g

    # --------------------------------------------------------------- features
    def features(self, genomes: Any) -> np.ndarray:
        """Feature vectors (B, num_features) float32 in [-0.5, 0.5].

        Axis part ``s_i`` of an axis of size ``d``: ``log(s_i)/log(d) − 0.5`` (NNI uses ``s_i/d − 0.5``, which maps
        every part below d/16 to ≈ −0.5; the log keeps all tile sizes apart). Knob with index ``j`` of ``n`` values:
        ``j/(n−1) − 0.5``. Invertible by :meth:`from_features`.
        """
        dec = self.decode(genomes)
        cols = []
        for a in self.axes:
            v = dec[a.name].astype(np.float64)
            cols.append(np.log(v) / math.log(a.size) - 0.5 if a.size > 1 else np.zeros_like(v))
        g = np.asarray(genomes)
        for ki, k in enumerate(self.knobs):
            n = len(k.values)
            j = g[:, self._knob_offset + ki].astype(np.float64)
            cols.append((j / (n - 1) - 0.5 if n > 1 else np.zeros_like(j))[:, None])
        return np.concatenate(cols, axis=1).astype(np.float32)

    def from_features(self, features: Any) -> np.ndarray:
        """Genomes from :meth:`features` vectors (rounds to the nearest integer part / knob index)."""
        f = validate.array("jeq.gemm.Space.from_features", "features", np.asarray(features, dtype=np.float64),
                           shape=(None, self.num_features))
        g = np.zeros((f.shape[0], self.genome_length), dtype=np.int32)
        col = 0
        for ai, a in enumerate(self.axes):
            parts = np.rint(np.exp((f[:, col : col + a.parts] + 0.5) * math.log(a.size))).astype(np.int64)
            col += a.parts
            for b in self._blocks:
                if b.axis == ai:
                    v = parts.copy()
                    for _ in range(b.exponent):
                        div = (v % b.prime == 0) & (v > 1)
                        g[:, b.offset : b.offset + b.parts] += div
                        v = np.where(div, v // b.prime, v)
        for ki, k in enumerate(self.knobs):
            n = len(k.values)
            g[:, self._knob_offset + ki] = np.rint((f[:, col] + 0.5) * (n - 1)) if n > 1 else 0
            col += 1
        return g

    # -------------------------------------------------------------- neighbours
    def start(self) -> np.ndarray:
        """Canonical start ``[d, 1, …, 1]`` on every axis, first value of every knob: (genome_length,) int32."""
        g = np.zeros(self.genome_length, dtype=np.int32)
        for b in self._blocks:
            g[b.offset] = b.exponent
        return g

    def step(self, genomes: Any, actions: Any) -> tuple[np.ndarray, np.ndarray]:
        """Apply one action per genome (batched): returns (new genomes, legal). Illegal or invalid moves leave the
        genome unchanged (``legal`` False): a prime move needs ``p | s_i``; a knob move must stay in range; the
        result must satisfy the constraint."""
        g = self._check_genomes(genomes, "step")
        a = np.asarray(actions, dtype=np.int64).reshape(g.shape[0])
        if a.size and (a.min() < 0 or a.max() >= self.num_actions):
            validate.fail("jeq.gemm.Space.step", "actions", a, f"must lie in [0, {self.num_actions})")
        new = g + self.moves[a]
        legal = self._in_range(new)
        if legal.any():
            legal[legal] = self.valid(new[legal])
        return np.where(legal[:, None], new, g), legal

    def _in_range(self, g: np.ndarray) -> np.ndarray:
        ok = (g >= 0).all(axis=1)
        if self.knobs:
            ok &= (g[:, self._knob_offset :] < self._knob_sizes[None, :]).all(axis=1)
        return ok

    def legal_actions(self, genome: Any) -> np.ndarray:
        """(num_actions,) bool mask of the actions that are legal from one genome and lead to a valid configuration."""
        g = np.asarray(genome, dtype=np.int32).reshape(1, self.genome_length)
        new = g + self.moves
        ok = self._in_range(new)
        if ok.any():
            ok[ok] = self.valid(new[ok])
        return ok

    def neighbours(self, genome: Any) -> tuple[np.ndarray, np.ndarray]:
        """All valid neighbours of one genome: ((L, genome_length) genomes, (L,) action ids)."""
        g = np.asarray(genome, dtype=np.int32).reshape(self.genome_length)
        ok = self.legal_actions(g)
        acts = np.flatnonzero(ok)
        return g[None, :] + self.moves[acts], acts

    # ------------------------------------------------------ sample / enumerate
    def sample(self, rng: np.random.Generator, n: int, *, exclude: np.ndarray | None = None) -> np.ndarray:
        """Up to ``n`` distinct valid genomes drawn uniformly, avoiding the sorted index array ``exclude``.

        Rejection sampling on the index; when the valid unexcluded set is small it is enumerated instead. Returns
        fewer than ``n`` rows only when fewer valid configurations remain.
        """
        exclude = np.zeros(0, dtype=np.int64) if exclude is None else np.asarray(exclude, dtype=np.int64)
        chosen = np.zeros(0, dtype=np.int64)
        for _ in range(64):
            if chosen.size >= n:
                break
            draw = rng.integers(0, self.size, size=max(4 * (n - chosen.size), 16), dtype=np.int64)
            draw = draw[~isin_sorted(draw, exclude)]
            draw = draw[self.valid(self.genomes(draw))] if draw.size else draw
            _, first = np.unique(draw, return_index=True)
            draw = draw[np.sort(first)]
            draw = draw[~np.isin(draw, chosen)]
            chosen = np.concatenate([chosen, draw[: n - chosen.size]])
        if chosen.size < n:  # dense exclusion or a tight constraint: enumerate what is left
            rest = [idx[~isin_sorted(idx, exclude) & ~np.isin(idx, chosen)] for idx, _ in self.enumerate()]
            rest = np.concatenate(rest) if rest else np.zeros(0, dtype=np.int64)
            if rest.size:
                chosen = np.concatenate([chosen, rng.choice(rest, size=min(n - chosen.size, rest.size), replace=False)])
        return self.genomes(chosen)

    def enumerate(self, *, chunk: int = 1 << 18, valid_only: bool = True) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(indices, genomes)`` chunks over the space in index order (valid ones only by default)."""
        for lo in range(0, self.size, chunk):
            idx = np.arange(lo, min(lo + chunk, self.size), dtype=np.int64)
            g = self.genomes(idx)
            if valid_only and self.constraint is not None:
                ok = self.valid(g)
                idx, g = idx[ok], g[ok]
            yield idx, g


def isin_sorted(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """``values[i] ∈ sorted_set`` for every ``i`` (bool, shape of ``values``) by binary search, O(B log n).

    ``sorted_set`` must be sorted ascending (the ``visited`` arrays of the strategies are kept sorted with
    ``np.union1d``); ``np.isin`` gives the same answer but sorts the set on every call.
    """
    if sorted_set.size == 0:
        return np.zeros(values.shape, dtype=bool)
    pos = np.searchsorted(sorted_set, values)
    pos = np.minimum(pos, sorted_set.size - 1)
    return sorted_set[pos] == values
