"""The local Snakemake profile: jobs that each take a GPU never run at once on one GPU."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from ..conftest import ROOT, run

PROFILE = ROOT / "workflow" / "profiles" / "local"

# Two GPU jobs that fail if they overlap: each holds a lock folder (mkdir is atomic) while it runs.
SNAKEFILE = """
rule all:
    input: "a", "b"

rule gpu_job:
    output: "{x}"
    resources: gpu=1
    shell: "mkdir gpu_in_use && sleep 1 && rmdir gpu_in_use && touch {output}"
"""


def test_profile_limits_gpus_and_the_training_rules_ask_for_theirs():
    """The DDP rules take one GPU per torchrun process; Johnson's single-process rule takes one."""
    config = yaml.safe_load((PROFILE / "config.yaml").read_text())
    assert "gpu=1" in config["resources"]
    rules = "".join(p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk"))
    wanted = {"train_recon": 'gpu=config["common"]["nproc_per_node"]',
              "train_adain": 'gpu=config["common"]["nproc_per_node"]', "train_johnson": "gpu=1"}
    for rule, request in wanted.items():
        body = rules.split(f"rule {rule}:")[1].split("\nrule ")[0]
        assert request in body, rule


@pytest.mark.integration
def test_two_gpu_jobs_run_one_after_the_other_under_the_local_profile(tmp_path: Path):
    shutil.copytree(PROFILE, tmp_path / "profile")
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    run(["snakemake", "--profile", "profile", "--cores", "2", "--quiet"], tmp_path)
    assert (tmp_path / "a").exists() and (tmp_path / "b").exists()
