"""The published AdaIN decoder (the official Torch7 release and the PyTorch port's) as stylepipe's Decoder."""

from __future__ import annotations

from pathlib import Path

import torch

from stylepipe.adain.model import Decoder
from stylepipe.nn.encoders import WeightsError, load_state_checked
from stylepipe.nn.published import Format, read_published

PUBLISHED_ENCODER = "vgg19_normalised"
DECODER_WHAT = "the published AdaIN decoder (vgg19_normalised relu4_1 -> RGB)"


def published_decoder(path: Path, declared: Format, encoder_name: str) -> Decoder:
    """The published decoder at `path` as stylepipe's Decoder (vgg19_normalised at relu4_1, width 1,
    unscaled input); it decodes only the published encoder's features, so another encoder is refused."""
    if encoder_name != PUBLISHED_ENCODER:
        raise WeightsError(
            f"{path}: a published AdaIN decoder decodes relu4_1 of {PUBLISHED_ENCODER}, but the encoder is "
            f"{encoder_name!r} (set weights.encoder: {PUBLISHED_ENCODER} and re-run the weights stage)"
        )
    decoder = Decoder(PUBLISHED_ENCODER, "relu4_1", 1.0)
    state = read_published(path, declared, decoder.net, "net.", DECODER_WHAT)
    load_state_checked(decoder, {"input_scale": torch.ones(()), **state}, path)
    return decoder
