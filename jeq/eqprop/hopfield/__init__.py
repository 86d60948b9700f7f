"""Energy-based equilibrium propagation on layered Hopfield networks.

Classic EP (Scellier & Bengio 2017, Theano code bscellier/Towards-a-Biologically-Plausible-Backprop), random-sign
nudging, and centered / symmetric EP (Laborieux et al. 2021). Spec ``eqprop.md`` §5-§6. One module per concept:

* :mod:`~jeq.eqprop.hopfield.network` - parameters, energy E, cost C, the relaxation s <- sigma(s - eps dF/ds) of
  F = E + beta C (free and nudged phases) and the EP objective [E(high) - E(low)] / scale.
* :mod:`~jeq.eqprop.hopfield.certificate` - step sizes for which F is a Lyapunov function of the relaxation.
* :mod:`~jeq.eqprop.hopfield.gradient` - the EP gradient, one-sided or centered, for one example.
* :mod:`~jeq.eqprop.hopfield.training` - per-layer SGD and the jitted batch step and epoch.

    E(s) = 1/2 sum_l ||rho(s_l)||^2 - sum_l b_l . rho(s_l) - sum_l rho(s_l)^T W_l rho(s_{l+1})      (s_0 = x)
    EP gradient     g = [dE/dtheta(s_beta) - dE/dtheta(s_0)] / beta                -> dL/dtheta as beta -> 0
    centered EP     g = [dE/dtheta(s_{+beta}) - dE/dtheta(s_{-beta})] / (2 beta)   (error O(beta^2))
"""

from jeq.eqprop.hopfield.certificate import EnergyCertificate, energy_certificate
from jeq.eqprop.hopfield.gradient import EPInfo, ep_phases, eqprop_grad
from jeq.eqprop.hopfield.network import (HopfieldParams, Phase, State, cost, energy, ep_objective, free_phase, init,
                                          layer_sizes, nudged_phase, relax_energy, rho, scaled_sigmoid,
                                          tree_all_finite, zero_state)
from jeq.eqprop.hopfield.training import NUDGINGS, EPTrainer, StepMetrics, ep_trainer, layer_sgd

__all__ = [
    "NUDGINGS", "EPInfo", "EPTrainer", "EnergyCertificate", "HopfieldParams", "Phase", "State", "StepMetrics", "cost",
    "energy", "energy_certificate", "ep_objective", "ep_phases", "ep_trainer", "eqprop_grad", "free_phase", "init",
    "layer_sgd", "layer_sizes", "nudged_phase", "relax_energy", "rho", "scaled_sigmoid", "tree_all_finite",
    "zero_state",
]
