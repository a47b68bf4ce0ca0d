"""benchmarks/bench_quality.py: it scores what the model gives, palette matching included."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from stylepipe.adain.engine import Finish
from stylepipe.adain.fast import torch_engine
from stylepipe.adain.model import AdaINStylizer, Decoder
from stylepipe.core.config import Common
from stylepipe.core.runtime import resolve_runtime
from stylepipe.nn.encoders import build_encoder

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_quality.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_quality", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_palette_model_is_scored_on_its_matched_outputs():
    """Two flat-palette paintings: the untrained network's grey outputs keep neither palette; matched to
    each painting's palette (finish.palette histogram, or --palette), every style is nearest its own."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    contents = {f"c{i}": torch.rand(3, 32, 32, generator=g) for i in range(2)}
    styles = {"dark": torch.rand(3, 32, 32, generator=g) * 0.3, "light": 0.7 + torch.rand(3, 32, 32, generator=g) * 0.3}
    encoder = build_encoder("vgg16_hed", "relu3_1")
    metric = build_encoder("vgg16_hed", "relu4_1")
    bench = _bench()
    for palette, expected in (("none", False), ("histogram", True)):
        model = AdaINStylizer(encoder, Decoder("vgg16_hed", "relu3_1", 0.5)).eval()
        engine = torch_engine(model, resolve_runtime(Common(device="cpu")), Finish(palette))
        model_m, _, outputs, _ = bench.score(engine, metric, contents, styles)
        own = [v["closest_is_own"] for v in bench.separation(outputs, contents, styles).values()]
        assert all(own) is expected, (palette, own)
    assert model_m["hist_distance_style"] < 0.1
