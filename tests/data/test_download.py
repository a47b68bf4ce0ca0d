"""download stage: aria2c against a local Range-capable HTTP server (real aria2c, no network)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from stylepipe.core.config import RemoteFile, RemoteParams
from stylepipe.data.aria2 import Aria2Daemon, Aria2NotInstalledError, DownloadError, download_files, free_port
from tests.data_fixtures import ServerState, http_server, make_params

pytestmark = pytest.mark.skipif(shutil.which("aria2c") is None, reason="aria2c not installed")
PAYLOAD = os.urandom(1_500_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(autouse=True)
def no_daemon_left() -> object:
    before = len(Aria2Daemon.started_pids)
    yield
    new = Aria2Daemon.started_pids[before:]
    assert all(not _alive(pid) for pid in new), f"aria2c still running: {new}"


def remote(tmp_path: Path, **kw: object) -> RemoteParams:
    opts = {"staging_dir": str(tmp_path / "staging"), "split": 2, "max_tries": 1, "timeout_s": 5} | kw
    return RemoteParams(**opts)


def test_success_with_sha256(tmp_path: Path) -> None:
    state = ServerState(files={"/a.bin": PAYLOAD})
    with http_server(state) as url:
        f = RemoteFile(name="a.bin", urls=[f"{url}/a.bin"], sha256=SHA)
        records = download_files([f], tmp_path / "out", remote(tmp_path), progress=False)
    assert (tmp_path / "out" / "a.bin").read_bytes() == PAYLOAD
    assert records == [{"name": "a.bin", "sha256": SHA, "bytes": len(PAYLOAD), "skipped": False}]
    # the verified file stays in staging, linked into the output; no partial or control file is left
    assert [p.name for p in (tmp_path / "staging").iterdir()] == ["a.bin"]
    assert (tmp_path / "staging" / "a.bin").samefile(tmp_path / "out" / "a.bin")
    # already present with the right checksum: skipped, no request made
    n = len(state.requests)
    with http_server(state) as url:
        again = download_files([f], tmp_path / "out", remote(tmp_path), progress=False)
    assert again[0]["skipped"] and len(state.requests) == n


def test_md5_checksum(tmp_path: Path) -> None:
    with http_server(ServerState(files={"/m.bin": PAYLOAD})) as url:
        f = RemoteFile(name="m.bin", urls=[f"{url}/m.bin"], md5=hashlib.md5(PAYLOAD).hexdigest())
        download_files([f], tmp_path / "out", remote(tmp_path), progress=False)
    assert (tmp_path / "out" / "m.bin").stat().st_size == len(PAYLOAD)


def test_checksum_mismatch_leaves_nothing(tmp_path: Path) -> None:
    with http_server(ServerState(files={"/a.bin": PAYLOAD})) as url:
        f = RemoteFile(name="a.bin", urls=[f"{url}/a.bin"], sha256="0" * 64)
        with pytest.raises(DownloadError, match=r"a\.bin.*checksum"):
            download_files([f], tmp_path / "out", remote(tmp_path), progress=False)
    assert list((tmp_path / "out").iterdir()) == []
    assert list((tmp_path / "staging").iterdir()) == []


def test_404_names_the_url(tmp_path: Path) -> None:
    with http_server(ServerState()) as url:
        f = RemoteFile(name="gone.bin", urls=[f"{url}/gone.bin"], sha256=SHA)
        with pytest.raises(DownloadError, match=r"gone\.bin") as info:
            download_files([f], tmp_path / "out", remote(tmp_path), progress=False)
    assert f"{url}/gone.bin" in str(info.value)
    assert list((tmp_path / "out").iterdir()) == []


def test_mirror_fallback(tmp_path: Path) -> None:
    with http_server(ServerState(files={"/b/a.bin": PAYLOAD})) as url:
        f = RemoteFile(name="a.bin", urls=[f"{url}/missing/a.bin", f"{url}/b/a.bin"], sha256=SHA)
        download_files([f], tmp_path / "out", remote(tmp_path, split=1, max_tries=2), progress=False)
    assert (tmp_path / "out" / "a.bin").read_bytes() == PAYLOAD


def test_resume_from_partial(tmp_path: Path) -> None:
    state = ServerState(files={"/a.bin": PAYLOAD}, drop_after=600_000)
    params = remote(tmp_path, split=1, max_connection_per_server=1)
    with http_server(state) as url:
        f = RemoteFile(name="a.bin", urls=[f"{url}/a.bin"], sha256=SHA)
        with pytest.raises(DownloadError, match=r"a\.bin"):
            download_files([f], tmp_path / "out", params, progress=False)
        partial = tmp_path / "staging" / "a.bin"
        assert partial.is_file() and 0 < partial.stat().st_size <= len(PAYLOAD)
        assert not (tmp_path / "out" / "a.bin").exists()
        state.drop_after = None
        download_files([f], tmp_path / "out", params, progress=False)
    assert (tmp_path / "out" / "a.bin").read_bytes() == PAYLOAD
    starts = [int(r[6:].split("-")[0] or 0) for r in state.ranges]
    assert any(s > 0 for s in starts), state.ranges


def test_daemon_stops_on_keyboard_interrupt(tmp_path: Path) -> None:
    daemon = Aria2Daemon(tmp_path)
    with pytest.raises(KeyboardInterrupt), daemon:
        pid = daemon.pid
        assert pid is not None and _alive(pid)
        assert daemon.api is not None and daemon.api.client.get_version()
        raise KeyboardInterrupt
    assert not _alive(pid)


def test_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(Aria2NotInstalledError, match="Debian package aria2"):
        Aria2Daemon(tmp_path, binary="aria2c-does-not-exist").start()


def test_run_download_sample(tmp_path: Path) -> None:
    from stylepipe.core.config import Download, SampleParams
    from stylepipe.data.download import run_download

    params = make_params(download=Download(sample=SampleParams(paintings_per_style=1, painting_size=96,
                                                              max_side=128)))
    summary = run_download(params, tmp_path / "raw", progress=False)
    source = json.loads((tmp_path / "raw" / "SOURCE.json").read_text())
    assert summary["source"] == source["source"] == "sample"
    assert summary["files"] == len(source["files"]) > 0
    paths = {f["path"] for f in source["files"]}
    assert "coco/annotations/instances_sample.json" in paths
    assert [p.name for p in tmp_path.iterdir()] == ["raw"]  # no temporary directory left behind


def test_run_download_remote(tmp_path: Path) -> None:
    from stylepipe.core.config import Download
    from stylepipe.data.download import run_download

    with http_server(ServerState(files={"/a.bin": PAYLOAD})) as url:
        rp = remote(tmp_path, files=[RemoteFile(name="a.bin", urls=[f"{url}/a.bin"], sha256=SHA)])
        (tmp_path / "raw" / "coco").mkdir(parents=True)  # stale sample output is removed
        summary = run_download(make_params(download=Download(source="remote", remote=rp)), tmp_path / "raw",
                               progress=False)
    assert summary["source"] == "remote" and summary["files"] == 1
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["SOURCE.json", "a.bin"]
    source = json.loads((tmp_path / "raw" / "SOURCE.json").read_text())
    assert source["files"][0]["sha256"] == SHA and source["files"][0]["urls"] == [f"{url}/a.bin"]


def _wait_for(cond: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def _partial_size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0


def _control_records_progress(control: Path) -> bool:
    """Whether aria2's .aria2 control file (format version 1, big-endian) marks any finished piece or block.

    aria2 writes the file when the download starts and refreshes it every auto-save interval; a daemon
    killed before the first refresh leaves a file that records nothing, and the next run starts afresh.
    """
    try:
        raw = control.read_bytes()
        pos = 6  # version (2) + extension flags (4)
        (hash_len,) = struct.unpack_from(">I", raw, pos)
        pos += 4 + hash_len + 4 + 8 + 8  # info hash, piece length, total length, upload length
        (bits_len,) = struct.unpack_from(">I", raw, pos)
        if any(raw[pos + 4 : pos + 4 + bits_len]):
            return True
        pos += 4 + bits_len
        (in_flight,) = struct.unpack_from(">I", raw, pos)
        pos += 4
        for _ in range(in_flight):
            _index, _length, block_bits_len = struct.unpack_from(">III", raw, pos)
            if any(raw[pos + 12 : pos + 12 + block_bits_len]):
                return True
            pos += 12 + block_bits_len
    except (OSError, struct.error):  # not written yet, or caught mid-rewrite
        return False
    return False


def test_resume_after_daemon_killed(tmp_path: Path) -> None:
    state = ServerState(files={"/a.bin": PAYLOAD}, bytes_per_s=250_000)
    params = remote(tmp_path, split=2, max_connection_per_server=2)
    staged, control = tmp_path / "staging" / "a.bin", tmp_path / "staging" / "a.bin.aria2"
    outcome: dict[str, BaseException] = {}

    def download(f: RemoteFile, daemon: Aria2Daemon) -> None:
        try:
            download_files([f], tmp_path / "out", params, progress=False, daemon=daemon)
        except BaseException as err:  # handed to the test thread
            outcome["error"] = err

    with http_server(state) as url:
        f = RemoteFile(name="a.bin", urls=[f"{url}/a.bin"], sha256=SHA)
        with Aria2Daemon(tmp_path / "staging") as daemon:
            worker = threading.Thread(target=download, args=(f, daemon))
            worker.start()
            _wait_for(lambda: _partial_size(staged) > 0 and _control_records_progress(control))
            assert daemon.pid is not None
            os.kill(daemon.pid, signal.SIGKILL)
            worker.join(20)
        err = outcome.get("error")
        assert isinstance(err, DownloadError) and "a.bin" in str(err) and "exited" in str(err), err
        assert staged.is_file() and control.is_file() and not (tmp_path / "out" / "a.bin").exists()
        state.bytes_per_s, first_run = None, len(state.starts)
        download_files([f], tmp_path / "out", params, progress=False)
    assert (tmp_path / "out" / "a.bin").read_bytes() == PAYLOAD
    # aria2 probes from byte 0, then continues from where the killed daemon's control file says
    assert any(0 < s < len(PAYLOAD) for s in state.starts[first_run:]), state.starts


def _default_sigint() -> None:
    """Ctrl-C as at a terminal: a run started in the background of a non-interactive shell (CI under
    `nohup ... &`) inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _aria2_children(pid: int) -> list[int]:
    """aria2c processes whose parent is `pid` (from /proc)."""
    kids = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and "aria2c" in stat_file.with_name("comm").read_text():
                kids.append(int(stat_file.parent.name))
    return kids


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs /proc")
def test_ctrl_c_stops_the_daemon_and_the_stage_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stylepipe.core.config import Download
    from stylepipe.data.download import run_download
    from tests.conftest import load_default_params, tool_env

    state = ServerState(files={"/a.bin": PAYLOAD}, bytes_per_s=200_000)
    with http_server(state) as url:
        raw = load_default_params()
        raw["download"]["source"] = "remote"
        raw["download"]["remote"].update(split=1, max_tries=1, timeout_s=5,
                                         files=[{"name": "a.bin", "urls": [f"{url}/a.bin"], "sha256": SHA}])
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
        proc = subprocess.Popen([sys.executable, "-m", "stylepipe.cli", "download"], cwd=tmp_path,
                                env=tool_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=_default_sigint)
        staged = tmp_path / ".cache" / "downloads" / "a.bin"
        _wait_for(lambda: _partial_size(staged) > 0 and _aria2_children(proc.pid))
        children = _aria2_children(proc.pid)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 130 and "interrupted" in err, err
        assert not any(_alive(pid) for pid in children)
        assert not (tmp_path / "data" / "raw" / "a.bin").exists()
        partial = _partial_size(staged)
        assert 0 < partial < len(PAYLOAD)
        state.bytes_per_s, first_run = None, len(state.starts)
        monkeypatch.chdir(tmp_path)
        params = make_params(download=Download.model_validate(raw["download"]))
        run_download(params, progress=False)
    assert (tmp_path / "data" / "raw" / "a.bin").read_bytes() == PAYLOAD
    assert any(0 < s <= partial for s in state.starts[first_run:]), (partial, state.starts)


def test_dropped_connection_names_file_and_url(tmp_path: Path) -> None:
    state = ServerState(files={"/a.bin": PAYLOAD}, drop_after=100_000)
    with http_server(state) as url:
        f = RemoteFile(name="a.bin", urls=[f"{url}/a.bin"], sha256=SHA)
        with pytest.raises(DownloadError) as info:
            download_files([f], tmp_path / "out", remote(tmp_path, split=1), progress=False)
    assert f"{url}/a.bin" in str(info.value) and "a.bin:" in str(info.value)
    assert "connection dropped" in str(info.value) and "next run resumes" in str(info.value)
    assert list((tmp_path / "out").iterdir()) == []


def test_progress_bar_shows_speed_and_eta(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with http_server(ServerState(files={"/a.bin": PAYLOAD}, bytes_per_s=3_000_000)) as url:
        f = RemoteFile(name="a.bin", urls=[f"{url}/a.bin"], sha256=SHA)
        download_files([f], tmp_path / "out", remote(tmp_path, split=1), progress=True)
    err = capsys.readouterr().err
    assert "a.bin" in err and "B/s" in err and "<" in err  # tqdm: "elapsed<eta, speed"
    assert "1.43M/1.43M" in err


def test_complete_staged_file_is_verified_and_linked(tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "a.bin").write_bytes(PAYLOAD)  # e.g. fetched by hand to record its checksum
    state = ServerState()
    with http_server(state) as url:
        f = RemoteFile(name="a.bin", urls=[f"{url}/a.bin"], sha256=SHA)
        records = download_files([f], tmp_path / "out", remote(tmp_path), progress=False)
    assert records[0]["name"] == "a.bin" and state.requests == []
    assert (tmp_path / "out" / "a.bin").read_bytes() == PAYLOAD and (staging / "a.bin").read_bytes() == PAYLOAD


def test_checksum_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from stylepipe.cli import main

    (tmp_path / "wikiart.zip").write_bytes(PAYLOAD)
    assert main(["checksum", str(tmp_path / "wikiart.zip")]) == 0
    out = capsys.readouterr().out
    assert f"{SHA}  {tmp_path / 'wikiart.zip'}" in out and f"sha256: {SHA}" in out
    assert "name: wikiart.zip" in out
    assert main(["checksum", "--algorithm", "md5", str(tmp_path / "wikiart.zip")]) == 0
    assert hashlib.md5(PAYLOAD).hexdigest() in capsys.readouterr().out
    assert main(["checksum", str(tmp_path / "nope.zip")]) == 1
    assert "nope.zip: no such file" in capsys.readouterr().err


def _exited(pid: int) -> bool:
    """Gone, or a zombie waiting for init to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs /proc")
def test_daemon_exits_when_the_stage_is_sigkilled(tmp_path: Path) -> None:
    from tests.conftest import tool_env

    code = "from stylepipe.data.aria2 import Aria2Daemon; import sys, time\n" \
           "d = Aria2Daemon(sys.argv[1]).start(); print(d.pid, flush=True); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                            env=tool_env())
    assert proc.stdout is not None
    pid = int(proc.stdout.readline())
    proc.kill()  # no Python cleanup runs: aria2c's --stop-with-process must end it
    proc.wait()
    _wait_for(lambda: _exited(pid), timeout=10)


def test_verified_file_outlives_the_output(tmp_path: Path) -> None:
    """DVC deletes data/raw before re-running download: the verified file comes back from staging."""
    state = ServerState(files={"/a.bin": PAYLOAD})
    with http_server(state) as url:
        f = RemoteFile(name="a.bin", urls=[f"{url}/a.bin"], sha256=SHA)
        download_files([f], tmp_path / "out", remote(tmp_path), progress=False)
        shutil.rmtree(tmp_path / "out")
        served = state.served
        again = download_files([f], tmp_path / "out", remote(tmp_path), progress=False)
    assert again[0]["skipped"] and state.served == served
    assert (tmp_path / "out" / "a.bin").read_bytes() == PAYLOAD


def test_file_verified_in_the_output_is_kept_in_staging(tmp_path: Path) -> None:
    """A file verified in the output only (moved there by an older version) gets its staging copy back."""
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.bin").write_bytes(PAYLOAD)
    with http_server(ServerState()) as url:
        f = RemoteFile(name="a.bin", urls=[f"{url}/a.bin"], sha256=SHA)
        download_files([f], tmp_path / "out", remote(tmp_path), progress=False)
    assert (tmp_path / "staging" / "a.bin").read_bytes() == PAYLOAD


def _write_remote_params(repo: Path, url: str, payloads: dict[str, bytes], **remote_knobs: object) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["download"]["source"] = "remote"
    files = [{"name": n, "urls": [f"{url}/{n}"], "sha256": hashlib.sha256(d).hexdigest()} for n, d in payloads.items()]
    params["download"]["remote"].update({"split": 1, "max_tries": 1, "timeout_s": 5, "files": files} | remote_knobs)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.mark.integration
def test_dvc_repro_never_fetches_a_verified_file_twice(tmp_path: Path) -> None:
    """Real `dvc repro download`: one file verifies, the other fails; the re-run after the fix, and the
    re-run after a download knob changes, fetch nothing already verified."""
    from tests.conftest import make_project_copy, run

    other = os.urandom(700_000)
    state = ServerState(files={"/a.bin": PAYLOAD})  # b.bin's mirror is down at first
    repo = make_project_copy(tmp_path / "project")
    with http_server(state) as url:
        _write_remote_params(repo, url, {"a.bin": PAYLOAD, "b.bin": other})
        failed = run(["dvc", "repro", "download"], repo, check=False)
        assert failed.returncode != 0 and "b.bin" in failed.stdout + failed.stderr
        assert state.served == len(PAYLOAD)
        state.files["/b.bin"] = other  # the mirror is back
        run(["dvc", "repro", "download"], repo)
        assert state.served == len(PAYLOAD) + len(other)
        _write_remote_params(repo, url, {"a.bin": PAYLOAD, "b.bin": other}, max_tries=2)
        rerun = run(["dvc", "repro", "download"], repo)
        assert "Running stage 'download'" in rerun.stdout
    assert state.served == len(PAYLOAD) + len(other)
    for name, data in (("a.bin", PAYLOAD), ("b.bin", other)):
        assert (repo / "data" / "raw" / name).read_bytes() == data


@pytest.mark.skipif(not Path("/proc/self/cmdline").is_file(), reason="needs /proc")
def test_rpc_secret_is_not_on_the_command_line(tmp_path: Path) -> None:
    with Aria2Daemon(tmp_path) as daemon:
        assert daemon.pid is not None and daemon.api is not None
        secret = daemon.api.client.secret
        cmdline = Path(f"/proc/{daemon.pid}/cmdline").read_bytes().decode()
        assert secret and secret not in cmdline and "rpc-secret" not in cmdline
        assert daemon.api.client.get_version()  # the daemon holds the secret all the same
        options = daemon.api.client.get_global_option()
        assert options["follow-torrent"] == "false" and options["follow-metalink"] == "false"
        assert daemon._conf_dir is None  # the secret's file is gone once aria2c has read it


def test_secret_file_is_private(tmp_path: Path) -> None:
    daemon = Aria2Daemon(tmp_path)
    conf = daemon._write_secret("s3cret")
    try:
        assert conf.read_text() == "rpc-secret=s3cret\n"
        assert conf.stat().st_mode & 0o777 == 0o600 and conf.parent.stat().st_mode & 0o777 == 0o700
    finally:
        daemon._remove_secret()
    assert not conf.parent.exists()


def test_downloads_never_follow_torrents_or_metalinks(tmp_path: Path) -> None:
    from stylepipe.data.aria2 import aria2_options

    f = RemoteFile(name="a.torrent", urls=["http://127.0.0.1:1/a.torrent"], sha256=SHA)
    options = aria2_options(f, remote(tmp_path), tmp_path)
    assert options["follow-torrent"] == "false" and options["follow-metalink"] == "false"


def test_daemon_moves_to_another_port_when_its_port_is_taken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The port picked for aria2c is taken before aria2c binds it (another process's race): the daemon notices
    (aria2c itself would only log it and listen on IPv6) and starts again on a fresh port."""
    from stylepipe.data import aria2

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        picks = iter([taken])
        monkeypatch.setattr(aria2, "free_port", lambda: next(picks, None) or free_port())
        with Aria2Daemon(tmp_path) as daemon:
            assert daemon.api is not None and daemon.api.client.port != taken
            assert daemon.api.client.get_version()
