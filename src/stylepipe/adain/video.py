"""Stable AdaIN video: the engine's steps with state carried from frame to frame within a shot.

Frame-by-frame AdaIN flickers because the decoder's strokes change with every small change of the input,
and the finishing (detail, palette match) amplifies that change: the palette's steep map stretches small
differences. `StableAdaIN` therefore blends the decoder's input, the AdaIN features, with the previous
frame's along the input's optical flow brought to their grid (`Smoothing.features`), so the decoder draws
its strokes afresh from steady features, sharp, without resampling the image; and the decoder's output,
before the finishing, with its previous one (`Smoothing.decoded`), so the finishing acts on a steady image
and keeps its contrast. Both blend only where the flow is not occluded. It can also smooth two per-frame
quantities over the frames of a shot (an exponential moving average, the momentum being the share kept from
the previous frames; 1 holds the shot's first frame's values): the content features' mean/std that AdaIN
divides out, and the palette map's source quantiles. `apply` tells it each frame's `Motion` through `follow`
(None at a cut, where it starts afresh). Flow-guided blending of the finished output acts after it, in
`apply`, for any stylizer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stylepipe.adain.engine import Engine, StyleTarget
from stylepipe.apply import StylizeError
from stylepipe.core.media import is_video
from stylepipe.nn.palette import PaletteMap
from stylepipe.nn.temporal import Motion, blend_previous, blend_previous_features, motion_at

# AdaIN's video defaults, chosen by benchmarks/bench_video.py (docs/video.md): the previous frame's share of
# the AdaIN features (Smoothing.features) and of the decoded image (Smoothing.decoded), beside
# apply.FLOW_BLEND, the previous finished output's
FEATURE_BLEND = 0.95
DECODED_BLEND = 0.8


BLEND_OPTIONS = {"decoded": "decoded_blend", "features": "feature_blend"}  # Smoothing's blends as stylize names them


@dataclass(frozen=True)
class Smoothing:
    """How much of the previous frames each frame keeps (0: per frame, the plain path). `content_stats` and
    `palette` are momenta (1: the shot's first frame's values throughout); `decoded` and `features` are the
    previous decoded image's and AdaIN features' shares, warped along the flow (0..<1)."""

    content_stats: float = 0.0
    palette: float = 0.0
    decoded: float = 0.0
    features: float = 0.0

    def __post_init__(self) -> None:
        for name in ("content_stats", "palette"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise StylizeError(f"{name}_momentum {value} is out of range: expected 0..1", (f"{name}_momentum",))
        for name in ("decoded", "features"):
            value, option = getattr(self, name), BLEND_OPTIONS[name]
            if not 0.0 <= value < 1.0:
                raise StylizeError(f"{option} {value} is out of range: expected 0 <= {option} < 1", (option,))

    @property
    def active(self) -> bool:
        return bool(self.content_stats or self.palette or self.decoded or self.features)

    @property
    def names(self) -> tuple[str, ...]:
        """The options that are set, as `stylize` names them."""
        return tuple(n for n, v in (("content_stats_momentum", self.content_stats),
                                    ("palette_momentum", self.palette), (BLEND_OPTIONS["decoded"], self.decoded),
                                    (BLEND_OPTIONS["features"], self.features)) if v)


def stable_stylizer(engine: Engine, style: StyleTarget | None, alpha: float, smoothing: Smoothing, content: Path,
                    other_options: list[str]) -> StableAdaIN:
    """The StableAdaIN for a video `content`, refused (naming the options) for images and folders, for a
    style that changes per frame (`style` None: coral) and beside the per-region or tiled options."""
    names = smoothing.names
    if not is_video(content):
        raise StylizeError(f"{content}: {', '.join(names)} smooth a video's frames; they do not apply to images",
                           names)
    if style is None or other_options:
        fixed = ", ".join(other_options) or "preserve_color coral"
        raise StylizeError(f"{', '.join(names)} take one whole-frame style: they do not combine with {fixed}",
                           names + tuple(other_options))
    return StableAdaIN(engine, style, alpha, smoothing)


def _ema(previous: torch.Tensor | None, current: torch.Tensor, momentum: float) -> torch.Tensor:
    if previous is None or previous.shape != current.shape:
        return current
    return momentum * previous + (1.0 - momentum) * current


def _padded(motion: Motion, h: int, w: int) -> Motion:
    """`motion` extended to h x w at the bottom and right: no flow there, and nothing reliable."""
    fh, fw = motion.flow.shape[:2]
    pad = ((0, h - fh), (0, w - fw))
    return Motion(np.pad(motion.flow, (*pad, (0, 0))), np.pad(motion.reliable, pad))


class StableAdaIN:
    """A stylizer ([1, 3, H, W] in [0, 1], multiples of the engine's stride -> stylised) for the frames of a
    video in order: one style (`style`'s first row), AdaIN with smoothed content statistics, the palette map
    smoothed per shot, the AdaIN features and the decoded image blended along the flow that `follow` passes.
    With no smoothing it computes exactly what `Engine.frame` does."""

    def __init__(self, engine: Engine, style: StyleTarget, alpha: float, smoothing: Smoothing) -> None:
        if smoothing.palette and (style.palette is None or not engine.finish_settings.matches_palette):
            raise StylizeError("palette_momentum smooths the match to the painting's palette, but this model does "
                               "not match palettes (palette none, or style statistics without palettes)",
                               ("palette_momentum",))
        self.engine, self.alpha, self.smoothing = engine, alpha, smoothing
        self.mean, self.std = style.mean[:1], style.std[:1]
        self.palette = None if style.palette is None else style.palette[:1]
        self.start_shot()

    @property
    def device(self) -> torch.device:
        """Where the networks run (`apply.stylise_frames` overlaps the flow with them off the CPU)."""
        return self.engine.device

    def start_shot(self) -> None:
        """Forget the previous frames: the next frame starts a shot."""
        self._stats: tuple[torch.Tensor, torch.Tensor] | None = None
        self._map: PaletteMap | None = None
        self._decoded: np.ndarray | None = None
        self._features: torch.Tensor | None = None
        self._motion: Motion | None = None

    def follow(self, motion: Motion | None) -> None:
        """The next frame's motion from the previous one (`nn.temporal.ShotTracker`); None starts a shot."""
        if motion is None:
            self.start_shot()
        self._motion = motion

    def _steady(self, decoded: torch.Tensor, motion: Motion | None) -> torch.Tensor:
        """`decoded` [1, 3, H, W] blended with the previous decoded image along `motion` (at H x W)."""
        if not self.smoothing.decoded:
            return decoded
        own = decoded[0].float().permute(1, 2, 0).cpu().numpy()
        self._decoded = blend_previous(own, self._decoded, motion, self.smoothing.decoded)
        return torch.from_numpy(self._decoded).permute(2, 0, 1)[None].to(decoded)

    def _steady_features(self, target: torch.Tensor, motion: Motion | None) -> torch.Tensor:
        """The AdaIN features `target` [1, C, h, w] blended with the previous frame's along `motion` brought
        to their grid."""
        if not self.smoothing.features:
            return target
        coarse = None if motion is None else motion_at(motion, *target.shape[-2:])
        self._features = blend_previous_features(target, self._features, coarse, self.smoothing.features)
        return self._features

    @torch.no_grad()
    def __call__(self, content: torch.Tensor) -> torch.Tensor:
        engine = self.engine
        feat = engine.encode(content)
        mean, std = engine.content_stats(feat)
        if self._stats is not None:
            keep = self.smoothing.content_stats
            mean, std = _ema(self._stats[0], mean, keep), _ema(self._stats[1], std, keep)
        self._stats = mean, std
        # the frame is padded to the grid at its bottom and right, where the motion carries nothing
        motion = None if self._motion is None else _padded(self._motion, *content.shape[-2:])
        target = engine.blend(feat, self.mean, self.std, self.alpha, (mean, std))
        decoded = self._steady(engine.decode(self._steady_features(target, motion)), motion)
        out = engine.finish(decoded, content)  # no palette given: detail and clamp only
        if self.palette is None or not engine.finish_settings.matches_palette or self.alpha <= 0:
            return out
        mapping = engine.palette_map(out, self.palette)
        if self._map is not None:
            keep = self.smoothing.palette
            mapping = PaletteMap(_ema(self._map.own, mapping.own, keep), mapping.target)
        self._map = mapping
        return engine.match(out, strength=self.alpha, palette_map=mapping)
