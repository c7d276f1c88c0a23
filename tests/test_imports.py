"""The project's modules import each other without circles, counting the imports inside
functions and the modules named by string in lazy registries (``"synth.methods.nsa.method:NSA"``) too.

An import hidden in a function body, or a module imported by ``importlib.import_module`` from a
registry's string, still ties two modules together; such a circle only shows up when the
function first runs, so the graph here is built from every ``import`` statement in each file,
wherever it stands, and from every string constant that names one of the project's modules.
The packages depend one way: ``synth`` -> ``hub_tools`` -> ``detect`` -> ``space`` -> ``app.py``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: the packages and entry files, in the one direction they may depend on each other
PACKAGES = ("synth", "hub_tools", "detect", "space")
ENTRIES = ("app", "anomalyforge")


def module_names(package_dir: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file under ``package_dir`` (sub-packages included)."""
    names = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = [package, *path.relative_to(package_dir).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the project's packages and its entry files."""
    modules = {}
    for package in PACKAGES:
        modules |= module_names(root / package, package)
    modules |= {entry: root / f"{entry}.py" for entry in ENTRIES}
    return modules


def _imported(node: ast.AST, name: str, is_package: bool, modules: dict[str, Path], strings: bool) -> list[str]:
    """The modules an ``import`` statement or a string constant (``"pkg.mod"``, ``"pkg.mod:Name"``) names."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level:
            base = name.split(".") if is_package else name.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        # ``from pkg import mod`` imports the module; ``from mod import obj`` the module itself
        return [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source for alias in node.names]
    if strings and isinstance(node, ast.Constant) and isinstance(node.value, str) and any(c in node.value for c in ".:"):
        # a qualified name only: a bare word like "app" is as likely a label as a module
        target = node.value.partition(":")[0]
        return [target] if target in modules else []
    return []


def import_graph_of(modules: dict[str, Path], strings: bool = True) -> dict[str, set[str]]:
    """Module -> the given modules it imports (at the top, inside functions, or, with ``strings``,
    by a registry's string)."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            for target in _imported(node, name, is_package, modules, strings):
                while target and target not in modules:  # ``import detect.a.b`` with b an attribute
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def import_graph(package_dir: Path, package: str) -> dict[str, set[str]]:
    """Module -> the package's modules it imports."""
    return import_graph_of(module_names(package_dir, package))


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
    """The graph between parts: each sub-package (``pkg.x.*``) or top-level module (``pkg.x``)."""
    part = lambda name: ".".join(name.split(".")[:2])  # noqa: E731
    parts: dict[str, set[str]] = {part(name): set() for name in graph}
    for name, targets in graph.items():
        parts[part(name)] |= {part(t) for t in targets if part(t) != part(name)}
    return parts


def test_the_project_imports_form_no_circle():
    graph = import_graph_of(project_modules())
    for package in PACKAGES:  # the walk found each package's modules
        assert len([m for m in graph if m.split(".")[0] == package]) >= 5, package
    assert find_cycle(graph) is None, "import circle: " + " -> ".join(find_cycle(graph) or [])
    # nor do its parts: a sub-package that imports another needs nothing back from it (a
    # registry's strings name the parts it dispatches to, which may look things up in it: the
    # ``train`` command in detect.training builds its detectors by name)
    parts = parts_graph(import_graph_of(project_modules(), strings=False))
    assert find_cycle(parts) is None, "circle between parts: " + " -> ".join(find_cycle(parts) or [])


def test_packages_depend_one_way():
    """No package imports one to its right; the entry files import the packages, not each other."""
    rank = {package: k for k, package in enumerate(PACKAGES)} | {entry: len(PACKAGES) for entry in ENTRIES}
    graph = import_graph_of(project_modules())
    top = lambda module: module.split(".")[0]  # noqa: E731
    backwards = sorted(
        (m, t) for m, targets in graph.items() for t in targets if top(t) != top(m) and rank[top(t)] >= rank[top(m)]
    )
    assert backwards == []


def test_the_space_entry_only_launches_and_its_package_is_layered():
    """``app.py`` builds and launches from ``space``; in ``space`` the page wires the handlers, the
    handlers call the rest, and the storage, inputs and settings know nothing of either."""
    graph = import_graph_of(project_modules())
    assert graph["app"] == {"space.config", "space.ui"}
    importers = lambda module: {name for name, deps in graph.items() if module in deps}  # noqa: E731
    assert importers("space.ui") == {"app"}
    assert importers("space.handlers") == {"space.ui"}
    for module in ("space.config", "space.storage", "space.inputs", "space.patches", "space.zerogpu",
                   "space.generate", "space.views"):
        assert not graph[module] & {"space.ui", "space.handlers", "space.device"}, module
    # the detection calibration is detect's, for the command line as for the Space
    assert "detect.evaluation.calibration" in graph["space.handlers"]


def test_lazy_registries_are_in_the_graph():
    graph = import_graph_of(project_modules())
    assert "synth.methods.nsa.method" in graph["synth.registry"]  # METHODS = {"nsa": "synth.methods.nsa.method:NSA", ...}
    assert "synth.cli" in graph["anomalyforge"]  # SUBCOMMANDS
    assert "detect.detectors.patchcore" in graph["detect.registry"]  # DETECTORS
    assert "hub_tools.build" in graph["hub_tools"]  # the package's lazy exports
    # Method.batched = "synth.methods.nsa.batched:NSABatch": the method names its renderer, so
    # the renderer imports what it shares with the method from elsewhere (nsa/patches.py)
    assert "synth.methods.nsa.batched" in graph["synth.methods.nsa.method"]
    assert "synth.methods.nsa.method" not in graph["synth.methods.nsa.batched"]


def test_commands_get_their_runtime_from_one_module_and_nothing_imports_the_cli():
    graph = import_graph(ROOT / "detect", "detect")
    for command in ("detect.evaluation.evaluate", "detect.training.train", "detect.evaluation.bench", "detect.evaluation.stress", "detect.quality.diversity"):
        assert "detect.runtime" in graph[command], command
    assert [name for name, deps in graph.items() if "detect.cli" in deps] == []
    assert [name for name, deps in import_graph_of(project_modules()).items() if "detect.cli" in deps] == ["anomalyforge"]
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
    # a module named by a lazy registry's string is imported as surely as by ``import``
    (pkg / "errors.py").write_text('TOOLS = {"work": "pkg.sub.work:main"}\n')
    assert find_cycle(import_graph(pkg, "pkg")) == ["pkg.sub.work", "pkg.errors", "pkg.sub.work"]
