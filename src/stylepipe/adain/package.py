"""The `package` stage: the trained AdaIN model as a model folder (`adain.folder`) inside the project.

The folder holds the encoder, the decoder and the style bank the pipeline trained, the OpenVINO IR pair
made from exactly those weights, the INT8 copy of it calibrated on `package.calibration_images` prepared
content photos (0: no INT8), and the `finish` section's settings. `stylepipe stylize` inside the project
uses it by default, so `--backend auto` runs OpenVINO on a CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from stylepipe.adain.engine import Finish
from stylepipe.adain.folder import write_model_folder
from stylepipe.core import paths
from stylepipe.core.config import Params
from stylepipe.data.datasets import fixed_pairs
from stylepipe.train.plumbing import open_stores


def calibration_images(prepared: Path, count: int, size: int, seed: int) -> list[torch.Tensor]:
    """`count` content photos of the training split, [1, 3, size, size] each, the same every run."""
    if count == 0:
        return []
    pairs = fixed_pairs(*open_stores(prepared), n=count, seed=seed, size=size, split="train")
    return [content[None] for content, _, _ in pairs]


def run_package(
    params: Params,
    out_dir: Path = paths.STYLIZER_DIR,
    encoder: Path = paths.ENCODER,
    decoder: Path = paths.DECODER,
    bank: Path = paths.STYLE_BANK,
    prepared: Path = paths.PREPARED,
) -> dict[str, Any]:
    """Write the model folder `out_dir` (atomically); returns its record (model.json)."""
    cfg = params.package
    calibration = calibration_images(prepared, cfg.calibration_images, cfg.calibration_size, params.common.seed)
    return write_model_folder(out_dir, encoder, decoder, bank, Finish.from_params(params), calibration)
