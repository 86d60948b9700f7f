"""Helpers for the Path-SGD tests: brute-force path enumeration, node rescaling of a ReLU RNN, and a chex variant
that must not retrace."""

from __future__ import annotations

import itertools

import chex
import numpy as np
import pytest

from jeq.pathsgd import RNNParams


def enumerate_rnn_paths(shapes: dict, length: int, head: str) -> list[list[tuple[str, tuple]]]:
    """Every input->output path of the unrolled RNN as its list of edges, each edge named by its weight.

    Sources are the inputs x_s[d] (edge w_in[j, d] into hidden j at time s) and the constant-1 unit (edge b[j]
    at time s, or c[k] straight to output k at time t). A path then follows recurrent edges w_rec[j', j] from
    time s to time t >= s and leaves through w_out[k, j_t]. Output times: t = T (many_to_one) or every t.
    """
    hidden, inputs = shapes["w_in"]
    outputs = shapes["w_out"][0]
    out_times = [length] if head == "many_to_one" else list(range(1, length + 1))
    paths = []
    for t in out_times:
        for k in range(outputs):
            paths.append([("c", (k,))])
        for s in range(1, t + 1):
            sources = [("w_in", d) for d in range(inputs)] + [("b", None)]
            for units in itertools.product(range(hidden), repeat=t - s + 1):
                for kind, d in sources:
                    first = ("w_in", (units[0], d)) if kind == "w_in" else ("b", (units[0],))
                    middle = [("w_rec", (units[i + 1], units[i])) for i in range(len(units) - 1)]
                    for k in range(outputs):
                        paths.append([first, *middle, ("w_out", (k, units[-1]))])
    return paths


def brute_force_terms(params: RNNParams, length: int, head: str):
    """gamma, kappa1 and kappa2 of the spec's path formulas, by explicit enumeration (float64 numpy)."""
    w = {name: np.asarray(p, np.float64) for name, p in zip(RNNParams._fields, params)}
    shapes = {name: v.shape for name, v in w.items()}
    kappa1 = {name: np.zeros_like(v) for name, v in w.items()}
    kappa2 = {name: np.zeros_like(v) for name, v in w.items()}
    total = 0.0
    for path in enumerate_rnn_paths(shapes, length, head):
        squares = [w[name][idx] ** 2 for name, idx in path]
        total += np.prod(squares)
        for a, (name, idx) in enumerate(path):
            kappa1[name][idx] += np.prod([sq for e, sq in enumerate(squares) if e != a])
            for b, edge_b in enumerate(path):
                if b != a and edge_b == (name, idx):
                    rest = np.prod([sq for e, sq in enumerate(squares) if e not in (a, b)])
                    kappa2[name][idx] += w[name][idx] ** 2 * rest
    as_params = lambda d: RNNParams(**d)  # noqa: E731
    return total, as_params(kappa1), as_params(kappa2)


def rescale_rnn(params: RNNParams, scales) -> RNNParams:
    """Node rescaling by D = diag(scales): incoming weights of hidden unit j times c_j, outgoing times 1/c_j."""
    c = np.asarray(scales)
    return RNNParams(
        w_in=params.w_in * c[:, None],
        w_rec=params.w_rec * c[:, None] / c[None, :],
        b=params.b * c,
        w_out=params.w_out / c[None, :],
        c=params.c,
    )


def rescale_factors(params: RNNParams, scales) -> RNNParams:
    """Per-weight factor a with rescale_rnn(w) = a * w."""
    ones = RNNParams(*(np.ones(np.shape(p)) for p in params))
    return rescale_rnn(ones, scales)


@pytest.fixture(scope="session")
def brute_force():
    return brute_force_terms


@pytest.fixture(scope="session")
def rescale():
    return rescale_rnn


@pytest.fixture(scope="session")
def rescale_factor():
    return rescale_factors


def traced_once_variant(test: chex.TestCase, fn, **jit_kwargs):
    """``test.variant(fn)``; in the jitted variant it must trace once however often it is called (no recompilation).

    chex counts traces per function source, so the counter is reset here: one such function per test.
    """
    if test.variant.type == chex.ChexVariantType.WITH_JIT:
        chex.clear_trace_counter()
        inner = fn

        def fn(*args, **kwargs):  # a plain function: assert_max_traces reads its source
            return inner(*args, **kwargs)

        fn = chex.assert_max_traces(fn, n=1)
    return test.variant(fn, **jit_kwargs)


@pytest.fixture(scope="session")
def traced_once():
    return traced_once_variant
