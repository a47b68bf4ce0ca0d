"""Atomic, resumable training checkpoints (model, optimiser, scheduler, RNG states, step), one per key.

Checkpoints live in a git-ignored folder outside the stage's outputs (.cache/checkpoints/<stage>/),
because DVC deletes a stage's outputs before re-running it. Each is named by its key, a hash of the
params, seed, process count, input files and the code the stage runs: a run resumes only from the
checkpoint its own key wrote, so neither a code edit nor a params change mixes two versions, and
switching params back (e.g. after `dvc exp run -S ...`) resumes where that run stopped. The newest KEEP
checkpoints of a folder are kept; `stylepipe checkpoints prune` keeps fewer. Files hold only tensors and
plain Python values and load with `torch.load(weights_only=True)`: a checkpoint cannot run code.
"""

from __future__ import annotations

import hashlib
import json
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stylepipe.core.errors import InputError, StylepipeError
from stylepipe.core.io import read_torch, write_torch

ROOT = Path(".cache/checkpoints")
SUFFIX = ".pt"
KEEP = 3


class CheckpointError(StylepipeError, RuntimeError):
    """A checkpoint file that cannot be used; the message says which and what to do."""


class CheckpointSkipped(UserWarning):
    """Checkpoints of other params or code exist where a run starts from step 0."""


def params_hash(*parts: Any) -> str:
    """Stable hash of JSON-serialisable params (plus input and code digests) that a checkpoint must match."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def rng_state() -> dict[str, Any]:
    """Every RNG's state as tensors and plain values (loadable with weights_only=True)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_path(directory: Path, key: str) -> Path:
    return Path(directory) / f"{key}{SUFFIX}"


def list_checkpoints(directory: Path) -> list[Path]:
    """The checkpoint files of one stage folder, newest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    files = [p for p in directory.iterdir() if p.suffix == SUFFIX and p.is_file()]
    return sorted(files, key=lambda p: p.stat().st_mtime_ns, reverse=True)


def save_checkpoint(directory: Path, key: str, payload: dict[str, Any], keep: int = KEEP) -> Path:
    """Write the checkpoint of `key` atomically, then keep only the newest `keep` of the folder."""
    path = checkpoint_path(directory, key)
    write_torch(path, {**payload, "key": key, "rng": rng_state()})
    prune_folder(Path(directory), keep)
    return path


def load_checkpoint(directory: Path, key: str) -> dict[str, Any] | None:
    """The checkpoint written under `key`, else None; checkpoints of other keys are reported, not used."""
    path = checkpoint_path(directory, key)
    if not path.is_file():
        others = list_checkpoints(directory)
        if others:
            warnings.warn(
                f"{directory}: no checkpoint for these params and code (key {key}); starting from step 0. "
                f"Kept, not used: {', '.join(p.name for p in others)} (other params, code or inputs; "
                "`stylepipe checkpoints prune` removes them)",
                CheckpointSkipped, stacklevel=2,
            )
        return None
    payload = read_torch(path, "training checkpoint", CheckpointError, hint="delete it to start over")
    if payload.get("key") != key:
        raise CheckpointError(f"{path}: holds key {payload.get('key')!r}, not {key!r}; delete it to start over")
    return payload


def prune_folder(directory: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` checkpoints of one stage folder; return the deleted files."""
    stale = list_checkpoints(directory)[keep:]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def prune_checkpoints(root: Path = ROOT, keep: int = KEEP) -> list[Path]:
    """Prune every stage folder under `root` (Johnson's per-style folders included) to `keep` checkpoints."""
    if keep < 0:
        raise InputError(f"the number of checkpoints to keep: expected 0 or more, got {keep}")
    root = Path(root)
    if not root.is_dir():
        return []
    folders = sorted({p.parent for p in root.rglob(f"*{SUFFIX}")})
    return [p for folder in folders for p in prune_folder(folder, keep)]
