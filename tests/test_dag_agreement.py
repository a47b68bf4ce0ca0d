"""dvc.yaml and the Snakemake workflow declare the DAG of stylepipe.stagetable: names, commands, per-style
stages, outputs and params as the table has them, and the same deps in both.

Per-style stages (DVC `foreach` over train_johnson.styles, `${item}`) match Snakemake wildcard rules
(`{style}`, `{wildcards.style}` in the command): both are compared as templates with `{style}`; a DVC
dependency on the parent folder of a per-style output (evaluate on models/johnson) matches Snakemake's
expanded list of the per-style folders.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from stylepipe.codedeps import stage_code
from stylepipe.stagetable import STAGE_NAMES, STAGES, stage_named

from .conftest import ROOT, run

STYLES = yaml.safe_load((ROOT / "params.yaml").read_text())["train_johnson"]["styles"]


def _template(text: str) -> str:
    """DVC's foreach item and Snakemake's wildcard (with its constraint dropped), written the same way."""
    text = re.sub(r"\{style,[^}]+\}", "{style}", text)
    return text.replace("${item}", "{style}").replace("{wildcards.style}", "{style}")


def _expand_parent_deps(deps: set[str], templates: set[str]) -> set[str]:
    """A dep that is the parent folder of a per-style output template -> one dep per style."""
    out = set()
    for dep in deps:
        children = [t for t in templates if t.startswith(f"{dep}/") and t.count("/") == dep.count("/") + 1]
        out |= {t.format(style=s) for t in children for s in STYLES} if children else {dep}
    return out


OUTPUT_KINDS = ("outs", "metrics", "plots")


def _out_path(entry) -> str:
    return entry if isinstance(entry, str) else next(iter(entry))


@pytest.fixture(scope="module")
def dvc_stages() -> dict[str, dict]:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    out = {}
    for name, st in stages.items():
        per_style = "foreach" in st
        if per_style:
            assert st["foreach"] == "${train_johnson.styles}", name
            st = st["do"]
        kinds = {key: {_template(_out_path(o)) for o in st.get(key, [])} for key in OUTPUT_KINDS}
        out[name] = {
            "cmd": _template(st["cmd"]),
            "deps": {_template(d) for d in st.get("deps", [])},
            "outs": set().union(*kinds.values()),
            "kinds": kinds,
            "params": set(st.get("params", [])),
            "per_style": per_style,
        }
    templates = {o for st in out.values() for o in st["outs"] if "{style}" in o}
    for st in out.values():
        st["deps"] = _expand_parent_deps(st["deps"], templates)
    return out


@pytest.fixture(scope="module")
def snakemake_rules() -> dict[str, dict]:
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import (
        ConfigSettings,
        OutputSettings,
        ResourceSettings,
        StorageSettings,
        WorkflowSettings,
    )

    with SnakemakeApi(OutputSettings()) as api:
        workflow = api.workflow(
            resource_settings=ResourceSettings(), config_settings=ConfigSettings(),
            storage_settings=StorageSettings(), workflow_settings=WorkflowSettings(),
            snakefile=ROOT / "Snakefile", workdir=ROOT,
        )
        rules = {}
        for rule in workflow._workflow.rules:
            if rule.name == "all":
                continue
            rules[rule.name] = {
                "cmd": _template(rule.shellcmd),
                "deps": {_template(str(f)) for f in rule.input},
                "outs": {_template(str(f)) for f in rule.output},
                "params": dict(rule.params.items()),
            }
        return rules


def _same_stages(declared: set[str], where: str) -> None:
    missing, extra = sorted(set(STAGE_NAMES) - declared), sorted(declared - set(STAGE_NAMES))
    assert not missing and not extra, (
        f"{where} lacks the stages {missing} of stylepipe/stagetable.py and has {extra} that the table lacks")


def test_stage_names_are_the_design_contract(dvc_stages, snakemake_rules):
    _same_stages(set(dvc_stages), "dvc.yaml")
    _same_stages(set(snakemake_rules), "workflow/ (Snakemake)")
    assert len(set(STAGE_NAMES)) == len(STAGES), "a stage is listed twice in stylepipe/stagetable.py"


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_stage_agrees(stage, dvc_stages, snakemake_rules):
    d, s = dvc_stages[stage], snakemake_rules[stage]
    # Snakemake additionally captures stderr in logs/<stage>.log; the command itself is identical.
    assert s["cmd"].strip() == f"{d['cmd']} 2> {{log}}"
    assert s["deps"] == d["deps"]
    assert s["outs"] == d["outs"]
    assert set(s["params"]) == d["params"]


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_dvc_yaml_declares_the_stage_as_the_table_does(stage, dvc_stages):
    """Command, per-style foreach, params sections and outputs of dvc.yaml are the table's (Snakemake's
    are checked equal to dvc.yaml's above)."""
    row, d = stage_named(stage), dvc_stages[stage]
    assert d["cmd"] == f"stylepipe {stage}" + (" {style}" if row.per_style else "")
    assert d["per_style"] == row.per_style, f"{stage}: foreach in dvc.yaml vs per_style in the table"
    assert d["params"] == set(row.params), f"{stage}: params in dvc.yaml vs the table"
    table_kinds = {"outs": set(row.outs), "metrics": set(row.metrics), "plots": set(row.plots)}
    assert d["kinds"] == table_kinds, f"{stage}: outputs in dvc.yaml vs the table"


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_code_deps_are_the_import_closure_of_the_command(stage, dvc_stages):
    """A stage re-runs when any module its command imports (transitively, within stylepipe) changes, and
    only then: its src/stylepipe deps are exactly that closure (Snakemake's are checked equal above)."""
    declared = sorted(d for d in dvc_stages[stage]["deps"] if d.startswith("src/"))
    expected = stage_code(stage)
    missing, extra = sorted(set(expected) - set(declared)), sorted(set(declared) - set(expected))
    assert not missing and not extra, (
        f"{stage}: code deps in dvc.yaml and workflow/rules differ from the import closure of "
        f"`stylepipe {stage}`; add {missing}, remove {extra} (`python -m stylepipe.codedeps` prints every list)"
    )


def test_snakemake_params_hold_params_yaml_values(snakemake_rules):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for rule in snakemake_rules.values():
        for key, value in rule["params"].items():
            node = params
            for part in key.split("."):
                node = node[part]
            assert value == node, key


def test_every_dependency_is_a_file_or_an_upstream_output(dvc_stages):
    produced = {o.format(style=s) if "{style}" in o else o for st in dvc_stages.values() for o in st["outs"]
                for s in STYLES}
    produced |= {o for st in dvc_stages.values() for o in st["outs"]}
    for name, st in dvc_stages.items():
        for dep in st["deps"]:
            assert dep in produced or (ROOT / dep).exists(), f"{name}: dependency {dep} has no producer"


def test_snakemake_lint_and_dry_run_and_slurm_profile(tmp_path: Path):
    run(["snakemake", "--lint"], ROOT)
    dry = run(["snakemake", "-n", "--forceall", "-c", "1"], ROOT)
    for stage in STAGE_NAMES:
        assert stage in dry.stdout
    for style in STYLES:
        assert f"models/johnson/{style}" in dry.stdout and f"models/export/johnson/{style}" in dry.stdout
    slurm = run(["snakemake", "-n", "--forceall", "--profile", "workflow/profiles/slurm"], ROOT)
    assert "train_adain" in slurm.stdout
