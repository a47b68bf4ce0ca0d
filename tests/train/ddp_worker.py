"""Run by tests/train/test_distributed.py under real torchrun: train a tiny AdaIN decoder with DDP on gloo.

Every process takes its slice of the same global batches; rank 0 saves the history and the weights.
    python -m torch.distributed.run --standalone --nproc_per_node N tests/train/ddp_worker.py OUT_DIR [LAYER WIDTH]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from stylepipe.adain.model import Decoder
from stylepipe.adain.train import AdainTask
from stylepipe.core.config import Common, TrainAdain
from stylepipe.core.runtime import resolve_runtime, seed_everything
from stylepipe.nn.encoders import build_encoder
from stylepipe.train.distributed import init_distributed, per_rank_batch, shutdown_distributed
from stylepipe.train.loop import fit

GLOBAL_BATCH = 4
CFG = TrainAdain(iterations=6, batch_size=GLOBAL_BATCH, crop=16, lr=1e-3, lr_decay=1e-3, checkpoint_every=3,
                 log_every=1, image_every=100, content_weight=1.0, style_weight=1.0)
# float32: bf16 autocast rounds a sum differently when the batch is split over processes, and the
# distributed tests compare the update itself with the single process's
FLOAT32 = Common(device="cpu", bf16=False)


LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")


def make_task(layer: str = "relu4_1", width: float = 1.0) -> AdainTask:
    """The AdaIN task at `layer` with a decoder of `width` (style layers up to `layer`)."""
    seed_everything(0)
    encoder = build_encoder("vgg16_hed", layer)
    decoder = Decoder("vgg16_hed", layer, width)
    decoder.calibrate(encoder.encode(torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(7))))
    return AdainTask(encoder, decoder, 1.0, 1.0, LAYERS[: LAYERS.index(layer) + 1])


def global_batches(chunk: int):
    """The same global batches in every process (and in the single-process reference)."""
    g = torch.Generator().manual_seed(1000 + chunk)
    while True:
        yield (torch.rand(GLOBAL_BATCH, 3, 16, 16, generator=g), torch.rand(GLOBAL_BATCH, 3, 16, 16, generator=g))


def rank_slices(rank: int, world: int):
    share = per_rank_batch(GLOBAL_BATCH, _env(rank, world), "train_adain")

    def batches(chunk: int):
        for content, style in global_batches(chunk):
            yield content[rank * share:(rank + 1) * share], style[rank * share:(rank + 1) * share]

    return batches


def _env(rank: int, world: int):
    from stylepipe.train.distributed import DistEnv

    return DistEnv(rank, world, rank)


def main(out: Path, layer: str, width: float) -> None:
    rt = resolve_runtime(FLOAT32)
    env = init_distributed("cpu")
    try:
        task = make_task(layer, width)
        result = fit(task, CFG, rt, rank_slices(env.rank, env.world_size), out / "ckpt", "h", dist_env=env)
        if env.is_main:
            torch.save(task.decoder.state_dict(), out / "decoder.pt")
            (out / "history.json").write_text(json.dumps({"history": result.history, "world_size": env.world_size,
                                                          "resumed_from": result.resumed_from}))
    finally:
        shutdown_distributed()


if __name__ == "__main__":
    main(Path(sys.argv[1]), *(sys.argv[2:3] or ["relu4_1"]), float(sys.argv[3]) if len(sys.argv) > 3 else 1.0)
