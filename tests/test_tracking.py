"""MLflow helpers: the store location and how params are flattened."""

from __future__ import annotations

from pathlib import Path

from stylepipe.tracking import flatten, resolve_uri


def test_relative_sqlite_uri_is_anchored_at_the_repo_root(tmp_path: Path):
    assert resolve_uri("sqlite:///mlflow.db", tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert resolve_uri("sqlite:////abs/x.db", tmp_path) == "sqlite:////abs/x.db"
    assert resolve_uri("http://127.0.0.1:5000", tmp_path) == "http://127.0.0.1:5000"


def test_flatten_names_params_like_params_yaml():
    flat = flatten({"train_adain": {"lr": 1e-4, "style_layers": ["relu1_1", "relu2_1"]}, "common": {"seed": 0}})
    assert flat == {"train_adain.lr": 1e-4, "train_adain.style_layers": "relu1_1,relu2_1", "common.seed": 0}
