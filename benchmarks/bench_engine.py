"""Speed and quality of the AdaIN engine on the CPU, every backend and precision side by side in one run.

Rows: torch eager float32 (the baseline), torch bf16 autocast, OpenVINO at the CPU plugin's default precision,
at f32, and the NNCF INT8 IR. The speed table gives frames/s per frame size (one frame, style statistics
cached, detail and palette finishing included), the speedup over the baseline and the output's difference
from the baseline's. The quality table (with `--eval DIR`, a folder of content/ and style/ images such as
../shared/data/eval) scores every content x style pair with evaluate's metrics (`nn.metrics.image_metrics`:
style loss, luminance SSIM to the content, colour-histogram distance to the painting) and gives each
variant's relative change against torch f32; `--picture` writes content, style and the f32, default and
INT8 outputs of one pair side by side.

The model is a model folder (`--model DIR`, adain/folder.py: its IRs are used as they are), else the
pipeline's models (models/encoder, models/adain) with IRs converted here, else a randomly initialised model
of the default architecture (speed only). INT8 is calibrated with NNCF on training pairs of
`--calibration` (data/prepared: content images for the encoder, their AdaIN targets towards the paintings
for the decoder), or on synthetic images when that folder is absent.

  python benchmarks/bench_engine.py --sizes 256x256 512x512 1920x1080 --repeats 3 \\
      --eval ../shared/data/eval --picture /tmp/engine_pair.png
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path

import openvino as ov
import torch
import torch.nn.functional as F

from stylepipe.adain.engine import Engine, Finish, StyleTarget
from stylepipe.adain.fast import torch_engine
from stylepipe.adain.folder import INT8_DIR, IR_DIR, read_record
from stylepipe.adain.ir import OpenVINOBackend, quantize_ir, write_ir
from stylepipe.adain.model import AdaINStylizer, Decoder, load_stylizer
from stylepipe.core.media import open_image
from stylepipe.core.paths import DECODER, ENCODER, PREPARED
from stylepipe.core.runtime import Runtime, calls_per_second
from stylepipe.core.tiling import pad_to_grid
from stylepipe.core.viz import save_grid
from stylepipe.data.datasets import center_resize_crop, fixed_pairs, image_to_tensor
from stylepipe.nn.encoders import VGGEncoder, build_encoder
from stylepipe.nn.functional import adain, mean_std
from stylepipe.nn.metrics import image_metrics, mean_rows, metric_encoder
from stylepipe.nn.palette import palette_of
from stylepipe.nn.statistics import StatsOrigin
from stylepipe.train.plumbing import open_stores

BASELINE = "torch eager f32"
# The quality figures compared against f32, and which way is better: (metric, short name, lower is better)
QUALITY = (("style_loss", "style loss", True), ("ssim_content", "SSIM", False),
           ("hist_distance_style", "hist", True))
PICTURE_ROWS = (BASELINE, "openvino default", "openvino int8")


@dataclass
class Subject:
    """The model under test: the network, what it is, its encoder file (the metrics' encoder; None for random
    weights) and its IR folders when a model folder provides them."""

    model: AdaINStylizer
    what: str
    encoder_file: Path | None
    ir_dir: Path | None = None
    int8_dir: Path | None = None


def machine() -> str:
    """CPU model, cores, torch build, OpenVINO version and date: what every figure must be quoted with."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU build"
    default = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({build}, {torch.get_num_threads()} threads), "
            f"OpenVINO {ov.get_version()} (CPU default precision {default}), {datetime.date.today().isoformat()}")


def test_image(h: int, w: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = F.interpolate(torch.rand(1, 3, 9, 16, generator=g), size=(h, w), mode="bicubic", align_corners=False)
    return (base + 0.08 * torch.rand(1, 3, h, w, generator=g)).clamp(0, 1)


def the_model(folder: Path | None) -> Subject:
    if folder is not None:
        record = read_record(folder)
        int8 = folder / INT8_DIR
        return Subject(load_stylizer(folder / "encoder.pt", folder / "decoder.pt"), f"model folder {folder}",
                       folder / "encoder.pt", folder / IR_DIR,
                       int8 if f"{INT8_DIR}/decoder.xml" in record["files"] else None)
    if ENCODER.is_file() and DECODER.is_file():
        return Subject(load_stylizer(ENCODER, DECODER), f"trained ({DECODER})", ENCODER)
    torch.manual_seed(0)
    model = AdaINStylizer(build_encoder("vgg16_hed", "relu3_1"), Decoder("vgg16_hed", "relu3_1", 0.5)).eval()
    return Subject(model, "random weights, default architecture (relu3_1, width 0.5)", None)


@torch.no_grad()
def calibration_set(encoder: VGGEncoder, prepared: Path, n: int) -> tuple[list[torch.Tensor], list[torch.Tensor], str]:
    """Encoder inputs and decoder inputs for NNCF: training photos and their AdaIN targets towards training
    paintings (what the decoder sees when stylising), or synthetic images when `prepared` is absent."""
    if (prepared / "content").is_dir() and (prepared / "style").is_dir():
        pairs = fixed_pairs(*open_stores(prepared), n=n, seed=0, size=256, split="train")
        contents, styles = [c[None] for c, _, _ in pairs], [s[None] for _, s, _ in pairs]
        what = f"{n} training pairs of {prepared}"
    else:
        contents = [test_image(256, 256, 100 + i) for i in range(n)]
        styles = [test_image(256, 256, 200 + i) for i in range(n)]
        what = f"{n} synthetic images ({prepared} not found)"
    targets = [adain(encoder.encode(c), *mean_std(encoder.encode(s))) for c, s in zip(contents, styles, strict=True)]
    return contents, targets, what


def engines(subject: Subject, workdir: Path, finish: Finish, calibration: Path, n_calibration: int
            ) -> tuple[dict[str, Engine], str]:
    model, cpu = subject.model, torch.device("cpu")
    ir = subject.ir_dir or write_ir(model.encoder, model.decoder, workdir / "f32", {})[0].parent
    int8, how = subject.int8_dir, "the model folder's INT8 IR"
    if int8 is None:
        contents, targets, how = calibration_set(model.encoder, calibration, n_calibration)
        int8 = quantize_ir(ir, workdir / "int8", contents, targets)[0].parent
    origin, stride = StatsOrigin.of(model), model.encoder.stride

    def ov_engine(path: Path, precision: str) -> Engine:
        return Engine(OpenVINOBackend(path, precision), origin, stride, finish)

    runs = {
        BASELINE: torch_engine(model, Runtime(cpu, False, False, False), finish),
        "torch bf16 autocast": torch_engine(model, Runtime(cpu, True, False, False), finish),
        "openvino default": ov_engine(ir, "default"),
        "openvino f32": ov_engine(ir, "f32"),
        "openvino int8": ov_engine(int8, "int8"),
    }
    return runs, how


def speed_table(runs: dict[str, Engine], sizes: list[str], repeats: int, style: StyleTarget) -> None:
    print(f"{'size':>9}  {'path':<20}  {'FPS':>7}  {'x f32':>6}  {'mean diff':>9}  {'max diff':>8}")
    for size in sizes:
        w, h = (int(v) for v in size.split("x"))
        content, _ = pad_to_grid(test_image(h, w, 0))
        with torch.inference_mode():
            reference = runs[BASELINE].frame(content, style)
            base_fps = None
            for name, engine in runs.items():
                diff = (engine.frame(content, style) - reference).abs()  # also the warm-up (compiles the shape)
                fps = calls_per_second(lambda e=engine, x=content: e.frame(x, style), repeats, warmup=0)
                base_fps = base_fps or fps
                print(f"{size:>9}  {name:<20}  {fps:7.2f}  {fps / base_fps:5.2f}x  {float(diff.mean()):9.5f}  "
                      f"{float(diff.max()):8.4f}", flush=True)


def eval_images(folder: Path, size: int) -> tuple[list[tuple[str, torch.Tensor]], list[tuple[str, torch.Tensor]]]:
    """(name, [3, size, size]) contents and styles of `folder`/content and `folder`/style, centre-cropped
    as evaluate crops its pairs."""
    def load(sub: str) -> list[tuple[str, torch.Tensor]]:
        files = sorted(p for p in (folder / sub).glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if not files:
            raise SystemExit(f"{folder / sub}: no .jpg or .png images (expected content/ and style/ folders)")
        return [(p.stem, image_to_tensor(center_resize_crop(open_image(p), size))) for p in files]

    return load("content"), load("style")


@torch.no_grad()
def quality_table(runs: dict[str, Engine], metric_enc: VGGEncoder, contents: list, styles: list,
                  picture: Path | None) -> dict[str, dict[str, float]]:
    """Mean metrics of every variant over all content x style pairs, printed with the change against f32."""
    targets = {name: StyleTarget(*runs[BASELINE].style_stats(s[None]), palette_of(s)[None]) for name, s in styles}
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in runs}
    for ci, (_, content) in enumerate(contents):
        for si, (style_name, style) in enumerate(styles):
            outputs = {name: engine.frame(content[None], targets[style_name])[0] for name, engine in runs.items()}
            for name, out in outputs.items():
                rows[name].append(image_metrics(metric_enc, out, content, style, 1.0))
            if picture is not None and ci == 0 and si == 0:
                save_grid([[content, style, *(outputs[name] for name in PICTURE_ROWS)]], picture)
    means = {name: mean_rows(r) for name, r in rows.items()}
    base = means[BASELINE]
    print(f"\n{len(contents)} x {len(styles)} pairs; change against {BASELINE} (+ worse, - better)")
    print(f"{'path':<20}  " + "  ".join(f"{short:>10}  {'change':>7}" for _, short, _ in QUALITY)
          + f"  {'worst change':>12}")
    for name, m in means.items():
        costs = [cost(m[key], base[key], lower) for key, _, lower in QUALITY]
        print(f"{name:<20}  " + "  ".join(f"{m[key]:10.4g}  {c:+6.2%}" for (key, _, _), c in zip(QUALITY, costs,
                                                                                               strict=True))
              + f"  {max(costs):+11.2%}", flush=True)
    return means


def cost(value: float, reference: float, lower_is_better: bool) -> float:
    """The relative quality cost of `value` against `reference`: positive when worse."""
    change = (value - reference) / abs(reference)
    return change if lower_is_better else -change


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="*", default=["256x256", "512x512", "1920x1080"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", type=Path, help="a model folder (default: the pipeline's models)")
    parser.add_argument("--calibration", type=Path, default=PREPARED, help="prepared data for INT8 calibration")
    parser.add_argument("--calibration-pairs", type=int, default=32)
    parser.add_argument("--eval", type=Path, help="content/ and style/ images to score quality on")
    parser.add_argument("--eval-size", type=int, default=256, help="side of the centre crops scored")
    parser.add_argument("--picture", type=Path, help="PNG: content, style, f32, default, int8 of the first pair")
    args = parser.parse_args()
    subject = the_model(args.model)
    if args.eval is not None and subject.encoder_file is None:
        raise SystemExit("--eval needs a trained model (--model DIR or the pipeline's models): random weights "
                         "have no picture quality to compare")
    finish = Finish()  # the defaults: detail restored, palette matched
    with tempfile.TemporaryDirectory() as tmp:
        runs, calibrated = engines(subject, Path(tmp), finish, args.calibration, args.calibration_pairs)
        print(f"# {machine()}\n# model: {subject.what}; INT8: {calibrated}; finish: {finish.record()}")
        style_image = test_image(256, 256, 1)
        style = StyleTarget(*runs[BASELINE].style_stats(style_image), palette_of(style_image[0])[None])
        speed_table(runs, args.sizes, args.repeats, style)
        if args.eval is not None:
            contents, styles = eval_images(args.eval, args.eval_size)
            metric_enc = metric_encoder(torch.device("cpu"), subject.encoder_file)
            quality_table(runs, metric_enc, contents, styles, args.picture)


if __name__ == "__main__":
    main()
