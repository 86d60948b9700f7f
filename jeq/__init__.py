"""jeq: equilibrium models, equilibrium propagation, path-SGD and GEMM autotuning in JAX.

Each capability is a subpackage (``jeq.prox``, ``jeq.fixedpoint``, ``jeq.equilibrium``, ``jeq.eqprop``,
``jeq.pathsgd``, ``jeq.gemm``) built on shared pieces (``jeq.data``, ``jeq.bench``, ``jeq.sharding``).
Subpackages are imported on demand so that ``import jeq`` stays cheap.
"""

__version__ = "0.1.0"
