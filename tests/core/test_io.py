"""Atomic writes are durable (file and directory flushed) and never leave a moment without the output."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stylepipe.core import io
from stylepipe.core.io import atomic_dir, exchange_paths, remove_stale_tmp, write_json, write_torch


@pytest.fixture
def fsynced(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every path whose file descriptor os.fsync is called on."""
    seen: list[Path] = []
    real = os.fsync

    def spy(fd: int) -> None:
        seen.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return seen


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_atomic_file_and_its_directory_are_flushed(tmp_path: Path, fsynced: list[Path]) -> None:
    write_json(tmp_path / "out" / "metrics.json", {"a": 1})
    out = (tmp_path / "out" / "metrics.json").resolve()
    # the data before the rename (under its temporary name), the directory entry after it
    assert any(p.parent == out.parent and p.name.startswith(".metrics.json.") for p in fsynced), fsynced
    assert fsynced[-1] == out.parent


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_atomic_dir_flushes_its_files(tmp_path: Path, fsynced: list[Path]) -> None:
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "a.bin").write_bytes(b"x")
    assert {p.name for p in fsynced} >= {"a.bin", "sub"} and fsynced[-1] == tmp_path.resolve()


def _old_output(path: Path) -> None:
    path.mkdir()
    (path / "marker").write_text("old")


def test_old_output_is_removed_only_once_the_new_one_is_in_place(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "out"
    _old_output(out)
    real_rmtree = shutil.rmtree

    def rmtree_checking_the_output(victim, *args, **kwargs):
        assert (out / "marker").read_text() == "new", "the old output was deleted before the new one was in place"
        real_rmtree(victim, *args, **kwargs)

    monkeypatch.setattr(io.shutil, "rmtree", rmtree_checking_the_output)
    with atomic_dir(out) as tmp:
        (tmp / "marker").write_text("new")
    assert (out / "marker").read_text() == "new"
    assert list(tmp_path.iterdir()) == [out]


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "move-aside"])
def test_failed_swap_keeps_the_old_output(tmp_path: Path, monkeypatch, exchange: bool) -> None:
    out = tmp_path / "out"
    _old_output(out)
    real_replace = os.replace

    def replace_failing_into_out(src, dst):
        if Path(dst) == out and Path(src).name.startswith(".out.") and "old" not in Path(src).name:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    def exchange_failing(a, b):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(io.os, "replace", replace_failing_into_out)
    monkeypatch.setattr(io, "exchange_paths", exchange_failing if exchange else lambda a, b: False)
    with pytest.raises(OSError, match="No space"), atomic_dir(out) as tmp:
        (tmp / "marker").write_text("new")
    assert (out / "marker").read_text() == "old"
    assert list(tmp_path.iterdir()) == [out]


def test_exchange_swaps_two_directories(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("a")
    if not exchange_paths(a, b):
        pytest.skip("renameat2 RENAME_EXCHANGE is not supported here")
    assert (b / "x").read_text() == "a" and not (a / "x").exists()


def test_stale_temporary_directories_are_found(tmp_path: Path) -> None:
    (tmp_path / ".out.abc.tmp").mkdir()
    (tmp_path / ".out.abc.old.tmp").mkdir()
    assert sorted(p.name for p in remove_stale_tmp(tmp_path / "out")) == [".out.abc.old.tmp", ".out.abc.tmp"]


def test_a_killed_run_leaves_nothing_behind_after_the_next(tmp_path: Path) -> None:
    (tmp_path / ".out.k1ll3d.tmp").mkdir()  # what SIGKILL inside atomic_dir leaves
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "marker").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_killed_writers_temporary_file_goes_with_the_next_write(tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    orphan = tmp_path / f".out.json.{gone.stdout.strip()}.x1.tmp"  # what SIGKILL inside atomic_path leaves
    live = tmp_path / f".out.json.{os.getpid()}.x2.tmp"  # another write of the same file, still running
    orphan.write_text("{")
    live.write_text("{")
    write_json(tmp_path / "out.json", {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "out.json"]


def test_equal_tensors_saved_twice_give_equal_bytes(tmp_path: Path) -> None:
    """DVC hashes outputs by content: a re-run that saves the same weights must not look like a new model."""
    import torch

    blob = {"state_dict": {"w": torch.arange(6.0).reshape(2, 3)}, "layer": "relu3_1"}
    write_torch(tmp_path / "a" / "decoder.pt", blob)
    write_torch(tmp_path / "b" / "decoder.pt", blob)
    assert (tmp_path / "a/decoder.pt").read_bytes() == (tmp_path / "b/decoder.pt").read_bytes()
    loaded = torch.load(tmp_path / "a/decoder.pt", weights_only=True)
    assert torch.equal(loaded["state_dict"]["w"], blob["state_dict"]["w"])


def test_write_csv_keeps_integers_and_rounds_floats_to_six_digits(tmp_path: Path):
    """losses.csv and alpha_sweep.csv are DVC outputs: their bytes follow from the values alone."""
    from stylepipe.core.io import write_csv

    out = tmp_path / "losses.csv"
    write_csv(out, [{"step": 10, "loss": 0.123456789, "lr": 1e-3}, {"step": 20, "loss": 12345678.0, "lr": 5e-4}])
    assert out.read_bytes() == b"step,loss,lr\r\n10,0.123457,0.001\r\n20,1.23457e+07,0.0005\r\n"
    write_csv(out, [{"b": 1.0, "a": "x"}], fieldnames=["a", "b"])
    assert out.read_bytes() == b"a,b\r\nx,1\r\n"


class _Refused(Exception):
    """The error type a caller of read_torch / download_pinned asks for."""


def test_read_torch_loads_tensors_and_refuses_a_foreign_file_naming_it(tmp_path: Path) -> None:
    import torch

    from stylepipe.core.io import read_torch

    write_torch(tmp_path / "ok.pt", {"w": torch.ones(2)})
    assert torch.equal(read_torch(tmp_path / "ok.pt", "weights file", _Refused)["w"], torch.ones(2))
    (tmp_path / "junk.pt").write_bytes(b"not torch")
    with pytest.raises(_Refused, match=r"(?s)junk\.pt: not a readable weights file \(.*\); delete it$"):
        read_torch(tmp_path / "junk.pt", "weights file", _Refused, hint="delete it")


def test_download_pinned_checks_the_digest_and_reuses_a_checked_copy(tmp_path: Path) -> None:
    from stylepipe.core.io import download_pinned, file_digest
    from tests.data_fixtures import ServerState, http_server

    (tmp_path / "src").write_bytes(b"weights")
    digest = file_digest(tmp_path / "src")
    state = ServerState(files={"/w.bin": b"weights"})
    with http_server(state) as base:
        dest = tmp_path / "cache" / "w.bin"
        assert download_pinned(f"{base}/w.bin", dest, digest, "key", _Refused).read_bytes() == b"weights"
        assert download_pinned(f"{base}/w.bin", dest, digest[:8], "key", _Refused) == dest
        assert state.requests == ["/w.bin"]  # the second call used the checked copy
        other = tmp_path / "other" / "w.bin"
        with pytest.raises(_Refused, match=rf"w\.bin: sha256 {digest} of the download does not match the pinned key"):
            download_pinned(f"{base}/w.bin", other, "0" * 64, "key", _Refused)
        with pytest.raises(_Refused, match=r"gone\.bin: download failed \(HTTP Error 404.*; use a path"):
            download_pinned(f"{base}/gone.bin", other, digest, "key", _Refused, hint="use a path")
    assert not other.parent.exists() or [p for p in other.parent.iterdir()] == []
