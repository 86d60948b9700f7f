"""Energy-based equilibrium propagation on layered Hopfield networks.

Classic EP (Scellier & Bengio 2017, Theano code bscellier/Towards-a-Biologically-Plausible-Backprop), random-sign
nudging, and centered / symmetric EP (Laborieux et al. 2021). Spec ``eqprop.md`` §5-§6.

Network: layers 0 (input x, clamped), 1 .. L (L = output); ``W_l`` (n_l, n_{l+1}), bias ``b_{l+1}``. State
``s = (s_1, ..., s_L)``; rho = hard sigmoid clip(., 0, 1).

    E(s) = 1/2 sum_l ||rho(s_l)||^2 - sum_l b_l . rho(s_l) - sum_l rho(s_l)^T W_l rho(s_{l+1})      (s_0 = x)
    C(s) = 1/2 ||s_L - y||^2,   F = E + beta C
    relaxation      s <- sigma(s - eps dF/ds)      (sigma = hard sigmoid: projected gradient descent on the box)
    EP gradient     g = [dE/dtheta(s_beta) - dE/dtheta(s_0)] / beta                -> dL/dtheta as beta -> 0
    centered EP     g = [dE/dtheta(s_{+beta}) - dE/dtheta(s_{-beta})] / (2 beta)   (error O(beta^2))

``g`` estimates the gradient of the loss L(theta) = C(s_0(theta)) at the free equilibrium, so it is a params-shaped
pytree that any optax transform applies (``optax.sgd`` gives theta <- theta - lr g, i.e. Scellier's
dW ~ (1/beta)[(rho_i rho_j)^beta - (rho_i rho_j)^0]). With eps = 1 and sigma = :func:`scaled_sigmoid` the relaxation
is Laborieux et al.'s primitive-function dynamics s <- sigma(dPhi/ds), Phi = sum s_{l+1} . (W_l^T s_l + b_l) - beta L.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jeq.eqprop.directed import _check_positive, _check_positive_int

__all__ = [
    "EPInfo",
    "EPTrainer",
    "EnergyCertificate",
    "HopfieldParams",
    "Phase",
    "StepMetrics",
    "cost",
    "energy",
    "energy_certificate",
    "ep_trainer",
    "eqprop_grad",
    "free_phase",
    "hard_sigmoid",
    "init",
    "layer_sgd",
    "nudged_phase",
    "relax",
    "scaled_sigmoid",
    "zero_state",
]

State = tuple[jax.Array, ...]


class HopfieldParams(NamedTuple):
    """Parameters of a layered Hopfield network."""

    weights: tuple[jax.Array, ...]
    """W_l with shape (n_l, n_{l+1}) for l = 0 .. L-1; W_l[i, j] couples unit i of layer l to unit j of layer l+1."""
    biases: tuple[jax.Array, ...]
    """b_{l+1} with shape (n_{l+1},) for l = 0 .. L-1 (no bias on the clamped input layer)."""


@jax.custom_jvp
def hard_sigmoid(u: jax.Array) -> jax.Array:
    """rho(u) = clip(u, 0, 1), with derivative 1 on the closed interval [0, 1] (as Theano's clip), 0 outside.

    The closed interval matters: relaxed states sit exactly on 0 or 1, and there the energy gradient must keep its
    full (not half) weight so that saturated units can leave the boundary.
    """
    return jnp.clip(u, 0.0, 1.0)


@hard_sigmoid.defjvp
def _hard_sigmoid_jvp(primals, tangents):
    (u,), (t,) = primals, tangents
    return hard_sigmoid(u), t * ((u >= 0) & (u <= 1)).astype(t.dtype)


def scaled_sigmoid(u: jax.Array) -> jax.Array:
    """Laborieux et al.'s ``my_sigmoid``: sigma(u) = 1 / (1 + exp(-4 (u - 1/2)))."""
    return jax.nn.sigmoid(4.0 * (u - 0.5))


def _all_finite(tree) -> jax.Array:
    """True when every leaf of ``tree`` is free of NaN/inf."""
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]))


def _sizes(params: HopfieldParams) -> list[int]:
    return [params.weights[0].shape[0]] + [w.shape[1] for w in params.weights]


def init(key: jax.Array, layer_sizes: Sequence[int], *, gain: float = 1.0, dtype=jnp.float32) -> HopfieldParams:
    """W_l, b_{l+1} ~ U(-gain / sqrt(n_l), gain / sqrt(n_l)) (PyTorch ``nn.Linear``'s default, as Laborieux et al.).

    ``layer_sizes`` = [n_0 (inputs), n_1, ..., n_L (outputs)], e.g. [784, 500, 10].
    """
    sizes = list(layer_sizes)
    if len(sizes) < 2 or any(isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1 for n in sizes):
        raise ValueError(f"jeq.eqprop.hopfield.init(layer_sizes={layer_sizes!r}): must be >= 2 positive integers")
    _check_positive("hopfield.init", "gain", gain)
    keys = jax.random.split(key, 2 * (len(sizes) - 1))
    weights, biases = [], []
    for l in range(len(sizes) - 1):
        bound = gain / np.sqrt(sizes[l])
        weights.append(jax.random.uniform(keys[2 * l], (sizes[l], sizes[l + 1]), dtype, -bound, bound))
        biases.append(jax.random.uniform(keys[2 * l + 1], (sizes[l + 1],), dtype, -bound, bound))
    return HopfieldParams(tuple(weights), tuple(biases))


def zero_state(params: HopfieldParams) -> State:
    """The all-zero state (s_1, ..., s_L) of one example (Scellier's and Laborieux's initialisation)."""
    return tuple(jnp.zeros(w.shape[1], w.dtype) for w in params.weights)


def _check_example(function: str, params: HopfieldParams, x, y=None, state=None) -> None:
    sizes = _sizes(params)
    if x.shape != (sizes[0],):
        raise ValueError(f"jeq.eqprop.hopfield.{function}(x): shape {x.shape} does not match the input layer; "
                         f"expected ({sizes[0]},) per example (vmap over a batch)")
    if y is not None and y.shape != (sizes[-1],):
        raise ValueError(f"jeq.eqprop.hopfield.{function}(y): shape {y.shape} does not match the output layer; "
                         f"expected ({sizes[-1]},)")
    if state is not None:
        shapes = tuple(s.shape for s in state)
        expected = tuple((n,) for n in sizes[1:])
        if shapes != expected:
            raise ValueError(f"jeq.eqprop.hopfield.{function}(state): shapes {shapes} do not match the layers "
                             f"{expected}")


def _energy(params: HopfieldParams, state: State, drive: jax.Array) -> jax.Array:
    """E with the input term precomputed: ``drive`` = x @ W_0 (constant during a relaxation)."""
    rho = [hard_sigmoid(s) for s in state]
    e = 0.5 * sum(jnp.sum(r**2) for r in rho) - sum(jnp.dot(b, r) for b, r in zip(params.biases, rho))
    e = e - jnp.dot(drive, rho[0])
    for w, lower, upper in zip(params.weights[1:], rho[:-1], rho[1:]):
        e = e - lower @ w @ upper
    return e


def energy(params: HopfieldParams, state: State, x: jax.Array) -> jax.Array:
    """Hopfield energy of one example (Scellier & Bengio 2017, their code's form):

        E(s) = 1/2 sum_l ||rho(s_l)||^2 - sum_l b_l . rho(s_l) - sum_l rho(s_l)^T W_l rho(s_{l+1}),  s_0 = x.
    """
    x = jnp.asarray(x)
    _check_example("energy", params, x, state=state)
    return _energy(params, state, x @ params.weights[0])


def cost(state: State, y: jax.Array) -> jax.Array:
    """C(s) = 1/2 ||s_L - y||^2 (squared error of the output layer, one example)."""
    return 0.5 * jnp.sum((state[-1] - y) ** 2)


class Phase(NamedTuple):
    """Result of one relaxation (one example; leading batch axes when vmapped)."""

    state: State
    """Final state (s_1, ..., s_L)."""
    energy: jax.Array
    """(steps + 1,) total energy F = E + beta C along the relaxation, initial state first (a Lyapunov trace)."""
    residual: jax.Array
    """max_l ||s_l(T) - s_l(T-1)||_inf: the last step's change (~0 when the phase has converged)."""
    finite: jax.Array
    """False when the state contains NaN/inf."""


def relax(
    params: HopfieldParams,
    state: State,
    x: jax.Array,
    y: jax.Array | None = None,
    *,
    beta: float | jax.Array = 0.0,
    steps: int,
    step_size: float,
    activation: Callable[[jax.Array], jax.Array] = hard_sigmoid,
) -> Phase:
    """Relax one example: s <- activation(s - step_size * dF/ds), F = E + beta C, ``steps`` times (``lax.scan``).

    With the hard sigmoid this is projected gradient descent on F over [0, 1]^n, so F is non-increasing when
    step_size < 2 / Lipschitz(dF/ds) (:func:`energy_certificate`). Vmap over a batch.
    """
    _check_positive_int("hopfield.relax", "steps", steps)
    _check_positive("hopfield.relax", "step_size", step_size)
    x = jnp.asarray(x)
    state = tuple(jnp.asarray(s) for s in state)
    y = None if y is None else jnp.asarray(y, state[-1].dtype)
    _check_example("relax", params, x, y, state)
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
    finite = _all_finite(final)
    return Phase(final, energies, changes[-1], finite)


def free_phase(
    params: HopfieldParams,
    x: jax.Array,
    state: State | None = None,
    *,
    steps: int = 20,
    step_size: float = 0.5,
    activation: Callable[[jax.Array], jax.Array] = hard_sigmoid,
) -> Phase:
    """Free phase (beta = 0) of one example from ``state`` (zeros by default): the energy minimum s_0.

    Defaults are Scellier & Bengio's net1: 20 steps of eps = 0.5.
    """
    state = zero_state(params) if state is None else state
    return relax(params, state, x, steps=steps, step_size=step_size, activation=activation)


def nudged_phase(
    params: HopfieldParams,
    state: State,
    x: jax.Array,
    y: jax.Array,
    beta: float | jax.Array,
    *,
    steps: int = 4,
    step_size: float = 0.5,
    activation: Callable[[jax.Array], jax.Array] = hard_sigmoid,
) -> Phase:
    """Nudged phase of one example: relax F = E + beta C from ``state`` (usually the free state) to s_beta."""
    return relax(params, state, x, y, beta=beta, steps=steps, step_size=step_size, activation=activation)


class EPInfo(NamedTuple):
    """Diagnostics of one EP gradient (one example)."""

    free_state: State
    """The free equilibrium s_0 (keep it as a persistent particle)."""
    loss: jax.Array
    """C(s_0) = 1/2 ||s_L - y||^2 at the free equilibrium."""
    free_residual: jax.Array
    """Last-step change of the free phase."""
    nudged_residual: jax.Array
    """Last-step change of the nudged phase(s) (max over the two phases of centered EP)."""
    finite: jax.Array
    """All states finite (and, from :func:`eqprop_grad`, the gradient too)."""


def _check_beta(function: str, beta) -> None:
    if isinstance(beta, (int, float, np.number)) and not isinstance(beta, bool) and beta == 0:
        raise ValueError(f"jeq.eqprop.hopfield.{function}(beta={beta!r}): must be != 0 (the EP estimate divides "
                         "by beta)")


def eqprop_grad(
    params: HopfieldParams,
    x: jax.Array,
    y: jax.Array,
    beta: float | jax.Array,
    *,
    free_steps: int = 20,
    nudged_steps: int = 4,
    step_size: float = 0.5,
    activation: Callable[[jax.Array], jax.Array] = hard_sigmoid,
    centered: bool = False,
    state: State | None = None,
) -> tuple[HopfieldParams, EPInfo]:
    """EP estimate of dL/dtheta, L = C(s_0(theta)), for one example (vmap and average over a batch).

        one-sided:  g = [dE/dtheta(s_beta) - dE/dtheta(s_0)] / beta          (Scellier & Bengio 2017)
        centered:   g = [dE/dtheta(s_beta) - dE/dtheta(s_-beta)] / (2 beta)  (Laborieux et al. 2021)

    The nudged phases start from the free equilibrium s_0 (itself relaxed from ``state``, zeros by default). The
    result has the shape of ``params``; apply it with any optax transform. ``beta`` may be negative (random sign)
    but not 0.
    """
    _check_beta("eqprop_grad", beta)
    x = jnp.asarray(x)
    y = jnp.asarray(y)
    phases = _ep_phases(params, x, y, beta, state, free_steps=free_steps, nudged_steps=nudged_steps,
                        step_size=step_size, activation=activation, centered=centered)
    low, high, info = phases
    scale = 2 * beta if centered else beta
    grads = jax.grad(_ep_objective)(params, low, high, x, scale)
    return grads, info._replace(finite=info.finite & _all_finite(grads))  # a traced beta = 0 shows up here


def _ep_phases(params, x, y, beta, state, *, free_steps, nudged_steps, step_size, activation, centered):
    """Free and nudged phases of one example: returns (low state, high state, EPInfo) of the EP difference."""
    kw = dict(step_size=step_size, activation=activation)
    free = free_phase(params, x, state, steps=free_steps, **kw)
    y = y.astype(free.state[-1].dtype)
    plus = nudged_phase(params, free.state, x, y, beta, steps=nudged_steps, **kw)
    if centered:
        minus = nudged_phase(params, free.state, x, y, -beta, steps=nudged_steps, **kw)
        low, residual = minus.state, jnp.maximum(plus.residual, minus.residual)
        finite = free.finite & plus.finite & minus.finite
    else:
        low, residual, finite = free.state, plus.residual, free.finite & plus.finite
    return low, plus.state, EPInfo(free.state, cost(free.state, y), free.residual, residual, finite)


def _ep_objective(params, low, high, x, scale):
    """[E(high) - E(low)] / scale: its gradient in theta is the EP estimate (states held fixed).

    The input drive x W_0 is shared by both energies, so its cotangents add up before the one x^T g product.
    """
    drive = x @ params.weights[0]
    return (_energy(params, high, drive) - _energy(params, low, drive)) / scale


class EnergyCertificate(NamedTuple):
    """Certificate that the energy is a Lyapunov function of the hard-sigmoid relaxation."""

    lipschitz: jax.Array
    """Lipschitz constant of dE/ds on the box: max |eig(I - S)|, S the symmetric layer-coupling matrix."""
    certified: jax.Array
    """step_size < 2 / (lipschitz + |beta|): F = E + beta C decreases at every step of projected gradient descent
    (beta = 0: the free phase's E)."""


def energy_certificate(params: HopfieldParams, *, step_size: float, beta: float = 0.0) -> EnergyCertificate:
    """Check that F = E + beta C is non-increasing along the hard-sigmoid relaxation with this ``step_size`` (derived).

    On [0, 1]^n, E is quadratic with Hessian I - S (S: symmetric, S[l, l+1] = W_l for hidden/output layers). Projected
    gradient descent with step eps satisfies F(s+) <= F(s) - (1/eps - L_F/2) ||s+ - s||^2, so eps < 2/L_F suffices.
    C = 1/2 ||s_L - y||^2 adds beta I to the output block of the Hessian, so L_F <= L + |beta|. ``beta = 0`` (the
    default) certifies the free phase; pass the nudging strength to certify a nudged phase too.
    """
    _check_positive("hopfield.energy_certificate", "step_size", step_size)
    if isinstance(beta, bool) or not isinstance(beta, (int, float, np.number)):
        raise ValueError(f"jeq.eqprop.hopfield.energy_certificate(beta={beta!r}): must be a real number")
    sizes = _sizes(params)[1:]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    n = int(offsets[-1])
    s = jnp.zeros((n, n), params.weights[0].dtype)
    for l, w in enumerate(params.weights[1:]):
        s = s.at[offsets[l]:offsets[l + 1], offsets[l + 1]:offsets[l + 2]].set(w)
    s = s + s.T
    lipschitz = jnp.max(jnp.abs(jnp.linalg.eigvalsh(jnp.eye(n, dtype=s.dtype) - s)))
    return EnergyCertificate(lipschitz, step_size < 2.0 / (lipschitz + abs(float(beta))))


def layer_sgd(learning_rates: Sequence[float], *, momentum: float | None = None) -> optax.GradientTransformation:
    """Per-layer SGD: W_l and b_{l+1} use ``learning_rates[l]`` (Scellier's alphas; Laborieux's ``--lrs``).

        theta_l <- theta_l - learning_rates[l] * g_l    (optionally with heavy-ball momentum)
    """
    rates = list(learning_rates)
    if not rates or any(isinstance(r, bool) or not isinstance(r, (int, float, np.number)) or not r > 0
                        for r in rates):
        raise ValueError(f"jeq.eqprop.hopfield.layer_sgd(learning_rates={learning_rates!r}): must be a non-empty "
                         "sequence of numbers > 0")

    def labels(params):
        if len(params.weights) != len(rates):
            raise ValueError(f"jeq.eqprop.hopfield.layer_sgd(learning_rates={learning_rates!r}): "
                             f"{len(rates)} rates for {len(params.weights)} layers")
        names = tuple(str(l) for l in range(len(rates)))
        return HopfieldParams(names, names)

    return optax.multi_transform({str(l): optax.sgd(r, momentum) for l, r in enumerate(rates)}, labels)


class StepMetrics(NamedTuple):
    """Metrics of one EP training step (weighted means over the batch)."""

    loss: jax.Array
    """Mean C(s_0) at the free equilibrium."""
    accuracy: jax.Array
    """Fraction of examples whose argmax output matches the argmax target."""
    free_residual: jax.Array
    """Max over the batch of the free phase's last-step change."""
    nudged_residual: jax.Array
    """Max over the batch of the nudged phase's last-step change."""
    beta: jax.Array
    """The (signed) beta used for this batch."""
    finite: jax.Array
    """False when a state or a parameter is NaN/inf (the caller must stop training)."""
    free_state: State
    """Batched free equilibria (persistent particles: feed them back as ``initial_state``)."""


class EPTrainer(NamedTuple):
    """Jitted EP training functions (see :func:`ep_trainer`)."""

    init: Callable
    """``init(params) -> opt_state``."""
    train_step: Callable
    """``train_step(params, opt_state, key, xb, yb, example_weights=None, initial_state=None)
    -> (params, opt_state, StepMetrics)``; params and opt_state buffers are donated."""
    train_epoch: Callable
    """``train_epoch(params, opt_state, key, xs, ys) -> (params, opt_state, StepMetrics stacked over batches)``:
    one ``lax.scan`` over xs (num_batches, B, n_0), ys (num_batches, B) or (num_batches, B, n_L); buffers donated."""
    predict: Callable
    """``predict(params, x) -> Phase`` (batched free phase from zeros; outputs are ``phase.state[-1]``)."""


NUDGINGS = ("positive", "random_sign", "centered")


def ep_trainer(
    optimizer: optax.GradientTransformation,
    *,
    beta: float,
    free_steps: int,
    nudged_steps: int,
    step_size: float = 0.5,
    activation: Callable[[jax.Array], jax.Array] = hard_sigmoid,
    nudging: str = "random_sign",
) -> EPTrainer:
    """Pure, jitted EP training step: vmapped :func:`eqprop_grad` over the batch, then ``optimizer``.

    ``nudging``: "positive" (one-sided +beta), "random_sign" (beta * (+-1) drawn per batch from ``key``, Scellier &
    Bengio's code) or "centered" (+-beta, Laborieux et al.). Integer labels (B,) are one-hot encoded to the output
    size; float targets (B, n_L) are used as they are. ``example_weights`` (B,) weight each example (0 for padding):
    g = sum_b w_b g_b / sum_b w_b. The step is a pure function of its arguments, so a data-parallel caller can wrap
    it with NamedSharding'd inputs unchanged.
    """
    if nudging not in NUDGINGS:
        raise ValueError(f"jeq.eqprop.hopfield.ep_trainer(nudging={nudging!r}): must be one of {NUDGINGS}")
    if isinstance(beta, bool) or not isinstance(beta, (int, float, np.number)) or not beta > 0:
        raise ValueError(f"jeq.eqprop.hopfield.ep_trainer(beta={beta!r}): must be a number > 0 (its sign is set "
                         "by nudging)")
    _check_positive_int("hopfield.ep_trainer", "free_steps", free_steps)
    _check_positive_int("hopfield.ep_trainer", "nudged_steps", nudged_steps)
    _check_positive("hopfield.ep_trainer", "step_size", step_size)
    kw = dict(free_steps=free_steps, nudged_steps=nudged_steps, step_size=step_size, activation=activation,
              centered=nudging == "centered")

    def targets(params, yb, batch):
        n_out = params.weights[-1].shape[1]
        if yb.ndim == 1 and jnp.issubdtype(yb.dtype, jnp.integer):
            yb = jax.nn.one_hot(yb, n_out, dtype=params.weights[0].dtype)
        if yb.shape != (batch, n_out):
            raise ValueError(f"jeq.eqprop.hopfield.train_step(yb): shape {yb.shape} does not match the batch "
                             f"{batch} and the output layer {n_out}; expected ({batch},) labels or ({batch}, {n_out})")
        return yb.astype(params.weights[0].dtype)

    def step(params, opt_state, key, xb, yb, example_weights=None, initial_state=None):
        xb = jnp.asarray(xb, params.weights[0].dtype)
        n_in = params.weights[0].shape[0]
        if xb.ndim != 2 or xb.shape[1] != n_in:
            raise ValueError(f"jeq.eqprop.hopfield.train_step(xb): shape {xb.shape} does not match the input layer; "
                             f"expected (batch, {n_in})")
        batch = xb.shape[0]
        yb = targets(params, jnp.asarray(yb), batch)
        w = jnp.ones(batch, xb.dtype) if example_weights is None else jnp.asarray(example_weights, xb.dtype)
        if w.shape != (batch,):
            raise ValueError(f"jeq.eqprop.hopfield.train_step(example_weights): shape {w.shape}, expected ({batch},)")
        signed = beta
        if nudging == "random_sign":
            signed = beta * jnp.where(jax.random.bernoulli(key), 1.0, -1.0).astype(xb.dtype)
        state_axis = None if initial_state is None else 0
        low, high, info = jax.vmap(
            lambda x, y, s: _ep_phases(params, x, y, signed, s, **kw), in_axes=(0, 0, state_axis)
        )(xb, yb, initial_state)
        total = jnp.maximum(jnp.sum(w), jnp.finfo(xb.dtype).tiny)
        scale = 2 * signed if nudging == "centered" else signed

        def batch_objective(p):
            per_example = jax.vmap(lambda lo, hi, x: _ep_objective(p, lo, hi, x, scale))(low, high, xb)
            return jnp.sum(w * per_example) / total

        grads = jax.grad(batch_objective)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        correct = jnp.argmax(info.free_state[-1], axis=-1) == jnp.argmax(yb, axis=-1)
        finite = jnp.all(info.finite) & _all_finite(params)
        metrics = StepMetrics(
            loss=jnp.sum(w * info.loss) / total,
            accuracy=jnp.sum(w * correct) / total,
            free_residual=jnp.max(info.free_residual),
            nudged_residual=jnp.max(info.nudged_residual),
            beta=jnp.asarray(signed, xb.dtype),
            finite=finite,
            free_state=info.free_state,
        )
        return params, opt_state, metrics

    def epoch(params, opt_state, key, xs, ys):
        def body(carry, batch):
            p, o = carry
            k, xb, yb = batch
            p, o, m = step(p, o, k, xb, yb)
            return (p, o), m._replace(free_state=())

        keys = jax.random.split(key, xs.shape[0])
        (params, opt_state), metrics = jax.lax.scan(body, (params, opt_state), (keys, xs, ys))
        return params, opt_state, metrics

    def predict(params, x):
        x = jnp.asarray(x, params.weights[0].dtype)
        return jax.vmap(lambda xi: free_phase(params, xi, steps=free_steps, step_size=step_size,
                                              activation=activation))(x)

    return EPTrainer(
        init=optimizer.init,
        train_step=jax.jit(step, donate_argnums=(0, 1)),
        train_epoch=jax.jit(epoch, donate_argnums=(0, 1)),
        predict=jax.jit(predict),
    )
