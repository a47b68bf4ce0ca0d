"""MLflow tracking: one run per training/evaluation stage, with params, losses, metrics and images.

The default store is a SQLite file at the repo root (git-ignored, not a DVC output) and artifacts go to
./mlartifacts beside it, set explicitly so they never land in whatever directory a stage runs from.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from stylepipe.config import Params

ARTIFACT_DIR = "mlartifacts"


def resolve_uri(uri: str, root: Path) -> str:
    """Make a relative `sqlite:///file.db` absolute against the repo root; leave other URIs alone."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        return prefix + str((root / uri[len(prefix) :]).resolve())
    return uri


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists become comma-joined strings (MLflow params are strings)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, list | tuple):
            out[name] = ",".join(str(v) for v in value)
        else:
            out[name] = value
    return out


def git_commit(root: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True, timeout=10
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def git_dirty(root: Path) -> bool:
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root, capture_output=True, text=True, check=True, timeout=10,
        )
        return bool(out.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return False


class Tracker:
    """Thin wrapper over an active MLflow run (so callers never import mlflow themselves)."""

    def __init__(self, mlflow_module: Any) -> None:
        self._mlflow = mlflow_module

    def metrics(self, values: Mapping[str, float], step: int | None = None) -> None:
        self._mlflow.log_metrics({k: float(v) for k, v in values.items()}, step=step)

    def artifact(self, path: str | Path, subdir: str | None = None) -> None:
        self._mlflow.log_artifact(str(path), artifact_path=subdir)

    def artifacts(self, path: str | Path, subdir: str | None = None) -> None:
        self._mlflow.log_artifacts(str(path), artifact_path=subdir)

    @property
    def run_id(self) -> str:
        return self._mlflow.active_run().info.run_id


class NullTracker:
    """Stands in for MLflow when `tracking.enabled: false` (e.g. a GPU node without the tracking stack)."""

    run_id = None

    def metrics(self, values: Mapping[str, float], step: int | None = None) -> None:
        pass

    def artifact(self, path: str | Path, subdir: str | None = None) -> None:
        pass

    def artifacts(self, path: str | Path, subdir: str | None = None) -> None:
        pass


@contextlib.contextmanager
def store_init_lock(uri: str) -> Iterator[None]:
    """Serialise the first use of a SQLite store across processes: MLflow creates and migrates the schema
    on first connect, and two stages starting at once (Snakemake -c 2) race on it ("table already
    exists"). Other stores (a tracking server) need no lock."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        yield
        return
    lock_path = Path(uri[len(prefix):] + ".lock")
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def stage_run(
    params: Params, stage: str, sections: list[str], root: Path = Path(".")
) -> Iterator[Tracker | NullTracker]:
    """Start an MLflow run for a DVC/Snakemake stage and log the params of the sections it reads."""
    if not params.tracking.enabled:
        yield NullTracker()
        return
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    import mlflow

    root = root.resolve()
    uri = resolve_uri(params.tracking.uri, root)
    mlflow.set_tracking_uri(uri)
    with store_init_lock(uri):
        experiment = mlflow.get_experiment_by_name(params.tracking.experiment)
        if experiment is None:
            artifacts = (root / ARTIFACT_DIR).as_uri()
            mlflow.create_experiment(params.tracking.experiment, artifact_location=artifacts)
        mlflow.set_experiment(params.tracking.experiment)
    dumped = params.model_dump(mode="json")
    logged = flatten({s: dumped[s] for s in sections})
    tags = {
        "dvc.stage": stage,
        "mlflow.source.git.commit": git_commit(root),
        "git.dirty": str(git_dirty(root)).lower(),
        "mlflow.runName": stage,
    }
    with mlflow.start_run(run_name=stage, tags=tags):
        mlflow.log_params(logged)
        yield Tracker(mlflow)
