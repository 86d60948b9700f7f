"""Equilibrium models as pure functions: OptEq (dense, unit layer, conv, deep), MON (FB / PR) and a plain DEQ.

Every factory returns an :class:`EquilibriumModel` with ``init``, ``equilibrium(params, x)``,
``apply(params, x) -> Output(logits, stats, jacobian)`` and (OptEq family) ``objective(params, z, x)`` = the hidden
convex objective G. Functions act on one example; vmap over the batch. Training steps: :mod:`jeq.equilibrium.train`.
Maths: ``opteq.py`` (spec opteq.md sections 3, 4, 6), ``deep_opteq.py`` (section 5), ``mon.py`` and ``deq.py``
(section 8), ``core.py`` (assembly, norm constraint, and what the factories share: keyword options, sizes,
injections, readouts). Factories take the sizes by name and the rest as keyword options: the family's
(``OptEqOptions``, ``MonOptions``, ``DeqOptions``) and the solve settings (``SolveSettings`` fields, defaults
``OPTEQ_SETTINGS``, ``MON_SETTINGS``, ``DEQ_SETTINGS``).
"""

from jeq.equilibrium.core import (
    EquilibriumModel,
    Output,
    SolveSettings,
    assemble,
    parameter_count,
    random_blocks,
    spectral_scale,
)
from jeq.equilibrium.deep_opteq import (
    DeepOptEqOptions,
    DeepOptEqParams,
    block_coupling,
    convexity_margin,
    deep_opteq,
    deep_opteq_conv,
)
from jeq.equilibrium.deq import DEQ_SETTINGS, DeqOptions, DeqParams, deq
from jeq.equilibrium.mon import (
    MON_SETTINGS,
    MonConvParams,
    MonOptions,
    MonParams,
    circulant_apply,
    circulant_inverse,
    mon,
    mon_conv,
)
from jeq.equilibrium.opteq import (
    OPTEQ_SETTINGS,
    OptEqConvParams,
    OptEqOptions,
    OptEqParams,
    hidden_objective,
    opteq,
    opteq_conv,
    opteq_map,
    opteq_unit,
    power_norm,
    refresh_power_vector,
    smoothness_prior,
    unit_map,
    unit_objective,
    unit_potential,
)
from jeq.equilibrium.train import (
    BATCH_AXIS,
    AdjointReport,
    EvalMetrics,
    TrainMetrics,
    adjoint_report,
    make_eval_step,
    make_train_step,
)

__all__ = [
    "BATCH_AXIS", "DEQ_SETTINGS", "MON_SETTINGS", "OPTEQ_SETTINGS", "AdjointReport",
    "DeepOptEqOptions", "DeepOptEqParams", "DeqOptions",
    "DeqParams", "EquilibriumModel", "EvalMetrics", "MonConvParams", "MonOptions", "MonParams", "OptEqConvParams",
    "OptEqOptions", "OptEqParams", "Output", "SolveSettings", "TrainMetrics", "adjoint_report", "assemble",
    "block_coupling", "circulant_apply", "circulant_inverse", "convexity_margin", "deep_opteq", "deep_opteq_conv",
    "deq",
    "hidden_objective", "make_eval_step", "make_train_step", "mon", "mon_conv", "opteq", "opteq_conv", "opteq_map",
    "opteq_unit", "parameter_count", "power_norm", "random_blocks", "refresh_power_vector", "smoothness_prior",
    "spectral_scale", "unit_map",
    "unit_objective", "unit_potential",
]
