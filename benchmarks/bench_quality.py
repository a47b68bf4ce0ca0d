"""Quality of the trained AdaIN model on images it never saw, against the colour-transfer floor.

Every content x style pair of a folder (default ../shared/data/eval, with content/ and style/ inside) is
centre-cropped to --size, stylised at alpha 1 and scored with the evaluate stage's metrics (relu4_1
encoder, whatever the model's AdaIN layer). The floor (per-channel RGB mean/std transfer) is scored on the
same pairs in the same run. Criteria (README, Results): mean style loss below the floor's, mean luminance
SSIM against the content >= 0.45, and every style's outputs closer in colour histogram to their own style
than to any other style. Exit status 1 when a criterion fails.

    python benchmarks/bench_quality.py                                   # models/adain/decoder.pt
    python benchmarks/bench_quality.py --decoder other.pt --grid grid.png --json figures.json
    python benchmarks/bench_quality.py --palette none --detail 0   # the network's own outputs

`--palette` and `--detail` override params.yaml's `finish.palette` and `finish.detail` settings, as
`stylize --palette/--detail` do: `--palette none --detail 0` scores what the network draws by itself,
`histogram` the outputs matched to each painting's palette (`stylepipe.nn.palette`) and `--detail` the
weight of the content's fine luminance detail restored on them (`stylepipe.nn.detail`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from stylepipe.adain.engine import PALETTES, Engine, Finish
from stylepipe.adain.fast import torch_engine
from stylepipe.adain.model import load_stylizer
from stylepipe.core import paths
from stylepipe.core.config import Common, load_params
from stylepipe.core.media import list_images, open_image
from stylepipe.core.runtime import resolve_runtime
from stylepipe.core.viz import save_grid
from stylepipe.data.datasets import center_resize_crop, image_to_tensor
from stylepipe.nn.metrics import (
    colour_transfer,
    image_metrics,
    metric_encoder,
    own_style_closest,
    quality_checks,
)

DEFAULT_EVAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "eval"


def load_folder(folder: Path, size: int) -> dict[str, torch.Tensor]:
    images = list_images(folder)
    if not images:
        raise SystemExit(f"{folder}: no images (expected content/ and style/ folders of JPEG/PNG files)")
    return {p.stem: image_to_tensor(center_resize_crop(open_image(p), size)) for p in images}


def separation(outputs: dict[tuple[str, str], torch.Tensor], contents: dict, styles: dict) -> dict:
    """`own_style_closest` per style name, on the (content, style) outputs."""
    grid = [[outputs[(c, s)] for s in styles] for c in contents]
    return dict(zip(styles, own_style_closest(grid, list(styles.values())), strict=True))


@torch.no_grad()
def score(engine: Engine, enc, contents: dict, styles: dict) -> tuple[dict, dict, dict, dict]:
    """Mean metrics of the engine's outputs and of the floor, and both's outputs keyed by (content, style)."""
    rows, floor_rows, outputs, floor_outputs = [], [], {}, {}
    for c_name, c in contents.items():
        for s_name, s in styles.items():
            out, floor = engine.stylize(c[None], s[None])[0], colour_transfer(c, s)
            outputs[(c_name, s_name)], floor_outputs[(c_name, s_name)] = out, floor
            rows.append(image_metrics(enc, out, c, s, 1.0))
            floor_rows.append(image_metrics(enc, floor, c, s, 1.0))

    def mean(rs: list[dict]) -> dict:
        return {k: float(np.mean([r[k] for r in rs])) for k in rs[0]}

    return mean(rows), mean(floor_rows), outputs, floor_outputs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eval-dir", type=Path, default=DEFAULT_EVAL)
    ap.add_argument("--encoder", type=Path, default=paths.ENCODER)
    ap.add_argument("--decoder", type=Path, default=paths.DECODER)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--grid", type=Path, help="write content x style outputs here (PNG)")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"), help="its finish section finishes outputs")
    ap.add_argument("--palette", choices=PALETTES, help="override finish.palette (see above)")
    ap.add_argument("--detail", type=float, help="override finish.detail, the fine-detail weight (0..1, see above)")
    args = ap.parse_args()
    torch.manual_seed(0)
    model = load_stylizer(args.encoder, args.decoder)
    finish = Finish.from_params(load_params(args.params)).overridden(args.palette, args.detail)
    enc = metric_encoder(torch.device("cpu"), args.encoder)
    contents = load_folder(args.eval_dir / "content", args.size)
    styles = load_folder(args.eval_dir / "style", args.size)
    engine = torch_engine(model, resolve_runtime(Common(device="cpu")), finish)
    model_m, floor_m, outputs, floor_outputs = score(engine, enc, contents, styles)
    by_style = separation(outputs, contents, styles)
    floor_by_style = separation(floor_outputs, contents, styles)
    checks = quality_checks(model_m, floor_m, all(v["closest_is_own"] for v in by_style.values()))
    print(f"{len(contents)} contents x {len(styles)} styles at {args.size} px, alpha 1, "
          f"model {args.decoder} ({model.decoder.describe()}, finish {finish.record()})")
    print(f"{'metric':<22}{'model':>12}{'floor':>12}")
    for key in model_m:
        print(f"{key:<22}{model_m[key]:>12.4g}{floor_m[key]:>12.4g}")
    own = sum(v["closest_is_own"] for v in by_style.values())
    floor_own = sum(v["closest_is_own"] for v in floor_by_style.values())
    print(f"styles whose outputs are closest in histogram to their own style: {own}/{len(styles)} "
          f"(floor: {floor_own}/{len(styles)})")
    for name, ok in checks.items():
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")
    if args.grid:
        names = list(styles)
        rows = [[torch.ones_like(styles[names[0]]), *styles.values()]]
        rows += [[c, *(outputs[(cn, sn)] for sn in names)] for cn, c in contents.items()]
        save_grid(rows, args.grid)
    if args.json:
        args.json.write_text(json.dumps({"model": model_m, "floor": floor_m, "styles": by_style,
                                         "floor_styles": floor_by_style, "checks": checks}, indent=2))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
