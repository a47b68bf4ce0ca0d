"""Frozen VGG encoders with reflection padding and named taps relu1_1 .. relu4_1.

Every encoder takes RGB images in [0, 1] and applies its own input normalisation, so callers never
need to know whether the weights expect Caffe BGR 0-255 (vgg16_hed) or ImageNet mean/std (torchvision).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

TAPS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
TAP_CHANNELS = {"relu1_1": 64, "relu2_1": 128, "relu3_1": 256, "relu4_1": 512}


@dataclass(frozen=True)
class EncoderSpec:
    """Layer plan up to relu4_1 ('M' = max-pool) and the input convention of the weights."""

    name: str
    plan: tuple[int | str, ...]
    batch_norm: bool
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    bgr: bool
    scale: float  # multiply [0, 1] input by this before mean/std


VGG16_PLAN = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512)
VGG19_PLAN = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

SPECS = {
    "vgg16_hed": EncoderSpec("vgg16_hed", VGG16_PLAN, False, CAFFE_MEAN_BGR, (1.0, 1.0, 1.0), True, 255.0),
    "vgg19": EncoderSpec("vgg19", VGG19_PLAN, False, IMAGENET_MEAN, IMAGENET_STD, False, 1.0),
    "vgg19_bn": EncoderSpec("vgg19_bn", VGG19_PLAN, True, IMAGENET_MEAN, IMAGENET_STD, False, 1.0),
}


class WeightsError(RuntimeError):
    """Encoder weights are missing, corrupt, or do not fit the architecture."""


class VGGEncoder(nn.Module):
    """VGG up to relu4_1, reflection-padded, frozen; forward returns the four taps."""

    def __init__(self, spec: EncoderSpec) -> None:
        super().__init__()
        self.spec = spec
        shape = (1, 3, 1, 1)
        self.register_buffer("mean", torch.tensor(spec.mean).view(shape), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(shape), persistent=False)
        self.layers = nn.ModuleList()
        self.tap_at: dict[int, str] = {}
        in_ch, block, conv_in_block = 3, 1, 0
        for item in spec.plan:
            if item == "M":
                self.layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
                block, conv_in_block = block + 1, 0
                continue
            out_ch = int(item)
            self.layers.append(nn.ReflectionPad2d(1))
            self.layers.append(nn.Conv2d(in_ch, out_ch, 3))
            if spec.batch_norm:
                self.layers.append(nn.BatchNorm2d(out_ch))
            self.layers.append(nn.ReLU(inplace=False))
            conv_in_block += 1
            if conv_in_block == 1:
                self.tap_at[len(self.layers) - 1] = f"relu{block}_1"
            in_ch = out_ch
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> VGGEncoder:
        """Locked in eval mode: BN statistics must never update."""
        return super().train(False)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        if self.spec.bgr:
            x = x.flip(1)
        return (x * self.spec.scale - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats: dict[str, torch.Tensor] = {}
        h = self.normalise(x)
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i in self.tap_at:
                feats[self.tap_at[i]] = h
        return feats

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """relu4_1 features only."""
        return self.forward(x)["relu4_1"]

    def conv_layers(self) -> list[nn.Conv2d]:
        return [m for m in self.layers if isinstance(m, nn.Conv2d)]


def build_encoder(name: str) -> VGGEncoder:
    if name not in SPECS:
        raise WeightsError(f"unknown encoder {name!r}: expected one of {sorted(SPECS)}")
    return VGGEncoder(SPECS[name])


def read_weights_file(
    path: str | Path, keys: tuple[str, ...], hint: str, map_location: str | torch.device = "cpu"
) -> dict:
    """torch.load(weights_only=True) of one of our weights files, with errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: {hint}")
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # pickle/zip errors from a truncated or foreign file
        raise WeightsError(f"{path}: not a readable torch weights file ({err})") from None
    if not isinstance(blob, dict) or not set(keys) <= set(blob):
        raise WeightsError(f"{path}: expected a dict with keys {list(keys)}")
    return blob


def load_encoder(path: str | Path, map_location: str | torch.device = "cpu") -> VGGEncoder:
    """Load the uniform encoder file written by the `weights` stage ({'name', 'state_dict'})."""
    hint = "encoder weights not found (run `stylepipe weights` / `dvc repro weights`)"
    blob = read_weights_file(path, ("name", "state_dict"), hint, map_location)
    encoder = build_encoder(blob["name"])
    load_state_checked(encoder, blob["state_dict"], path)
    return encoder


def load_state_checked(module: nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """load_state_dict with an error naming every missing, unexpected or mis-shaped key."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad_shape = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or bad_shape:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:6]}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:6]}")
        if bad_shape:
            parts.append(f"shape mismatch {bad_shape[:6]}")
        raise WeightsError(f"{source}: weights do not fit {type(module).__name__}: " + "; ".join(parts))
    module.load_state_dict(state)
