"""Files and provenance shared by the library, the experiments and the benchmarks.

- :func:`atomic_write_bytes` / :func:`atomic_write_text` / :func:`atomic_write_json`: write to a temporary file in the
  target's folder, ``fsync``, then ``os.replace``: a reader, or a run restarted after a kill, sees the old file or the
  new one, never half of one. The GEMM cache, the experiment harness and the searches all write through these.
- :func:`git_sha`, :func:`versions`, :func:`device_info`: what every results file records about the code and machine
  that produced it.

>>> import json, pathlib, tempfile
>>> from jeq.io import atomic_write_json
>>> with tempfile.TemporaryDirectory() as folder:
...     path = pathlib.Path(folder) / "out" / "r.json"
...     atomic_write_json(path, {"loss": 0.5})
...     print(json.loads(path.read_text()))
{'loss': 0.5}
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import pathlib
import platform
import subprocess
import tempfile
from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["atomic_write_bytes", "atomic_write_json", "atomic_write_text", "device_info", "git_sha", "json_default",
           "versions"]

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
