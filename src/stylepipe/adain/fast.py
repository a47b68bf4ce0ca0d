"""The PyTorch backend of the AdaIN engine (it runs wherever torch does, a GPU included): the encoder and the
decoder under bf16 autocast (float32 out), optional channels_last, torch.compile and CUDA graphs."""

from __future__ import annotations

import contextlib

import torch

from stylepipe.adain.engine import Engine, Finish
from stylepipe.adain.model import AdaINStylizer
from stylepipe.core.runtime import Runtime
from stylepipe.nn.statistics import StatsOrigin


class TorchBackend:
    """`encode` / `decode` of an AdaINStylizer on the runtime's device (compiled when the runtime compiles:
    after a second frame size torch.compile switches to shape-generic graphs instead of one per size)."""

    name = "torch"

    def __init__(self, model: AdaINStylizer, rt: Runtime, compile_mode: str | None = None) -> None:
        self.rt, self.device = rt, rt.device
        self.precision = "bf16" if rt.bf16 else "f32"
        self.encoder, self.decoder = rt.prepare(model.encoder.eval()), rt.prepare(model.decoder.eval())
        mode = compile_mode or rt.compile_mode
        self._encode = torch.compile(self._eager_encode, mode=mode) if rt.compile else self._eager_encode
        self._decode = torch.compile(self._eager_decode, mode=mode) if rt.compile else self._eager_decode

    def _autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.rt.bf16)

    def _eager_encode(self, x: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            return self.encoder.encode(x).float()

    def _eager_decode(self, t: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            return self.decoder(t).float()

    @torch.no_grad()
    def encode(self, content: torch.Tensor) -> torch.Tensor:
        return self._encode(self.rt.to_device(content))

    @torch.no_grad()
    def decode(self, target: torch.Tensor) -> torch.Tensor:
        return self._decode(self.rt.to_device(target))


def torch_engine(model: AdaINStylizer, rt: Runtime, finish: Finish, compile_mode: str | None = None) -> Engine:
    """The engine of `model` on the PyTorch backend."""
    return Engine(TorchBackend(model, rt, compile_mode), StatsOrigin.of(model), model.encoder.stride, finish)
