"""Where AdaIN style statistics come from, and the check that they fit the model they feed.

Style statistics are the per-channel mean/std of one encoder's features at one layer. Fed to a model with
another encoder or AdaIN layer they re-normalise the content features to meaningless targets, or fail on
the channel count deep inside a graph; so every loader compares what a file records with the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stylepipe.models.adain import AdaINStylizer


@dataclass(frozen=True)
class StatsOrigin:
    """The channel count of a set of statistics, with the encoder and layer where known (None: a file
    that does not record them, or an exported graph that cannot say)."""

    channels: int
    encoder: str | None = None
    layer: str | None = None

    @classmethod
    def of(cls, model: AdaINStylizer) -> StatsOrigin:
        """What a model's AdaIN takes: its encoder, its layer and that layer's channel count."""
        return cls(model.channels, model.encoder.spec.name, model.layer)

    def describe(self) -> str:
        parts = [f"encoder {self.encoder!r}" if self.encoder else "", f"at {self.layer}" if self.layer else ""]
        known = " ".join(p for p in parts if p)
        return f"{known}, {self.channels} channels" if known else f"{self.channels} channels"

    def mismatch(self, model: StatsOrigin, source: str) -> str | None:
        """None when statistics of this origin fit `model`, else a message naming `source` and both sides.
        The encoder and layer are compared where both sides know them; the channel count always."""
        known_pairs = ((self.encoder, model.encoder), (self.layer, model.layer))
        differs = any(a is not None and b is not None and a != b for a, b in known_pairs)
        if not differs and self.channels == model.channels:
            return None
        return f"{source}: style statistics of {self.describe()}, but the model takes {model.describe()}"
