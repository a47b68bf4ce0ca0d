"""Johnson's per-style networks beside AdaIN in the evaluate stage.

For every style in train_johnson.styles: every distinct content photo of the evaluation pairs with the
painting that style's network learned (its first validation painting, `train.plumbing.style_image`), so a
per-style network is scored on its own style over every held-out photo rather than on the one pair that
happens to carry its label. Both methods are scored with the evaluate stage's own metrics at alpha 1
(content loss at relu4_1 against the AdaIN target, mean/std and Gram style losses, SSIM, colour histogram)
and timed at evaluate.image_size. Metrics are `johnson.<style>.<metric>`, `johnson.<style>.adain.<metric>`,
the colour-transfer floor on the same pairs `johnson.<style>.floor.<metric>` and the quality bar's checks;
reports/evaluate/johnson_grid.png shows content | style | AdaIN | Johnson rows."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

from stylepipe.adain.engine import Engine
from stylepipe.core import paths
from stylepipe.core.config import Params
from stylepipe.core.runtime import calls_per_second
from stylepipe.core.viz import save_grid
from stylepipe.johnson.model import load_johnson_stylizer
from stylepipe.nn.encoders import VGGEncoder
from stylepipe.nn.metrics import floor_metrics, image_metrics, mean_rows, quality_checks

GRID = "johnson_grid.png"


def own_painting_pairs(pairs: list, style: str, painting: torch.Tensor) -> list:
    """Every distinct content of `pairs` (by its content_index, else its position) with `painting`."""
    seen: set = set()
    chosen = []
    for position, (content, _, info) in enumerate(pairs):
        key = info.get("content_index", position)
        if key not in seen:
            seen.add(key)
            chosen.append((content, painting, {**info, "style_label": style}))
    return chosen


def training_painting(style: str, size: int) -> torch.Tensor:
    """The painting train_johnson learns for `style`, at the evaluation size."""
    from stylepipe.train.plumbing import open_stores, style_image

    return style_image(open_stores()[1], style, size)


@torch.no_grad()
def evaluate_johnson(
    params: Params, adain: Engine, enc: VGGEncoder, pairs: list, device: torch.device, out_dir: Path,
    model_root: Path = paths.JOHNSON_DIR, painting_of: Callable[[str, int], torch.Tensor] = training_painting,
) -> dict[str, float]:
    """Metrics of every Johnson style beside AdaIN on every evaluation content with the style's own
    painting (`painting_of(style, size)`); writes out_dir/johnson_grid.png."""
    metrics: dict[str, float] = {}
    rows: list[list[torch.Tensor]] = []
    size = params.evaluate.image_size
    for style in params.train_johnson.styles:
        net = load_johnson_stylizer(style, model_root).to(device)
        scored = {"johnson": [], "adain": []}
        chosen = own_painting_pairs(pairs, style, painting_of(style, size))
        for content, painting, _ in chosen:
            c, s = content.to(device)[None], painting.to(device)[None]
            outs = {"johnson": net(c)[0], "adain": adain.stylize(c, s)[0]}
            for method, out in outs.items():
                scored[method].append(image_metrics(enc, out, c[0], s[0], 1.0))
            rows.append([content, painting, outs["adain"].cpu(), outs["johnson"].cpu()])
        x = torch.rand(1, 3, size, size, device=device)
        metrics.update({f"johnson.{style}.{k}": v for k, v in mean_rows(scored["johnson"]).items()})
        metrics.update({f"johnson.{style}.adain.{k}": v for k, v in mean_rows(scored["adain"]).items()})
        floor = floor_metrics(enc, chosen, device)
        metrics.update({f"johnson.{style}.floor.{k}": v for k, v in floor.items()})
        checks = quality_checks(mean_rows(scored["johnson"]), floor)
        metrics.update({f"johnson.{style}.checks.{k}": v for k, v in checks.items()})
        metrics[f"johnson.{style}.fps"] = calls_per_second(partial(net, x), params.evaluate.speed_repeats, device)
        metrics[f"johnson.{style}.pairs"] = len(scored["johnson"])
    save_grid(rows, out_dir / GRID)
    return metrics
