"""docs/design.md, the map of the code, held to the code: its module tables list exactly the
modules on disk, and its stated layer order is the one tests/test_layout.py enforces."""

import re
from pathlib import Path

from .test_layout import LAYERS, PACKAGE

DESIGN = PACKAGE.parent / "docs" / "design.md"
TEXT = DESIGN.read_text(encoding="utf-8")


def documented_modules() -> set[str]:
    """``data/corpus.py``... for every file the tables name (``base module`` rows are top level)."""
    found, folder = set(), None
    for line in TEXT.splitlines():
        header = re.match(r"^\| (?:`(\w+)/`|base module) \| holds \|$", line)
        if header:
            folder = header.group(1)
            continue
        if not line.startswith("|"):
            folder = None if not line.strip() else folder
            continue
        if folder is None and not line.startswith("| `"):
            continue
        first = line.split("|")[1]
        for name in re.findall(r"`([\w]+\.py)`", first):
            found.add(f"{folder}/{name}" if folder else name)
    return found


def modules_on_disk() -> set[str]:
    paths = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")}
    return {p for p in paths if p != "__main__.py" and not (p.endswith("/__init__.py"))}


def test_the_module_tables_list_every_module_and_no_other():
    documented, on_disk = documented_modules(), modules_on_disk()
    assert sorted(on_disk - documented) == [], "modules on disk that docs/design.md does not list"
    assert sorted(documented - on_disk) == [], "modules docs/design.md lists that are not on disk"


def test_the_stated_layer_order_is_the_enforced_one():
    line = re.search(r"^\*\*(base ← .*)\*\*$", TEXT, re.MULTILINE).group(1)
    layers = [[name.strip() for name in step.split(",")] for step in line.split("←")]
    assert layers[0] == ["base"]
    rank = {name: i for i, step in enumerate(layers[1:], start=1) for name in step}
    assert rank == LAYERS


def test_the_design_page_stays_a_map():
    assert len(TEXT.splitlines()) <= 200
    assert "ms" not in re.findall(r"\b\w+\b", TEXT), "measurements belong in docs/benchmarks.md"


def test_every_package_has_its_table():
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    tables = set(re.findall(r"^\| `(\w+)/` \| holds \|$", TEXT, re.MULTILINE))
    assert tables == packages
    assert Path(PACKAGE / "cli" / "app.py").is_file()
