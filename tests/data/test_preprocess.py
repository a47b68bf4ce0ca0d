"""preprocess: validation, colour conversion, resizing, deterministic split, archives, atomic output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from stylepipe.core.config import Preprocess
from stylepipe.data.preprocess import assign_splits, resized_size, run_preprocess
from stylepipe.data.shards import ShardStore
from tests.data_fixtures import build_raw, make_params

SHORT = 64


def params(workers: int = 2) -> object:
    pp = Preprocess(short_side=SHORT, min_side=32, val_fraction=0.25, workers=workers)
    return make_params(preprocess=pp)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict, dict[str, str]]:
    root = tmp_path_factory.mktemp("pre")
    expected = build_raw(root / "raw")
    report = run_preprocess(params(), root / "raw", root / "prepared", root / "extract", progress=False)
    return root, root / "prepared", report, expected


def test_rejects_bad_images_with_reasons(prepared: tuple) -> None:
    _, out, report, expected = prepared
    reasons = {Path(r["path"].split(":")[-1]).name: r["reason"] for r in report["rejected"]}
    assert set(reasons) == set(expected)
    for name, fragment in expected.items():
        assert fragment in reasons[name], (name, reasons[name])
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["rejected"] == report["rejected"]
    assert report["content"]["rejected"] == 3 and report["style"]["rejected"] == 1


def test_good_images_converted(prepared: tuple) -> None:
    _, out, _, _ = prepared
    store = ShardStore(out / "content")
    recs = {r["id"]: i for i, r in enumerate(store.records)}
    assert set(recs) == {"good.jpg", "small_ok.jpg", "cmyk.jpg", "grey.png", "rgba.png", "palette.gif",
                         "deep16.png"}
    for name, i in recs.items():
        img = store.read_image(i)
        assert img.mode == "RGB" and img.size == (store.records[i]["width"], store.records[i]["height"])
        assert min(img.size) == (40 if name == "small_ok.jpg" else SHORT), name
    assert store.read_image(recs["good.jpg"]).size == (107, 64)
    root = prepared[0] / "raw" / "coco" / "images"
    assert store.read_bytes(recs["small_ok.jpg"]) == (root / "small_ok.jpg").read_bytes()  # no re-encode
    assert store.read_bytes(recs["grey.png"])[:2] == b"\xff\xd8"  # everything else becomes JPEG
    px = lambda name, xy: np.asarray(store.read_image(recs[name]))[xy[1], xy[0]].astype(int)  # noqa: E731
    assert np.abs(px("rgba.png", (5, 32)) - (255, 255, 255)).max() < 12  # transparent -> white
    assert np.abs(px("rgba.png", (58, 32)) - (0, 0, 255)).max() < 30
    assert np.abs(px("cmyk.jpg", (30, 30)) - (0, 255, 255)).max() < 40  # cyan
    assert np.abs(px("deep16.png", (30, 30)) - 128).max() <= 3  # 16-bit scaled, not clipped
    assert np.abs(px("grey.png", (30, 30)) - 100).max() <= 3


def test_style_labels_and_split(prepared: tuple) -> None:
    _, out, report, _ = prepared
    style = ShardStore(out / "style")
    assert style.labels == ["StyleA", "StyleB"]
    for label in style.labels:
        splits = {r["split"] for r in style.records if r["label"] == label}
        assert splits == {"train", "val"}, label
    content = ShardStore(out / "content")
    assert content.indices("train") and content.indices("val")
    assert report["style"]["labels"]["StyleB"] == {"train": 1, "val": 1}


def test_rerun_is_identical(prepared: tuple) -> None:
    root, out, _, _ = prepared
    before = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    run_preprocess(params(workers=1), root / "raw", out, root / "extract", progress=False)
    after = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert before == after
    assert not [p for p in root.iterdir() if p.name.startswith(".prepared")]


def test_split_helpers() -> None:
    names = [f"img{i}.jpg" for i in range(200)]
    s1 = assign_splits(names, [list(range(200))], seed=0, val_fraction=0.25)
    assert s1 == assign_splits(names, [list(range(200))], seed=0, val_fraction=0.25)
    assert 30 < s1.count("val") < 70
    assert s1 != assign_splits(names, [list(range(200))], seed=1, val_fraction=0.25)
    two = assign_splits(["a", "b"], [[0, 1]], seed=0, val_fraction=0.01)
    assert sorted(two) == ["train", "val"]
    assert resized_size(1000, 500, 512) == (1000, 500)  # never upscale
    assert resized_size(2000, 1000, 512) == (1024, 512)
    assert resized_size(300, 200, 512) == (300, 200)


def test_from_archives(tmp_path: Path) -> None:
    src = tmp_path / "src"
    build_raw(src)
    raw = tmp_path / "raw"
    raw.mkdir()
    with zipfile.ZipFile(raw / "val2017.zip", "w") as zf:
        for p in sorted((src / "coco" / "images").iterdir()):
            zf.write(p, f"val2017/{p.name}")
    with zipfile.ZipFile(raw / "annotations_trainval2017.zip", "w") as zf:
        zf.write(src / "coco/annotations/instances_train.json", "annotations/instances_val2017.json")
    with zipfile.ZipFile(raw / "wikiart.zip", "w") as zf:
        for p in sorted((src / "wikiart").rglob("*.jpg")):
            zf.write(p, f"wikiart/{p.relative_to(src / 'wikiart').as_posix()}")
    report = run_preprocess(params(workers=1), raw, tmp_path / "out", tmp_path / "extract", progress=False)
    assert report["content"]["train"] + report["content"]["val"] == 7
    assert report["style"]["train"] + report["style"]["val"] == 5
    assert (tmp_path / "extract" / "wikiart_zip" / "wikiart" / "StyleA").is_dir()


def test_missing_inputs_are_clear(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    with pytest.raises(FileNotFoundError, match="instances_"):
        run_preprocess(params(), tmp_path / "raw", tmp_path / "out", tmp_path / "x", progress=False)


def _tiny_raw(raw: Path, big: tuple[int, int]) -> None:
    """Three content photos (one of size `big`) and two paintings in two styles."""
    from tests.data_fixtures import jpeg, photo, write_coco_json

    img_dir = raw / "coco" / "images"
    img_dir.mkdir(parents=True)
    sizes = {"a.jpg": (100, 80), "b.jpg": (90, 120), "big.jpg": big}
    for k, (name, (w, h)) in enumerate(sizes.items()):
        (img_dir / name).write_bytes(jpeg(photo(w, h, k)))
    write_coco_json(raw / "coco" / "annotations" / "instances_train.json", list(sizes), list(sizes.values()))
    for k, style in enumerate(("S1", "S2")):
        (raw / "wikiart" / style).mkdir(parents=True)
        (raw / "wikiart" / style / f"p{k}.jpg").write_bytes(jpeg(photo(80, 70, 9 + k)))


def test_decompression_bomb_rejected_and_limit_restored(tmp_path: Path) -> None:
    from PIL import Image

    _tiny_raw(tmp_path / "raw", big=(400, 300))
    before = Image.MAX_IMAGE_PIXELS
    pp = Preprocess(short_side=SHORT, min_side=32, val_fraction=0.25, workers=1, max_image_pixels=50_000)
    report = run_preprocess(make_params(preprocess=pp), tmp_path / "raw", tmp_path / "out", tmp_path / "x",
                            progress=False)
    assert [(Path(r["path"]).name, r["reason"].split(":")[0]) for r in report["rejected"]] == [
        ("big.jpg", "decompression bomb")]
    assert "120000 pixels" in report["rejected"][0]["reason"]
    assert report["content"]["train"] + report["content"]["val"] == 2
    assert before == Image.MAX_IMAGE_PIXELS


CRASH = """
import os, signal, sys
from stylepipe.data import shards
from stylepipe.data.preprocess import run_preprocess
from tests.data.test_preprocess import params
add = shards.ShardWriter.add
def add_then_die(self, data, **meta):
    if len(self.records) == 2:
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup: as a power cut or the OOM killer
    return add(self, data, **meta)
shards.ShardWriter.add = add_then_die
run_preprocess(params(workers=1), *sys.argv[1:4], progress=False)
"""


def test_rerun_after_a_killed_run_has_no_duplicates(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT, tool_env

    build_raw(tmp_path / "raw")
    args = [str(tmp_path / d) for d in ("raw", "prepared", "extract")]
    env = tool_env() | {"PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    proc = subprocess.run([sys.executable, "-c", CRASH, *args], env=env, capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    assert not (tmp_path / "prepared").exists()
    assert [p.name for p in tmp_path.glob(".prepared.*.tmp")]  # the killed run's half-written output
    run_preprocess(params(workers=1), *map(Path, args), progress=False)
    assert not list(tmp_path.glob(".prepared.*.tmp"))
    for domain in ("content", "style"):
        ids = [r["id"] for r in ShardStore(tmp_path / "prepared" / domain).records]
        assert len(ids) == len(set(ids)) > 0
    run_preprocess(params(workers=1), tmp_path / "raw", tmp_path / "clean", tmp_path / "extract",
                           progress=False)
    for name in ("content/manifest.jsonl", "style/manifest.jsonl", "report.json"):
        assert (tmp_path / "prepared" / name).read_text() == (tmp_path / "clean" / name).read_text()


def _cgroup(tmp_path: Path, lines: str, files: dict[str, str]) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (tmp_path / "proc_cgroup").write_text(lines)
    return root, tmp_path / "proc_cgroup"


def test_cgroup_cpu_quota_is_read_v2_and_v1(tmp_path: Path) -> None:
    from stylepipe.core.cpus import cgroup_cpu_quota, granted_cpus

    # v2: the tightest cpu.max on the way up from the process's cgroup counts ("max" = no limit)
    root, proc = _cgroup(tmp_path / "v2", "0::/slurm/job_7\n",
                         {"slurm/cpu.max": "250000 100000\n", "slurm/job_7/cpu.max": "max 100000\n"})
    assert cgroup_cpu_quota(root, proc) == 2.5
    assert granted_cpus(root, proc) == min(len(os.sched_getaffinity(0)), 3)
    root, proc = _cgroup(tmp_path / "half", "0::/job\n", {"job/cpu.max": "50000 100000\n"})
    assert granted_cpus(root, proc) == 1
    root, proc = _cgroup(tmp_path / "v1", "4:cpu,cpuacct:/docker/abc\n0::/\n",
                         {"cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "150000\n",
                          "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n"})
    assert cgroup_cpu_quota(root, proc) == 1.5
    root, proc = _cgroup(tmp_path / "none", "0::/\n", {"cpu.max": "max 100000\n"})
    assert cgroup_cpu_quota(root, proc) is None and granted_cpus(root, proc) == len(os.sched_getaffinity(0))


def test_affinity_limits_the_cpus_granted() -> None:
    """taskset / SLURM's cpuset: one CPU in the mask is one CPU granted, whatever os.cpu_count() says."""
    code = ("import os; from stylepipe.core.cpus import granted_cpus; "
            "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); print(granted_cpus(), os.cpu_count())")
    granted, total = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                    check=True).stdout.split()
    assert granted == "1" and int(total) >= 1


def test_pool_is_sized_from_the_granted_cpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stylepipe.data import preprocess

    sizes: list[int] = []

    class SpyPool(preprocess.ProcessPoolExecutor):
        def __init__(self, max_workers: int, **kw: object) -> None:
            sizes.append(max_workers)
            super().__init__(max_workers, **kw)

    monkeypatch.setattr(os, "cpu_count", lambda: 128)  # the node's cores, not this job's
    monkeypatch.setattr(preprocess, "granted_cpus", lambda: 2)
    monkeypatch.setattr(preprocess, "ProcessPoolExecutor", SpyPool)
    expected = build_raw(tmp_path / "raw")
    report = run_preprocess(params(workers=0), tmp_path / "raw", tmp_path / "prepared", tmp_path / "extract",
                            progress=False)
    assert sizes == [2]
    assert report["content"]["train"] + report["content"]["val"] > 0 and expected


def _dies_on_the_third(job: tuple) -> tuple:
    """Stands in for a worker the OOM killer takes: SIGKILL, no exception, no result."""
    if job[0] == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return job[0], b"x", 1, 1, None


@pytest.mark.timeout(120)  # the failure this guards against is a hang
def test_a_killed_worker_is_a_clear_error_not_a_hang(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stylepipe.core.errors import StylepipeError
    from stylepipe.data import preprocess

    monkeypatch.setattr(preprocess, "_process", _dies_on_the_third)
    items = [preprocess.Item("content", f"{i}.jpg", f"{i}.jpg", None, "coco") for i in range(16)]
    with pytest.raises(StylepipeError, match=r"a worker process died after \d+ of 16 images .*lower "
                                             r"preprocess\.workers \(now 2\)"):
        list(preprocess._results(items, params(workers=2), progress=False))


def test_coco_file_names_outside_the_image_folder_are_rejected(tmp_path: Path) -> None:
    """An absolute file_name or one with `..` would pull any readable file of the machine into the shards."""
    from tests.data_fixtures import jpeg, photo, write_coco_json

    build_raw(tmp_path / "raw")
    outside = [tmp_path / "elsewhere.jpg", tmp_path / "raw" / "coco" / "elsewhere.jpg",
               tmp_path / "raw" / "elsewhere.jpg"]
    for path in outside:  # real photos, where each hostile name points from raw/coco/images/
        path.write_bytes(jpeg(photo(80, 80, 9)))
    hostile = [str(outside[0]), "../elsewhere.jpg", "../../elsewhere.jpg"]
    ann = tmp_path / "raw" / "coco" / "annotations" / "instances_train.json"
    names = [img["file_name"] for img in json.loads(ann.read_text())["images"]]
    write_coco_json(ann, names + hostile, [(10, 10)] * (len(names) + len(hostile)))
    report = run_preprocess(params(workers=1), tmp_path / "raw", tmp_path / "prepared", tmp_path / "extract",
                            progress=False)
    reasons = {r["path"].split(".json:", 1)[1]: r["reason"] for r in report["rejected"] if r["domain"] == "content"
               and ".json:" in r["path"]}
    for name in hostile:
        assert reasons[name] == ("file_name must be a relative path inside the image folder (no absolute path, "
                                 "no '..')"), reasons
    ids = [r["id"] for r in ShardStore(tmp_path / "prepared" / "content").records]
    assert ids and not any("elsewhere" in i for i in ids)
