"""The import contracts in pyproject.toml hold, and `lint-imports` fails when a module breaks one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` on the tree at `root` (its src/ first on the path, its pyproject.toml's contracts)."""
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    return subprocess.run([str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"], cwd=root,
                          env=env, capture_output=True, text=True, timeout=300)


def test_the_repository_keeps_every_contract():
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def _copy_tree(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(ROOT / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


@pytest.mark.parametrize(
    ("module", "imports"),
    [("core.io", "cli"), ("demo.oak", "demo.host"), ("johnson.model", "adain.model"), ("nn.functional", "train.loop"),
     ("export.onnx", "export.myriad.opcheck")],
    ids=["core-imports-cli", "oak-runner-imports-host-runner", "method-imports-another-method",
         "building-block-imports-training", "generic-onnx-imports-a-device"],
)
def test_an_import_against_a_contract_fails_naming_it(tmp_path: Path, module: str, imports: str):
    root = _copy_tree(tmp_path)
    with (root / "src/stylepipe" / f"{module.replace('.', '/')}.py").open("a") as f:
        f.write(f"\nimport stylepipe.{imports}  # noqa: E402\n")
    result = _lint_imports(root)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
    assert f"stylepipe.{module} -> stylepipe.{imports}" in result.stdout
