"""The regression guard on what every user sees first: the models the default sample profile trains.

The default params.yaml is reproduced for real (`dvc repro train_adain train_johnson@<style>` in a project
copy, 2 CPU cores: several minutes) and the trained models are scored on the evaluate stage's held-out
sample photos with the evaluate stage's own functions. Each must beat the colour-transfer floor on style
and keep the content readable, and AdaIN's outputs must stay nearest their own painting's palette; a
recipe change that breaks any of these fails here, not in a user's grid.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from stylepipe.adain.engine import Finish
from stylepipe.adain.fast import torch_engine
from stylepipe.adain.model import load_stylizer
from stylepipe.core.config import Params, load_params
from stylepipe.core.runtime import resolve_runtime
from stylepipe.evaluate.johnson import own_painting_pairs
from stylepipe.evaluate.stage import cross_stylise, held_out_pairs, palette_separation
from stylepipe.johnson.model import load_johnson_stylizer
from stylepipe.nn.metrics import floor_metrics, image_metrics, mean_rows, metric_encoder, quality_checks
from stylepipe.train.plumbing import open_stores, style_image

from ..conftest import ROOT, make_project_copy, run

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Params]:
    """A project copy with the default params, trained through train_adain and every Johnson style."""
    repo = make_project_copy(tmp_path_factory.mktemp("quality") / "project")
    shutil.copy(ROOT / "params.yaml", repo / "params.yaml")  # the default profile, not the tiny one
    params = load_params(repo / "params.yaml")
    johnson = [f"train_johnson@{style}" for style in params.train_johnson.styles]
    run(["dvc", "repro", "train_adain", *johnson], repo, timeout=1700)
    return repo, params


def _bar(outputs: list[torch.Tensor], pairs: list, repo: Path) -> tuple[dict, dict, dict]:
    """The quality bar's checks of `outputs` against the floor on the same pairs, with both's metrics."""
    enc = metric_encoder(torch.device("cpu"), repo / "models/encoder/encoder.pt")
    with torch.no_grad():
        rows = [image_metrics(enc, out, c, s, 1.0) for out, (c, s, _) in zip(outputs, pairs, strict=True)]
    achieved = mean_rows(rows)
    floor = floor_metrics(enc, pairs, torch.device("cpu"))
    return quality_checks(achieved, floor), achieved, floor


@pytest.mark.timeout(1800)
def test_default_adain_model_is_above_the_floor_and_keeps_the_palettes_apart(trained):
    repo, params = trained
    model = load_stylizer(repo / "models/encoder/encoder.pt", repo / "models/adain/decoder.pt")
    engine = torch_engine(model, resolve_runtime(params.common), Finish.from_params(params))
    pairs = held_out_pairs(params, repo / "data/prepared")
    with torch.no_grad():
        outputs = [engine.stylize(c[None], s[None])[0] for c, s, _ in pairs]
        separation = palette_separation(pairs, cross_stylise(engine, pairs, torch.device("cpu")))
    checks, achieved, floor = _bar(outputs, pairs, repo)
    assert all(checks.values()), (checks, achieved, floor)
    assert separation["own_style_closest"] == separation["grid_styles"], separation


@pytest.mark.timeout(1800)
def test_default_johnson_networks_are_above_the_floor_on_their_own_style(trained):
    repo, params = trained
    styles = open_stores(repo / "data/prepared")[1]
    for style in params.train_johnson.styles:
        net = load_johnson_stylizer(style, repo / "models/johnson")
        painting = style_image(styles, style, params.evaluate.image_size)
        pairs = own_painting_pairs(held_out_pairs(params, repo / "data/prepared"), style, painting)
        with torch.no_grad():
            outputs = [net(c[None])[0] for c, _, _ in pairs]
        checks, achieved, floor = _bar(outputs, pairs, repo)
        assert all(checks.values()), (style, checks, achieved, floor)
