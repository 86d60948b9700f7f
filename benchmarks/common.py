"""What every benchmark JSON records, and where it goes.

``provenance()`` is the record the experiment JSONs carry (``jeq.io.git_sha``, ``jeq.io.versions``,
``jeq.io.device_info``) plus the command line and a UTC timestamp; ``write(out, name, result)`` merges it into the
result and writes ``<out>/<name>/<timestamp>.json`` atomically. ``external_reference(name)`` reads one quoted figure of
an original that is not a package from ``results/external_references.json`` (the one place those figures live).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import pathlib
import shlex
import sys
from collections.abc import Iterable
from typing import Any

from jeq.io import REPO_ROOT, atomic_write_json, device_info, git_sha, versions

EXTERNAL_REFERENCES = REPO_ROOT / "results" / "external_references.json"


def provenance(extra_packages: Iterable[str] = ()) -> dict[str, Any]:
    """git SHA (``-dirty`` when tracked files differ from HEAD), library versions, device, command, the host's CPU
    count and load average (a shared machine's load moves absolute times), and a UTC timestamp."""
    return {
        "git_sha": git_sha(),
        "versions": versions(extra=tuple(extra_packages)),
        "device_info": device_info(),
        "command": " ".join([f"python -m {_module_name()}", *map(shlex.quote, sys.argv[1:])]),
        "host": {"cpu_count": os.cpu_count(), "load_average_1_5_15": list(os.getloadavg())},
        "timestamp": _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ"),
    }


def _module_name() -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return spec.name if spec is not None else pathlib.Path(sys.argv[0]).stem


def write(out: str | pathlib.Path, name: str, result: dict[str, Any],
          extra_packages: Iterable[str] = ()) -> pathlib.Path:
    """Write ``result`` with :func:`provenance` (its keys win over the result's) to
    ``<out>/<name>/<timestamp>.json``."""
    record = {**result, **provenance(extra_packages)}
    path = pathlib.Path(out) / name / f"{record['timestamp']}.json"
    atomic_write_json(path, record)
    return path


def external_reference(name: str, path: str | pathlib.Path = EXTERNAL_REFERENCES) -> dict[str, Any]:
    """One entry of ``references`` in ``results/external_references.json`` (source, settings, versions, date, figure,
    label); a missing file or entry is an error, never a silent default."""
    references = json.loads(pathlib.Path(path).read_text())["references"]
    if name not in references:
        raise KeyError(f"benchmarks.common.external_reference(name={name!r}): not in {path}; "
                       f"known: {sorted(references)}")
    return references[name]
