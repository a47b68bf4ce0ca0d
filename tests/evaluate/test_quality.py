"""The regression guard on what every user sees first: the model the default sample profile trains.

The default params.yaml is reproduced for real (`dvc repro train_adain` in a project copy, 2 CPU cores:
several minutes) and the trained model is scored on the evaluate stage's held-out sample pairs with the
evaluate stage's own functions. It must beat the colour-transfer floor on style and keep the content
readable; a recipe change that breaks either fails here, not in a user's grid.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from stylepipe.adain.model import load_stylizer
from stylepipe.core.config import load_params
from stylepipe.evaluate.stage import held_out_pairs
from stylepipe.nn.metrics import floor_metrics, image_metrics, metric_encoder, quality_checks

from ..conftest import ROOT, make_project_copy, run

pytestmark = pytest.mark.integration


@pytest.mark.timeout(1800)
def test_default_sample_profile_trains_a_model_above_the_floor(tmp_path):
    repo = make_project_copy(tmp_path / "project")
    shutil.copy(ROOT / "params.yaml", repo / "params.yaml")  # the default profile, not the tiny one
    run(["dvc", "repro", "train_adain"], repo, timeout=1700)
    params = load_params(repo / "params.yaml")
    model = load_stylizer(repo / "models/encoder/encoder.pt", repo / "models/adain/decoder.pt")
    enc = metric_encoder(torch.device("cpu"), repo / "models/encoder/encoder.pt")
    pairs = held_out_pairs(params, repo / "data/prepared")
    with torch.no_grad():
        rows = [image_metrics(enc, model.stylize(c[None], s[None])[0], c, s, 1.0) for c, s, _ in pairs]
    achieved = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}
    floor = floor_metrics(enc, pairs, torch.device("cpu"))
    checks = quality_checks(achieved, floor)
    assert all(checks.values()), (checks, achieved, floor)
