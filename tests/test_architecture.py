"""Imports point one way (cli -> runner/report/stress -> findings/models/metrics -> simulate ->
scenario -> kernels). Checked on the source, function-level imports included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "simsys"


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("simsys"):
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("simsys")}
    return out


def _module(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module(p): _imports(p) for p in PKG.rglob("*.py")}

#: module (or package prefix) -> modules it must not import
FORBIDDEN = {
    "simsys.kernels": ["simsys."],  # kernels: arrays in, arrays out; nothing from simsys
    "simsys.estimators": ["simsys.models", "simsys.mitigations", "simsys.runner"],
    "simsys.mitigations": ["simsys.models", "simsys.runner", "simsys.report", "simsys.cli"],
    "simsys.intervals": ["simsys.findings", "simsys.runner", "simsys.report", "simsys.cli"],
    "simsys.scenario": ["simsys.simulate", "simsys.runner", "simsys.models", "simsys.report", "simsys.cli"],
    "simsys.simulate": ["simsys.runner", "simsys.models", "simsys.report", "simsys.cli"],
    "simsys.findings": ["simsys.runner", "simsys.report", "simsys.cli", "simsys.stress"],
    "simsys.summary": ["simsys.runner", "simsys.findings", "simsys.report", "simsys.cli"],
    "simsys.groups": ["simsys.runner", "simsys.simulate", "simsys.findings"],
    "simsys.runner": ["simsys.report", "simsys.cli", "simsys.stress"],
    "simsys.report": ["simsys.cli"],
}


@pytest.mark.parametrize("owner", sorted(FORBIDDEN))
def test_imports_point_one_way(owner):
    bad = []
    for mod, imports in MODULES.items():
        if mod != owner and not mod.startswith(owner + "."):
            continue
        for imp in imports:
            for forbidden in FORBIDDEN[owner]:
                if imp == forbidden.rstrip(".") or (imp.startswith(forbidden) and not (
                        owner == "simsys.kernels" and imp.startswith("simsys.kernels"))):
                    bad.append(f"{mod} imports {imp}")
    assert not bad, bad


def test_only_the_entry_points_import_the_cli():
    users = {m for m, imps in MODULES.items() if "simsys.cli" in imps}
    assert users <= {"simsys.__main__"}, users
