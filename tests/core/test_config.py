"""params.yaml validation: users get a message naming the key and the value, never a traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from stylepipe.core.config import ConfigError, Params, load_params, parse_params
from stylepipe.core.profiles import apply_profile

from ..conftest import ROOT, load_default_params


def test_repo_params_are_valid():
    params = load_params(ROOT / "params.yaml")
    assert params.download.source == "sample"
    assert params.weights.encoder == "vgg16_hed"
    assert params.train_adain.iterations > 0


def test_unknown_key_is_named():
    raw = load_default_params()
    raw["train_adain"]["learning_rate"] = 0.1
    with pytest.raises(ConfigError, match=r"train_adain\.learning_rate: unknown key"):
        parse_params(raw)


def test_unknown_section_is_named():
    raw = load_default_params()
    raw["trian"] = {}
    with pytest.raises(ConfigError, match=r"trian: unknown key"):
        parse_params(raw)


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("train_adain", "lr", -1.0, "greater than 0"),
        ("train_adain", "crop", 100, "multiple of 8"),
        ("train_recon", "batch_size", 0, "greater than 0"),
        ("preprocess", "val_fraction", 1.5, "less than 1"),
        ("export", "opset", 17, "less than or equal to 13"),
        ("common", "device", "tpu", "'auto', 'cpu' or 'cuda'"),
        ("train_adain", "style_layers", ["relu5_1"], "relu1_1"),
    ],
)
def test_out_of_range_values_are_named(section, key, value, message):
    raw = load_default_params()
    raw[section][key] = value
    with pytest.raises(ConfigError) as info:
        parse_params(raw)
    text = str(info.value)
    assert f"{section}.{key}" in text
    assert message in text
    assert repr(value[0] if isinstance(value, list) else value) in text


def test_remote_file_needs_checksum_and_plain_name():
    raw = load_default_params()
    raw["download"]["remote"]["files"] = [{"name": "../x.zip", "urls": ["http://h/x.zip"]}]
    with pytest.raises(ConfigError) as info:
        parse_params(raw)
    assert "download.remote.files.0" in str(info.value)
    assert "plain file name" in str(info.value)


def test_missing_file_and_bad_yaml(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "params.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("common: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)


def test_full_profile_overlay_validates_and_merges(tmp_path: Path):
    params_path = tmp_path / "params.yaml"
    params_path.write_text((ROOT / "params.yaml").read_text())
    result = apply_profile("full", params_path, ROOT / "profiles")
    merged = load_params(params_path)
    overlay = yaml.safe_load((ROOT / "profiles" / "full.yaml").read_text())
    assert merged.download.source == overlay["download"]["source"] == "remote"
    assert merged.train_adain.iterations == overlay["train_adain"]["iterations"]
    assert "train_adain" in result["changed_sections"]
    # untouched sections survive
    assert merged.tracking.experiment == load_params(ROOT / "params.yaml").tracking.experiment


def test_bad_profile_leaves_params_untouched(tmp_path: Path):
    params_path = tmp_path / "params.yaml"
    original = (ROOT / "params.yaml").read_text()
    params_path.write_text(original)
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "broken.yaml").write_text("train_adain:\n  iterations: -5\n")
    with pytest.raises(ConfigError, match=r"train_adain\.iterations"):
        apply_profile("broken", params_path, profiles)
    assert params_path.read_text() == original
    with pytest.raises(ConfigError, match="no such profile"):
        apply_profile("nope", params_path, profiles)


def test_style_layer_weights_must_match_layers():
    raw = load_default_params()
    raw["train_adain"]["style_layer_weights"] = [1.0, 2.0]
    n = len(raw["train_adain"]["style_layers"])  # up to adain.layer: 3 at relu3_1, 4 at relu4_1
    with pytest.raises(ConfigError, match=rf"style_layer_weights has 2 values for {n} style_layers"):
        parse_params(raw)
    raw["train_adain"]["lr_schedule"] = "linear-ish"
    with pytest.raises(ConfigError, match=r"train_adain\.lr_schedule"):
        parse_params(raw)


@pytest.mark.parametrize("key", ["style_layers", "structure_layers"])
def test_loss_layers_deeper_than_the_adain_layer_are_named(key):
    raw = load_default_params()
    raw["adain"]["layer"] = "relu3_1"
    raw["train_adain"]["style_layer_weights"] = None
    raw["train_adain"][key] = ["relu1_1", "relu4_1"]
    with pytest.raises(ConfigError, match=rf"train_adain\.{key} \['relu4_1'\] lie deeper than adain\.layer relu3_1"):
        parse_params(raw)


def test_full_profile_trains_the_papers_relu4_1_model(tmp_path: Path):
    params_path = tmp_path / "params.yaml"
    params_path.write_text((ROOT / "params.yaml").read_text())
    apply_profile("full", params_path, ROOT / "profiles")
    params = load_params(params_path)
    assert (params.adain.layer, params.adain.decoder_width) == ("relu4_1", 1.0)
    assert params.train_adain.style_layers == ["relu1_1", "relu2_1", "relu3_1", "relu4_1"]
    assert params.train_adain.colour_weight == params.train_adain.structure_weight == 0


def _remote(*names: str) -> dict:
    return {"source": "remote", "remote": {"files": [{"name": n, "urls": [f"http://mirror/{n}"], "md5": "0" * 32}
                                                     for n in names]}}


def test_remote_file_names_must_be_distinct():
    raw = load_default_params()
    raw["download"] = _remote("coco.zip", "wikiart.zip", "coco.zip")
    with pytest.raises(ConfigError, match=r"download\.remote\.files: Value error, file names must be distinct: "
                                          r"\['coco\.zip'\] appear more than once"):
        parse_params(raw)
    raw["download"] = _remote("coco.zip", "wikiart.zip")
    assert [f.name for f in parse_params(raw).download.remote.files] == ["coco.zip", "wikiart.zip"]


@pytest.mark.parametrize("alphas", [[], [0.5, 1.0, 0.5]], ids=["empty", "repeated"])
def test_evaluate_alphas_must_be_a_non_empty_list_without_repeats(alphas):
    raw = load_default_params()
    raw["evaluate"]["alphas"] = alphas
    with pytest.raises(ConfigError, match=r"evaluate\.alphas: Value error, must be a non-empty list without repeats"):
        parse_params(raw)


def test_a_key_given_twice_is_refused_naming_it(tmp_path: Path):
    text = (ROOT / "params.yaml").read_text()
    assert "\n  min_side: 64" in text
    params = tmp_path / "params.yaml"
    params.write_text(text.replace("\n  min_side: 64", "\n  min_side: 64\n  min_side: 8", 1))
    first = text[: text.index("\n  min_side: 64")].count("\n") + 2  # 1-based line of the first min_side
    with pytest.raises(ConfigError, match=rf"params\.yaml: not valid YAML: line {first + 1}: duplicate key "
                                          rf"'min_side' \(first given on line {first}\)") as caught:
        load_params(params)
    assert str(params) in str(caught.value)
    params.write_text(text + "\npreprocess:\n  workers: 1\n")  # a whole section given twice
    with pytest.raises(ConfigError, match="duplicate key 'preprocess'"):
        load_params(params)


@pytest.mark.parametrize("path", ["/opt/blobs/adain_baked.blob", "blobs/../x.blob", "other/adain.blob", "blobs"])
def test_blob_path_must_lie_under_the_folder_compile_blob_depends_on(path):
    raw = load_default_params()
    raw["blob"]["path"] = path
    with pytest.raises(ConfigError, match=r"blob\.path: Value error, must be a file under blobs/"):
        parse_params(raw)
    raw["blob"]["path"] = "blobs/adain_baked.blob"
    assert parse_params(raw).blob.path == "blobs/adain_baked.blob"


def test_compile_blob_depends_on_the_blob_folder_in_both_front_ends():
    """A replaced blobs/<file>.blob must re-run compile_blob under DVC and Snakemake alike."""
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["compile_blob"]
    assert "blobs" in stage["deps"]
    rule = (ROOT / "workflow" / "rules" / "export.smk").read_text().split("rule compile_blob:")[1].split("rule ")[0]
    assert '"blobs",' in rule.split("output:")[0]
    assert (ROOT / "blobs").is_dir()


def _committed_params() -> dict[str, Any]:
    """params.yaml as committed: `stylepipe profile full` rewrites the working copy, the defaults follow the
    sample values in git (the file itself where the tree is not a git checkout)."""
    try:
        text = subprocess.run(["git", "show", "HEAD:params.yaml"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        text = (ROOT / "params.yaml").read_text()
    return yaml.safe_load(text)


def _default_mismatches(model: type[BaseModel], values: dict[str, Any], prefix: str) -> list[str]:
    """Each key the file gives whose field default differs from the file's value, as `key: default != value`."""
    out = []
    for key, value in values.items():
        field = model.model_fields[key]
        if field.is_required():
            continue
        default = field.get_default(call_default_factory=True)
        if isinstance(default, BaseModel) and isinstance(value, dict):
            out += _default_mismatches(type(default), value, f"{prefix}{key}.")
        elif (default.model_dump() if isinstance(default, BaseModel) else default) != value:
            out.append(f"{prefix}{key}: {default!r} != {value!r}")
    return out


def test_every_default_equals_the_committed_params_value():
    """A section built in code without the file (tests, benchmarks, notebooks) trains what params.yaml trains."""
    committed = _committed_params()
    mismatches = []
    for section, values in committed.items():
        model = Params.model_fields[section].annotation
        mismatches += _default_mismatches(model, values, f"{section}.")
    assert not mismatches, "config defaults differ from params.yaml:\n" + "\n".join(mismatches)


def test_the_default_check_sees_a_differing_value():
    committed = _committed_params()
    committed["train_adain"]["style_weight"] = committed["train_adain"]["style_weight"] + 1
    model = Params.model_fields["train_adain"].annotation
    assert _default_mismatches(model, committed["train_adain"], "train_adain.") == [
        f"train_adain.style_weight: 0.15 != {0.15 + 1!r}"]


@pytest.mark.parametrize("section", ["common", "tracking", "download", "weights", "preprocess", "adain", "finish",
                                     "evaluate", "export", "blob", "demo"])
def test_a_section_built_without_the_file_equals_the_files(section):
    assert Params.model_fields[section].annotation() == getattr(parse_params(_committed_params()), section)


def test_finishing_settings_are_their_own_section_and_validated():
    raw = load_default_params()
    params = parse_params(raw)
    assert (params.finish.palette, params.finish.detail) == ("histogram", 1.0)
    for key, value, message in (("palette", "lab", "'histogram' or 'none'"),
                                ("detail", 1.5, "less than or equal to 1")):
        bad = load_default_params()
        bad["finish"][key] = value
        with pytest.raises(ConfigError, match=rf"finish\.{key}: .*{message}"):
            parse_params(bad)


@pytest.mark.parametrize("key", ["palette", "detail"])
def test_a_finishing_setting_left_in_adain_is_refused_naming_its_new_place(key):
    raw = load_default_params()
    raw["adain"][key] = raw["finish"].pop(key)
    with pytest.raises(ConfigError, match=rf"adain\.{key} moved to the finish section: write finish\.{key}"):
        parse_params(raw)


@pytest.mark.parametrize("profile", ["full", "pretrained"])
def test_profiles_set_the_references_finishing_in_the_finish_section(profile, tmp_path: Path):
    params_path = tmp_path / "params.yaml"
    params_path.write_text((ROOT / "params.yaml").read_text())
    apply_profile(profile, params_path, ROOT / "profiles")
    params = load_params(params_path)
    assert (params.finish.palette, params.finish.detail) == ("none", 0.0)
