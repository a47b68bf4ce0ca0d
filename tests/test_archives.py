"""archives: safe extraction refuses path traversal, absolute paths, links, devices and zip bombs."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from stylepipe.data.archives import UnsafeArchiveError, extract_to_cache, safe_extract


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def make_tar(path: Path, members: list[tarfile.TarInfo], data: dict[str, bytes] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for info in members:
            payload = (data or {}).get(info.name)
            tf.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return path


def tar_file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def test_zip_extracts_normal_members(tmp_path: Path) -> None:
    z = make_zip(tmp_path / "ok.zip", {"a/b.txt": b"hello", "c.txt": b"world"})
    files = safe_extract(z, tmp_path / "out", max_bytes=1000)
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in files) == ["a/b.txt", "c.txt"]
    assert (tmp_path / "out" / "a" / "b.txt").read_bytes() == b"hello"


@pytest.mark.parametrize("name", ["../evil.txt", "a/../../evil.txt", "/etc/evil.txt", "C:/evil.txt"])
def test_zip_refuses_escaping_paths(tmp_path: Path, name: str) -> None:
    z = make_zip(tmp_path / "bad.zip", {"ok.txt": b"x", name: b"evil"})
    with pytest.raises(UnsafeArchiveError, match=r"bad\.zip") as info:
        safe_extract(z, tmp_path / "out", max_bytes=1000)
    assert name in str(info.value)
    assert not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "out" / "ok.txt").exists()  # validated before anything is written


def test_zip_bomb_refused_from_headers(tmp_path: Path) -> None:
    z = make_zip(tmp_path / "bomb.zip", {"zeros.bin": b"\0" * 2_000_000})
    assert z.stat().st_size < 10_000
    with pytest.raises(UnsafeArchiveError, match="limit"):
        safe_extract(z, tmp_path / "out", max_bytes=1_000_000)
    assert not (tmp_path / "out" / "zeros.bin").exists()


def test_zip_lying_header_stopped_while_streaming(tmp_path: Path) -> None:
    z = make_zip(tmp_path / "liar.zip", {"zeros.bin": b"\0" * 500_000})
    raw = bytearray(z.read_bytes())
    # patch the declared uncompressed size (local header at 22, central directory at 24) to 10 bytes
    cd = raw.rfind(b"PK\x01\x02")
    raw[22:26] = (10).to_bytes(4, "little")
    raw[cd + 24 : cd + 28] = (10).to_bytes(4, "little")
    z.write_bytes(bytes(raw))
    with pytest.raises((UnsafeArchiveError, zipfile.BadZipFile)):
        safe_extract(z, tmp_path / "out", max_bytes=1000)
    assert not (tmp_path / "out" / "zeros.bin").exists()


def test_tar_refuses_symlink(tmp_path: Path) -> None:
    link = tarfile.TarInfo("data/link")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    info, data = tar_file("data/ok.txt", b"ok")
    t = make_tar(tmp_path / "links.tar.gz", [info, link], {"data/ok.txt": data})
    with pytest.raises(UnsafeArchiveError, match="data/link"):
        safe_extract(t, tmp_path / "out", max_bytes=1000)


def test_tar_refuses_hardlink_device_and_traversal(tmp_path: Path) -> None:
    hard = tarfile.TarInfo("h")
    hard.type, hard.linkname = tarfile.LNKTYPE, "x"
    dev = tarfile.TarInfo("dev")
    dev.type = tarfile.CHRTYPE
    evil, data = tar_file("../evil", b"x")
    for i, member in enumerate([hard, dev, evil]):
        t = make_tar(tmp_path / f"t{i}.tar.gz", [member], {"../evil": data})
        with pytest.raises(UnsafeArchiveError, match=f"t{i}.tar.gz"):
            safe_extract(t, tmp_path / "out", max_bytes=1000)
    assert not (tmp_path / "evil").exists()


def test_tar_size_limit(tmp_path: Path) -> None:
    info, data = tar_file("big.bin", b"\0" * 5000)
    t = make_tar(tmp_path / "big.tar.gz", [info], {"big.bin": data})
    with pytest.raises(UnsafeArchiveError, match=r"big\.bin"):
        safe_extract(t, tmp_path / "out", max_bytes=4000)
    assert safe_extract(t, tmp_path / "out2", max_bytes=5000)


def test_corrupt_member_is_skipped_and_reported(tmp_path: Path) -> None:
    z = make_zip(tmp_path / "c.zip", {"good.txt": b"good" * 100, "bad.txt": b"bad!" * 1000})
    raw = bytearray(z.read_bytes())
    start = raw.find(b"bad.txt") + len(b"bad.txt")  # first occurrence: local header, data follows
    raw[start + 5 : start + 15] = b"\xff" * 10
    z.write_bytes(bytes(raw))
    bad: list[tuple[str, str]] = []
    files = safe_extract(z, tmp_path / "out", 100_000, on_bad_member=lambda n, r: bad.append((n, r)))
    assert [p.name for p in files] == ["good.txt"]
    assert bad and bad[0][0] == "bad.txt"


def test_extract_to_cache_reuses(tmp_path: Path) -> None:
    z = make_zip(tmp_path / "wikiart.zip", {"wikiart/Style/a.jpg": b"x"})
    target = extract_to_cache(z, tmp_path / "cache", 1000)
    assert (target / "wikiart" / "Style" / "a.jpg").read_bytes() == b"x"
    (target / "wikiart" / "Style" / "a.jpg").write_bytes(b"kept")
    assert extract_to_cache(z, tmp_path / "cache", 1000) == target
    assert (target / "wikiart" / "Style" / "a.jpg").read_bytes() == b"kept"


def test_zip_refuses_symlink_member(tmp_path: Path) -> None:
    info = zipfile.ZipInfo("data/link")
    info.external_attr = (0o120777 << 16)  # S_IFLNK: how zip stores a symlink
    with zipfile.ZipFile(tmp_path / "link.zip", "w") as zf:
        zf.writestr("data/ok.txt", b"ok")
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(UnsafeArchiveError, match=r"data/link.*link"):
        safe_extract(tmp_path / "link.zip", tmp_path / "out", max_bytes=1000)
    assert not (tmp_path / "out" / "data").exists()
