"""The equilibrium-propagation gradient of a layered Hopfield network (spec ``eqprop.md`` §5-§6).

    EP gradient     g = [dE/dtheta(s_beta) - dE/dtheta(s_0)] / beta                -> dL/dtheta as beta -> 0
    centered EP     g = [dE/dtheta(s_{+beta}) - dE/dtheta(s_{-beta})] / (2 beta)   (error O(beta^2))

``g`` estimates the gradient of the loss L(theta) = C(s_0(theta)) at the free equilibrium, so it is a params-shaped
pytree that any optax transform applies (``optax.sgd`` gives theta <- theta - lr g, i.e. Scellier's
dW ~ (1/beta)[(rho_i rho_j)^beta - (rho_i rho_j)^0]).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jeq import validate
from jeq.eqprop.hopfield.network import (
    HopfieldParams,
    State,
    cost,
    ep_objective,
    free_phase,
    nudged_phase,
    tree_all_finite,
)

__all__ = ["EPInfo", "ep_phases", "eqprop_grad"]


class EPInfo(NamedTuple):
    """Diagnostics of one EP gradient (one example), e.g. loss = C(s_0) = 1/2 ||s_L - y||^2 at the free equilibrium.

    >>> from jeq import eqprop
    >>> eqprop.EPInfo._fields
    ('free_state', 'loss', 'free_residual', 'nudged_residual', 'finite')
    """

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


def ep_phases(
    params: HopfieldParams,
    x: jax.Array,
    y: jax.Array,
    beta: float | jax.Array,
    state: State | None = None,
    *,
    free_steps: int,
    nudged_steps: int,
    centered: bool = False,
    **dynamics,
) -> tuple[State, State, EPInfo]:
    """(low, high) = (s_0, s_beta) one-sided, (s_-beta, s_beta) centered: the two states of the EP difference.

    The free phase relaxes from ``state`` (zeros by default) for ``free_steps``; each nudged phase starts from the
    free equilibrium s_0 and runs ``nudged_steps``. One example; ``dynamics`` (``step_size``, ``activation``) are
    :func:`jeq.eqprop.hopfield.relax_energy`'s. Feed the pair to :func:`jeq.eqprop.hopfield.ep_objective`.

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq.eqprop import hopfield
    >>> params = hopfield.init(jax.random.key(0), [4, 3, 2])
    >>> x, y = jnp.array([1.0, 0.0, 1.0, 0.5]), jnp.array([1.0, 0.0])
    >>> low, high, info = hopfield.ep_phases(params, x, y, 0.5, free_steps=50, nudged_steps=10)
    >>> all(bool(jnp.all(a == b)) for a, b in zip(low, info.free_state))  # one-sided: low = s_0
    True
    >>> bool(hopfield.cost(high, y) < info.loss)  # s_beta is nearer y
    True
    """
    free = free_phase(params, x, state, steps=free_steps, **dynamics)
    y = y.astype(free.state[-1].dtype)
    plus = nudged_phase(params, free.state, x, y, beta, steps=nudged_steps, **dynamics)
    if centered:
        minus = nudged_phase(params, free.state, x, y, -beta, steps=nudged_steps, **dynamics)
        low, residual = minus.state, jnp.maximum(plus.residual, minus.residual)
        finite = free.finite & plus.finite & minus.finite
    else:
        low, residual, finite = free.state, plus.residual, free.finite & plus.finite
    return low, plus.state, EPInfo(free.state, cost(free.state, y), free.residual, residual, finite)


def eqprop_grad(
    params: HopfieldParams,
    x: jax.Array,
    y: jax.Array,
    beta: float | jax.Array,
    *,
    free_steps: int = 20,
    nudged_steps: int = 4,
    centered: bool = False,
    state: State | None = None,
    **dynamics,
) -> tuple[HopfieldParams, EPInfo]:
    """EP estimate of dL/dtheta, L = C(s_0(theta)), for one example (vmap and average over a batch):

        one-sided:  g = [dE/dtheta(s_beta) - dE/dtheta(s_0)] / beta          (Scellier & Bengio 2017)
        centered:   g = [dE/dtheta(s_beta) - dE/dtheta(s_-beta)] / (2 beta)  (Laborieux et al. 2021)

    The nudged phases start from the free equilibrium s_0 (itself relaxed from ``state``, zeros by default). The
    result has the shape of ``params``; apply it with any optax transform. ``beta`` may be negative (random sign)
    but not 0. Defaults are Scellier & Bengio's net1 (20 free, 4 nudged steps); ``dynamics`` (``step_size``,
    ``activation``) are :func:`jeq.eqprop.hopfield.relax_energy`'s.

    Against the gradient of L = C(s_0(theta)) by autodiff through the free phase, at beta = 0.1: the one-sided
    estimate is off by O(beta), the centered one by O(beta^2):

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq.eqprop import hopfield
    >>> params = hopfield.init(jax.random.key(0), [4, 3, 2])
    >>> x, y = jnp.array([1.0, 0.0, 1.0, 0.5]), jnp.array([1.0, 0.0])
    >>> flat = lambda tree: jnp.concatenate([leaf.ravel() for leaf in jax.tree.leaves(tree)])
    >>> loss = lambda p: hopfield.cost(hopfield.free_phase(p, x, steps=200).state, y)  # L = C(s_0(theta))
    >>> true = flat(jax.jit(jax.grad(loss))(params))
    >>> errors = []
    >>> for centered in (False, True):
    ...     estimate = lambda p: hopfield.eqprop_grad(p, x, y, 0.1, free_steps=200, nudged_steps=200, centered=centered)
    ...     g, info = jax.jit(estimate)(params)
    ...     errors.append(float(jnp.linalg.norm(flat(g) - true) / jnp.linalg.norm(true)))
    >>> errors[1] < 0.1 < errors[0] < 0.5, bool(info.finite)
    (True, True)
    """
    if not isinstance(beta, jax.Array):  # a traced (or device) beta = 0 is reported through info.finite instead
        if validate.real("jeq.eqprop.hopfield.eqprop_grad", "beta", beta) == 0:
            validate.fail("jeq.eqprop.hopfield.eqprop_grad", "beta", beta,
                          "must be != 0 (the EP estimate divides by beta)")
    x = jnp.asarray(x)
    y = jnp.asarray(y)
    low, high, info = ep_phases(params, x, y, beta, state, free_steps=free_steps, nudged_steps=nudged_steps,
                                centered=centered, **dynamics)
    scale = 2 * beta if centered else beta
    grads = jax.grad(ep_objective)(params, low, high, x, scale)
    return grads, info._replace(finite=info.finite & tree_all_finite(grads))  # a traced beta = 0 shows up here
