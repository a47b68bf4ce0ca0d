"""SIGTERM during training (SLURM's warning before a time limit): the loop finishes the step it is in,
checkpoints that step, and the run resumed from it ends exactly as an uninterrupted run."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

from stylepipe.cli import Terminated, sigterm_as_interrupt
from stylepipe.train.checkpoint import list_checkpoints
from stylepipe.train.loop import fit
from stylepipe.train.stopping import deferred_sigterm

from .test_training import RT, _adain_task, _batches, _cfg

# chunks of 4 steps, a log row every 2: a stop after step 3 falls inside a chunk and between log rows
CFG = _cfg(iterations=8, checkpoint_every=4, log_every=2)


def _terminated_before(batch: int):
    """The batches of `_batches`, with SIGTERM sent to this process as batch number `batch` is drawn
    (counted over the whole run), i.e. while the step before it is done and that step is under way."""
    drawn = 0

    def chunk_batches(chunk: int):
        nonlocal drawn
        for pair in _batches(chunk):
            drawn += 1
            if drawn == batch:
                os.kill(os.getpid(), signal.SIGTERM)
            yield pair

    return chunk_batches


def _weights(task) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in task.trainable().state_dict().items()}


def test_sigterm_checkpoints_the_step_reached_and_the_resumed_run_matches(tmp_path: Path):
    reference_task = _adain_task(layer="relu3_1", width=0.5)
    reference = fit(reference_task, CFG, RT, _batches, tmp_path / "a", "hash")

    with pytest.raises(Terminated), sigterm_as_interrupt():
        fit(_adain_task(layer="relu3_1", width=0.5), CFG, RT, _terminated_before(3), tmp_path / "b", "hash")
    [saved] = list_checkpoints(tmp_path / "b")
    payload = torch.load(saved, weights_only=True)
    assert payload["step"] == 3 and len(payload["pending"]) == 1  # step 3's losses wait for the row of step 4

    resumed_task = _adain_task(decoder_seed=123, layer="relu3_1", width=0.5)
    resumed = fit(resumed_task, CFG, RT, _batches, tmp_path / "b", "hash")
    assert resumed.resumed_from == 3
    assert [r["step"] for r in resumed.history] == [r["step"] for r in reference.history]
    for key in ("lr", "loss"):
        assert [r[key] for r in resumed.history] == pytest.approx([r[key] for r in reference.history], rel=1e-6)
    expected, got = _weights(reference_task), _weights(resumed_task)
    assert all(torch.allclose(expected[k], got[k], rtol=1e-6, atol=1e-7) for k in expected)


def test_sigterm_at_a_chunk_boundary_resumes_from_that_checkpoint(tmp_path: Path):
    with pytest.raises(Terminated), sigterm_as_interrupt():
        fit(_adain_task(layer="relu3_1", width=0.5), CFG, RT, _terminated_before(4), tmp_path / "c", "hash")
    resumed = fit(_adain_task(layer="relu3_1", width=0.5), CFG, RT, _batches, tmp_path / "c", "hash")
    assert resumed.resumed_from == 4 and resumed.steps == 8


def test_a_held_back_sigterm_reaches_the_previous_handler_when_the_block_ends():
    seen: list[int] = []

    def handler(signum, frame):
        seen.append(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        with deferred_sigterm() as stop:
            os.kill(os.getpid(), signal.SIGTERM)
            assert stop.requested() and seen == []
        assert seen == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is handler
    finally:
        signal.signal(signal.SIGTERM, previous)
