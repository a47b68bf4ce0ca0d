"""The shared training loop: loss goes down, a killed run resumes to the same curve, NaN stops cleanly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stylepipe.adain.model import Decoder
from stylepipe.adain.train import AdainTask, ReconTask
from stylepipe.core import code
from stylepipe.core.config import Common, TrainAdain
from stylepipe.core.runtime import resolve_runtime, seed_everything
from stylepipe.nn.encoders import build_encoder
from stylepipe.nn.functional import adain, mean_std, normalise
from stylepipe.nn.weights import wheel_state_dict
from stylepipe.train.checkpoint import (
    KEEP,
    CheckpointSkipped,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from stylepipe.train.loop import NonFiniteLossError, fit

RT = resolve_runtime(Common(device="cpu"))


def _cfg(**over) -> TrainAdain:
    base = dict(iterations=6, batch_size=2, crop=16, lr=1e-3, lr_decay=1e-3, checkpoint_every=2, log_every=1,
                image_every=100, content_weight=1.0, style_weight=1.0)
    return TrainAdain(**{**base, **over})


def _batches(chunk: int):
    """Deterministic synthetic data per chunk, like RandomPairs re-seeded per epoch."""
    g = torch.Generator().manual_seed(1000 + chunk)
    while True:
        yield torch.rand(2, 3, 16, 16, generator=g), torch.rand(2, 3, 16, 16, generator=g)


LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")


def _adain_task(decoder_seed: int = 0, layer: str = "relu4_1", width: float = 1.0) -> AdainTask:
    """The frozen encoder is the same in every run (in the pipeline it comes from a file)."""
    seed_everything(0)
    enc = build_encoder("vgg16_hed", layer)
    seed_everything(decoder_seed)
    return AdainTask(enc, Decoder("vgg16_hed", layer, width), 1.0, 1.0, LAYERS[: LAYERS.index(layer) + 1])


class _Kill(Exception):
    pass


def test_recon_loss_decreases(tmp_path: Path):
    seed_everything(0)
    encoder = build_encoder("vgg16_hed", "relu4_3")  # the file holds all of block 4
    encoder.load_state_dict(wheel_state_dict("vgg16_hed"))  # the real offline weights
    task = ReconTask(encoder, Decoder("vgg16_hed"))
    g = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.interpolate(torch.rand(4, 3, 4, 4, generator=g), size=32, mode="bilinear")
    fixed = (smooth[:2], smooth[2:])  # low-frequency colour images: learnable in a few steps
    cfg = _cfg(iterations=60, checkpoint_every=60, lr=2e-4)
    result = fit(task, cfg, RT, lambda c: iter(lambda: fixed, None), tmp_path / "ckpt", "h")
    losses = [row["loss"] for row in result.history]
    assert min(losses[-5:]) < losses[0] * 0.5, losses


@pytest.mark.parametrize(("schedule", "layer", "width"), [
    ("inverse", "relu4_1", 1.0), ("onecycle", "relu4_1", 1.0), ("sgdr", "relu4_1", 1.0), ("inverse", "relu3_1", 0.5),
])
def test_resume_after_kill_gives_identical_curve(tmp_path: Path, schedule: str, layer: str, width: float):
    cfg = _cfg(lr_schedule=schedule, lr_restart_every=4)
    uninterrupted = fit(_adain_task(layer=layer, width=width), cfg, RT, _batches, tmp_path / "a", "hash")

    def die_after_step_5(step, row):
        if step == 5:
            raise _Kill

    with pytest.raises(_Kill):
        fit(_adain_task(layer=layer, width=width), cfg, RT, _batches, tmp_path / "b", "hash", on_log=die_after_step_5)
    resumed = fit(_adain_task(decoder_seed=123, layer=layer, width=width), cfg, RT, _batches, tmp_path / "b", "hash")
    assert resumed.resumed_from == 4
    assert len(uninterrupted.history) == len(resumed.history) == 6
    for key in ("lr", "loss"):
        a = [r[key] for r in uninterrupted.history]
        assert a == pytest.approx([r[key] for r in resumed.history], rel=1e-5), key


def test_checkpoint_from_other_params_is_ignored(tmp_path: Path):
    cfg = _cfg(iterations=2)
    fit(_adain_task(), cfg, RT, _batches, tmp_path / "c", "old-hash")
    result = fit(_adain_task(), cfg, RT, _batches, tmp_path / "c", "new-hash")
    assert result.resumed_from == 0


def _assert_only_checkpoint_is_finite_at(ckpt_dir: Path, step: int) -> None:
    [path] = list_checkpoints(ckpt_dir)
    saved = torch.load(path, weights_only=True)
    assert saved["step"] == step
    assert all(torch.isfinite(v).all() for v in saved["model"].values())


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path: Path):
    cfg = _cfg(iterations=6)

    def poisoned(chunk: int):
        for content, style in _batches(chunk):
            if chunk >= 1:
                content = content * float("nan")
            yield content, style

    with pytest.raises(NonFiniteLossError, match="loss became nan by step 3"):
        fit(_adain_task(), cfg, RT, poisoned, tmp_path / "d", "hash")
    _assert_only_checkpoint_is_finite_at(tmp_path / "d", step=2)


def test_divergence_between_log_steps_is_never_checkpointed(tmp_path: Path):
    """Logged every 6 steps, checkpointed every 2: the loss turns NaN at step 3, before any log step."""
    cfg = _cfg(iterations=6, log_every=6)

    def poisoned(chunk: int):
        for content, style in _batches(chunk):
            yield (content * float("nan") if chunk == 1 else content), style

    with pytest.raises(NonFiniteLossError, match="between steps 3 and 4"):
        fit(_adain_task(), cfg, RT, poisoned, tmp_path / "d", "hash")
    _assert_only_checkpoint_is_finite_at(tmp_path / "d", step=2)


def test_checkpoint_holds_only_tensors_and_plain_values(tmp_path: Path):
    fit(_adain_task(), _cfg(iterations=2, lr_schedule="onecycle"), RT, _batches, tmp_path / "c", "hash")
    [path] = list_checkpoints(tmp_path / "c")
    payload = torch.load(path, weights_only=True)  # an unpickling load would be needed for numpy arrays
    assert payload["step"] == 2 and path.stem == payload["key"]


def test_code_change_starts_over_and_reports_the_skipped_checkpoint(tmp_path: Path, monkeypatch):
    cfg = _cfg(iterations=2)
    fit(_adain_task(), cfg, RT, _batches, tmp_path / "c", "hash")
    assert fit(_adain_task(), cfg, RT, _batches, tmp_path / "c", "hash").resumed_from == 2
    real_digest = code.file_digest

    def edited_losses(path, *args):  # losses.py now reads differently: an edit of the AdAIN loss
        return "edited" if Path(path).name == "losses.py" else real_digest(path, *args)

    monkeypatch.setattr(code, "file_digest", edited_losses)
    with pytest.warns(CheckpointSkipped, match="starting from step 0"):
        result = fit(_adain_task(), cfg, RT, _batches, tmp_path / "c", "hash")
    assert result.resumed_from == 0
    assert len(list_checkpoints(tmp_path / "c")) == 2  # the other code's checkpoint is kept, not used


def test_checkpoints_are_kept_per_params(tmp_path: Path):
    """Killed at step 4 with params A (last checkpoint: step 2), a full run with params B, back to A:
    A resumes at step 2."""
    cfg = _cfg()

    def die_after_step_4(step, row):
        if step == 4:
            raise _Kill

    with pytest.raises(_Kill):
        fit(_adain_task(), cfg, RT, _batches, tmp_path / "c", "params-A", on_log=die_after_step_4)
    fit(_adain_task(), cfg, RT, _batches, tmp_path / "c", "params-B")
    assert fit(_adain_task(), cfg, RT, _batches, tmp_path / "c", "params-A").resumed_from == 2


def test_checkpoints_are_bounded_and_pruned(tmp_path: Path):
    folder = tmp_path / "ckpt" / "train_adain"
    for i in range(KEEP + 2):
        save_checkpoint(folder, f"key{i}", {"step": i})
    assert [p.stem for p in list_checkpoints(folder)] == [f"key{i}" for i in range(KEEP + 1, 1, -1)]
    save_checkpoint(tmp_path / "ckpt" / "train_johnson" / "Cubism", "k", {"step": 1})
    removed = prune_checkpoints(tmp_path / "ckpt", keep=1)
    assert len(removed) == KEEP - 1
    assert [p.stem for p in list_checkpoints(folder)] == [f"key{KEEP + 1}"]
    assert load_checkpoint(folder, f"key{KEEP + 1}")["step"] == KEEP + 1


def test_style_loss_gradient_is_finite_on_constant_channels():
    from stylepipe.nn.losses import style_loss

    out = torch.zeros(1, 4, 4, 4, requires_grad=True)  # a dead-ReLU map: variance exactly 0
    style = {"relu1_1": torch.rand(1, 4, 4, 4)}
    style_loss({"relu1_1": out}, style, ["relu1_1"]).backward()
    assert torch.isfinite(out.grad).all()


SCHEDULE_KNOBS = dict(lr=1.0, lr_decay=0.1, lr_step_size=5, lr_gamma=0.5, lr_min=0.1, lr_power=1.0,
                      lr_restart_every=4, lr_warmup_fraction=0.3)


def _lrs(schedule: str, iterations: int = 20) -> list[float]:
    from stylepipe.train.schedules import build_scheduler

    cfg = _cfg(iterations=iterations, lr_schedule=schedule, **SCHEDULE_KNOBS)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.lr)
    sched = build_scheduler(opt, cfg)
    lrs = []
    for _ in range(iterations):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_schedules_follow_their_definitions():
    assert _lrs("constant") == [1.0] * 20
    assert _lrs("inverse")[10] == pytest.approx(1 / (1 + 0.1 * 10))
    step = _lrs("step")
    assert step[4] == 1.0 and step[5] == pytest.approx(0.5) and step[10] == pytest.approx(0.25)
    assert _lrs("exponential")[3] == pytest.approx(0.5**3)
    cosine = _lrs("cosine", 21)
    assert cosine[0] == 1.0 and cosine[-1] == pytest.approx(0.1, abs=0.01)
    poly = _lrs("polynomial")
    assert poly[10] == pytest.approx(0.5) and poly[-1] == pytest.approx(0.05)
    sgdr = _lrs("sgdr")
    assert sgdr[3] < 0.5 and sgdr[4] == pytest.approx(1.0) and sgdr[12] == pytest.approx(1.0)  # periods 4, 8
    onecycle = _lrs("onecycle")
    peak = max(range(20), key=onecycle.__getitem__)
    assert onecycle[peak] == pytest.approx(1.0, rel=0.05) and 4 <= peak <= 7
    assert onecycle[0] < 0.1 and onecycle[-1] < 0.01


def test_style_loss_options():
    from stylepipe.nn.losses import style_loss

    g = torch.Generator().manual_seed(0)
    out = {k: torch.rand(2, 8, 4, 4, generator=g) for k in ("a", "b")}
    sty = {k: torch.rand(2, 8, 4, 4, generator=g) * 3 for k in ("a", "b")}
    mean_a = style_loss(out, sty, ["a"])
    assert style_loss(out, sty, ["a"], reduction="sum") == pytest.approx(float(mean_a) * 8, rel=1e-5)
    assert style_loss(out, sty, ["a"], sqrt=True) == pytest.approx(float(mean_a + 1e-5) ** 0.5, rel=1e-5)
    assert style_loss(out, sty, ["a", "b"], weights=[2.0, 0.0]) == pytest.approx(2 * float(mean_a), rel=1e-5)


def test_adain_task_adds_total_variation_when_weighted():
    task = _adain_task()
    task.tv_weight = 0.5
    content, style = next(_batches(0))
    with torch.no_grad():
        terms = task.losses(content, style)
    assert set(terms) == {"loss", "content", "style", "tv"}
    expected = terms["content"] + task.style_weight * terms["style"] + 0.5 * terms["tv"]
    assert terms["loss"] == pytest.approx(float(expected), rel=1e-5)


def test_adain_task_adds_colour_and_structure_terms_when_weighted():
    task = _adain_task()
    task.colour_weight, task.structure_weight, task.structure_layers = 100.0, 2.0, ("relu1_1", "relu2_1")
    content, style = next(_batches(0))
    with torch.no_grad():
        terms = task.losses(content, style)
    assert set(terms) == {"loss", "content", "style", "colour", "structure"}
    expected = terms["content"] + terms["style"] + 100.0 * terms["colour"] + 2.0 * terms["structure"]
    assert terms["loss"] == pytest.approx(float(expected), rel=1e-5)


def test_colour_loss_is_zero_only_for_the_same_palette():
    from stylepipe.nn.losses import colour_loss

    g = torch.Generator().manual_seed(0)
    style = torch.rand(1, 3, 16, 16, generator=g)
    shuffled = style.flatten(2)[..., torch.randperm(256, generator=g)].view_as(style)  # same pixels, new layout
    assert float(colour_loss(shuffled, style)) < 1e-10
    assert float(colour_loss(style * 0.5, style)) > 1e-3


def test_histogram_loss_tells_apart_palettes_that_share_mean_and_std():
    from stylepipe.nn.losses import colour_loss, histogram_loss

    g = torch.Generator().manual_seed(0)
    two_colours = (torch.rand(1, 3, 32, 32, generator=g) > 0.5).float()  # a peaky palette: 0 or 1
    noise = torch.randn(1, 3, 32, 32, generator=g)
    gaussian = normalise(noise, *mean_std(noise)) * mean_std(two_colours)[1] + mean_std(two_colours)[0]
    assert float(colour_loss(gaussian, two_colours)) < 1e-8  # same per-channel mean and std
    assert float(histogram_loss(gaussian, two_colours)) > 0.02
    shuffled = two_colours.flatten(2)[..., torch.randperm(1024, generator=g)].view_as(two_colours)
    assert float(histogram_loss(shuffled, two_colours)) == 0.0


def test_histogram_loss_resamples_a_style_of_another_size_and_pulls_each_pixel_by_rank():
    from stylepipe.nn.losses import histogram_loss

    style = torch.linspace(0, 1, 64).view(1, 1, 8, 8).repeat(2, 3, 1, 1)  # a uniform ramp, 64 values
    output = torch.full((2, 3, 4, 4), 0.5, requires_grad=True)
    loss = histogram_loss(output, style)
    assert float(loss) == pytest.approx(float(((torch.linspace(0, 1, 64)[torch.linspace(0, 63, 16).round().long()]
                                                - 0.5) ** 2).mean()), rel=1e-5)
    loss.backward()
    assert output.grad.abs().sum() > 0
    matched = torch.linspace(0, 1, 64)[torch.linspace(0, 63, 16).round().long()].view(1, 1, 4, 4).repeat(2, 3, 1, 1)
    assert float(histogram_loss(matched, style)) < 1e-12


def test_adain_task_uses_the_configured_colour_term():
    from stylepipe.nn.losses import colour_loss, histogram_loss

    task = _adain_task()
    task.colour_weight = 100.0
    content, style = next(_batches(0))
    for kind, fn in (("moments", colour_loss), ("histogram", histogram_loss)):
        task.colour_term = kind
        with torch.no_grad():
            terms = task.losses(content, style)
            layer = task.encoder.last
            target = adain(task.encoder(content)[layer], *mean_std(task.encoder(style)[layer]))
            expected = fn(task.decoder(target).float(), style.float())
        assert float(terms["colour"]) == pytest.approx(float(expected), rel=1e-5), kind


def test_structure_loss_ignores_statistics_but_not_layout():
    from stylepipe.nn.losses import structure_loss

    g = torch.Generator().manual_seed(0)
    content = {"a": torch.rand(2, 8, 6, 6, generator=g)}
    restyled = {"a": content["a"] * 5 + 3}  # per-channel affine change: what AdaIN does to statistics
    moved = {"a": content["a"].flip(-1)}  # the same statistics, another layout
    assert float(structure_loss(restyled, content, ["a"])) < 1e-6
    assert float(structure_loss(moved, content, ["a"])) > 0.1


def test_colour_jitter_makes_new_palettes_reproducibly_and_keeps_grey():
    from stylepipe.data.augment import jitter_colours

    images = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    first = jitter_colours(images, 1.0, torch.Generator().manual_seed(5))
    again = jitter_colours(images, 1.0, torch.Generator().manual_seed(5))
    assert torch.equal(first, again) and first.min() >= 0 and first.max() <= 1
    assert (first - images).abs().mean() > 0.02
    assert torch.equal(jitter_colours(images, 0.0, torch.Generator()), images)
    grey = torch.full((2, 3, 4, 4), 0.4)
    assert torch.allclose(jitter_colours(grey, 1.0, torch.Generator().manual_seed(1)), grey, atol=1e-5)


def test_new_decoder_calibrates_its_input_to_unit_rms():
    decoder = Decoder("vgg16_hed", "relu3_1", 0.5)
    feats = torch.rand(2, 256, 4, 4) * 30
    decoder.calibrate(feats)
    assert float((feats * decoder.input_scale).pow(2).mean().sqrt()) == pytest.approx(1.0, rel=1e-4)
    assert "input_scale" in decoder.state_dict()  # saved with the decoder, so inference scales the same


@pytest.mark.parametrize(("layer", "width"), [("relu4_1", 0.5), ("relu3_1", 1.0)])
def test_train_adain_refuses_a_recon_decoder_of_another_layer_or_width(tmp_path: Path, layer: str, width: float):
    from stylepipe.adain.model import save_decoder
    from stylepipe.adain.train import initial_decoder
    from stylepipe.core.config import Adain
    from stylepipe.nn.encoders import WeightsError

    save_decoder(Decoder("vgg16_hed", "relu3_1", 0.5), tmp_path / "recon.pt")
    assert initial_decoder("vgg16_hed", Adain(layer="relu3_1", decoder_width=0.5), tmp_path / "recon.pt").width == 0.5
    expected = (rf"recon\.pt: holds a decoder for encoder 'vgg16_hed' at relu3_1 of width 0\.5, "
                rf"but 'vgg16_hed' at {layer} of width {width:g} is configured")
    with pytest.raises(WeightsError, match=expected):
        initial_decoder("vgg16_hed", Adain(layer=layer, decoder_width=width), tmp_path / "recon.pt")


def test_checkpoints_command_lists_and_prunes(tmp_path: Path, monkeypatch, capsys):
    from stylepipe.cli import main

    monkeypatch.chdir(tmp_path)
    folder = Path(".cache/checkpoints/train_recon")
    for i in range(3):
        save_checkpoint(folder, f"key{i}", {"step": i})
    assert main(["checkpoints", "list"]) == 0
    assert '"key2.pt",\n    "key1.pt",\n    "key0.pt"' in capsys.readouterr().out
    assert main(["checkpoints", "prune", "--keep", "1"]) == 0
    assert [p.name for p in list_checkpoints(folder)] == ["key2.pt"]
    assert main(["checkpoints", "prune", "--keep", "-1"]) == 1
    assert "checkpoints prune --keep: the number of checkpoints to keep: expected 0 or more, got -1" in (
        capsys.readouterr().err)


class _RunsCode:
    """A pickle payload that would create a file when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path: Path):
    from stylepipe.train.checkpoint import CheckpointError, checkpoint_path

    marker = tmp_path / "code-ran"
    path = checkpoint_path(tmp_path / "c", "key")
    path.parent.mkdir()
    torch.save({"key": "key", "step": 1, "payload": _RunsCode(marker)}, path)
    with pytest.raises(CheckpointError, match=r"(?s)not a readable training checkpoint.*delete it to start over"):
        load_checkpoint(tmp_path / "c", "key")
    assert not marker.exists()
