"""The MLflow server as docs/cluster.md runs it for compute nodes: `--host 0.0.0.0` and `--allowed-hosts`
with the login node's name. The test gives the machine's non-loopback address a name of its own (a hosts
file bound over /etc/hosts in a private mount namespace, as a site's DNS would), runs a stage that logs
to the server through that name, and checks that a server without `--allowed-hosts` answers the same
name with the 403 the docs warn about."""

from __future__ import annotations

import contextlib
import re
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ..conftest import make_project_copy, run, tool_env
from .services import require_tools, service, wait_for_log

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

LOGIN = "login-test"  # the name compute nodes use for the login node
ANY_ADDRESS_PORT = r"Uvicorn running on http://0\.0\.0\.0:(\d+)"


def non_loopback_address() -> str:
    """The machine's first global IPv4 address (what another node connects to)."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True,
                         check=True, timeout=30).stdout
    found = re.search(r"\binet (\d+\.\d+\.\d+\.\d+)/", out)
    if found is None:
        pytest.fail(f"no non-loopback IPv4 address on this machine:\n{out}")
    return found.group(1)


@contextlib.contextmanager
def server(root: Path, allowed_hosts: str | None) -> Iterator[int]:
    """docs/cluster.md's `mlflow server` command on all addresses (port 0); yields the port it bound."""
    root.mkdir(parents=True, exist_ok=True)
    cmd = ["mlflow", "server", "--backend-store-uri", f"sqlite:///{root}/mlflow.db", "--serve-artifacts",
           "--artifacts-destination", str(root / "artifacts"), "--host", "0.0.0.0", "--port", "0", "--workers", "1",
           *(["--allowed-hosts", allowed_hosts] if allowed_hosts else [])]
    log = root / "server.log"
    with service(cmd, log, cwd=root) as proc:
        yield int(wait_for_log(proc, log, ANY_ADDRESS_PORT, "mlflow server").group(1))


def named(cmd: list[str], hosts: Path) -> list[str]:
    """`cmd` in a private mount namespace where `hosts` is /etc/hosts (the login node's name resolves)."""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            f'mount --bind {hosts} /etc/hosts && exec "$@"', "sh", *cmd]


def status_by_name(address: str, port: int) -> tuple[int, str]:
    """The server's answer to a request addressed (Host header) to the login node's name."""
    request = urllib.request.Request(f"http://{address}:{port}/api/2.0/mlflow/experiments/search?max_results=1",
                                     headers={"Host": f"{LOGIN}:{port}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_a_stage_logs_through_the_login_nodes_name_to_a_server_on_all_addresses(tmp_path: Path):
    from mlflow.tracking import MlflowClient

    require_tools("unshare", "ip")
    address = non_loopback_address()
    hosts = tmp_path / "hosts"
    hosts.write_text(f"127.0.0.1 localhost\n{address} {LOGIN}\n")
    repo = make_project_copy(tmp_path / "project")
    for stage in ("download", "weights", "preprocess"):
        run(["stylepipe", stage], repo)

    with server(tmp_path / "open", allowed_hosts=f"{LOGIN},{LOGIN}:*") as port:
        assert status_by_name(address, port)[0] == 200
        params = yaml.safe_load((repo / "params.yaml").read_text())
        params["tracking"]["uri"] = f"http://{LOGIN}:{port}"
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        stage = subprocess.run(named(["stylepipe", "train_recon"], hosts), cwd=repo, env=tool_env(),
                               capture_output=True, text=True, timeout=600)
        assert stage.returncode == 0, stage.stderr[-3000:]
        # read back from the server's own store: the test process cannot resolve the name, and the address
        # is not an allowed host
        client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'open/mlflow.db'}")
        runs = client.search_runs([client.get_experiment_by_name("stylepipe").experiment_id])
        assert [(r.info.run_name, r.info.status) for r in runs] == [("train_recon", "FINISHED")]
        assert client.get_metric_history(runs[0].info.run_id, "loss")

    with server(tmp_path / "default", allowed_hosts=None) as port:
        code, body = status_by_name(address, port)
        assert code == 403 and "Invalid Host header" in body
