"""Safe extraction of zip and tar archives: no absolute paths, no `..`, no links or device files, a cap
on the member count and on the total uncompressed size (checked from the headers and enforced while
streaming). Deflate64 members (Windows' compressor for large files; zipfile reads none) are inflated with
inflate64. Members that cannot be extracted as they stand (encrypted, an unsupported compression method,
a name the file system cannot hold, a file where an earlier member made a folder or the reverse) are
skipped and reported, the rest of the archive is extracted."""

from __future__ import annotations

import io
import json
import lzma
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

import inflate64

from stylepipe.core.errors import InputError

CHUNK = 1 << 20
DEFAULT_MAX_MEMBERS = 1_000_000  # params preprocess.max_archive_members
NAME_MAX = 255  # bytes per path component (ext4, xfs, btrfs, tmpfs)
PATH_MAX = 4096  # bytes of a whole path, the extraction folder included
ZIP_DEFLATE64 = 9
ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2",
               zipfile.ZIP_LZMA: "lzma", ZIP_DEFLATE64: "Deflate64"}  # zipfile's own, and Deflate64 here
LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # a zip member's local header, before its data
ZIP_METHOD_NAMES = {9: "Deflate64", 12: "bzip2", 14: "LZMA", 93: "Zstandard", 95: "xz", 98: "PPMd", 99: "AES"}


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


@dataclass
class Member:
    """One archive member as it will be extracted: its name in the archive, its relative path, whether it
    is a folder, and why it must be skipped (None: it can be extracted)."""

    name: str
    rel: PurePosixPath
    is_dir: bool
    info: zipfile.ZipInfo | tarfile.TarInfo
    problem: str | None = None


class Deflate64Member(io.RawIOBase):
    """A Deflate64 zip member's data, inflated as it is read and checked against its CRC-32 and size at
    the end (a mismatch is BadZipFile, as zipfile reports its own members)."""

    def __init__(self, archive: Path, info: zipfile.ZipInfo) -> None:
        super().__init__()
        self._info = info
        self._file = open(archive, "rb")  # noqa: SIM115 (closed by close())
        self._file.seek(info.header_offset)
        header = LOCAL_HEADER.unpack(self._file.read(LOCAL_HEADER.size))
        if header[0] != b"PK\x03\x04":
            raise zipfile.BadZipFile(f"bad local header of {info.filename!r}")
        self._file.seek(header[-2] + header[-1], io.SEEK_CUR)  # the member's name and extra field
        self._left = info.compress_size
        self._inflater = inflate64.Inflater()
        self._pending = b""
        self._crc = self._size = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while not self._pending and self._left > 0:
            chunk = self._file.read(min(CHUNK, self._left))
            if not chunk:
                raise EOFError(f"{self._info.filename!r}: the archive ends inside this member")
            self._left -= len(chunk)
            self._pending = self._inflater.inflate(chunk)
            self._crc = zlib.crc32(self._pending, self._crc)
            self._size += len(self._pending)
        if not self._pending:
            self._verify()
            return b""
        size = len(self._pending) if size is None or size < 0 else size
        out, self._pending = self._pending[:size], self._pending[size:]
        return out

    def _verify(self) -> None:
        if self._size != self._info.file_size or self._crc != self._info.CRC:
            raise zipfile.BadZipFile(f"Bad CRC-32 or size for file {self._info.filename!r}")

    def close(self) -> None:
        self._file.close()
        super().close()


def _open_zip_member(archive: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> IO[bytes]:
    return Deflate64Member(archive, info) if info.compress_type == ZIP_DEFLATE64 else zf.open(info)


def _check_count(archive: Path, count: int, max_members: int) -> None:
    if count > max_members:
        raise UnsafeArchiveError(f"{archive}: {count} members exceed the limit of {max_members} "
                                 "(preprocess.max_archive_members)")


def _zip_problem(info: zipfile.ZipInfo) -> str | None:
    """Why zipfile cannot read this member, or None."""
    if info.flag_bits & 0x1:
        return "encrypted (password-protected) member: extract it by hand with its password"
    if info.compress_type not in ZIP_METHODS:
        method = ZIP_METHOD_NAMES.get(info.compress_type, f"method {info.compress_type}")
        return f"compressed with {method}, which cannot be read here: re-pack the archive with Deflate"
    return None


def _zip_members(archive: Path, zf: zipfile.ZipFile, limit: int, max_members: int) -> list[Member]:
    infos = zf.infolist()
    _check_count(archive, len(infos), max_members)
    members, total = [], 0
    for info in infos:
        rel = _safe_name(archive, info.filename)
        mode = info.external_attr >> 16
        if mode and (stat.S_ISLNK(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode)):
            raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is a link or device file")
        total += info.file_size
        _check_total(archive, total, limit, info.filename)
        members.append(Member(info.filename, rel, info.is_dir(), info, _zip_problem(info)))
    return members


def _tar_members(archive: Path, tf: tarfile.TarFile, limit: int, max_members: int) -> list[Member]:
    members, total = [], 0
    for info in tf:  # streamed: the count is checked before the whole member list is in memory
        _check_count(archive, len(members) + 1, max_members)
        rel = _safe_name(archive, info.name)
        if info.issym() or info.islnk():
            raise UnsafeArchiveError(f"{archive}: member {info.name!r} is a symlink/hardlink")
        if not (info.isfile() or info.isdir()):
            raise UnsafeArchiveError(f"{archive}: member {info.name!r} is a device/fifo/special file")
        total += info.size
        _check_total(archive, total, limit, info.name)
        members.append(Member(info.name, rel, info.isdir(), info))
    return members


def _name_problem(rel: PurePosixPath, is_dir: bool, dest: Path) -> str | None:
    if not rel.parts and not is_dir:
        return "a file without a name (the member is called '.' or '/')"
    long_part = next((part for part in rel.parts if len(part.encode()) > NAME_MAX), None)
    if long_part is not None:
        return f"a path component of {len(long_part.encode())} bytes (the file system allows {NAME_MAX})"
    length = len(str(dest.joinpath(*rel.parts)).encode())
    if length > PATH_MAX:
        return f"a path of {length} bytes once extracted (the file system allows {PATH_MAX})"
    return None


def _mark_layout_problems(members: list[Member], dest: Path) -> None:
    """Mark members that cannot be placed: bad names, and a file and a folder of the same path (the
    earlier member wins: `a` then `a/b`, or the folder `a/` then a file `a`)."""
    files: set[PurePosixPath] = set()
    dirs: set[PurePosixPath] = set()
    dest = dest.resolve()
    for m in members:
        m.problem = m.problem or _name_problem(m.rel, m.is_dir, dest)
        if m.problem is not None:
            continue
        parents = [p for p in m.rel.parents if p.parts]
        blocked = next((p for p in parents if p in files), None)
        if blocked is not None:
            m.problem = f"needs {blocked.as_posix()!r} to be a folder, but an earlier member is a file of that name"
        elif m.is_dir and m.rel in files:
            m.problem = "a folder of the same name as an earlier file"
        elif not m.is_dir and m.rel in dirs:
            m.problem = "a file of the same name as an earlier folder"
        elif not m.is_dir and m.rel in files:
            m.problem = "a second member of the same name (the first one is kept)"
        else:
            (dirs if m.is_dir else files).add(m.rel)
            dirs.update(parents)


def safe_extract(
    archive: str | Path,
    dest: str | Path,
    max_bytes: int,
    on_bad_member: Callable[[str, str], None] | None = None,
    max_members: int = DEFAULT_MAX_MEMBERS,
) -> list[Path]:
    """Extract `archive` (zip or tar[.gz|.bz2|.xz]) into `dest`; return the extracted file paths.

    Every member is validated before anything is written (UnsafeArchiveError names the member).
    A member that cannot be extracted (see the module docstring) or whose data is corrupt (bad CRC,
    truncated stream) is skipped and reported through `on_bad_member(name, reason)` when given,
    otherwise raised as UnsafeArchiveError.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    out: list[Path] = []
    total = 0

    def skip(name: str, reason: str) -> None:
        if on_bad_member is None:
            raise UnsafeArchiveError(f"{archive}: member {name!r}: {reason}")
        on_bad_member(name, reason)

    def extract_all(members: list[Member], opener: Callable[[Member], IO[bytes]]) -> None:
        _mark_layout_problems(members, dest)
        for m in members:
            if m.problem is not None:
                skip(m.name, m.problem)
            else:
                extract_one(m.name, m.rel, m.is_dir, lambda m=m: opener(m))

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
        except (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, tarfile.TarError, OSError) as err:
            target.unlink(missing_ok=True)
            if isinstance(err, OSError) and err.errno is not None:
                raise  # the machine's (a full disk), not the member's: the CLI names it
            skip(name, f"corrupt archive member: {err}")
            return
        out.append(target)

    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            extract_all(_zip_members(archive, zf, max_bytes, max_members),
                        lambda m: _open_zip_member(archive, zf, m.info))
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            extract_all(_tar_members(archive, tf, max_bytes, max_members), lambda m: _tar_open(tf, m.info))
    else:
        raise UnsafeArchiveError(f"{archive}: not a zip or tar archive")
    return out


def _tar_open(tf: tarfile.TarFile, info: tarfile.TarInfo) -> IO[bytes]:
    f = tf.extractfile(info)
    if f is None:
        raise tarfile.TarError(f"cannot read member {info.name!r}")
    return f


def extract_to_cache(archive: Path, cache_root: Path, max_bytes: int,
                     on_bad_member: Callable[[str, str], None] | None = None,
                     max_members: int = DEFAULT_MAX_MEMBERS) -> Path:
    """Extract once into cache_root/<archive name>/ (atomically); reuse when the archive is unchanged."""
    from stylepipe.core.io import atomic_dir, remove_stale_tmp

    target = cache_root / archive.name.replace(".", "_")
    st = archive.stat()
    stamp = f"{st.st_size}:{st.st_mtime_ns}\n"
    marker, bad_file = target / ".extracted", target / ".bad_members.json"
    if not (marker.is_file() and marker.read_text() == stamp):
        bad: list[list[str]] = []
        remove_stale_tmp(target)  # a half-extracted copy left by a killed run
        with atomic_dir(target) as tmp:
            safe_extract(archive, tmp, max_bytes, lambda name, why: bad.append([name, why]), max_members)
            (tmp / ".bad_members.json").write_text(json.dumps(bad))
            (tmp / ".extracted").write_text(stamp)
    if on_bad_member is not None and bad_file.is_file():
        for name, why in json.loads(bad_file.read_text()):
            on_bad_member(name, why)
    return target


__all__ = ["UnsafeArchiveError", "extract_to_cache", "is_archive", "safe_extract"]
