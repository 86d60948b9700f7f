"""House rules that a script can check: no module reaches into another module's private names, tests never import
benchmarks, and the library never imports experiments or benchmarks."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("jeq", "experiments", "benchmarks", "jeq_tests")
NAMEDTUPLE_API = {"_fields", "_replace", "_asdict", "_make", "_field_defaults"}


def _modules():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path, ast.parse(path.read_text(), filename=str(path))


def _imports(tree):
    """(module, name) for ``from module import name`` and (module, None) for ``import module``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                yield node.module, alias.name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None


def _ours(module: str) -> bool:
    return module.split(".")[0] in PACKAGES


def test_no_module_imports_another_modules_private_names():
    offenders = []
    for path, tree in _modules():
        for module, name in _imports(tree):
            private_name = name is not None and name.startswith("_") and not name.startswith("__")
            private_module = any(part.startswith("_") and not part.startswith("__") for part in module.split("."))
            if _ours(module) and (private_name or private_module):
                offenders.append(f"{path.relative_to(ROOT)}: from {module} import {name}")
    assert not offenders, "private names imported across modules:\n" + "\n".join(offenders)


def test_no_module_uses_another_modules_private_attributes():
    """``othermodule._helper`` through an imported module is the same breach as importing ``_helper``."""
    offenders = []
    for path, tree in _modules():
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if _ours(alias.name):
                        aliases[alias.asname or alias.name.split(".")[0]] = alias.name
            elif isinstance(node, ast.ImportFrom) and node.module and _ours(node.module):
                for alias in node.names:
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__") and node.attr not in NAMEDTUPLE_API):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value.id}.{node.attr}")
    assert not offenders, "private attributes of other modules used:\n" + "\n".join(offenders)


def test_data_flows_one_way():
    offenders = []
    for path, tree in _modules():
        package = path.relative_to(ROOT).parts[0]
        banned = {"jeq": ("experiments", "benchmarks", "jeq_tests"), "jeq_tests": ("benchmarks",),
                  "experiments": ("jeq_tests",), "benchmarks": ("jeq_tests",)}[package]
        for module, _ in _imports(tree):
            if module.split(".")[0] in banned:
                offenders.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not offenders, "\n".join(offenders)
