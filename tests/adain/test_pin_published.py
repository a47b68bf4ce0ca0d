"""`stylepipe profile pretrained --encoder FILE_OR_URL --decoder FILE_OR_URL`: the published files are read in
full, pinned in params.yaml (comments kept) and printed; a missing, unreadable or wrong file, a failed
download or another profile changes nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from stylepipe.cli import main
from stylepipe.core.config import load_params
from stylepipe.core.io import file_digest
from tests.adain.test_published import realistic_decoder, realistic_vgg, write_published
from tests.conftest import ROOT
from tests.data_fixtures import ServerState, http_server


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("released")
    vgg = realistic_vgg()
    return {"enc_t7": write_published(root, vgg, "vgg_normalised", "t7"),
            "dec_pth": write_published(root, realistic_decoder(vgg), "decoder", "pth")}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copy2(ROOT / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(ROOT / "profiles", tmp_path / "profiles")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def pin(*args: str) -> int:
    return main(["profile", "pretrained", *args])


def test_local_files_are_pinned_with_comments_kept_and_printed(files, project, capsys):
    assert pin("--encoder", str(files["enc_t7"]), "--decoder", str(files["dec_pth"])) == 0
    printed = json.loads(capsys.readouterr().out)
    params = load_params(project / "params.yaml")
    enc, dec = params.weights.vgg19_normalised, params.adain.init
    assert (params.weights.encoder, enc.file, enc.sha256, enc.format) == (
        "vgg19_normalised", str(files["enc_t7"]), file_digest(files["enc_t7"]), "t7")
    assert (dec.file, dec.sha256, dec.format, dec.steps) == (str(files["dec_pth"]), file_digest(files["dec_pth"]),
                                                            "pth", 0)
    assert printed["pinned"]["weights.vgg19_normalised"]["sha256"] == enc.sha256
    assert printed["pinned"]["adain.init"]["sha256"] == dec.sha256
    text = (project / "params.yaml").read_text()
    assert "# stylepipe parameters: the single source of configuration" in text  # params.yaml's own comments
    assert (params.adain.layer, params.adain.decoder_width) == ("relu4_1", 1.0)  # the rest of the profile


@pytest.mark.parametrize("case", ["missing", "junk", "swapped", "truncated"])
def test_a_bad_file_changes_nothing(files, project, capsys, case):
    before = (project / "params.yaml").read_bytes()
    junk = project / "junk.pth"
    junk.write_bytes(b"<html>not a model</html>")
    truncated = project / "cut.t7"
    truncated.write_bytes(files["enc_t7"].read_bytes()[:5000])
    args, expected = {
        "missing": (["--encoder", "nope.t7"], "nope.t7: no such published model file"),
        "junk": (["--encoder", str(junk)], "junk.pth: neither a torch .pth state dict nor a binary Torch7"),
        "swapped": (["--encoder", str(files["enc_t7"]), "--decoder", str(files["enc_t7"])],
                    "vgg_normalised.t7: holds 53 modules, expected the published AdaIN decoder"),
        "truncated": (["--encoder", str(truncated)], "cut.t7: not a readable Torch7 file"),
    }[case]
    assert pin(*args) == 1
    assert expected in capsys.readouterr().err
    assert (project / "params.yaml").read_bytes() == before


def test_files_are_for_the_pretrained_profile_only(files, project, capsys):
    before = (project / "params.yaml").read_bytes()
    assert main(["profile", "full", "--encoder", str(files["enc_t7"])]) == 1
    assert "--encoder, --decoder: the published model's files, for the pretrained profile only" in \
        capsys.readouterr().err
    assert (project / "params.yaml").read_bytes() == before


def test_a_url_is_downloaded_checked_and_cached_where_the_stages_fetch_it(files, project, capsys):
    data = files["enc_t7"].read_bytes()
    state = ServerState(files={"/adain/vgg_normalised.t7": data, "/adain/page.t7": b"<html>moved</html>"})
    before = (project / "params.yaml").read_bytes()
    with http_server(state) as base:
        for path, expected in (("missing.t7", "missing.t7: download failed (HTTP Error 404"),
                               ("page.t7", "page.t7: neither a torch .pth state dict nor a binary Torch7")):
            assert pin("--encoder", f"{base}/adain/{path}") == 1
            assert expected in capsys.readouterr().err
        assert (project / "params.yaml").read_bytes() == before
        assert [p for p in (project / ".cache").rglob("*") if p.is_file()] == []  # nothing kept of either
        url = f"{base}/adain/vgg_normalised.t7"
        assert pin("--encoder", url) == 0
    digest = file_digest(files["enc_t7"])
    enc = load_params(project / "params.yaml").weights.vgg19_normalised
    assert (enc.file, enc.sha256, enc.format) == (url, digest, "t7")
    assert (project / ".cache/published" / digest / "vgg_normalised.t7").read_bytes() == data
