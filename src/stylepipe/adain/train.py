"""The train_recon and train_adain stages: tasks for the shared loop, data wiring, outputs, MLflow.

With `adain.init` set, train_recon imports the published decoder instead of training one, and
train_adain fine-tunes it for `adain.init.steps` iterations (0: passes it through unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Self

import torch
from torch import nn

from stylepipe.adain.model import (
    AdaINStylizer,
    Decoder,
    check_pair,
    expect_decoder,
    load_decoder,
    save_decoder,
    style_stats_of_images,
)
from stylepipe.adain.published import published_decoder
from stylepipe.core import paths
from stylepipe.core.config import Adain, Params, TrainAdain, TrainBase
from stylepipe.core.io import atomic_dir, atomic_path, file_digest, write_json
from stylepipe.core.runtime import Runtime, resolve_runtime, seed_everything
from stylepipe.core.tracking import stage_run
from stylepipe.core.viz import save_grid
from stylepipe.data.shards import ShardStore
from stylepipe.nn.encoders import VGGEncoder, load_encoder
from stylepipe.nn.functional import adain, mean_std
from stylepipe.nn.losses import (
    COLOUR_TERMS,
    content_loss,
    shift_consistency_loss,
    structure_loss,
    style_loss,
    total_variation,
)
from stylepipe.nn.published import fetch
from stylepipe.nn.statistics import StyleBank
from stylepipe.train.checkpoint import params_hash
from stylepipe.train.distributed import (
    DistEnv,
    env_from_torchrun,
    init_distributed,
    shutdown_distributed,
)
from stylepipe.train.loop import fit, write_history
from stylepipe.train.plumbing import chunk_loader, inputs_digest, open_stores, preview_pairs, style_image


@dataclass
class ReconTask:
    """Pixel reconstruction through the frozen encoder: decoder(encoder(x)) ~ x."""

    encoder: VGGEncoder
    decoder: Decoder

    def trainable(self) -> nn.Module:
        return self.decoder

    def with_module(self, module: nn.Module) -> Self:
        return replace(self, decoder=module)

    def losses(self, content: torch.Tensor, style: torch.Tensor) -> dict[str, torch.Tensor]:
        images = torch.cat([content, style])
        with torch.no_grad():
            feat = self.encoder.encode(images)
        recon = self.decoder(feat)
        return {"loss": nn.functional.mse_loss(recon.float(), images.float())}


@dataclass
class AdainTask:
    """Huang & Belongie: content loss at the AdaIN layer (the encoder's last) against the AdaIN target,
    mean/std style loss at `style_layers`."""

    encoder: VGGEncoder
    decoder: Decoder
    content_weight: float
    style_weight: float
    style_layers: tuple[str, ...]
    style_reduction: str = "mean"
    style_sqrt: bool = False
    style_layer_weights: tuple[float, ...] | None = None
    tv_weight: float = 0.0
    colour_weight: float = 0.0
    colour_term: str = "moments"
    structure_weight: float = 0.0
    structure_layers: tuple[str, ...] = ()
    stability_weight: float = 0.0
    stability_noise: float = 0.0

    @classmethod
    def from_params(cls, encoder: VGGEncoder, decoder: Decoder, cfg: TrainAdain) -> AdainTask:
        weights = tuple(cfg.style_layer_weights) if cfg.style_layer_weights is not None else None
        return cls(encoder, decoder, cfg.content_weight, cfg.style_weight, tuple(cfg.style_layers),
                   cfg.style_reduction, cfg.style_sqrt, weights, cfg.tv_weight, cfg.colour_weight,
                   cfg.colour_term, cfg.structure_weight, tuple(cfg.structure_layers), cfg.stability_weight,
                   cfg.stability_noise)

    def trainable(self) -> nn.Module:
        return self.decoder

    def with_module(self, module: nn.Module) -> Self:
        return replace(self, decoder=module)

    def losses(self, content: torch.Tensor, style: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():  # content and style through the frozen encoder in one batched pass
            both = self.encoder(torch.cat([content, style]))
            n = content.shape[0]
            c_feats = {k: v[:n] for k, v in both.items()}
            s_feats = {k: v[n:] for k, v in both.items()}
            layer = self.encoder.last
            s_stats = mean_std(s_feats[layer])
            target = adain(both[layer][:n], *s_stats)
        output = self.decoder(target)
        out_feats = self.encoder(output)
        loss_c = content_loss(out_feats[layer].float(), target.float())
        loss_s = style_loss(
            {k: v.float() for k, v in out_feats.items()}, {k: v.float() for k, v in s_feats.items()},
            self.style_layers, self.style_reduction, self.style_sqrt, self.style_layer_weights,
        )
        total = self.content_weight * loss_c + self.style_weight * loss_s
        terms = {"content": loss_c, "style": loss_s}
        if self.tv_weight:
            terms["tv"] = total_variation(output.float())
            total = total + self.tv_weight * terms["tv"]
        if self.colour_weight:
            terms["colour"] = COLOUR_TERMS[self.colour_term](output.float(), style.float())
            total = total + self.colour_weight * terms["colour"]
        if self.structure_weight:
            terms["structure"] = structure_loss({k: out_feats[k].float() for k in self.structure_layers},
                                                {k: c_feats[k].float() for k in self.structure_layers},
                                                self.structure_layers)
            total = total + self.structure_weight * terms["structure"]
        if self.stability_weight:
            terms["stability"] = shift_consistency_loss(lambda x: self._stylise(x, s_stats), content, output,
                                                        self.stability_noise)
            total = total + self.stability_weight * terms["stability"]
        return {"loss": total, **terms}

    def _stylise(self, content: torch.Tensor, style_stats: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """The decoder's output for `content` towards fixed style statistics (the frozen encoder without
        gradients, as in `losses`)."""
        with torch.no_grad():
            target = adain(self.encoder.encode(content), *style_stats)
        return self.decoder(target)


def run_train_recon(
    params: Params, out_dir: Path = paths.RECON_DIR, reports: Path = paths.REPORTS / "train_recon",
    cache_dir: Path = Path(".cache"),
) -> dict | None:
    """Train the decoder to reconstruct images through the frozen encoder, or import the published
    decoder that `adain.init` names."""
    if params.adain.init is not None:
        return import_decoder(params, out_dir, reports, cache_dir)
    return _train(params, "train_recon", params.train_recon, out_dir, reports, decoder_init=None)


def run_train_adain(
    params: Params,
    out_dir: Path = paths.ADAIN_DIR,
    reports: Path = paths.REPORTS / "train_adain",
    recon: Path = paths.RECON_DECODER,
) -> dict | None:
    """Train the AdaIN decoder, starting from the reconstruction decoder (an imported published decoder
    is fine-tuned for `adain.init.steps`, or passed through at 0)."""
    init = params.adain.init
    if init is None:
        return _train(params, "train_adain", params.train_adain, out_dir, reports, decoder_init=recon)
    if init.steps == 0:
        return pass_through(params, out_dir, reports, recon)
    cfg = params.train_adain.model_copy(update={"iterations": init.steps})
    return _train(params, "train_adain", cfg, out_dir, reports, decoder_init=recon)


RECON_COLUMNS = ("step", "lr", "loss")
ADAIN_COLUMNS = ("step", "lr", "loss", "content", "style")


def write_untrained_history(path: Path, columns: tuple[str, ...]) -> None:
    """A losses.csv without rows: the stage trained nothing, yet DVC and Snakemake expect the file."""
    with atomic_path(path) as tmp:
        tmp.write_text(",".join(columns) + "\n")


def import_decoder(params: Params, out_dir: Path, reports: Path, cache_dir: Path = Path(".cache")) -> dict | None:
    """train_recon with `adain.init`: the published decoder (fetched, sha256-checked, format-checked,
    fitted to the encoder of the weights stage) saved as stylepipe's decoder file; the output folder
    appears whole or not at all. One MLflow run records where it came from."""
    if not env_from_torchrun().is_main:  # under torchrun, rank 0 alone imports
        return None
    init = params.adain.init
    source = fetch(init.file, init.sha256, "adain.init.sha256", cache_dir / "published")
    encoder = load_encoder(paths.ENCODER, last=params.adain.layer)
    decoder = published_decoder(source, init.format, encoder.spec.name)
    check_pair(encoder, decoder, f"{source} with {paths.ENCODER}")
    with stage_run(params, "train_recon", ["common", "adain", "train_recon"]) as tracker:
        summary = {"stage": "train_recon", "steps": 0, "imported": init.file, "sha256": file_digest(source),
                   "format": init.format, "mlflow_run_id": tracker.run_id}
        with atomic_dir(out_dir) as tmp:
            save_decoder(decoder, tmp / "decoder.pt")
            write_json(tmp / "summary.json", summary)
        write_untrained_history(reports / "losses.csv", RECON_COLUMNS)
        tracker.artifact(out_dir / "summary.json")
    return summary


def pass_through(params: Params, out_dir: Path, reports: Path, recon: Path) -> dict | None:
    """train_adain with `adain.init.steps` 0: the imported decoder unchanged, with the style bank that
    export and the demo read."""
    if not env_from_torchrun().is_main:
        return None
    model_cfg = params.adain
    encoder = load_encoder(paths.ENCODER, last=model_cfg.layer)
    decoder = initial_decoder(encoder.spec.name, model_cfg, recon)
    model = AdaINStylizer(encoder, decoder, f"{recon} with {paths.ENCODER}").eval()
    bank = build_style_bank(model, open_stores()[1], params.train_adain.style_size)
    with stage_run(params, "train_adain", ["common", "adain", "train_adain"]) as tracker:
        summary = {"stage": "train_adain", "steps": 0, "imported": model_cfg.init.file,
                   "styles": bank.names, "mlflow_run_id": tracker.run_id}
        with atomic_dir(out_dir) as tmp:
            save_decoder(decoder, tmp / "decoder.pt")
            bank.save(tmp / "style_bank.pt")
            write_json(tmp / "summary.json", summary)
        write_untrained_history(reports / "losses.csv", ADAIN_COLUMNS)
        tracker.artifact(out_dir / "summary.json")
    return summary


def checkpoint_params(cfg: TrainBase, model_cfg: Adain) -> dict[str, Any]:
    """The params a training checkpoint is keyed by: the stage's section and the model it trains. The
    finishing settings (params `finish`) act after the network and are no part of them."""
    return {**cfg.model_dump(mode="json"), "adain": model_cfg.model_dump(mode="json")}


def initial_decoder(encoder_name: str, model_cfg: Adain, init: Path | None) -> Decoder:
    """A fresh decoder for `model_cfg`, or the one saved at `init`, which must match it."""
    if init is None:
        return Decoder(encoder_name, model_cfg.layer, model_cfg.decoder_width)
    return expect_decoder(load_decoder(init), encoder_name, model_cfg.layer, model_cfg.decoder_width, init)


def _train(
    params: Params, stage: str, cfg: TrainBase, out_dir: Path, reports: Path, decoder_init: Path | None
) -> dict | None:
    seed_everything(params.common.seed)
    rt = resolve_runtime(params.common)
    dist_env = init_distributed(rt.device.type)
    try:
        return _train_process(params, stage, cfg, out_dir, reports, decoder_init, rt, dist_env)
    finally:
        shutdown_distributed()


def _train_process(
    params: Params, stage: str, cfg: TrainBase, out_dir: Path, reports: Path, decoder_init: Path | None,
    rt: Runtime, dist_env: DistEnv,
) -> dict | None:
    """One process's share of a training stage; rank 0 writes the outputs and the MLflow run."""
    model_cfg = params.adain
    encoder = rt.prepare(load_encoder(paths.ENCODER, last=model_cfg.layer))
    decoder = initial_decoder(encoder.spec.name, model_cfg, decoder_init)
    adain_stage = stage == "train_adain"
    stores = open_stores()
    if decoder_init is None:
        calibration = torch.cat(preview_pairs(stores, cfg.crop, params.common.seed, "train"))
        decoder.calibrate(encoder.encode(rt.to_device(calibration)))
    decoder = rt.prepare(decoder)
    task = AdainTask.from_params(encoder, decoder, cfg) if adain_stage else ReconTask(encoder, decoder)
    phash = params_hash(
        stage, checkpoint_params(cfg, model_cfg), params.common.seed, dist_env.world_size,
        inputs_digest(paths.ENCODER, paths.PREPARED, *([decoder_init] if decoder_init else [])),
    )
    ckpt_dir = Path(".cache/checkpoints") / stage
    previews = out_dir / "previews"
    batches = chunk_loader(stores, cfg, params.common.seed, rt.device, dist_env, stage)
    if not dist_env.is_main:
        fit(task, cfg, rt, batches, ckpt_dir, phash, dist_env=dist_env)
        return None
    p_content, p_style = preview_pairs(stores, cfg.crop * 2, params.common.seed)  # rank 0 alone renders them
    with stage_run(params, stage, ["common", "adain", stage]) as tracker:
        def on_log(step: int, row: dict[str, float]) -> None:
            tracker.metrics({k: v for k, v in row.items() if k != "step"}, step=step)

        def on_preview(step: int) -> None:
            path = previews / f"step_{step:06d}.png"
            render_preview(task, rt, p_content, p_style, path)
            tracker.artifact(path, "previews")

        result = fit(task, cfg, rt, batches, ckpt_dir, phash, on_log, on_preview, dist_env, label=stage)
        decoder_cpu = decoder.to("cpu", memory_format=torch.contiguous_format)
        save_decoder(decoder_cpu, out_dir / "decoder.pt")
        write_history(reports / "losses.csv", result.history)
        summary = {
            "stage": stage,
            "steps": result.steps,
            "resumed_from": result.resumed_from,
            "seconds": round(result.seconds, 2),
            "device": str(rt.device),
            "processes": dist_env.world_size,
            "final": result.final,
            "mlflow_run_id": tracker.run_id,
        }
        if stage == "train_adain":
            encoder_cpu = encoder.to("cpu", memory_format=torch.contiguous_format)
            bank = build_style_bank(AdaINStylizer(encoder_cpu, decoder_cpu), stores[1], cfg.style_size)
            bank.save(out_dir / "style_bank.pt")
            summary["styles"] = bank.names
        write_json(out_dir / "summary.json", summary)
        tracker.metrics({f"final_{k}": v for k, v in result.final.items() if k not in ("step", "lr")})
        tracker.artifact(reports / "losses.csv")
        tracker.artifact(out_dir / "summary.json")
    return summary


@torch.no_grad()
def render_preview(
    task: ReconTask | AdainTask, rt: Runtime, content: torch.Tensor, style: torch.Tensor, path: Path
) -> None:
    """Rows: content | style | output (reconstruction or stylisation)."""
    decoder, encoder = task.decoder, task.encoder
    was_training = decoder.training
    decoder.eval()
    c, s = rt.to_device(content), rt.to_device(style)
    with rt.autocast():
        if isinstance(task, AdainTask):
            out = decoder(adain(encoder.encode(c), *mean_std(encoder.encode(s))))
        else:
            out = decoder(encoder.encode(c))
    decoder.train(was_training)
    save_grid([content, style, out.float().clamp(0, 1).cpu()], path)


@torch.no_grad()
def build_style_bank(model: AdaINStylizer, styles: ShardStore, size: int) -> StyleBank:
    """Cached mean/std at the AdaIN layer of one painting per style label (validation split first), and its
    palette, for export, the demo and the model folder: the bank serves either `finish.palette` setting."""
    names, images = list(styles.labels), [style_image(styles, label, size) for label in styles.labels]
    return style_stats_of_images(model, names, images)
