"""Activations as proximal operators of convex potentials (spec ``opteq.md`` section 2).

``Prox(apply, potential)``: ``apply(v) = argmin_x potential(x) + (x - v)^2 / 2`` elementwise. See
:mod:`jeq.prox.activations` for the table of potentials.
"""

from jeq.prox.activations import (
    Prox,
    add_l1,
    argmin_on_grid,
    box,
    check_proximal,
    from_activation,
    hard_sigmoid,
    l1,
    leaky_relu,
    primitive,
    relu,
    relu_l1,
    sigmoid,
    softplus,
    tanh,
)

__all__ = [
    "Prox", "add_l1", "argmin_on_grid", "box", "check_proximal", "from_activation", "hard_sigmoid", "l1", "leaky_relu",
    "primitive", "relu", "relu_l1", "sigmoid", "softplus", "tanh",
]
