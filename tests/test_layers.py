"""The package's layers: no module imports a higher layer, and no import cycle exists.

Every import counts, also those inside functions (a lazy import up the layers is still a dependency
up the layers). docs/architecture.md draws the same layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Lowest first. A module may import its own top-level part and the parts of lower layers.
LAYERS: list[set[str]] = [
    {"mlestar.errors", "mlestar.core"},
    {"mlestar.settings", "mlestar.metrics"},
    {"mlestar.task"},
    {"mlestar.grading", "mlestar.store", "mlestar.exec"},
    {"mlestar.llm", "mlestar.search", "mlestar.integrations"},
    {"mlestar.brain", "mlestar.report"},
    {"mlestar.pipeline"},
    {"mlestar.bench", "mlestar.server"},
    {"mlestar"},  # the entry points: the package itself, the CLI and its commands
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


INTERFACE = {"mlestar", "mlestar.__main__", "mlestar.cli", "mlestar.commands"}  # one part: the entry points


def part_of(module: str) -> str:
    """The layered part a module belongs to: ``mlestar.brain.expert.cards`` -> ``mlestar.brain``."""
    pieces = module.split(".")
    part = ".".join(pieces[:2]) if len(pieces) > 1 else module
    return "mlestar" if part in INTERFACE else part


def layer_of(module: str) -> int:
    part = part_of(module)
    for index, parts in enumerate(LAYERS):
        if part in parts:
            return index
    raise AssertionError(f"{module} belongs to no layer; add {part} to LAYERS")


def imports_of(path: Path, name: str) -> set[str]:
    """Every mlestar module ``path`` imports, resolved to module names (relative imports too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "mlestar")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            if base.split(".")[0] != "mlestar":
                continue
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in MODULES else base)
    return found


MODULES = {module_name(path): path for path in (SRC / "mlestar").rglob("*.py")}
GRAPH = {name: imports_of(path, name) & set(MODULES) for name, path in MODULES.items()}


def test_every_module_has_a_layer() -> None:
    for name in MODULES:
        layer_of(name)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_import_goes_up_a_layer(name: str) -> None:
    own = layer_of(name)
    upward = sorted(
        target for target in GRAPH[name] if part_of(target) != part_of(name) and layer_of(target) >= own
    )
    assert not upward, f"{name} (layer {own}) imports {upward} from the same or a higher layer"


def test_no_import_cycles() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for name in sorted(GRAPH):
        if name not in index:
            visit(name)
    assert not cycles, f"import cycles: {cycles}"


def test_the_graph_sees_lazy_imports() -> None:
    # The pipeline imports the LLM brain only when a run asks for one; the graph must still see it.
    assert "mlestar.brain.llm" in GRAPH["mlestar.pipeline.run"]
