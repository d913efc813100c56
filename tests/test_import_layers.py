"""The package's floors: a module imports only from its own floor or below, and no two floors import each other.

Every ``import icmkit.x`` / ``from icmkit.x import …`` anywhere in a module (inside functions too: a lazy import is
still a dependency) is an edge between the top-level units of ``icmkit`` (a sub-package or a top-level module).
:data:`FLOORS` orders the units from the bottom up. The few edges that still point upwards are listed in
:data:`KNOWN_UPWARD`, each with the reason it exists; the restructuring of the floors (model loading below
``backbones``, ``api`` a façade over lower modules) removes them one by one — and this test fails on any new one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "icmkit"

# Bottom up; units on one floor may import each other only where no cycle forms (see the cycle test).
FLOORS = [
    {"errors", "varint", "digest", "defaults", "threads", "bitreader", "deprecation", "tensors"},
    {"limits", "geometry"},
    {"fileio", "image", "fidelity"},
    {"bitstream", "preprocess", "feature_header", "decoded"},
    {"entropy", "layers", "zoo", "data"},
    {"models", "weights"},
    {"pretrained"},  # classifiers and detectors, loaded: what backbones split, losses tap and tasks score with
    {"backbones"},
    {"losses"},
    {"codecs", "ssl"},
    {"feature_io"},
    {"tasks"},
    {"ratecontrol"},
    {"api", "__init__"},  # the public façade: icmkit's top level re-exports api
    {"bench", "train"},
    {"fuzz"},
    {"cli"},
    {"__main__"},
]

# Upward edges that exist today, and why (issue 25's floors remove them; nothing may join them).
KNOWN_UPWARD = {
    ("train", "cli"): "python -m icmkit.train is the `icm train` command (an entry point)",
}
KNOWN_CYCLES: dict[frozenset, str] = {}


def _unit(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "icmkit":
        return None
    if len(parts) == 1:
        return "__init__"
    return parts[1]


def _own_unit(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def import_edges() -> set[tuple[str, str]]:
    """(importing unit, imported unit) for every icmkit import in the package's source."""
    edges = set()
    for path in PACKAGE.rglob("*.py"):
        source = _own_unit(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
                targets = {_unit(names[0])}
                if node.module == "icmkit":  # from icmkit import bitstream
                    targets = {_unit(name) for name in names[1:]}
            elif isinstance(node, ast.Import):
                targets = {_unit(alias.name) for alias in node.names}
            else:
                continue
            for target in targets - {None, source}:
                if target in UNITS:
                    edges.add((source, target))
    return edges


UNITS = {unit for floor in FLOORS for unit in floor}
FLOOR_OF = {unit: level for level, floor in enumerate(FLOORS) for unit in floor}


def test_every_unit_of_the_package_has_a_floor():
    found = {path.relative_to(PACKAGE).parts[0].removesuffix(".py") for path in PACKAGE.iterdir()}
    found = {name for name in found if not name.startswith(".") and name != "__pycache__"}
    assert found - UNITS == set(), "a new unit of icmkit needs its floor in FLOORS"
    assert UNITS - found == set(), "FLOORS names a unit that no longer exists"


def test_the_walker_sees_lazy_imports():
    edges = import_edges()
    assert ("codecs", "models") in edges and ("cli", "bench") in edges
    assert ("backbones", "pretrained") in edges  # imported inside split_classifier only


def test_no_new_upward_import():
    upward = {(a, b) for a, b in import_edges() if FLOOR_OF[b] > FLOOR_OF[a]}
    assert upward - set(KNOWN_UPWARD) == set(), "imports from a higher floor (move the code down, or up)"
    gone = set(KNOWN_UPWARD) - upward
    assert not gone, f"{sorted(gone)} no longer exist: remove them from KNOWN_UPWARD"


@pytest.mark.parametrize("floor", range(len(FLOORS)))
def test_no_import_cycle_within_a_floor(floor):
    edges = {(a, b) for a, b in import_edges() if FLOOR_OF[a] == FLOOR_OF[b] == floor}
    cycles = {frozenset((a, b)) for a, b in edges if (b, a) in edges}
    assert cycles - set(KNOWN_CYCLES) == set(), "two units of one floor import each other"
