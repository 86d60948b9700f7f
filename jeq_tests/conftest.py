"""Shared fixtures: a PRNG key, float64 for gradient checks, and multi-device runs in a subprocess."""

from __future__ import annotations

import os

# scipy's OpenBLAS (behind JAX's CPU LAPACK calls and the reference optimisers) spins one thread per core; on a shared
# 2-core CI machine that makes small factorisations 10-100x slower at the tail. One thread, set before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # noqa: E402 (must precede numpy)
import subprocess
import sys
import textwrap

import jax
import pytest


@pytest.fixture
def key() -> jax.Array:
    """A fixed ``jax.random.key(0)``: tests are deterministic."""
    return jax.random.key(0)


@pytest.fixture
def x64():
    """Run the test with float64 enabled (gradient checks against finite differences need it)."""
    with jax.enable_x64(True):
        yield


def run_multidevice(code: str, *, devices: int = 4, timeout: float = 300.0) -> str:
    """Run a Python snippet in a fresh interpreter with ``devices`` forced CPU devices; return its stdout.

    ``XLA_FLAGS=--xla_force_host_platform_device_count`` must be set before JAX initialises, so it cannot be done in
    the test process. A non-zero exit fails the test with the snippet's stderr.
    """
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}").strip()
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=timeout
    )
    if proc.returncode != 0:
        pytest.fail(f"multi-device snippet failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc.stdout


@pytest.fixture
def multidevice():
    """The :func:`run_multidevice` helper: ``multidevice(code, devices=4) -> stdout``."""
    return run_multidevice
