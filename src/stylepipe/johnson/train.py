"""The train_johnson stage: one TransformerNet per style, trained with the shared loop (train/loop.py).

Loss (Johnson et al. 2016, the PyTorch example's reductions):
    content_weight * MSE(F_c(net(x)), F_c(x))                         F_c = relu2_2 by default
  + style_weight   * sum_l MSE(gram(F_l(net(x))), gram(F_l(style)))   relu1_2, relu2_2, relu3_3, relu4_3
  + tv_weight      * total_variation(net(x))                          (optional)
  + colour_weight  * MSE of RGB mean/std, net(x) against the style     (optional, `nn.losses.colour_loss`)
  + stability_weight * shift consistency of net(x)                    (optional, `nn.losses.shift_consistency_loss`)
with Grams normalised by C*H*W (`nn.functional.gram`) and the style's Grams computed once. Features come from
the frozen encoder of the `weights` stage, cut after the deepest layer, through the hook-based
`encoders.FeatureExtractor`.

`normalise_losses`: each term is divided by its value measured before training (untrained network, the
fixed preview batch; deterministic from the seed, so a resumed run measures the same), so the weights
are "human-sized" whatever the encoder's feature scale: content_weight 1, style_weight 5 means style counts five times
as much as content did at the start. The measured values go into summary.json and MLflow.

The (content, style) batches come from the same chunk loader as AdaIN (resumable, seeded per chunk);
Johnson's target is the one painting of the style, so the loader's style crops are not used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from stylepipe.core import paths
from stylepipe.core.config import Params, TrainJohnson
from stylepipe.core.errors import InputError
from stylepipe.core.io import write_json
from stylepipe.core.runtime import Runtime, resolve_runtime, seed_everything
from stylepipe.core.tracking import Tracker, stage_run
from stylepipe.core.viz import save_grid
from stylepipe.johnson.model import TransformerNet, model_path, save_johnson
from stylepipe.nn.encoders import FeatureExtractor, deepest_layer, load_encoder
from stylepipe.nn.losses import (
    colour_loss,
    content_loss,
    gram_target_loss,
    shift_consistency_loss,
    target_grams,
    total_variation,
)
from stylepipe.train.checkpoint import params_hash
from stylepipe.train.loop import LoopResult, fit, write_history
from stylepipe.train.plumbing import chunk_loader, inputs_digest, open_stores, preview_pairs, style_image

STAGE = "train_johnson"
TERMS = ("content", "style", "tv", "colour", "stability")


class JohnsonError(InputError):
    """A style that is not listed in params or not present in the prepared data."""


@dataclass
class JohnsonTask:
    """TrainTask for the shared loop: the net's output against the content's and the style's features."""

    net: TransformerNet
    extract: FeatureExtractor
    style_grams: dict[str, torch.Tensor]
    style_rgb: torch.Tensor
    content_layer: str
    style_layers: tuple[str, ...]
    weights: dict[str, float]  # per term of TERMS
    stability_noise: float = 0.0
    scales: dict[str, float] = field(default_factory=lambda: dict.fromkeys(TERMS, 1.0))

    def trainable(self) -> nn.Module:
        return self.net

    def raw_terms(self, content: torch.Tensor) -> dict[str, torch.Tensor]:
        """Unweighted content, style and the optional terms of the net's output for a content batch."""
        with torch.no_grad():
            target = self.extract(content)[self.content_layer]
        output = self.net(content)
        feats = {k: v.float() for k, v in self.extract(output).items()}
        terms = {
            "content": content_loss(feats[self.content_layer], target.float()),
            "style": gram_target_loss(feats, self.style_grams, self.style_layers),
        }
        if self.weights["tv"]:
            terms["tv"] = total_variation(output.float())
        if self.weights["colour"]:
            terms["colour"] = colour_loss(output.float(), self.style_rgb.expand(len(output), -1, -1, -1))
        if self.weights["stability"]:
            terms["stability"] = shift_consistency_loss(self.net, content, output, self.stability_noise)
        return terms

    def losses(self, content: torch.Tensor, style: torch.Tensor) -> dict[str, torch.Tensor]:
        terms = self.raw_terms(content)
        total = sum(self.weights[k] * v / self.scales[k] for k, v in terms.items())
        return {"loss": total, **terms}

    @torch.no_grad()
    def measure_scales(self, content: torch.Tensor) -> dict[str, float]:
        """Set `scales` to each term's value on `content` now (before training); returns them."""
        measured = {k: float(v) for k, v in self.raw_terms(content).items()}
        zero = [k for k, v in measured.items() if not v > 0]
        if zero:
            raise JohnsonError(f"cannot normalise the losses: initial {zero[0]} term is {measured[zero[0]]}")
        self.scales = {**self.scales, **measured}
        return measured


def build_task(
    net: TransformerNet, encoder: nn.Module, style: torch.Tensor, cfg: TrainJohnson
) -> JohnsonTask:
    """The task for `style` [1, 3, H, W]; hooks stay on `encoder` until `task.extract.close()`."""
    extract = FeatureExtractor(encoder, [cfg.content_layer, *cfg.style_layers])
    layers = tuple(cfg.style_layers)
    weights = {"content": cfg.content_weight, "style": cfg.style_weight, "tv": cfg.tv_weight,
               "colour": cfg.colour_weight, "stability": cfg.stability_weight}
    grams = target_grams(extract, style, layers)
    return JohnsonTask(net, extract, grams, style.float(), cfg.content_layer, layers, weights, cfg.stability_noise)


def check_style(params: Params, style: str, labels: list[str]) -> None:
    if style not in params.train_johnson.styles:
        raise JohnsonError(
            f"style {style!r} is not listed in params.yaml train_johnson.styles {params.train_johnson.styles}"
        )
    if style not in labels:
        raise JohnsonError(f"style {style!r} is not in the prepared paintings (styles present: {labels})")


def run_train_johnson(
    params: Params, style: str, out_root: Path = paths.JOHNSON_DIR, reports: Path = paths.REPORTS / STAGE
) -> dict:
    """Train models/johnson/<style>/transformer_net.pt; losses in reports/train_johnson/<style>/losses.csv."""
    cfg = params.train_johnson
    stores = open_stores()
    check_style(params, style, stores[1].labels)
    seed_everything(params.common.seed)
    rt = resolve_runtime(params.common)
    encoder = rt.prepare(load_encoder(paths.ENCODER, last=deepest_layer([cfg.content_layer, *cfg.style_layers])))
    net = rt.prepare(TransformerNet(cfg.pad, cfg.width))
    style_img = style_image(stores[1], style, cfg.style_size)[None]
    p_content, _ = preview_pairs(stores, cfg.crop, params.common.seed)
    task = build_task(net, encoder, rt.to_device(style_img), cfg)
    out_dir, reports = out_root / style, reports / style
    tuned = {k: v for k, v in cfg.model_dump(mode="json").items() if k != "styles"}  # adding a style re-uses
    phash = params_hash(STAGE, style, tuned, params.common.seed, inputs_digest(paths.ENCODER, paths.PREPARED))
    try:
        scales = task.measure_scales(rt.to_device(p_content)) if cfg.normalise_losses else {}
        with stage_run(params, f"{STAGE}@{style}", ["common", STAGE]) as tracker:
            result = _fit(task, cfg, rt, stores, params.common.seed, phash, out_dir, style_img, p_content, tracker)
            save_johnson(net.to("cpu", memory_format=torch.contiguous_format), model_path(style, out_root),
                         style, encoder.spec.name)
            write_history(reports / "losses.csv", result.history)
            trained = result.steps - result.resumed_from
            summary = {
                "stage": STAGE, "style": style, "steps": result.steps, "resumed_from": result.resumed_from,
                "seconds": round(result.seconds, 2),
                "iterations_per_s": round(trained / result.seconds, 3) if trained and result.seconds else None,
                "device": str(rt.device), "encoder": encoder.spec.name, "pad": cfg.pad,
                "loss_scales": scales, "final": result.final, "mlflow_run_id": tracker.run_id,
            }
            write_json(out_dir / "summary.json", summary)
            tracker.metrics({f"loss_scale_{k}": v for k, v in scales.items()})
            tracker.metrics({f"final_{k}": v for k, v in result.final.items() if k not in ("step", "lr")})
            tracker.artifact(reports / "losses.csv")
            tracker.artifact(out_dir / "summary.json")
    finally:
        task.extract.close()
    return summary


def _fit(
    task: JohnsonTask, cfg: TrainJohnson, rt: Runtime, stores: tuple, seed: int, phash: str, out_dir: Path,
    style_img: torch.Tensor, p_content: torch.Tensor, tracker: Tracker,
) -> LoopResult:
    """The shared loop with MLflow logging and preview grids (content | output, style in the corner)."""

    def on_log(step: int, row: dict[str, float]) -> None:
        tracker.metrics({k: v for k, v in row.items() if k != "step"}, step=step)

    def on_preview(step: int) -> None:
        path = out_dir / "previews" / f"step_{step:06d}.png"
        render_preview(task.net, rt, p_content, style_img, path)
        tracker.artifact(path, "previews")

    batches = chunk_loader(stores, cfg, seed, rt.device)
    ckpt_dir = Path(".cache/checkpoints") / STAGE / out_dir.name
    return fit(task, cfg, rt, batches, ckpt_dir, phash, on_log, on_preview, label=f"{STAGE}@{out_dir.name}")


@torch.no_grad()
def render_preview(net: TransformerNet, rt: Runtime, content: torch.Tensor, style: torch.Tensor, path: Path) -> None:
    """Rows: the style image; the preview contents; their stylisations."""
    was_training = net.training
    net.eval()
    with rt.autocast():
        out = net(rt.to_device(content)).float().clamp(0, 1).cpu()
    net.train(was_training)
    size = content.shape[-1]
    thumb = nn.functional.interpolate(style, size=(size, size), mode="area")[0]
    save_grid([thumb[None], content, out], path)
