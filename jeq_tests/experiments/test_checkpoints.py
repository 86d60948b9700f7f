"""experiments.harness checkpoints (issue 18, items 4-5): msgpack, never pickle; every state the experiments save comes
back equal; a pickle is refused without being run; a damaged checkpoint or seed record is reported with its path and
the seed is recomputed."""

from __future__ import annotations

import dataclasses
import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments import harness
from jeq.equilibrium import mon

# A pickle that runs ``os.system("touch jeq_pickle_ran")`` when unpickled (protocol 4, as the old harness wrote).
EVIL_PICKLE = (b"\x80\x04\x95C\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x04step\x94K\x03\x8c\x04evil\x94\x8c\x05posix"
               b"\x94\x8c\x06system\x94\x93\x94\x8c\x14touch jeq_pickle_ran\x94\x85\x94R\x94u.")


def _same(a, b):
    """Equal values with equal Python types all the way down (tuples stay tuples, NamedTuples their class)."""
    assert type(a) is type(b) or (isinstance(a, jax.Array) and isinstance(b, np.ndarray)), (type(a), type(b))
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    elif isinstance(a, (np.ndarray, jax.Array, np.generic)):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b)
    else:
        assert a == b


def test_every_kind_of_state_the_experiments_save_round_trips(tmp_path):
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2, jnp.bfloat16)}
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(optax.cosine_decay_schedule(1e-3, 10)))
    opt_state = tx.update(params, tx.init(params), params)[1]
    mon_params = mon(features=4, hidden=3, classes=2).init(jax.random.key(0))
    state = {
        "params": params, "opt_state": opt_state, "mon": mon_params,  # optax and jeq NamedTuples, nested
        "epoch": 3, "curve": [0.5, float("nan"), float("inf")], "epoch_s": [], "done": None, "name": "mon/87",
        "finished": {"run": {"mse": np.float32(0.25), "steps": np.int64(7), "ok": True, "best": 2**70}},
        0.01: "float key", (1, "a"): "tuple key", 3: [(1, 2), [3, (4,)]],
        "rng_state": np.random.default_rng(5).bit_generator.state, "generator": np.random.default_rng(6),
        "legacy": np.random.RandomState(7), "key": jax.random.key(8), "raw_key": jax.random.PRNGKey(9),
        "particles": (jnp.arange(4.0), jnp.zeros((2, 0))), "bytes": b"\x00\x01", "complex": 1 - 2j,
    }
    ckpt = harness.Checkpoint(tmp_path / "seed_0.ckpt")
    assert ckpt.load(default="nothing yet") == "nothing yet"
    ckpt.save(state)
    assert ckpt.path.read_bytes().startswith(harness.CHECKPOINT_MAGIC)
    back = ckpt.load()
    for k in ("generator", "legacy", "key"):
        state.pop(k), back.pop(k)
    _same(state, back)  # JAX arrays come back as numpy arrays, as after jax.device_get
    chex.assert_trees_all_equal(jax.device_get(opt_state), back["opt_state"])
    # optimiser states and RNGs resume exactly where they stopped
    ckpt.save({"gen": np.random.default_rng(6), "legacy": np.random.RandomState(7), "key": jax.random.key(8)})
    again = ckpt.load()
    assert again["gen"].random() == np.random.default_rng(6).random()
    assert again["legacy"].rand() == np.random.RandomState(7).rand()
    chex.assert_trees_all_equal(jax.random.uniform(again["key"]), jax.random.uniform(jax.random.key(8)))
    updates, _ = tx.update(params, back["opt_state"], params)
    chex.assert_trees_all_close(updates, tx.update(params, opt_state, params)[0])


def test_a_pickle_checkpoint_is_refused_and_never_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ckpt = harness.Checkpoint(tmp_path / "seed_0.ckpt")
    ckpt.path.write_bytes(EVIL_PICKLE)
    with pytest.raises(harness.UnreadableFile, match="seed_0.ckpt: holds a pickle payload, refused") as err:
        ckpt.load(default={})
    assert err.value.path == ckpt.path
    assert not (tmp_path / "jeq_pickle_ran").exists()


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[: len(b) // 2], "unreadable checkpoint"),
    (lambda b: b"JEQ-CKPT\x00v9\n" + b[len(harness.CHECKPOINT_MAGIC):], "from another jeq version"),
    (lambda b: b'{"step": 1}', "not a jeq checkpoint"),
    (lambda b: b"", "not a jeq checkpoint"),
])
def test_a_damaged_checkpoint_names_its_path(tmp_path, damage, message):
    ckpt = harness.Checkpoint(tmp_path / "seed_0.ckpt")
    ckpt.save({"params": {"w": np.arange(100.0)}, "step": 4})
    ckpt.path.write_bytes(damage(ckpt.path.read_bytes()))
    with pytest.raises(harness.UnreadableFile, match=message) as err:
        ckpt.load()
    assert str(err.value).startswith(str(ckpt.path))


def test_an_unsupported_value_fails_at_save_and_keeps_the_previous_checkpoint(tmp_path):
    ckpt = harness.Checkpoint(tmp_path / "seed_0.ckpt")
    ckpt.save({"step": 1})
    with pytest.raises(TypeError, match="cannot save a builtins.function"):
        ckpt.save({"step": 2, "fn": lambda x: x})
    with pytest.raises(TypeError, match="object arrays"):
        ckpt.save({"step": 2, "a": np.array([object()])})
    assert ckpt.load() == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["seed_0.ckpt"]


def test_a_checkpoint_cannot_name_arbitrary_callables(tmp_path):
    """A NamedTuple node names its type; a file naming a function (or an unloaded module) instead is refused."""
    from flax import serialization

    ckpt = harness.Checkpoint(tmp_path / "seed_0.ckpt")
    for evil, message in (("os:system", "not a NamedTuple or dataclass type"),
                          ("builtins:eval", "not a NamedTuple or dataclass type"),
                          ("some_plugin.hooks:Evil", "from a module that is not loaded")):
        tree = dict(harness.encode_state(optax.EmptyState()), type=evil)
        ckpt.path.write_bytes(harness.CHECKPOINT_MAGIC + serialization.msgpack_serialize(tree))
        with pytest.raises(harness.UnreadableFile, match=message):
            ckpt.load()


@pytest.fixture(autouse=True)
def _pinned_commit(monkeypatch):
    """A fixed clean commit: the run folder must not change under the test when someone edits the tree meanwhile."""
    monkeypatch.setattr(harness, "git_sha", lambda: "a" * 40)


@dataclasses.dataclass(frozen=True)
class Toy(harness.BaseConfig):
    steps: int = 4
    """Steps per seed."""


def _run_seed(calls):
    def run_seed(config, seed, ckpt):
        state = ckpt.load(default={"step": 0, "trace": []})
        for step in range(state["step"], config.steps):
            calls.append((seed, step))
            state = {"step": step + 1, "trace": state["trace"] + [float(step + seed)]}
            ckpt.save(state)
        return {"final": state["trace"][-1], "curve/trace": state["trace"]}

    return run_seed


def _run_dir(tmp_path):
    (run_dir,) = (tmp_path / "toy" / "runs").iterdir()
    return run_dir


def test_a_damaged_seed_record_is_reported_and_the_seed_recomputed(tmp_path, capsys):
    argv = ["--out", str(tmp_path), "--seeds", "0", "1", ]
    calls: list = []
    harness.run("toy", Toy, _run_seed(calls), argv=argv)
    records = _run_dir(tmp_path)
    good = (records / "seed_1.json").read_text()
    (records / "seed_0.json").write_text(good[: len(good) // 2])  # truncated
    capsys.readouterr()
    calls.clear()
    result = harness.run("toy", Toy, _run_seed(calls), argv=argv)
    err = capsys.readouterr().err
    assert f"WARNING: [toy] seed 0: {records / 'seed_0.json'}: unreadable seed record" in err
    assert calls == [(0, s) for s in range(4)]  # seed 0 recomputed, seed 1 reused
    assert result["metrics"]["final"]["values"] == [3.0, 4.0]
    assert json.loads((records / "seed_0.json").read_text())["metrics"]["final"] == 3.0  # repaired on disk
    # a record from another format version (no "format" field, as before issue 18) is recomputed too
    stored = json.loads(good)
    del stored["format"]
    (records / "seed_1.json").write_text(json.dumps(stored))
    calls.clear()
    harness.run("toy", Toy, _run_seed(calls), argv=argv)
    assert "seed record format None, expected 1" in capsys.readouterr().err and calls == [(1, s) for s in range(4)]


@pytest.mark.parametrize("payload", [EVIL_PICKLE, b"JEQ-CKPT\x00v1\n\xde\xad"])
def test_a_damaged_checkpoint_is_reported_and_the_seed_recomputed(tmp_path, capsys, payload, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["--out", str(tmp_path), "--seeds", "0", ]
    calls: list = []
    harness.run("toy", Toy, _run_seed(calls), argv=argv)  # creates the run folder
    records = _run_dir(tmp_path)
    (records / "seed_0.json").unlink()
    (records / "seed_0.ckpt").write_bytes(payload)  # killed mid-seed, then the checkpoint was damaged
    calls.clear()
    result = harness.run("toy", Toy, _run_seed(calls), argv=argv)
    err = capsys.readouterr().err
    assert f"WARNING: [toy] seed 0: {records / 'seed_0.ckpt'}: " in err and "recomputing the seed" in err
    assert calls == [(0, s) for s in range(4)] and result["metrics"]["final"]["values"] == [3.0]
    assert not (records / "seed_0.ckpt").exists() and not (tmp_path / "jeq_pickle_ran").exists()


def test_no_pickle_import_outside_the_cifar10_loader():
    """CIFAR-10's own format is pickle (jeq.data reads those batches); nothing else in the library or the
    experiments unpickles."""
    import ast
    import pathlib

    root = pathlib.Path(harness.__file__).resolve().parents[1]
    offenders = []
    for folder in ("jeq", "experiments"):
        for path in sorted((root / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module] if isinstance(node, ast.ImportFrom) else [])
                if {"pickle", "cloudpickle", "dill"} & set(names):
                    offenders.append(path.relative_to(root).as_posix())
    assert offenders == ["jeq/data/images.py"]
