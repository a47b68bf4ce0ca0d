"""Tracking under SLURM: the default SQLite store is refused before anything is written, naming the key
and the server to use instead; a server URI is left alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from stylepipe.core.tracking import TrackingError, refuse_shared_sqlite, stage_run


def test_sqlite_store_is_refused_in_a_slurm_job(tiny_params, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    with pytest.raises(TrackingError, match=r"tracking.uri=sqlite:///.*mlflow server"), \
            stage_run(tiny_params, "train_recon", ["common"], root=tmp_path):
        pass
    assert not any(tmp_path.iterdir())


def test_sqlite_outside_slurm_and_a_server_inside_are_accepted(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    refuse_shared_sqlite("sqlite:////tmp/mlflow.db")
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    refuse_shared_sqlite("http://login1:5000")
