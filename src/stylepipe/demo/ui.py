"""The demo's user interface, shared by the host and the OAK runners: the side-by-side frame with its
label, the live window, the style cycler its keys drive, and the style bank it cycles through."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from stylepipe.core.errors import InputError, StylepipeError
from stylepipe.nn.statistics import StatsOrigin


class DisplayError(StylepipeError, RuntimeError):
    """A live window was requested but there is no display to show it on."""


class StyleCycler:
    """Which of `names` is showing; `on_key` steps through them (n/right, p/left) or asks to quit (q)."""

    NEXT, PREVIOUS, QUIT = ("n", "right"), ("p", "left"), ("q", "escape")

    def __init__(self, names: list[str], index: int = 0) -> None:
        if not names:
            raise InputError("no styles to cycle through (the style bank is empty)")
        if not 0 <= index < len(names):
            raise InputError(f"style index {index} is out of range for {len(names)} styles")
        self.names, self.index = list(names), index

    @property
    def name(self) -> str:
        return self.names[self.index]

    def on_key(self, key: str | None) -> str | None:
        """'quit', 'switch' (index changed) or None for any other key."""
        if key in self.QUIT:
            return "quit"
        step = 1 if key in self.NEXT else -1 if key in self.PREVIOUS else 0
        if not step or len(self.names) == 1:
            return None
        self.index = (self.index + step) % len(self.names)
        return "switch"


def load_bank(bank_path: Path, model: StatsOrigin | None = None) -> dict[str, Any]:
    """The style bank as numpy: names, mean and std [S, C, 1, 1] float32, their channel count C, and the
    palettes [S, 3, Q] (None when the model does not match palettes); with `model`, the bank must fit
    it (an error names the file and both sides)."""
    from stylepipe.nn.statistics import StyleBank

    bank = StyleBank.load_trained(bank_path, model)
    palette = None if bank.palette is None else bank.palette.numpy()
    return {"names": bank.names, "mean": bank.mean.numpy(), "std": bank.std.numpy(),
            "channels": bank.origin.channels, "palette": palette}


def compose(original: np.ndarray, stylised: np.ndarray, text: str) -> np.ndarray:
    """Side by side (original | stylised) with `text` drawn top-left on a dark box."""
    canvas = Image.fromarray(np.concatenate([original, stylised], axis=1))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=max(10, canvas.height // 18))
    x0, y0, x1, y1 = draw.textbbox((4, 4), text, font=font)
    draw.rectangle((x0 - 2, y0 - 2, x1 + 2, y1 + 2), fill=(0, 0, 0))
    draw.text((4, 4), text, fill=(255, 255, 0), font=font)
    return np.asarray(canvas)


class Display:
    """A matplotlib window showing frames; `key()` returns the last key pressed (or None)."""

    def __init__(self, title: str) -> None:
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise DisplayError("a live window was requested but no display is available (DISPLAY is unset): "
                               "record to a file instead")  # fmt: skip
        import matplotlib.pyplot as plt

        self.plt = plt
        self.fig, ax = plt.subplots(num=title)
        ax.axis("off")
        self.image: Any = None
        self.ax, self._key = ax, None
        self.fig.canvas.mpl_connect("key_press_event", self._on_key)
        plt.show(block=False)

    def _on_key(self, event: Any) -> None:
        self._key = event.key

    def show(self, frame: np.ndarray) -> None:
        if self.image is None:
            self.image = self.ax.imshow(frame)
        else:
            self.image.set_data(frame)
        self.plt.pause(0.001)

    def key(self) -> str | None:
        key, self._key = self._key, None
        return key

    @property
    def open(self) -> bool:
        return self.plt.fignum_exists(self.fig.number)
