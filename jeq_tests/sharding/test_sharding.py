"""jeq.sharding: the batch really is split, padding is masked out, and the sharded step equals the 1-device step."""

from __future__ import annotations

import pathlib

import chex
import jax.numpy as jnp
import numpy as np
import pytest

from jeq import sharding


def test_pad_batch_repeats_last_example_and_weights_it_zero():
    x, y = np.arange(10.0).reshape(5, 2), np.arange(5)
    (px, py), weight = sharding.pad_batch((x, y), 4)
    assert px.shape == (8, 2) and py.tolist() == [0, 1, 2, 3, 4, 4, 4, 4]
    assert weight.tolist() == [1, 1, 1, 1, 1, 0, 0, 0]
    same, w = sharding.pad_batch(x, 5)
    assert same is not None and same.shape == (5, 2) and w.sum() == 5


def test_pad_batch_along_axis_one_for_stacked_minibatches():
    xs = np.arange(2 * 3 * 2).reshape(2, 3, 2)  # (steps, batch, features)
    padded, weight = sharding.pad_batch(xs, 2, axis=1)
    assert padded.shape == (2, 4, 2) and np.array_equal(padded[:, 3], xs[:, 2])
    assert weight.shape == (2, 4) and weight.tolist() == [[1, 1, 1, 0], [1, 1, 1, 0]]


@pytest.mark.parametrize(
    "args, message",
    [
        (((np.ones(3), np.ones(4)), 2), r"pad_batch\(batch\): every leaf must have the same sizes up to the batch axis"),
        ((np.ones(3), 0), r"pad_batch\(multiple=0\)"),
        ((np.ones(3), 2.0), r"pad_batch\(multiple=2.0\)"),
        ((np.ones((0, 2)), 2), r"pad_batch\(batch\): must not be empty"),
    ],
)
def test_pad_batch_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        sharding.pad_batch(*args)
    with pytest.raises(ValueError, match=r"pad_batch\(axis=-1\)"):
        sharding.pad_batch(np.ones(3), 2, axis=-1)


class TestWeightedMeanJittedAndNot(chex.TestCase):
    """weighted_mean, jitted and not jitted (chex variants)."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_weighted_mean_ignores_padding(self):
        values = jnp.array([1.0, 3.0, 100.0])
        mean = self.variant(sharding.weighted_mean)(values, jnp.array([1.0, 1.0, 0.0]))
        chex.assert_shape(mean, ())
        chex.assert_trees_all_close(mean, 2.0)
        chex.assert_trees_all_close(self.variant(sharding.weighted_mean)(values, jnp.zeros(3)), 0.0)  # not NaN
        with pytest.raises(ValueError, match=r"weighted_mean\(weight\): must have shape \(3,\), got shape \(2,\)"):
            self.variant(sharding.weighted_mean)(values, jnp.ones(2))

    @chex.variants(with_jit=True, without_jit=True)
    def test_weighted_mean_of_bool_or_int_values_is_a_float_fraction(self):
        mean = self.variant(sharding.weighted_mean)
        fraction = mean(jnp.array([True, False, True, True]), jnp.array([1.0, 1.0, 0.5, 0.0]))
        chex.assert_type(fraction, jnp.float32)
        chex.assert_trees_all_close(fraction, 1.5 / 2.5)
        chex.assert_trees_all_close(mean(jnp.array([1, 2]), jnp.array([0.5, 0.5])), 1.5)


def test_data_mesh_rejects_more_devices_than_available():
    with pytest.raises(ValueError, match="xla_force_host_platform_device_count"):
        sharding.data_mesh(10_000)


def test_sharded_step_on_four_devices_equals_single_device_step(multidevice):
    out = multidevice(
        """
        import jax, jax.numpy as jnp, numpy as np, optax
        from jeq import sharding
        assert len(jax.devices()) == 4
        tx = optax.sgd(0.1)

        def train_step(params, opt_state, x, y, weight):
            def loss(p):
                per_example = (x @ p["w"] + p["b"] - y) ** 2
                return sharding.weighted_mean(per_example, weight)
            value, grads = jax.value_and_grad(loss)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, value

        rng = np.random.default_rng(0)
        x, y = rng.normal(size=(10, 3)).astype(np.float32), rng.normal(size=10).astype(np.float32)
        params = {"w": jnp.ones(3), "b": jnp.zeros(())}
        # reference: one device, unpadded batch of 10
        ref = jax.jit(train_step)(params, tx.init(params), x, y, jnp.ones(10))
        mesh = sharding.data_mesh(4)
        step = sharding.data_parallel(train_step, mesh, batch_argnums=(2, 3, 4))
        p, s = sharding.replicate((params, tx.init(params)), mesh)
        xb, yb, wb = sharding.shard_batch((x, y), mesh)   # 10 -> padded to 12
        assert xb.shape == (12, 3) and xb.sharding.spec == jax.sharding.PartitionSpec("data")
        assert sorted(s.data.shape for s in xb.addressable_shards) == [(3, 3)] * 4
        out = step(p, s, xb, yb, wb)
        for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(ref)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
        print("ok", len(out[0]["w"].sharding.device_set))
        """
    )
    assert out.split() == ["ok", "4"]


def test_ep_training_step_sharded_over_four_devices_matches_one_device(multidevice):
    # Tolerance: float32 sums reordered across devices, rtol 1e-5 / atol 1e-6 on every parameter.
    out = multidevice(
        """
        import jax, jax.numpy as jnp, numpy as np
        from jeq import sharding
        from jeq.eqprop import hopfield
        trainer = hopfield.ep_trainer(hopfield.layer_sgd((0.1, 0.05)), beta=0.5, free_steps=8, nudged_steps=3,
                                      nudging="centered")
        params = hopfield.init(jax.random.key(0), [12, 16, 3])
        rng = np.random.default_rng(0)
        x = rng.uniform(size=(10, 12)).astype(np.float32)   # 10 examples: uneven over 4 devices
        y = rng.integers(0, 3, size=10).astype(np.int32)
        key = jax.random.key(1)
        copy = lambda t: jax.tree.map(jnp.array, t)
        ref_params, _, ref_metrics = trainer.train_step(copy(params), trainer.init(copy(params)), key, x, y)
        mesh = sharding.data_mesh(4)
        step = sharding.data_parallel(trainer.train_step, mesh, batch_argnums=(3, 4, 5))
        p = sharding.replicate(copy(params), mesh)
        o = sharding.replicate(trainer.init(copy(params)), mesh)
        xb, yb, wb = sharding.shard_batch((x, y), mesh)
        assert xb.shape == (12, 12) and xb.sharding.spec == jax.sharding.PartitionSpec("data")
        assert sorted(s.data.shape[0] for s in xb.addressable_shards) == [3, 3, 3, 3]
        new_params, _, metrics = step(p, o, key, xb, yb, wb)
        for a, b in zip(jax.tree.leaves(new_params), jax.tree.leaves(ref_params)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(float(metrics.loss), float(ref_metrics.loss), rtol=1e-5)
        print("ok")
        """
    )
    assert out.strip() == "ok"


def test_opteq_training_step_sharded_over_four_devices_matches_one_device(multidevice):
    # Tolerance: float32 reductions reordered across devices and batch-level solver stopping; rtol 1e-4 / atol 1e-5.
    out = multidevice(
        """
        import jax, jax.numpy as jnp, numpy as np, optax
        from jeq import equilibrium as eq, sharding
        model = eq.opteq(features=12, hidden=8, classes=3, tol=1e-5, maxiter=100, axis_name=eq.BATCH_AXIS)
        tx = optax.adam(1e-2)
        step = eq.make_train_step(model.apply, tx)
        params = model.init(jax.random.key(0))
        rng = np.random.default_rng(0)
        x = rng.normal(size=(10, 12)).astype(np.float32)   # 10 examples: uneven over 4 devices
        y = rng.integers(0, 3, size=10).astype(np.int32)
        ref_params, _, ref_metrics = step(params, tx.init(params), x, y)
        mesh = sharding.data_mesh(4)
        parallel = sharding.data_parallel(step, mesh, batch_argnums=(2, 3, 4))
        p, o = sharding.replicate((params, tx.init(params)), mesh)
        xb, yb, wb = sharding.shard_batch((x, y), mesh)
        assert xb.sharding.spec == jax.sharding.PartitionSpec("data") and xb.shape == (12, 12)
        assert sorted(s.data.shape[0] for s in xb.addressable_shards) == [3, 3, 3, 3]
        new_params, _, metrics = parallel(p, o, xb, yb, wb)
        for a, b in zip(jax.tree.leaves(new_params), jax.tree.leaves(ref_params)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(float(metrics.loss), float(ref_metrics.loss), rtol=1e-5)
        assert float(metrics.converged) == 1.0
        print("ok")
        """
    )
    assert out.strip() == "ok"


def test_sharded_batched_evaluation_of_gemm_candidates_equals_unsharded(multidevice):
    out = multidevice(
        """
        import jax, numpy as np
        from jeq import sharding
        from jeq.gemm import AnalyticLandscape
        plain = AnalyticLandscape.tvm_gemm(64, 128, 128)
        sharded = AnalyticLandscape.tvm_gemm(64, 128, 128, mesh=sharding.data_mesh(4))
        genomes = plain.space.sample(np.random.default_rng(0), 203)   # 203 candidates: uneven over 4 devices
        a, b = plain.evaluate(genomes), sharded.evaluate(genomes)
        assert a.shape == b.shape == (203,)
        np.testing.assert_array_equal(a, b)
        print("ok", int(np.isfinite(a).sum()))
        """
    )
    assert out.split()[0] == "ok" and int(out.split()[1]) > 0


_WORKER = """
import sys
import numpy as np, jax, optax
from jeq import sharding
sharding.initialize_multihost(sys.argv[1], 2, int(sys.argv[2]))
assert jax.process_count() == 2 and len(jax.devices()) == 4 and len(jax.local_devices()) == 2
tx = optax.sgd(0.1)

def train_step(params, opt_state, x, y, weight):
    def loss(p):
        return sharding.weighted_mean((x @ p["w"] + p["b"] - y) ** 2, weight)
    value, grads = jax.value_and_grad(loss)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value

rng = np.random.default_rng(0)
x, y = rng.normal(size=(10, 3)).astype(np.float32), rng.normal(size=10).astype(np.float32)
params = {"w": np.ones(3, np.float32), "b": np.zeros((), np.float32)}
mesh = sharding.data_mesh()
step = sharding.data_parallel(train_step, mesh, batch_argnums=(2, 3, 4))
p, s = sharding.replicate((params, tx.init(params)), mesh)
xb, yb, wb = sharding.shard_batch((x, y), mesh)   # the same global batch on both processes
assert xb.shape == (12, 3) and sum(sh.data.shape[0] for sh in xb.addressable_shards) == 6
out = step(p, s, xb, yb, wb)
w = np.asarray(out[0]["w"].addressable_data(0))
g = 2 * ((x @ params["w"] + params["b"] - y)[:, None] * x).mean(0)   # one-process full-batch gradient
np.testing.assert_allclose(w, params["w"] - 0.1 * g, rtol=1e-5, atol=1e-6)
print("ok", jax.process_index())
"""


def _run_two_processes(tmp_path, worker: str, devices_per_process: int) -> None:
    """Run ``worker`` as processes 0 and 1 of a 2-process gloo job on this machine (argv: coordinator, process id,
    tmp_path); each must print ``ok <process id>`` last."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        port = sock.getsockname()[1]
    script = tmp_path / "worker.py"
    script.write_text(worker)
    repo = pathlib.Path(__file__).resolve().parents[2]  # workers import experiments.harness from the checkout
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices_per_process}",
               JAX_PLATFORMS="cpu", PYTHONPATH=os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")])))
    procs = [subprocess.Popen([sys.executable, str(script), f"localhost:{port}", str(i), str(tmp_path)], env=env,
                              cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outs = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("two-process run timed out")
        assert proc.returncode == 0, err[-3000:]
        outs.append(out.split()[-2:])
    assert sorted(outs) == [["ok", "0"], ["ok", "1"]]


def test_two_processes_train_like_one(tmp_path):
    """Multi-host path on one machine: 2 processes x 2 CPU devices (gloo), uneven batch, equals one process."""
    _run_two_processes(tmp_path, _WORKER, devices_per_process=2)


_RESUME_WORKER = """
import sys, pathlib
from jeq import sharding
sharding.initialize_multihost(sys.argv[1], 2, int(sys.argv[2]))
import jax
from experiments import harness

me = jax.process_index()
home = pathlib.Path(sys.argv[3]) / f"host{me}"          # each host its own filesystem
ckpt = harness.Checkpoint(home / "seed_0.ckpt")
ckpt.save({"step": 5 if me == 0 else 2})               # killed at different moments: the hosts disagree
state = ckpt.load(default={"step": 0})
assert state == {"step": 5}, state                      # every host resumes from process 0's step

if me == 0:                                             # a seed that only host 0 recorded as finished
    harness.atomic_write_json(home / "seed_1.json", {"seed": 1, "seconds": 1.0, "metrics": {"x": 7.0}})
payload = harness.from_process_zero((home / "seed_1.json").read_bytes() if (home / "seed_1.json").exists() else None)
assert payload is not None and b'"x": 7.0' in payload
assert harness.from_process_zero(None) is None
print("ok", me)
"""


def test_a_killed_multi_host_run_resumes_every_process_from_process_zero(tmp_path):
    """Hosts whose checkpoints disagree after a kill all resume from process 0's state and seed records."""
    _run_two_processes(tmp_path, _RESUME_WORKER, devices_per_process=1)
