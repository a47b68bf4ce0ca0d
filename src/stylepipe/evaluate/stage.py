"""The evaluate stage: metrics on held-out content x style pairs, an alpha sweep, grids, curves, speed."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stylepipe.adain.engine import Engine, Finish, StyleTarget
from stylepipe.adain.fast import torch_engine
from stylepipe.adain.model import load_stylizer
from stylepipe.core import paths
from stylepipe.core.config import Evaluate, Params
from stylepipe.core.io import atomic_path, write_csv, write_json
from stylepipe.core.runtime import calls_per_second, resolve_runtime, seed_everything
from stylepipe.core.tracking import flatten, stage_run
from stylepipe.core.viz import save_grid
from stylepipe.data.datasets import fixed_pairs
from stylepipe.evaluate.report import write_report
from stylepipe.nn.encoders import VGGEncoder
from stylepipe.nn.metrics import (
    colour_histogram_distance,
    colour_transfer,
    floor_metrics,
    image_metrics,
    mean_rows,
    metric_encoder,
    own_style_closest,
    quality_checks,
)
from stylepipe.train.plumbing import open_stores

GRID_MAX = 4
HEADLINE_FILE = "metrics.json"  # what `dvc metrics show` prints: a few numbers that fit a terminal
DETAIL_FILE = "metrics_detail.json"  # every number of the stage
# The headline measures and which way is better: (metric, short name, lower is better)
HEADLINE = (("style_loss", "style_loss", True), ("ssim_content", "ssim", False),
            ("hist_distance_style", "hist", True))
REFERENCES = (("floor", "baseline_colour_transfer"), ("gatys", "reference_gatys"))


def gatys_reference(
    enc: VGGEncoder, pairs: list, cfg: Evaluate, seed: int, device: torch.device
) -> tuple[dict[str, float], list[torch.Tensor]]:
    """Gatys' optimisation on the given pairs, scored with the same metrics as AdaIN at alpha 1."""
    from stylepipe.gatys.optimise import GatysOptions, run_gatys

    opts = GatysOptions(iterations=cfg.gatys_iterations, init=cfg.gatys_init, seed=seed)
    rows, images = [], []
    for content, style, _ in pairs:
        c, s = content.to(device), style.to(device)
        image = run_gatys(enc, c, s, opts, progress=False).image.to(device)
        rows.append(image_metrics(enc, image, c, s, 1.0))
        images.append(image.cpu())
    return mean_rows(rows), images


def held_out_pairs(params: Params, prepared: Path = paths.PREPARED) -> list:
    """The evaluation pairs: validation photos x validation paintings, every style label in turn."""
    cfg = params.evaluate
    return fixed_pairs(*open_stores(prepared), n=cfg.num_pairs, seed=params.common.seed + 1,
                       size=cfg.image_size, split="val")


@torch.no_grad()
def measure_speed(engine: Engine, size: int, repeats: int) -> dict[str, float]:
    """Images per second at `size` through the engine, as users get the outputs: with the style cached
    (its statistics and palette, as a style bank holds them) and with the style encoded too."""
    x = torch.rand(1, 3, size, size, device=engine.device)
    bank = engine.style_bank(["probe"], [x[0]])
    cached = StyleTarget(bank.mean, bank.std, bank.palette)
    return {
        "fps_cached_style": calls_per_second(lambda: engine.frame(x, cached), repeats, engine.device),
        "fps_encode_style": calls_per_second(lambda: engine.stylize(x, x), repeats, engine.device),
    }


def loss_curves(paths: dict[str, Path], out: Path) -> Path | None:
    """One panel per training stage from its losses.csv."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = {k: p for k, p in paths.items() if p.is_file()}
    if not present:
        return None
    fig, axes = plt.subplots(1, len(present), figsize=(5 * len(present), 3.5), squeeze=False)
    for ax, (name, path) in zip(axes[0], present.items(), strict=True):
        with open(path) as f:
            rows = list(csv.DictReader(f))
        ax.set_title(name)
        if not rows:  # a stage that imported its model instead of training (adain.init)
            ax.text(0.5, 0.5, "no training: imported", ha="center", va="center", transform=ax.transAxes)
            continue
        steps = [int(r["step"]) for r in rows]
        for key in rows[0]:
            if key not in ("step", "lr"):
                ax.plot(steps, [float(r[key]) for r in rows], label=key)
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.legend()
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return out


def run_evaluate(params: Params, out_dir: Path = paths.REPORTS / "evaluate") -> dict:
    cfg = params.evaluate
    seed_everything(params.common.seed)
    rt = resolve_runtime(params.common)
    finish = Finish.from_params(params)
    engine = torch_engine(load_stylizer(), rt, finish)
    enc = metric_encoder(rt.device)
    pairs = held_out_pairs(params)
    sweep: list[dict[str, float]] = []
    outputs: dict[float, list[torch.Tensor]] = {}
    for alpha in cfg.alphas:
        rows = []
        for content, style, _ in pairs:
            c, s = content.to(rt.device), style.to(rt.device)
            out = engine.stylize(c[None], s[None], alpha)[0]
            outputs.setdefault(alpha, []).append(out.cpu())
            rows.append(image_metrics(enc, out, c, s, alpha))
        sweep.append({"alpha": alpha, **mean_rows(rows)})
    floor = floor_metrics(enc, pairs, rt.device)
    speed = measure_speed(engine, cfg.image_size, cfg.speed_repeats)
    cross = cross_stylise(engine, pairs, rt.device)
    gatys, gatys_images = ({}, [])
    if cfg.gatys_pairs:
        gatys, gatys_images = gatys_reference(enc, pairs[: cfg.gatys_pairs], cfg, params.common.seed, rt.device)
    metrics = assemble_metrics(sweep, floor, gatys, speed, style_separation(cross), len(pairs), cfg.image_size,
                               str(rt.device))
    metrics.update(palette_separation(pairs, cross))
    out_dir.mkdir(parents=True, exist_ok=True)
    from stylepipe.evaluate.johnson import evaluate_johnson

    metrics.update(evaluate_johnson(params, engine, enc, pairs, rt.device, out_dir))
    metrics["verdict"] = verdict(metrics)
    metrics["checks"] = quality_checks(metrics, floor, metrics["own_style_closest"] == metrics["grid_styles"])
    write_json(out_dir / DETAIL_FILE, metrics)
    write_json(out_dir / HEADLINE_FILE, headline(metrics))
    write_csv(out_dir / "alpha_sweep.csv", [{k: float(v) for k, v in row.items()} for row in sweep])
    _write_grid(pairs, cross, outputs, cfg.alphas, gatys_images, out_dir / "grid.png")
    loss_curves(
        {s: paths.REPORTS / s / "losses.csv" for s in ("train_recon", "train_adain")}, out_dir / "curves.png"
    )
    with stage_run(params, "evaluate", ["common", "finish", "evaluate"]) as tracker:
        tracker.metrics(numeric_metrics(metrics))
        for row in sweep:
            tracker.metrics({f"sweep.{k}": v for k, v in row.items() if k != "alpha"}, step=int(row["alpha"] * 100))
        notes = dict(metrics["skipped"])
        if cfg.log_model:
            from stylepipe.serving import log_serving_model

            uri = tracker.model(
                lambda: log_serving_model(paths.ENCODER, paths.DECODER, paths.STYLE_BANK, finish,
                                          cfg.serve_max_pixels)
            )
            if uri is not None:
                notes["serving model"] = f"{uri} (mlflow models serve -m {uri} --env-manager local)"
        write_report(out_dir / "report.html", metrics, sweep,
                     {"Content x style grid, alpha sweep, Gatys reference": out_dir / "grid.png",
                      "Training curves": out_dir / "curves.png"}, notes, verdict_rows=metrics["verdict"])
        tracker.artifacts(out_dir)
    return metrics


def compare(model: float, reference: float, lower_is_better: bool) -> str:
    """'better by 41%' / 'worse by 12%' / 'equal': the model against a reference, relative to it."""
    if reference == 0 or model == reference:
        return "equal" if model == reference else ("better" if (model < 0) == lower_is_better else "worse")
    change = (model - reference) / abs(reference)
    better = change < 0 if lower_is_better else change > 0
    return f"{'better' if better else 'worse'} by {abs(change):.0%}"


def verdict(metrics: dict) -> list[dict[str, Any]]:
    """Per headline metric at alpha 1: the model, the colour-transfer floor, the Gatys reference, and how
    the model compares with each (references that were not computed are left out)."""
    rows = []
    for key, _, lower in HEADLINE:
        row: dict[str, Any] = {"metric": key, "better": "lower" if lower else "higher", "model": metrics[key]}
        for name, prefix in REFERENCES:
            ref = metrics.get(f"{prefix}.{key}")
            if ref is not None:
                row[name] = ref
                row[f"vs_{name}"] = compare(metrics[key], ref, lower)
        rows.append(row)
    return rows


def headline(metrics: dict) -> dict[str, float]:
    """The small metrics file (one `dvc metrics show` row within 120 columns): the model's headline
    numbers, their ratios to the floor, and the style loss's ratio to Gatys. For a lower-is-better metric
    a ratio below 1 is better; for SSIM above 1."""
    out: dict[str, float] = {short: round(metrics[key], 1 if key == "style_loss" else 3) for key, short, _ in HEADLINE}
    ratios = [(key, short.removesuffix("_loss"), "floor") for key, short, _ in HEADLINE]
    ratios.append(("style_loss", "style", "gatys"))
    prefixes = dict(REFERENCES)
    for key, short, name in ratios:
        ref = metrics.get(f"{prefixes[name]}.{key}")
        if ref:
            out[f"{short}/{name}"] = round(metrics[key] / ref, 3)
    return out


def skipped_metrics() -> dict[str, str]:
    """ArtFID and LPIPS need their packages and network weights from a model hub; this project computes
    neither (offline), and says so in metrics.json and the report instead of leaving them out silently."""
    reason = "not computed: needs the {} package and its pretrained weights (downloaded from a model hub); offline"
    return {"artfid": reason.format("art-fid"), "lpips": reason.format("lpips")}


def alpha_key(alpha: float) -> str:
    """0.25 -> 'alpha_025' (no dot: DVC joins nested metric keys with dots)."""
    return f"alpha_{round(alpha * 100):03d}"


def assemble_metrics(sweep: list[dict[str, float]], floor: dict[str, float], gatys: dict[str, float],
                     speed: dict[str, float], separation: float, num_pairs: int, image_size: int,
                     device: str) -> dict:
    """metrics.json: the alpha = 1 (or largest alpha) values at the top level, every alpha of the sweep
    under alpha_sweep.alpha_NNN, baselines, speed; `dvc metrics diff` compares all numeric leaves."""
    full = next((r for r in sweep if r["alpha"] == 1.0), sweep[-1])
    return {
        **{k: v for k, v in full.items() if k != "alpha"},
        "alpha_sweep": {alpha_key(r["alpha"]): {k: v for k, v in r.items() if k != "alpha"} for r in sweep},
        **{f"baseline_colour_transfer.{k}": v for k, v in floor.items()},
        **{f"reference_gatys.{k}": v for k, v in gatys.items()},
        **{f"speed.{k}": v for k, v in speed.items()},
        "style_separation": separation,
        "num_pairs": num_pairs,
        "image_size": image_size,
        "device": device,
        "skipped": skipped_metrics(),
    }


def numeric_metrics(metrics: dict) -> dict[str, float]:
    """Numeric leaves of nested metrics, keys joined with dots (what MLflow logs)."""
    return {k: v for k, v in flatten(metrics).items() if isinstance(v, int | float) and not isinstance(v, bool)}


@torch.no_grad()
def cross_stylise(engine: Engine, pairs: list, device: torch.device) -> list[list[torch.Tensor]]:
    """Every content of the first GRID_MAX pairs stylised with every style of them (alpha 1)."""
    contents = [p[0] for p in pairs][:GRID_MAX]
    styles = [p[1] for p in pairs][:GRID_MAX]
    return [[engine.stylize(c[None].to(device), s[None].to(device))[0].cpu() for s in styles] for c in contents]


def style_separation(cross: list[list[torch.Tensor]]) -> float:
    """Mean colour-histogram distance between stylisations of one content with different styles.

    Near 0 means the decoder ignores the style (the "muddy average" collapse); 0 with one style.
    """
    dists = [
        colour_histogram_distance(row[i], row[j])
        for row in cross for i in range(len(row)) for j in range(i + 1, len(row))
    ]
    return float(np.mean(dists)) if dists else 0.0


def palette_separation(pairs: list, cross: list[list[torch.Tensor]]) -> dict[str, int]:
    """How many of the grid's styles have stylisations nearest in colour histogram to their own painting
    (`own_style_closest`), for the model and for the colour-transfer floor on the same grid."""
    contents = [p[0] for p in pairs][: len(cross)]
    styles = [p[1] for p in pairs][: len(cross[0])]
    floor = [[colour_transfer(c, s) for s in styles] for c in contents]

    def count(outputs: list[list[torch.Tensor]]) -> int:
        return sum(bool(v["closest_is_own"]) for v in own_style_closest(outputs, styles))

    return {"grid_styles": len(styles), "own_style_closest": count(cross),
            "baseline_colour_transfer.own_style_closest": count(floor)}


def _write_grid(pairs, cross, outputs, alphas, gatys_images, path: Path) -> None:
    """Top: content x style at alpha 1 (first row the styles); then the alpha sweep of each pair
    (content, style, one image per alpha); last, Gatys' result for the reference pairs beside AdaIN's."""
    styles = [p[1] for p in pairs][:GRID_MAX]
    rows = [[torch.ones_like(styles[0]), *styles]]
    rows += [[c, *outs] for (c, _, _), outs in zip(pairs, cross, strict=False)]
    for i, (c, s, _) in enumerate(pairs[:GRID_MAX]):
        rows.append([c, s, *(outputs[a][i] for a in alphas)])
    for i, image in enumerate(gatys_images):
        c, s, _ = pairs[i]
        rows.append([c, s, outputs[max(alphas)][i], image])
    save_grid(rows, path)
