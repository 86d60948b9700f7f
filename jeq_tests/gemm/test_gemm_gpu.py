"""GPU tuning: the compiled Pallas (Triton) matmul and XLA's GEMM autotuner flags tuned by ``jeq.gemm.tune`` on a GPU;
without a GPU the GPU script refuses to run (checked as a command, tests never import ``benchmarks``)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time

import jax
import pytest

from jeq.gemm import Cache, family, tune, with_deadline
from jeq.gemm.measurement import measurement_key
from jeq.gemm.tuning import STRATEGIES, autotune_path

ON_GPU = jax.default_backend() == "gpu"
ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.skipif(ON_GPU, reason="checks the behaviour without a GPU")
def test_gpu_script_exits_with_a_clear_message_without_gpu(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.gemm_gpu", "--out", str(tmp_path)], cwd=ROOT, capture_output=True,
        text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "needs a GPU" in proc.stderr
    assert not (tmp_path / "gemm_gpu.json").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not ON_GPU, reason="needs a GPU")
def test_tunes_pallas_and_xla_flags_on_gpu(tmp_path):
    """What ``benchmarks.gemm_gpu`` runs per job, at 256³ float32 under a two-minute deadline."""
    deadline = time.perf_counter() + 120.0

    def gbfs_until_deadline(space, **options):
        return with_deadline(STRATEGIES["gbfs"](space, **options), deadline)

    for name, budget in (("pallas", 4), ("xla_flags", 2)):
        result = tune(256, 256, 256, dtype="float32", strategy=gbfs_until_deadline, budget=budget, kernel=name,
                      cache_dir=str(tmp_path), time_budget_s=0.03, top_k=4, rerank_budget_s=0.5)
        assert result.family == name
        assert result.time_s > 0 and result.reference_s > 0 and 1 <= result.search.indices.size <= budget
        if name == "xla_flags" and result.config.get("xla_gpu_autotune_level"):
            key = measurement_key(family(name), result.config, (256, 256, 256), "float32")
            path = autotune_path(Cache(tmp_path), family(name), key)
            assert path is not None and path.exists()  # XLA's autotune results were dumped when measured
