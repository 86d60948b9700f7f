"""Every name a jeq package exports is documented, and every docstring example runs (issue 17, item 3).

One test pair per public module of ``jeq`` (``jeq.prox``, ``jeq.fixedpoint``, ..., ``jeq.io``, ``jeq.validate``,
``jeq.cli``: every ``jeq.<name>`` whose name does not start with ``_``, found on disk so a new package is covered the
day it lands). The exported names are the module's ``__all__``, which every public module must define.

The rule (a), per exported name:

* **function or class** (anything callable, including ``functools.lru_cache`` wrappers and ``typing.NamedTuple`` /
  dataclass classes): its own ``__doc__`` is a real docstring (not the ``Name(field, ...)`` signature that
  ``NamedTuple`` and ``dataclass`` write when there is none) and contains at least one ``>>>`` example.
* **constant or alias** (a dict, tuple, str, float, type alias ...): Python cannot attach a docstring to such a value,
  so it must be documented where Sphinx looks for one: an attribute docstring (a string literal on the statement right
  after its module-level assignment, PEP 257/PEP 224 style), a ``#:`` doc-comment on the line right above the
  assignment (``#: the methods compared in Table 1``), both in a module of the package, or a mention as ````NAME````
  in the docstring of the module that exports it. No example is required.

The rule (b): ``doctest.DocTestFinder`` collects the examples of every exported object (its docstring and those of
its methods and properties) plus the docstring of the module itself, and runs them with
``ELLIPSIS | NORMALIZE_WHITESPACE``; any failing example fails the package's test with doctest's report. As under
``pytest --doctest-modules``, an example sees a copy of its defining module's globals, but examples are meant to be
copied by users, so they import what they use. Examples must be fast (tiny shapes, no training runs), write files only
inside a ``tempfile.TemporaryDirectory``, download nothing, leave global state (``jax.config``, the working
directory) as they found it, and print platform-stable text (rounded floats, shapes, bools, ``...`` for reprs).
"""

from __future__ import annotations

import ast
import doctest
import importlib
import inspect
import pkgutil
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

import jeq

PUBLIC_MODULES = sorted(f"jeq.{m.name}" for m in pkgutil.iter_modules(jeq.__path__) if not m.name.startswith("_"))
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _exports(module_name: str) -> tuple[ModuleType, list[str]]:
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    assert names, f"{module_name} defines no __all__: its public names cannot be documented or tested"
    return module, list(names)


def _is_documented_callable(obj: object) -> bool:
    return inspect.isclass(obj) or callable(obj)


def _own_doc(obj: object) -> str:
    """The object's own docstring ('' for none or for the signature NamedTuple/dataclass generate when there is none)."""
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    doc = (doc or "").strip()
    if inspect.isclass(obj) and re.fullmatch(rf"{re.escape(obj.__name__)}\(.*\)", doc, flags=re.S):
        return ""
    return doc


def _package_files(module: ModuleType) -> list[Path]:
    path = Path(module.__file__)
    return sorted(path.parent.rglob("*.py")) if path.name == "__init__.py" else [path]


def _is_string(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _doc_commented(files: list[Path]) -> set[str]:
    """Names whose (module-level) assignment has a ``#:`` doc-comment right above it or a string literal right below."""
    names: set[str] = set()
    for file in files:
        source = file.read_text()
        lines = source.splitlines()
        body = ast.parse(source).body
        for node, next_node in zip(body, [*body[1:], None]):
            if isinstance(node, ast.Assign):
                targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                targets = [node.target.id]
            elif sys.version_info >= (3, 12) and isinstance(node, ast.TypeAlias):
                targets = [node.name.id]
            else:
                continue
            above = lines[node.lineno - 2].strip() if node.lineno >= 2 else ""
            if above.startswith("#:") or _is_string(next_node):
                names.update(targets)
    return names


def _undocumented(module_name: str) -> list[str]:
    module, names = _exports(module_name)
    commented = _doc_commented(_package_files(module))
    module_doc = module.__doc__ or ""
    problems = []
    for name in names:
        obj = getattr(module, name)
        if _is_documented_callable(obj):
            doc = _own_doc(obj)
            if not doc:
                problems.append(f"{module_name}.{name}: no docstring")
            elif ">>>" not in doc:
                problems.append(f"{module_name}.{name}: docstring has no >>> example")
        elif name not in commented and f"``{name}``" not in module_doc:
            problems.append(f"{module_name}.{name}: constant with no '#:' doc-comment and no ``{name}`` in the "
                            f"module docstring")
    return problems


def _doctests(module_name: str) -> list[doctest.DocTest]:
    module, names = _exports(module_name)
    finder = doctest.DocTestFinder()
    tests = doctest.DocTestFinder(recurse=False).find(module, module_name)
    seen = {id(module)}
    for name in names:
        obj = getattr(module, name)
        if id(obj) in seen or not _is_documented_callable(obj):
            continue
        seen.add(id(obj))
        defining = inspect.getmodule(inspect.unwrap(obj)) if callable(obj) else None
        tests += finder.find(obj, f"{module_name}.{name}", module=defining or False,
                             globs=vars(defining) if defining else {})
    return sorted((t for t in tests if t.examples), key=lambda t: t.name)


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_exported_name_is_documented_with_an_example(module_name):
    problems = _undocumented(module_name)
    assert not problems, f"{len(problems)} exported name(s) of {module_name} lack documentation:\n" + "\n".join(
        problems)


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_docstring_examples_run(module_name):
    tests = _doctests(module_name)
    assert tests, f"{module_name}: no docstring example to run"
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in tests:
        runner.run(test, out=report.append)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0
    assert result.failed == 0, (f"{result.failed} of {result.attempted} examples failed in {module_name}:\n"
                                + "".join(report)[-8000:])


def test_the_public_modules_are_found():
    assert {"jeq.prox", "jeq.fixedpoint", "jeq.equilibrium", "jeq.eqprop", "jeq.pathsgd", "jeq.gemm", "jeq.data",
            "jeq.validate", "jeq.io"} <= set(PUBLIC_MODULES)
