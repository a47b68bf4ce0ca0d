"""A sharded image store: encoded JPEGs appended to a few large `shard-NNNNN.bin` files plus a
`manifest.jsonl` (one JSON record per image), so DVC tracks a handful of files instead of 200k."""

from __future__ import annotations

import io
import json
import mmap
from pathlib import Path
from typing import Any

from PIL import Image

from stylepipe.core.errors import MissingInputError

MANIFEST = "manifest.jsonl"
RECORD_KEYS = ("id", "source", "split", "label", "width", "height", "shard", "offset", "length")


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.bin"


class ShardWriter:
    """Append encoded images to shards of at most `shard_max_bytes` (a single larger image gets its own
    shard); collect manifest records and write `manifest.jsonl` on close. Use inside io.atomic_dir."""

    def __init__(self, out_dir: str | Path, shard_max_bytes: int) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.shard_max_bytes = int(shard_max_bytes)
        self.records: list[dict[str, Any]] = []
        self._index = -1
        self._file: io.BufferedWriter | None = None
        self._size = 0

    def _next_shard(self) -> None:
        if self._file is not None:
            self._file.close()
        self._index += 1
        self._file = open(self.out_dir / shard_name(self._index), "wb")  # noqa: SIM115
        self._size = 0

    def write(self, data: bytes) -> tuple[int, int, int]:
        """Append `data`; return (shard, offset, length)."""
        if self._file is None or (self._size > 0 and self._size + len(data) > self.shard_max_bytes):
            self._next_shard()
        assert self._file is not None
        offset = self._size
        self._file.write(data)
        self._size += len(data)
        return self._index, offset, len(data)

    def add(self, data: bytes, **meta: Any) -> dict[str, Any]:
        """Write `data` and record it with its metadata (id, source, split, label, width, height)."""
        shard, offset, length = self.write(data)
        record = {k: meta.get(k) for k in RECORD_KEYS[:6]}
        record.update(shard=shard, offset=offset, length=length)
        self.records.append(record)
        return record

    def close(self) -> None:
        """Close the current shard and write the manifest."""
        if self._file is not None:
            self._file.close()
            self._file = None
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.records)
        (self.out_dir / MANIFEST).write_text(text)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ShardStore:
    """Read-only access to a shard directory; shards are memory-mapped lazily (safe across fork/pickle)."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        manifest = self.dir / MANIFEST
        if not manifest.is_file():
            raise MissingInputError(f"{manifest}: no shard manifest (run the preprocess stage)")
        self.records: list[dict[str, Any]] = [
            json.loads(line) for line in manifest.read_text().splitlines() if line.strip()
        ]
        self._maps: dict[int, mmap.mmap] = {}

    def __len__(self) -> int:
        return len(self.records)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_maps"] = {}
        return state

    def _map(self, shard: int) -> mmap.mmap:
        if shard not in self._maps:
            with open(self.dir / shard_name(shard), "rb") as f:
                self._maps[shard] = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        return self._maps[shard]

    def read_bytes(self, i: int) -> bytes:
        r = self.records[i]
        return self._map(r["shard"])[r["offset"] : r["offset"] + r["length"]]

    def read_image(self, i: int) -> Image.Image:
        """Decode image `i` as an RGB PIL image."""
        img = Image.open(io.BytesIO(self.read_bytes(i)))
        img.load()
        return img if img.mode == "RGB" else img.convert("RGB")  # no copy for the usual RGB JPEG

    def indices(self, split: str | None = None) -> list[int]:
        """Record indices of one split ("train"/"val"), or all when split is None."""
        return [i for i, r in enumerate(self.records) if split is None or r["split"] == split]

    @property
    def labels(self) -> list[str]:
        """Sorted distinct non-null labels."""
        return sorted({r["label"] for r in self.records if r["label"] is not None})

    def close(self) -> None:
        for m in self._maps.values():
            m.close()
        self._maps.clear()
