"""benchmarks/bench_quality.py's histogram matching: what its --match-histogram figures stand on."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from stylepipe.nn.metrics import colour_histogram_distance

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_quality.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_quality", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_histogram_matched_output_takes_the_paintings_palette_and_keeps_its_own_order():
    g = torch.Generator().manual_seed(0)
    output = torch.rand(3, 32, 32, generator=g)
    painting = (torch.rand(3, 48, 48, generator=g) ** 4)  # darker, peaky palette, another size
    matched = _bench().histogram_matched(output, painting)
    assert matched.shape == output.shape
    assert colour_histogram_distance(matched, painting) < 0.05 < colour_histogram_distance(output, painting)
    for ch in range(3):  # a monotone remap: brighter stays brighter
        order = output[ch].flatten().argsort()
        assert bool((matched[ch].flatten()[order].diff() >= 0).all())
