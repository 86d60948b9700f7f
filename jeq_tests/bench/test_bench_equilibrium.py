"""The equilibrium benchmark's adjoint report (the backward solve the VJP runs silently)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.bench_equilibrium import adjoint_report
from jeq import equilibrium as eq
from jeq import fixedpoint as fp


def test_adjoint_report_says_when_the_backward_solve_is_truncated():
    rng = np.random.default_rng(0)
    xb, yb = jnp.asarray(rng.standard_normal((4, 12)), jnp.float32), jnp.asarray([0, 1, 2, 0])
    settled = eq.deq(features=12, hidden=8, classes=3)
    params = settled.init(jax.random.key(0))
    report = adjoint_report(settled, params, xb, yb)
    assert report["adjoint_converged_fraction"] == 1.0 and report["mean_adjoint_steps"] >= 1
    assert report["max_adjoint_residual"] <= 1e-6
    truncated = eq.deq(features=12, hidden=8, classes=3,
                       backward=fp.implicit(solver="picard", tol=1e-9, rtol=0.0, maxiter=1))
    report = adjoint_report(truncated, params, xb, yb)
    assert report["adjoint_converged_fraction"] == 0.0 and report["mean_adjoint_steps"] == 1
