"""One training loop for every method: checkpoints, resume, NaN guard, logging without host syncs.

A method supplies a `TrainTask`: the module to optimise and a loss on a (content, style) batch. The loop
owns the optimiser (Adam), the learning-rate schedule (train/schedules.py), the data epochs,
checkpointing every N steps, MLflow logging every N steps and preview images.

Data is consumed in "chunks" of `checkpoint_every` steps, each drawn from the dataset re-seeded with
(seed, chunk index). A resumed run therefore sees exactly the batches an uninterrupted run would. A run
resumes only from the checkpoint of its key: the stage's params hash and the code the task runs (the
import closure of the task's module and of this loop, core.code.code_digest). A chunk is checkpointed
only when every loss of the chunk and every weight is finite, so a diverged model is never "the last
good checkpoint".

SIGTERM (SLURM's warning before a time limit) is held back to the end of the step it arrives in
(train/stopping.py): the loop then checkpoints the step it reached, with the losses not yet logged, and
the signal goes on. A run resumed there skips the chunk's batches it already trained on and restores
the RNG states after its loader starts, so it continues exactly as the uninterrupted run would have.

Under torchrun (train/distributed.py) each process runs this same loop on its slice of every global
batch with the trainable module wrapped in DistributedDataParallel; rank 0 alone checkpoints and calls
the logging/preview callbacks, and the logged losses are averaged over all processes. The processes
agree to stop at a log step (one more flag reduced there), so they all stop at the same step: a stop
then waits for at most `log_every` steps.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from stylepipe.core.code import PACKAGE, code_digest
from stylepipe.core.config import TrainBase
from stylepipe.core.errors import StylepipeError
from stylepipe.core.io import write_csv
from stylepipe.core.runtime import Runtime
from stylepipe.train.checkpoint import load_checkpoint, params_hash, save_checkpoint, set_rng_state
from stylepipe.train.distributed import SINGLE, DistEnv, barrier, mean_across_ranks, wrap_ddp
from stylepipe.train.progress import Progress
from stylepipe.train.schedules import build_scheduler
from stylepipe.train.stopping import StopRequest, deferred_sigterm

Batch = tuple[torch.Tensor, torch.Tensor]


class TrainTask(Protocol):
    """What a method plugs into the loop."""

    def trainable(self) -> nn.Module: ...

    def losses(self, content: torch.Tensor, style: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named loss terms; the key 'loss' is the total that is optimised."""
        ...

    def with_module(self, module: nn.Module) -> TrainTask:
        """The same task computing its losses through `module` (the DDP wrapper of `trainable()`)."""
        ...


class NonFiniteLossError(StylepipeError, RuntimeError):
    """The loss or a weight became NaN/Inf; the last good checkpoint is kept."""


@dataclass
class LoopResult:
    steps: int
    resumed_from: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def final(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}


def fit(
    task: TrainTask,
    cfg: TrainBase,
    rt: Runtime,
    chunk_batches: Callable[[int], Iterator[Batch]],
    ckpt_dir: Path,
    phash: str,
    on_log: Callable[[int, dict[str, float]], None] | None = None,
    on_preview: Callable[[int], None] | None = None,
    dist_env: DistEnv = SINGLE,
    label: str = "train",
) -> LoopResult:
    """Train `task.trainable()` for cfg.iterations steps, resuming from a matching checkpoint.

    `chunk_batches` yields this process's batches (its slice of each global batch under torchrun). Progress
    (train/progress.py, headed `label`) goes to stdout; `on_log` gets each logged row with its
    `steps_per_s` and `eta_s`, which the history (the loss CSV) leaves out."""
    module = task.trainable()
    optimiser = torch.optim.Adam(module.parameters(), lr=cfg.lr, fused=rt.device.type == "cuda")
    scheduler = build_scheduler(optimiser, cfg)
    history: list[dict[str, float]] = []
    pending: list[dict[str, torch.Tensor]] = []
    start = 0
    key = checkpoint_key(task, phash)
    saved = load_checkpoint(ckpt_dir, key)
    if saved is not None:
        module.load_state_dict(saved["model"])
        optimiser.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        history = saved["history"]
        start = saved["step"]
        pending = [{k: v.to(rt.device) for k, v in terms.items()} for terms in saved.get("pending", [])]
        if start % cfg.checkpoint_every == 0:
            set_rng_state(saved["rng"])
    if dist_env.enabled:
        task = task.with_module(wrap_ddp(module, dist_env, rt.device))
    step_fn = make_step(task, rt)
    t0 = time.perf_counter()
    step = start
    progress = Progress(label, start, cfg.iterations, enabled=dist_env.is_main)
    with deferred_sigterm() as stop, contextlib.closing(progress):
        while step < cfg.iterations:
            chunk_start = step
            within = step % cfg.checkpoint_every
            batches = chunk_batches(step // cfg.checkpoint_every)
            if within:  # resumed where a stop left this chunk
                for _ in range(within):
                    next(batches)
                set_rng_state(saved["rng"])
            finite = torch.ones((), dtype=torch.bool, device=rt.device)
            stopping = False
            for _ in range(min(cfg.checkpoint_every - within, cfg.iterations - step)):
                content, style = next(batches)
                terms = step_fn(rt.to_device(content), rt.to_device(style), optimiser)
                finite &= torch.isfinite(terms["loss"]).all()  # on the device: no host sync per step
                scheduler.step()
                step += 1
                progress.advance(step)
                pending.append(terms)
                logged = step % cfg.log_every == 0 or step == cfg.iterations
                if logged:
                    row = _summarise(pending, step, scheduler.get_last_lr()[0], dist_env)
                    pending.clear()
                    if not math.isfinite(row["loss"]):
                        raise NonFiniteLossError(
                            f"loss became {row['loss']} by step {step}; the last good checkpoint in {ckpt_dir} "
                            "is kept — lower the learning rate or the loss weights and run the stage again"
                        )
                    history.append(row)
                    rates = progress.logged(step, row["loss"])
                    if on_log and dist_env.is_main:
                        on_log(step, {**row, **rates})
                if on_preview and dist_env.is_main and (step % cfg.image_every == 0 or step == cfg.iterations):
                    on_preview(step)
                stopping = _stop_now(stop, logged, dist_env, rt.device)
                if stopping:
                    break
            check_finite(module, finite, chunk_start, step, ckpt_dir)
            if dist_env.is_main:
                save_checkpoint(ckpt_dir, key, {
                    "model": module.state_dict(), "optimizer": optimiser.state_dict(),
                    "scheduler": scheduler.state_dict(), "step": step, "params_hash": phash, "history": history,
                    "pending": [{k: v.cpu() for k, v in terms.items()} for terms in pending],
                })
            if stopping:
                break
            barrier(dist_env)
    return LoopResult(steps=step, resumed_from=start, seconds=time.perf_counter() - t0, history=history)


def _stop_now(stop: StopRequest, logged: bool, dist_env: DistEnv, device: torch.device) -> bool:
    """Whether to stop after this step: at once for one process; under torchrun at a log step, when any
    process got the signal (every process then stops at the same step, ready to resume together)."""
    if not dist_env.enabled:
        return stop.requested()
    if not logged:
        return False
    flag = torch.tensor([float(stop.requested())], device=device)
    return bool(mean_across_ranks(flag, dist_env).item() > 0)


def checkpoint_key(task: TrainTask, phash: str) -> str:
    """The stage's params hash combined with a digest of the code the task runs (its module's import
    closure and this loop's), so a checkpoint is reused only by the code that wrote it."""
    roots = [m for m in (type(task).__module__, __name__) if m == PACKAGE or m.startswith(f"{PACKAGE}.")]
    return params_hash(phash, code_digest(roots))


def check_finite(module: nn.Module, losses_finite: torch.Tensor, first: int, last: int, ckpt_dir: Path) -> None:
    """Raise NonFiniteLossError when a loss of steps first+1..last or a weight is NaN/Inf (one host sync)."""
    weights_finite = torch.stack([torch.isfinite(p).all() for p in module.parameters()]).all()
    if not bool(losses_finite & weights_finite):
        what = "the weights" if bool(losses_finite) else "the loss"
        raise NonFiniteLossError(
            f"{what} became NaN/Inf between steps {first + 1} and {last}; the last good checkpoint in {ckpt_dir} "
            "is kept — lower the learning rate or the loss weights and run the stage again"
        )


def make_step(task: TrainTask, rt: Runtime) -> Callable[..., dict[str, torch.Tensor]]:
    """One optimiser step (compiled loss on CUDA by default); returns the detached loss terms."""
    losses = rt.compiled(task.losses)

    def step(content: torch.Tensor, style: torch.Tensor, optimiser: torch.optim.Optimizer) -> dict:
        optimiser.zero_grad(set_to_none=True)
        with rt.autocast():
            terms = losses(content, style)
        terms["loss"].backward()
        optimiser.step()
        return {k: v.detach() for k, v in terms.items()}

    return step


def _summarise(
    pending: list[dict[str, torch.Tensor]], step: int, lr: float, dist_env: DistEnv = SINGLE
) -> dict[str, float]:
    """Average the terms since the last log on the device (and over processes), then one host sync."""
    keys = pending[0].keys()
    stacked = torch.stack([torch.stack([p[k].float() for k in keys]) for p in pending]).mean(0)
    stacked = mean_across_ranks(stacked, dist_env).cpu()
    row = {k: float(v) for k, v in zip(keys, stacked.tolist(), strict=True)}
    return {"step": float(step), "lr": lr, **row}


def write_history(path: Path, history: list[dict[str, float]]) -> None:
    """Loss curve as CSV (one row per log step) for `dvc plots` and the report."""
    if not history:
        return
    write_csv(path, [{k: (int(v) if k == "step" else float(v)) for k, v in row.items()} for row in history])
