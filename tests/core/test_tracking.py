"""MLflow helpers: the store location and how params are flattened."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from stylepipe.core.tracking import TrackingError, flatten, resolve_uri, stage_run


def test_relative_sqlite_uri_is_anchored_at_the_repo_root(tmp_path: Path):
    assert resolve_uri("sqlite:///mlflow.db", tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert resolve_uri("sqlite:////abs/x.db", tmp_path) == "sqlite:////abs/x.db"
    assert resolve_uri("http://127.0.0.1:5000", tmp_path) == "http://127.0.0.1:5000"


def test_flatten_names_params_like_params_yaml():
    flat = flatten({"train_adain": {"lr": 1e-4, "style_layers": ["relu1_1", "relu2_1"]}, "common": {"seed": 0}})
    assert flat == {"train_adain.lr": 1e-4, "train_adain.style_layers": "relu1_1,relu2_1", "common.seed": 0}


def test_disabled_tracking_logs_nothing(tmp_path: Path):
    from stylepipe.core.config import Tracking, load_params

    params = load_params(Path(__file__).parents[2] / "params.yaml")
    params = params.model_copy(update={"tracking": Tracking(enabled=False, uri="sqlite:///runs.db")})
    with stage_run(params, "train_adain", ["common"], root=tmp_path) as tracker:
        tracker.metrics({"loss": 1.0}, step=1)
        tracker.artifact(tmp_path / "missing.png")
        assert tracker.run_id is None
    assert not (tmp_path / "runs.db").exists() and not (tmp_path / "mlartifacts").exists()


def _log_one_run(root: str) -> str:
    from stylepipe.core.config import load_params

    params = load_params(Path(__file__).parents[2] / "params.yaml")
    with stage_run(params, "train_recon", ["common"], root=Path(root)) as tracker:
        tracker.metrics({"loss": 1.0}, step=1)
        return tracker.run_id


def test_two_stages_starting_at_once_share_a_fresh_store(tmp_path: Path):
    """Snakemake -c 2 starts two stages together: MLflow's first-connect schema creation must not race."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(2) as pool:
        run_ids = pool.map(_log_one_run, [str(tmp_path)] * 2)
    assert len(set(run_ids)) == 2 and (tmp_path / "mlflow.db").is_file()


def test_disabled_tracking_never_logs_the_serving_model(tmp_path: Path, monkeypatch):
    """MLflow's model logging outside a run opens one in its default store (./mlruns or ./mlflow.db)."""
    from stylepipe.core.config import Tracking, load_params

    monkeypatch.chdir(tmp_path)
    params = load_params(Path(__file__).parents[2] / "params.yaml")
    params = params.model_copy(update={"tracking": Tracking(enabled=False)})
    calls = []
    with stage_run(params, "evaluate", ["common"], root=tmp_path) as tracker:
        assert tracker.model(lambda: calls.append(1) or "models:/x") is None
    assert calls == [] and sorted(p.name for p in tmp_path.iterdir()) == []


def _closed_port_uri() -> tuple[socket.socket, str]:
    """A loopback port that is bound but not listening: every connection to it is refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("listening", [False, True], ids=["refused", "never-answers"])
def test_unreachable_server_is_a_clear_error_within_seconds(tmp_path: Path, monkeypatch, listening: bool):
    """A refused connection, or a server that accepts and never answers, fails the stage naming
    tracking.uri, bounded by the retries and timeout the stage sets (not MLflow's minutes)."""
    from stylepipe.core.config import Tracking, load_params

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    sock, uri = _closed_port_uri()
    if listening:
        sock.listen(8)
    params = load_params(Path(__file__).parents[2] / "params.yaml")
    params = params.model_copy(update={"tracking": Tracking(uri=uri)})
    started = time.monotonic()
    with sock, pytest.raises(TrackingError, match=rf"tracking.uri={uri}: the MLflow tracking store does not answer"):  # noqa: SIM117
        with stage_run(params, "train_recon", ["common"], root=tmp_path):
            pytest.fail("the stage body ran without a tracking store")
    assert time.monotonic() - started < 60


def test_experiment_created_by_another_stage_meanwhile_is_used():
    """Two stages against one tracking server both find the experiment missing; the one whose create
    loses the race must go on with the experiment the other made, and other errors must still surface."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, RESOURCE_ALREADY_EXISTS

    from stylepipe.core.tracking import ensure_experiment

    class RacingMlflow:
        def __init__(self, error_code: int) -> None:
            self.error_code, self.current = error_code, None

        def get_experiment_by_name(self, name: str) -> None:
            return None

        def create_experiment(self, name: str, artifact_location: str | None) -> str:
            raise MlflowException(f"Experiment(name={name}) already exists", self.error_code)

        def set_experiment(self, name: str) -> None:
            self.current = name

    lost_race = RacingMlflow(RESOURCE_ALREADY_EXISTS)
    ensure_experiment(lost_race, "stylepipe", None)
    assert lost_race.current == "stylepipe"
    with pytest.raises(MlflowException):
        ensure_experiment(RacingMlflow(INVALID_PARAMETER_VALUE), "stylepipe", None)
