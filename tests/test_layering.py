"""Layering rules of STYLE.md §1: studies and benchmarks import only the public API (names in
``nlora_linalg.__all__``); the numerical core imports nothing from the adapter or pipeline layers."""

from __future__ import annotations

import ast
import pathlib

import pytest

import nlora_linalg

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "studies").glob("*.py")) + sorted((ROOT / "benchmarks").glob("*.py"))


def _imports(path: pathlib.Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module, [a.name for a in node.names], node.level
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, [], 0


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_scripts_use_only_the_public_api(path):
    """A study or benchmark imports from ``nlora_linalg`` itself, and only names listed in ``__all__``."""
    for module, names, _ in _imports(path):
        if module.startswith("nlora_linalg"):
            assert module == "nlora_linalg", f"{path.name} imports the private module {module}"
            missing = set(names) - set(nlora_linalg.__all__)
            assert not missing, f"{path.name} imports non-public names {sorted(missing)}"


def test_core_does_not_import_upper_layers():
    """nlora_linalg/linalg/ never imports the adapters or the pipeline, nor nn.Module code or I/O libraries."""
    for path in sorted((ROOT / "nlora_linalg" / "linalg").glob("*.py")):
        for module, _, level in _imports(path):
            assert not (level >= 2 or module.startswith(("nlora_linalg.adapters", "nlora_linalg.pipeline"))), \
                f"{path.name} imports {module} (level {level})"
            assert module not in {"transformers", "safetensors", "json", "pathlib", "os"}, f"{path.name}: {module}"


def test_scripts_exist():
    """The glob found the studies and benchmarks (a test over an empty list could not fail)."""
    assert len(SCRIPTS) >= 6
