"""Training progress for a person: a bar on a terminal, a plain line at a steady interval everywhere else.

A log of `dvc repro > log`, CI, `nohup` or a SLURM job is not a terminal, so a bar would never show there;
it gets one line every `PROGRESS_EVERY_S` seconds instead (step, loss, steps/s, ETA), plus the first and
the last. The loss is the one the loop already brings to the host at its log steps, so progress adds no
host sync. The interval is how often a person is told, not a value the run computes with: it stays out of
params.yaml and so out of every checkpoint key.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from tqdm import tqdm

PROGRESS_EVERY_S = 30.0


def duration(seconds: float) -> str:
    """`2 h 5 min`, `3 min 20 s` or `42 s`: the two largest units, for a reader."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


class Progress:
    """Reports steps `start`..`total` of one training run to `stream` (nothing when not `enabled`)."""

    def __init__(
        self,
        label: str,
        start: int,
        total: int,
        *,
        stream: TextIO | None = None,
        enabled: bool = True,
        every_s: float = PROGRESS_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.start, self.total = label, start, total
        self.stream = stream if stream is not None else sys.stdout
        self.enabled, self.every_s, self.clock = enabled, every_s, clock
        self.t0 = clock()
        self.last_line: float | None = None
        terminal = enabled and self.stream.isatty()
        self.bar = tqdm(total=total, initial=start, desc=label, unit="step", file=self.stream, dynamic_ncols=True,
                        disable=not terminal)

    def rates(self, step: int) -> dict[str, float]:
        """Steps per second over this run so far (resumed steps excluded) and the seconds still to go."""
        elapsed = self.clock() - self.t0
        per_s = (step - self.start) / elapsed if elapsed > 0 else 0.0
        return {"steps_per_s": per_s, "eta_s": (self.total - step) / per_s if per_s > 0 else 0.0}

    def advance(self, step: int) -> None:
        """One optimiser step done: move the bar (a terminal only)."""
        self.bar.update(step - self.bar.n)

    def logged(self, step: int, loss: float) -> dict[str, float]:
        """A log step: the loss on the bar, or a line when one is due; returns the rates for the tracker."""
        rates = self.rates(step)
        if not self.enabled:
            return rates
        if not self.bar.disable:
            self.bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
            return rates
        now = self.clock()
        if self.last_line is None or now - self.last_line >= self.every_s or step == self.total:
            self.last_line = now
            print(self.line(step, loss, rates), file=self.stream, flush=True)
        return rates

    def line(self, step: int, loss: float, rates: dict[str, float]) -> str:
        """`train_adain: step 120/600 (20%), loss 3.412, 3.3 steps/s, ETA 2 min 25 s`."""
        share = 100 * step / self.total if self.total else 100.0
        speed = f"{rates['steps_per_s']:.3g} steps/s"
        tail = f"ETA {duration(rates['eta_s'])}" if step < self.total else f"done in {duration(self.clock() - self.t0)}"
        return f"{self.label}: step {step}/{self.total} ({share:.0f}%), loss {loss:.4g}, {speed}, {tail}"

    def close(self) -> None:
        self.bar.close()
