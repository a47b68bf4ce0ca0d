"""Losses shared by every method. Reductions are stated: all are means (PyTorch-port convention).

* content: MSE between feature maps (for AdaIN: relu4_1 of the output vs the AdaIN target t).
* style (mean/std): MSE between per-channel means plus MSE between per-channel stds, summed over layers
  (options: reduction "sum" over channels as in the Lua original, a square root per layer, layer weights).
* Gram: MSE between Gram matrices normalised by C*H*W (Johnson / Gatys).
* structure: MSE between mean/std-normalised features of output and content (layout without statistics).
* colour: MSE between per-channel RGB means plus between RGB stds of output and style image
  ("moments"), or the squared 1-D Wasserstein distance between their per-channel RGB value distributions
  ("histogram", Risser et al. 2017): for Gaussian channels the two agree, otherwise the histogram term
  also matches the shape of each channel's distribution (a flat grey field, a few saturated primaries).
* total variation: mean absolute difference between neighbouring pixels.
* shift consistency: compound regularisation (Wang et al., AAAI 2020): the output for a shifted, noisier
  content image should be the output shifted the same way, so video frames that differ by a pixel of motion
  or sensor noise give outputs that differ by the same motion, not by flicker.
Per-channel statistics here put eps inside the sqrt (`functional.mean_std(eps_in_sqrt=True)`), so that
constant channels keep finite gradients.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F

from stylepipe.nn.functional import EPS, gram, mean_std, normalise


def content_loss(output_feat: torch.Tensor, target_feat: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(output_feat, target_feat)


def _sum_over_layers(
    term: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    output_feats: Mapping[str, torch.Tensor],
    style_feats: Mapping[str, torch.Tensor],
    layers: Iterable[str],
    weights: Sequence[float] | None = None,
) -> torch.Tensor:
    layers = list(layers)
    weights = [1.0] * len(layers) if weights is None else list(weights)
    total = torch.zeros((), device=next(iter(output_feats.values())).device)
    for name, weight in zip(layers, weights, strict=True):
        total = total + weight * term(output_feats[name], style_feats[name])
    return total


def _squared_error(a: torch.Tensor, b: torch.Tensor, reduction: str) -> torch.Tensor:
    """'mean': MSE over batch and channels; 'sum': summed over channels, averaged over the batch."""
    if reduction == "sum":
        return (a - b).pow(2).sum() / a.shape[0]
    return F.mse_loss(a, b)


def style_loss(
    output_feats: Mapping[str, torch.Tensor],
    style_feats: Mapping[str, torch.Tensor],
    layers: Iterable[str],
    reduction: str = "mean",
    sqrt: bool = False,
    weights: Sequence[float] | None = None,
) -> torch.Tensor:
    """Weighted sum over layers of err(mean) + err(std) (see `_squared_error` for the reduction);
    `sqrt` takes the square root of each layer's distance (it converges faster)."""

    def term(out: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        o_mean, o_std = mean_std(out, eps_in_sqrt=True)
        s_mean, s_std = mean_std(style, eps_in_sqrt=True)
        dist = _squared_error(o_mean, s_mean, reduction) + _squared_error(o_std, s_std, reduction)
        return (dist + EPS).sqrt() if sqrt else dist

    return _sum_over_layers(term, output_feats, style_feats, layers, weights)


def gram_loss(
    output_feats: Mapping[str, torch.Tensor],
    style_feats: Mapping[str, torch.Tensor],
    layers: Iterable[str],
) -> torch.Tensor:
    """Sum over layers of MSE between Gram matrices (mean-reduced)."""
    layers = list(layers)
    return gram_target_loss(output_feats, {k: gram(style_feats[k]) for k in layers}, layers)


def gram_target_loss(
    output_feats: Mapping[str, torch.Tensor],
    target_grams: Mapping[str, torch.Tensor],
    layers: Iterable[str],
    weights: Sequence[float] | None = None,
) -> torch.Tensor:
    """`gram_loss` against Gram matrices computed once ([N or 1, C, C]: one style image for a batch)."""

    def term(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        g = gram(out)
        return F.mse_loss(g, target.expand_as(g))

    return _sum_over_layers(term, output_feats, target_grams, layers, weights)


def structure_loss(
    output_feats: Mapping[str, torch.Tensor], content_feats: Mapping[str, torch.Tensor], layers: Iterable[str]
) -> torch.Tensor:
    """Sum over layers of the MSE between mean/std-normalised feature maps of output and content: the
    content's layout and edges, with the per-channel statistics (the style's business) divided out."""

    def term(out: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
        def standardised(feat: torch.Tensor) -> torch.Tensor:
            return normalise(feat, *mean_std(feat, eps_in_sqrt=True))

        return F.mse_loss(standardised(out), standardised(content))

    return _sum_over_layers(term, output_feats, content_feats, layers)


def colour_loss(output: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """MSE between the per-channel RGB mean and std of the output and of the style image: the palette
    term, which the feature statistics of an edge-tuned encoder (vgg16_hed) carry only weakly."""
    o_mean, o_std = mean_std(output, eps_in_sqrt=True)
    s_mean, s_std = mean_std(style, eps_in_sqrt=True)
    return F.mse_loss(o_mean, s_mean) + F.mse_loss(o_std, s_std)


def histogram_loss(output: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """Mean over images and RGB channels of the squared 1-D Wasserstein distance between the output's and
    the style image's pixel values: the MSE between both sorted value lists, the style's resampled at the
    output's quantiles when the sizes differ. Sorting is differentiable in the values, so every pixel is
    pulled towards the style value of its own rank: the palette's shape, not only its mean and spread."""
    out_sorted = output.flatten(2).sort(dim=2).values
    style_sorted = style.flatten(2).sort(dim=2).values
    n_out, n_style = out_sorted.shape[2], style_sorted.shape[2]
    if n_style != n_out:
        ranks = torch.linspace(0, n_style - 1, n_out, device=style.device).round().long()
        style_sorted = style_sorted[..., ranks]
    return F.mse_loss(out_sorted, style_sorted.expand_as(out_sorted))


COLOUR_TERMS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "moments": colour_loss,
    "histogram": histogram_loss,
}


def total_variation(img: torch.Tensor) -> torch.Tensor:
    dh = (img[:, :, 1:, :] - img[:, :, :-1, :]).abs().mean()
    dw = (img[:, :, :, 1:] - img[:, :, :, :-1]).abs().mean()
    return dh + dw


def shift_consistency_loss(
    stylise: Callable[[torch.Tensor], torch.Tensor],
    content: torch.Tensor,
    output: torch.Tensor,
    noise: float,
    grid: int = 8,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Compound regularisation: MSE between `stylise` of a window of `content` [N, 3, H, W] (H - grid by
    W - grid, at a random offset of 0..grid px on each axis, plus Gaussian noise of std `noise`) and the same
    window of `output` = stylise(content). Zero for a network that commutes with shifts and ignores the
    noise; offsets within one `grid` cover the shifts that strided pooling and upsampling are not stable to,
    and keep the window's sides multiples of `grid`."""
    h, w = content.shape[-2:]
    if h <= grid or w <= grid:
        raise ValueError(f"content {w}x{h} is too small for shifts within a grid of {grid} px")
    dy, dx = (int(v) for v in torch.randint(0, grid + 1, (2,), generator=generator))
    window = content[..., dy : dy + h - grid, dx : dx + w - grid]
    if noise:
        jitter = torch.randn(window.shape, generator=generator, dtype=window.dtype).to(window.device)
        window = (window + noise * jitter).clamp(0, 1)
    shifted = stylise(window)
    return F.mse_loss(shifted.float(), output[..., dy : dy + h - grid, dx : dx + w - grid].float())


def target_grams(
    extract: Callable[[torch.Tensor], Mapping[str, torch.Tensor]], style: torch.Tensor, layers: Sequence[str]
) -> dict[str, torch.Tensor]:
    """Gram matrices [1, C, C] of one style image [1, 3, H, W] at `layers` (fp32, no graph)."""
    with torch.no_grad():
        feats = extract(style)
    return {k: gram(feats[k].float()) for k in layers}
