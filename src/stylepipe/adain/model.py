"""AdaIN's decoder and inference network; the AdaIN math itself lives in `nn.functional`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from stylepipe.core import paths
from stylepipe.core.io import write_torch
from stylepipe.nn.encoders import (
    ENCODER_MISSING,
    SPECS,
    VGGEncoder,
    WeightsError,
    load_encoder,
    load_state_checked,
    read_weights_file,
    truncated_plan,
)
from stylepipe.nn.functional import adain_blend, mean_std
from stylepipe.nn.layers import NearestUp2x
from stylepipe.nn.palette import palette_of
from stylepipe.nn.statistics import StyleBank

ADAIN_LAYERS = ("relu3_1", "relu4_1")  # where AdaIN can re-normalise: the decoder mirrors the encoder from here


def decoder_plan(encoder_name: str, layer: str, width: float = 1.0) -> list[tuple[int, int] | str]:
    """The encoder's convs up to `layer`, reversed with in/out swapped ('U' = nearest x2 where the encoder
    pools). `width` scales the hidden channels; the input (the features) and the output (RGB) stay."""
    convs, plan, in_ch = [], [], 3
    for item in truncated_plan(SPECS[encoder_name], layer):
        if item == "M":
            convs.append("U")
        else:
            convs.append((in_ch, int(item)))
            in_ch = int(item)
    for i, item in enumerate(reversed(convs)):
        if item == "U":
            plan.append("U")
            continue
        cout, cin = item
        scaled_in = cin if i == 0 else max(8, round(cin * width))
        scaled_out = cout if cout == 3 else max(8, round(cout * width))
        plan.append((scaled_in, scaled_out))
    return plan


class Decoder(nn.Module):
    """Mirror of the VGG encoder from `layer` (relu3_1 or relu4_1): reflection-padded convs, nearest
    upsampling, no normalisation; `width` < 1 thins the hidden channels (a lighter model for the OAK-1)."""

    def __init__(self, encoder_name: str = "vgg16_hed", layer: str = "relu4_1", width: float = 1.0) -> None:
        super().__init__()
        if layer not in ADAIN_LAYERS:
            raise WeightsError(f"AdaIN layer {layer!r} is not supported: expected one of {list(ADAIN_LAYERS)}")
        if encoder_name not in SPECS:
            raise WeightsError(f"unknown encoder {encoder_name!r}: expected one of {sorted(SPECS)}")
        plan = decoder_plan(encoder_name, layer, width)
        layers: list[nn.Module] = []
        for i, item in enumerate(plan):
            if item == "U":
                layers.append(NearestUp2x())
                continue
            cin, cout = item
            layers += [nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, 3)]
            if i != len(plan) - 1:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)
        self.encoder_name, self.layer, self.width = encoder_name, layer, width
        self.register_buffer("input_scale", torch.ones(()))
        self.in_channels = plan[0][0]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        # The output layer starts near a mid-grey image instead of Kaiming-scaled noise: encoder features
        # are large (Caffe scale), and a Kaiming output layer begins with losses ~1e2-1e6.
        last = self.net[-1]
        nn.init.normal_(last.weight, std=1e-3)
        nn.init.constant_(last.bias, 0.5)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.net(feat * self.input_scale)

    @torch.no_grad()
    def calibrate(self, feat: torch.Tensor) -> None:
        """Scale the input to unit RMS: encoder features on the Caffe 0-255 scale (RMS ~30 at relu3_1)
        otherwise start the decoder far from its grey output and leave Adam's bias steps negligible."""
        self.input_scale.fill_(1.0 / feat.float().pow(2).mean().sqrt().clamp_min(1e-6).item())

    def describe(self) -> str:
        return f"encoder {self.encoder_name!r} at {self.layer} (width {self.width:g})"


class AdaINStylizer(nn.Module):
    """content [N,3,H,W] in [0,1] + style statistics [N,C,1,1] x2 -> stylised image in [0,1], where C is
    the channel count of the AdaIN layer (256 at relu3_1, 512 at relu4_1)."""

    def __init__(self, encoder: VGGEncoder, decoder: Decoder, source: str = "AdaIN model") -> None:
        super().__init__()
        check_pair(encoder, decoder, source)
        self.encoder = encoder
        self.decoder = decoder

    @property
    def layer(self) -> str:
        return self.decoder.layer

    @property
    def channels(self) -> int:
        return self.decoder.in_channels

    def style_stats(self, style: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return mean_std(self.encoder.encode(style))

    def forward(
        self,
        content: torch.Tensor,
        style_mean: torch.Tensor,
        style_std: torch.Tensor,
        alpha: float = 1.0,
    ) -> torch.Tensor:
        """The network's own output, unclamped and unfinished: inference with the finishing steps is the
        engine's (`adain.engine`, e.g. `adain.fast.torch_engine`)."""
        return self.decoder(adain_blend(self.encoder.encode(content), style_mean, style_std, alpha))


@torch.no_grad()
def style_stats_of_images(model: AdaINStylizer, names: Sequence[str], images: Sequence[torch.Tensor],
                          with_palette: bool = True) -> StyleBank:
    """Statistics of each style image ([3, H, W] in [0, 1]), named by `names`, and its palette unless
    `with_palette` is false (a caller that will not match palettes skips the per-image quantiles)."""
    device = next(model.parameters()).device
    pairs = [model.style_stats(image[None].to(device)) for image in images]
    palette = torch.stack([palette_of(image.cpu()) for image in images]) if with_palette else None
    return StyleBank(list(names), torch.cat([m for m, _ in pairs]).cpu(), torch.cat([s for _, s in pairs]).cpu(),
                     model.encoder.spec.name, model.layer, palette)


def check_pair(encoder: VGGEncoder, decoder: Decoder, source: str = "AdaIN model") -> None:
    """The decoder must have been built for this encoder, cut at its layer: an error names both."""
    if decoder.encoder_name != encoder.spec.name or decoder.layer != encoder.last:
        raise WeightsError(
            f"{source}: the decoder was trained for encoder {decoder.encoder_name!r} at {decoder.layer}, "
            f"but the encoder is {encoder.spec.name!r} at {encoder.last}"
        )


def save_decoder(decoder: Decoder, path: str | Path) -> None:
    """Atomically save a decoder with what it was trained against (encoder name, AdaIN layer, width); how
    its outputs are finished is no part of it (params `finish`, or a model folder's record)."""
    blob = {"encoder": decoder.encoder_name, "layer": decoder.layer, "width": decoder.width,
            "state_dict": decoder.state_dict()}
    write_torch(path, blob)


def load_decoder(path: str | Path, map_location: str | torch.device = "cpu") -> Decoder:
    """A saved decoder; files written before the layer was recorded hold relu4_1 decoders of width 1.
    Files that also record finishing settings ("palette", "detail") load the same: those settings come from
    params `finish` or a model folder now."""
    hint = "decoder weights not found (train it: `dvc repro train_adain`)"
    blob = read_weights_file(path, ("encoder", "state_dict"), hint, map_location)
    try:
        decoder = Decoder(blob["encoder"], blob.get("layer", "relu4_1"), float(blob.get("width", 1.0)))
    except WeightsError as err:
        raise WeightsError(f"{path}: {err}") from None
    state = {"input_scale": torch.ones(()), **blob["state_dict"]}  # decoders without one read unscaled input
    load_state_checked(decoder, state, path)
    return decoder


def expect_decoder(decoder: Decoder, encoder_name: str, layer: str, width: float, source: str | Path) -> Decoder:
    """`decoder` if it was built for `encoder_name` at `layer` with `width`, else an error naming both."""
    if (decoder.encoder_name, decoder.layer, decoder.width) != (encoder_name, layer, width):
        raise WeightsError(
            f"{source}: holds a decoder for encoder {decoder.encoder_name!r} at {decoder.layer} of width "
            f"{decoder.width:g}, but {encoder_name!r} at {layer} of width {width:g} is configured (re-run train_recon)"
        )
    return decoder


def load_stylizer(
    encoder_path: str | Path = paths.ENCODER,
    decoder_path: str | Path = paths.DECODER,
    map_location: str | torch.device = "cpu",
) -> AdaINStylizer:
    """The trained inference network, in eval mode: the encoder cut at the decoder's layer; the decoder
    must have been trained for that encoder. A missing encoder is reported first: its stage comes first."""
    if not Path(encoder_path).is_file():
        raise WeightsError(f"{encoder_path}: {ENCODER_MISSING}")
    decoder = load_decoder(decoder_path, map_location)
    encoder = load_encoder(encoder_path, map_location, last=decoder.layer)
    return AdaINStylizer(encoder, decoder, f"{decoder_path} with {encoder_path}").eval()
