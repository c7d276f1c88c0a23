"""detect's modules import each other without circles, counting the imports inside functions too.

An import hidden in a function body still ties two modules together; such a circle only shows up
when the function first runs, so the graph here is built from every ``import`` statement in each
file, wherever it stands.
"""

from __future__ import annotations

import ast
from pathlib import Path

import detect

PACKAGE_DIR = Path(detect.__file__).parent


def module_names(package_dir: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file under ``package_dir`` (sub-packages included)."""
    names = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = [package, *path.relative_to(package_dir).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def import_graph(package_dir: Path, package: str) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (at the top or inside functions)."""
    modules = module_names(package_dir, package)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                # ``from pkg import mod`` imports the module; ``from mod import obj`` the module itself
                targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                           for alias in node.names]
            for target in targets:
                while target and target not in modules:  # ``import detect.a.b`` with b an attribute
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as ``[a, b, ..., a]``, or ``None`` when the graph has none."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" once fully explored
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def parts_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph between detect's parts: each sub-package (``detect.x.*``) or top-level module (``detect.x``)."""
    part = lambda name: ".".join(name.split(".")[:2])  # noqa: E731
    parts: dict[str, set[str]] = {part(name): set() for name in graph}
    for name, targets in graph.items():
        parts[part(name)] |= {part(t) for t in targets if part(t) != part(name)}
    return parts


def test_detect_imports_form_no_circle():
    graph = import_graph(PACKAGE_DIR, "detect")
    assert len(graph) > 20, sorted(graph)  # the walk found the package's modules
    assert find_cycle(graph) is None, "import circle: " + " -> ".join(find_cycle(graph) or [])
    # nor do its parts: a sub-package that needs another needs nothing back from it
    parts = parts_graph(graph)
    assert find_cycle(parts) is None, "circle between parts: " + " -> ".join(find_cycle(parts) or [])


def test_commands_get_their_runtime_from_one_module_and_nothing_imports_the_cli():
    graph = import_graph(PACKAGE_DIR, "detect")
    for command in ("detect.evaluation.evaluate", "detect.training.train", "detect.evaluation.bench", "detect.evaluation.stress", "detect.quality.diversity"):
        assert "detect.runtime" in graph[command], command
    assert [name for name, deps in graph.items() if "detect.cli" in deps] == []
    # the runtime leans on nothing in detect but its errors, so anything may import it
    assert graph["detect.runtime"] == {"detect.errors"}


def test_a_circle_through_an_import_inside_a_function_is_found(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "cli.py").write_text("from .sub import work\n")
    (pkg / "sub" / "work.py").write_text("def main():\n    from ..cli import main\n")
    (pkg / "errors.py").write_text("")
    graph = import_graph(pkg, "pkg")
    assert graph["pkg.cli"] == {"pkg.sub.work"}
    assert graph["pkg.sub.work"] == {"pkg.cli"}
    assert find_cycle(graph) == ["pkg.cli", "pkg.sub.work", "pkg.cli"]
    # no module circle (cli -> sub.work, sub.tool -> cli), but sub-package and cli need each other
    (pkg / "sub" / "work.py").write_text("")
    (pkg / "sub" / "tool.py").write_text("def run():\n    import pkg.cli\n")
    graph = import_graph(pkg, "pkg")
    assert find_cycle(graph) is None
    assert find_cycle(parts_graph(graph)) == ["pkg.cli", "pkg.sub", "pkg.cli"]
    (pkg / "sub" / "work.py").write_text("def main():\n    from .. import errors\n")
    assert find_cycle(import_graph(pkg, "pkg")) is None
