"""archives: safe extraction refuses path traversal, absolute paths, links, devices and zip bombs."""

from __future__ import annotations

import io
import re
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


def patch_zip_member(path: Path, name: str, flags: int | None = None, method: int | None = None) -> Path:
    """Rewrite a member's general-purpose flags and/or compression method in both of its headers (the
    local header before its data and its central directory entry), as other zip tools write them."""
    with zipfile.ZipFile(path) as zf:
        offset = zf.getinfo(name).header_offset
    raw = bytearray(path.read_bytes())
    cd = raw.find(b"PK\x01\x02")
    while cd != -1:
        name_len = int.from_bytes(raw[cd + 28 : cd + 30], "little")
        if raw[cd + 46 : cd + 46 + name_len] == name.encode():
            break
        cd = raw.find(b"PK\x01\x02", cd + 4)
    for pos in (offset + 6, cd + 8):  # flags, then method, in each header
        if flags is not None:
            raw[pos : pos + 2] = flags.to_bytes(2, "little")
        if method is not None:
            raw[pos + 2 : pos + 4] = method.to_bytes(2, "little")
    path.write_bytes(bytes(raw))
    return path


def extract_reporting(archive: Path, dest: Path, **kw) -> tuple[list[str], dict[str, str]]:
    bad: dict[str, str] = {}
    files = safe_extract(archive, dest, 100_000, on_bad_member=lambda n, r: bad.setdefault(n, r), **kw)
    return sorted(p.relative_to(dest).as_posix() for p in files), bad


@pytest.mark.parametrize(
    ("patch", "reason"),
    [({"flags": 0x1}, "encrypted (password-protected) member"),
     ({"method": 98}, "compressed with PPMd, which cannot be read here: re-pack the archive with Deflate")],
    ids=["encrypted", "ppmd"],
)
def test_unreadable_zip_members_are_skipped_and_reported(tmp_path: Path, patch: dict, reason: str) -> None:
    z = patch_zip_member(make_zip(tmp_path / "w.zip", {"a.jpg": b"one", "b.jpg": b"two"}), "a.jpg", **patch)
    files, bad = extract_reporting(z, tmp_path / "out")
    assert files == ["b.jpg"] and list(bad) == ["a.jpg"] and bad["a.jpg"].startswith(reason)
    with pytest.raises(UnsafeArchiveError, match=rf"w\.zip: member 'a\.jpg': {re.escape(reason.split(':')[0])}"):
        safe_extract(z, tmp_path / "out2", 100_000)  # without a report to go to: a clear error


@pytest.mark.parametrize(
    ("members", "kept", "skipped", "reason"),
    [
        ({"a": b"file", "a/b": b"x", "c": b"c"}, ["a", "c"], "a/b",
         "needs 'a' to be a folder, but an earlier member is a file of that name"),
        ({"a/": b"", "a/x": b"x", "a": b"file"}, ["a/x"], "a", "a file of the same name as an earlier folder"),
        ({"a/b": b"x", "a": b"file"}, ["a/b"], "a", "a file of the same name as an earlier folder"),
        ({".": b"dot", "c": b"c"}, ["c"], ".", "a file without a name"),
        ({"x" * 300 + ".jpg": b"x", "c": b"c"}, ["c"], "x" * 300 + ".jpg", "a path component of 304 bytes"),
        ({"/".join(["d" * 200] * 21) + "/f": b"x", "c": b"c"}, ["c"], "/".join(["d" * 200] * 21) + "/f",
         "a path of "),
    ],
    ids=["file-then-folder", "folder-then-file", "implicit-folder-then-file", "dot", "long-name", "long-path"],
)
def test_members_that_cannot_be_placed_are_skipped_and_reported(tmp_path, members, kept, skipped, reason) -> None:
    z = make_zip(tmp_path / "odd.zip", members)
    files, bad = extract_reporting(z, tmp_path / "out")
    assert files == kept and list(bad) == [skipped] and bad[skipped].startswith(reason)
    t = make_tar(tmp_path / "odd.tar.gz", [tar_file(n, d)[0] for n, d in members.items() if not n.endswith("/")],
                 {n: d for n, d in members.items()})
    files, bad = extract_reporting(t, tmp_path / "out_tar")
    assert files == kept and skipped in bad


def test_member_count_is_capped(tmp_path: Path) -> None:
    z = make_zip(tmp_path / "many.zip", {f"{i}.txt": b"x" for i in range(5)})
    with pytest.raises(UnsafeArchiveError, match=r"many\.zip: 5 members exceed the limit of 4 "
                                                 r"\(preprocess\.max_archive_members\)"):
        safe_extract(z, tmp_path / "out", 100_000, max_members=4)
    assert not list((tmp_path / "out").iterdir())
    t = make_tar(tmp_path / "many.tar.gz", [tar_file(f"{i}.txt", b"x")[0] for i in range(5)],
                 {f"{i}.txt": b"x" for i in range(5)})
    with pytest.raises(UnsafeArchiveError, match="5 members exceed the limit of 4"):
        safe_extract(t, tmp_path / "out_tar", 100_000, max_members=4)
    assert len(safe_extract(z, tmp_path / "ok", 100_000, max_members=5)) == 5


def deflate64_zip(path: Path, members: dict[str, bytes]) -> Path:
    """A zip whose members are Deflate64-compressed, as Windows writes large archives: each member's
    compressed bytes are stored, then both headers are given method 9, the real CRC-32 and size."""
    import zlib

    import inflate64

    packed = {}
    for name, data in members.items():
        deflater = inflate64.Deflater()
        packed[name] = deflater.deflate(data) + deflater.flush()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, blob in packed.items():
            zf.writestr(name, blob)
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        infos = {i.filename: i for i in zf.infolist()}
    for name, data in members.items():
        crc, size = zlib.crc32(data).to_bytes(4, "little"), len(data).to_bytes(4, "little")
        local = infos[name].header_offset
        raw[local + 8 : local + 10] = (9).to_bytes(2, "little")
        raw[local + 14 : local + 18], raw[local + 22 : local + 26] = crc, size
        cd = raw.find(b"PK\x01\x02" + raw[local + 4 : local + 6])  # its central entry follows the data
        while raw[cd + 46 : cd + 46 + len(name)] != name.encode():
            cd = raw.find(b"PK\x01\x02", cd + 4)
        raw[cd + 10 : cd + 12] = (9).to_bytes(2, "little")
        raw[cd + 16 : cd + 20], raw[cd + 24 : cd + 28] = crc, size
    path.write_bytes(bytes(raw))
    return path


def test_deflate64_members_are_inflated(tmp_path: Path) -> None:
    """Windows compresses large files with Deflate64, which Python's zipfile cannot read."""
    payload = {"wikiart/Style/a.jpg": bytes(range(256)) * 150, "wikiart/Style/b.jpg": b"painting" * 4000}
    z = deflate64_zip(tmp_path / "wikiart.zip", payload)
    with zipfile.ZipFile(z) as zf:
        assert {i.compress_type for i in zf.infolist()} == {9}
        with pytest.raises(NotImplementedError):
            zf.read("wikiart/Style/a.jpg")
    files, bad = extract_reporting(z, tmp_path / "out")
    assert bad == {} and files == sorted(payload)
    for name, data in payload.items():
        assert (tmp_path / "out" / name).read_bytes() == data
    raw = bytearray(z.read_bytes())  # a flipped byte inside the first member's data: reported, not extracted
    start = raw.find(b"a.jpg") + len(b"a.jpg") + 40
    raw[start] ^= 0xFF
    z.write_bytes(bytes(raw))
    files, bad = extract_reporting(z, tmp_path / "out2")
    assert files == ["wikiart/Style/b.jpg"] and bad["wikiart/Style/a.jpg"].startswith("corrupt archive member")
