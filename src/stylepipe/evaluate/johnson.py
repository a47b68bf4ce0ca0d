"""Johnson's per-style networks beside AdaIN in the evaluate stage, on the same evaluation pairs.

For every style in train_johnson.styles: the evaluation pairs whose painting is of that style (else, when
`evaluate.num_pairs` is too small to reach it, every pair's content with that style's representative
painting), scored with the evaluate stage's own metrics for both methods at alpha 1 (content loss at
relu4_1 against the AdaIN target, mean/std and Gram style losses, SSIM, colour histogram) and timed at
evaluate.image_size. Metrics are `johnson.<style>.<metric>`, `johnson.<style>.adain.<metric>`, the
colour-transfer floor on the same pairs `johnson.<style>.floor.<metric>` and the quality bar's checks;
reports/evaluate/johnson_grid.png shows content | style | AdaIN | Johnson rows.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch

from stylepipe.adain.model import AdaINStylizer
from stylepipe.core import paths
from stylepipe.core.config import Params
from stylepipe.core.runtime import calls_per_second
from stylepipe.core.viz import save_grid
from stylepipe.johnson.model import load_johnson_stylizer
from stylepipe.nn.encoders import VGGEncoder
from stylepipe.nn.metrics import floor_metrics, image_metrics, mean_rows, quality_checks

GRID = "johnson_grid.png"


def style_pairs(pairs: list, style: str, params: Params) -> list:
    """The evaluation pairs of `style`; if there are none, every content with the style's painting."""
    chosen = [p for p in pairs if p[2]["style_label"] == style]
    if chosen:
        return chosen
    from stylepipe.train.plumbing import open_stores, style_image

    painting = style_image(open_stores()[1], style, params.evaluate.image_size)
    return [(c, painting, {**info, "style_label": style}) for c, _, info in pairs]


@torch.no_grad()
def evaluate_johnson(
    params: Params, adain: AdaINStylizer, enc: VGGEncoder, pairs: list, device: torch.device, out_dir: Path,
    model_root: Path = paths.JOHNSON_DIR,
) -> dict[str, float]:
    """Metrics of every Johnson style beside AdaIN on the same pairs; writes out_dir/johnson_grid.png."""
    metrics: dict[str, float] = {}
    rows: list[list[torch.Tensor]] = []
    size = params.evaluate.image_size
    for style in params.train_johnson.styles:
        net = load_johnson_stylizer(style, model_root).to(device)
        scored = {"johnson": [], "adain": []}
        chosen = style_pairs(pairs, style, params)
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
