"""Atomic, resumable training checkpoints (model, optimiser, scheduler, RNG states, step, params hash).

Checkpoints live in a git-ignored folder outside the stage's outputs (.cache/checkpoints/<stage>/),
because DVC deletes a stage's outputs before re-running it: a killed stage resumes from the last one,
but only if the params hash matches; a checkpoint from other params is ignored.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stylepipe.io import atomic_path

LATEST = "latest.pt"


def params_hash(*parts: Any) -> str:
    """Stable hash of JSON-serialisable params (plus input digests) that a checkpoint must match."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(directory: Path, payload: dict[str, Any]) -> Path:
    path = directory / LATEST
    with atomic_path(path) as tmp:
        torch.save({**payload, "rng": rng_state()}, tmp)
    return path


def load_checkpoint(directory: Path, expected_hash: str) -> dict[str, Any] | None:
    """The latest checkpoint if it was written with the same params hash, else None."""
    path = directory / LATEST
    if not path.is_file():
        return None
    try:
        # RNG states hold numpy arrays and tuples: this file is our own, written atomically above.
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise RuntimeError(f"{path}: checkpoint unreadable ({err}); delete it to start over") from None
    if payload.get("params_hash") != expected_hash:
        return None
    return payload
