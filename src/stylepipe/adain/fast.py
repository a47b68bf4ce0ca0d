"""The per-frame fast path of AdaIN inference (pure torch: it runs wherever torch does, a GPU
included): cached style statistics as inputs, encoder and decoder under bf16 autocast with the
AdaIN statistics in fp32, optional channels_last, torch.compile and CUDA graphs."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from stylepipe.adain.model import AdaINStylizer
from stylepipe.nn.functional import adain_blend


class FastAdaIN(nn.Module):
    """(content, style_mean, style_std, alpha) -> stylised [N, 3, H, W] in [0, 1], float32 output, the
    content's fine detail restored as the decoder records (outside autocast: a float32 residual)."""

    def __init__(self, model: AdaINStylizer, bf16: bool) -> None:
        super().__init__()
        self.encoder, self.decoder, self.bf16 = model.encoder, model.decoder, bf16

    def _autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        with self._autocast(x.device):
            return self.encoder.encode(x).float()

    def decode(self, t: torch.Tensor) -> torch.Tensor:
        """The decoder's float32 output, unclamped: `Decoder.finish` restores the detail and clamps once,
        as the exported graphs and `AdaINStylizer.forward` do."""
        with self._autocast(t.device):
            return self.decoder(t).float()

    def forward(self, content: torch.Tensor, style_mean: torch.Tensor, style_std: torch.Tensor,
                alpha: float = 1.0) -> torch.Tensor:
        decoded = self.decode(adain_blend(self.encode(content), style_mean, style_std, alpha))
        return self.decoder.finish(decoded, content)


def fast_network(model: AdaINStylizer, device: torch.device, bf16: bool = True, channels_last: bool = False,
                 compile: bool = False, compile_mode: str | None = None) -> nn.Module:
    """The model on `device` as a FastAdaIN; `compile_mode` e.g. "reduce-overhead" (CUDA graphs) or
    "max-autotune-no-cudagraphs". Inputs must be channels_last too when `channels_last`."""
    net = FastAdaIN(model, bf16).eval().to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    return torch.compile(net, mode=compile_mode) if compile else net
