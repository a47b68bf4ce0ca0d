"""Outputs Snakemake builds end up known to DVC: the Snakefile's `onsuccess` runs `stylepipe dvc-commit`
for the stages of the run, so `dvc status` is clean, `dvc push` uploads them and `dvc repro` re-runs
nothing. Bad names are refused before anything is recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..conftest import make_project_copy, run

pytestmark = [pytest.mark.integration]

STAGES = ("download", "weights")


def test_snakemake_outputs_are_committed_pushed_and_not_rerun(tmp_path: Path):
    repo = make_project_copy(tmp_path / "project", {"tracking": {"enabled": False}})
    run(["snakemake", "-c", "1", "data/raw", "models/encoder"], repo)
    assert "up to date" in run(["dvc", "status", *STAGES], repo).stdout
    lock = (repo / "dvc.lock").read_text()
    assert all(f"{stage}:" in lock for stage in STAGES)
    remote = tmp_path / "remote"
    run(["dvc", "remote", "add", "-d", "local", str(remote)], repo)
    pushed = run(["dvc", "push", *STAGES], repo).stdout
    assert "pushed" in pushed and "Everything is up to date" not in pushed, pushed
    assert any(p.is_file() for p in remote.rglob("*"))
    assert "Running stage" not in run(["dvc", "repro", *STAGES], repo).stdout


def test_dvc_commit_refuses_unknown_stages_and_missing_outputs(tmp_path: Path):
    repo = make_project_copy(tmp_path / "project", {"tracking": {"enabled": False}})
    bad = run(["stylepipe", "dvc-commit", "train_adian"], repo, check=False)
    assert bad.returncode == 1 and "train_adian: not a stage" in bad.stderr
    missing = run(["stylepipe", "dvc-commit", "weights"], repo, check=False)
    assert missing.returncode == 1 and "models/encoder" in missing.stderr
    assert not (repo / "dvc.lock").exists()
