"""The shared training loop: loss goes down, a killed run resumes to the same curve, NaN stops cleanly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stylepipe.config import Common, TrainAdain
from stylepipe.models.adain import Decoder
from stylepipe.models.encoders import build_encoder
from stylepipe.models.weights import hed_h5_path, hed_state_dict
from stylepipe.runtime import resolve_runtime, seed_everything
from stylepipe.train.loop import NonFiniteLossError, fit
from stylepipe.train.stages import AdainTask, ReconTask

RT = resolve_runtime(Common(device="cpu"))
HED_SHA256 = "4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f"


def _cfg(**over) -> TrainAdain:
    base = dict(iterations=6, batch_size=2, crop=16, lr=1e-3, lr_decay=1e-3, checkpoint_every=2, log_every=1,
                image_every=100, content_weight=1.0, style_weight=1.0)
    return TrainAdain(**{**base, **over})


def _batches(chunk: int):
    """Deterministic synthetic data per chunk, like RandomPairs re-seeded per epoch."""
    g = torch.Generator().manual_seed(1000 + chunk)
    while True:
        yield torch.rand(2, 3, 16, 16, generator=g), torch.rand(2, 3, 16, 16, generator=g)


def _adain_task(decoder_seed: int = 0) -> AdainTask:
    """The frozen encoder is the same in every run (in the pipeline it comes from a file)."""
    seed_everything(0)
    enc = build_encoder("vgg16_hed")
    seed_everything(decoder_seed)
    return AdainTask(enc, Decoder("vgg16_hed"), 1.0, 1.0, ("relu1_1", "relu2_1", "relu3_1", "relu4_1"))


class _Kill(Exception):
    pass


def test_recon_loss_decreases(tmp_path: Path):
    seed_everything(0)
    encoder = build_encoder("vgg16_hed")
    encoder.load_state_dict(hed_state_dict(hed_h5_path(), HED_SHA256))  # the real offline weights
    task = ReconTask(encoder, Decoder("vgg16_hed"))
    g = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.interpolate(torch.rand(4, 3, 4, 4, generator=g), size=32, mode="bilinear")
    fixed = (smooth[:2], smooth[2:])  # low-frequency colour images: learnable in a few steps
    cfg = _cfg(iterations=60, checkpoint_every=60, lr=2e-4)
    result = fit(task, cfg, RT, lambda c: iter(lambda: fixed, None), tmp_path / "ckpt", "h")
    losses = [row["loss"] for row in result.history]
    assert min(losses[-5:]) < losses[0] * 0.5, losses


def test_resume_after_kill_gives_identical_curve(tmp_path: Path):
    cfg = _cfg()
    uninterrupted = fit(_adain_task(), cfg, RT, _batches, tmp_path / "a", "hash")

    def die_after_step_5(step, row):
        if step == 5:
            raise _Kill

    with pytest.raises(_Kill):
        fit(_adain_task(), cfg, RT, _batches, tmp_path / "b", "hash", on_log=die_after_step_5)
    resumed = fit(_adain_task(decoder_seed=123), cfg, RT, _batches, tmp_path / "b", "hash")
    assert resumed.resumed_from == 4
    a = [r["loss"] for r in uninterrupted.history]
    b = [r["loss"] for r in resumed.history]
    assert len(a) == len(b) == 6
    assert a == pytest.approx(b, rel=1e-5)


def test_checkpoint_from_other_params_is_ignored(tmp_path: Path):
    cfg = _cfg(iterations=2)
    fit(_adain_task(), cfg, RT, _batches, tmp_path / "c", "old-hash")
    result = fit(_adain_task(), cfg, RT, _batches, tmp_path / "c", "new-hash")
    assert result.resumed_from == 0


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path: Path):
    cfg = _cfg(iterations=6)

    def poisoned(chunk: int):
        for content, style in _batches(chunk):
            if chunk >= 1:
                content = content * float("nan")
            yield content, style

    with pytest.raises(NonFiniteLossError, match="loss became nan by step 3"):
        fit(_adain_task(), cfg, RT, poisoned, tmp_path / "d", "hash")
    saved = torch.load(tmp_path / "d" / "latest.pt", weights_only=False)
    assert saved["step"] == 2
    assert all(torch.isfinite(v).all() for v in saved["model"].values())


def test_style_loss_gradient_is_finite_on_constant_channels():
    from stylepipe.losses import style_loss

    out = torch.zeros(1, 4, 4, 4, requires_grad=True)  # a dead-ReLU map: variance exactly 0
    style = {"relu1_1": torch.rand(1, 4, 4, 4)}
    style_loss({"relu1_1": out}, style, ["relu1_1"]).backward()
    assert torch.isfinite(out.grad).all()
