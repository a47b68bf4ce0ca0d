"""Small I/O helpers shared by every stage: atomic writes, checksums, JSON, output directories.

Atomic writes are also durable: the data is fsynced before the rename and the directory after it, so a
power loss leaves either the old file or the complete new one, never an empty "finished" file. An output
directory is swapped in with one atomic exchange (renameat2 RENAME_EXCHANGE on Linux), so the old output
is deleted only once the new one is in place.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import hashlib
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

CHUNK = 1 << 20


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _umask()


def file_digest(path: str | os.PathLike[str], algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Flush a file's or a directory's data and metadata to the disk."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if Path(path).is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file and directory under root (root included), deepest first."""
    for dirpath, _dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            if not os.path.islink(os.path.join(dirpath, name)):
                fsync_path(os.path.join(dirpath, name))
        fsync_path(dirpath)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; if the block succeeds, flush it to disk and rename it into
    place (the directory entry flushed too). The temporary name carries the writer's PID, so the next
    write of `path` removes what a killed writer left without touching a live writer's file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_orphaned_tmp_files(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~UMASK)  # mkstemp creates 0600; give the usual permissions
        fsync_path(tmp_path)
        os.replace(tmp_path, path)
        fsync_path(path.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


DOWNLOAD_ERRORS = (urllib.error.URLError, TimeoutError, ConnectionError, OSError)  # what a failed download raises


def download_verified(url: str, dest: Path, verify: Callable[[Path], None], timeout_s: float = 60.0) -> None:
    """Stream `url` into `dest` through a temporary file that `verify` checks first: a download that
    fails or does not verify (`verify` raises) never replaces `dest`."""
    with urllib.request.urlopen(url, timeout=timeout_s) as resp, atomic_path(dest) as tmp:
        with open(tmp, "wb") as f:
            shutil.copyfileobj(resp, f, 1 << 20)
        verify(tmp)


def download_pinned(url: str, dest: Path, sha256: str, pin: str, error: type[Exception], hint: str = "",
                    timeout_s: float = 60.0) -> Path:
    """`dest` when it holds a file whose sha256 starts with `sha256` (a full digest, or the prefix that
    torchvision's file names carry), else `url` downloaded there, checked before it replaces anything.
    A failed download or another digest raises `error` naming the url and `pin` (the setting that pins
    it); `hint` (what to do instead) follows a failed download's reason."""
    expected = sha256.lower()
    if dest.is_file() and file_digest(dest).startswith(expected):
        return dest

    def verify(tmp: Path) -> None:
        digest = file_digest(tmp)
        if not digest.startswith(expected):
            raise error(f"{url}: sha256 {digest} of the download does not match the pinned {pin} {sha256}")

    try:
        download_verified(url, dest, verify, timeout_s)
    except error:
        raise
    except DOWNLOAD_ERRORS as err:
        raise error(f"{url}: download failed ({err})" + (f"; {hint}" if hint else "")) from None
    return dest


def read_torch(file: str | os.PathLike[str] | IO[bytes], what: str, error: type[Exception], source: str | None = None,
               hint: str = "", map_location: Any = "cpu") -> Any:
    """torch.load with weights_only=True: a file holds only tensors and plain values, never code it would
    run. A truncated or foreign file raises `error` naming `source` (default: the path) and `what` it should
    be, with `hint` (what to do about it) after the reason."""
    import torch  # here, not at the top: the CLI imports this module before it knows it needs torch

    try:
        return torch.load(file, map_location=map_location, weights_only=True)
    except Exception as err:  # pickle, zip and unpickler errors of many kinds
        name = source if source is not None else str(file)
        raise error(f"{name}: not a readable {what} ({err})" + (f"; {hint}" if hint else "")) from None


def write_torch(path: str | os.PathLike[str], obj: Any) -> None:
    """torch.save `obj` atomically, through a file object: given a path, torch names the archive's inner
    folder after the (temporary) file, so equal objects would give different bytes run to run and DVC would
    see a new output; through a file object the folder is always 'archive'."""
    import torch  # here, not at the top: the CLI imports this module before it knows it needs torch

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write JSON atomically (sorted keys, trailing newline) so DVC metrics diff cleanly."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def csv_cell(value: Any) -> str:
    """Floats to 6 significant digits (losses and metrics, readable and stable across platforms)."""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def write_csv(path: str | os.PathLike[str], rows: list[dict[str, Any]], fieldnames: list[str] | None = None) -> None:
    """Rows of dicts as CSV with a header, atomically (the columns: `fieldnames`, else the first row's keys)."""
    import csv

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames or list(rows[0]))
        writer.writeheader()
        writer.writerows({k: csv_cell(v) for k, v in row.items()} for row in rows)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


RENAME_EXCHANGE = 2  # linux/fs.h
AT_FDCWD = -100


def exchange_paths(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (renameat2 RENAME_EXCHANGE); False where the system or the
    filesystem cannot."""
    libc_name = ctypes.util.find_library("c")
    renameat2 = getattr(ctypes.CDLL(libc_name, use_errno=True), "renameat2", None) if libc_name else None
    if renameat2 is None:
        return False
    if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def _swap_into_place(tmp: Path, path: Path) -> None:
    """Put directory tmp at path. The old output leaves only once the new one is in place: one atomic
    exchange, or (where exchange is unsupported) the old moved aside, the new renamed in, the old
    restored if that fails. The old one ends at tmp's name, which the caller removes."""
    if not path.exists():
        os.replace(tmp, path)
        return
    if exchange_paths(tmp, path):
        return
    aside = tmp.with_name(f"{tmp.name.removesuffix('.tmp')}.old.tmp")  # remove_stale_tmp's pattern
    os.replace(path, aside)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.replace(aside, path)
        raise
    os.replace(aside, tmp)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Build a directory under a temporary name and swap it into place (flushed to disk) when the block
    succeeds; the old output is kept until then. Temporary directories of `path` that a killed run left
    behind are removed first (one process builds an output at a time: DVC and Snakemake lock it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~UMASK)  # mkdtemp creates 0700
        fsync_tree(tmp)
        _swap_into_place(tmp, path)
        fsync_path(path.parent)
    finally:
        if tmp.exists() or tmp.is_symlink():
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink()


def remove_stale_tmp(path: str | os.PathLike[str]) -> list[Path]:
    """Delete temporary directories that an atomic_dir(path) killed mid-way (SIGKILL, power loss) left
    beside `path`; return them. Call only when no other process is building `path`."""
    path = Path(path)
    stale = [p for p in path.parent.glob(f".{path.name}.*.tmp") if p.is_dir() and not p.is_symlink()]
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return stale


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_orphaned_tmp_files(path: str | os.PathLike[str]) -> list[Path]:
    """Delete temporary files of atomic_path(path) whose writer (the PID in their name) is gone; return
    them."""
    path = Path(path)
    orphaned = []
    for p in path.parent.glob(f".{path.name}.*.tmp"):
        pid = p.name[len(path.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and p.is_file() and not p.is_symlink() and not _pid_alive(int(pid)):
            p.unlink(missing_ok=True)
            orphaned.append(p)
    return orphaned
