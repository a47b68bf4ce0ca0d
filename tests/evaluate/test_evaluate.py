"""Evaluation metrics behave as their definitions say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from stylepipe.core.io import write_json
from stylepipe.evaluate.report import write_report
from stylepipe.evaluate.stage import (
    assemble_metrics,
    headline,
    measure_speed,
    numeric_metrics,
    palette_separation,
    style_separation,
    verdict,
)
from stylepipe.nn.functional import mean_std
from stylepipe.nn.metrics import colour_histogram_distance, colour_transfer, own_style_closest, ssim_luminance

from ..conftest import run, save_tiny_models


@pytest.mark.parametrize("palette", ["histogram", "none"])
def test_speed_times_the_engines_output_as_users_get_it(tmp_path: Path, monkeypatch, palette: str):
    """Both timed calls return what the engine gives a user for that style (the cached style with its
    palette, matched when finish.palette is histogram), not a cheaper unfinished output."""
    import stylepipe.evaluate.stage as stage
    from stylepipe.adain.engine import Finish
    from stylepipe.adain.fast import torch_engine
    from stylepipe.adain.model import load_stylizer
    from stylepipe.core.runtime import Runtime

    cpu = Runtime(torch.device("cpu"), bf16=False, channels_last=False, compile=False)
    engine = torch_engine(load_stylizer(*save_tiny_models(tmp_path, "relu3_1", 0.5)), cpu, Finish(palette))
    timed = {}

    def once(fn, repeats, device=None):
        timed[len(timed)] = fn()
        return 1.0

    monkeypatch.setattr(stage, "calls_per_second", once)
    torch.manual_seed(0)
    assert measure_speed(engine, 32, 1) == {"fps_cached_style": 1.0, "fps_encode_style": 1.0}
    torch.manual_seed(0)
    probe = torch.rand(1, 3, 32, 32)  # measure_speed's probe: content and style at once
    user = engine.stylize(probe, probe)
    torch.testing.assert_close(timed[0], user)
    torch.testing.assert_close(timed[1], user)
    unmatched = engine.with_finish(Finish("none")).stylize(probe, probe)
    assert (timed[0] - unmatched).abs().max() > 1e-3 if palette == "histogram" else torch.equal(timed[0], unmatched)


def test_identical_images_have_zero_distance_and_full_ssim():
    img = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert colour_histogram_distance(img, img) == 0.0
    assert ssim_luminance(img, img) == 1.0


def test_histogram_distance_separates_colours():
    red = torch.zeros(3, 8, 8)
    red[0] = 1.0
    blue = torch.zeros(3, 8, 8)
    blue[2] = 1.0
    assert colour_histogram_distance(red, blue) > 0.6


def test_style_separation_detects_a_collapsed_decoder():
    content_row = [torch.full((3, 8, 8), 0.5)] * 3  # every style gives the same image
    assert style_separation([content_row]) == 0.0
    varied = [[torch.full((3, 8, 8), v) for v in (0.1, 0.5, 0.9)]]
    assert style_separation(varied) > 0.5


def _solid(r: float, g: float, b: float) -> torch.Tensor:
    return torch.tensor([r, g, b]).view(3, 1, 1).expand(3, 8, 8).clone()


def test_own_style_closest_tells_kept_palettes_from_one_house_palette():
    styles = [_solid(0.9, 0.1, 0.1), _solid(0.1, 0.9, 0.1), _solid(0.1, 0.1, 0.9)]
    kept = [[s.clone() for s in styles] for _ in range(2)]  # each column in its own style's colours
    assert [v["closest_is_own"] for v in own_style_closest(kept, styles)] == [True, True, True]
    house = [[styles[1].clone() for _ in styles] for _ in range(2)]  # every style comes out green
    verdict = own_style_closest(house, styles)
    assert [v["closest_is_own"] for v in verdict] == [False, True, False]
    assert verdict[0]["own"] > verdict[0]["nearest_other"] == 0.0


def test_palette_separation_counts_the_model_and_the_floor_on_the_same_grid():
    styles = [_solid(0.9, 0.1, 0.1), _solid(0.1, 0.1, 0.9)]
    g = torch.Generator().manual_seed(2)
    pairs = [(torch.rand(3, 8, 8, generator=g), s, {}) for s in styles]
    house = [[styles[0].clone(), styles[0].clone()] for _ in pairs]  # the model paints everything red
    counts = palette_separation(pairs, house)
    assert counts["grid_styles"] == 2 and counts["own_style_closest"] == 1
    assert counts["baseline_colour_transfer.own_style_closest"] == 2  # the floor copies each flat palette exactly


def test_colour_transfer_matches_style_statistics():
    """The floor takes the painting's per-channel mean and spread and keeps the photo's layout."""
    g = torch.Generator().manual_seed(1)
    content, style = torch.rand(3, 16, 16, generator=g) * 0.5, torch.rand(3, 16, 16, generator=g) * 0.3 + 0.4
    out = colour_transfer(content, style)  # no value reaches 0 or 1 here: nothing is clamped
    o_mean, o_std = mean_std(out[None])
    s_mean, s_std = mean_std(style[None])
    torch.testing.assert_close(o_mean, s_mean, atol=1e-5, rtol=0)
    torch.testing.assert_close(o_std, s_std, atol=1e-4, rtol=0)
    assert not torch.allclose(mean_std(content[None])[1], s_std, atol=0.01)  # the spread really had to change
    for channel in range(3):  # a per-channel affine map of the photo: perfectly correlated with it
        pair = torch.stack([out[channel].flatten(), content[channel].flatten()])
        assert torch.corrcoef(pair)[0, 1] > 0.9999


def _sweep(shift: float) -> list[dict[str, float]]:
    return [{"alpha": a, "content_loss": 1.0 - a + shift, "style_loss": 2.0 * a, "gram_loss": 3.0 * a,
             "ssim_content": 0.9 - 0.3 * a - shift, "hist_distance_style": 0.5 - 0.2 * a} for a in (0.25, 0.5, 1.0)]


def _metrics(shift: float) -> dict:
    floor = {"content_loss": 5.0, "style_loss": 1.0}
    return assemble_metrics(_sweep(shift), floor, {}, {"fps_cached_style": 10.0}, 0.3, 2, 64, "cpu")


def test_metrics_hold_every_alpha_and_say_what_was_skipped():
    metrics = _metrics(0.0)
    assert metrics["alpha_sweep"]["alpha_025"]["ssim_content"] == 0.9 - 0.3 * 0.25
    assert metrics["gram_loss"] == 3.0  # top level: alpha 1
    assert "offline" in metrics["skipped"]["artfid"] and "lpips" in metrics["skipped"]
    flat = numeric_metrics(metrics)
    assert flat["alpha_sweep.alpha_050.hist_distance_style"] == 0.4
    assert "skipped.artfid" not in flat and "device" not in flat


def test_verdict_states_better_or_worse_by_how_much_against_each_reference():
    metrics = {"style_loss": 50.0, "ssim_content": 0.4, "hist_distance_style": 0.6,
               "baseline_colour_transfer.style_loss": 100.0, "baseline_colour_transfer.ssim_content": 0.8,
               "baseline_colour_transfer.hist_distance_style": 0.5, "reference_gatys.style_loss": 40.0}
    rows = {row["metric"]: row for row in verdict(metrics)}
    assert rows["style_loss"]["vs_floor"] == "better by 50%"  # lower is better
    assert rows["style_loss"]["vs_gatys"] == "worse by 25%"
    assert rows["ssim_content"]["vs_floor"] == "worse by 50%"  # higher is better
    assert rows["hist_distance_style"]["vs_floor"] == "worse by 20%"
    assert "vs_gatys" not in rows["ssim_content"]  # not computed: not invented
    small = headline(metrics)
    assert small["style/floor"] == 0.5 and small["ssim/floor"] == 0.5 and small["ssim"] == 0.4
    assert small["style/gatys"] == 1.25 and small["hist/floor"] == 1.2 and len(small) == 7


def test_report_leads_with_the_verdict_then_the_grid(tmp_path: Path):
    png = tmp_path / "grid.png"
    Image.new("RGB", (8, 8), "red").save(png)
    metrics = _metrics(0.0)
    rows = [{"metric": "style_loss", "model": 1.0, "floor": 2.0, "vs_floor": "better by 50%"}]
    text = write_report(tmp_path / "r.html", metrics, _sweep(0.0), {"Grid": png}, metrics["skipped"],
                        verdict_rows=rows).read_text()
    assert text.index("better by 50%") < text.index("<h2>Grid") < text.index("Alpha sweep") < text.index("Every metric")


def test_html_report_is_self_contained(tmp_path: Path):
    png = tmp_path / "grid.png"
    Image.new("RGB", (8, 8), "red").save(png)
    metrics = _metrics(0.0)
    report = write_report(tmp_path / "report.html", metrics, _sweep(0.0), {"Grid": png, "Absent": tmp_path / "x.png"},
                          metrics["skipped"])
    text = report.read_text()
    assert text.count("data:image/png;base64,") == 2  # the grid and the alpha-sweep curves
    assert "alpha_sweep.alpha_100.gram_loss" in text and "not computed" in text
    assert "http://" not in text and "https://" not in text and "<script" not in text


@pytest.mark.integration
def test_dvc_metrics_diff_shows_what_changed_between_experiments(tmp_path: Path):
    run(["git", "init", "-q"], tmp_path)
    run(["dvc", "init", "-q"], tmp_path)
    (tmp_path / "dvc.yaml").write_text("metrics:\n  - metrics.json\n")
    for shift in (0.0, 0.1):
        write_json(tmp_path / "metrics.json", _metrics(shift))
        run(["git", "add", "-A"], tmp_path)
        run(["git", "commit", "-qm", f"shift {shift}"], tmp_path)
    diff = json.loads(run(["dvc", "metrics", "diff", "HEAD~1", "--json"], tmp_path).stdout)["metrics.json"]
    changed = diff["alpha_sweep.alpha_025.ssim_content"]
    assert changed["old"] == pytest.approx(0.825) and changed["new"] == pytest.approx(0.725)
    assert diff["content_loss"]["diff"] == pytest.approx(0.1)
    assert "style_loss" not in diff  # unchanged values are not listed
