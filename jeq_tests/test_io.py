"""``jeq.io``: atomic writes leave the old file or the new one, and provenance describes the code and machine."""

import json
import os

import numpy as np
import pytest

from jeq import io


def test_atomic_write_json_converts_arrays_and_keeps_nan(tmp_path):
    path = tmp_path / "deep" / "folder" / "r.json"
    io.atomic_write_json(path, {"a": np.arange(3), "f": np.float32(1.5), "n": float("nan"), "s": {2, 1}})
    loaded = json.loads(path.read_text())
    assert loaded["a"] == [0, 1, 2] and loaded["f"] == 1.5 and np.isnan(loaded["n"]) and loaded["s"] == [1, 2]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "r.json"
    io.atomic_write_json(path, {"x": 1})
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        io.atomic_write_json(path, {"x": object()})
    assert json.loads(path.read_text()) == {"x": 1}
    assert os.listdir(tmp_path) == ["r.json"]


def test_atomic_write_text_and_bytes_round_trip(tmp_path):
    io.atomic_write_text(tmp_path / "t.txt", "héllo")
    io.atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"


def test_provenance_names_the_commit_the_versions_and_the_device(tmp_path):
    sha = io.git_sha()
    assert sha == "unknown" or len(sha.split("-")[0]) == 40
    assert io.git_sha(tmp_path) == "unknown"  # not a repository
    v = io.versions(extra=("no-such-distribution-xyz",))
    assert v["jax"] != "not installed" and v["no-such-distribution-xyz"] == "not installed"
    info = io.device_info()
    assert info["backend"] == "cpu" and info["device_count"] >= 1
