"""Start and stop the loopback services the cluster tests run against (MLflow, S3, sshd, SLURM).

Each service runs in its own session so that stopping it ends its whole process group (uvicorn workers,
slurmstepd children), also when the test fails. A service that binds port 0 announces the port in its
log; `wait_for_log` reads it back from there instead of guessing a free port in advance.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ..conftest import tool_env

STARTUP_TIMEOUT = 180.0


def require_tools(*names: str) -> None:
    """Skip when a system tool is missing, except under `./run.sh test`, which installs them all and sets
    STYLEPIPE_CLUSTER_TESTS=1 so that a missing tool fails CI instead of passing it silently."""
    missing = [n for n in names if shutil.which(n, path=tool_env()["PATH"] + ":/usr/sbin:/sbin") is None]
    if not missing:
        return
    message = f"missing {', '.join(missing)}: `./run.sh test` installs them"
    if os.environ.get("STYLEPIPE_CLUSTER_TESTS") == "1":
        pytest.fail(message)
    pytest.skip(message)


@contextlib.contextmanager
def service(cmd: list[str], log: Path, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> Iterator[subprocess.Popen]:
    """Run `cmd` in its own session with output to `log`; on exit stop its whole process group."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env or tool_env(), cwd=cwd,
                                start_new_session=True)
        try:
            yield proc
        finally:
            stop_group(proc)


def stop_group(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left after `grace` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def wait_until(ready: Callable[[], bool], what: str, proc: subprocess.Popen | None = None,
               log: Path | None = None, timeout: float = STARTUP_TIMEOUT) -> None:
    """Poll `ready` until it holds; fail naming `what` (and the log's tail) when `proc` exits or time is up."""
    deadline = time.monotonic() + timeout
    while not ready():
        if (proc is not None and proc.poll() is not None) or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
            state = f"exited with {proc.returncode}" if proc is not None and proc.poll() is not None else "timed out"
            raise AssertionError(f"{what} {state}:\n{tail}")
        time.sleep(0.2)


def wait_for_log(proc: subprocess.Popen, log: Path, pattern: str, what: str) -> re.Match:
    """Wait until the service's log matches `pattern` and return the match (e.g. the port it bound)."""
    found: list[re.Match] = []

    def matched() -> bool:
        match = re.search(pattern, log.read_text(errors="replace")) if log.exists() else None
        if match:
            found.append(match)
        return match is not None

    wait_until(matched, what, proc, log)
    return found[0]


UVICORN_PORT = r"Uvicorn running on http://127\.0\.0\.1:(\d+)"


WERKZEUG_PORT = r"Running on http://127\.0\.0\.1:(\d+)"


@contextlib.contextmanager
def s3_server(root: Path) -> Iterator[str]:
    """moto's standalone S3 server on 127.0.0.1; yields its endpoint URL."""
    log = root / "moto.log"
    with service(["moto_server", "-H", "127.0.0.1", "-p", "0"], log, cwd=root) as proc:
        port = wait_for_log(proc, log, WERKZEUG_PORT, "moto_server").group(1)
        yield f"http://127.0.0.1:{port}"


SSHD_CONFIG = """\
HostKey {root}/host_ed25519
AuthorizedKeysFile {root}/authorized_keys
AuthenticationMethods publickey
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
PidFile none
Subsystem sftp internal-sftp
LogLevel ERROR
"""


@contextlib.contextmanager
def ssh_server(root: Path) -> Iterator[tuple[int, Path]]:
    """Debian's sshd on 127.0.0.1 that accepts only a key made here; yields (port, private key file).

    The test binds the listening socket itself (port 0) and hands each connection to `sshd -i`, the
    inetd mode sshd has for this, so the port is known without parsing logs and nothing else listens."""
    import socket
    import threading

    sshd = shutil.which("sshd", path="/usr/sbin:/sbin:/usr/bin")
    assert sshd, "sshd not found"
    key = root / "client_ed25519"
    for path in (root / "host_ed25519", key):
        run_quiet(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)])
    (root / "authorized_keys").write_text(key.with_suffix(".pub").read_text())
    config = root / "sshd_config"
    config.write_text(SSHD_CONFIG.format(root=root))
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    run_quiet([sshd, "-t", "-f", str(config)])
    listener = socket.create_server(("127.0.0.1", 0))
    sessions: list[subprocess.Popen] = []
    log = open(root / "sshd.log", "ab")  # noqa: SIM115 (closed when the server stops)

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                sessions.append(subprocess.Popen([sshd, "-i", "-e", "-f", str(config)], stdin=conn.fileno(),
                                                 stdout=conn.fileno(), stderr=log))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], key
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(timeout=10)
        for session in sessions:
            if session.poll() is None:
                session.terminate()
            session.wait(timeout=10)
        log.close()


def run_quiet(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if proc.returncode:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
