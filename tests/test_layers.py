"""The architecture, checked: which package may import which, and what the pure core may never touch.

Read from the source with `ast` (every import, at module level or inside a function), so a lazy import
counts as much as one at the top."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import ROOT

# What the pure core may import from outside itself: data in, data out. No devices, sockets, databases,
# threads, processes, the clock or the file system; logging is the shell's business too.
CORE_STDLIB = {
    "__future__",
    "collections",
    "csv",
    "dataclasses",
    "datetime",
    "enum",
    "functools",
    "hashlib",  # SHA-1 of EMV offline data authentication (Book 2): pure computation
    "io",
    "itertools",
    "json",
    "math",
    "re",
    "string",
    "typing",
    "unicodedata",
}
CORE_THIRD_PARTY = {"pyemv", "PIL"}  # BER-TLV; PIL draws report charts into memory (bytes out)
CLOCK_CALLS = {"now", "today", "utcnow", "time", "monotonic", "perf_counter"}

# Who may import whom inside the project (a package imports itself freely). errors and config sit at the
# top because every layer reads them; drivers get the vocabulary (firmware.core) and their configuration.
ALLOWED = {
    "firmware": set(),  # the package itself: a docstring
    "firmware.core": {"firmware.core", "firmware.errors"},
    "firmware.host": {
        "firmware.core",
        "firmware.errors",
        "firmware.config",
        "firmware.host",
        "firmware.records",
        "firmware.security",
    },
    "firmware.wallets": {"firmware.core", "firmware.errors", "firmware.config", "firmware.wallets", "firmware.records"},
    "firmware.security": {
        "firmware.core",
        "firmware.errors",
        "firmware.config",
        "firmware.security",
        "firmware.records",
    },
    "firmware.records": {"firmware.core", "firmware.errors", "firmware.records"},
    "firmware.config": {"firmware.core", "firmware.errors", "firmware.security"},
    "firmware.errors": set(),
    "firmware.shell": {"firmware", "drivers", "hwsim", "office"},  # the composition root; hwsim, office: see below
    "drivers": {"firmware.core", "firmware.errors", "firmware.config", "drivers"},
    # the back office: its own package, on the terminal's vocabulary (core: money, report layout) and errors only;
    # never the terminal's shell, drivers, journal or hosts
    "office": {"office", "firmware.core", "firmware.errors"},
}
HWSIM_ALLOWED_IN = {"firmware/shell/cli.py"}  # `countertop sim` starts the simulator, lazily
OFFICE_ALLOWED_IN = {"firmware/shell/cli.py"}  # `countertop office ...` declares the back office's commands


def _modules() -> list[tuple[str, Path]]:
    found = []
    for top in ("firmware", "drivers", "office"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            found.append((".".join(parts), path))
    return found


def _imports(name: str, path: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, at module level) for every import statement in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top_level = {id(node) for node in tree.body}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = (
                [f"{base}.{a.name}" for a in node.names]
                if base in ("firmware", "drivers", "firmware.core", "firmware.core.flow")
                else [base]
            )
            out += [(t, node.lineno, id(node) in top_level) for t in targets]
    return out


def _layer(module: str) -> str:
    for layer in sorted(ALLOWED, key=len, reverse=True):
        if module == layer or module.startswith(layer + "."):
            return layer
    return module.split(".")[0]


def _inside(target: str, allowed: set[str]) -> bool:
    return any(target == a or target.startswith(a + ".") for a in allowed)


PROJECT = ("firmware", "drivers", "hwsim", "office")


def layer_problems(name: str, path: Path, where: str) -> list[str]:
    """Imports of project modules that `name`'s layer may not make (`where`: its path in the repository)."""
    layer = _layer(name)
    if layer not in ALLOWED:
        return [f"{name}: not in any layer; add it to tests/test_layers.py's table"]
    wrong = []
    for target, line, _ in _imports(name, path):
        if target.split(".")[0] not in PROJECT or _inside(target, {layer}):
            continue
        if target.startswith("hwsim") and where not in HWSIM_ALLOWED_IN:
            wrong.append(f"line {line}: {target} (the firmware never imports the simulator)")
        elif target.split(".")[0] == "office" and layer != "office" and where not in OFFICE_ALLOWED_IN:
            wrong.append(f"line {line}: {target} (the terminal never depends on the back office)")
        elif not _inside(target, ALLOWED[layer]):
            wrong.append(f"line {line}: {target}")
    return wrong


def purity_problems(name: str, path: Path) -> list[str]:
    """What makes a core module impure: imports outside the allowed ones, the clock, files, the console."""
    wrong = []
    for target, line, _ in _imports(name, path):
        root = target.split(".")[0]
        if root not in PROJECT and root not in CORE_STDLIB | CORE_THIRD_PARTY:
            wrong.append(f"line {line}: imports {target}")
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if (
            isinstance(f, ast.Attribute)
            and f.attr in CLOCK_CALLS
            and isinstance(f.value, ast.Name)
            and f.value.id in ("datetime", "date", "time")
        ):
            wrong.append(f"line {node.lineno}: reads the clock ({f.value.id}.{f.attr}())")
        if isinstance(f, ast.Name) and f.id in ("open", "print", "input"):
            wrong.append(f"line {node.lineno}: {f.id}()")
    return wrong


@pytest.mark.parametrize("name, path", _modules(), ids=lambda v: v if isinstance(v, str) else "")
def test_each_module_imports_only_what_its_layer_may(name, path):
    wrong = layer_problems(name, path, str(path.relative_to(ROOT)))
    assert not wrong, f"{name} ({_layer(name)}) may not import: " + "; ".join(wrong)


CORE = [(n, p) for n, p in _modules() if _layer(n) == "firmware.core"]


@pytest.mark.parametrize("name, path", CORE, ids=lambda v: v if isinstance(v, str) else "")
def test_the_core_is_pure(name, path):
    wrong = purity_problems(name, path)
    assert not wrong, f"{name} is in the pure core but " + "; ".join(wrong)


def test_the_checks_see_violations(tmp_path):
    """The rules catch what they are for (a checker that finds nothing proves nothing)."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import socket\nfrom datetime import datetime\nfrom ..records import journal\n"
        "def f():\n    import hwsim\n    return datetime.now(), open('x')\n",
        encoding="utf-8",
    )
    assert len(purity_problems("firmware.core.bad", bad)) == 3  # socket, the clock, open()
    found = layer_problems("firmware.core.bad", bad, "firmware/core/bad.py")
    assert any("firmware.records" in w for w in found) and any("hwsim" in w for w in found)
    assert layer_problems("firmware.shell.cli", bad, "firmware/shell/cli.py") == []
    assert layer_problems("drivers.bad", bad, "drivers/bad.py") != []
    shell = tmp_path / "shell.py"
    shell.write_text(
        "from firmware.shell import terminal\nfrom drivers import hid\nimport office.web\n", encoding="utf-8"
    )
    assert len(layer_problems("office.bad", shell, "office/bad.py")) == 2  # the back office: no shell, no drivers
    assert layer_problems("firmware.shell.forwarder", shell, "firmware/shell/forwarder.py") == [
        "line 3: office.web (the terminal never depends on the back office)"
    ]
