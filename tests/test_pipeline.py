"""The whole DAG, for real, with the real tools, on a tiny version of the embedded sample.

One project copy is reproduced with `dvc repro` (module fixture); the tests then check what users rely
on: nothing re-runs when nothing changed, a training param re-runs only what depends on it, MLflow holds
the runs, metrics/plots work, and push -> fresh clone -> pull restores every model without re-running.
A second copy is run with Snakemake from scratch.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import sys
from pathlib import Path

import pytest
import yaml

from stylepipe.core.io import file_digest
from stylepipe.stagetable import STAGE_NAMES

from .conftest import make_project_copy, run

pytestmark = pytest.mark.integration

ALL_STAGES = set(STAGE_NAMES)
TRAINED = ("models/encoder/encoder.pt", "models/recon/decoder.pt", "models/adain/decoder.pt",
           "models/adain/style_bank.pt", "models/export/onnx/adain_stats.onnx",
           "models/export/onnx/adain_baked.onnx", "models/johnson/Cubism/transformer_net.pt",
           "models/export/johnson/Cubism/johnson_Cubism.onnx")


def ran_stages(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([a-z_]+)(?:@[^']*)?'", output))


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    repo = make_project_copy(tmp_path_factory.mktemp("dvc") / "project")
    proc = run(["dvc", "repro"], repo)
    assert ran_stages(proc.stdout) == ALL_STAGES, proc.stdout
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "reproduced"], repo)
    return repo


def test_repro_writes_every_output(project: Path):
    for rel in (*TRAINED, "data/raw", "data/prepared/report.json", "reports/evaluate/metrics.json",
                "reports/evaluate/grid.png", "reports/evaluate/report.html", "reports/train_adain/losses.csv",
                "demo/demo.mp4",
                "models/export/openvino", "models/export/blob"):
        assert (project / rel).exists(), rel
    status = run(["dvc", "status"], project)
    assert "up to date" in status.stdout, status.stdout
    assert not list((project / "data").rglob("*.tmp"))
    johnson = json.loads((project / "models/export/johnson/Cubism/report.json").read_text())
    assert johnson["width_multiplier"] == 0.5  # train_johnson.width reaches the trained network


def test_second_repro_runs_nothing(project: Path):
    proc = run(["dvc", "repro"], project)
    assert ran_stages(proc.stdout) == set(), proc.stdout


def test_metrics_and_plots(project: Path):
    metrics = json.loads(run(["dvc", "metrics", "show", "--json"], project).stdout)
    headline = next(iter(metrics.values()))["data"]["reports/evaluate/metrics.json"]["data"]
    assert {"style_loss", "ssim", "hist", "style/floor", "ssim/floor", "hist/floor", "style/gatys"} == set(headline)
    table = run(["dvc", "metrics", "show"], project).stdout
    assert max(len(line) for line in table.splitlines()) <= 120, table  # readable in a 120-column terminal
    detail = json.loads((project / "reports/evaluate/metrics_detail.json").read_text())
    for key in ("content_loss", "style_loss", "ssim_content", "hist_distance_style", "speed.fps_cached_style",
                "style_separation", "reference_gatys.style_loss", "baseline_colour_transfer.ssim_content",
                "own_style_closest", "baseline_colour_transfer.own_style_closest", "grid_styles"):
        assert key in detail, key
    assert [row["metric"] for row in detail["verdict"]] == ["style_loss", "ssim_content", "hist_distance_style"]
    assert detail["verdict"][0]["vs_floor"].startswith(("better by", "worse by", "equal"))
    palettes_apart = "own_palette_closest_for_every_style"
    assert set(detail["checks"]) == {"style_loss_below_floor", "ssim_at_least_0.45", palettes_apart}
    assert detail["checks"][palettes_apart] == (detail["own_style_closest"] == detail["grid_styles"])
    run(["dvc", "plots", "show", "-o", "plots_out"], project)
    html = (project / "plots_out" / "index.html").read_text()
    assert "AdaIN losses" in html and "Alpha sweep" in html


def test_mlflow_records_each_training_and_evaluation_stage(project: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("stylepipe")
    runs = {r.data.tags["dvc.stage"]: r for r in client.search_runs([experiment.experiment_id])}
    assert {"train_recon", "train_adain", "evaluate"} <= set(runs)
    head = run(["git", "rev-list", "--max-parents=0", "HEAD"], project).stdout.strip()
    adain = runs["train_adain"]
    assert adain.data.params["train_adain.lr"] == str(yaml.safe_load((project / "params.yaml").read_text())
                                                        ["train_adain"]["lr"])
    assert "common.seed" in adain.data.params
    assert adain.data.tags["mlflow.source.git.commit"] == head
    history = client.get_metric_history(adain.info.run_id, "loss")
    assert [m.step for m in history] == [1, 2, 3, 4]
    assert {"content", "style", "final_loss"} <= set(adain.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(adain.info.run_id)}
    assert {"previews", "losses.csv", "summary.json"} <= artifacts
    evaluation = runs["evaluate"]
    assert "style_loss" in evaluation.data.metrics
    assert {"grid.png", "report.html"} <= {a.path for a in client.list_artifacts(evaluation.info.run_id)}
    assert "alpha_sweep.alpha_100.ssim_content" in evaluation.data.metrics
    served = client.search_logged_models(experiment_ids=[evaluation.info.experiment_id])
    assert any(m.source_run_id == evaluation.info.run_id for m in served)  # the pyfunc serving model
    artifact_root = project / "mlartifacts"
    assert artifact_root.is_dir() and not (project / "mlruns").exists()


def test_training_param_change_reruns_only_downstream(project: Path):
    params_file = project / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    params["train_adain"]["lr"] = params["train_adain"]["lr"] * 2
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    proc = run(["dvc", "repro"], project)
    assert ran_stages(proc.stdout) == {
        "train_adain", "evaluate", "export_onnx", "export_openvino", "package", "compile_blob", "demo"
    }, proc.stdout
    assert "up to date" in run(["dvc", "status"], project).stdout
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "double the AdaIN learning rate"], project)


def test_finishing_switch_reruns_no_training_stage(project: Path):
    """params `finish` acts after the network and is declared only by the stages that apply it: switching
    palette matching and fine detail off re-runs neither training stage, and the evaluate stage scores the
    network's own outputs: farther from the paintings' palettes and from the photos' fine structure than
    the default's."""
    before = json.loads((project / "reports/evaluate/metrics.json").read_text())
    params_file = project / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    assert params["finish"] == {"palette": "histogram", "detail": 1.0}  # the defaults
    params["finish"].update(palette="none", detail=0.0)
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    proc = run(["dvc", "repro"], project)
    stages = ran_stages(proc.stdout)
    assert "evaluate" in stages and not {"train_recon", "train_adain"} & stages, proc.stdout
    after = json.loads((project / "reports/evaluate/metrics.json").read_text())
    assert after["hist"] > 2 * before["hist"] and after["ssim"] < before["ssim"], (before, after)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "score the network's own outputs"], project)


def test_push_then_pull_in_a_fresh_clone_restores_models(project: Path, tmp_path: Path):
    remote = tmp_path / "remote"
    run(["dvc", "remote", "add", "-f", "-d", "local", str(remote)], project)
    run(["git", "commit", "-qam", "add local remote"], project)
    run(["dvc", "push"], project)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    run(["dvc", "pull"], clone)
    for rel in TRAINED:
        assert file_digest(clone / rel) == file_digest(project / rel), rel
    assert "up to date" in run(["dvc", "status"], clone).stdout
    proc = run(["dvc", "repro"], clone)
    assert ran_stages(proc.stdout) == set(), proc.stdout


def test_snakemake_runs_the_same_dag(tmp_path: Path):
    repo = make_project_copy(tmp_path / "smk")
    proc = run(["snakemake", "-c", "2"], repo)
    log = proc.stdout + proc.stderr
    for stage in ALL_STAGES:
        assert f"rule {stage}:" in log, stage
    for rel in TRAINED:
        assert (repo / rel).is_file(), rel
    again = run(["snakemake", "-n", "-c", "2"], repo)
    assert "Nothing to be done" in again.stdout + again.stderr
    shutil.rmtree(repo / ".snakemake", ignore_errors=True)


# Runs `stylepipe train_recon` in a process that SIGKILLs itself right after its first checkpoint is
# written: a real kill (no Python cleanup) at a fixed point, however fast or slow the machine.
KILL_AFTER_FIRST_CHECKPOINT = """
import os, signal, sys
import stylepipe.train.loop as loop
from stylepipe.cli import main

save = loop.save_checkpoint

def save_then_die(*args, **kwargs):
    path = save(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
    return path

loop.save_checkpoint = save_then_die
sys.exit(main(["train_recon"]))
"""


def test_killed_training_stage_resumes_from_its_checkpoint(tmp_path: Path):
    """SIGKILL a real `stylepipe train_recon` after its first checkpoint; the rerun continues from it."""
    overlay = {"train_recon": {"iterations": 40, "checkpoint_every": 4, "log_every": 2, "image_every": 40}}
    repo = make_project_copy(tmp_path / "kill", overlay)
    run(["dvc", "repro", "preprocess", "weights"], repo)
    killed = run([sys.executable, "-c", KILL_AFTER_FIRST_CHECKPOINT], repo, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    checkpoints = list((repo / ".cache/checkpoints/train_recon").glob("*.pt"))
    assert len(checkpoints) == 1, "no checkpoint was written before the kill"
    assert not (repo / "models/recon/decoder.pt").exists()  # nothing that looks finished
    run(["stylepipe", "train_recon"], repo)
    summary = json.loads((repo / "models/recon/summary.json").read_text())
    assert summary["steps"] == 40
    assert summary["resumed_from"] == 4
