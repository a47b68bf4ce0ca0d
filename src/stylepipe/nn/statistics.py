"""Style statistics: where they come from, the style-bank file that holds them, and the check that they fit
the model they feed.

Style statistics are the per-channel mean/std of one encoder's features at one layer. Fed to a model with
another encoder or AdaIN layer they re-normalise the content features to meaningless targets, or fail on
the channel count deep inside a graph; so every loader compares what a file records with the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import torch

from stylepipe.core.errors import InputError
from stylepipe.core.io import read_torch, write_torch


class _EncoderSpec(Protocol):
    name: str


class _Encoder(Protocol):
    spec: _EncoderSpec


class StyleModel(Protocol):
    """What a model that takes style statistics tells about them (AdaIN's stylizer is one)."""

    channels: int
    encoder: _Encoder
    layer: str

BANK_FORMAT = "stylepipe.style_stats/1"


class StyleBankError(InputError):
    """A style statistics file cannot be used; the message names the file and what was expected."""


@dataclass(frozen=True)
class StatsOrigin:
    """The channel count of a set of statistics, with the encoder and layer where known (None: a file
    that does not record them, or an exported graph that cannot say)."""

    channels: int
    encoder: str | None = None
    layer: str | None = None

    @classmethod
    def of(cls, model: StyleModel) -> StatsOrigin:
        """What a model's AdaIN takes: its encoder, its layer and that layer's channel count."""
        return cls(model.channels, model.encoder.spec.name, model.layer)

    def describe(self) -> str:
        parts = [f"encoder {self.encoder!r}" if self.encoder else "", f"at {self.layer}" if self.layer else ""]
        known = " ".join(p for p in parts if p)
        return f"{known}, {self.channels} channels" if known else f"{self.channels} channels"

    def mismatch(self, model: StatsOrigin, source: str) -> str | None:
        """None when statistics of this origin fit `model`, else a message naming `source` and both sides.
        The encoder and layer are compared where both sides know them; the channel count always."""
        known_pairs = ((self.encoder, model.encoder), (self.layer, model.layer))
        differs = any(a is not None and b is not None and a != b for a, b in known_pairs)
        if not differs and self.channels == model.channels:
            return None
        return f"{source}: style statistics of {self.describe()}, but the model takes {model.describe()}"


@dataclass
class StyleBank:
    """Mean/std at the AdaIN layer of S named styles ([S, C, 1, 1] each, C = 256 at relu3_1, 512 at
    relu4_1): what AdaIN needs of a style, computed once, for one encoder at one layer; and each style's
    RGB palette ([S, 3, Q] quantiles, `nn.palette`) for models that match their output to it.

    On disk a dict {"names", "mean", "std", "encoder", "layer", "palette"} saved with torch.save, plus
    "format" when written here; files without "encoder" or "layer" are checked by their channel count
    alone, files without "palette" serve models that do not match palettes."""

    names: list[str]
    mean: torch.Tensor
    std: torch.Tensor
    encoder: str | None = None
    layer: str | None = None
    palette: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.names)

    @property
    def origin(self) -> StatsOrigin:
        return StatsOrigin(int(self.mean.shape[1]), self.encoder, self.layer)

    def save(self, path: str | Path) -> Path:
        """Atomically write the bank (float32, on the CPU)."""
        blob = {"format": BANK_FORMAT, "encoder": self.encoder, "layer": self.layer, "names": list(self.names),
                "mean": self.mean.detach().float().cpu(), "std": self.std.detach().float().cpu()}
        if self.palette is not None:
            blob["palette"] = self.palette.detach().float().cpu()
        write_torch(path, blob)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, missing_hint: str = "") -> StyleBank:
        """Read and validate a bank file; `missing_hint` tells how to make one when it is not there."""
        path = Path(path)
        if not path.is_file():
            raise StyleBankError(f"{path}: style statistics file not found" + (f" ({missing_hint})" if missing_hint
                                                                                 else ""))
        return cls.read(path, str(path))

    @classmethod
    def read(cls, file: Path | BinaryIO, source: str) -> StyleBank:
        """Read and validate a bank from a path or a binary stream; errors name `source`."""
        blob = read_torch(file, "style statistics file", StyleBankError, source)
        if not isinstance(blob, dict) or not {"names", "mean", "std"} <= set(blob):
            raise StyleBankError(f"{source}: expected a style statistics file with keys names, mean, std")
        names, mean, std = blob["names"], blob["mean"], blob["std"]
        if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
            raise StyleBankError(f"{source}: names must be a list of style names")
        _check_moments(mean, std, len(names), source)
        palette = blob.get("palette")
        if palette is not None:
            _check_palette(palette, len(names), source)
            palette = palette.float()
        return cls(list(names), mean.float(), std.float(), blob.get("encoder"), blob.get("layer"), palette)

    @classmethod
    def load_trained(cls, path: str | Path, model: StatsOrigin | None = None) -> StyleBank:
        """The bank train_adain writes (models/adain/style_bank.pt); with `model`, it must fit it."""
        bank = cls.load(path, "run `dvc repro train_adain`")
        if model is not None:
            bank.check_fits(model, str(path), "re-run train_adain to rebuild the style bank")
        return bank

    def check_fits(self, model: StatsOrigin, source: str, remedy: str = "") -> None:
        """The statistics must come from the model's encoder at its AdaIN layer: an error names `source`,
        both sides and `remedy`."""
        if msg := self.origin.mismatch(model, source):
            raise StyleBankError(f"{msg}{': ' + remedy if remedy else ''}")

    def select(self, names: Sequence[str], source: str) -> StyleBank:
        """The styles called `names`, in that order (e.g. one painting style of a style bank)."""
        missing = [n for n in names if n not in self.names]
        if missing:
            raise StyleBankError(f"{source}: no style named {missing}; the file has {self.names}")
        idx = [self.names.index(n) for n in names]
        palette = None if self.palette is None else self.palette[idx]
        return StyleBank(list(names), self.mean[idx], self.std[idx], self.encoder, self.layer, palette)

    def at(self, index: int, source: str) -> StyleBank:
        """The style at `index` (e.g. the one an export bakes in)."""
        if not 0 <= index < len(self):
            raise StyleBankError(f"{source}: no style at index {index}; the file holds {len(self)} styles")
        return self.select([self.names[index]], source)

    def mixed(self, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[1, C, 1, 1] mean/std interpolated with `weights` (one per style, summing to 1). AdaIN is affine
        in the style statistics, so this equals the weighted sum of per-style AdaIN features."""
        w = weights[:, None, None, None]
        return (w * self.mean).sum(0, keepdim=True), (w * self.std).sum(0, keepdim=True)

    def mixed_palette(self, weights: torch.Tensor) -> torch.Tensor:
        """[1, 3, Q] palette interpolated with `weights`: the weighted mean of the quantile functions, which
        is the palette between the styles in the 1-D optimal-transport sense."""
        return (weights[:, None, None] * self.require_palette()).sum(0, keepdim=True)

    def require_palette(self, source: str = "style statistics") -> torch.Tensor:
        """The [S, 3, Q] palettes, or an error saying that this bank has none and how to get them."""
        if self.palette is None:
            raise StyleBankError(f"{source} of {self.names} hold no palette, which this model matches its output "
                                 f"to: save them again with this version (stylize --save-style-stats, or "
                                 f"re-run train_adain), or stylize with --palette none")
        return self.palette


def _check_palette(palette: Any, styles: int, source: str) -> None:
    """A palette as `nn.palette` makes it: float [S, 3, Q], Q >= 2, finite, each channel non-decreasing."""
    if not isinstance(palette, torch.Tensor) or not palette.is_floating_point():
        raise StyleBankError(f"{source}: palette must be a float tensor, got {type(palette).__name__}")
    if palette.ndim != 3 or palette.shape[0] != styles or palette.shape[1] != 3 or palette.shape[2] < 2:
        raise StyleBankError(f"{source}: palette must be [S, 3, Q] for S={styles} names and Q >= 2 quantiles, "
                             f"got {list(palette.shape)}")
    if not torch.isfinite(palette).all() or (palette.diff(dim=2) < 0).any():
        raise StyleBankError(f"{source}: palette must hold finite quantiles, non-decreasing along Q")


def _check_moments(mean: Any, std: Any, styles: int, source: str) -> None:
    """mean/std as AdaIN takes them: float tensors [S, C, 1, 1] for S styles, finite, std positive."""
    for name, value in (("mean", mean), ("std", std)):
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise StyleBankError(f"{source}: {name} must be a float tensor, got {type(value).__name__}")
        if value.ndim != 4 or value.shape[0] != styles or value.shape[1] < 1 or value.shape[2:] != (1, 1):
            raise StyleBankError(f"{source}: {name} must be [S, C, 1, 1] for S={styles} names, "
                                 f"got {list(value.shape)}")
        if not torch.isfinite(value).all():
            raise StyleBankError(f"{source}: {name} holds NaN or infinite values")
    if mean.shape != std.shape:
        raise StyleBankError(f"{source}: mean {list(mean.shape)} and std {list(std.shape)} differ in shape")
    if not (std > 0).all():
        raise StyleBankError(f"{source}: std must be positive (a standard deviation), got min {float(std.min())}")
