"""The GPU script (benchmarks/gemm_gpu.py): refuses to run without a GPU; on a GPU, tunes Pallas and XLA flags."""

from __future__ import annotations

import json

import jax
import pytest

from benchmarks import gemm_gpu

ON_GPU = jax.default_backend() == "gpu"


@pytest.mark.skipif(ON_GPU, reason="checks the behaviour without a GPU")
def test_script_exits_with_a_clear_message_without_gpu(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        gemm_gpu.main(["--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "needs a GPU" in capsys.readouterr().err
    assert not (tmp_path / "gemm_gpu.json").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not ON_GPU, reason="needs a GPU")
def test_script_tunes_pallas_and_xla_flags_on_gpu(tmp_path):
    report = gemm_gpu.main(["--out", str(tmp_path), "--jobs", "256x256x256:float32", "--pallas-budget", "4",
                            "--xla-budget", "2", "--deadline-s", "120"])
    assert [j["family"] for j in report["jobs"]] == ["pallas", "xla_flags"]
    for job in report["jobs"]:
        assert job["status"] == "ok", job
        assert job["tuned_s"] > 0 and job["jnp_dot_s"] > 0 and 1 <= job["searched"] <= job["budget"]
    assert json.loads((tmp_path / "gemm_gpu.json").read_text())["jobs"] == json.loads(json.dumps(report["jobs"], default=str))
