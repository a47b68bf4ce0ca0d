"""DVC remotes for real: push the reproduced DAG's outputs to an S3 server (moto's server mode) and to an
SSH server (Debian's sshd, a key made here), pull them into a fresh clone, and find nothing to re-run.
Credentials live only in .dvc/config.local or the environment; git never sees them."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stylepipe.core.io import file_digest

from ..conftest import make_project_copy, run, tool_env
from .services import require_tools, s3_server, ssh_server

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

MODELS = ("models/encoder/encoder.pt", "models/recon/decoder.pt", "models/adain/decoder.pt",
          "models/adain/style_bank.pt", "models/export/onnx/adain_stats.onnx",
          "models/johnson/Cubism/transformer_net.pt")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A tiny project copy reproduced with `dvc repro` and committed (dvc.lock included)."""
    repo = make_project_copy(tmp_path_factory.mktemp("remotes") / "project", {"tracking": {"enabled": False}})
    run(["dvc", "repro"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "reproduced"], repo)
    return repo


def dvc(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(["dvc", *args], cwd=cwd, env={**tool_env(), **(env or {})}, capture_output=True,
                          text=True, timeout=600)
    if proc.returncode:
        raise AssertionError(f"dvc {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-3000:]}")
    return proc


@pytest.fixture
def s3_remote(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], dict[str, str]]]:
    """(URL, settings that go to config.local, credentials given through the environment)."""
    import boto3

    with s3_server(tmp_path) as (endpoint, key, secret):
        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key=secret,
                     region_name="us-east-1").create_bucket(Bucket="stylepipe")
        local = {"endpointurl": endpoint, "region": "us-east-1", "access_key_id": key,
                 "secret_access_key": secret}
        env = {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret, "AWS_DEFAULT_REGION": "us-east-1"}
        yield "s3://stylepipe/dvc-store", local, env


@pytest.fixture
def ssh_remote(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], dict[str, str]]]:
    require_tools("sshd", "ssh-keygen")
    with ssh_server(tmp_path) as (port, key):
        store = tmp_path / "ssh-store"
        yield f"ssh://127.0.0.1:{port}{store}", {"user": "root", "keyfile": str(key)}, {}


def _configure(repo: Path, name: str, url: str, local: dict[str, str]) -> None:
    """The remote's URL goes to git (.dvc/config); everything that grants access to config.local."""
    dvc(["remote", "add", "-f", "-d", name, url], repo)
    for option, value in local.items():
        dvc(["remote", "modify", "--local", name, option, value], repo)


def _assert_git_never_saw(repo: Path, secret: str) -> None:
    """config.local is ignored, and the secret is in no commit, no tracked file and nothing git would add."""
    assert run(["git", "check-ignore", ".dvc/config.local"], repo).stdout.strip() == ".dvc/config.local"
    assert secret not in run(["git", "log", "-p", "--all"], repo).stdout
    assert run(["git", "grep", "-F", "-e", secret], repo, check=False).returncode == 1
    assert ".dvc/config.local" not in run(["git", "status", "--porcelain", "--ignored=no"], repo).stdout


@pytest.mark.parametrize("kind", ["s3", "ssh"])
def test_push_then_pull_into_a_fresh_clone_needs_no_rerun(kind: str, project: Path, tmp_path: Path,
                                                          request: pytest.FixtureRequest):
    url, local, env = request.getfixturevalue(f"{kind}_remote")
    _configure(project, kind, url, local)
    run(["git", "commit", "-qam", f"{kind} remote"], project)
    started = time.monotonic()
    dvc(["push"], project)
    pushed_in = time.monotonic() - started

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    # a fresh clone has no config.local: the endpoint goes there again, the S3 keys come from the environment
    if kind == "s3":
        dvc(["remote", "modify", "--local", kind, "endpointurl", local["endpointurl"]], clone)
    else:
        for option, value in local.items():
            dvc(["remote", "modify", "--local", kind, option, value], clone)
    started = time.monotonic()
    dvc(["pull"], clone, env)
    pulled_in = time.monotonic() - started
    for rel in MODELS:
        assert file_digest(clone / rel) == file_digest(project / rel), rel
    assert "up to date" in dvc(["status"], clone, env).stdout
    assert "Running stage" not in dvc(["repro"], clone, env).stdout
    assert "in sync" in dvc(["status", "--cloud"], clone, env).stdout
    secret = local["secret_access_key"] if kind == "s3" else Path(local["keyfile"]).read_text().splitlines()[1]
    _assert_git_never_saw(project, secret)
    _assert_git_never_saw(clone, secret)
    print(f"{kind}: push {pushed_in:.1f} s, pull {pulled_in:.1f} s")


def test_s3_push_with_a_wrong_secret_is_refused(project: Path, s3_remote):
    """The S3 server checks keys: the right ones push (test above), a wrong secret fails and uploads nothing."""
    url, local, _ = s3_remote
    _configure(project, "s3", url, {**local, "secret_access_key": "wrong" + local["secret_access_key"][5:]})
    proc = subprocess.run(["dvc", "push", "-r", "s3"], cwd=project, env=tool_env(), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode != 0, proc.stdout
    import boto3

    s3 = boto3.client("s3", endpoint_url=local["endpointurl"], aws_access_key_id=local["access_key_id"],
                      aws_secret_access_key=local["secret_access_key"], region_name="us-east-1")
    assert s3.list_objects_v2(Bucket="stylepipe").get("KeyCount", 0) == 0


def test_a_fresh_clone_pulls_only_the_models_and_stylises(project: Path, s3_remote, tmp_path: Path):
    """docs/cluster.md's newcomer path: clone, the endpoint in config.local, keys in the environment,
    `dvc pull weights train_adain`, then `stylepipe stylize`; the data and the other stages' outputs stay
    on the remote and nothing is trained."""
    import numpy as np
    from PIL import Image

    url, local, env = s3_remote
    _configure(project, "s3", url, local)
    run(["git", "commit", "-qam", "s3 remote"], project)
    dvc(["push"], project)
    clone = tmp_path / "newcomer"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    dvc(["remote", "modify", "--local", "s3", "endpointurl", local["endpointurl"]], clone)
    dvc(["pull", "weights", "train_adain"], clone, env)

    for rel in ("models/encoder/encoder.pt", "models/adain/decoder.pt", "models/adain/style_bank.pt"):
        assert file_digest(clone / rel) == file_digest(project / rel), rel
    for rel in ("data/raw", "data/prepared", "models/recon", "models/johnson", "models/export"):
        assert not (clone / rel).exists(), f"{rel} pulled"
    rng = np.random.default_rng(0)
    for name in ("photo.png", "painting.png"):
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(tmp_path / name)
    out = tmp_path / "out.png"
    run(["stylepipe", "stylize", str(tmp_path / "photo.png"), "--style", str(tmp_path / "painting.png"),
         "-o", str(out), "--no-progress"], clone)
    assert Image.open(out).size == (64, 48)
    assert not (clone / "models/recon").exists() and not (clone / ".cache/checkpoints").exists()  # nothing trained
