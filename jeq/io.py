"""Files and provenance shared by the library, the experiments and the benchmarks.

- :func:`atomic_write_bytes` / :func:`atomic_write_text` / :func:`atomic_write_json`: write to a temporary file in the
  target's folder, ``fsync``, then ``os.replace``: a reader, or a run restarted after a kill, sees the old file or the
  new one, never half of one. The GEMM cache, the experiment harness and the searches all write through these.
- :func:`git_sha`, :func:`versions`, :func:`device_info`: what every results file records about the code and machine
  that produced it.
- :func:`dumps_checkpoint` / :func:`loads_checkpoint` (on :func:`encode_state` / :func:`decode_state`): the one
  checkpoint format of the experiment harness and the RL tuner, ``CHECKPOINT_MAGIC`` then msgpack of a tagged tree
  (arrays, plain values, NamedTuples, dataclasses, PRNG keys, numpy generators), never a pickle; anything else it
  reads is refused with :class:`UnreadableFile`.

>>> import json, pathlib, tempfile
>>> from jeq.io import atomic_write_json
>>> with tempfile.TemporaryDirectory() as folder:
...     path = pathlib.Path(folder) / "out" / "r.json"
...     atomic_write_json(path, {"loss": 0.5})
...     print(json.loads(path.read_text()))
{'loss': 0.5}
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["CHECKPOINT_MAGIC", "UnreadableFile", "atomic_write_bytes", "atomic_write_json", "atomic_write_text",
           "decode_state", "device_info", "dumps_checkpoint", "encode_state", "git_sha", "json_default",
           "loads_checkpoint", "versions"]

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
"""The folder holding the ``jeq`` package (the repository root in a checkout)."""


def atomic_write_bytes(path: str | os.PathLike, payload: bytes) -> None:
    """Write ``payload`` to ``path`` atomically (temp file in the same folder, fsync, ``os.replace``).

    Parent folders are created. On any error the temporary file is removed and the old ``path`` is left untouched.

    >>> import pathlib, tempfile
    >>> from jeq.io import atomic_write_bytes
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = pathlib.Path(folder) / "cache" / "blob.bin"
    ...     atomic_write_bytes(path, b"old")
    ...     atomic_write_bytes(path, b"new")
    ...     print(path.read_bytes(), sorted(p.name for p in path.parent.iterdir()))  # no temporary file left
    b'new' ['blob.bin']
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` encoded as UTF-8.

    >>> import pathlib, tempfile
    >>> from jeq.io import atomic_write_text
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = pathlib.Path(folder) / "note.txt"
    ...     atomic_write_text(path, "β = 0.5")
    ...     print(path.read_bytes())
    b'\\xce\\xb2 = 0.5'
    """
    atomic_write_bytes(path, text.encode("utf-8"))


def json_default(obj: Any) -> Any:
    """``json.dumps(default=...)`` hook: numpy scalars and arrays (and JAX arrays), sets and paths become JSON.

    >>> import json, pathlib
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> from jeq.io import json_default
    >>> json.dumps({"n": np.int64(3), "w": jnp.arange(3), "tags": {"b", "a"}, "out": pathlib.PurePosixPath("r/x")},
    ...            default=json_default)
    '{"n": 3, "w": [0, 1, 2], "tags": ["a", "b"], "out": "r/x"}'
    """
    if isinstance(obj, np.generic):
        return obj.item()
    if hasattr(obj, "__array__"):
        return np.asarray(obj).tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, pathlib.PurePath):
        return str(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


def atomic_write_json(path: str | os.PathLike, obj: Any, *, sort_keys: bool = False) -> None:
    """Atomically write ``obj`` as indented JSON (numpy and JAX arrays become lists; NaN and inf are kept).

    >>> import json, pathlib, tempfile
    >>> import numpy as np
    >>> from jeq.io import atomic_write_json
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = pathlib.Path(folder) / "results.json"
    ...     atomic_write_json(path, {"loss": np.float32(0.25), "curve": np.array([1.0, np.nan])})
    ...     print(json.loads(path.read_text()))
    {'loss': 0.25, 'curve': [1.0, nan]}
    """
    text = json.dumps(obj, indent=1, default=json_default, allow_nan=True, sort_keys=sort_keys)
    atomic_write_bytes(path, text.encode("utf-8"))


def git_sha(root: str | os.PathLike = REPO_ROOT) -> str:
    """HEAD of the git repository at ``root``, with ``-dirty`` when tracked files have uncommitted changes;
    ``unknown`` outside git.

    >>> import re, tempfile
    >>> from jeq.io import git_sha
    >>> bool(re.fullmatch(r"[0-9a-f]{40}(-dirty)?|unknown", git_sha()))
    True
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     print(git_sha(folder))
    unknown
    """
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


_PACKAGES = ("jeq", "jax", "jaxlib", "flax", "optax", "jaxopt", "numpy")


def versions(extra: Iterable[str] = ()) -> dict[str, str]:
    """Versions of Python, jeq and the libraries results depend on (plus the ``extra`` distributions named).

    >>> import jax
    >>> from jeq.io import versions
    >>> found = versions(extra=["no-such-distribution"])
    >>> sorted(found)
    ['flax', 'jax', 'jaxlib', 'jaxopt', 'jeq', 'no-such-distribution', 'numpy', 'optax', 'python']
    >>> found["jax"] == jax.__version__, found["no-such-distribution"]
    (True, 'not installed')
    """
    out = {"python": platform.python_version()}
    for pkg in (*_PACKAGES, *extra):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def device_info() -> dict[str, Any]:
    """Backend, device kind and device count as JAX sees them.

    >>> import jax
    >>> from jeq.io import device_info
    >>> info = device_info()
    >>> sorted(info), info["device_count"] == jax.device_count()
    (['backend', 'device_count', 'device_kind'], True)
    """
    import jax

    devices = jax.devices()
    return {"backend": jax.default_backend(), "device_kind": devices[0].device_kind, "device_count": len(devices)}


# ------------------------------------------------------------------------------------------------- checkpoints


class UnreadableFile(ValueError):
    """A seed record or checkpoint that cannot be read back (truncated, another format or version, a pickle); the
    message starts with the file's path, and ``path`` holds it when known.

    >>> from jeq.io import UnreadableFile, loads_checkpoint
    >>> try:
    ...     loads_checkpoint(b"\\x80\\x04K\\x01.", where="seed_0.ckpt")  # a pickle of the int 1
    ... except UnreadableFile as err:
    ...     print(str(err)[:44])
    seed_0.ckpt: holds a pickle payload, refused
    """

    path: pathlib.Path | None = None


CHECKPOINT_MAGIC = b"JEQ-CKPT\x00v1\n"
"""First bytes of every checkpoint file: the format name and its version (the rest is msgpack)."""

_PICKLE_FRAMES = (b"\x80",)  # protocol 2+ pickles start with PROTO (0x80)
_TAG = "~"  # the key that marks an encoded node: every dict in the payload is an encoded node, never a user dict
_BIG_INT = 2**63
_IMPORTABLE = ("jeq", "experiments", "optax", "flax", "jax", "chex", "numpy", "evosax", "jaxopt", "collections")
"""Top-level packages whose NamedTuple / dataclass types a checkpoint may name (others must already be imported)."""
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


def _type_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _resolve_type(name: str, where: str) -> type:
    """The NamedTuple or dataclass type ``module:qualname`` names; nothing else is ever looked up or called."""
    import importlib

    module_name, _, qualname = name.partition(":")
    module = sys.modules.get(module_name)
    if module is None and module_name.split(".")[0] in _IMPORTABLE:
        module = importlib.import_module(module_name)
    if module is None:
        raise UnreadableFile(f"{where}: names type {name!r} from a module that is not loaded")
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    is_namedtuple = isinstance(obj, type) and issubclass(obj, tuple) and hasattr(obj, "_fields")
    if not (is_namedtuple or (isinstance(obj, type) and dataclasses.is_dataclass(obj))):
        raise UnreadableFile(f"{where}: {name!r} is not a NamedTuple or dataclass type")
    return obj


def encode_state(state: Any) -> Any:
    """``state`` as a msgpack-ready tree of plain values, numpy arrays and tagged containers.

    Supported: ``None``, bools, ints (any size), floats, complex, strings, bytes, numpy arrays and scalars, JAX arrays
    (PRNG key arrays included), lists, tuples, NamedTuples (optax states, jeq parameters), dataclasses, dicts with
    any such keys, and numpy ``Generator`` / ``RandomState`` objects. Anything else is refused with ``TypeError`` when
    saving, not when resuming.

    >>> import numpy as np
    >>> from jeq.io import encode_state
    >>> encode_state({"step": 2, "w": np.zeros(2)})
    {'~': 'dict', 'v': [['step', 2], ['w', array([0., 0.])]]}
    """
    import jax

    if state is None or isinstance(state, (bool, str, bytes, float, complex)):
        return state
    if isinstance(state, int):
        return state if -_BIG_INT <= state < _BIG_INT else {_TAG: "int", "v": str(state)}
    if isinstance(state, np.generic):
        if state.dtype == object:
            raise TypeError("jeq.io.encode_state: numpy object scalars cannot be saved")
        return state
    if isinstance(state, jax.Array) and jax.dtypes.issubdtype(state.dtype, jax.dtypes.prng_key):
        return {_TAG: "prng_key", "impl": str(jax.random.key_impl(state)),
                "data": np.asarray(jax.random.key_data(state))}
    if isinstance(state, (np.ndarray, jax.Array)):
        array = np.asarray(state)
        if array.dtype == object:
            raise TypeError("jeq.io.encode_state: numpy object arrays cannot be saved")
        return array
    if isinstance(state, dict):
        return {_TAG: "dict", "v": [[encode_state(k), encode_state(v)] for k, v in state.items()]}
    if isinstance(state, tuple) and hasattr(type(state), "_fields"):
        return {_TAG: "namedtuple", "type": _type_name(type(state)), "v": [encode_state(v) for v in state]}
    if isinstance(state, (list, tuple)):
        return {_TAG: type(state).__name__, "v": [encode_state(v) for v in state]}
    if dataclasses.is_dataclass(state) and not isinstance(state, type):
        fields = {f.name: encode_state(getattr(state, f.name)) for f in dataclasses.fields(state) if f.init}
        return {_TAG: "dataclass", "type": _type_name(type(state)), "v": fields}
    if isinstance(state, np.random.Generator):
        return {_TAG: "np_generator", "v": encode_state(state.bit_generator.state)}
    if isinstance(state, np.random.RandomState):
        return {_TAG: "np_random_state", "v": encode_state(state.get_state(legacy=False))}
    raise TypeError(f"jeq.io.encode_state: cannot save a {type(state).__module__}.{type(state).__qualname__}"
                    " (checkpoints hold pytrees of arrays and plain Python values)")


def decode_state(tree: Any, where: str = "checkpoint") -> Any:
    """The inverse of :func:`encode_state`; constructs nothing but containers, arrays and the NamedTuple/dataclass
    types it names (:data:`_IMPORTABLE`). Raises :class:`UnreadableFile` on anything it did not write.

    >>> import optax
    >>> from jeq.io import decode_state, encode_state
    >>> state = optax.ScaleByScheduleState(count=3)
    >>> decode_state(encode_state(state)) == state
    True
    """
    if tree is None or isinstance(tree, (bool, int, float, complex, str, bytes, np.ndarray, np.generic)):
        return tree
    if isinstance(tree, list):  # only inside tagged nodes
        raise UnreadableFile(f"{where}: untagged list")
    if not isinstance(tree, dict) or not isinstance(tree.get(_TAG), str):
        raise UnreadableFile(f"{where}: unexpected {type(tree).__name__} node")
    tag, value = tree[_TAG], tree.get("v")

    def items(v):
        if not isinstance(v, list):
            raise UnreadableFile(f"{where}: malformed {tag!r} node")
        return [decode_state(x, where) for x in v]

    if tag == "int":
        return int(value)
    if tag == "list":
        return items(value)
    if tag == "tuple":
        return tuple(items(value))
    if tag == "dict":
        if not (isinstance(value, list) and all(isinstance(p, list) and len(p) == 2 for p in value)):
            raise UnreadableFile(f"{where}: malformed dict node")
        return {_hashable(decode_state(k, where)): decode_state(v, where) for k, v in value}
    if tag == "namedtuple":
        return _resolve_type(tree["type"], where)(*items(value))
    if tag == "dataclass":
        if not isinstance(value, dict):
            raise UnreadableFile(f"{where}: malformed dataclass node")
        return _resolve_type(tree["type"], where)(**{k: decode_state(v, where) for k, v in value.items()})
    if tag == "prng_key":
        import jax

        return jax.random.wrap_key_data(tree["data"], impl=tree["impl"])
    if tag == "np_generator":
        state = decode_state(value, where)
        name = state.get("bit_generator") if isinstance(state, dict) else None
        if name not in _BIT_GENERATORS:
            raise UnreadableFile(f"{where}: unknown numpy bit generator {name!r}")
        bit_generator = getattr(np.random, name)()
        bit_generator.state = state
        return np.random.Generator(bit_generator)
    if tag == "np_random_state":
        random_state = np.random.RandomState()
        random_state.set_state(decode_state(value, where))
        return random_state
    raise UnreadableFile(f"{where}: unknown node type {tag!r}")


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key


def dumps_checkpoint(state: Any) -> bytes:
    """The bytes a checkpoint holds (``experiments.harness.Checkpoint``, ``jeq.tune.tune``): :data:`CHECKPOINT_MAGIC` then ``flax.serialization`` msgpack of
    :func:`encode_state` (no pickle: loading it runs no code from the file).

    >>> import numpy as np
    >>> from jeq.io import dumps_checkpoint
    >>> dumps_checkpoint({"step": 3, "w": np.arange(3.0)})[:9]
    b'JEQ-CKPT\\x00'
    """
    from flax import serialization

    return CHECKPOINT_MAGIC + serialization.msgpack_serialize(encode_state(state), in_place=True)


def loads_checkpoint(payload: bytes, where: str = "checkpoint") -> Any:
    """Inverse of :func:`dumps_checkpoint`; :class:`UnreadableFile` (naming ``where``) for a pickle, a file from
    another format or version, or a truncated one.

    >>> import numpy as np
    >>> from jeq.io import dumps_checkpoint, loads_checkpoint
    >>> loads_checkpoint(dumps_checkpoint({"step": 3, "w": np.arange(3.0)}))
    {'step': 3, 'w': array([0., 1., 2.])}
    """
    from flax import serialization

    if not payload.startswith(CHECKPOINT_MAGIC):
        if payload[:1] in _PICKLE_FRAMES or payload[:1] in (b"(", b"]", b"}"):
            raise UnreadableFile(f"{where}: holds a pickle payload, refused (unpickling a file runs code from it; "
                                 "checkpoints are msgpack since issue 18): delete it to recompute the seed")
        if payload.startswith(CHECKPOINT_MAGIC[:9]):
            raise UnreadableFile(f"{where}: checkpoint format {payload[9:12]!r} from another jeq version, expected "
                                 f"{CHECKPOINT_MAGIC[9:11]!r}")
        raise UnreadableFile(f"{where}: not a jeq checkpoint (no {CHECKPOINT_MAGIC[:8]!r} header)")
    try:
        tree = serialization.msgpack_restore(payload[len(CHECKPOINT_MAGIC):])
    except Exception as err:  # msgpack raises several unrelated types for truncated/corrupt input
        raise UnreadableFile(f"{where}: unreadable checkpoint ({type(err).__name__}: {err})") from err
    try:
        return decode_state(tree, where)
    except UnreadableFile:
        raise
    except Exception as err:
        raise UnreadableFile(f"{where}: unreadable checkpoint ({type(err).__name__}: {err})") from err
