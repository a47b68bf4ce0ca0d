"""Data-parallel training under real torchrun (2 CPU processes, gloo): the same update per global batch
as one process, rank-0 checkpoints that resume, and per-rank data streams."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from stylepipe.adain.train import AdainTask
from stylepipe.core.runtime import resolve_runtime
from stylepipe.data.datasets import RandomPairs
from stylepipe.train.distributed import SINGLE, DistEnv, per_rank_batch, torchrun_argv
from stylepipe.train.loop import fit
from tests.conftest import ADAIN_DEPTHS, depth_id
from tests.data_fixtures import shard_store
from tests.train.ddp_worker import CFG, FLOAT32, global_batches, make_task

WORKER = Path(__file__).with_name("ddp_worker.py")
ROOT = Path(__file__).resolve().parents[2]


def worker_env() -> dict[str, str]:
    """The DDP worker imports tests.ddp_worker; one thread per process keeps 2 cores from thrashing."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1"}


def worker_args(out: Path, layer: str, width: float) -> list[str]:
    return [str(WORKER), str(out), layer, str(width)]


def _torchrun(nproc: int, out: Path, layer: str = "relu4_1", width: float = 1.0) -> dict:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           *worker_args(out, layer, width)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=worker_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "history.json").read_text())


@dataclass
class Reference:
    """One process training the worker's global batches: the history and the weights before and after."""

    history: list[dict]
    initial: dict[str, torch.Tensor]
    task: AdainTask


def single_process_reference(out: Path, depth: tuple[str, float]) -> Reference:
    task = make_task(*depth)
    initial = {k: v.clone() for k, v in task.decoder.state_dict().items()}
    result = fit(task, CFG, resolve_runtime(FLOAT32), global_batches, out, "h")
    return Reference(result.history, initial, task)


def assert_same_update(reference: Reference, ddp_out: Path) -> None:
    """The DDP run (history.json and decoder.pt in `ddp_out`) made the single process's update."""
    ddp = json.loads((ddp_out / "history.json").read_text())
    for key in ("loss", "content", "style", "lr"):
        want = [row[key] for row in reference.history]
        assert [row[key] for row in ddp["history"]] == pytest.approx(want, rel=1e-3), key
    # Adam turns float-rounding noise in near-zero gradients into +-lr steps on a few weights, so the
    # updates are compared as a whole: same direction, mean deviation far below the update itself
    ddp_weights = torch.load(ddp_out / "decoder.pt", weights_only=True)
    assert torch.equal(ddp_weights["input_scale"], reference.task.decoder.input_scale)  # a buffer, not trained
    for name, value in reference.task.decoder.named_parameters():
        value = value.detach()
        initial = reference.initial[name]
        want, got = (value - initial).flatten(), (ddp_weights[name] - initial).flatten()
        assert torch.nn.functional.cosine_similarity(got, want, dim=0) > 0.99, name
        assert (got - want).abs().mean() < 0.01 * want.abs().mean(), name


@pytest.mark.parametrize("depth", ADAIN_DEPTHS, ids=depth_id)
def test_two_processes_match_one_process_per_global_batch(tmp_path: Path, depth: tuple[str, float]):
    reference = single_process_reference(tmp_path / "single", depth)
    _torchrun(2, tmp_path / "ddp", *depth)
    assert_same_update(reference, tmp_path / "ddp")
    # rank 0 wrote the checkpoint: a second launch finds the run complete and resumes from step 6
    again = _torchrun(2, tmp_path / "ddp", *depth)
    assert again["resumed_from"] == CFG.iterations


def test_global_batch_must_split_over_processes():
    assert per_rank_batch(8, DistEnv(0, 4, 0), "train_adain") == 2
    with pytest.raises(ValueError, match=r"train_adain.batch_size=6 does not split over 4 processes"):
        per_rank_batch(6, DistEnv(1, 4, 1), "train_adain")


def test_each_rank_draws_its_own_stream_and_share(tmp_path: Path):
    content = shard_store(tmp_path / "content", [("train", None, (40, 40))] * 3)
    style = shard_store(tmp_path / "style", [("train", "A", (40, 40))] * 3)
    streams = []
    for rank in range(2):
        ds = RandomPairs(content, style, crop=16, seed=3, length=5, rank=rank, world_size=2)
        streams.append(list(ds.draws()))
    assert len(streams[0]) == len(streams[1]) == 5
    assert streams[0] != streams[1]
    with pytest.raises(ValueError, match=r"rank 2 is outside 0\.\.1"):
        RandomPairs(content, style, crop=16, rank=2, world_size=2)


def test_stage_relaunches_itself_through_torchrun():
    cmd = torchrun_argv(2, ["--params", "params.yaml", "train_adain"])
    assert cmd[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    assert cmd[-4:] == ["stylepipe.cli", "--params", "params.yaml", "train_adain"]
    assert not SINGLE.enabled and SINGLE.is_main


def test_decoding_on_the_device_yields_the_same_batches(tmp_path: Path):
    """`decode_on: device` (JPEG bytes from the workers, batch-decoded where the model runs) gives the
    pairs of the PIL path: same images, same crops, up to the JPEG decoders' rounding."""
    from stylepipe.core.config import TrainAdain
    from stylepipe.train.plumbing import chunk_loader

    content = shard_store(tmp_path / "content", [("train", None, (80, 60)), ("train", None, (64, 96))])
    style = shard_store(tmp_path / "style", [("train", "A", (70, 70)), ("train", "B", (90, 50))])
    base = dict(iterations=4, batch_size=2, crop=32, lr=1e-3, checkpoint_every=3, log_every=1, image_every=9,
                num_workers=2)
    cpu = torch.device("cpu")
    pil = list(chunk_loader((content, style), TrainAdain(**base), 5, cpu)(1))
    dev = list(chunk_loader((content, style), TrainAdain(**base, decode_on="device"), 5, cpu)(1))
    assert len(pil) == len(dev) == 3
    for (pc, ps), (dc, ds) in zip(pil, dev, strict=True):
        assert dc.shape == pc.shape == (2, 3, 32, 32) and dc.device == cpu
        assert (dc - pc).abs().mean() < 0.01 and (ds - ps).abs().mean() < 0.01
