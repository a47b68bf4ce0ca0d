"""Helpers for the data tests: a small Range-capable HTTP server and image fixtures."""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image

from stylepipe.data.shards import ShardStore, ShardWriter


@dataclass
class ServerState:
    """Files served by path, plus knobs: drop the connection after N body bytes; throttle to N bytes/s."""

    files: dict[str, bytes] = field(default_factory=dict)
    drop_after: int | None = None
    bytes_per_s: int | None = None
    ranges: list[str] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)  # first byte of every GET body (0 without Range)
    requests: list[str] = field(default_factory=list)
    served: int = 0  # body bytes sent, over all requests


def _handler(state: ServerState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _send(self, head_only: bool) -> None:
            state.requests.append(self.path)
            data = state.files.get(self.path)
            if data is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start, end = 0, len(data) - 1
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes="):
                state.ranges.append(rng)
                a, _, b = rng[6:].partition("-")
                start = int(a) if a else 0
                end = min(int(b), end) if b else end
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            else:
                self.send_response(200)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(end - start + 1))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            if head_only:
                return
            state.starts.append(start)
            body = data[start : end + 1]
            if state.drop_after is not None and start < state.drop_after:
                self.wfile.write(body[: state.drop_after - start])
                state.served += len(body[: state.drop_after - start])
                self.wfile.flush()
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(2)
                return
            self._write(body)

        def _write(self, body: bytes) -> None:
            with contextlib.suppress(ConnectionError):  # the client went away (killed daemon)
                if state.bytes_per_s is None:
                    self.wfile.write(body)
                    state.served += len(body)
                    return
                step = max(1, state.bytes_per_s // 20)
                for i in range(0, len(body), step):
                    if state.bytes_per_s is None:  # throttle lifted mid-transfer
                        self.wfile.write(body[i:])
                        state.served += len(body) - i
                        return
                    self.wfile.write(body[i : i + step])
                    state.served += len(body[i : i + step])
                    time.sleep(0.05)

        def do_GET(self) -> None:
            self._send(False)

        def do_HEAD(self) -> None:
            self._send(True)

    return Handler


@contextlib.contextmanager
def http_server(state: ServerState) -> Iterator[str]:
    """Serve `state` on 127.0.0.1:<free port> in a thread; yield the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def photo(w: int, h: int, seed: int = 0) -> Image.Image:
    """A smooth random RGB test image."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (w + h)], -1)
    arr = np.clip(base + rng.normal(0, 10, (h, w, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def jpeg(img: Image.Image, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


def write_coco_json(path: Path, file_names: list[str], sizes: list[tuple[int, int]]) -> None:
    images = [{"id": i + 1, "file_name": n, "width": w, "height": h}
              for i, (n, (w, h)) in enumerate(zip(file_names, sizes, strict=True))]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"info": {}, "licenses": [], "images": images, "annotations": [],
                                "categories": [{"id": 1, "name": "x", "supercategory": "x"}]}))


def make_params(**sections: object) -> object:
    """The repo's params.yaml with some sections replaced (pydantic section objects)."""
    from stylepipe.core.config import load_params

    root = Path(__file__).resolve().parents[1]
    return load_params(root / "params.yaml").model_copy(update=sections)


def _png(img: Image.Image, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", **kw)
    return buf.getvalue()


def build_raw(raw: Path) -> dict[str, str]:
    """A tiny raw dataset in the download layout; returns {file name: expected outcome}."""
    img_dir = raw / "coco" / "images"
    img_dir.mkdir(parents=True)
    files: dict[str, bytes] = {}
    files["good.jpg"] = jpeg(photo(200, 120, 1))
    files["small_ok.jpg"] = jpeg(photo(48, 40, 2))  # smaller than short_side: kept as is
    files["tiny.jpg"] = jpeg(photo(20, 16, 3))  # below min_side: rejected
    files["truncated.jpg"] = jpeg(photo(160, 160, 4))[:900]
    files["empty.jpg"] = b""
    files["cmyk.jpg"] = jpeg(Image.new("CMYK", (100, 80), (255, 0, 0, 0)))
    grey = Image.fromarray(np.full((90, 70), 100, np.uint8), "L")
    files["grey.png"] = _png(grey)
    rgba = np.zeros((80, 80, 4), np.uint8)
    rgba[:, :40] = (255, 0, 0, 0)  # fully transparent left half -> white
    rgba[:, 40:] = (0, 0, 255, 255)
    files["rgba.png"] = _png(Image.fromarray(rgba, "RGBA"))
    pal = photo(90, 90, 5).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    buf = io.BytesIO()
    pal.save(buf, "GIF")
    files["palette.gif"] = buf.getvalue()
    files["deep16.png"] = _png(Image.fromarray(np.full((70, 90), 32896, np.uint16)))  # 32896/257 = 128
    for name, data in files.items():
        (img_dir / name).write_bytes(data)
    names = [*files, "missing.jpg"]
    write_coco_json(raw / "coco" / "annotations" / "instances_train.json", names, [(10, 10)] * len(names))
    for style, n in (("StyleA", 3), ("StyleB", 2)):
        d = raw / "wikiart" / style
        d.mkdir(parents=True)
        for k in range(n):
            (d / f"artist_{style.lower()}-{k}.jpg").write_bytes(jpeg(photo(150, 100 + 10 * k, 10 + k)))
    (raw / "wikiart" / "StyleB" / "broken.jpg").write_bytes(b"not an image at all")
    return {"tiny.jpg": "too small", "truncated.jpg": "truncated", "empty.jpg": "empty",
            "missing.jpg": "missing", "broken.jpg": "not a recognised image"}


def shard_store(path: Path, items: list[tuple[str, str | None, tuple[int, int]]]) -> ShardStore:
    """A shard store at `path` of seeded JPEG photos, one per (split, label, (width, height)) item."""
    with ShardWriter(path, shard_max_bytes=3_000) as w:
        for k, (split, label, (width, height)) in enumerate(items):
            w.add(jpeg(photo(width, height, k)), id=f"img{k}", source="t", split=split, label=label,
                  width=width, height=height)
    return ShardStore(path)
