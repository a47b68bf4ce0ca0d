"""Params profiles: overlays in profiles/<name>.yaml deep-merged into params.yaml (validated first)."""

from __future__ import annotations

from pathlib import Path

import yaml

from stylepipe.config import ConfigError, deep_merge, parse_params
from stylepipe.io import atomic_path

PROFILES_DIR = Path("profiles")


def apply_profile(name: str, params_path: Path = Path("params.yaml"), profiles_dir: Path = PROFILES_DIR) -> dict:
    """Merge the overlay into params.yaml; the result is validated before anything is written."""
    overlay_path = profiles_dir / f"{name}.yaml"
    if not overlay_path.is_file():
        known = sorted(p.stem for p in profiles_dir.glob("*.yaml"))
        raise ConfigError(f"{overlay_path}: no such profile (known: {', '.join(known) or 'none'})")
    overlay = yaml.safe_load(overlay_path.read_text()) or {}
    base = yaml.safe_load(params_path.read_text()) or {}
    merged = deep_merge(base, overlay)
    parse_params(merged, f"{params_path} + {overlay_path}")
    with atomic_path(params_path) as tmp:
        tmp.write_text(f"# profile {name!r} applied from {overlay_path}\n" + yaml.safe_dump(merged, sort_keys=False))
    return {"profile": name, "params": str(params_path), "changed_sections": sorted(overlay)}
