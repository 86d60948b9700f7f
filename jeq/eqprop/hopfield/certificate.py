"""Certificate that the Hopfield energy is a Lyapunov function of the relaxation (derived here, not from the papers).

On [0, 1]^n the energy E is quadratic with Hessian I - S (S symmetric, S[l, l+1] = W_l for the hidden/output layers),
so dE/ds is Lipschitz with L = max |eig(I - S)|, and projected gradient descent with step eps satisfies

    F(s+) <= F(s) - (1/eps - L_F / 2) ||s+ - s||^2,      L_F <= L + |beta|      (F = E + beta C)

hence F never increases along :func:`jeq.eqprop.hopfield.relax_energy` with ``activation = rho`` when eps < 2 / L_F.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jeq import validate
from jeq.eqprop.hopfield.network import HopfieldParams, layer_sizes

__all__ = ["EnergyCertificate", "energy_certificate"]


class EnergyCertificate(NamedTuple):
    """Certificate that the energy is a Lyapunov function of the hard-sigmoid relaxation: step_size < 2 / (L + |beta|).

    >>> from jeq.eqprop import hopfield
    >>> hopfield.EnergyCertificate._fields
    ('lipschitz', 'certified')
    """

    lipschitz: jax.Array
    """Lipschitz constant of dE/ds on the box: max |eig(I - S)|, S the symmetric layer-coupling matrix."""
    certified: jax.Array
    """step_size < 2 / (lipschitz + |beta|): F = E + beta C decreases at every step of projected gradient descent
    (beta = 0: the free phase's E)."""


def energy_certificate(params: HopfieldParams, *, step_size: float, beta: float = 0.0) -> EnergyCertificate:
    """step_size < 2 / (max |eig(I - S)| + |beta|): F = E + beta C is non-increasing along the rho relaxation.

    On [0, 1]^n, E is quadratic with Hessian I - S (S: symmetric, S[l, l+1] = W_l for hidden/output layers). Projected
    gradient descent with step eps satisfies F(s+) <= F(s) - (1/eps - L_F/2) ||s+ - s||^2, so eps < 2/L_F suffices.
    C = 1/2 ||s_L - y||^2 adds beta I to the output block of the Hessian, so L_F <= L + |beta|. ``beta = 0`` (the
    default) certifies the free phase; pass the nudging strength to certify a nudged phase too.

    >>> import jax
    >>> from jeq import eqprop
    >>> from jeq.eqprop import hopfield
    >>> params = hopfield.init(jax.random.key(0), [4, 3, 2])
    >>> certificate = eqprop.energy_certificate(params, step_size=0.5)
    >>> round(float(certificate.lipschitz), 3), bool(certificate.certified)
    (1.767, True)
    >>> bool(eqprop.energy_certificate(params, step_size=1.5).certified)  # 1.5 > 2 / 1.767
    False
    """
    where = "jeq.eqprop.hopfield.energy_certificate"
    validate.positive(where, "step_size", step_size)
    validate.real(where, "beta", beta)
    sizes = layer_sizes(params)[1:]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    n = int(offsets[-1])
    s = jnp.zeros((n, n), params.weights[0].dtype)
    for l, w in enumerate(params.weights[1:]):
        s = s.at[offsets[l]:offsets[l + 1], offsets[l + 1]:offsets[l + 2]].set(w)
    s = s + s.T
    lipschitz = jnp.max(jnp.abs(jnp.linalg.eigvalsh(jnp.eye(n, dtype=s.dtype) - s)))
    return EnergyCertificate(lipschitz, step_size < 2.0 / (lipschitz + abs(float(beta))))
