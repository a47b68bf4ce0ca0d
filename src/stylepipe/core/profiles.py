"""Params profiles: overlays in profiles/<name>.yaml deep-merged into params.yaml (validated first).

params.yaml is edited as a round trip (ruamel.yaml): its comments, key order and layout stay, so
`git diff params.yaml` shows only the values the profile changed (and the keys it added, with the
overlay's own comments).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from stylepipe.core.config import ConfigError, parse_params
from stylepipe.core.io import atomic_path

PROFILES_DIR = Path("profiles")


def round_trip_yaml() -> YAML:
    """A comment- and order-preserving YAML reader/writer with params.yaml's layout (2-space mappings,
    block lists indented under their key)."""
    rt = YAML(typ="rt")
    rt.preserve_quotes = True
    rt.width = 4096  # never re-wrap a long line
    rt.indent(mapping=2, sequence=4, offset=2)
    rt.representer.add_representer(type(None), _null)
    return rt


def _null(representer: Any, _value: None) -> Any:
    """Write null as `null` (as params.yaml spells it), not as an empty value."""
    return representer.represent_scalar("tag:yaml.org,2002:null", "null")


def merge_into(base: CommentedMap, overlay: CommentedMap) -> None:
    """Deep-merge `overlay` into `base` in place (overlay wins; lists are replaced), keeping base's
    comments and key order; new keys go last in their section."""
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge_into(base[key], value)
        else:
            base[key] = value


def _load(rt: YAML, path: Path) -> Any:
    try:
        return rt.load(path.read_text())
    except Exception as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None


def apply_profile(name: str, params_path: Path = Path("params.yaml"), profiles_dir: Path = PROFILES_DIR,
                  values: dict | None = None) -> dict:
    """Merge the overlay, and then `values` (nested sections, e.g. pinned files), into params.yaml; the
    result is validated before anything is written."""
    overlay_path = profiles_dir / f"{name}.yaml"
    if not overlay_path.is_file():
        known = sorted(p.stem for p in profiles_dir.glob("*.yaml"))
        raise ConfigError(f"{overlay_path}: no such profile (known: {', '.join(known) or 'none'})")
    rt = round_trip_yaml()
    overlay = _load(rt, overlay_path) or CommentedMap()
    merged = _load(rt, params_path) or CommentedMap()
    for path, doc in ((overlay_path, overlay), (params_path, merged)):
        if not isinstance(doc, dict):
            raise ConfigError(f"{path}: expected a mapping of params sections, got {type(doc).__name__}")
    merge_into(merged, overlay)
    merge_into(merged, values or {})
    buffer = io.StringIO()
    rt.dump(merged, buffer)
    text = buffer.getvalue()
    parse_params(yaml.safe_load(text), f"{params_path} + {overlay_path}")
    header = f"# profile {name!r} applied from {overlay_path}\n"
    with atomic_path(params_path) as tmp:
        tmp.write_text(text if text.startswith(header) else header + text)
    return {"profile": name, "params": str(params_path), "changed_sections": sorted(overlay)}
