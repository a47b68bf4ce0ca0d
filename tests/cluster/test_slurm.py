"""The Snakemake DAG on a real single-node SLURM cluster (slurmctld, slurmd, slurmdbd on MariaDB, munge)
through the project's SLURM profile, with this cluster's partition, account and resources in place of the
site values; the jobs are checked in sacct, and a second invocation submits nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ..conftest import make_project_copy
from .services import SlurmCluster, require_tools, slurm_cluster

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

RULES = ("download", "weights", "preprocess", "train_recon")
OUTPUTS = ("data/raw", "models/encoder/encoder.pt", "data/prepared/report.json", "models/recon/decoder.pt")
# what this one-node cluster can grant every job; the profile's site values (32 CPUs, 64 GB, GPUs) cannot be
TEST_RESOURCES = {"slurm_partition": "stylepipe-test", "slurm_account": "stylepipe-test", "cpus_per_task": 1,
                  "mem_mb": 500, "runtime": 10}
# Snakemake's status polling, short for a test (the plugin's default waits 40 s before the first check)
FAST_POLLING = ["--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "2"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[SlurmCluster]:
    require_tools("slurmctld", "slurmd", "slurmdbd", "munged", "mariadbd", "sacct", "nsenter")
    with slurm_cluster(tmp_path_factory.mktemp("slurm")) as running:
        yield running


def point_profile_at(profile: Path, resources: dict, rules: tuple[str, ...]) -> None:
    """Replace the site's partition, account and resources in the profile by `resources`; `rules` ask for
    no GPU (the training rules declare one, which this cluster has not)."""
    config = yaml.safe_load(profile.read_text())
    config["default-resources"] = dict(resources)
    config["set-resources"] = {rule: {**resources, "gpu": 0} for rule in {*config.get("set-resources", {}), *rules}}
    profile.write_text(yaml.safe_dump(config, sort_keys=False))


def accounted_jobs(cluster: SlurmCluster) -> list[tuple[str, str]]:
    """(rule, state) of every job in SLURM's accounting, from the comment the executor gives each job."""
    out = cluster.run(["sacct", "-X", "-P", "-n", "-o", "Comment,State", "--starttime=now-1day"]).stdout
    return [tuple(line.split("|")) for line in out.splitlines() if line.startswith("rule_")]


def test_profile_runs_the_dag_as_slurm_jobs_and_resubmits_nothing(cluster: SlurmCluster, tmp_path: Path):
    repo = make_project_copy(tmp_path / "project", {"tracking": {"enabled": False}})
    point_profile_at(repo / "workflow/profiles/slurm/config.yaml", TEST_RESOURCES, RULES)
    cmd = ["snakemake", "--profile", "workflow/profiles/slurm", *FAST_POLLING, "train_recon"]
    first = cluster.run(cmd, cwd=repo, timeout=900)
    log = first.stdout + first.stderr
    for rel in OUTPUTS:
        assert (repo / rel).exists(), f"{rel} missing:\n{log[-3000:]}"
    jobs = accounted_jobs(cluster)
    assert sorted(rule for rule, _ in jobs) == sorted(f"rule_{rule}" for rule in RULES), jobs
    assert {state for _, state in jobs} == {"COMPLETED"}, jobs

    again = cluster.run(cmd, cwd=repo, timeout=300)
    assert "Nothing to be done" in again.stdout + again.stderr
    assert len(accounted_jobs(cluster)) == len(RULES)
