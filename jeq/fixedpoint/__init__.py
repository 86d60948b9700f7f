"""Fixed-point solvers with implicit, phantom or unrolled differentiation (spec ``opteq.md`` sections 7-10).

``solve(fn, z0, *args, solver=..., tol=..., rtol=..., maxiter=..., backward=...) -> Solution(value, stats)``.
Solvers live in the registry :data:`SOLVERS` (picard, anderson, broyden, halpern); each factory returns a
:class:`FixedPointSolver` ``(init, update)`` pair.
"""

from jeq.fixedpoint.jacobian import jacobian_penalty, spectral_radius
from jeq.fixedpoint.solve import (
    ADJOINT_TOL,
    Implicit,
    Phantom,
    Solution,
    Stats,
    Unroll,
    adjoint_solve,
    check_settings,
    follow_forward,
    implicit,
    phantom,
    solve,
    unroll,
)
from jeq.fixedpoint.solvers import (
    SOLVERS,
    AndersonState,
    BroydenState,
    FixedPointSolver,
    HalpernState,
    PicardState,
    anderson,
    broyden,
    flat_map,
    get_solver,
    halpern,
    picard,
)

__all__ = [
    "ADJOINT_TOL", "SOLVERS", "AndersonState", "BroydenState", "FixedPointSolver", "HalpernState", "Implicit",
    "Phantom",
    "PicardState", "Solution", "Stats", "Unroll", "adjoint_solve", "anderson", "broyden", "check_settings",
    "flat_map", "follow_forward", "get_solver", "halpern", "implicit", "jacobian_penalty", "phantom", "picard", "solve",
    "spectral_radius", "unroll",
]
