"""The package's structure: its top-level parts import each other in one direction only.

Every ``import mri_seg.X`` / ``from mri_seg.X import`` in the package is read (module-level
and inside functions alike): a lazy import is still a dependency. The top-level parts
(subpackages and modules of ``mri_seg``) must form no cycle, and each may import only parts
of its own or an earlier layer of :data:`LAYERS` (docs/code_map.md explains them).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "mri_seg"

# Earlier layers may be imported by later ones, never the reverse. ``recipes`` is data.
LAYERS: list[set[str]] = [
    {"__init__", "errors", "utils", "recipes"},
    {"config", "rundir", "params"},
    {"io"},
    {"data", "preprocess"},
    {"models", "losses", "metrics", "postprocess", "shape", "uncertainty"},
    {"training"},
    {"inference"},
    {"evaluation"},
    {"reports"},
    {"export"},
    {"pipelines"},
]


def part_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imported_parts(path: Path) -> set[str]:
    """The top-level parts of ``mri_seg`` that ``path`` imports (``from mri_seg import X``: X)."""
    parts: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] if node.module != "mri_seg" else [f"mri_seg.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            bits = name.split(".")
            if bits[0] == "mri_seg":
                parts.add(bits[1] if len(bits) > 1 else "__init__")
    return parts


def dependency_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        part = part_of(path)
        graph.setdefault(part, set()).update(imported_parts(path) - {part})
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_find_cycle_finds_one_and_only_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_every_part_has_a_layer() -> None:
    layered = set().union(*LAYERS)
    missing = sorted(set(dependency_graph()) - layered)
    assert not missing, f"top-level parts of mri_seg without a layer in LAYERS (add them): {missing}"


def test_top_level_parts_import_each_other_without_cycles() -> None:
    cycle = find_cycle(dependency_graph())
    assert cycle is None, f"import cycle between top-level parts of mri_seg: {' -> '.join(cycle or [])}"


def test_imports_only_go_to_the_same_or_an_earlier_layer() -> None:
    layer = {part: i for i, parts in enumerate(LAYERS) for part in parts}
    upward = [
        f"{part} (layer {layer[part]}) imports {dep} (layer {layer[dep]})"
        for part, deps in sorted(dependency_graph().items())
        for dep in sorted(deps)
        if part in layer and dep in layer and layer[dep] > layer[part]
    ]
    assert not upward, "imports up the layers:\n" + "\n".join(upward)
