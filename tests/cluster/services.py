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
               log: Path | None = None, timeout: float = STARTUP_TIMEOUT, poll: float = 0.2) -> None:
    """Poll `ready` every `poll` seconds until it holds; fail naming `what` (and the log's tail) when `proc`
    exits or time is up."""
    deadline = time.monotonic() + timeout
    while not ready():
        if (proc is not None and proc.poll() is not None) or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
            state = f"exited with {proc.returncode}" if proc is not None and proc.poll() is not None else "timed out"
            raise AssertionError(f"{what} {state}:\n{tail}")
        time.sleep(poll)


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


# moto checks signatures and IAM policies once this many requests have passed unchecked: the three that
# make the test's user, its policy and its key
UNCHECKED_SETUP_REQUESTS = 3
S3_POLICY = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}'


@contextlib.contextmanager
def s3_server(root: Path) -> Iterator[tuple[str, str, str]]:
    """moto's standalone S3 server on 127.0.0.1 that checks credentials like S3 (a wrong key is refused);
    yields its endpoint URL and the access key id and secret of a user allowed to use S3."""
    import boto3

    log = root / "moto.log"
    env = {**tool_env(), "INITIAL_NO_AUTH_ACTION_COUNT": str(UNCHECKED_SETUP_REQUESTS)}
    with service(["moto_server", "-H", "127.0.0.1", "-p", "0"], log, env=env, cwd=root) as proc:
        port = wait_for_log(proc, log, WERKZEUG_PORT, "moto_server").group(1)
        endpoint = f"http://127.0.0.1:{port}"
        iam = boto3.client("iam", endpoint_url=endpoint, aws_access_key_id="setup", aws_secret_access_key="setup",
                           region_name="us-east-1")
        iam.create_user(UserName="stylepipe")
        iam.put_user_policy(UserName="stylepipe", PolicyName="s3", PolicyDocument=S3_POLICY)
        key = iam.create_access_key(UserName="stylepipe")["AccessKey"]
        yield endpoint, key["AccessKeyId"], key["SecretAccessKey"]


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


SLURM_CONF = """\
ClusterName={cluster}
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort=6817
SlurmdPort=6818
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
KillWait=5
SlurmctldParameters=enable_configless
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=6819
AccountingStoreFlags=job_comment
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName={partition} Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""

SLURMDBD_CONF = """\
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
PidFile={root}/slurmdbd.pid
LogFile={root}/slurmdbd.log
"""


class SlurmCluster:
    """A single-node SLURM cluster (slurmctld, slurmd, slurmdbd on MariaDB, munge) in its own network
    namespace: the daemons' fixed ports are free there by construction and nothing else can reach them.
    Every command sees this cluster's folder over /etc/slurm: Slurm's commands, job steps' srun included
    (they inherit slurmd's mounts), read this cluster's configuration, also on a machine whose own
    /etc/slurm/slurm.conf belongs to a real cluster."""

    def __init__(self, root: Path, partition: str, netns: str) -> None:
        self.root, self.partition, self.netns = root, partition, netns
        self.etc = root / "etc"
        self.conf = self.etc / "slurm.conf"

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {**tool_env(), "SLURM_CONF": str(self.conf), "MYSQL_UNIX_PORT": str(self.root / "mysql.sock"),
                **(extra or {})}

    def command(self, cmd: list[str]) -> list[str]:
        """`cmd` run inside the cluster's network namespace, in a mount namespace of its own where this
        cluster's folder is bound over /etc/slurm (when the machine has one; without it Slurm's commands find
        the configuration through slurmd's configless cache)."""
        bind = f'if [ -d /etc/slurm ]; then mount --bind {self.etc} /etc/slurm; fi; exec "$@"'
        return ["nsenter", f"--net=/run/netns/{self.netns}", "unshare", "--mount", "--propagation", "private",
                "sh", "-c", bind, "sh", *cmd]

    def run(self, cmd: list[str], cwd: Path | None = None, timeout: float = 120,
            check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(self.command(cmd), cwd=cwd, env=self.env(), capture_output=True, text=True,
                              timeout=timeout)
        if check and proc.returncode:
            raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                                 f"{proc.stderr[-3000:]}\n{self.logs()}")
        return proc

    def logs(self) -> str:
        logs = sorted(self.root.glob("*.log")) + sorted(self.root.glob("*.out"))
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}" for p in logs)


@contextlib.contextmanager
def slurm_cluster(root: Path, partition: str = "stylepipe-test", memory_mb: int = 2048) -> Iterator[SlurmCluster]:
    """Start munge, MariaDB, slurmdbd, slurmctld and slurmd on loopback; stop all of them on exit."""
    import socket

    host = socket.gethostname().split(".")[0]
    netns = f"stylepipe-slurm-{os.getpid()}"
    run_quiet(["ip", "netns", "add", netns])
    cluster = SlurmCluster(root, partition, netns)
    try:
        run_quiet(cluster.command(["ip", "link", "set", "lo", "up"]))
        # Slurm resolves its listening address with AI_ADDRCONFIG, which needs an IPv4 address besides 127.0.0.1
        run_quiet(cluster.command(["ip", "addr", "add", "127.0.0.2/8", "dev", "lo"]))
        for sub in ("state", "spool", "mysql"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        cluster.etc.mkdir(parents=True, exist_ok=True)
        values = {"root": root, "host": host, "cluster": "stylepipe", "cpus": os.cpu_count(),
                  "memory_mb": memory_mb, "partition": partition}
        cluster.conf.write_text(SLURM_CONF.format(**values))
        dbd_conf = cluster.etc / "slurmdbd.conf"
        dbd_conf.write_text(SLURMDBD_CONF.format(**values))
        dbd_conf.chmod(0o600)  # slurmdbd refuses a config others can read (it may hold the DB password)
        with contextlib.ExitStack() as stack:
            _start_munge(cluster, stack)
            _start_mariadb(cluster, stack)
            _start_daemon(cluster, stack, ["slurmdbd", "-D"], "slurmdbd",
                          lambda: cluster.run(["sacctmgr", "-n", "list", "cluster"], check=False).returncode == 0)
            for entity in (["cluster", "stylepipe"], ["account", "stylepipe-test"],
                           ["user", "root", "account=stylepipe-test"]):
                cluster.run(["sacctmgr", "-i", "add", *entity])
            _start_daemon(cluster, stack, ["slurmctld", "-D"], "slurmctld",
                          lambda: cluster.run(["scontrol", "ping"], check=False).returncode == 0)
            stack.callback(lambda: cluster.run(["scancel", "--user=root"], check=False))
            stack.callback(_unlink_config_link, root)
            # configless, as many sites run it: slurmd fetches the config from slurmctld and links it at
            # /run/slurm/conf, where the job steps' srun finds it (Snakemake's jobstep drops SLURM_CONF)
            _start_daemon(cluster, stack, ["slurmd", "-D", "--conf-server", "127.0.0.1:6817"], "slurmd",
                          lambda: cluster.run(["sinfo", "-h", "-o", "%T"], check=False).stdout.strip() == "idle",
                          env={k: v for k, v in cluster.env().items() if k != "SLURM_CONF"})
            yield cluster
    finally:
        subprocess.run(["ip", "netns", "delete", netns], capture_output=True, timeout=60)


CONFIG_LINK = Path("/run/slurm/conf")


def _unlink_config_link(root: Path) -> None:
    """Remove the link slurmd made to its config cache (only when it points into this cluster's folder)."""
    if CONFIG_LINK.is_symlink() and Path(os.readlink(CONFIG_LINK)).is_relative_to(root):
        CONFIG_LINK.unlink()


def _start_daemon(cluster: SlurmCluster, stack: contextlib.ExitStack, cmd: list[str], what: str,
                  ready: Callable[[], bool], env: dict[str, str] | None = None) -> None:
    log = cluster.root / f"{what}.out"
    proc = stack.enter_context(service(cluster.command(cmd), log, env=env or cluster.env()))
    try:
        wait_until(ready, what, proc, log, timeout=90)
    except AssertionError as err:
        raise AssertionError(f"{err}\n{cluster.logs()}") from None


MUNGE_SOCKET = Path("/run/munge/munge.socket.2")


def munge_answers() -> bool:
    """A munged on the default socket encodes and decodes a credential."""
    encoded = subprocess.run(["munge", "-n"], capture_output=True, timeout=30)
    return encoded.returncode == 0 and subprocess.run(
        ["unmunge"], input=encoded.stdout, capture_output=True, timeout=30).returncode == 0


def _start_munge(cluster: SlurmCluster, stack: contextlib.ExitStack) -> None:
    """munged with a key made here, on the default socket: Slurm's clients (sacctmgr, sacct) talk to
    slurmdbd through it whatever AuthInfo says. A munged the machine already runs there serves as well
    (every daemon and client of this cluster then uses that one)."""
    root = cluster.root
    if MUNGE_SOCKET.exists() and munge_answers():
        return
    MUNGE_SOCKET.unlink(missing_ok=True)  # a stale socket of a munged that is gone
    MUNGE_SOCKET.parent.mkdir(parents=True, exist_ok=True)
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    cmd = ["munged", "--foreground", "--force", f"--key-file={key}", f"--socket={MUNGE_SOCKET}",
           f"--pid-file={root}/munged.pid", f"--log-file={root}/munged.log", f"--seed-file={root}/munge.seed"]
    _start_daemon(cluster, stack, cmd, "munged", MUNGE_SOCKET.exists)


def _start_mariadb(cluster: SlurmCluster, stack: contextlib.ExitStack) -> None:
    """MariaDB on a Unix socket only (root authenticates by its uid), for slurmdbd's job records."""
    root = cluster.root
    run_quiet(["mariadb-install-db", "--no-defaults", f"--datadir={root}/mysql", "--user=root",
               "--auth-root-authentication-method=socket", "--skip-test-db"])
    cmd = ["mariadbd", "--no-defaults", f"--datadir={root}/mysql", f"--socket={root}/mysql.sock",
           "--skip-networking", "--user=root", f"--pid-file={root}/mariadb.pid", f"--log-error={root}/mariadb.log"]
    _start_daemon(cluster, stack, cmd, "mariadb", lambda: subprocess.run(
        ["mariadb-admin", f"--socket={root}/mysql.sock", "ping"], capture_output=True).returncode == 0)
