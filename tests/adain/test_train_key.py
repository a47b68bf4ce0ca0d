"""The training stages' checkpoint key: the finishing settings (params `finish`) are no part of it."""

from __future__ import annotations

from stylepipe.adain.train import checkpoint_params
from stylepipe.core.config import parse_params
from stylepipe.stagetable import stage_named
from stylepipe.train.checkpoint import params_hash

from ..conftest import load_default_params

TRAINING = ("train_recon", "train_adain")


def test_checkpoint_params_ignore_the_finish_section():
    """Changing how outputs are finished leaves both training stages' params hash as it was, so a finished
    checkpoint serves any finishing; the model part is the AdaIN architecture alone."""
    raw = load_default_params()
    default = parse_params(raw)
    raw["finish"] = {"palette": "none", "detail": 0.0}
    changed = parse_params(raw)
    assert default.finish != changed.finish
    for stage in TRAINING:
        before = checkpoint_params(getattr(default, stage), default.adain)
        after = checkpoint_params(getattr(changed, stage), changed.adain)
        assert before == after
        assert params_hash(stage, before, 0, 1, "inputs") == params_hash(stage, after, 0, 1, "inputs")
        assert set(before["adain"]) == {"layer", "decoder_width", "init"}


def test_only_the_stages_that_finish_outputs_declare_the_finish_section():
    for stage in TRAINING:
        assert "finish" not in stage_named(stage).params
    for stage in ("evaluate", "export_onnx", "export_openvino", "demo"):
        assert "finish" in stage_named(stage).params
