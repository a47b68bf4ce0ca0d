"""MLflow helpers: the store location and how params are flattened."""

from __future__ import annotations

from pathlib import Path

from stylepipe.tracking import flatten, resolve_uri, stage_run


def test_relative_sqlite_uri_is_anchored_at_the_repo_root(tmp_path: Path):
    assert resolve_uri("sqlite:///mlflow.db", tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert resolve_uri("sqlite:////abs/x.db", tmp_path) == "sqlite:////abs/x.db"
    assert resolve_uri("http://127.0.0.1:5000", tmp_path) == "http://127.0.0.1:5000"


def test_flatten_names_params_like_params_yaml():
    flat = flatten({"train_adain": {"lr": 1e-4, "style_layers": ["relu1_1", "relu2_1"]}, "common": {"seed": 0}})
    assert flat == {"train_adain.lr": 1e-4, "train_adain.style_layers": "relu1_1,relu2_1", "common.seed": 0}


def test_disabled_tracking_logs_nothing(tmp_path: Path):
    from stylepipe.config import Tracking, load_params

    params = load_params(Path(__file__).parents[1] / "params.yaml")
    params = params.model_copy(update={"tracking": Tracking(enabled=False, uri="sqlite:///runs.db")})
    with stage_run(params, "train_adain", ["common"], root=tmp_path) as tracker:
        tracker.metrics({"loss": 1.0}, step=1)
        tracker.artifact(tmp_path / "missing.png")
        assert tracker.run_id is None
    assert not (tmp_path / "runs.db").exists() and not (tmp_path / "mlartifacts").exists()


def _log_one_run(root: str) -> str:
    from stylepipe.config import load_params

    params = load_params(Path(__file__).parents[1] / "params.yaml")
    with stage_run(params, "train_recon", ["common"], root=Path(root)) as tracker:
        tracker.metrics({"loss": 1.0}, step=1)
        return tracker.run_id


def test_two_stages_starting_at_once_share_a_fresh_store(tmp_path: Path):
    """Snakemake -c 2 starts two stages together: MLflow's first-connect schema creation must not race."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(2) as pool:
        run_ids = pool.map(_log_one_run, [str(tmp_path)] * 2)
    assert len(set(run_ids)) == 2 and (tmp_path / "mlflow.db").is_file()
