"""The Snakemake DAG on a real single-node SLURM cluster (slurmctld, slurmd, slurmdbd on MariaDB, munge)
through the project's SLURM profile, with this cluster's partition, account and resources in place of the
site values; the jobs are checked in sacct, and a second invocation submits nothing."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml

from ..conftest import ROOT, make_project_copy, run
from .services import SlurmCluster, require_tools, service, slurm_cluster, wait_until

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
    no GPU (the training rules declare one, which this cluster has not). Each rule keeps its `slurm_extra`
    (the training rules' `--signal`)."""
    config = yaml.safe_load(profile.read_text())
    site = config.get("set-resources", {})
    config["default-resources"] = dict(resources)
    config["set-resources"] = {
        rule: {**resources, "gpu": 0, **{k: v for k, v in site.get(rule, {}).items() if k == "slurm_extra"}}
        for rule in {*site, *rules}
    }
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


# train_recon long enough to be stopped between its first periodic checkpoint and its next
# one thread, as the job's one CPU gives it: under bf16 autocast the result depends on the thread count
RESUMABLE = {"tracking": {"enabled": False}, "common": {"num_threads": 1},
             "train_recon": {"iterations": 30, "checkpoint_every": 10, "log_every": 5}}
SIGTERM_BIT = 1 << (signal.SIGTERM - 1)


def job_step_pids(cluster: SlurmCluster, job_id: str) -> list[int]:
    """The processes of the job's steps (not of its batch script): those SLURM's `--signal` reaches."""
    out = cluster.run(["scontrol", "listpids", job_id], check=False).stdout
    rows = [line.split() for line in out.splitlines()[1:]]
    return [int(row[0]) for row in rows if len(row) >= 3 and row[2] not in ("batch", "extern", "-")]


def cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return ""


def send(pids: list[int], signum: int) -> None:
    """Signal the processes; one that has ended meanwhile is skipped."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def signalled(pid: int) -> bool:
    """Whether SIGTERM reached the process the test stopped: pending on it, or SLURM has already woken it
    (slurmstepd sends SIGCONT with the signal) and it is running or gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    if not re.search(r"^State:\s*T", status, re.M):
        return True
    masks = re.findall(r"^(?:ShdPnd|SigPnd):\s*([0-9a-f]+)$", status, re.M)
    return any(int(mask, 16) & SIGTERM_BIT for mask in masks)


def running_job(cluster: SlurmCluster, rule: str) -> str | None:
    out = cluster.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i|%k"]).stdout
    return next((job for job, comment in (line.split("|") for line in out.splitlines()) if comment == f"rule_{rule}"),
                None)


def warning_seconds(profile: Path, rule: str) -> int:
    """The seconds before the limit at which the profile has SLURM send SIGTERM to the rule's job."""
    extra = yaml.safe_load(profile.read_text())["set-resources"][rule]["slurm_extra"]
    return int(re.search(r"--signal=TERM@(\d+)", extra).group(1))


def test_a_training_job_signalled_before_its_time_limit_resumes_on_its_retry(cluster: SlurmCluster,
                                                                              tmp_path: Path):
    """`train_recon` through the SLURM profile, ended by the profile's `--signal=TERM@N` between two periodic
    checkpoints: the retry resumes from the step the job reached and ends with the uninterrupted run's
    losses and weights.

    SLURM sends the signal up to a minute off its due time, so the test makes it due at a known moment:
    once the first periodic checkpoint is written it stops the job's processes, shortens the job's limit
    (`scontrol update TimeLimit`) so the warning falls due, waits until SLURM's SIGTERM is pending on every
    process, and lets them go on."""
    from stylepipe.adain.model import load_decoder

    repo = make_project_copy(tmp_path / "project", RESUMABLE)
    for stage in ("download", "weights", "preprocess"):
        run(["stylepipe", stage], repo)
    reference = tmp_path / "reference"
    shutil.copytree(repo, reference, symlinks=True)
    run(["stylepipe", "train_recon"], reference)

    profile = repo / "workflow/profiles/slurm/config.yaml"
    point_profile_at(profile, TEST_RESOURCES, RULES)
    warning = warning_seconds(profile, "train_recon")
    log = tmp_path / "snakemake.log"
    cmd = ["snakemake", "--profile", "workflow/profiles/slurm", *FAST_POLLING, "train_recon"]
    with service(cluster.command(cmd), log, env=cluster.env(), cwd=repo) as snakemake:
        found: dict[str, str | int] = {}

        def stage_started() -> bool:
            job = running_job(cluster, "train_recon")
            for pid in job_step_pids(cluster, job) if job else []:
                if "stylepipe train_recon" in cmdline(pid):
                    found.update(job=job, stage=pid)
            return bool(found)

        wait_until(stage_started, "the train_recon job's stage process", snakemake, log, timeout=600)
        job, stage = str(found["job"]), int(found["stage"])
        checkpoints = repo / ".cache/checkpoints/train_recon"
        wait_until(lambda: any(checkpoints.glob("*.pt")), "the first periodic checkpoint", snakemake, log,
                   poll=0.02)
        os.kill(stage, signal.SIGSTOP)
        others = [pid for pid in job_step_pids(cluster, job) if pid != stage]
        send(others, signal.SIGSTOP)
        elapsed = cluster.run(["squeue", "-h", "-j", job, "-o", "%M"]).stdout.strip()
        minutes = (slurm_seconds(elapsed) + warning) // 60  # the warning is due now, the limit minutes away
        cluster.run(["scontrol", "update", f"JobId={job}", f"TimeLimit={minutes}"])
        wait_until(lambda: all(signalled(p) for p in (stage, *others)), "SLURM's SIGTERM", snakemake, log)
        send([stage, *others], signal.SIGCONT)
        assert snakemake.wait(timeout=600) == 0, log.read_text()[-4000:]

    assert [state for _, state in accounted_jobs(cluster, ("train_recon",))][-2:] == ["FAILED", "COMPLETED"]
    resumed = json.loads((repo / "models/recon/summary.json").read_text())
    checkpoint_every = RESUMABLE["train_recon"]["checkpoint_every"]
    # the step the signal came in, checkpointed on SIGTERM: past the periodic checkpoint, not on one
    assert resumed["resumed_from"] > checkpoint_every and resumed["resumed_from"] % checkpoint_every, resumed
    assert resumed["steps"] == RESUMABLE["train_recon"]["iterations"]
    expected, got = (read_csv_rows(p / "reports/train_recon/losses.csv") for p in (reference, repo))
    assert [r["step"] for r in got] == [r["step"] for r in expected]
    assert [float(r["loss"]) for r in got] == pytest.approx([float(r["loss"]) for r in expected], rel=1e-5)
    want, have = (load_decoder(p / "models/recon/decoder.pt").state_dict() for p in (reference, repo))
    assert all(torch.allclose(want[k], have[k], rtol=1e-5, atol=1e-6) for k in want)


def slurm_seconds(elapsed: str) -> int:
    """squeue's `[days-][hours:]minutes:seconds` as seconds."""
    days, _, clock = elapsed.rpartition("-")
    seconds = 0
    for part in clock.split(":"):
        seconds = seconds * 60 + int(part)
    return seconds + int(days or 0) * 86400


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as stream:
        return list(csv.DictReader(stream))
