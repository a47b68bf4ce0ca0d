"""stylepipe: a reproducible pipeline for real-time style transfer (AdaIN, Johnson, Gatys), COCO/WikiArt to an OAK-1.

The public Python API: `model = stylepipe.load(FOLDER)`, then `model.stylize(image, style, alpha=...)` and
`model.stylize_video(source, output, style)` (see docs/inference.md). torch is imported only when a model is
loaded, so `stylepipe --help` stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load(folder: str | Path, backend: str = "auto", precision: str = "default", device: str = "auto") -> Any:
    """The AdaIN model folder `folder` (`stylepipe.adain.folder`), ready to stylise."""
    from stylepipe.adain.folder import load_model

    return load_model(folder, backend, precision, device)
