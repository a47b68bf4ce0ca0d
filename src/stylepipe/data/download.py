"""The download stage: the embedded sample (offline) or the remote files via aria2."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from stylepipe.core import paths
from stylepipe.core.config import ConfigError, Params
from stylepipe.core.io import atomic_dir, file_digest, write_json
from stylepipe.data.aria2 import download_files
from stylepipe.data.sample import write_sample

SOURCE_FILE = "SOURCE.json"


def _inventory(root: Path) -> list[dict[str, Any]]:
    """Every file under root (except SOURCE.json) with its size and sha256, sorted by path."""
    return [
        {"path": p.relative_to(root).as_posix(), "bytes": p.stat().st_size, "sha256": file_digest(p)}
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != SOURCE_FILE
    ]


def _remove_unlisted(out_dir: Path, keep: set[str]) -> None:
    """Drop entries of out_dir that are not part of this download (e.g. a previous sample)."""
    for p in out_dir.iterdir():
        if p.name in keep or p.name == SOURCE_FILE:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def run_download(params: Params, out_dir: Path = paths.RAW, progress: bool = True) -> dict[str, Any]:
    """Fill out_dir with the raw data and write out_dir/SOURCE.json; return a summary."""
    out_dir = Path(out_dir)
    cfg = params.download
    start = time.perf_counter()
    if cfg.source == "sample":
        with atomic_dir(out_dir) as tmp:
            counts = write_sample(tmp, cfg.sample)
            source = {"source": "sample", "sample": cfg.sample.model_dump(), "counts": counts,
                      "files": _inventory(tmp)}
            write_json(tmp / SOURCE_FILE, source)
    else:
        if not cfg.remote.files:
            raise ConfigError("download.source is 'remote' but download.remote.files is empty")
        out_dir.mkdir(parents=True, exist_ok=True)
        _remove_unlisted(out_dir, {f.name for f in cfg.remote.files})
        (out_dir / SOURCE_FILE).unlink(missing_ok=True)
        records = download_files(cfg.remote.files, out_dir, cfg.remote, progress=progress)
        urls = {f.name: f.urls for f in cfg.remote.files}
        files = [{k: v for k, v in r.items() if k != "skipped"} | {"urls": urls[r["name"]]} for r in records]
        source = {"source": "remote", "files": files}
        write_json(out_dir / SOURCE_FILE, source)
    summary = {k: v for k, v in source.items() if k != "files"}
    seconds = round(time.perf_counter() - start, 2)
    summary.update(out_dir=str(out_dir), files=len(source["files"]), seconds=seconds)
    return summary
