"""Checksummed, resumable downloads through a private aria2c RPC daemon driven by aria2p.

Files are downloaded into a staging directory (partial files + aria2 control files survive failures
and DVC's deletion of stage outputs), verified again in Python, and stay there: the stage output gets a
hard link (a copy across filesystems). DVC deletes a stage's outputs before re-running it and Snakemake
deletes them when a job fails; a verified file in the staging directory is linked back, never fetched again.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

import aria2p
from tqdm import tqdm

from stylepipe.core.config import RemoteFile, RemoteParams
from stylepipe.core.errors import StylepipeError
from stylepipe.core.io import atomic_path, file_digest

ARIA2_ERRORS = {
    1: "unknown error", 2: "timeout", 3: "resource not found (404)", 5: "download too slow",
    6: "network problem (connection dropped or refused)", 7: "unfinished downloads at shutdown",
    8: "server does not support resume", 9: "not enough disk space", 13: "file already exists",
    16: "could not create/open the file", 17: "file I/O error", 19: "name resolution failed",
    22: "bad HTTP response header", 24: "HTTP authorisation failed", 32: "checksum validation failed",
}
CHECKSUM_MISMATCH = 32
POLL_S = 0.1
AUTO_SAVE_S = 2  # aria2 rewrites its .aria2 control files this often, so even a SIGKILL loses little


class DownloadError(StylepipeError, RuntimeError):
    """A file could not be downloaded and verified."""


class Aria2NotInstalledError(DownloadError):
    """The aria2c binary is missing."""


class PortTakenError(DownloadError):
    """Another process listens on the port picked for aria2c's RPC (taken between the pick and the start)."""


START_ATTEMPTS = 3
BIND_FAILED = "failed to bind"  # aria2c logs this and keeps running on IPv6 alone


def free_port() -> int:
    """A currently free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Aria2Daemon:
    """Context manager running a private `aria2c --enable-rpc` on a random loopback port with a random
    secret; `.api` is an aria2p.API. The process is always stopped on exit (graceful shutdown, then
    terminate, then kill), also on exceptions and KeyboardInterrupt.

    The secret reaches aria2c through a 0600 config file in a private temporary folder, never its
    command line (which every local user can read in `ps`), and the file is deleted once aria2c has read
    it. Downloaded .torrent and .metalink files are saved as files, never followed.
    """

    started_pids: ClassVar[list[int]] = []

    def __init__(self, download_dir: str | Path, max_concurrent_downloads: int = 3,
                 startup_timeout_s: float = 10.0, grace_s: float = 3.0, binary: str = "aria2c") -> None:
        self.download_dir = Path(download_dir)
        self.max_concurrent_downloads = max_concurrent_downloads
        self.startup_timeout_s = startup_timeout_s
        self.grace_s = grace_s
        self.binary = binary
        self.process: subprocess.Popen[bytes] | None = None
        self.api: aria2p.API | None = None
        self._log: Any = None
        self._conf_dir: Path | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def _command(self, exe: str, port: int, conf: Path) -> list[str]:
        return [
            exe, f"--conf-path={conf}", "--enable-rpc", f"--rpc-listen-port={port}", "--rpc-listen-all=false",
            "--follow-torrent=false", "--follow-metalink=false",
            f"--dir={self.download_dir.resolve()}", "--continue=true",
            "--auto-file-renaming=false", "--allow-overwrite=true", "--file-allocation=none",
            "--check-integrity=true", f"--max-concurrent-downloads={self.max_concurrent_downloads}",
            f"--stop-with-process={os.getpid()}", "--console-log-level=warn", "--summary-interval=0",
            "--enable-color=false", "--show-console-readout=false", f"--auto-save-interval={AUTO_SAVE_S}",
        ]

    def start(self) -> Aria2Daemon:
        exe = shutil.which(self.binary)
        if exe is None:
            raise Aria2NotInstalledError(
                f"{self.binary!r} not found on PATH: install the Debian package aria2 (apt-get install aria2)"
            )
        self.download_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(START_ATTEMPTS):
            try:
                return self._start_once(exe)
            except PortTakenError:
                if attempt == START_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def _start_once(self, exe: str) -> Aria2Daemon:
        """Start aria2c on a free port; PortTakenError (daemon stopped) when another process got there first."""
        self._log = tempfile.TemporaryFile()  # noqa: SIM115
        port, secret = free_port(), secrets.token_hex(16)
        conf = self._write_secret(secret)
        self.process = subprocess.Popen(self._command(exe, port, conf), stdout=self._log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
        Aria2Daemon.started_pids.append(self.process.pid)
        self.api = aria2p.API(aria2p.Client(host="http://127.0.0.1", port=port, secret=secret, timeout=5))
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self._remove_secret()
        return self

    def _write_secret(self, secret: str) -> Path:
        """aria2c's config file holding only the RPC secret: mode 0600 in a 0700 folder of its own."""
        self._conf_dir = Path(tempfile.mkdtemp(prefix="stylepipe-aria2-"))
        conf = self._conf_dir / "aria2.conf"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"rpc-secret={secret}\n")
        return conf

    def _remove_secret(self) -> None:
        if self._conf_dir is not None:
            shutil.rmtree(self._conf_dir, ignore_errors=True)
            self._conf_dir = None

    def _log_text(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-2000:]

    def _check_bound(self) -> None:
        if BIND_FAILED in self._log_text():
            port = self.api.client.port if self.api is not None else "?"
            raise PortTakenError(f"aria2c could not listen on 127.0.0.1:{port}: {self._log_text()}")

    def _wait_ready(self) -> None:
        """Poll until our aria2c answers on its port (the answer counts only if aria2c bound it itself)."""
        assert self.process is not None and self.api is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise DownloadError(f"aria2c exited at start (code {code}): {self._log_text()}")
            self._check_bound()
            try:
                self.api.client.get_version()
                self._check_bound()
                return
            except PortTakenError:
                raise
            except Exception:
                if time.monotonic() > deadline:
                    raise DownloadError(
                        f"aria2c RPC did not answer within {self.startup_timeout_s:.0f} s: {self._log_text()}"
                    ) from None
                time.sleep(0.05)

    def check_alive(self, files: list[str]) -> None:
        """Raise DownloadError naming `files` when the daemon process has exited."""
        if self.process is not None and self.process.poll() is not None:
            raise DownloadError(
                f"aria2c daemon exited (code {self.process.returncode}) while downloading "
                f"{', '.join(files)}; partial files stay in {self.download_dir} and resume on the next run. "
                f"aria2c log: {self._log_text()}"
            )

    def stop(self) -> None:
        """Stop the daemon: SIGTERM (aria2 saves its control files and exits), SIGKILL after the grace."""
        proc, self.process = self.process, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                proc.wait(timeout=self.grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()
        self._remove_secret()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Aria2Daemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def checksum_of(f: RemoteFile) -> tuple[str, str]:
    """(python hashlib name, expected hex digest) - sha256 preferred over md5."""
    return ("sha256", f.sha256) if f.sha256 else ("md5", f.md5 or "")


def verify(path: Path, f: RemoteFile) -> bool:
    algo, expected = checksum_of(f)
    return path.is_file() and file_digest(path, algo) == expected


def aria2_options(f: RemoteFile, remote: RemoteParams, staging: Path) -> dict[str, str]:
    algo, expected = checksum_of(f)
    return {
        "dir": str(staging.resolve()), "out": f.name, "continue": "true", "split": str(remote.split),
        "max-connection-per-server": str(remote.max_connection_per_server),
        "max-tries": str(remote.max_tries), "timeout": str(remote.timeout_s),
        "connect-timeout": str(remote.timeout_s), "retry-wait": "1",
        "checksum": f"{'sha-256' if algo == 'sha256' else 'md5'}={expected}",
        "check-integrity": "true", "allow-overwrite": "true", "auto-file-renaming": "false",
        "follow-torrent": "false", "follow-metalink": "false",
    }


def link_into(src: Path, dst: Path) -> None:
    """Put src's file at dst, keeping src: a hard link, or an atomic copy where links cannot be made
    (another filesystem, or one without hard links)."""
    if dst.exists() and os.path.samefile(src, dst):
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError as err:
            if err.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                raise
            shutil.copyfile(src, tmp)


def _discard(staging: Path, name: str) -> None:
    for p in (staging / name, staging / f"{name}.aria2"):
        p.unlink(missing_ok=True)


NO_URI_LEFT = "No URI available"  # aria2's last word once every URL has used up its tries


def _describe(f: RemoteFile, code: int, message: str) -> str:
    what = ARIA2_ERRORS.get(code, "error")
    if NO_URI_LEFT in message:
        what = "every URL failed: connection dropped, refused or timed out, download.remote.max_tries used up"
    resume = "" if code == CHECKSUM_MISMATCH else "; what arrived is kept and the next run resumes it"
    return f"{f.name}: download failed from {', '.join(f.urls)}: aria2 error {code} ({what}): {message}{resume}"


class _Transfer:
    """One file in flight: its aria2 download and its progress bar (bytes, speed, ETA)."""

    def __init__(self, f: RemoteFile, download: aria2p.Download, position: int, progress: bool) -> None:
        self.file, self.download = f, download
        self.bar = tqdm(desc=f.name, unit="B", unit_scale=True, unit_divisor=1024, position=position,
                        disable=not progress, leave=True, dynamic_ncols=True)
        self._started = False

    def poll(self) -> str:
        self.download.update()
        d = self.download
        if not self._started and d.total_length:
            # a resumed file starts at its partial size, so speed and ETA count only this run's bytes
            self.bar.reset(total=d.total_length)
            self.bar.initial = self.bar.n = d.completed_length
            self._started = True
        self.bar.update(max(0, d.completed_length - self.bar.n))
        if d.status == "active":
            self.bar.set_postfix_str(f"{d.connections} conn", refresh=False)
        return d.status


def _record(dest: Path, f: RemoteFile, skipped: bool) -> dict[str, Any]:
    algo, expected = checksum_of(f)
    return {"name": f.name, algo: expected, "bytes": (dest / f.name).stat().st_size, "skipped": skipped}


def _finish(t: _Transfer, staging: Path, dest: Path) -> tuple[dict[str, Any] | None, str | None]:
    """Verify a completed transfer in Python and link it into dest; (record, error)."""
    f, staged = t.file, staging / t.file.name
    algo, expected = checksum_of(f)
    if not staged.is_file():
        return None, f"{f.name}: aria2 reported completion but {staged} is missing"
    digest = file_digest(staged, algo)
    if digest != expected:
        _discard(staging, f.name)
        return None, f"{f.name}: checksum mismatch after download from {', '.join(f.urls)}: {algo} {digest}"
    link_into(staged, dest / f.name)
    return _record(dest, f, skipped=False), None


def _already_there(f: RemoteFile, dest: Path, staging: Path) -> dict[str, Any] | None:
    """A record when f is verified in dest or in staging; the verified file ends up in both.

    A staged file with no aria2 control file beside it may be complete (e.g. fetched by hand to record
    its checksum); a staged file with a control file is partial and is left for aria2 to resume, unless
    dest already holds the verified file."""
    out, staged, control = dest / f.name, staging / f.name, staging / f"{f.name}.aria2"
    if verify(out, f):
        if not (staged.exists() and os.path.samefile(staged, out)):
            control.unlink(missing_ok=True)
            link_into(out, staged)
        return _record(dest, f, skipped=True)
    if not control.exists() and verify(staged, f):
        link_into(staged, out)
        return _record(dest, f, skipped=True)
    return None


def _wait(pending: list[_Transfer], d: Aria2Daemon, staging: Path, dest: Path,
          done: list[dict[str, Any]], errors: list[str]) -> None:
    """Poll the transfers until each has completed or failed; collect records and error messages."""
    while pending:
        for t in list(pending):
            try:
                status = t.poll()
            except Exception:
                d.check_alive([p.file.name for p in pending])
                raise
            if status == "complete":
                record, err = _finish(t, staging, dest)
                done += [record] if record else []
                errors += [err] if err else []
            elif status in ("error", "removed"):
                code = int(t.download.error_code or 1) if status == "error" else 1
                if code == CHECKSUM_MISMATCH:
                    _discard(staging, t.file.name)
                errors.append(_describe(t.file, code, t.download.error_message or status))
            else:
                continue
            t.bar.close()
            pending.remove(t)
        if pending:
            time.sleep(POLL_S)


def download_files(files: list[RemoteFile], dest: Path, remote: RemoteParams, progress: bool = True,
                   daemon: Aria2Daemon | None = None) -> list[dict[str, Any]]:
    """Download and verify `files` into the staging directory and link them into `dest`; raise
    DownloadError listing every failure.

    A file already in dest or complete in staging with the right checksum is not downloaded again.
    `daemon`: an already started Aria2Daemon to use (otherwise a private one is started and always
    stopped, also on errors and Ctrl-C).
    """
    dest, staging = Path(dest), Path(remote.staging_dir)
    dest.mkdir(parents=True, exist_ok=True)
    staging.mkdir(parents=True, exist_ok=True)
    done: list[dict[str, Any]] = []
    todo = []
    for f in files:
        record = _already_there(f, dest, staging)
        if record is not None:
            done.append(record)
        else:
            todo.append(f)
    if not todo:
        return sorted(done, key=lambda r: r["name"])
    ctx = contextlib.nullcontext(daemon) if daemon is not None else Aria2Daemon(
        staging, remote.max_concurrent_downloads)
    errors: list[str] = []
    with ctx as d:
        assert d is not None and d.api is not None
        pending = [
            _Transfer(f, d.api.add_uris(f.urls, options=aria2_options(f, remote, staging)), i, progress)
            for i, f in enumerate(todo)
        ]
        try:
            _wait(pending, d, staging, dest, done, errors)
        finally:
            for t in pending:
                t.bar.close()
    if errors:
        raise DownloadError("\n".join(errors))
    return sorted(done, key=lambda r: r["name"])
