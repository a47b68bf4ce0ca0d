"""SIGTERM held back to a step boundary, so that training can checkpoint the step it reached.

SLURM sends SIGTERM ahead of a job's time limit (`--signal`, or at the limit itself, KillWait seconds
before SIGKILL). Acting on it mid-step would leave the weights half-updated; `deferred_sigterm` records
the signal instead, the loop asks `requested()` after every step, writes a checkpoint and leaves its
block, and the signal then goes on to the handler that was in place (the CLI's, which unwinds the stage
as `Terminated`), or ends the process as SIGTERM does by default.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType


class StopRequest:
    """Whether SIGTERM arrived while the block ran."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def requested(self) -> bool:
        return self.signum is not None

    def record(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum


@contextlib.contextmanager
def deferred_sigterm() -> Iterator[StopRequest]:
    """Hold SIGTERM back for the block and deliver it when the block ends. Only the main thread takes
    signals, and an ignored SIGTERM stays ignored: there the block runs with a request that never comes."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is None or previous == signal.SIG_IGN:  # None: a handler set outside Python
        yield stop
        return
    signal.signal(signal.SIGTERM, stop.record)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)
        if stop.signum is not None:
            _deliver(previous, stop.signum)


def _deliver(handler: signal.Handlers | object, signum: int) -> None:
    """Pass a held-back signal to the handler it was meant for (the default one ends the process)."""
    if callable(handler):
        handler(signum, None)
    else:
        os.kill(os.getpid(), signum)
