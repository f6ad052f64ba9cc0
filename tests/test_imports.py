"""The package's import structure: no import cycle (module-level or inside a function, so that no local
import hides one), and the modules the workflow and the command line read without a model stay free of
torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import wmoe_clip
from wmoe_clip.model.registry import METHODS

PACKAGE = Path(wmoe_clip.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that ``path`` imports anywhere in its code (``from pkg import sub`` counts as sub)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names}
    return {m for m in found if m in modules and m != name}


def test_the_package_has_no_import_cycle():
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: _imports(path, set(paths)) for name, path in paths.items()}
    state: dict[str, str] = {}

    def visit(node: str, stack: list[str]) -> list[str] | None:
        state[node] = "open"
        for child in sorted(graph[node]):
            if state.get(child) == "open":
                return stack[stack.index(child):] + [child] if child in stack else [node, child]
            if child not in state and (cycle := visit(child, stack + [child])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start, [start])
            assert cycle is None, " -> ".join(cycle)


def test_settings_registry_and_run_config_import_without_torch():
    torch_free = ["wmoe_clip.config", "wmoe_clip.model", "wmoe_clip.model.registry", "wmoe_clip.model.encoder_pass",
                  "wmoe_clip.cli", *(f"wmoe_clip.model.{name}.settings" for name in METHODS)]
    code = (f"import sys, importlib\nfor m in {torch_free!r}:\n    importlib.import_module(m)\n"
            "from wmoe_clip.cli import build_parser\nbuild_parser()\n"
            "from wmoe_clip.config import load_config\nload_config('tiny')\n"
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
