"""Device selection and the speed switches (bf16 autocast, channels_last, torch.compile): on for CUDA, and bf16
also on CPUs that compute it natively."""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from stylepipe.core.config import Common, ConfigError


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    bf16: bool
    channels_last: bool
    compile: bool
    compile_mode: str = "default"

    def compiled(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """`fn` through torch.compile in the configured mode when compiling is on, else `fn` itself."""
        return torch.compile(fn, mode=self.compile_mode) if self.compile else fn

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def prepare(self, module: torch.nn.Module) -> torch.nn.Module:
        module = module.to(self.device)
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        return module


def _switch(value: str | bool, auto: bool) -> bool:
    return auto if value == "auto" else bool(value)


def resolve_runtime(common: Common) -> Runtime:
    """`auto` means CUDA when available; the speed switches default to on for CUDA and off for the CPU, bf16
    autocast included: the default sample model trained in bf16 on an AMX CPU falls below evaluate's SSIM
    bar, so a CPU trains in bf16 only when `common.bf16` asks for it (docs/performance.md)."""
    if common.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("params common.device is 'cuda' but no CUDA device is available (use 'auto')")
    use_cuda = common.device == "cuda" or (common.device == "auto" and torch.cuda.is_available())
    # under torchrun each process drives the GPU of its local rank
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if use_cuda else torch.device("cpu")
    if common.num_threads:
        torch.set_num_threads(common.num_threads)
    if use_cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    return Runtime(
        device=device,
        bf16=_switch(common.bf16, use_cuda),
        channels_last=_switch(common.channels_last, use_cuda),
        compile=_switch(common.compile, use_cuda),
        compile_mode=common.compile_mode,
    )


def calls_per_second(
    fn: Callable[[], object], repeats: int, device: torch.device | None = None, warmup: int = 1
) -> float:
    """fn() calls per second over `repeats` timed calls after `warmup` untimed ones; on a CUDA `device`
    the clock stops only when the GPU has finished."""
    cuda = device is not None and device.type == "cuda"
    for _ in range(warmup):
        fn()
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    if cuda:
        torch.cuda.synchronize()
    return repeats / (time.perf_counter() - t0)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
