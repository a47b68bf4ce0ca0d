"""AdaIN stylisation behind `stylepipe stylize` and its Python API (the file, folder and video I/O is
`stylepipe.apply`'s).

* `AdaINStylize`: the AdaIN stylizer with the reference tools' options: alpha, interpolation between
  several styles (weighted mean of their feature statistics = the reference's weighted sum of AdaIN
  outputs), spatial masks (per-region AdaIN as the Lua reference: each region of the content features
  gets its own content statistics and its style's), colour preservation (`luminance`: the output's
  luminance with the content's chroma, YCbCr BT.601; `coral`: the reference tools' way, the style image
  recoloured to the content's RGB mean/covariance before encoding), tiling for large frames with the
  statistics of the whole frame's content features (so tiles share one tone); every step runs through the
  inference engine (`adain.engine`: encode, blend, decode, finish) on its backend (torch or OpenVINO).
`stylize(...)` wires it to `apply.run_stylizer` for the CLI.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from stylepipe.adain.engine import PALETTES, Engine, Finish, Palette, StyleTarget
from stylepipe.adain.fast import torch_engine
from stylepipe.adain.model import load_stylizer
from stylepipe.adain.video import DECODED_BLEND, FEATURE_BLEND, Smoothing, stable_stylizer
from stylepipe.apply import StylizeError, read_image, run_stylizer, video_flow_blend
from stylepipe.core import paths
from stylepipe.core.config import Common
from stylepipe.core.media import MediaError, is_video, open_image
from stylepipe.core.runtime import resolve_runtime
from stylepipe.core.tiling import GRID, available_bytes, choose_tile, feather, pad_to_grid, plan_windows
from stylepipe.nn.functional import coral, mean_std_of_sums
from stylepipe.nn.statistics import StyleBank

PreserveColor = Literal["luminance", "coral"] | None
RECOMPUTE = "compute them with this model from the style images (and save them with save_style_stats)"


# ------------------------------------------------------------------------------------------ colour ops


_YCBCR = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])


def keep_content_colour(stylised: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Luminance-only transfer: Y of the stylised image, Cb/Cr of the content (BT.601), [N, 3, H, W]."""
    m = _YCBCR.to(stylised)
    y = torch.einsum("ij,njhw->nihw", m[:1], stylised)
    cbcr = torch.einsum("ij,njhw->nihw", m[1:], content)
    return torch.einsum("ij,njhw->nihw", torch.linalg.inv(m), torch.cat([y, cbcr], 1)).clamp(0, 1)


# ------------------------------------------------------------------------------------- style statistics


def normalise_weights(weights: Sequence[float] | None, n: int) -> torch.Tensor:
    if weights is None:
        if n != 1:
            raise StylizeError(f"{n} styles given: pass weights (one per style) or a mask", ("weights", "mask"))
        return torch.ones(1)
    if len(weights) != n:
        raise StylizeError(f"weights has {len(weights)} values for {n} styles", ("weights",))
    w = torch.tensor([float(v) for v in weights])
    if (w < 0).any() or float(w.sum()) <= 0:
        raise StylizeError(f"weights {list(weights)} must be non-negative with a positive sum", ("weights",))
    return w / w.sum()


# ------------------------------------------------------------------------------------------------ masks


def mask_regions(mask: Image.Image, n_styles: int) -> Image.Image:
    """Greyscale mask -> style index per pixel: N evenly spaced grey levels, white (255) = the first
    style, black (0) = the last (for two styles: white foreground = style 1, black = style 2)."""
    grey = np.asarray(mask.convert("L"), dtype=np.float32) / 255.0
    index = (n_styles - 1) - np.rint(grey * (n_styles - 1)).astype(np.uint8)
    return Image.fromarray(index.astype(np.uint8), "L")


def region_onehot(regions: Image.Image, source: Path, size: tuple[int, int], n: int, stride: int) -> torch.Tensor:
    """[1, n, H/stride, W/stride] fractions of each region per feature cell (`stride` px a side) for a
    content of size (H, W) padded to the grid of 8.

    The mask must have the content's aspect ratio (within 2%); it is resized (nearest) to the content."""
    h, w = size
    mw, mh = regions.size
    if abs(mw / mh - w / h) > 0.02 * (w / h):
        raise StylizeError(f"{source}: mask is {mw}x{mh} but the content is {w}x{h}: expected the same "
                           f"aspect ratio (the mask is resized to the content)")
    index = torch.from_numpy(np.asarray(regions.resize((w, h), Image.Resampling.NEAREST), dtype=np.int64))
    onehot = F.one_hot(index, n).permute(2, 0, 1)[None].float()
    padded, _ = pad_to_grid(onehot)
    return F.avg_pool2d(padded, stride)


# -------------------------------------------------------------------------------------- AdaIN stylizer


@dataclass
class StylizeOptions:
    alpha: float = 1.0
    weights: Sequence[float] | None = None
    preserve_color: PreserveColor = None
    mask: Path | None = None
    tile: int | None = None  # None: tile only when memory requires it; 0: never; N: tiles of N px
    tile_overlap: int = 64  # feathered overlap between tiles
    tile_context: int = 64  # extra pixels each tile sees on every side (discarded)
    memory_budget: int | None = None  # bytes; None = measured on the device
    compile_mode: str | None = None
    palette: Palette | None = None  # None: as the engine's finishing settings (params finish.palette)
    detail: float | None = None  # None: as the engine's finishing settings (params finish.detail)
    flow_blend: float | None = None  # video: the previous output's share along the flow (None: adain.video's)
    decoded_blend: float | None = None  # video: the previous decoded image's share (None: adain.video's)
    feature_blend: float | None = None  # video: the previous AdaIN features' share (None: adain.video's)
    content_stats_momentum: float = 0.0  # video: content statistics smoothed within a shot (adain.video)
    palette_momentum: float = 0.0  # video: the palette map smoothed within a shot (adain.video)

    def validate(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise StylizeError(f"alpha {self.alpha} is out of range: expected 0..1", ("alpha",))
        if self.preserve_color not in (None, "luminance", "coral"):
            raise StylizeError(f"preserve_color {self.preserve_color!r}: expected luminance or coral",
                               ("preserve_color",))
        if self.palette is not None and self.palette not in PALETTES:
            raise StylizeError(f"palette {self.palette!r}: expected one of {list(PALETTES)}", ("palette",))
        if self.detail is not None and not 0.0 <= self.detail <= 1.0:
            raise StylizeError(f"detail {self.detail} is out of range: expected 0..1", ("detail",))
        if self.mask is not None and self.weights is not None:
            raise StylizeError("mask and weights exclude each other: the mask decides which style goes where",
                               ("mask", "weights"))
        for name in ("tile_overlap", "tile_context"):
            if getattr(self, name) % GRID or getattr(self, name) < 0:
                raise StylizeError(f"{name} {getattr(self, name)} must be a non-negative multiple of {GRID}", (name,))
        if self.tile is not None and self.tile and (self.tile % GRID or self.tile <= self.tile_overlap):
            raise StylizeError(f"tile {self.tile} must be a multiple of {GRID} larger than the overlap "
                               f"{self.tile_overlap}", ("tile",))


class AdaINStylize:
    """content [1, 3, H, W] (H, W multiples of 8) in [0, 1] -> stylised, through an inference engine, with
    the target statistics (and palettes) prepared once when they do not depend on the frame."""

    def __init__(self, engine: Engine, options: StylizeOptions, stats: StyleBank | None = None,
                 style_images: Sequence[torch.Tensor] | None = None) -> None:
        options.validate()
        if stats is None and style_images is None:
            raise StylizeError("no style given: pass style image(s) or a style statistics file")
        if options.preserve_color == "coral" and style_images is None:
            raise StylizeError("preserve_color coral recolours the style image, which cached statistics do not "
                               "have: use preserve_color luminance with style statistics", ("preserve_color",))
        if stats is not None:
            stats.check_fits(engine.origin, f"styles {stats.names}", RECOMPUTE)
        finish = engine.finish_settings.overridden(options.palette, options.detail)
        self.engine, self.opts = engine.with_finish(finish), options
        self.stride = engine.stride  # pixels per feature cell: the grid of regions and tile cores
        self.style_images = list(style_images or [])
        self.n_styles = len(stats) if stats is not None else len(self.style_images)
        if options.mask is None:
            normalise_weights(options.weights, self.n_styles)  # validate now, not at the first frame
        self.regions = None
        if options.mask is not None:
            try:
                self.regions = mask_regions(open_image(options.mask), self.n_styles)
            except MediaError as err:
                raise StylizeError(str(err), ("mask",)) from None
        self.element_bytes = 2 if engine.backend.precision in ("bf16", "int8") else 4
        self.match_palette = finish.matches_palette
        if stats is not None and self.match_palette:
            stats.require_palette(f"styles {stats.names}")
        # without coral the target statistics are the same for every frame: mixed and moved once
        self.fixed_style = None if stats is None or options.preserve_color == "coral" else self._region_style(stats)

    @property
    def device(self) -> torch.device:
        """Where the networks run (`apply.stylise_frames` overlaps a video's flow with them off the CPU)."""
        return self.engine.device

    # -- target statistics (and palette) for one content frame
    def _style_for(self, content: torch.Tensor) -> StyleTarget:
        if self.fixed_style is not None:
            return self.fixed_style
        recoloured = [coral(s, content[0].cpu()) for s in self.style_images]
        return self._region_style(self.engine.style_bank([str(i) for i in range(len(recoloured))], recoloured))

    def _region_style(self, stats: StyleBank) -> StyleTarget:
        """[R, C, 1, 1] target statistics per region, and [R, 3, Q] palettes when the output is matched to
        them: one mixed style, or one per mask region."""
        palette = None
        if self.regions is None:
            weights = normalise_weights(self.opts.weights, len(stats))
            mean, std = stats.mixed(weights)
            if self.match_palette:
                palette = stats.mixed_palette(weights)
        else:
            mean, std = stats.mean, stats.std
            if self.match_palette:
                palette = stats.require_palette()
        return StyleTarget(mean, std, palette)

    def tile_size(self, height: int, width: int) -> int:
        if self.opts.tile is not None:
            return self.opts.tile if self.opts.tile < max(height, width) else 0
        budget = self.opts.memory_budget or available_bytes(self.engine.device)
        return choose_tile(height, width, self.element_bytes, budget, self.opts.tile_context)

    @torch.no_grad()
    def __call__(self, content: torch.Tensor) -> torch.Tensor:
        h, w = content.shape[-2:]
        if h % GRID or w % GRID:
            raise StylizeError(f"content {w}x{h}: stylizers take multiples of {GRID} (use apply_padded)")
        style = self._style_for(content)
        tile = self.tile_size(h, w)
        if tile == 0 and self.regions is None:
            out = self.engine.frame(content, style, self.opts.alpha).cpu()
        else:
            out = self._general(content, style, tile)
        if self.opts.preserve_color == "luminance":
            out = keep_content_colour(out, content.to(out))
        return out

    def _matched(self, out: torch.Tensor, palette: torch.Tensor) -> torch.Tensor:
        """With a mask, the finished frame matched to each region's palette, composited by the mask at full
        resolution (after tiling, so tiles share one map)."""
        h, w = out.shape[-2:]
        index = np.asarray(self.regions.resize((w, h), Image.Resampling.NEAREST), dtype=np.int64)
        onehot = F.one_hot(torch.from_numpy(index), len(palette)).permute(2, 0, 1)[:, None].to(out)
        alpha = self.opts.alpha
        return sum(onehot[k] * self.engine.match(out, palette[k : k + 1], alpha)
                   for k in range(len(palette)))

    # -- the general path: regions and/or tiles, content statistics of the whole frame
    def _general(self, content: torch.Tensor, style: StyleTarget, tile: int) -> torch.Tensor:
        """Per-region AdaIN with the whole frame's content statistics; tiles (when `tile` > 0) see
        `tile_context` px of context, are blended towards the style with those global statistics, decoded,
        cropped to their cores and feather-blended over `tile_overlap` px; the blended frame is finished
        (detail, clamp, palette) as a whole."""
        h, w = content.shape[-2:]
        n_regions = style.mean.shape[0]
        f = self.stride
        onehot = (region_onehot(self.regions, self.opts.mask, (h, w), n_regions, f) if self.regions is not None
                  else torch.ones(1, 1, h // f, w // f))
        tiled = 0 < tile < max(h, w)
        tile = tile if tiled else max(h, w)
        context, overlap = (self.opts.tile_context, self.opts.tile_overlap) if tiled else (0, 0)
        features: dict[tuple, torch.Tensor] = {}
        c_mean, c_std = self._content_stats(content, onehot, tile, context, features)
        out, weight = torch.zeros(1, 3, h, w), torch.zeros(1, 1, h, w)
        for win in plan_windows(h, w, tile, overlap, context):
            fy0, fy1, fx0, fx1 = win.fetch
            feat = features.pop(win.fetch, None)
            feat = self.engine.encode(content[..., fy0:fy1, fx0:fx1]) if feat is None else feat
            regions = onehot[..., fy0 // f : fy1 // f, fx0 // f : fx1 // f].to(feat)
            target = sum(regions[:, k : k + 1] * self.engine.blend(feat, style.mean[k], style.std[k], self.opts.alpha,
                                                                   (c_mean[k], c_std[k]))
                         for k in range(n_regions))
            y0, y1, x0, x1 = win.core
            image = self.engine.decode(target).float().cpu()[..., y0 - fy0 : y1 - fy0, x0 - fx0 : x1 - fx0]
            fw = feather(win, h, w, overlap)
            out[..., y0:y1, x0:x1] += image * fw
            weight[..., y0:y1, x0:x1] += fw
        if self.regions is None:
            palette = None if style.palette is None else style.palette[:1]
            return self.engine.finish(out / weight, content, palette, self.opts.alpha)
        finished = self.engine.finish(out / weight, content)
        return finished if style.palette is None else self._matched(finished, style.palette)

    def _content_stats(self, content: torch.Tensor, onehot: torch.Tensor, tile: int, context: int,
                       features: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-region mean/std (indexed [region] -> [1, C, 1, 1]) of the whole frame's AdaIN-layer features,
        accumulated in float64 over a partition of the frame, each feature cell counted once (matches
        `functional.mean_std`: biased variance, eps outside the sqrt). A single window's features are kept in
        `features` for the decoding pass."""
        h, w, f = *content.shape[-2:], self.stride
        s1 = s2 = count = None
        windows = plan_windows(h, w, tile, 0, context)
        for win in windows:
            fy0, fy1, fx0, fx1 = win.fetch
            feat = self.engine.encode(content[..., fy0:fy1, fx0:fx1])
            if len(windows) == 1:
                features[win.fetch] = feat
            y0, y1, x0, x1 = win.core
            core = feat[..., (y0 - fy0) // f : (y1 - fy0) // f, (x0 - fx0) // f : (x1 - fx0) // f].double()
            r = onehot[..., y0 // f : y1 // f, x0 // f : x1 // f].to(core)
            parts = (torch.einsum("nkhw,nchw->kc", r, core), torch.einsum("nkhw,nchw->kc", r, core * core),
                     r.sum(dim=(0, 2, 3)))
            s1, s2, count = parts if s1 is None else (s1 + parts[0], s2 + parts[1], count + parts[2])
        mean, std = mean_std_of_sums(s1, s2, count[:, None])
        return mean.float()[:, None, :, None, None], std.float()[:, None, :, None, None]


def stylize(
    content: Path,
    output: Path,
    style: Sequence[Path] = (),
    style_stats: Path | None = None,
    style_names: Sequence[str] | None = None,
    options: StylizeOptions | None = None,
    content_size: int = 0,
    style_size: int = 512,
    save_style_stats: Path | None = None,
    encoder: Path = paths.ENCODER,
    decoder: Path = paths.DECODER,
    common: Common | None = None,
    progress: bool = True,
    finish: Finish | None = None,
) -> dict:
    """The AdaIN stylisation behind `stylepipe stylize` (see the module docstring for the options), the
    outputs finished by `finish` (default: params `finish`'s defaults; `options` override it)."""
    options = options or StylizeOptions()
    options.validate()
    if bool(style) == (style_stats is not None):
        raise StylizeError("give style image(s) or a style statistics file, one of them", ("style", "style_stats"))
    if style_names and style_stats is None:
        raise StylizeError("style_names selects styles of a style statistics file", ("style_names", "style_stats"))
    rt = resolve_runtime(common or Common())
    model = load_stylizer(encoder, decoder)
    engine = torch_engine(model, rt, finish or Finish(), options.compile_mode)
    return stylize_with(engine, content, output, style, style_stats, style_names, options, content_size,
                        style_size, save_style_stats, progress)


def _video_blend(given: float | None, default: float, content: Path, whole_frame_style: bool) -> float:
    """One of `StableAdaIN`'s blends: as given, else its `default` for a video stylised with one whole-frame
    style (the stable path's condition), else 0."""
    if given is not None:
        return given
    return default if whole_frame_style and is_video(content) else 0.0


def stylize_with(
    engine: Engine,
    content: Path,
    output: Path,
    style: Sequence[Path] = (),
    style_stats: Path | None = None,
    style_names: Sequence[str] | None = None,
    options: StylizeOptions | None = None,
    content_size: int = 0,
    style_size: int = 512,
    save_style_stats: Path | None = None,
    progress: bool = True,
) -> dict:
    """`stylize` through a ready engine (any backend)."""
    options = options or StylizeOptions()
    images = None
    if style_stats is not None:
        stats = StyleBank.load(style_stats)
        stats.check_fits(engine.origin, str(style_stats), RECOMPUTE)
        if style_names:
            stats = stats.select(style_names, str(style_stats))
    else:
        images = [read_image(Path(p), style_size, upscale=True) for p in style]
        stats = engine.style_bank([Path(p).stem for p in style], images)
        if options.preserve_color != "coral":
            images = None
    result: dict[str, Any] = {}
    if save_style_stats is not None:
        result["style_stats"] = str(stats.save(save_style_stats))
    stylizer: Any = AdaINStylize(engine, options, stats=stats, style_images=images)
    others = [k for k in ("mask", "preserve_color", "tile") if getattr(options, k)]
    stable = stylizer.fixed_style is not None and not others
    smoothing = Smoothing(options.content_stats_momentum, options.palette_momentum,
                          _video_blend(options.decoded_blend, DECODED_BLEND, Path(content), stable),
                          _video_blend(options.feature_blend, FEATURE_BLEND, Path(content), stable))
    if smoothing.active:
        stylizer = stable_stylizer(stylizer.engine, stylizer.fixed_style, options.alpha, smoothing, Path(content),
                                   others)
    flow_blend = video_flow_blend(content, options.flow_blend)
    return {**run_stylizer(content, output, stylizer, content_size, progress, flow_blend), **result}
