"""Image metrics every method is scored with: one encoder depth, one content and style measure, SSIM
and colour histograms, the colour-transfer floor and the quality bar a model must pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from skimage.metrics import structural_similarity

from stylepipe.core import paths
from stylepipe.core.colour import luminance
from stylepipe.nn.encoders import TAPS, VGGEncoder, load_encoder
from stylepipe.nn.functional import adain, mean_std
from stylepipe.nn.losses import content_loss, gram_loss, style_loss

HIST_BINS = 32
SSIM_MIN = 0.45  # below this, faces and buildings stop being recognisable at a glance


def ssim_luminance(a: torch.Tensor, b: torch.Tensor) -> float:
    """SSIM of two [3, H, W] RGB images' luminance (clamped to [0, 1]), the luminance `nn.detail` restores."""
    def lum(img: torch.Tensor) -> np.ndarray:
        return luminance(img.float().clamp(0, 1).cpu().numpy(), channel_axis=0)

    return float(structural_similarity(lum(a), lum(b), data_range=1.0))


def colour_histogram_distance(a: torch.Tensor, b: torch.Tensor, bins: int = HIST_BINS) -> float:
    """Mean over RGB channels of the total-variation distance between normalised histograms (0..1)."""
    dist = 0.0
    for ch in range(3):
        ha = torch.histc(a[ch].float(), bins=bins, min=0.0, max=1.0)
        hb = torch.histc(b[ch].float(), bins=bins, min=0.0, max=1.0)
        dist += 0.5 * float((ha / ha.sum() - hb / hb.sum()).abs().sum())
    return dist / 3.0


def own_style_closest(outputs: list[list[torch.Tensor]], styles: list[torch.Tensor]) -> list[dict[str, float | bool]]:
    """Per style (column j of `outputs`, one row per content): the mean histogram distance of its outputs
    to their own style and to the nearest other one, and whether the own style is the nearer: whether the
    styles' palettes stay apart instead of converging on one house palette."""
    verdict = []
    for j in range(len(styles)):
        column = [row[j] for row in outputs]
        dists = [float(np.mean([colour_histogram_distance(img, style) for img in column])) for style in styles]
        others = [d for k, d in enumerate(dists) if k != j]
        nearest_other = min(others) if others else float("inf")
        verdict.append({"own": dists[j], "nearest_other": nearest_other, "closest_is_own": dists[j] < nearest_other})
    return verdict


def colour_transfer(content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """Floor baseline: match per-channel RGB mean/std of the content to the style."""
    c_mean, c_std = mean_std(content[None])
    s_mean, s_std = mean_std(style[None])
    return ((content[None] - c_mean) / c_std * s_std + s_mean).clamp(0, 1)[0]


METRIC_LAYER = "relu4_1"  # the metrics' encoder depth, whatever the model's AdaIN layer: one scale for all


def metric_encoder(device: torch.device, path: Path = paths.ENCODER) -> VGGEncoder:
    """The encoder every method is scored with: the weights stage's encoder cut at relu4_1."""
    return load_encoder(path, last=METRIC_LAYER).to(device)


@torch.no_grad()
def image_metrics(
    enc: VGGEncoder, out: torch.Tensor, content: torch.Tensor, style: torch.Tensor, alpha: float
) -> dict[str, float]:
    """Content loss (relu4_1 vs the alpha-blended AdaIN target), mean/std and Gram style loss over
    relu1_1..relu4_1, SSIM, histogram: the same measure for every method and every AdaIN depth."""
    out_f, sty_f = enc(out[None]), enc(style[None])
    c_feat = enc.encode(content[None])
    target = adain(c_feat, *mean_std(sty_f[METRIC_LAYER]))
    target = alpha * target + (1 - alpha) * c_feat
    return {
        "content_loss": float(content_loss(out_f[METRIC_LAYER], target)),
        "style_loss": float(style_loss(out_f, sty_f, TAPS)),
        "gram_loss": float(gram_loss(out_f, sty_f, TAPS)),
        "ssim_content": ssim_luminance(out, content),
        "hist_distance_style": colour_histogram_distance(out, style),
    }


def floor_metrics(enc: VGGEncoder, pairs: list, device: torch.device) -> dict[str, float]:
    """The colour-transfer floor's mean metrics on `pairs`: what a network must beat to be worth running."""
    return mean_rows([image_metrics(enc, colour_transfer(c, s).to(device), c.to(device), s.to(device), 1.0)
                       for c, s, _ in pairs])


def quality_checks(model: dict[str, float], floor: dict[str, float],
                   palettes_apart: bool | None = None) -> dict[str, bool]:
    """The project's quality bar at alpha 1: more style than the colour-transfer floor (lower mean/std
    style loss) while the content stays readable (luminance SSIM against the content >= SSIM_MIN), and,
    for a model that takes any style, `palettes_apart`: every style's outputs nearest their own palette
    (`own_style_closest` true for each style)."""
    checks = {"style_loss_below_floor": model["style_loss"] < floor["style_loss"],
              f"ssim_at_least_{SSIM_MIN}": model["ssim_content"] >= SSIM_MIN}
    if palettes_apart is not None:
        checks["own_palette_closest_for_every_style"] = palettes_apart
    return checks


def mean_rows(rows: list[dict[str, float]]) -> dict[str, float]:
    """The per-key mean of metric rows that share their keys."""
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
