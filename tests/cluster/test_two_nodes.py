"""Two-node data-parallel training: two `torchrun --nnodes 2` launches, as two nodes' job steps would
start them, meet through a c10d rendezvous on 127.0.0.1 and train with gloo; the update per global batch
is the single process's, as tests/test_distributed.py checks for one node."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from torch.distributed import TCPStore

from ..test_distributed import assert_same_update, single_process_reference, worker_args, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

DEPTH = ("relu3_1", 0.5)


def node_command(node_rank: int, endpoint: str, out: Path) -> list[str]:
    """The launch on one node: what `srun torchrun ...` runs once per node of a SLURM allocation."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
        f"--node_rank={node_rank}", "--rdzv_backend=c10d", f"--rdzv_endpoint={endpoint}", "--rdzv_id=two-nodes",
        # the store is hosted by the test (below), so neither node tries to host it on the same port
        "--rdzv_conf=is_host=false", "--local_addr=127.0.0.1",
        *worker_args(out, *DEPTH),
    ]


def test_two_nodes_meet_through_c10d_and_match_one_process(tmp_path: Path):
    reference = single_process_reference(tmp_path / "single", DEPTH)
    # the rendezvous store binds port 0 here and both nodes are given the port it got
    store = TCPStore("127.0.0.1", 0, is_master=True, multi_tenant=True, wait_for_workers=False,
                     timeout=timedelta(seconds=120))
    endpoint = f"127.0.0.1:{store.port}"
    out = tmp_path / "two-nodes"
    logs = [tmp_path / f"node{rank}.log" for rank in (0, 1)]
    nodes = [subprocess.Popen(node_command(rank, endpoint, out), stdout=log.open("wb"), stderr=subprocess.STDOUT,
                              env=worker_env(), start_new_session=True) for rank, log in zip((0, 1), logs, strict=True)]
    try:
        codes = [node.wait(timeout=300) for node in nodes]
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
                node.wait()
    assert codes == [0, 0], "\n".join(log.read_text()[-2000:] for log in logs)
    # one process per launch, so a world of two means the launches joined one process group
    assert json.loads((out / "history.json").read_text())["world_size"] == 2
    assert_same_update(reference, out)
