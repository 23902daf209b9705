"""Rules of the code base that a review would otherwise have to re-check by hand on every change.

No import cycles in the library (also none hidden in function bodies), no ``sys.path`` edits
anywhere, and no module importing another module's underscored names.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "petct_pipeline"
CHECKED_FOLDERS = ("petct_pipeline", "training", "tests", "benchmarks", "space", "docs")


def python_files(folders=CHECKED_FOLDERS) -> list[Path]:
    return sorted(path for folder in folders for path in (REPO / folder).rglob("*.py"))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path) -> list[tuple[str, list[str]]]:
    """(absolute module, imported names) of every import statement in the file, function bodies included."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path).split(".") if path.name == "__init__.py" else module_name(path).split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            found.append((module, [alias.name for alias in node.names]))
    return found


def library_graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in python_files(("petct_pipeline",))}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for module, names in imported_names(path):
            targets = [f"{module}.{n}" for n in names if f"{module}.{n}" in modules] or [module]
            graph[name] |= {target for target in targets if target in modules and target != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            # a package's __init__ re-exporting its own submodules is not a cycle worth reporting
            if node.startswith(target + "."):
                continue
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_library_has_no_import_cycle():
    assert find_cycle(library_graph()) is None, " -> ".join(find_cycle(library_graph()))


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_sys_path_edits():
    edits = ("sys.path.insert", "sys.path.append", "sys.path[")
    offenders = [str(path.relative_to(REPO)) for path in python_files() if path != Path(__file__).resolve()
                 and any(edit in path.read_text() for edit in edits)]
    assert offenders == [], offenders


def test_no_module_imports_another_modules_underscored_names():
    offenders = []
    for path in python_files():
        for module, names in imported_names(path):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and module != "__future__":
                offenders.append(f"{path.relative_to(REPO)}: from {module} import {', '.join(private)}")
    assert offenders == [], offenders


def test_no_code_reaches_into_another_objects_underscored_members():
    """``obj._name`` only on ``self``/``cls`` or for members the same file sets; others' privates stay theirs."""
    offenders = []
    for path in python_files():
        tree = ast.parse(path.read_text())
        attributes = [node for node in ast.walk(tree) if isinstance(node, ast.Attribute)]
        own = {node.attr for node in attributes if isinstance(node.ctx, ast.Store)}
        for node in attributes:
            if not node.attr.startswith("_") or node.attr.startswith("__") or node.attr in own:
                continue
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super":
                continue
            offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: .{node.attr}")
    assert offenders == [], offenders
