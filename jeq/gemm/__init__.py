"""GEMM tiling search without TVM (Zhang, Cheng, Zang, Park, arXiv 1909.10616).

* :mod:`~jeq.gemm.space`: ordered factorisations of the loop axes with prime moves, knobs, validity, codecs.
* :mod:`~jeq.gemm.landscape`: analytic GPU cost model (vmapped), replay of recorded tables.
* :mod:`~jeq.gemm.search`: the ask/tell protocol and the budgeted search loop.
* :mod:`~jeq.gemm.gbfs`, :mod:`~jeq.gemm.neighbourhood_a2c`: the paper's G-BFS and N-A2C (``na2c``).
* :mod:`~jeq.gemm.baselines`: random, grid, simulated annealing, AutoTVM's GA and cost-model tuner.
* :mod:`~jeq.gemm.kernels`, :mod:`~jeq.gemm.measure`, :mod:`~jeq.gemm.tuning`: kernel families (tiled XLA, Pallas,
  XLA autotuner flags), cached live measurement, ``tune`` and ``matmul``.
"""

import importlib

from jeq.gemm.baselines import cost_model, genetic, grid_search, random_search, simulated_annealing
from jeq.gemm.gbfs import gbfs
from jeq.gemm.kernels import KernelFamily, family, pallas, pallas_matmul, tiled_matmul, xla_flags, xla_tiled
from jeq.gemm.landscape import AnalyticLandscape, GpuSpec, Landscape, ReplayLandscape, tvm_gemm_space, tvm_gemm_time
from jeq.gemm.measure import Cache, Measurement, measure
from jeq.gemm.search import SearchResult, Strategy, search
from jeq.gemm.space import Axis, Knob, Space
from jeq.gemm.tuning import STRATEGIES, TuneResult, matmul, tune

_LAZY = ("na2c", "actor_critic_loss", "ActorCritic", "Na2cState")


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
    "actor_critic_loss",
    "cost_model",
    "family",
    "gbfs",
    "genetic",
    "grid_search",
    "matmul",
    "measure",
    "na2c",
    "pallas",
    "pallas_matmul",
    "random_search",
    "search",
    "simulated_annealing",
    "tiled_matmul",
    "tune",
    "tvm_gemm_space",
    "tvm_gemm_time",
    "xla_flags",
    "xla_tiled",
]
