"""Tiles for large images: window planning on a grid of 8 (the encoder's pooling grid), feather weights
that sum to one across overlaps, and a memory estimate that decides whether a frame needs tiling.

Model-agnostic: a window is (fetch box with context, core box); the caller runs its network on the fetch
box, keeps the core, and blends cores with `feather`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from stylepipe.core.errors import StylepipeError

GRID = 8
TILE_CANDIDATES = (4096, 2048, 1536, 1024, 768, 512, 384, 256)
# Peak bytes per pixel per byte of element size for the encoder+decoder at full resolution: a few live
# 64-channel maps (padded input, conv output, activation, upsampled copy) at the image resolution.
ACTIVATION_FACTOR = 320
FIXED_BYTES = 256 << 20  # weights, features and allocator slack
HOST_BYTES_PER_PIXEL = 48  # full-size float32 buffers kept on the host: input, output sum, weights


class InsufficientMemoryError(StylepipeError, RuntimeError):
    """The frame cannot be processed within the memory available, even tiled."""


@dataclass(frozen=True)
class Window:
    """A tile: the box the network sees (fetch, with context) and the box whose output is kept (core)."""

    fetch: tuple[int, int, int, int]  # y0, y1, x0, x1
    core: tuple[int, int, int, int]


def pad_to_grid(x: torch.Tensor, grid: int = GRID) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad [N, C, H, W] on the bottom/right to multiples of `grid`; returns the original (H, W)."""
    h, w = x.shape[-2:]
    ph, pw = -h % grid, -w % grid
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="reflect")
    return x, (h, w)


def _axis(length: int, tile: int, stride: int) -> list[tuple[int, int]]:
    spans, start = [], 0
    while True:
        end = min(start + tile, length)
        spans.append((start, end))
        if end == length:
            return spans
        start += stride


def plan_windows(height: int, width: int, tile: int, overlap: int, context: int) -> list[Window]:
    """Windows of `tile` px whose cores overlap by `overlap` (0 for a partition), each fetched with
    `context` px more on every side (clipped at the image border). All values multiples of 8."""
    for name, value in (("height", height), ("width", width), ("tile", tile), ("overlap", overlap),
                        ("context", context)):
        if value % GRID:
            raise ValueError(f"{name} {value} must be a multiple of {GRID}")
    if not 0 <= overlap < tile:
        raise ValueError(f"tile overlap {overlap} must be in [0, tile={tile})")
    windows = []
    for y0, y1 in _axis(height, tile, tile - overlap):
        for x0, x1 in _axis(width, tile, tile - overlap):
            fetch = (max(0, y0 - context), min(height, y1 + context), max(0, x0 - context), min(width, x1 + context))
            windows.append(Window(fetch, (y0, y1, x0, x1)))
    return windows


def _ramp(start: int, end: int, length: int, overlap: int) -> torch.Tensor:
    w = torch.ones(end - start)
    if overlap == 0:
        return w
    ramp = (torch.arange(overlap, dtype=torch.float32) + 0.5) / overlap
    n = min(overlap, end - start)
    if start > 0:
        w[:n] = torch.minimum(w[:n], ramp[:n])
    if end < length:
        w[-n:] = torch.minimum(w[-n:], ramp[:n].flip(0))
    return w


def feather(window: Window, height: int, width: int, overlap: int) -> torch.Tensor:
    """[1, 1, h, w] weights of a core: linear ramps over the overlaps with neighbours, 1 inside and at the
    image border; neighbouring ramps sum to 1, so blended tiles have no seams."""
    y0, y1, x0, x1 = window.core
    return (_ramp(y0, y1, height, overlap)[:, None] * _ramp(x0, x1, width, overlap)[None, :])[None, None]


def estimate_bytes(height: int, width: int, element_bytes: int = 4) -> int:
    """Rough peak memory of one encoder+decoder pass over a height x width frame."""
    return ACTIVATION_FACTOR * element_bytes * height * width + FIXED_BYTES


def available_bytes(device: torch.device) -> int:
    """Memory a stylisation may use: 70% of the free GPU memory, or half of the host's available RAM."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.7)
    import psutil

    return int(psutil.virtual_memory().available * 0.5)


def choose_tile(height: int, width: int, element_bytes: int, budget: int, context: int) -> int:
    """0 when the whole frame fits in `budget`, else the largest candidate tile that fits; raises a clear
    error when even the smallest does not (instead of letting the machine run out of memory)."""
    host = HOST_BYTES_PER_PIXEL * height * width
    if host + estimate_bytes(height, width, element_bytes) <= budget:
        return 0
    for tile in TILE_CANDIDATES:
        side = tile + 2 * context
        if tile < max(height, width) and host + estimate_bytes(side, side, element_bytes) <= budget:
            return tile
    need = host + estimate_bytes(TILE_CANDIDATES[-1] + 2 * context, TILE_CANDIDATES[-1] + 2 * context, element_bytes)
    raise InsufficientMemoryError(
        f"a {width}x{height} frame needs about {need / 2**30:.1f} GiB even in {TILE_CANDIDATES[-1]} px tiles, "
        f"but only {budget / 2**30:.1f} GiB may be used: use a smaller content size"
    )
