"""`stability_weight` in train_adain and train_johnson: the shift-consistency term joins the loss."""

from __future__ import annotations

import pytest
import torch

from stylepipe.adain.model import Decoder
from stylepipe.adain.train import AdainTask
from stylepipe.core.config import TrainAdain, TrainJohnson
from stylepipe.core.runtime import seed_everything
from stylepipe.johnson.model import TransformerNet
from stylepipe.johnson.train import build_task
from stylepipe.nn.encoders import build_encoder

CFG = dict(iterations=1, batch_size=2, crop=32, lr=1e-3, checkpoint_every=1, log_every=1, image_every=1)


@pytest.mark.parametrize("weight", [0.0, 5.0])
def test_adain_task_adds_the_stability_term_at_its_weight(weight: float):
    seed_everything(0)
    encoder = build_encoder("vgg16_hed", "relu3_1")
    cfg = TrainAdain(**CFG, stability_weight=weight, stability_noise=0.01, colour_weight=0.0, structure_weight=0.0)
    task = AdainTask.from_params(encoder, Decoder("vgg16_hed", "relu3_1", 0.5), cfg)
    content, style = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    torch.manual_seed(1)
    terms = task.losses(content, style)
    assert ("stability" in terms) == bool(weight)
    expected = terms["content"] + 0.15 * terms["style"] + weight * terms.get("stability", 0.0)
    torch.testing.assert_close(terms["loss"], expected)
    if weight:
        assert float(terms["stability"].detach()) > 0  # an untrained decoder is not shift-stable
        terms["loss"].backward()
        assert all(p.grad is not None for p in task.decoder.parameters() if p.requires_grad)


def test_johnson_task_measures_and_weights_the_stability_term():
    seed_everything(0)
    encoder = build_encoder("vgg16_hed", "relu4_3")
    cfg = TrainJohnson(**CFG, styles=["s"], stability_weight=2.0, pad=2)
    task = build_task(TransformerNet(pad=2), encoder, torch.rand(1, 3, 32, 32), cfg)
    content = torch.rand(2, 3, 32, 32)
    scales = task.measure_scales(content)
    assert scales["stability"] > 0
    terms = task.losses(content, content)
    assert "stability" in terms and float(terms["loss"].detach()) > 0
    task.extract.close()
