"""`python -m stylepipe.codedeps --write` brings the code deps of dvc.yaml and workflow/rules back to each
stage's import closure and leaves every other line as it was."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from stylepipe.codedeps import DVC_DEP, replace_deps, write_deps

from .conftest import ROOT


def _copy_dag(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    shutil.copytree(ROOT / "workflow/rules", tmp_path / "workflow/rules")
    return tmp_path


def _stale(text: str, dep: str) -> str:
    """Every run of code-dep lines cut to its first line, and that one pointing at a module that is gone."""
    lines, out = text.splitlines(), []
    for line in lines:
        if re.match(dep, line):
            if out and re.match(dep, out[-1]):
                continue
            line = re.sub(r"src/stylepipe/[\w/]+\.py", "src/stylepipe/gone.py", line)
        out.append(line)
    return "\n".join(out) + "\n"


def test_write_restores_stale_deps_in_dvc_yaml_and_every_rule_file(tmp_path: Path):
    root = _copy_dag(tmp_path)
    files = [root / "dvc.yaml", *sorted((root / "workflow/rules").glob("*.smk"))]
    for path in files:
        stale = _stale(path.read_text(), r"^\s+(- )?\"?src/stylepipe/")
        if path.read_text() != stale:
            path.write_text(stale)
    changed = write_deps(root)
    assert root / "dvc.yaml" in changed
    for path in files:
        assert path.read_text() == (ROOT / path.relative_to(root)).read_text(), path.name


def test_write_changes_nothing_when_the_deps_agree(tmp_path: Path):
    root = _copy_dag(tmp_path)
    assert write_deps(root) == []


def test_a_stage_without_a_code_dep_line_is_named():
    lines = ["stages:", "  evaluate:", "    cmd: stylepipe evaluate", "    deps:", "      - data/prepared"]
    with pytest.raises(ValueError, match="evaluate: no src/stylepipe/ dependency line"):
        replace_deps(lines, "  evaluate:", DVC_DEP, lambda indent, path: f"{indent}- {path}", ["src/stylepipe/a.py"])
