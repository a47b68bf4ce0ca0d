"""Gatys, Ecker & Bethge (2016) style transfer: optimise the pixels of one image.

Loss = content_weight * content_loss(F_c(x), F_c(content))            (MSE, mean-reduced)
     + style_weight * sum_l w_l * MSE(gram(F_l(x)), gram(F_l(style)))   (Gram normalised by C*H*W)
     + tv_weight * total_variation(x)
using `stylepipe.nn.losses` (the style term is `losses.gram_loss` with the style Grams computed once).

Features are read with forward hooks on the encoder's ReLU modules, named `reluB_K` (block B, conv K of
the block) from `encoder.layers` (`stylepipe.nn.encoders.FeatureExtractor`); the forward stops right
after the deepest requested layer.

* Pixels: x is optimised directly and clamped to [0, 1] in place (under no_grad) at the start of every
  loss evaluation and once at the end, so every evaluated image (and the result) is a valid image.
  (The PyTorch-tutorial approach; a sigmoid parametrisation flattens the gradient near 0/1 and converges
  more slowly.)
* `iterations` counts loss evaluations (forward + backward) for both optimisers: for L-BFGS these are
  closure calls, so it/s figures compare directly with Adam steps.
* Default weights are for the vgg16_hed encoder (features on the 0-255 Caffe scale): see GatysOptions.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from stylepipe.core.errors import InputError
from stylepipe.nn import encoders
from stylepipe.nn.losses import content_loss, gram_target_loss, target_grams, total_variation

DEFAULT_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
OPTIMIZERS = ("lbfgs", "adam")
INITS = ("content", "noise")
DEFAULT_LR = {"lbfgs": 1.0, "adam": 0.02}
LBFGS_EVALS_PER_STEP = 20  # closure calls per optimizer.step (then a fresh step; history is kept)


class GatysError(InputError):
    """Bad Gatys options (unknown layer, optimiser...) or a diverged optimisation."""


@dataclass
class GatysOptions:
    content_layer: str = "relu4_1"
    style_layers: Sequence[str] = DEFAULT_STYLE_LAYERS
    style_layer_weights: Sequence[float] | None = None  # default: 1.0 each (= losses.gram_loss)
    content_weight: float = 1.0
    # For vgg16_hed's 0-255 Caffe-scale features the style Gram errors are 1e2-1e4 times the relu4_1
    # content error, so 0.1 brings the two terms to the same size: the style's palette and strokes cover
    # the image while faces stay recognisable. Encoders with ImageNet-scaled features (vgg19, vgg19_bn)
    # have far smaller Gram errors and need a larger weight.
    style_weight: float = 1e-1
    tv_weight: float = 0.0
    optimizer: str = "lbfgs"
    iterations: int = 300
    lr: float | None = None  # None: 1.0 for lbfgs, 0.02 for adam (pixels in [0, 1])
    init: str = "content"
    size: int = 0  # shorter side for the CLI's image reading; 0 keeps the original size
    seed: int = 0

    def learning_rate(self) -> float:
        return DEFAULT_LR[self.optimizer] if self.lr is None else float(self.lr)


@dataclass
class GatysResult:
    image: torch.Tensor  # [3, H, W] in [0, 1], on the CPU
    history: list[dict] = field(default_factory=list)  # step, loss, content, style, tv (weighted terms)
    seconds: float = 0.0

    @property
    def iterations(self) -> int:
        return len(self.history)


class FeatureExtractor(encoders.FeatureExtractor):
    """The encoders' hook-based feature tap, raising GatysError for an unknown layer."""

    error = GatysError


def check_layers(encoder: nn.Module, layers: Sequence[str]) -> list[str]:
    return encoders.check_layers(encoder, layers, GatysError)


def check_options(opts: GatysOptions) -> None:
    if opts.optimizer not in OPTIMIZERS:
        raise GatysError(f"optimizer {opts.optimizer!r}: expected one of {', '.join(OPTIMIZERS)}")
    if opts.init not in INITS:
        raise GatysError(f"init {opts.init!r}: expected one of {', '.join(INITS)}")
    if opts.iterations < 1:
        raise GatysError(f"iterations must be >= 1, got {opts.iterations}")
    if not opts.style_layers:
        raise GatysError("at least one style layer is needed")
    if opts.style_layer_weights is not None and len(opts.style_layer_weights) != len(opts.style_layers):
        raise GatysError(
            f"{len(opts.style_layer_weights)} style layer weights for {len(opts.style_layers)} style layers"
        )
    for name in ("content_weight", "style_weight", "tv_weight"):
        value = getattr(opts, name)
        if not math.isfinite(value) or value < 0:
            raise GatysError(f"{name} must be a finite number >= 0, got {value}")


def noise_init(content: torch.Tensor, seed: int, std: float = 0.25, blur: int = 5) -> torch.Tensor:
    """Seeded Gaussian noise around the content's per-channel mean, box-blurred, clamped to [0, 1]."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    noise = torch.randn(content.shape, generator=gen).to(content.device, content.dtype) * std
    noise = F.avg_pool2d(F.pad(noise[None], (blur // 2,) * 4, mode="reflect"), blur, stride=1)[0]
    return (content.mean(dim=(1, 2), keepdim=True) + noise).clamp(0, 1)


def run_gatys(
    encoder: nn.Module,
    content: torch.Tensor,
    style: torch.Tensor,
    opts: GatysOptions | None = None,
    progress: bool = True,
) -> GatysResult:
    """Optimise an image [3, H, W] in [0, 1] to match content's and style's features (on encoder's device)."""
    opts = opts or GatysOptions()
    check_options(opts)
    if content.dim() != 3 or style.dim() != 3 or content.shape[0] != 3 or style.shape[0] != 3:
        raise GatysError(f"expected [3, H, W] images, got content {tuple(content.shape)}, style {tuple(style.shape)}")
    style_layers = list(opts.style_layers)
    layer_weights = [1.0] * len(style_layers) if opts.style_layer_weights is None else list(opts.style_layer_weights)
    param = next(encoder.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    content = content.to(device, torch.float32)
    style = style.to(device, torch.float32)

    with FeatureExtractor(encoder, [opts.content_layer, *style_layers]) as extract:
        with torch.no_grad():
            content_target = extract(content[None])[opts.content_layer].detach()
        style_grams = target_grams(extract, style[None], style_layers)
        image = content.clone() if opts.init == "content" else noise_init(content, opts.seed)
        image = image[None].contiguous().requires_grad_(True)

        history: list[dict] = []
        bar = tqdm(total=opts.iterations, desc=f"gatys {opts.optimizer}", disable=not progress, leave=False)

        def evaluate() -> torch.Tensor:
            with torch.no_grad():
                image.clamp_(0, 1)
            feats = extract(image)
            c = opts.content_weight * content_loss(feats[opts.content_layer], content_target)
            s = opts.style_weight * gram_target_loss(feats, style_grams, style_layers, layer_weights)
            tv = opts.tv_weight * total_variation(image) if opts.tv_weight else torch.zeros((), device=device)
            loss = c + s + tv
            if not torch.isfinite(loss):
                raise GatysError(
                    f"loss became {loss.item()} at iteration {len(history) + 1} "
                    f"(content {c.item():.4g}, style {s.item():.4g}, tv {tv.item():.4g}): "
                    "lower the learning rate or the style weight"
                )
            record = {"step": len(history) + 1, "loss": loss.item(), "content": c.item(),
                      "style": s.item(), "tv": tv.item()}
            history.append(record)
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.4g}", content=f"{record['content']:.4g}",
                            style=f"{record['style']:.4g}", refresh=False)
            return loss

        t0 = time.perf_counter()
        try:
            if opts.optimizer == "adam":
                optim = torch.optim.Adam([image], lr=opts.learning_rate())
                for _ in range(opts.iterations):
                    optim.zero_grad(set_to_none=True)
                    evaluate().backward()
                    optim.step()
            else:
                optim = torch.optim.LBFGS([image], lr=opts.learning_rate(), history_size=100)

                def closure() -> torch.Tensor:
                    optim.zero_grad(set_to_none=True)
                    loss = evaluate()
                    loss.backward()
                    return loss

                while len(history) < opts.iterations:
                    # One optimiser for the whole run (keeps its curvature history); each step is capped
                    # at a chunk of closure calls so the total is exactly `iterations`.
                    budget = min(LBFGS_EVALS_PER_STEP, opts.iterations - len(history))
                    optim.param_groups[0]["max_iter"] = budget
                    optim.param_groups[0]["max_eval"] = budget
                    optim.step(closure)
        finally:
            bar.close()
        seconds = time.perf_counter() - t0

    with torch.no_grad():
        result = image.detach().clamp(0, 1)[0].cpu()
    return GatysResult(image=result, history=history, seconds=seconds)
