"""The style-transfer math every method, export wrapper, metric and preview shares, as pure functions.

Per-channel statistics come in two forms that differ on purpose, chosen per caller by `eps_in_sqrt`:
* sqrt(var) + eps (the default): the MVN form (eps outside the sqrt) that the Myriad X compiles, used by
  AdaIN in every exported graph and in inference;
* sqrt(var + eps): for losses, where a constant channel (var = 0, e.g. a dead ReLU) would otherwise give
  d sqrt / d var = inf and turn the whole gradient into NaN.
Both use the biased variance, as AdaIN does (Huang & Belongie, "Arbitrary Style Transfer in Real-time with
Adaptive Instance Normalization", 2017).
"""

from __future__ import annotations

import torch

EPS = 1e-5
SPATIAL = (2, 3)


def mean_std(
    feat: torch.Tensor, eps: float = EPS, scale: float = 1.0, eps_in_sqrt: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel spatial mean and std (biased variance) of [N, C, H, W], each [N, C, 1, 1].

    `scale` > 1 takes the variance of feat/scale and multiplies the std back: the same value in exact
    arithmetic, but the squares stay inside the FP16 range on the Myriad X (relu4_1 deviations squared
    can approach 65504). It applies to the export form only; `scale` = 1 adds no operation to a graph.
    """
    if eps_in_sqrt and scale != 1.0:
        raise ValueError(f"scale {scale:g} is for the export form (eps outside the sqrt) only: expected 1.0")
    mean = feat.mean(dim=SPATIAL, keepdim=True)
    centred = feat - mean
    if eps_in_sqrt:
        return mean, (centred.pow(2).mean(dim=SPATIAL, keepdim=True) + eps).sqrt()
    if scale == 1.0:
        return mean, centred.pow(2).mean(dim=SPATIAL, keepdim=True).sqrt() + eps
    return mean, (centred / scale).pow(2).mean(dim=SPATIAL, keepdim=True).sqrt() * scale + eps


def mean_std_of_sums(
    total: torch.Tensor, total_sq: torch.Tensor, count: torch.Tensor, eps: float = EPS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std (biased variance, eps outside the sqrt, as `mean_std`) from accumulated sums of x and
    x^2 over `count` cells: statistics of a frame seen in pieces. `count` is clamped away from 0 (an
    empty region) and the variance at 0 (cancellation in E[x^2] - E[x]^2)."""
    count = count.clamp_min(1e-12)
    mean = total / count
    return mean, (total_sq / count - mean * mean).clamp_min(0).sqrt() + eps


def normalise(feat: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Features with their per-channel statistics divided out."""
    return (feat - mean) / std


def adain(
    content: torch.Tensor, style_mean: torch.Tensor, style_std: torch.Tensor, scale: float = 1.0
) -> torch.Tensor:
    """Re-normalise content features to the style's per-channel mean and std (export form statistics;
    pure, without Python-side shape checks, so it traces into a plain graph)."""
    c_mean, c_std = mean_std(content, scale=scale)
    return normalise(content, c_mean, c_std) * style_std + style_mean


def blend(target: torch.Tensor, content: torch.Tensor, alpha: float) -> torch.Tensor:
    """alpha * target + (1 - alpha) * content: the style strength of AdaIN's output features. At
    alpha = 1 the target itself, with no operation added (and no NaN from a non-finite content)."""
    if alpha == 1.0:
        return target
    return alpha * target + (1.0 - alpha) * content


def adain_blend(
    content: torch.Tensor, style_mean: torch.Tensor, style_std: torch.Tensor, alpha: float = 1.0
) -> torch.Tensor:
    """AdaIN of the content features, blended back towards them by `alpha` (the decoder's input)."""
    return blend(adain(content, style_mean, style_std), content, alpha)


def gram(feat: torch.Tensor) -> torch.Tensor:
    """Gram matrix normalised by C*H*W, shape [N, C, C] (Gatys et al., "Image Style Transfer Using
    Convolutional Neural Networks", 2016; Johnson et al., 2016)."""
    n, c, h, w = feat.shape
    flat = feat.reshape(n, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def _matrix_power(cov: torch.Tensor, power: float) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(cov)
    return vecs @ torch.diag(vals.clamp_min(1e-8).pow(power)) @ vecs.T


def _standardised(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[3, H*W] pixels of an RGB image in float64, standardised per channel (unbiased std, floored at
    1e-8 for a flat channel), with the mean and std."""
    flat = img.reshape(3, -1).double()
    mu, std = flat.mean(1, keepdim=True), flat.std(1, keepdim=True).clamp_min(1e-8)
    return (flat - mu) / std, mu, std


def coral(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Recolour `source` [3, H, W] to the RGB mean, std and correlation of `target` (CORAL: Sun et al.,
    "Return of Frustratingly Easy Domain Adaptation", 2016), as the reference AdaIN tools do before
    encoding the style image: each image standardised per channel, the source's (Gram + I) taken to the
    target's by matrix square roots, then the target's std and mean; not clamped, as there."""
    src, _, _ = _standardised(source)
    tgt, mu_t, std_t = _standardised(target)
    eye = torch.eye(3, dtype=src.dtype)
    moved = _matrix_power(tgt @ tgt.T + eye, 0.5) @ _matrix_power(src @ src.T + eye, -0.5) @ src
    return (moved * std_t + mu_t).reshape(source.shape).to(source.dtype)
