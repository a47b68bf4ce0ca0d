"""Data-parallel training under `torchrun`: process group, DDP wrapping, per-rank data, rank-0 duties.

`stylepipe train_adain` (or train_recon) with `common.nproc_per_node: N > 1` re-launches itself through
`torch.distributed.run` (torchrun); under torchrun every process trains a `batch_size / N` slice of
each global batch, DistributedDataParallel averages the gradients, and only rank 0 writes checkpoints,
outputs and MLflow records. Because every loss is a mean over its batch, the averaged gradient equals
the single-process gradient of the global batch: N processes give the same update per global batch.
Backends: NCCL on CUDA (one GPU per process), gloo on CPU (used by the tests).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from stylepipe.core.config import ConfigError

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = DistEnv()


def env_from_torchrun() -> DistEnv:
    """The rank layout torchrun exported, or a single process when not launched by torchrun."""
    if not all(v in os.environ for v in TORCHRUN_VARS):
        return SINGLE
    return DistEnv(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"]))


def init_distributed(device_type: str) -> DistEnv:
    """Join torchrun's process group (NCCL for CUDA, gloo for CPU); a no-op for a single process."""
    env = env_from_torchrun()
    if not env.enabled or dist.is_initialized():
        return env
    if device_type == "cuda":
        if torch.cuda.device_count() <= env.local_rank:
            raise ConfigError(
                f"torchrun started local rank {env.local_rank} but only {torch.cuda.device_count()} CUDA "
                "device(s) are visible: lower common.nproc_per_node"
            )
        torch.cuda.set_device(env.local_rank)
    dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return env


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def per_rank_batch(batch_size: int, env: DistEnv, key: str) -> int:
    """Each process's share of the global batch; the global batch must split evenly."""
    if batch_size % env.world_size:
        raise ConfigError(
            f"params {key}.batch_size={batch_size} does not split over {env.world_size} processes (torchrun's "
            "--nnodes x --nproc_per_node; on one machine common.nproc_per_node): make the batch size a "
            "multiple of the process count, or start fewer processes"
        )
    return batch_size // env.world_size


def wrap_ddp(module: torch.nn.Module, env: DistEnv, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel around the trainable module (returned unchanged for one process)."""
    if not env.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index if device.index is not None else env.local_rank] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)


def mean_across_ranks(values: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Average a tensor over all processes (for logged losses: one collective per log step)."""
    if env.enabled:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values /= env.world_size
    return values


def barrier(env: DistEnv) -> None:
    if env.enabled:
        dist.barrier()


def torchrun_argv(nproc: int, stage_args: list[str]) -> list[str]:
    """The command that re-runs `stylepipe <stage_args>` as `nproc` processes on this machine."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
        "-m", "stylepipe.cli", *stage_args,
    ]
