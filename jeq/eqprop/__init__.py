"""Energy-based learning: DEEP (directed nets), EP_asym, classic and centered EP on Hopfield nets, pruning, stability.

Modules (each holds one paper's equations):

* :mod:`jeq.eqprop.directed` - graphs/masks, clipped Euler relaxation of a vector field (``relax_field``), generic
  directed learner.
* :mod:`jeq.eqprop.deep` - DEEP (Farinha et al., ESANN 2020): vector field, STDP trajectory / endpoint rules.
* :mod:`jeq.eqprop.ep_asym` - vector-field EP baseline (Scellier et al. 2018).
* :mod:`jeq.eqprop.pruning` - Boltzmann pruning of weak incoming edges (normalisation, schedule, permanence).
* :mod:`jeq.eqprop.lyapunov` - system matrix, spectral abscissa, Gershgorin, Lyapunov equation, stability report.
* :mod:`jeq.eqprop.hopfield` - Hopfield energy and its relaxation (``relax_energy``), free/nudged phases, energy
  certificate, EP gradient (one-sided, random sign, centered), jitted training step (one module per concept).
  The subpackage itself is exported as ``hopfield`` (``from jeq.eqprop import hopfield``) for the names that only it
  exports (``hopfield.init``, ``hopfield.relax_energy``, ``hopfield.ep_phases``, ...).
"""

from jeq.eqprop import hopfield
from jeq.eqprop.deep import deep, deep_field, endpoint_rule, trajectory_rule
from jeq.eqprop.directed import (
    DirectedInfo,
    DirectedLearner,
    Graph,
    Relaxation,
    class_error,
    complete_graph,
    directed_learner,
    init_weights,
    layered_graph,
    relax_field,
)
from jeq.eqprop.ep_asym import asym_rule, ep_asym, leaky_field
from jeq.eqprop.hopfield import (
    EPInfo,
    EPTrainer,
    HopfieldParams,
    Phase,
    StepMetrics,
    energy,
    energy_certificate,
    ep_trainer,
    eqprop_grad,
    free_phase,
    layer_sgd,
    nudged_phase,
    rho,
    scaled_sigmoid,
)
from jeq.eqprop.lyapunov import (
    Gershgorin,
    LyapunovSolution,
    Stability,
    free_phase_stability,
    gershgorin,
    lyapunov_along,
    solve_lyapunov,
    spectral_abscissa,
    system_matrix,
)
from jeq.eqprop.pruning import (
    NORMALISATIONS,
    Pruning,
    boltzmann_prune,
    pruning_probabilities,
    scheduled_prune,
    sparsity,
)

__all__ = [
    "NORMALISATIONS", "DirectedInfo", "DirectedLearner",
    "EPInfo", "EPTrainer", "Gershgorin", "Graph", "HopfieldParams",
    "LyapunovSolution", "Phase", "Pruning", "Relaxation", "Stability", "StepMetrics", "asym_rule",
    "boltzmann_prune", "class_error", "complete_graph", "deep", "deep_field", "directed_learner",
    "endpoint_rule", "energy", "energy_certificate", "ep_asym", "ep_trainer", "eqprop_grad",
    "free_phase", "free_phase_stability", "gershgorin", "hopfield", "init_weights",
    "layer_sgd", "layered_graph", "leaky_field", "lyapunov_along", "nudged_phase",
    "pruning_probabilities", "relax_field", "rho", "scaled_sigmoid", "scheduled_prune",
    "solve_lyapunov", "sparsity", "spectral_abscissa",
    "system_matrix", "trajectory_rule",
]
