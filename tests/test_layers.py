"""The import contracts in pyproject.toml hold, and `lint-imports` fails when a module breaks one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

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


def test_a_core_module_importing_the_cli_breaks_the_layer_contract(tmp_path: Path):
    root = _copy_tree(tmp_path)
    with (root / "src/stylepipe/io.py").open("a") as f:
        f.write("\nimport stylepipe.cli  # noqa: E402\n")
    result = _lint_imports(root)
    assert result.returncode != 0
    assert "stylepipe.io is not allowed to import stylepipe.cli" in result.stdout


def test_the_oak_runner_importing_the_host_runner_breaks_the_demo_contract(tmp_path: Path):
    root = _copy_tree(tmp_path)
    with (root / "src/stylepipe/demo/oak.py").open("a") as f:
        f.write("\nimport stylepipe.demo.host  # noqa: E402\n")
    result = _lint_imports(root)
    assert result.returncode != 0
    assert "stylepipe.demo.oak is not allowed to import stylepipe.demo.host" in result.stdout
