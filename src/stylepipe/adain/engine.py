"""AdaIN inference, composed once: encode -> AdaIN and alpha blend -> decode -> finish.

A backend runs the two networks (`encode`: content image -> features at the AdaIN layer; `decode`: features
-> the decoder's unclamped image): PyTorch on the CPU or CUDA (`adain.fast`) or an OpenVINO IR on the CPU
(`adain.ir`). Everything between and after them runs here, in float32 torch, the same for every backend
and every caller (stylize with its tiles and masks, video, serving, the host demo, evaluate, benchmarks):
the AdaIN statistics and the blend, and the finishing steps (`Finish`: the content's fine detail restored,
clamped to [0, 1], matched to the painting's palette with strength alpha).

The steps are public so that a caller can hold any of them fixed across frames: content statistics
smoothed over time (`content_stats` then `blend(..., content_stats=...)`), one palette map per shot
(`palette_map` then `finish(..., palette_map=...)`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, NamedTuple, Protocol, get_args

import torch

from stylepipe.core.errors import InputError
from stylepipe.nn.detail import restore_fine_detail
from stylepipe.nn.functional import blend, mean_std, normalise
from stylepipe.nn.palette import PaletteMap, apply_palette_map, palette_of
from stylepipe.nn.palette import palette_map as _palette_map
from stylepipe.nn.statistics import StatsOrigin, StyleBank

if TYPE_CHECKING:
    from stylepipe.core.config import Params

Palette = Literal["histogram", "none"]  # histogram: the output matched to the painting's palette
PALETTES: tuple[str, ...] = get_args(Palette)


class FinishError(InputError):
    """A finishing setting is out of range; the message names the setting and what is expected."""


@dataclass(frozen=True)
class Finish:
    """How a decoded image is finished (params `finish`): `detail` (0..1) of the content's fine luminance
    detail restored (`nn.detail`), then clamped to [0, 1], then matched to the painting's palette when
    `palette` is histogram (`nn.palette`)."""

    palette: Palette = "histogram"
    detail: float = 1.0

    def __post_init__(self) -> None:
        if self.palette not in PALETTES:
            raise FinishError(f"palette {self.palette!r} is not supported: expected one of {list(PALETTES)}")
        if isinstance(self.detail, bool) or not isinstance(self.detail, int | float) or not 0 <= self.detail <= 1:
            raise FinishError(f"detail {self.detail!r} is not supported: expected a number in 0..1")

    @classmethod
    def from_params(cls, params: Params) -> Finish:
        """The finishing settings of params.yaml's `finish` section: how every stage that finishes outputs
        (evaluate, the exports, the demo, package, stylize inside the project) gets them."""
        return cls(params.finish.palette, params.finish.detail)

    def overridden(self, palette: Palette | None = None, detail: float | None = None) -> Finish:
        """These settings with a caller's choices (a CLI flag, a request) in place of the ones given; None
        keeps the setting."""
        return Finish(self.palette if palette is None else palette, self.detail if detail is None else detail)

    @property
    def matches_palette(self) -> bool:
        return self.palette == "histogram"

    def restore(self, decoded: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
        """The decoded image with `detail` of the content's fine detail restored, clamped to [0, 1]: the
        finishing that needs no style (the exported graphs hold it too)."""
        return restore_fine_detail(decoded, content.to(decoded), self.detail).clamp(0.0, 1.0)

    def record(self) -> dict[str, object]:
        return {"palette": self.palette, "detail": float(self.detail)}


class Backend(Protocol):
    """The two networks on one device, in one precision."""

    name: str  # torch | openvino
    precision: str  # what the networks compute in: f32, bf16, int8, default (the OpenVINO plugin's choice)
    device: torch.device  # where `encode` and `decode` return their tensors

    def encode(self, content: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] in [0, 1] (H, W multiples of the encoder's stride) -> float32 features."""
        ...

    def decode(self, target: torch.Tensor) -> torch.Tensor:
        """Features at the AdaIN layer -> the decoder's float32 image, unclamped."""
        ...


class StyleTarget(NamedTuple):
    """What a frame is stylised towards: [R, C, 1, 1] statistics (R = 1, or one per mask region) and, when
    the output is matched, [R, 3, Q] palettes."""

    mean: torch.Tensor
    std: torch.Tensor
    palette: torch.Tensor | None = None


class Engine:
    """One AdaIN model on one backend, with its finishing settings.

    `origin` names what the style statistics must come from (encoder, layer, channels); `stride` is the
    pixels per feature cell (inputs must be multiples of it).
    """

    def __init__(self, backend: Backend, origin: StatsOrigin, stride: int, finish: Finish) -> None:
        self.backend, self.origin, self.stride, self.finish_settings = backend, origin, stride, finish

    @property
    def device(self) -> torch.device:
        return self.backend.device

    def describe(self) -> str:
        return f"{self.backend.name} ({self.backend.precision}, {self.backend.device.type})"

    def with_finish(self, finish: Finish) -> Engine:
        """The same networks with other finishing settings (a CLI override, a request's choice)."""
        return Engine(self.backend, self.origin, self.stride, finish)

    # -- the steps
    def encode(self, content: torch.Tensor) -> torch.Tensor:
        return self.backend.encode(content)

    def decode(self, target: torch.Tensor) -> torch.Tensor:
        return self.backend.decode(target)

    @staticmethod
    def content_stats(feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and std of features (biased variance, eps outside the sqrt: `mean_std`)."""
        return mean_std(feat)

    def blend(self, feat: torch.Tensor, style_mean: torch.Tensor, style_std: torch.Tensor, alpha: float = 1.0,
              content_stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """AdaIN of `feat` to the style's statistics, blended back towards `feat` by `alpha`; the content's
        statistics are the features' own unless given (whole-frame statistics for a tile, smoothed ones for
        video)."""
        c_mean, c_std = content_stats if content_stats is not None else mean_std(feat)
        target = normalise(feat, c_mean.to(feat), c_std.to(feat)) * style_std.to(feat) + style_mean.to(feat)
        return blend(target, feat, alpha)

    @staticmethod
    def palette_map(image: torch.Tensor, palette: torch.Tensor) -> PaletteMap:
        """The palette map of a finished frame (before matching) onto `palette` [1, 3, Q]: reusable."""
        return _palette_map(image, palette)

    def finish(self, decoded: torch.Tensor, content: torch.Tensor, palette: torch.Tensor | None = None,
               strength: float = 1.0, palette_map: PaletteMap | None = None) -> torch.Tensor:
        """The decoded image with the content's fine detail restored, clamped to [0, 1], then `match`ed.
        Runs in float32 on the decoded image's device."""
        out = self.finish_settings.restore(decoded.float(), content)
        return self.match(out, palette, strength, palette_map)

    def match(self, image: torch.Tensor, palette: torch.Tensor | None = None, strength: float = 1.0,
              palette_map: PaletteMap | None = None) -> torch.Tensor:
        """`image` matched to `palette` [1, 3, Q] (or through a precomputed map) with `strength`, the style
        strength alpha, when the settings match palettes; unchanged otherwise."""
        if not self.finish_settings.matches_palette or strength <= 0:
            return image
        if palette_map is None:
            if palette is None:
                return image
            palette_map = _palette_map(image, palette)
        return apply_palette_map(image, palette_map, strength)

    # -- one frame, and the style side
    def frame(self, content: torch.Tensor, style: StyleTarget, alpha: float = 1.0,
              content_stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """One whole frame [1, 3, H, W] stylised towards one style (its first row): the four steps."""
        feat = self.encode(content)
        decoded = self.decode(self.blend(feat, style.mean[:1], style.std[:1], alpha, content_stats))
        palette = None if style.palette is None else style.palette[:1]
        return self.finish(decoded, content, palette, alpha)

    @torch.no_grad()
    def stylize(self, content: torch.Tensor, style: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        """[1, 3, H, W] content stylised towards a [1, 3, h, w] style image: its statistics, and its palette
        when the settings match palettes, computed here."""
        mean, std = self.style_stats(style)
        palette = palette_of(style[0].float().cpu())[None] if self.finish_settings.matches_palette else None
        return self.frame(content, StyleTarget(mean, std, palette), alpha)

    @torch.no_grad()
    def style_stats(self, style: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[1, 3, H, W] style image -> its statistics at the AdaIN layer, [1, C, 1, 1] each, on the CPU."""
        mean, std = mean_std(self.encode(style))
        return mean.float().cpu(), std.float().cpu()

    def style_bank(self, names: list[str], images: list[torch.Tensor]) -> StyleBank:
        """The statistics and palettes of style images ([3, H, W] in [0, 1]): a bank that serves either
        palette setting."""
        pairs = [self.style_stats(image[None]) for image in images]
        palette = torch.stack([palette_of(image.cpu()) for image in images])
        return StyleBank(list(names), torch.cat([m for m, _ in pairs]), torch.cat([s for _, s in pairs]),
                         self.origin.encoder, self.origin.layer, palette)
