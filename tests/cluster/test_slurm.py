"""The Snakemake DAG on a real single-node SLURM cluster (slurmctld, slurmd, slurmdbd on MariaDB, munge)
through the project's SLURM profile, with this cluster's partition, account and resources in place of the
site values; the jobs are checked in sacct, and a second invocation submits nothing."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ..conftest import ROOT, make_project_copy
from .services import SlurmCluster, require_tools, slurm_cluster

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

RULES = ("download", "weights", "preprocess", "train_recon")
LOCAL_RULES = ("download", "weights")  # the Snakefile's localrules: on the login node, never SLURM jobs
OUTPUTS = ("data/raw", "models/encoder/encoder.pt", "data/prepared/report.json", "models/recon/decoder.pt")
# what this one-node cluster can grant every job; the profile's site values (32 CPUs, 64 GB, GPUs) cannot be
TEST_RESOURCES = {"slurm_partition": "stylepipe-test", "slurm_account": "stylepipe-test", "cpus_per_task": 1,
                  "mem_mb": 500, "runtime": 10}
# Snakemake's status polling, short for a test (the plugin's default waits 40 s before the first check)
FAST_POLLING = ["--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "2"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[SlurmCluster]:
    require_tools("slurmctld", "slurmd", "slurmdbd", "sacct", "sacctmgr", "munged", "munge", "mariadbd",
                  "mariadb-install-db", "mariadb-admin", "ip", "nsenter")
    with slurm_cluster(tmp_path_factory.mktemp("slurm")) as running:
        yield running


def point_profile_at(profile: Path, resources: dict, rules: tuple[str, ...]) -> None:
    """Replace the site's partition, account and resources in the profile by `resources`; `rules` ask for
    no GPU (the training rules declare one, which this cluster has not)."""
    config = yaml.safe_load(profile.read_text())
    config["default-resources"] = dict(resources)
    config["set-resources"] = {rule: {**resources, "gpu": 0} for rule in {*config.get("set-resources", {}), *rules}}
    profile.write_text(yaml.safe_dump(config, sort_keys=False))


def accounted_jobs(cluster: SlurmCluster, rules: tuple[str, ...]) -> list[tuple[str, str]]:
    """(rule, state) of the jobs of `rules` in SLURM's accounting, from the comment the executor gives
    each job, in submission order."""
    out = cluster.run(["sacct", "-X", "-P", "-n", "-o", "Comment,State", "--starttime=now-1day"]).stdout
    wanted = {f"rule_{rule}" for rule in rules}
    return [(comment, state) for comment, state in (line.split("|")[:2] for line in out.splitlines())
            if comment in wanted]


def test_profile_runs_the_dag_as_slurm_jobs_and_resubmits_nothing(cluster: SlurmCluster, tmp_path: Path):
    repo = make_project_copy(tmp_path / "project", {"tracking": {"enabled": False}})
    point_profile_at(repo / "workflow/profiles/slurm/config.yaml", TEST_RESOURCES, RULES)
    cmd = ["snakemake", "--profile", "workflow/profiles/slurm", *FAST_POLLING, "train_recon"]
    first = cluster.run(cmd, cwd=repo, timeout=900)
    log = first.stdout + first.stderr
    for rel in OUTPUTS:
        assert (repo / rel).exists(), f"{rel} missing:\n{log[-3000:]}"
    jobs = accounted_jobs(cluster, RULES)
    submitted = [rule for rule in RULES if rule not in LOCAL_RULES]
    assert sorted(rule for rule, _ in jobs) == sorted(f"rule_{rule}" for rule in submitted), jobs
    assert {state for _, state in jobs} == {"COMPLETED"}, jobs

    again = cluster.run(cmd, cwd=repo, timeout=300)
    assert "Nothing to be done" in again.stdout + again.stderr
    assert len(accounted_jobs(cluster, RULES)) == len(submitted)


OUTLAST = """\
rule outlast:
    output: "done"
    shell: "if [ {resources.runtime} -lt 2 ]; then sleep 600; fi; touch {output}"
"""


def test_a_job_killed_for_time_is_resubmitted_with_twice_the_time(cluster: SlurmCluster, tmp_path: Path):
    """The profile's `retries: 1` and resources scaled by `attempt`: a job SLURM ends at its time limit
    (TIMEOUT) runs again with twice the minutes. The rule only finishes when granted 2 minutes or more."""
    work = tmp_path / "outlast"
    (work / "profile").mkdir(parents=True)
    (work / "Snakefile").write_text(OUTLAST)
    profile = work / "profile" / "config.yaml"
    shutil.copy(ROOT / "workflow/profiles/slurm/config.yaml", profile)
    point_profile_at(profile, TEST_RESOURCES, ("outlast",))
    config = yaml.safe_load(profile.read_text())
    config["set-resources"]["outlast"]["runtime"] = "1 * attempt"  # the profile's form, in minutes
    profile.write_text(yaml.safe_dump(config, sort_keys=False))
    cluster.run(["snakemake", "--profile", str(work / "profile"), *FAST_POLLING], cwd=work, timeout=600)
    assert (work / "done").exists()
    assert [state for _, state in accounted_jobs(cluster, ("outlast",))] == ["TIMEOUT", "COMPLETED"]


def test_slurm_commands_read_this_clusters_configuration_at_the_default_path(cluster: SlurmCluster):
    """Without SLURM_CONF (Snakemake's job steps drop it) srun and scontrol read /etc/slurm/slurm.conf: in
    the cluster's namespace that is this cluster's file, also where the machine has a site configuration."""
    assert cluster.run(["cat", "/etc/slurm/slurm.conf"]).stdout == cluster.conf.read_text()
    out = cluster.run(["env", "-u", "SLURM_CONF", "scontrol", "show", "config"]).stdout
    assert re.search(r"^ClusterName\s*=\s*stylepipe$", out, re.M), out[-2000:]
