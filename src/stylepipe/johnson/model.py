"""Johnson, Alahi & Fei-Fei (2016): one feed-forward TransformerNet per style.

The architecture is the PyTorch example's (`pytorch/examples` fast_neural_style): 9x9 conv 32, 3x3/2 conv
64, 3x3/2 conv 128, 5 residual blocks, two nearest-upsample + 3x3 conv stages (no transposed convs), a
9x9 conv to RGB; reflection padding everywhere and InstanceNorm2d(affine=True) after every conv but the last.
`width` < 1 scales every stage's channels (e.g. 0.5: 16/32/64) for the OAK-1: about width^2 of the compute;
a saved file's width is read back from its weights' shapes.

Scaling: images go in and come out in [0, 1] RGB. Inside, the network works on the example's 0-255
scale (input x 255, output / 255), so its weights, initialisation and the reference's Adam lr 1e-3 mean
what they mean there: learning the output directly in [0, 1] makes every step 255x larger relative to
the image, and the style loss diverges before it recovers. `TransformerNet.forward` is unclamped (the
losses see the raw output, as in the example); `JohnsonStylizer` clamps to [0, 1] for inference/export.

Border refinement: `pad` > 0 reflect-pads the input by `pad` pixels and crops them off the
output, so the borders the network sees are not the image's borders. H + 2*pad and W + 2*pad must be
multiples of 4 (the two stride-2 stages and the two x2 upsamplings): `pad` is even and images are cropped
to multiples of 8 by every reader here. `forward` has no Python-side shape checks (export-clean).

For export, `mvn_form` swaps every InstanceNorm2d for the same maths with eps outside the sqrt
((x - mean) / (sqrt(var) + eps), `nn.functional.mean_std`): the Myriad X has no InstanceNormalization
op, and this form compiles to the elementwise ops it runs.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from stylepipe.core import paths
from stylepipe.core.errors import InputError
from stylepipe.core.io import write_torch
from stylepipe.nn.encoders import WeightsError, load_state_checked, read_weights_file
from stylepipe.nn.functional import mean_std
from stylepipe.nn.layers import NearestUp2x

ARCH = "TransformerNet"
PIXEL_SCALE = 255.0  # the reference network's pixel scale (see the module docstring)
MODEL_PREFIX = "johnson:"
FILE_KEYS = ("arch", "pad", "style", "encoder", "state_dict")
BASE_CHANNELS = (32, 64, 128)  # the reference widths; `width` < 1 gives the slimmer on-device variant


class ConvLayer(nn.Module):
    """Reflection padding (kernel // 2) then a convolution."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        self.pad = nn.ReflectionPad2d(kernel // 2)
        self.conv = nn.Conv2d(cin, cout, kernel, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pad(x))


class UpsampleConvLayer(nn.Module):
    """Nearest-neighbour x2 upsampling then a reflection-padded convolution (no checkerboard artefacts)."""

    def __init__(self, cin: int, cout: int, kernel: int) -> None:
        super().__init__()
        self.up = NearestUp2x()
        self.conv = ConvLayer(cin, cout, kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.up(x))


class ResidualBlock(nn.Module):
    """conv-IN-ReLU-conv-IN plus the identity (He et al. 2016, as in the example)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3)
        self.in1 = nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = ConvLayer(channels, channels, 3)
        self.in2 = nn.InstanceNorm2d(channels, affine=True)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.in2(self.conv2(self.relu(self.in1(self.conv1(x)))))


def channel_widths(width: float) -> tuple[int, int, int]:
    """The three stages' channels (32, 64, 128) x width; width in [0.25, 1] in steps of 1/8."""
    if not 0.25 <= width <= 1.0 or abs(width * 8 - round(width * 8)) > 1e-9:
        raise ValueError(f"width must be one of 0.25, 0.375, ..., 1.0 (steps of 1/8), got {width!r}")
    return tuple(round(c * width) for c in BASE_CHANNELS)  # type: ignore[return-value]


def width_of(state_dict: dict[str, torch.Tensor]) -> float:
    """A saved net's width multiplier, read from its first convolution's output channels."""
    weight = state_dict.get("conv1.conv.weight")
    return 1.0 if weight is None else weight.shape[0] / BASE_CHANNELS[0]


class TransformerNet(nn.Module):
    """[N, 3, H, W] in [0, 1] -> [N, 3, H, W] (unclamped; see the module docstring for sizes and pad)."""

    def __init__(self, pad: int = 0, width: float = 1.0) -> None:
        super().__init__()
        if pad < 0 or pad % 2:
            raise ValueError(f"pad must be an even number >= 0, got {pad}")
        c1, c2, c3 = channel_widths(width)
        self.pad, self.width = int(pad), width
        self.conv1, self.in1 = ConvLayer(3, c1, 9), nn.InstanceNorm2d(c1, affine=True)
        self.conv2, self.in2 = ConvLayer(c1, c2, 3, 2), nn.InstanceNorm2d(c2, affine=True)
        self.conv3, self.in3 = ConvLayer(c2, c3, 3, 2), nn.InstanceNorm2d(c3, affine=True)
        self.res = nn.Sequential(*(ResidualBlock(c3) for _ in range(5)))
        self.up1, self.in4 = UpsampleConvLayer(c3, c2, 3), nn.InstanceNorm2d(c2, affine=True)
        self.up2, self.in5 = UpsampleConvLayer(c2, c1, 3), nn.InstanceNorm2d(c1, affine=True)
        self.conv_out = ConvLayer(c1, 3, 9)
        self.relu = nn.ReLU()
        # Start from a mid-grey image: a zero-bias output starts black, and a short run spends its steps
        # climbing out of the dark instead of taking on the painting's palette.
        nn.init.constant_(self.conv_out.conv.bias, 0.5 * PIXEL_SCALE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.pad
        if p:
            x = F.pad(x, (p, p, p, p), mode="reflect")
        y = self.relu(self.in1(self.conv1(x * PIXEL_SCALE)))
        y = self.relu(self.in2(self.conv2(y)))
        y = self.relu(self.in3(self.conv3(y)))
        y = self.res(y)
        y = self.relu(self.in4(self.up1(y)))
        y = self.relu(self.in5(self.up2(y)))
        y = self.conv_out(y) / PIXEL_SCALE
        return y[:, :, p:-p, p:-p] if p else y


class JohnsonStylizer(nn.Module):
    """Inference/export wrapper: content in [0, 1] -> stylised image clamped to [0, 1]."""

    def __init__(self, net: TransformerNet, style: str = "") -> None:
        super().__init__()
        self.net, self.style = net, style

    def forward(self, content: torch.Tensor) -> torch.Tensor:
        return self.net(content).clamp(0.0, 1.0)


class MVNInstanceNorm(nn.Module):
    """InstanceNorm2d(affine=True) with eps outside the sqrt (the MVN form the Myriad X accepts)."""

    def __init__(self, norm: nn.InstanceNorm2d) -> None:
        super().__init__()
        self.eps = norm.eps
        self.weight = nn.Parameter(norm.weight.detach().clone().view(1, -1, 1, 1))
        self.bias = nn.Parameter(norm.bias.detach().clone().view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = mean_std(x, self.eps)
        return (x - mean) / std * self.weight + self.bias


def mvn_form(module: nn.Module) -> nn.Module:
    """A deep copy of `module` with every InstanceNorm2d replaced by MVNInstanceNorm (for export)."""
    module = copy.deepcopy(module)
    for parent in module.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.InstanceNorm2d):
                setattr(parent, name, MVNInstanceNorm(child))
    return module


def save_johnson(net: TransformerNet, path: str | Path, style: str, encoder: str) -> None:
    """Atomically save a trained net with its pad, style name and loss-network encoder name."""
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    blob = {"arch": ARCH, "pad": net.pad, "style": style, "encoder": encoder, "state_dict": state}
    write_torch(path, blob)


def load_johnson(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[TransformerNet, dict]:
    """(net in eval mode, the file's metadata); weights_only loading, errors naming the file."""
    hint = "Johnson model not found (train it: `dvc repro train_johnson@<style>`)"
    blob = read_weights_file(path, FILE_KEYS, hint, map_location)
    if blob["arch"] != ARCH or not isinstance(blob["pad"], int):
        raise WeightsError(f"{path}: not a {ARCH} file (arch {blob['arch']!r}, pad {blob['pad']!r})")
    try:
        net = TransformerNet(blob["pad"], width_of(blob["state_dict"]))
    except ValueError as err:
        raise WeightsError(f"{path}: {err}") from None
    load_state_checked(net, blob["state_dict"], path)
    return net.eval(), {**{k: blob[k] for k in FILE_KEYS if k != "state_dict"}, "width": net.width}


def model_path(style: str, root: Path = paths.JOHNSON_DIR) -> Path:
    return root / style / paths.JOHNSON_MODEL


def parse_model_name(name: str) -> str | None:
    """'adain' -> None; 'johnson:<style>' -> the style; anything else is a ValueError."""
    if name == "adain":
        return None
    style = name.removeprefix(MODEL_PREFIX)
    if not name.startswith(MODEL_PREFIX) or not re.match(paths.STYLE_NAME, style):
        raise InputError(
            f"model name {name!r}: expected 'adain' or 'johnson:<style>' with a style name of letters, digits, "
            "'_' or '-' (e.g. johnson:Cubism)"
        )
    return style


def trained_styles(root: Path = paths.JOHNSON_DIR) -> list[str]:
    return sorted(p.parent.name for p in root.glob(f"*/{paths.JOHNSON_MODEL}"))


def load_johnson_stylizer(
    style: str, root: Path = paths.JOHNSON_DIR, map_location: str | torch.device = "cpu"
) -> JohnsonStylizer:
    """The trained network of `style` (models/johnson/<style>/), clamped, in eval mode."""
    path = model_path(style, root)
    if not path.is_file():
        available = trained_styles(root)
        raise WeightsError(
            f"{path}: no Johnson model for style {style!r} (trained: {', '.join(available) or 'none'}); "
            f"add it to train_johnson.styles in params.yaml and run `dvc repro train_johnson@{style}`"
        )
    net, _ = load_johnson(path, map_location)
    return JohnsonStylizer(net, style).eval()
