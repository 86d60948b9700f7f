"""GEMM tiling search without TVM (Zhang, Cheng, Zang, Park, arXiv 1909.10616).

* :mod:`~jeq.gemm.space`: ordered factorisations of the loop axes with prime moves, knobs, validity, codecs.
* :mod:`~jeq.gemm.landscape`: analytic GPU cost model (vmapped), replay of recorded tables.
* :mod:`~jeq.gemm.ask_tell`: the ask/tell protocol (``Strategy``) and the budgeted ``search`` loop.
* :mod:`~jeq.gemm.best_first`, :mod:`~jeq.gemm.neighbourhood_a2c`: the paper's G-BFS (``gbfs``) and N-A2C (``na2c``).
* :mod:`~jeq.gemm.baselines`: random, grid, simulated annealing, AutoTVM's GA and cost-model tuner.
* :mod:`~jeq.gemm.kernels`, :mod:`~jeq.gemm.measurement`, :mod:`~jeq.gemm.tuning`: kernel families (tiled XLA,
  Pallas, XLA autotuner flags), cached live measurement (``measure``, ``Cache``), ``tune`` and ``matmul``.

Every module is named apart from the functions the package exports, so ``jeq.gemm.<name>`` means one thing.
"""

import importlib

from jeq.gemm.ask_tell import SearchResult, Strategy, bowl_cost, search, with_deadline
from jeq.gemm.baselines import cost_model, genetic, grid_search, random_search, simulated_annealing
from jeq.gemm.best_first import gbfs
from jeq.gemm.kernels import KernelFamily, family, pallas, pallas_matmul, tiled_matmul, xla_flags, xla_tiled
from jeq.gemm.landscape import AnalyticLandscape, GpuSpec, Landscape, ReplayLandscape, tvm_gemm_space, tvm_gemm_time
from jeq.gemm.measurement import Cache, Measurement, measure
from jeq.gemm.space import Axis, Knob, Space
from jeq.gemm.tuning import STRATEGIES, TuneResult, matmul, record_tuned, tune, tuned_kernel

_LAZY = ("na2c", "na2c_rewards", "action_probabilities", "actor_critic_loss", "ActorCritic", "Na2cState")


def __getattr__(name: str):
    """N-A2C's names, imported on first use: it needs flax and optax, which the rest of ``jeq.gemm`` does not (so the
    GPU script runs where only jax is installed)."""
    if name in _LAZY:
        module = importlib.import_module("jeq.gemm.neighbourhood_a2c")
        globals().update({n: getattr(module, n) for n in _LAZY})
        return globals()[name]
    raise AttributeError(f"module 'jeq.gemm' has no attribute {name!r}")


__all__ = [
    "STRATEGIES",
    "AnalyticLandscape",
    "Axis",
    "Cache",
    "GpuSpec",
    "KernelFamily",
    "Knob",
    "Landscape",
    "Measurement",
    "ReplayLandscape",
    "SearchResult",
    "Space",
    "Strategy",
    "TuneResult",
    "action_probabilities",
    "actor_critic_loss",
    "bowl_cost",
    "cost_model",
    "family",
    "gbfs",
    "genetic",
    "grid_search",
    "matmul",
    "measure",
    "na2c",
    "na2c_rewards",
    "pallas",
    "pallas_matmul",
    "random_search",
    "record_tuned",
    "search",
    "simulated_annealing",
    "tiled_matmul",
    "tune",
    "tuned_kernel",
    "tvm_gemm_space",
    "tvm_gemm_time",
    "with_deadline",
    "xla_flags",
    "xla_tiled",
]
