"""The package has no import cycle: the graph of module-level `jax_makemore` imports, read
from the source, is acyclic, and every module imports on its own in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "jax_makemore"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """{module: package modules it imports at module level (not inside functions)}."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom) and node.module:
                candidates = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            else:
                continue
            targets |= {c for c in candidates if c in modules and c != name}
        graph[name] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path + [node, nxt]
            if nxt not in state and (found := visit(nxt, path + [node])):
                return found
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node, [])):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_the_package():
    graph = import_graph()
    assert "jax_makemore.train" in graph and graph["jax_makemore.train"]
    assert find_cycle(graph) is None


def test_every_module_imports_alone():
    modules = sorted(module_name(p) for p in PACKAGE.rglob("*.py"))
    code = "import importlib, sys\n" + "".join(
        f"importlib.import_module({m!r}); [sys.modules.pop(k) for k in list(sys.modules) "
        f"if k.startswith('jax_makemore')]\n"
        for m in modules
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_evaluate_does_not_import_the_training_code():
    code = (
        "import sys, jax_makemore.evaluate\n"
        "print(sorted(m for m in ('jax_makemore.sweep', 'jax_makemore.train', "
        "'jax_makemore.sweep_program') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


def test_the_layers_do_not_depend_on_the_backprop_exercise():
    graph = import_graph()
    assert "jax_makemore.layers" in graph["jax_makemore.backprop"]
    assert "jax_makemore.backprop" not in graph["jax_makemore.layers"]
