"""Layered Hopfield network: parameters, the energy E and cost C, and the relaxation that descends F = E + beta C.

Network: layers 0 (input x, clamped), 1 .. L (L = output); ``W_l`` (n_l, n_{l+1}), bias ``b_{l+1}``. State
``s = (s_1, ..., s_L)``; rho = hard sigmoid clip(., 0, 1) (:func:`rho`).

    E(s) = 1/2 sum_l ||rho(s_l)||^2 - sum_l b_l . rho(s_l) - sum_l rho(s_l)^T W_l rho(s_{l+1})      (s_0 = x)
    C(s) = 1/2 ||s_L - y||^2,   F = E + beta C
    relaxation      s <- sigma(s - eps dF/ds)      (sigma = rho: projected gradient descent on the box)

With eps = 1 and sigma = :func:`scaled_sigmoid` the relaxation is Laborieux et al.'s primitive-function dynamics
s <- sigma(dPhi/ds), Phi = sum s_{l+1} . (W_l^T s_l + b_l) - beta L. The EP objective [E(s_hi) - E(s_lo)] / scale
(:func:`ep_objective`) lives here too because it shares the energy's precomputed input drive x W_0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jeq import validate

__all__ = [
    "HopfieldParams",
    "Phase",
    "State",
    "cost",
    "energy",
    "ep_objective",
    "free_phase",
    "init",
    "layer_sizes",
    "nudged_phase",
    "relax_energy",
    "rho",
    "scaled_sigmoid",
    "tree_all_finite",
    "zero_state",
]

State = tuple[jax.Array, ...]
"""A network state (s_1, ..., s_L), one array per non-input layer."""


class HopfieldParams(NamedTuple):
    """Parameters of a layered Hopfield network: the couplings W_l and biases b_{l+1} of
    E(s) = 1/2 sum_l ||rho(s_l)||^2 - sum_l b_l . rho(s_l) - sum_l rho(s_l)^T W_l rho(s_{l+1}).

    >>> import jax
    >>> from jeq import eqprop
    >>> from jeq.eqprop import hopfield
    >>> params = hopfield.init(jax.random.key(0), [4, 3, 2])
    >>> isinstance(params, eqprop.HopfieldParams), jax.tree.map(lambda leaf: leaf.shape, params)
    (True, HopfieldParams(weights=((4, 3), (3, 2)), biases=((3,), (2,))))
    """

    weights: tuple[jax.Array, ...]
    """W_l with shape (n_l, n_{l+1}) for l = 0 .. L-1; W_l[i, j] couples unit i of layer l to unit j of layer l+1."""
    biases: tuple[jax.Array, ...]
    """b_{l+1} with shape (n_{l+1},) for l = 0 .. L-1 (no bias on the clamped input layer)."""


@jax.custom_jvp
def rho(u: jax.Array) -> jax.Array:
    """rho(u) = clip(u, 0, 1), with derivative 1 on the closed interval [0, 1] (as Theano's clip), 0 outside.

    Scellier & Bengio's hard sigmoid (the array function; :func:`jeq.prox.hard_sigmoid` is the same clip as a prox
    operator, with JAX's default derivative). The closed interval matters: relaxed states sit exactly on 0 or 1, and
    there the energy gradient must keep its full (not half) weight so that saturated units can leave the boundary.

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq import eqprop
    >>> u = jnp.array([-0.5, 0.0, 0.5, 1.0, 1.5])
    >>> eqprop.rho(u).tolist(), jax.vmap(jax.grad(eqprop.rho))(u).tolist()
    ([0.0, 0.0, 0.5, 1.0, 1.0], [0.0, 1.0, 1.0, 1.0, 0.0])
    """
    return jnp.clip(u, 0.0, 1.0)


@rho.defjvp
def _rho_jvp(primals, tangents):
    (u,), (t,) = primals, tangents
    return rho(u), t * ((u >= 0) & (u <= 1)).astype(t.dtype)


def scaled_sigmoid(u: jax.Array) -> jax.Array:
    """Laborieux et al.'s ``my_sigmoid``: sigma(u) = 1 / (1 + exp(-4 (u - 1/2))).

    >>> import jax.numpy as jnp
    >>> from jeq import eqprop
    >>> [round(float(v), 4) for v in eqprop.scaled_sigmoid(jnp.array([0.0, 0.5, 1.0]))]
    [0.1192, 0.5, 0.8808]
    """
    return jax.nn.sigmoid(4.0 * (u - 0.5))


def tree_all_finite(tree) -> jax.Array:
    """AND over the leaves of all(isfinite(leaf)): a traced bool, False when ``tree`` holds a NaN/inf (usable in jit;
    :func:`jeq.validate.all_finite` is the host-side check that raises).

    >>> import jax.numpy as jnp
    >>> from jeq.eqprop import hopfield
    >>> bool(hopfield.tree_all_finite((jnp.ones(2), {"b": jnp.zeros(3)})))
    True
    >>> bool(hopfield.tree_all_finite((jnp.ones(2), jnp.array([0.0, jnp.nan]))))
    False
    """
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]))


def layer_sizes(params: HopfieldParams) -> list[int]:
    """[n_0, n_1, ..., n_L]: the layer widths, read off the weight shapes (W_l is (n_l, n_{l+1})).

    >>> import jax
    >>> from jeq.eqprop import hopfield
    >>> hopfield.layer_sizes(hopfield.init(jax.random.key(0), [4, 3, 2]))
    [4, 3, 2]
    """
    return [params.weights[0].shape[0]] + [w.shape[1] for w in params.weights]


def init(key: jax.Array, layer_sizes: Sequence[int], *, gain: float = 1.0, dtype=jnp.float32) -> HopfieldParams:
    """W_l, b_{l+1} ~ U(-gain / sqrt(n_l), gain / sqrt(n_l)) (PyTorch ``nn.Linear``'s default, as Laborieux et al.).

    ``layer_sizes`` = [n_0 (inputs), n_1, ..., n_L (outputs)], e.g. [784, 500, 10].

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq.eqprop import hopfield
    >>> params = hopfield.init(jax.random.key(0), [4, 3, 2])
    >>> [w.shape for w in params.weights], bool(jnp.all(jnp.abs(params.weights[0]) <= 1 / jnp.sqrt(4.0)))
    ([(4, 3), (3, 2)], True)
    """
    where = "jeq.eqprop.hopfield.init"
    sizes = list(layer_sizes)
    if len(sizes) < 2:
        validate.fail(where, "layer_sizes", layer_sizes, "must be >= 2 positive integers")
    for n in sizes:
        validate.integer(where, "layer_sizes", n, low=1)
    validate.positive(where, "gain", gain)
    keys = jax.random.split(key, 2 * (len(sizes) - 1))
    weights, biases = [], []
    for l in range(len(sizes) - 1):
        bound = gain / np.sqrt(sizes[l])
        weights.append(jax.random.uniform(keys[2 * l], (sizes[l], sizes[l + 1]), dtype, -bound, bound))
        biases.append(jax.random.uniform(keys[2 * l + 1], (sizes[l + 1],), dtype, -bound, bound))
    return HopfieldParams(tuple(weights), tuple(biases))


def zero_state(params: HopfieldParams) -> State:
    """s = (0, ..., 0): the all-zero state (s_1, ..., s_L) of one example (Scellier's and Laborieux's start).

    >>> import jax
    >>> from jeq.eqprop import hopfield
    >>> [s.tolist() for s in hopfield.zero_state(hopfield.init(jax.random.key(0), [4, 3, 2]))]
    [[0.0, 0.0, 0.0], [0.0, 0.0]]
    """
    return tuple(jnp.zeros(w.shape[1], w.dtype) for w in params.weights)


def _check_example(function: str, params: HopfieldParams, x, y=None, state=None) -> None:
    """One example's shapes against the layers (built on jeq.validate.array): x (n_0,), y (n_L,), s_l (n_l,)."""
    where = f"jeq.eqprop.hopfield.{function}"
    sizes = layer_sizes(params)
    validate.array(where, "x", x, shape=(sizes[0],))
    if y is not None:
        validate.array(where, "y", y, shape=(sizes[-1],))
    if state is not None:
        if len(state) != len(sizes) - 1:
            validate.fail(where, "state", tuple(np.shape(s) for s in state),
                          f"must hold one array per layer, shapes {[(n,) for n in sizes[1:]]}")
        for s, n in zip(state, sizes[1:]):
            validate.array(where, "state", s, shape=(n,))


def _energy(params: HopfieldParams, state: State, drive: jax.Array) -> jax.Array:
    """E with the input term precomputed: ``drive`` = x @ W_0 (constant during a relaxation)."""
    rhos = [rho(s) for s in state]
    e = 0.5 * sum(jnp.sum(r**2) for r in rhos) - sum(jnp.dot(b, r) for b, r in zip(params.biases, rhos))
    e = e - jnp.dot(drive, rhos[0])
    for w, lower, upper in zip(params.weights[1:], rhos[:-1], rhos[1:]):
        e = e - lower @ w @ upper
    return e


def energy(params: HopfieldParams, state: State, x: jax.Array) -> jax.Array:
    """E(s) = 1/2 sum_l ||rho(s_l)||^2 - sum_l b_l . rho(s_l) - sum_l rho(s_l)^T W_l rho(s_{l+1}),  s_0 = x.

    The Hopfield energy of one example (Scellier & Bengio 2017, their code's form).

    One hidden and one output unit, x = (1, 0), s = (0.4, 0.5): E = (0.16 + 0.25) / 2 - 0.1 * 0.4 - 0.5 * 0.4
    - 0.4 * 2 * 0.5 = -0.435.

    >>> import jax.numpy as jnp
    >>> from jeq import eqprop
    >>> params = eqprop.HopfieldParams(weights=(jnp.array([[0.5], [0.0]]), jnp.array([[2.0]])),
    ...                                biases=(jnp.array([0.1]), jnp.array([0.0])))
    >>> round(float(eqprop.energy(params, (jnp.array([0.4]), jnp.array([0.5])), jnp.array([1.0, 0.0]))), 4)
    -0.435
    """
    x = jnp.asarray(x)
    _check_example("energy", params, x, state=state)
    return _energy(params, state, x @ params.weights[0])


def cost(state: State, y: jax.Array) -> jax.Array:
    """C(s) = 1/2 ||s_L - y||^2 (squared error of the output layer, one example).

    >>> import jax.numpy as jnp
    >>> from jeq.eqprop import hopfield
    >>> float(hopfield.cost((jnp.array([0.3]), jnp.array([1.0, 0.5])), jnp.array([0.0, 0.5])))
    0.5
    """
    return 0.5 * jnp.sum((state[-1] - y) ** 2)


def ep_objective(params: HopfieldParams, low: State, high: State, x: jax.Array, scale: float | jax.Array) -> jax.Array:
    """[E(high) - E(low)] / scale, one example: its gradient in theta (states held fixed) is the EP estimate.

    One-sided EP takes (low, high, scale) = (s_0, s_beta, beta), centered EP (s_-beta, s_beta, 2 beta)
    (:func:`jeq.eqprop.hopfield.ep_phases` returns them). The input drive x W_0 is computed once and shared by both
    energies, so its cotangents add up before the one x^T g product. Not validated (it runs inside jitted steps).

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq import eqprop
    >>> from jeq.eqprop import hopfield
    >>> params = hopfield.init(jax.random.key(0), [4, 3, 2])
    >>> x, low = jnp.array([1.0, 0.0, 1.0, 0.5]), hopfield.zero_state(params)
    >>> high = (jnp.full(3, 0.5), jnp.full(2, 0.5))
    >>> difference = eqprop.energy(params, high, x) - eqprop.energy(params, low, x)
    >>> bool(jnp.allclose(hopfield.ep_objective(params, low, high, x, 0.5), difference / 0.5))
    True
    """
    drive = x @ params.weights[0]
    return (_energy(params, high, drive) - _energy(params, low, drive)) / scale


class Phase(NamedTuple):
    """Result of one relaxation s <- sigma(s - eps dF/ds), F = E + beta C (one example; leading batch axes when
    vmapped).

    >>> from jeq import eqprop
    >>> eqprop.Phase._fields
    ('state', 'energy', 'residual', 'finite')
    """

    state: State
    """Final state (s_1, ..., s_L)."""
    energy: jax.Array
    """(steps + 1,) total energy F = E + beta C along the relaxation, initial state first (a Lyapunov trace)."""
    residual: jax.Array
    """max_l ||s_l(T) - s_l(T-1)||_inf: the last step's change (~0 when the phase has converged)."""
    finite: jax.Array
    """False when the state contains NaN/inf."""


def relax_energy(
    params: HopfieldParams,
    state: State,
    x: jax.Array,
    y: jax.Array | None = None,
    *,
    beta: float | jax.Array = 0.0,
    steps: int,
    step_size: float = 0.5,
    activation: Callable[[jax.Array], jax.Array] = rho,
) -> Phase:
    """s <- activation(s - step_size * dF/ds), F = E + beta C, ``steps`` times (``lax.scan``), one example.

    The energy-based relaxation of a Hopfield network (the directed networks' vector-field dynamics is
    :func:`jeq.eqprop.relax_field`). With ``activation`` = :func:`rho` this is projected gradient descent on F over
    [0, 1]^n, so F is non-increasing when step_size < 2 / Lipschitz(dF/ds) (:func:`jeq.eqprop.energy_certificate`).
    ``step_size`` 0.5 is Scellier & Bengio's eps. Without ``y`` there is no cost term (free phase). Vmap over a batch.

    F = E + beta C never increases along the relaxation (a certified step size):

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq import eqprop
    >>> from jeq.eqprop import hopfield
    >>> params = hopfield.init(jax.random.key(0), [4, 3, 2])
    >>> bool(eqprop.energy_certificate(params, step_size=0.5, beta=0.5).certified)
    True
    >>> phase = hopfield.relax_energy(params, hopfield.zero_state(params), jnp.array([1.0, 0.0, 1.0, 0.5]),
    ...                               jnp.array([1.0, 0.0]), beta=0.5, steps=30)
    >>> phase.energy.shape, bool(jnp.all(jnp.diff(phase.energy) <= 1e-6)), bool(phase.finite)
    ((31,), True, True)
    """
    where = "jeq.eqprop.hopfield.relax_energy"
    validate.integer(where, "steps", steps, low=1)
    validate.positive(where, "step_size", step_size)
    x = jnp.asarray(x)
    state = tuple(jnp.asarray(s) for s in state)
    y = None if y is None else jnp.asarray(y, state[-1].dtype)
    _check_example("relax_energy", params, x, y, state)
    drive = x @ params.weights[0]

    def total(s):
        f = _energy(params, s, drive)
        return f if y is None else f + beta * cost(s, y)

    def step(s, _):
        f, g = jax.value_and_grad(total)(s)
        new = tuple(activation(si - step_size * gi) for si, gi in zip(s, g))
        change = jnp.max(jnp.stack([jnp.max(jnp.abs(a - b)) for a, b in zip(new, s)]))
        return new, (f, change)

    final, (energies, changes) = jax.lax.scan(step, state, None, length=steps)
    energies = jnp.concatenate([energies, total(final)[None]])
    return Phase(final, energies, changes[-1], tree_all_finite(final))


def free_phase(params: HopfieldParams, x: jax.Array, state: State | None = None, *, steps: int = 20,
               **dynamics) -> Phase:
    """s_0 = relaxation of E (beta = 0) for ``steps`` steps from ``state`` (zeros by default): the free phase.

    Defaults are Scellier & Bengio's net1: 20 steps of eps = 0.5. ``dynamics`` (``step_size``, ``activation``) are
    :func:`relax_energy`'s.

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq import eqprop
    >>> from jeq.eqprop import hopfield
    >>> params = hopfield.init(jax.random.key(0), [4, 3, 2])
    >>> phase = eqprop.free_phase(params, jnp.array([1.0, 0.0, 1.0, 0.5]), steps=100)
    >>> [s.shape for s in phase.state], float(phase.residual) < 1e-5  # converged
    ([(3,), (2,)], True)
    >>> bool(jnp.all(jnp.diff(phase.energy) <= 1e-6))  # E is a Lyapunov function of the relaxation
    True
    """
    state = zero_state(params) if state is None else state
    return relax_energy(params, state, x, steps=steps, **dynamics)


def nudged_phase(params: HopfieldParams, state: State, x: jax.Array, y: jax.Array, beta: float | jax.Array, *,
                 steps: int = 4, **dynamics) -> Phase:
    """s_beta = relaxation of F = E + beta C from ``state`` (usually the free state s_0): the nudged phase.

    Default: Scellier & Bengio's net1, 4 steps; ``dynamics`` (``step_size``, ``activation``) are
    :func:`relax_energy`'s.

    Nudging moves the output towards y, lowering the cost C:

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq import eqprop
    >>> from jeq.eqprop import hopfield
    >>> params = hopfield.init(jax.random.key(0), [4, 3, 2])
    >>> x, y = jnp.array([1.0, 0.0, 1.0, 0.5]), jnp.array([1.0, 0.0])
    >>> free = eqprop.free_phase(params, x, steps=100)
    >>> nudged = eqprop.nudged_phase(params, free.state, x, y, 0.5, steps=20)
    >>> bool(hopfield.cost(nudged.state, y) < hopfield.cost(free.state, y))
    True
    """
    return relax_energy(params, state, x, y, beta=beta, steps=steps, **dynamics)
