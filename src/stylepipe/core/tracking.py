"""MLflow tracking: one run per training/evaluation stage, with params, losses, metrics and images.

The default store is a SQLite file at the repo root (git-ignored, not a DVC output) and artifacts go to
./mlartifacts beside it, set explicitly so they never land in whatever directory a stage runs from.
`tracking.uri: http://host:port` logs to an `mlflow server` instead; its HTTP retries and timeouts are
bounded (HTTP_LIMITS, overridable through MLflow's own environment variables) so a server that is down
fails the stage with a TrackingError within seconds instead of MLflow's default of several minutes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from stylepipe.core.config import Params
from stylepipe.core.errors import StylepipeError

ARTIFACT_DIR = "mlartifacts"
# MLflow's defaults (7 retries, backoff factor 2, 120 s per request) keep a stage waiting on a dead server
# for minutes; these apply unless the user sets the variables.
HTTP_LIMITS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


class TrackingError(StylepipeError, RuntimeError):
    """The tracking store named by `tracking.uri` cannot be reached or refused a write."""


def unreachable(uri: str, err: Exception) -> TrackingError:
    first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return TrackingError(
        f"params tracking.uri={uri}: the MLflow tracking store does not answer ({first_line}). Start the "
        "server, fix tracking.uri, or set tracking.enabled: false to run without MLflow"
    )


@contextlib.contextmanager
def reported_as(uri: str) -> Iterator[None]:
    """Turn MLflow's and requests' failures to reach the store into one TrackingError naming the URI."""
    from mlflow.exceptions import MlflowException
    from requests.exceptions import RequestException

    try:
        yield
    except (MlflowException, RequestException) as err:
        raise unreachable(uri, err) from err


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

    def __init__(self, mlflow_module: Any, uri: str) -> None:
        self._mlflow = mlflow_module
        self._uri = uri

    def metrics(self, values: Mapping[str, float], step: int | None = None) -> None:
        with reported_as(self._uri):
            self._mlflow.log_metrics({k: float(v) for k, v in values.items()}, step=step)

    def artifact(self, path: str | Path, subdir: str | None = None) -> None:
        with reported_as(self._uri):
            self._mlflow.log_artifact(str(path), artifact_path=subdir)

    def artifacts(self, path: str | Path, subdir: str | None = None) -> None:
        with reported_as(self._uri):
            self._mlflow.log_artifacts(str(path), artifact_path=subdir)

    def model(self, log: Callable[[], str]) -> str | None:
        """Run `log` (which logs a model to the active run and returns its URI) inside this run."""
        with reported_as(self._uri):
            return log()

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

    def model(self, log: Callable[[], str]) -> str | None:
        """Never calls `log`: MLflow's model logging would otherwise open a run in its default store."""
        return None


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


def refuse_shared_sqlite(uri: str) -> None:
    """Under SLURM the SQLite file sits on a shared filesystem where many jobs write at once, and its file
    locks do not hold there: jobs must log to an MLflow server instead (docs/cluster.md)."""
    if uri.startswith("sqlite:///") and "SLURM_JOB_ID" in os.environ:
        raise TrackingError(
            f"params tracking.uri={uri}: a SQLite store cannot take the writes of concurrent SLURM jobs on a "
            "shared filesystem; start `mlflow server` on the login node and set tracking.uri: "
            "http://<login node>:<port> (docs/cluster.md), or set tracking.enabled: false"
        )


def artifact_location(uri: str, root: Path) -> str | None:
    """./mlartifacts at the repo root for a local store; a tracking server chooses (and serves) its own."""
    if uri.startswith(("http://", "https://")):
        return None
    return (root / ARTIFACT_DIR).as_uri()


def ensure_experiment(mlflow: Any, name: str, location: str | None) -> None:
    """Create the experiment unless it exists, then make it current. Two stages starting at once against a
    tracking server both see it missing and both create it; the loser's RESOURCE_ALREADY_EXISTS is benign."""
    from mlflow.exceptions import MlflowException

    if mlflow.get_experiment_by_name(name) is None:
        try:
            mlflow.create_experiment(name, artifact_location=location)
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
    mlflow.set_experiment(name)


@contextlib.contextmanager
def stage_run(
    params: Params, stage: str, sections: list[str], root: Path = Path(".")
) -> Iterator[Tracker | NullTracker]:
    """Start an MLflow run for a DVC/Snakemake stage and log the params of the sections it reads."""
    if not params.tracking.enabled:
        yield NullTracker()
        return
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    for name, value in HTTP_LIMITS.items():
        os.environ.setdefault(name, value)
    import mlflow

    root = root.resolve()
    uri = resolve_uri(params.tracking.uri, root)
    refuse_shared_sqlite(uri)
    mlflow.set_tracking_uri(uri)
    with store_init_lock(uri), reported_as(uri):
        ensure_experiment(mlflow, params.tracking.experiment, artifact_location(uri, root))
    dumped = params.model_dump(mode="json")
    logged = flatten({s: dumped[s] for s in sections})
    tags = {
        "dvc.stage": stage,
        "mlflow.source.git.commit": git_commit(root),
        "git.dirty": str(git_dirty(root)).lower(),
        "mlflow.runName": stage,
    }
    with reported_as(uri):
        run = mlflow.start_run(run_name=stage, tags=tags)
    with run:
        with reported_as(uri):
            mlflow.log_params(logged)
        try:
            yield Tracker(mlflow, uri)
        except KeyboardInterrupt:
            # Ctrl-C or SIGTERM (the CLI raises Terminated, a KeyboardInterrupt): the run was stopped, not failed
            mlflow.end_run("KILLED")
            raise
