"""Training progress: a line at a steady interval when the output is not a terminal, a bar when it is."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from torch import nn

from stylepipe.core.config import Common, TrainAdain
from stylepipe.core.runtime import resolve_runtime
from stylepipe.train.loop import fit
from stylepipe.train.progress import Progress, duration


class Clock:
    """A hand-moved clock: the test decides how many seconds each step takes."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run(stream: io.StringIO, clock: Clock, *, start: int = 0, total: int = 100, enabled: bool = True) -> Progress:
    """Steps start+1..total at 2 steps/s, a log step every 10 steps with loss 1 / step."""
    progress = Progress("train_adain", start, total, stream=stream, enabled=enabled, every_s=30, clock=clock)
    for step in range(start + 1, total + 1):
        clock.now += 0.5
        progress.advance(step)
        if step % 10 == 0:
            progress.logged(step, 1 / step)
    progress.close()
    return progress


def test_off_a_terminal_a_line_every_interval_with_step_loss_speed_and_eta() -> None:
    out, clock = io.StringIO(), Clock()
    _run(out, clock)
    lines = out.getvalue().splitlines()
    # 50 s of training, logged every 5 s, a line when 30 s passed since the last: steps 10, 70, and the last
    assert lines == [
        "train_adain: step 10/100 (10%), loss 0.1, 2 steps/s, ETA 45 s",
        "train_adain: step 70/100 (70%), loss 0.01429, 2 steps/s, ETA 15 s",
        "train_adain: step 100/100 (100%), loss 0.01, 2 steps/s, done in 50 s",
    ]


def test_a_resumed_run_counts_only_its_own_steps_in_the_speed() -> None:
    out, clock = io.StringIO(), Clock()
    _run(out, clock, start=60)
    assert out.getvalue().splitlines()[0] == "train_adain: step 70/100 (70%), loss 0.01429, 2 steps/s, ETA 15 s"


def test_on_a_terminal_a_bar_and_no_lines() -> None:
    out, clock = Terminal(), Clock()
    _run(out, clock)
    text = out.getvalue()
    assert "100/100" in text and "loss=0.01" in text
    assert "steps/s, ETA" not in text


def test_other_processes_print_nothing_but_still_get_rates() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress("train_adain", 0, 100, stream=out, enabled=False, clock=clock)
    clock.now += 5
    progress.advance(10)
    assert progress.logged(10, 0.5) == {"steps_per_s": 2.0, "eta_s": 45.0}
    assert out.getvalue() == ""


@pytest.mark.parametrize(("seconds", "text"), [(0, "0 s"), (59.6, "1 min 0 s"), (200, "3 min 20 s"),
                                                (7500, "2 h 5 min")])
def test_durations_read_as_a_person_says_them(seconds: float, text: str) -> None:
    assert duration(seconds) == text


class _Scale:
    """The smallest TrainTask: one weight pulled towards 2."""

    def __init__(self) -> None:
        self.module = nn.Linear(1, 1, bias=False)

    def trainable(self) -> nn.Module:
        return self.module

    def losses(self, content: torch.Tensor, style: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": ((self.module.weight - 2) ** 2).sum()}

    def with_module(self, module: nn.Module) -> _Scale:
        return self


def test_the_loop_reports_progress_and_hands_the_tracker_its_rates_but_not_the_loss_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = TrainAdain(iterations=6, batch_size=1, crop=16, lr=0.1, checkpoint_every=3, log_every=2, image_every=100)
    logged: list[dict[str, float]] = []
    batch = (torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4))
    result = fit(_Scale(), cfg, resolve_runtime(Common(device="cpu")), lambda chunk: iter(lambda: batch, None),
                 tmp_path / "ckpt", "h", on_log=lambda step, row: logged.append(row), label="train_test")
    lines = capsys.readouterr().out.splitlines()  # captured: not a terminal, so lines, not a bar
    assert lines[0].startswith("train_test: step 2/6 (33%), loss ") and ", ETA " in lines[0]
    assert lines[-1].startswith("train_test: step 6/6 (100%), loss ") and ", done in " in lines[-1]
    assert [row["step"] for row in logged] == [2, 4, 6]
    assert all(row["steps_per_s"] > 0 and row["eta_s"] >= 0 for row in logged) and logged[-1]["eta_s"] == 0
    assert all("steps_per_s" not in row and "eta_s" not in row for row in result.history)
