"""The package's layout, computed from the source: where each name lives and which way
dependencies point (docs/design.md states both; these tests hold the code to it)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "seqtag"

# Each module's layer: a module may import from its own layer and the layers below it, never
# above; training and serving are siblings and do not import each other.
LAYERS = {"data": 1, "model": 2, "training": 3, "serving": 3, "cli": 4}
BASE = 0  # seqtag/*.py: config, errors, fileio, device, metrics, schemes, host, lazy


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> tuple[int, str]:
    if module == "seqtag.__main__":  # python -m seqtag: the command line
        return LAYERS["cli"], "cli"
    parts = module.split(".")
    if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS):
        return LAYERS[parts[1]], parts[1]
    return BASE, "base"


def imports(module: str) -> list[tuple[str, str, int]]:
    """``(imported module, name, line)`` for every ``from seqtag... import name`` in ``module``,
    at any depth (function bodies and ``TYPE_CHECKING`` blocks included)."""
    found = []
    for node in ast.walk(ast.parse(MODULES[module].read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "seqtag":
            assert node.level == 0, f"{module}:{node.lineno}: a relative import"
            for alias in node.names:
                target = f"{node.module}.{alias.name}"
                found.append((target, "", node.lineno) if target in MODULES else (node.module, alias.name, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, "", node.lineno) for a in node.names if a.name.split(".")[0] == "seqtag"]
    return found


def defined(module: str) -> set[str]:
    names = set()
    for node in ast.parse(MODULES[module].read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


def graph() -> dict[str, set[str]]:
    return {m: {t for t, _, _ in imports(m) if t in MODULES and t != m and not MODULES[t].name == "__init__.py"}
            for m in MODULES}  # fmt: skip


def test_no_import_circle():
    deps = graph()

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), list(deps[start])
        while todo:
            m = todo.pop()
            if m == goal:
                return True
            if m not in seen:
                seen.add(m)
                todo.extend(deps[m])
        return False

    circles = sorted({tuple(sorted((a, b))) for a in deps for b in deps[a] if reaches(b, a)})
    assert circles == []


def test_no_private_name_is_imported_across_modules():
    private = [f"{m}:{line} imports {t}.{name}" for m in MODULES for t, name, line in imports(m)
               if name.startswith("_") and not name.startswith("__") and t != m]  # fmt: skip
    assert private == []


def test_each_name_is_imported_from_the_module_that_defines_it():
    """No module hands on another's names: ``from seqtag.x import n`` finds ``n`` defined in
    ``seqtag.x`` (package ``__init__`` files hand names on lazily, and are not imported from)."""
    moved = []
    for m in MODULES:
        for t, name, line in imports(m):
            if t in MODULES and name and f"{t}.{name}" not in MODULES and name != "__version__":
                if MODULES[t].name == "__init__.py" and MODULES[m].name != "__init__.py":
                    moved.append(f"{m}:{line} imports {name} from the package {t}")
                elif MODULES[t].name != "__init__.py" and name not in defined(t):
                    moved.append(f"{m}:{line} imports {name} from {t}, which does not define it")
    assert moved == []


def test_dependencies_point_one_way():
    """base ← data ← model ← training, serving ← cli."""
    upward = []
    for m in MODULES:
        here, where = layer(m)
        for t, _, line in imports(m):
            if t not in MODULES or t == "seqtag":
                continue
            there, what = layer(t)
            if there > here or (there == here and what != where):
                upward.append(f"{m}:{line} ({where}) imports {t} ({what})")
    assert upward == []


@pytest.mark.parametrize("module", [m for m in MODULES if MODULES[m].name == "__init__.py" and m != "seqtag"])
def test_a_package_init_imports_nothing_eagerly(module):
    """Subpackage ``__init__`` files hand names on lazily (:func:`seqtag.lazy.attach`), so that
    importing one module of a package imports no other."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    eager = [n.lineno for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))
             and not (isinstance(n, ast.ImportFrom) and n.module == "seqtag.lazy")]  # fmt: skip
    assert eager == []
