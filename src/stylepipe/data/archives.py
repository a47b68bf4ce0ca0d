"""Safe extraction of zip and tar archives: no absolute paths, no `..`, no links or device files, and
a cap on the total uncompressed size checked from the headers and enforced while streaming."""

from __future__ import annotations

import json
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import IO

from stylepipe.errors import InputError

CHUNK = 1 << 20


class UnsafeArchiveError(InputError):
    """The archive contains a member that must not be extracted, or is too large."""


def is_archive(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith((".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz"))


def _safe_name(archive: Path, name: str) -> PurePosixPath:
    """Validate a member name; return it as a relative POSIX path."""
    norm = name.replace("\\", "/")
    p = PurePosixPath(norm)
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":") or p.is_absolute():
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path")
    if ".." in p.parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} escapes the target directory ('..')")
    if "\x00" in norm:
        raise UnsafeArchiveError(f"{archive}: member {name!r} has a NUL byte in its name")
    return PurePosixPath(*[part for part in p.parts if part not in ("", ".")])


def _check_total(archive: Path, total: int, limit: int, member: str) -> None:
    if total > limit:
        raise UnsafeArchiveError(
            f"{archive}: uncompressed size exceeds the limit of {limit} bytes at member {member!r}"
        )


def _copy_limited(src: IO[bytes], dst: Path, archive: Path, member: str, budget: int) -> int:
    """Stream src to dst; raise when more than `budget` bytes come out. Return bytes written."""
    written = 0
    with open(dst, "wb") as f:
        while chunk := src.read(CHUNK):
            written += len(chunk)
            if written > budget:
                raise UnsafeArchiveError(
                    f"{archive}: member {member!r} inflates beyond the size limit (zip bomb?)"
                )
            f.write(chunk)
    return written


def _zip_members(
    archive: Path, zf: zipfile.ZipFile, limit: int
) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    members, total = [], 0
    for info in zf.infolist():
        rel = _safe_name(archive, info.filename)
        mode = info.external_attr >> 16
        if mode and (stat.S_ISLNK(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode)):
            raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is a link or device file")
        total += info.file_size
        _check_total(archive, total, limit, info.filename)
        members.append((info, rel))
    return members


def _tar_members(
    archive: Path, tf: tarfile.TarFile, limit: int
) -> list[tuple[tarfile.TarInfo, PurePosixPath]]:
    members, total = [], 0
    for info in tf.getmembers():
        rel = _safe_name(archive, info.name)
        if info.issym() or info.islnk():
            raise UnsafeArchiveError(f"{archive}: member {info.name!r} is a symlink/hardlink")
        if not (info.isfile() or info.isdir()):
            raise UnsafeArchiveError(f"{archive}: member {info.name!r} is a device/fifo/special file")
        total += info.size
        _check_total(archive, total, limit, info.name)
        members.append((info, rel))
    return members


def safe_extract(
    archive: str | Path,
    dest: str | Path,
    max_bytes: int,
    on_bad_member: Callable[[str, str], None] | None = None,
) -> list[Path]:
    """Extract `archive` (zip or tar[.gz|.bz2|.xz]) into `dest`; return the extracted file paths.

    Every member is validated before anything is written (UnsafeArchiveError names the member).
    A member whose data is corrupt (bad CRC, truncated stream) is skipped and reported through
    `on_bad_member(name, reason)` when given, otherwise raised.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    out: list[Path] = []
    total = 0

    def extract_one(name: str, rel: PurePosixPath, is_dir: bool, opener: Callable[[], IO[bytes]]) -> None:
        nonlocal total
        target = dest.joinpath(*rel.parts) if rel.parts else dest
        if is_dir:
            target.mkdir(parents=True, exist_ok=True)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with opener() as src:
                total += _copy_limited(src, target, archive, name, max_bytes - total)
        except UnsafeArchiveError:
            target.unlink(missing_ok=True)
            raise
        except (zipfile.BadZipFile, zlib.error, EOFError, tarfile.TarError, OSError) as err:
            target.unlink(missing_ok=True)
            if on_bad_member is None:
                raise
            on_bad_member(name, f"corrupt archive member: {err}")
            return
        out.append(target)

    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info, rel in _zip_members(archive, zf, max_bytes):
                extract_one(info.filename, rel, info.is_dir(), lambda i=info: zf.open(i))
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            for tinfo, rel in _tar_members(archive, tf, max_bytes):
                extract_one(tinfo.name, rel, tinfo.isdir(), lambda i=tinfo: _tar_open(tf, i))
    else:
        raise UnsafeArchiveError(f"{archive}: not a zip or tar archive")
    return out


def _tar_open(tf: tarfile.TarFile, info: tarfile.TarInfo) -> IO[bytes]:
    f = tf.extractfile(info)
    if f is None:
        raise tarfile.TarError(f"cannot read member {info.name!r}")
    return f


def extract_to_cache(archive: Path, cache_root: Path, max_bytes: int,
                     on_bad_member: Callable[[str, str], None] | None = None) -> Path:
    """Extract once into cache_root/<archive name>/ (atomically); reuse when the archive is unchanged."""
    from stylepipe.io import atomic_dir, remove_stale_tmp

    target = cache_root / archive.name.replace(".", "_")
    st = archive.stat()
    stamp = f"{st.st_size}:{st.st_mtime_ns}\n"
    marker, bad_file = target / ".extracted", target / ".bad_members.json"
    if not (marker.is_file() and marker.read_text() == stamp):
        bad: list[list[str]] = []
        remove_stale_tmp(target)  # a half-extracted copy left by a killed run
        with atomic_dir(target) as tmp:
            safe_extract(archive, tmp, max_bytes, lambda name, why: bad.append([name, why]))
            (tmp / ".bad_members.json").write_text(json.dumps(bad))
            (tmp / ".extracted").write_text(stamp)
    if on_bad_member is not None and bad_file.is_file():
        for name, why in json.loads(bad_file.read_text()):
            on_bad_member(name, why)
    return target


__all__ = ["UnsafeArchiveError", "extract_to_cache", "is_archive", "safe_extract"]
