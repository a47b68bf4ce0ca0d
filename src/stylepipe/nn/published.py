"""The published AdaIN models: the official Torch7 release (`vgg_normalised.t7`, `decoder.t7`,
`decoder-content-similar.t7`) and the PyTorch port's (`vgg_normalised.pth`, `decoder.pth`,
`iter_*.pth`), fetched from a path or URL, checked against a pinned sha256, recognised by content and
mapped onto stylepipe's modules.

Both releases are plain `nn.Sequential` networks whose modules line up one to one with
`VGGEncoder.layers` (vgg19_normalised) and `Decoder.net` (vgg19_normalised at relu4_1, width 1), so
module i of a published file is child i of ours. Loading never runs code from a file: torch files go
through `torch.load(weights_only=True)`, Torch7 files through `torchfile`, which builds only numbers,
strings, tables and arrays (and only after the sha256 matched).
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from stylepipe.core.io import download_pinned, file_digest, read_torch
from stylepipe.nn.encoders import WeightsError
from stylepipe.nn.layers import NearestUp2x

Format = Literal["pth", "t7"]
FORMATS: tuple[Format, ...] = ("pth", "t7")
ZIP_MAGIC = b"PK\x03\x04"  # torch.save since PyTorch 1.6
PICKLE_MAGIC = b"\x80"  # the legacy torch.save format (the port's 2018 releases) starts with a pickle
T7_TORCH_OBJECT = (4).to_bytes(4, "little")  # a binary Torch7 file starts with a torch object
DOWNLOAD_TIMEOUT_S = 60.0

# Torch7 class names accepted for each kind of module (cudnn.* where the release was converted for GPU)
T7_CLASSES = {
    "conv": {"nn.SpatialConvolution", "nn.SpatialConvolutionMM", "cudnn.SpatialConvolution"},
    "pad": {"nn.SpatialReflectionPadding"},
    "relu": {"nn.ReLU", "cudnn.ReLU"},
    "pool": {"nn.SpatialMaxPooling", "cudnn.SpatialMaxPooling"},
    "up": {"nn.SpatialUpSamplingNearest"},
}


@dataclass(frozen=True)
class Slot:
    """One module of a published nn.Sequential: its kind and, for a conv, its weight shape."""

    kind: Literal["conv", "pad", "relu", "pool", "up"]
    weight: tuple[int, ...] = ()

    def describe(self) -> str:
        if not self.weight:
            return self.kind
        return f"conv {self.weight[1]}->{self.weight[0]} {self.weight[2]}x{self.weight[3]}"


def layout(sequence: nn.Sequential | nn.ModuleList) -> list[Slot]:
    """The published module list that `sequence` (our encoder's layers or decoder's net) mirrors."""
    slots = []
    for module in sequence:
        if isinstance(module, nn.Conv2d):
            slots.append(Slot("conv", tuple(module.weight.shape)))
        elif isinstance(module, nn.ReflectionPad2d):
            slots.append(Slot("pad"))
        elif isinstance(module, nn.ReLU):
            slots.append(Slot("relu"))
        elif isinstance(module, nn.MaxPool2d):
            slots.append(Slot("pool"))
        elif isinstance(module, NearestUp2x):
            slots.append(Slot("up"))
        else:
            raise WeightsError(f"{type(module).__name__} has no counterpart in the published AdaIN models")
    return slots


def describe_layout(slots: list[Slot]) -> str:
    convs = [s for s in slots if s.kind == "conv"]
    return f"{len(slots)} modules with {len(convs)} convs ({convs[0].describe()} first, {convs[-1].describe()} last)"


# ------------------------------------------------------------------------------------------ fetching


def is_url(source: str) -> bool:
    return urllib.parse.urlparse(source).scheme in ("http", "https")


def check_sha256(path: Path, expected: str | None, key: str) -> None:
    """The file's sha256 must equal the pinned one; an unpinned file is refused (`key` names the setting)."""
    digest = file_digest(path)
    if expected is None:
        raise WeightsError(
            f"{path}: {key} is not set; pin the file first: `stylepipe checksum {path}` prints the line "
            f"(sha256: {digest})"
        )
    if digest != expected.lower():
        raise WeightsError(f"{path}: sha256 {digest} does not match the pinned {key} {expected}")


def fetch(source: str, sha256: str | None, key: str, cache_dir: Path) -> Path:
    """The published file at `source` (a local path, or an http(s) URL downloaded once into
    `cache_dir`), its sha256 checked against the pin `sha256` (`key` names it in errors)."""
    if not is_url(source):
        path = Path(source)
        if not path.is_file():
            raise WeightsError(f"{path}: published model file not found (fetch it first: see README, "
                               "'Start from the published model')")
        check_sha256(path, sha256, key)
        return path
    if sha256 is None:
        raise WeightsError(f"{source}: {key} is not set; download the file, then `stylepipe checksum <file>` "
                           "prints the line to pin it")
    return download_pinned(source, cached_download(source, sha256, cache_dir), sha256, key, WeightsError,
                           "fetch the file by hand and give its path instead of the URL", DOWNLOAD_TIMEOUT_S)


def cached_download(url: str, sha256: str, cache_dir: Path) -> Path:
    """Where the file at `url` with digest `sha256` is kept once downloaded (one folder per digest)."""
    return cache_dir / sha256.lower() / (Path(urllib.parse.urlparse(url).path).name or "download")


# ------------------------------------------------------------------------------------------ reading


def detect_format(path: Path) -> Format:
    """'pth' (a torch.save file, zip or legacy) or 't7' (a binary Torch7 file), from the first bytes."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(ZIP_MAGIC) or head.startswith(PICKLE_MAGIC):
        return "pth"
    if head == T7_TORCH_OBJECT:
        return "t7"
    raise WeightsError(f"{path}: neither a torch .pth state dict nor a binary Torch7 .t7 file "
                       f"(starts with {head!r})")


def read_published(path: Path, declared: Format, sequence: nn.Sequential | nn.ModuleList, prefix: str,
                   what: str) -> dict[str, torch.Tensor]:
    """A state dict for `sequence` (keys `prefix` + 'i.weight' / 'i.bias') from the published file at
    `path`, whose detected format must be `declared` and whose modules must match `sequence` one to one
    (`what` names the model expected, for errors)."""
    detected = detect_format(path)
    if detected != declared:
        raise WeightsError(f"{path}: is a {detected} file, but format {declared} is declared for it")
    slots = layout(sequence)
    read = _state_from_pth if detected == "pth" else _state_from_t7
    convs = read(path, slots, f"{what}: {describe_layout(slots)}")
    return {f"{prefix}{i}.{name}": tensor for i, params in convs.items() for name, tensor in params.items()}


def _state_from_pth(path: Path, slots: list[Slot], expected_model: str) -> dict[int, dict[str, torch.Tensor]]:
    state = read_torch(path, "torch state dict", WeightsError)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: expected a state dict (names to tensors) of an nn.Sequential")
    expected = {f"{i}.{name}": _param_shape(slot, name) for i, slot in enumerate(slots) if slot.kind == "conv"
                for name in ("weight", "bias")}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    bad = [f"{k} {tuple(state[k].shape)} (expected {expected[k]})" for k in expected
           if k in state and tuple(state[k].shape) != expected[k]]
    problems = [f"{what} {items[:6]}" for what, items in
                (("missing", missing), ("unexpected", unexpected), ("mis-shaped", bad)) if items]
    if problems:
        raise WeightsError(f"{path}: does not fit {expected_model}: " + "; ".join(problems))
    out: dict[int, dict[str, torch.Tensor]] = {}
    for key in expected:
        index, name = key.split(".")
        out.setdefault(int(index), {})[name] = state[key].float().contiguous()
    return out


def _param_shape(slot: Slot, name: str) -> tuple[int, ...]:
    return slot.weight if name == "weight" else (slot.weight[0],)


def _state_from_t7(path: Path, slots: list[Slot], expected_model: str) -> dict[int, dict[str, torch.Tensor]]:
    import torchfile

    try:
        root = torchfile.load(str(path))
    except Exception as err:  # torchfile raises struct/value errors on truncated or foreign files
        raise WeightsError(f"{path}: not a readable Torch7 file ({type(err).__name__}: {err})") from None
    if _t7_class(root) != "nn.Sequential":
        raise WeightsError(f"{path}: expected a Torch7 nn.Sequential at the top, found {_t7_class(root) or type(root)}")
    modules = root.modules
    if not isinstance(modules, list) or len(modules) != len(slots):
        count = len(modules) if isinstance(modules, list) else "no"
        raise WeightsError(f"{path}: holds {count} modules, expected {expected_model}")
    out: dict[int, dict[str, torch.Tensor]] = {}
    for i, (module, slot) in enumerate(zip(modules, slots, strict=True)):
        found = _t7_class(module)
        if found not in T7_CLASSES[slot.kind]:
            raise WeightsError(f"{path}: module {i + 1} is {found or type(module).__name__}, expected "
                               f"{' or '.join(sorted(T7_CLASSES[slot.kind]))} ({slot.describe()})")
        problem = _t7_settings_problem(module, slot)
        if problem:
            raise WeightsError(f"{path}: module {i + 1} ({found}) {problem}")
        if slot.kind == "conv":
            out[i] = {"weight": _t7_tensor(path, i, module.weight, slot.weight),
                      "bias": _t7_tensor(path, i, module.bias, (slot.weight[0],))}
    return out


def _t7_class(obj: Any) -> str | None:
    typename = getattr(obj, "torch_typename", None)
    if not callable(typename):
        return None
    name = typename()
    return name.decode("ascii", "replace") if isinstance(name, bytes) else str(name)


def _t7_settings_problem(module: Any, slot: Slot) -> str | None:
    """What differs from the published module's settings (None when nothing does)."""
    expected: dict[str, int] = {
        "conv": {"dW": 1, "dH": 1, "padW": 0, "padH": 0},
        "pad": {"pad_l": 1, "pad_r": 1, "pad_t": 1, "pad_b": 1},
        "pool": {"kW": 2, "kH": 2, "dW": 2, "dH": 2},
        "up": {"scale_factor": 2},
        "relu": {},
    }[slot.kind]
    wrong = {k: getattr(module, k) for k, v in expected.items() if getattr(module, k) not in (None, v)}
    return f"has {wrong}, expected {expected}" if wrong else None


def _t7_tensor(path: Path, index: int, value: Any, shape: tuple[int, ...]) -> torch.Tensor:
    """A conv's weight or bias as a float tensor of `shape` (SpatialConvolutionMM stores the weight 2-D)."""
    if not isinstance(value, np.ndarray) or value.size != int(np.prod(shape)):
        got = tuple(value.shape) if isinstance(value, np.ndarray) else type(value).__name__
        raise WeightsError(f"{path}: module {index + 1} holds a tensor of shape {got}, expected {shape}")
    return torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32).reshape(shape)).clone()
