"""The SLURM profile's promises, checked without a cluster: retries never ask for more than each rule's
cap, training jobs are warned ahead of their time limit, GPU requests follow common.nproc_per_node, and the
executor plugin is pinned to the major version the cluster tests run."""

from __future__ import annotations

import re
import tomllib

import pytest
import yaml
from packaging.requirements import Requirement

from ..conftest import ROOT, make_project_copy, run

PROFILE = yaml.safe_load((ROOT / "workflow/profiles/slurm/config.yaml").read_text())
TRAINING = ("train_recon", "train_adain", "train_johnson")


def _resources() -> list[tuple[str, str, object]]:
    rows = [("default", k, v) for k, v in PROFILE["default-resources"].items()]
    return rows + [(rule, k, v) for rule, res in PROFILE["set-resources"].items() for k, v in res.items()]


def _at(expression: str, attempt: int) -> float:
    return eval(expression, {"attempt": attempt})  # the profile's own expressions, as Snakemake evaluates them


@pytest.mark.parametrize(("rule", "name", "value"), [r for r in _resources() if "attempt" in str(r[2])])
def test_retries_are_capped(rule: str, name: str, value: str):
    """Whatever the number of attempts, a job never asks for more than its last retry does."""
    last = PROFILE["retries"] + 1
    assert _at(value, 1) < _at(value, last) == _at(value, 100), f"{rule}.{name}: {value}"


@pytest.mark.parametrize("rule", TRAINING)
def test_training_jobs_get_sigterm_before_their_time_limit(rule: str):
    res = PROFILE["set-resources"][rule]
    lead = int(re.search(r"--signal=TERM@(\d+)", res["slurm_extra"]).group(1))
    assert 0 < lead < _at(str(res["runtime"]), 1) * 60


def test_training_rules_ask_one_gpu_per_process(tmp_path):
    repo = make_project_copy(tmp_path / "project", {"common": {"nproc_per_node": 4}})
    out = run(["snakemake", "-n", "-F", "train_adain"], repo).stdout
    blocks = {m.group(1): m.group(0) for m in re.finditer(r"rule (\w+):\n(?:    .*\n)+", out)}
    assert "gpu=4" in blocks["train_adain"] and "gpu=4" in blocks["train_recon"], out[-3000:]


def test_slurm_plugin_is_pinned_to_the_tested_major_version():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    [plugin] = [Requirement(d) for d in deps if d.startswith("snakemake-executor-plugin-slurm")]
    tested = re.search(r"^snakemake-executor-plugin-slurm==(\S+)$",
                       (ROOT / "requirements/constraints.txt").read_text(), re.M).group(1)
    major = int(tested.split(".")[0])
    assert plugin.specifier.contains(tested) and not plugin.specifier.contains(f"{major + 1}.0.0")
