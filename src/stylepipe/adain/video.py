"""Stable AdaIN video: the engine's steps with state carried from frame to frame within a shot.

Frame-by-frame AdaIN flickers partly because two per-frame quantities jump with every small change of the
input: the content features' mean/std that AdaIN divides out, and the palette map that matches each output
to the painting's palette (its source quantiles are the frame's own). `StableAdaIN` smooths both over the
frames of a shot (an exponential moving average, `momentum` the share kept from the previous frames; 1 holds
the shot's first frame's values) and starts afresh at every cut that `apply` reports through
`start_shot`. Flow-guided blending with the previous output acts after it, in `apply`, for any stylizer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from stylepipe.adain.engine import Engine, StyleTarget
from stylepipe.apply import StylizeError
from stylepipe.core.media import is_video
from stylepipe.nn.palette import PaletteMap


@dataclass(frozen=True)
class Smoothing:
    """How much of the previous frames' values each frame keeps (0: per frame, the plain path; 1: the shot's
    first frame's values throughout)."""

    content_stats: float = 0.0
    palette: float = 0.0

    def __post_init__(self) -> None:
        for name in ("content_stats", "palette"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise StylizeError(f"{name}_momentum {value} is out of range: expected 0..1", (f"{name}_momentum",))

    @property
    def active(self) -> bool:
        return bool(self.content_stats or self.palette)


def stable_stylizer(engine: Engine, style: StyleTarget | None, alpha: float, smoothing: Smoothing, content: Path,
                    other_options: list[str]) -> StableAdaIN:
    """The StableAdaIN for a video `content`, refused (naming the options) for images and folders, for a
    style that changes per frame (`style` None: coral) and beside the per-region or tiled options."""
    names = tuple(n for n, v in (("content_stats_momentum", smoothing.content_stats),
                                 ("palette_momentum", smoothing.palette)) if v)
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


class StableAdaIN:
    """A stylizer ([1, 3, H, W] in [0, 1], multiples of the engine's stride -> stylised) for the frames of a
    video in order: one style (`style`'s first row), AdaIN with smoothed content statistics, the palette map
    smoothed per shot. With no smoothing it computes exactly what `Engine.frame` does."""

    def __init__(self, engine: Engine, style: StyleTarget, alpha: float, smoothing: Smoothing) -> None:
        if smoothing.palette and (style.palette is None or not engine.finish_settings.matches_palette):
            raise StylizeError("palette_momentum smooths the match to the painting's palette, but this model does "
                               "not match palettes (palette none, or style statistics without palettes)",
                               ("palette_momentum",))
        self.engine, self.alpha, self.smoothing = engine, alpha, smoothing
        self.mean, self.std = style.mean[:1], style.std[:1]
        self.palette = None if style.palette is None else style.palette[:1]
        self.start_shot()

    def start_shot(self) -> None:
        """Forget the previous frames: the next frame starts a shot."""
        self._stats: tuple[torch.Tensor, torch.Tensor] | None = None
        self._map: PaletteMap | None = None

    @torch.no_grad()
    def __call__(self, content: torch.Tensor) -> torch.Tensor:
        engine = self.engine
        feat = engine.encode(content)
        mean, std = engine.content_stats(feat)
        if self._stats is not None:
            keep = self.smoothing.content_stats
            mean, std = _ema(self._stats[0], mean, keep), _ema(self._stats[1], std, keep)
        self._stats = mean, std
        decoded = engine.decode(engine.blend(feat, self.mean, self.std, self.alpha, (mean, std)))
        out = engine.finish(decoded, content)  # no palette given: detail and clamp only
        if self.palette is None or not engine.finish_settings.matches_palette or self.alpha <= 0:
            return out
        mapping = engine.palette_map(out, self.palette)
        if self._map is not None:
            keep = self.smoothing.palette
            mapping = PaletteMap(_ema(self._map.own, mapping.own, keep), mapping.target)
        self._map = mapping
        return engine.match(out, strength=self.alpha, palette_map=mapping)
