"""Shared fixtures: the repo root, tiny params for fast runs, and a project copy for integration tests."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
PROJECT_FILES = (
    "src", "workflow", "profiles", "published", "blobs", "requirements", "dvc.yaml", "Snakefile", "params.yaml",
    "pyproject.toml", ".dvcignore", ".gitignore", "README.md",
)

# Small enough for the whole DAG to run in about a minute on 2 CPU cores.
TINY_OVERLAY: dict[str, Any] = {
    "download": {"sample": {"max_side": 160, "paintings_per_style": 2, "painting_size": 128}},
    "preprocess": {"short_side": 64, "workers": 1},
    "train_recon": {"iterations": 4, "batch_size": 2, "crop": 32, "checkpoint_every": 2, "log_every": 1,
                    "image_every": 4},
    "train_adain": {"iterations": 4, "batch_size": 2, "crop": 32, "checkpoint_every": 2, "log_every": 1,
                    "image_every": 4, "style_size": 64},
    "train_johnson": {"styles": ["Cubism"], "iterations": 4, "batch_size": 2, "crop": 32, "pad": 2, "width": 0.5,
                      "style_size": 64, "checkpoint_every": 2, "log_every": 1, "image_every": 4},
    "evaluate": {"image_size": 64, "num_pairs": 2, "alphas": [0.5, 1.0], "speed_repeats": 1, "gatys_pairs": 1,
                 "gatys_iterations": 3},
    "export": {"height": 64, "width": 64},
    "demo": {"frames": 4, "fps": 4},
}


def load_default_params() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def tiny_params_dict() -> dict[str, Any]:
    from stylepipe.core.config import deep_merge

    return deep_merge(load_default_params(), copy.deepcopy(TINY_OVERLAY))


@pytest.fixture
def tiny_params():
    from stylepipe.core.config import parse_params

    return parse_params(tiny_params_dict())


def tool_env() -> dict[str, str]:
    """Environment for subprocesses: the venv's tools first on PATH, no telemetry, no colour."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(DVC_NO_ANALYTICS="1", NO_COLOR="1", PYTHONUNBUFFERED="1", GIT_TERMINAL_PROMPT="0")
    env.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    return env


def run(cmd: list[str], cwd: Path, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=tool_env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        output = f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{output}")
    return proc


def make_project_copy(dest: Path, overlay: dict[str, Any] | None = None) -> Path:
    """Copy the project's tracked sources into `dest`, write tiny params, git init + dvc init + commit."""
    from stylepipe.core.config import deep_merge

    dest.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif src.exists():
            shutil.copy2(src, dest / name)
    params = deep_merge(tiny_params_dict(), overlay or {})
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q", "-b", "main"], dest)
    run(["dvc", "init", "-q"], dest)
    run(["dvc", "config", "core.analytics", "false"], dest)
    run(["git", "add", "-A"], dest)
    run(["git", "commit", "-qm", "project copy"], dest)
    return dest


# The AdaIN depths every entry point is tested at: (adain.layer, adain.decoder_width). The shallow one is
# also thinned, so one parameter set covers a decoder whose width is not 1.
ADAIN_DEPTHS = [("relu3_1", 0.5), ("relu4_1", 1.0)]


def depth_id(depth: tuple[str, float]) -> str:
    return f"{depth[0]}-w{depth[1]:g}"


def save_tiny_models(directory: Path, layer: str = "relu4_1", width: float = 1.0) -> tuple[Path, Path]:
    """A randomly initialised vgg16_hed encoder (to relu4_1, as deep as either AdaIN layer needs) and a
    decoder for `layer` of `width`, saved as the weights and training stages write them."""
    from stylepipe.adain.model import Decoder, save_decoder
    from stylepipe.nn.encoders import build_encoder

    torch.manual_seed(0)
    enc, dec = directory / "encoder.pt", directory / "decoder.pt"
    torch.save({"name": "vgg16_hed", "state_dict": build_encoder("vgg16_hed").state_dict()}, enc)
    save_decoder(Decoder("vgg16_hed", layer, width), dec)
    return enc, dec


@pytest.fixture
def tiny_models(tmp_path: Path) -> tuple[Path, Path]:
    """A randomly initialised vgg16_hed encoder + relu4_1 decoder saved as the weights stages write them."""
    return save_tiny_models(tmp_path)


@pytest.fixture(params=ADAIN_DEPTHS, ids=depth_id)
def tiny_models_at(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, Path]:
    """tiny_models at each of ADAIN_DEPTHS."""
    return save_tiny_models(tmp_path, *request.param)
