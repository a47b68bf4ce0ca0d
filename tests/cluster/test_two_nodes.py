"""Two-node data-parallel training: two `torchrun --nnodes 2` launches, as two nodes' job steps would
start them, meet through a c10d rendezvous on 127.0.0.1 and train with gloo; the update per global batch
is the single process's, as tests/train/test_distributed.py checks for one node."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from torch.distributed import TCPStore

from ..conftest import ROOT, make_project_copy, run
from ..train.test_distributed import assert_same_update, single_process_reference, worker_args, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

DEPTH = ("relu3_1", 0.5)


def node_command(node_rank: int, endpoint: str, program: list[str]) -> list[str]:
    """The launch on one node: what `srun torchrun ...` runs once per node of a SLURM allocation."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
        f"--node_rank={node_rank}", "--rdzv_backend=c10d", f"--rdzv_endpoint={endpoint}", "--rdzv_id=two-nodes",
        # the store is hosted by the test (below), so neither node tries to host it on the same port
        "--rdzv_conf=is_host=false", "--local_addr=127.0.0.1",
        *program,
    ]


def run_two_nodes(program: list[str], cwd: Path, logs: Path) -> None:
    """Launch `program` as two nodes of one process each and wait for both; kill both if either hangs."""
    # the rendezvous store binds port 0 here and both nodes are given the port it got
    store = TCPStore("127.0.0.1", 0, is_master=True, multi_tenant=True, wait_for_workers=False,
                     timeout=timedelta(seconds=120))
    endpoint = f"127.0.0.1:{store.port}"
    paths = [logs / f"node{rank}.log" for rank in (0, 1)]
    nodes = [subprocess.Popen(node_command(rank, endpoint, program), stdout=path.open("wb"), cwd=cwd,
                              stderr=subprocess.STDOUT, env=worker_env(), start_new_session=True)
             for rank, path in zip((0, 1), paths, strict=True)]
    try:
        codes = [node.wait(timeout=300) for node in nodes]
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
                node.wait()
    assert codes == [0, 0], "\n".join(path.read_text()[-2000:] for path in paths)


def test_two_nodes_meet_through_c10d_and_match_one_process(tmp_path: Path):
    reference = single_process_reference(tmp_path / "single", DEPTH)
    out = tmp_path / "two-nodes"
    run_two_nodes(worker_args(out, *DEPTH), tmp_path, tmp_path)
    # one process per launch, so a world of two means the launches joined one process group
    assert json.loads((out / "history.json").read_text())["world_size"] == 2
    assert_same_update(reference, out)


def test_the_stage_command_trains_on_two_nodes(tmp_path: Path):
    """`-m stylepipe.cli train_recon` under two-node torchrun (the README's srun line) trains the sample
    once: one decoder, a summary that counts both processes, one MLflow run (rank 0's)."""
    from mlflow.tracking import MlflowClient

    repo = make_project_copy(tmp_path / "project")
    for stage in ("download", "weights", "preprocess"):
        run(["stylepipe", stage], repo)
    run_two_nodes(["-m", "stylepipe.cli", "train_recon"], repo, tmp_path)
    summary = json.loads((repo / "models/recon/summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 4
    assert (repo / "models/recon/decoder.pt").is_file()
    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("stylepipe").experiment_id])
    assert [r.info.run_id for r in runs] == [summary["mlflow_run_id"]]


SBATCH = ROOT / "workflow/sbatch/train_adain.sbatch"
SECOND_NODE = "node-b"
# stand-ins for a two-node allocation on one machine: srun starts the command once per node, the second
# in its own UTS and mount namespace as host node-b on 127.0.0.3 (so it does not take the first node's
# name and address for its own); scontrol lists the allocation's hosts, this machine first
SRUN = """#!/bin/sh
while [ "${1#--}" != "$1" ]; do echo "$1" >> "$LOGS/srun-options"; shift; done
SLURM_NODEID=0 "$@" > "$LOGS/node0.log" 2>&1 &
first=$!
SLURM_NODEID=1 unshare --uts --mount --propagation private sh -c \\
    'mount --bind "$LOGS/hosts" /etc/hosts && hostname SECOND && exec "$@"' sh "$@" > "$LOGS/node1.log" 2>&1 &
second=$!
wait $first; a=$?
wait $second; b=$?
exit $((a | b))
"""
# shows the rendezvous backend's INFO line saying which process hosts the c10d store
SITECUSTOMIZE = """import logging, sys
store_log = logging.getLogger("torch.distributed.elastic.rendezvous.c10d_rendezvous_backend")
store_log.setLevel(logging.INFO)
store_log.addHandler(logging.StreamHandler(sys.stderr))
"""
SCONTROL = """#!/bin/sh
[ "$1 $2" = "show hostnames" ] && printf '%s\\n' FIRST SECOND
"""


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_sbatch_example_trains_on_two_nodes_with_the_first_hosting_the_store(tmp_path: Path):
    """workflow/sbatch/train_adain.sbatch itself, as SLURM runs it on the first of two nodes (one CPU
    process per node, its port variable set because 29500 may be taken here): the first node's torchrun
    hosts the c10d store on `$head:$RDZV_PORT`, the second joins it, one model is trained over both and
    dvc-commit records it."""
    import socket

    from .services import require_tools

    require_tools("unshare")
    repo = make_project_copy(tmp_path / "project", {"tracking": {"enabled": False}})
    (repo / ".venv").symlink_to(ROOT / ".venv")  # the script runs the shared filesystem's .venv
    for stage in ("download", "weights", "preprocess", "train_recon"):
        run(["stylepipe", stage], repo)
    logs, bin_dir = tmp_path / "logs", tmp_path / "bin"
    logs.mkdir()
    bin_dir.mkdir()
    (logs / "hosts").write_text(f"127.0.0.1 localhost {socket.gethostname()}\n127.0.0.3 {SECOND_NODE}\n")
    for name, text in (("srun", SRUN), ("scontrol", SCONTROL)):
        (bin_dir / name).write_text(text.replace("FIRST", socket.gethostname()).replace("SECOND", SECOND_NODE))
        (bin_dir / name).chmod(0o755)
    (bin_dir / "sitecustomize.py").write_text(SITECUSTOMIZE)
    base = worker_env()
    env = {**base, "PATH": f"{bin_dir}:{base['PATH']}", "PYTHONPATH": f"{bin_dir}:{base['PYTHONPATH']}",
           "LOGS": str(logs),
           "SLURM_JOB_NODELIST": f"{socket.gethostname()},{SECOND_NODE}", "SLURM_NNODES": "2",
           "SLURM_JOB_ID": "4242", "SLURM_CPUS_PER_TASK": "1", "NPROC_PER_NODE": "1", "RDZV_PORT": str(free_port())}
    script = subprocess.run(["bash", str(SBATCH)], cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    node_logs = [(logs / f"node{rank}.log").read_text() for rank in (0, 1)]
    assert script.returncode == 0, f"{script.stderr[-2000:]}\n" + "\n".join(log[-2000:] for log in node_logs)

    assert "hosts the TCP store" in node_logs[0] and "hosts the TCP store" not in node_logs[1], node_logs
    assert (logs / "srun-options").read_text().split() == ["--cpus-per-task=1"]
    summary = json.loads((repo / "models/adain/summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 4
    assert "train_adain:" in (repo / "dvc.lock").read_text()
