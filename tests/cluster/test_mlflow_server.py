"""The stages log to a real `mlflow server` over HTTP (SQLite backend, artifacts served by the server),
the runs, images and the serving model read back through MlflowClient, and `mlflow models serve` loads
the model from the server. The server binds port 0 on 127.0.0.1 and is stopped when the module ends."""

from __future__ import annotations

import base64
import io
import json
import multiprocessing
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from ..conftest import make_project_copy, run, tool_env
from .services import UVICORN_PORT, service, wait_for_log

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

STAGES = {"train_recon", "train_adain", "train_johnson@Cubism", "evaluate"}


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """`mlflow server` with a SQLite backend and --serve-artifacts; yields its URL and artifact folder."""
    root = tmp_path_factory.mktemp("mlflow-server")
    log = root / "server.log"
    cmd = ["mlflow", "server", "--backend-store-uri", f"sqlite:///{root}/mlflow.db", "--serve-artifacts",
           "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", "0",
           "--workers", "1"]
    with service(cmd, log, cwd=root) as proc:
        port = wait_for_log(proc, log, UVICORN_PORT, "mlflow server").group(1)
        yield f"http://127.0.0.1:{port}", root / "artifacts"


@pytest.fixture(scope="module")
def project(tracking_server, tmp_path_factory) -> Path:
    """A project copy whose params point tracking.uri at the server, run with Snakemake through evaluate."""
    url, _ = tracking_server
    repo = make_project_copy(tmp_path_factory.mktemp("tracked") / "project", {"tracking": {"uri": url}})
    run(["snakemake", "-c", "2", "evaluate"], repo)
    return repo


def _client(url: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=url)


def _runs(url: str, experiment: str = "stylepipe") -> dict:
    client = _client(url)
    found = client.get_experiment_by_name(experiment)
    return {r.info.run_name: r for r in client.search_runs([found.experiment_id])} if found else {}


def test_stages_log_params_metrics_images_and_model_to_the_server(tracking_server, project: Path):
    url, served_artifacts = tracking_server
    client = _client(url)
    runs = _runs(url)
    assert set(runs) == STAGES and all(r.info.status == "FINISHED" for r in runs.values())
    adain = runs["train_adain"]
    assert adain.data.params["train_adain.iterations"] == "4" and "common.seed" in adain.data.params
    assert [m.step for m in client.get_metric_history(adain.info.run_id, "loss")] == [1, 2, 3, 4]
    previews = client.list_artifacts(adain.info.run_id, "previews")
    assert previews and all(a.path.endswith(".png") for a in previews)
    local = Path(client.download_artifacts(adain.info.run_id, previews[0].path, str(project / "dl")))
    assert Image.open(local).size[0] > 0
    evaluation = runs["evaluate"]
    assert "style_loss" in evaluation.data.metrics
    assert {"grid.png", "report.html"} <= {a.path for a in client.list_artifacts(evaluation.info.run_id)}
    models = client.search_logged_models(experiment_ids=[evaluation.info.experiment_id])
    assert [m.source_run_id for m in models] == [evaluation.info.run_id]
    # the artifacts went through the server into its store, none into the project
    assert any(served_artifacts.rglob("MLmodel")) and any(served_artifacts.rglob("grid.png"))
    assert not any((project / name).exists() for name in ("mlruns", "mlartifacts", "mlflow.db"))


def test_mlflow_models_serve_loads_the_model_from_the_server(tracking_server, project: Path, tmp_path: Path):
    url, _ = tracking_server
    evaluation = _runs(url)["evaluate"]
    model = _client(url).search_logged_models(experiment_ids=[evaluation.info.experiment_id])[0]
    log = tmp_path / "serve.log"
    cmd = ["mlflow", "models", "serve", "-m", f"models:/{model.model_id}", "--env-manager", "local",
           "-h", "127.0.0.1", "-p", "0"]
    with service(cmd, log, env={**tool_env(), "MLFLOW_TRACKING_URI": url}) as proc:
        port = wait_for_log(proc, log, UVICORN_PORT, "mlflow models serve").group(1)
        rng = np.random.default_rng(0)
        rows = {"dataframe_records": [{"content": _png(rng, 40, 32), "style": _png(rng, 32, 32), "alpha": 1.0}]}
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps(rows).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            out = json.loads(response.read())["predictions"][0]
    image = Image.open(io.BytesIO(base64.b64decode(out["image"])))
    assert image.size == (40, 32) and np.asarray(image).std() > 0


def _png(rng: np.random.Generator, width: int, height: int) -> str:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _start_stage(url: str, experiment: str, root: str) -> str:
    from stylepipe.core.config import Tracking, load_params
    from stylepipe.core.tracking import stage_run

    params = load_params(Path(root) / "params.yaml")
    params = params.model_copy(update={"tracking": Tracking(uri=url, experiment=experiment)})
    with stage_run(params, "train_recon", ["common"], root=Path(root)) as tracker:
        tracker.metrics({"loss": 1.0}, step=1)
        return tracker.run_id


def test_two_stages_starting_at_once_both_land(tracking_server, project: Path):
    """Both find the experiment missing and both create it: the second must still log its run."""
    url, _ = tracking_server
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        run_ids = pool.starmap(_start_stage, [(url, "concurrent", str(project))] * 2)
    client = _client(url)
    landed = client.search_runs([client.get_experiment_by_name("concurrent").experiment_id])
    assert len(set(run_ids)) == 2 and {r.info.run_id for r in landed} == set(run_ids)


def test_disabled_tracking_logs_nothing_anywhere(tracking_server, project: Path):
    """`tracking.enabled: false`: evaluate neither logs to the server nor opens MLflow's default store."""
    url, _ = tracking_server
    before = {r.info.run_id for r in _runs(url).values()}
    params_file = project / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    params["tracking"]["enabled"] = False
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    run(["stylepipe", "evaluate"], project, timeout=600)
    assert {r.info.run_id for r in _runs(url).values()} == before
    assert not any((project / name).exists() for name in ("mlruns", "mlartifacts", "mlflow.db"))
    assert "serving model" not in (project / "reports/evaluate/report.html").read_text()
