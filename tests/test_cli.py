"""The `stylepipe` command line: stage dispatch, clear errors instead of tracebacks, `stylize`."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from stylepipe.cli import build_parser, main
from stylepipe.stagetable import STAGE_NAMES, STAGES

from .conftest import ROOT, load_default_params, run


def _image(path: Path, size=(40, 30), mode="RGB") -> Path:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).convert(mode).save(path)
    return path


def test_bad_params_key_is_one_clear_line(tmp_path: Path, capsys):
    raw = load_default_params()
    raw["train_adain"]["learning_rate"] = 0.1
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    assert main(["--params", str(params), "train_adain"]) == 1
    err = capsys.readouterr().err
    assert "stylepipe train_adain: error:" in err
    assert "train_adain.learning_rate: unknown key" in err
    assert "Traceback" not in err


def test_missing_inputs_name_the_file(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    assert main(["evaluate"]) == 1
    err = capsys.readouterr().err
    assert "models/encoder/encoder.pt" in err and "not found" in err


def test_stylize_image_and_folder(tmp_path: Path, tiny_models):
    enc, dec = tiny_models
    content, style = _image(tmp_path / "c.png", (44, 30)), _image(tmp_path / "s.jpg", (32, 32))
    out = tmp_path / "out.png"
    assert main(["stylize", str(content), "--style", str(style), "-o", str(out), "--encoder", str(enc),
                 "--decoder", str(dec), "--alpha", "0.5"]) == 0
    with Image.open(out) as img:
        assert img.size == (44, 30)  # any size: reflect-padded to multiples of 8 and cropped back
    folder = tmp_path / "in"
    folder.mkdir()
    _image(folder / "a.png")
    _image(folder / "b.png", mode="L")  # greyscale is converted, not rejected
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    result_dir = tmp_path / "styled"
    assert main(["stylize", str(folder), "--style", str(style), "-o", str(result_dir), "--encoder", str(enc),
                 "--decoder", str(dec)]) == 0
    assert sorted(p.name for p in result_dir.iterdir()) == ["a_stylized.png", "b_stylized.png"]


def test_stylize_rejects_bad_alpha_detail_and_unreadable_image(tmp_path: Path, tiny_models, capsys):
    enc, dec = tiny_models
    style = _image(tmp_path / "s.png")
    assert main(["stylize", str(style), "--style", str(style), "-o", str(tmp_path / "o.png"), "--alpha", "1.5",
                 "--encoder", str(enc), "--decoder", str(dec)]) == 1
    assert "--alpha: alpha 1.5 is out of range" in capsys.readouterr().err
    assert main(["stylize", str(style), "--style", str(style), "-o", str(tmp_path / "o.png"), "--detail", "2",
                 "--encoder", str(enc), "--decoder", str(dec)]) == 1
    assert "--detail: detail 2.0 is out of range: expected 0..1" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    assert main(["stylize", str(bad), "--style", str(style), "-o", str(tmp_path / "o.png"),
                 "--encoder", str(enc), "--decoder", str(dec)]) == 1
    assert "bad.jpg: not a readable image" in capsys.readouterr().err


def test_console_script_lists_every_stage():
    out = run(["stylepipe", "--help"], ROOT).stdout
    for command in (*STAGE_NAMES, "stylize", "profile"):
        assert command in out


@pytest.mark.parametrize("stage", STAGES, ids=STAGE_NAMES)
def test_every_stage_of_the_table_is_a_subcommand_under_both_spellings(stage):
    """`stylepipe <stage>` and its dash alias parse to the stage; a per-style stage requires its style."""
    style = ["Cubism"] if stage.per_style else []
    for spelling in {stage.name, stage.name.replace("_", "-")}:
        args = build_parser().parse_args([spelling, *style])
        assert args.command == stage.name
        assert getattr(args, "style", None) == (style[0] if style else None)
    if stage.per_style:
        with pytest.raises(SystemExit):
            build_parser().parse_args([stage.name])


def test_a_stage_runs_the_function_its_table_row_names(tmp_path: Path, monkeypatch):
    """The CLI calls the table's function with params, and with the style for a per-style stage."""
    import stylepipe.johnson.export as export_johnson
    import stylepipe.nn.weights as weights

    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text())
    calls = []
    monkeypatch.setattr(weights, "run_weights", lambda p: calls.append(("weights", p.weights.encoder)))
    monkeypatch.setattr(export_johnson, "run_export_johnson", lambda p, style: calls.append(("export", style)))
    assert main(["--params", str(params), "weights"]) == 0
    assert main(["--params", str(params), "export-johnson", "Cubism"]) == 0
    encoder = load_default_params()["weights"]["encoder"]
    assert calls == [("weights", encoder), ("export", "Cubism")]


def test_a_bug_keeps_its_traceback_and_a_project_error_is_one_line(tmp_path: Path, monkeypatch, capsys):
    """A ValueError from inside a library is a bug, shown in full; the project's own errors are one line."""
    from stylepipe import cli
    from stylepipe.core.errors import InputError

    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text())

    def library_bug(params, args):
        raise ValueError("operands could not be broadcast together with shapes (3,) (4,)")

    monkeypatch.setitem(cli.HANDLERS, "preprocess", library_bug)
    with pytest.raises(ValueError, match="could not be broadcast"):
        main(["--params", str(params), "preprocess"])

    def user_error(params, args):
        raise InputError("data/raw/x.zip: member 'a' is both a file and a folder")

    monkeypatch.setitem(cli.HANDLERS, "preprocess", user_error)
    assert main(["--params", str(params), "preprocess"]) == 1
    err = capsys.readouterr().err
    assert err == "stylepipe preprocess: error: data/raw/x.zip: member 'a' is both a file and a folder\n"


def test_full_disk_is_a_clear_error_not_a_bug(tmp_path: Path, monkeypatch, capsys):
    from stylepipe import cli

    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text())

    def disk_full(params, args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "data/prepared/.tmp/shard-000.bin")

    monkeypatch.setitem(cli.HANDLERS, "preprocess", disk_full)
    assert main(["--params", str(params), "preprocess"]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "shard-000.bin" in err and "Traceback" not in err


# A stand-in for the CLI under SIGTERM: the handler it patches in waits inside an MLflow run and an
# atomic write (or, for torchrun, under a fake torchrun that starts a worker) until the test kills it.
SIGTERM_SCRIPT = """
import sys, time
from pathlib import Path
from stylepipe import cli
from stylepipe.core import tracking
from stylepipe.core.io import atomic_path
import stylepipe.train.distributed as distributed

mode = sys.argv[1]

def waits_in_run(params, args):
    with tracking.stage_run(params, "preprocess", ["preprocess"]), atomic_path(Path("out.bin")) as tmp:
        tmp.write_bytes(b"half-written")
        Path("ready").write_text("1")
        time.sleep(600)

FAKE_TORCHRUN = (
    "import subprocess, sys; from pathlib import Path; "
    "w = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
    "Path('worker.pid').write_text(str(w.pid)); Path('ready').write_text('1'); w.wait()"
)
if mode == "run":
    cli.HANDLERS["preprocess"] = waits_in_run
    sys.exit(cli.main(["preprocess"]))
distributed.torchrun_argv = lambda nproc, argv: [sys.executable, "-c", FAKE_TORCHRUN]
sys.exit(cli.main(["train_recon"]))
"""


def _sigterm_when_ready(tmp_path: Path, mode: str, params: dict) -> subprocess.CompletedProcess:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    script = tmp_path / "stand_in.py"
    script.write_text(SIGTERM_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), mode], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "ready").exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the stand-in never got ready"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "", err)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def _gone_within(pid: int, seconds: float) -> bool:
    """The kernel delivers a SIGKILL asynchronously: allow it a moment (the worker itself sleeps 600 s)."""
    deadline = time.monotonic() + seconds
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


def test_sigterm_removes_temp_files_and_ends_the_mlflow_run_as_killed(tmp_path: Path):
    import mlflow

    params = load_default_params()
    params["tracking"] = {"enabled": True, "uri": "sqlite:///mlflow.db", "experiment": "sigterm"}
    done = _sigterm_when_ready(tmp_path, "run", params)
    assert done.returncode == 143, done.stderr
    assert "stylepipe preprocess: terminated (SIGTERM)" in done.stderr
    assert not list(tmp_path.glob(".out.bin.*")) and not (tmp_path / "out.bin").exists()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["sigterm"], output_format="list")
    assert [run.info.status for run in runs] == ["KILLED"]


def test_sigterm_stops_torchrun_and_its_workers(tmp_path: Path):
    params = load_default_params()
    params["common"]["nproc_per_node"] = 2
    params["tracking"]["enabled"] = False
    done = _sigterm_when_ready(tmp_path, "torchrun", params)
    worker = int((tmp_path / "worker.pid").read_text())
    assert done.returncode == 143, done.stderr
    assert _gone_within(worker, 10), f"torchrun's worker {worker} outlived the SIGTERM"


def test_own_warnings_print_as_one_line_naming_the_command(capsys):
    import warnings

    from stylepipe.cli import own_warnings_as_lines
    from stylepipe.train.checkpoint import CheckpointSkipped

    before = warnings.showwarning
    with warnings.catch_warnings(), own_warnings_as_lines("train_recon"):
        warnings.simplefilter("always")
        warnings.warn("no checkpoint for these params and code", CheckpointSkipped, stacklevel=1)
    assert capsys.readouterr().err == "stylepipe train_recon: warning: no checkpoint for these params and code\n"
    assert warnings.showwarning is before
