"""GEMM tiling search without TVM (Zhang, Cheng, Zang, Park, arXiv 1909.10616).

* :mod:`~jeq.gemm.space`: ordered factorisations of the loop axes with prime moves, knobs, validity, codecs.
* :mod:`~jeq.gemm.landscape`: analytic GPU cost model (vmapped), replay of recorded tables.
* :mod:`~jeq.gemm.search`: the ask/tell protocol and the budgeted search loop.
* :mod:`~jeq.gemm.gbfs`, :mod:`~jeq.gemm.na2c`: the paper's G-BFS and N-A2C.
* :mod:`~jeq.gemm.baselines`: random, grid, simulated annealing, AutoTVM's GA and cost-model tuner.
* :mod:`~jeq.gemm.kernels`, :mod:`~jeq.gemm.measure`, :mod:`~jeq.gemm.tuning`: kernel families (tiled XLA, Pallas,
  XLA autotuner flags), cached live measurement, ``tune`` and ``matmul``.
"""

from jeq.gemm.baselines import cost_model, genetic, grid_search, random_search, simulated_annealing
from jeq.gemm.gbfs import gbfs
from jeq.gemm.kernels import KernelFamily, family, pallas, pallas_matmul, tiled_matmul, xla_flags, xla_tiled
from jeq.gemm.landscape import AnalyticLandscape, GpuSpec, Landscape, ReplayLandscape, tvm_gemm_space, tvm_gemm_time
from jeq.gemm.measure import Cache, Measurement, measure
from jeq.gemm.na2c import actor_critic_loss, na2c
from jeq.gemm.search import SearchResult, Strategy, search
from jeq.gemm.space import Axis, Knob, Space
from jeq.gemm.tuning import STRATEGIES, TuneResult, matmul, tune

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
