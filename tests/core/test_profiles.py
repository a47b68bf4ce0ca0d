"""`stylepipe profile NAME` edits params.yaml as a round trip: comments, order and layout stay."""

from __future__ import annotations

import difflib
import re
import shutil
from pathlib import Path

import yaml

from stylepipe.core.config import deep_merge
from stylepipe.core.profiles import apply_profile

from ..conftest import ROOT


def _comments(text: str) -> list[str]:
    return [m.group(0).strip() for line in text.splitlines() if (m := re.search(r"#.*$", line))]


def _keys(node: object, prefix: str = "") -> list[str]:
    """Every mapping key path in document order."""
    if not isinstance(node, dict):
        return []
    return [k for key, value in node.items() for k in (f"{prefix}{key}", *_keys(value, f"{prefix}{key}."))]


def test_full_profile_keeps_every_comment_and_the_order(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    before = params.read_text()
    apply_profile("full", params, ROOT / "profiles")
    after = params.read_text()
    overlay = yaml.safe_load((ROOT / "profiles" / "full.yaml").read_text())
    assert yaml.safe_load(after) == deep_merge(yaml.safe_load(before), overlay)
    kept = _comments(after)
    assert [c for c in _comments(before) if c not in kept] == []
    old_keys, new_keys = _keys(yaml.safe_load(before)), _keys(yaml.safe_load(after))
    assert [k for k in new_keys if k in old_keys] == old_keys  # existing keys keep their order


def test_one_changed_value_is_a_one_line_diff(tmp_path: Path) -> None:
    params, profiles = tmp_path / "params.yaml", tmp_path / "profiles"
    shutil.copy(ROOT / "params.yaml", params)
    profiles.mkdir()
    (profiles / "longer.yaml").write_text("train_adain:\n  iterations: 1234\n")
    before = params.read_text().splitlines()
    old = yaml.safe_load(params.read_text())["train_adain"]["iterations"]
    apply_profile("longer", params, profiles)
    changed = [line for line in difflib.unified_diff(before, params.read_text().splitlines(), lineterm="", n=0)
               if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert changed == ["+# profile 'longer' applied from " + str(profiles / "longer.yaml"),
                       f"-  iterations: {old}", "+  iterations: 1234"]
