"""The stage table: each row names a function the CLI can call, reading it costs no heavy import, and its
rows give codedeps each stage's code (dvc.yaml and workflow/ are checked against it in test_dag_agreement)."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

from stylepipe.codedeps import repo_paths, stage_code
from stylepipe.stagetable import STAGE_NAMES, STAGES, stage_named


@pytest.mark.parametrize("stage", STAGES, ids=STAGE_NAMES)
def test_each_row_names_a_function_taking_params_and_the_style_of_a_per_style_stage(stage):
    run = stage.load()
    args = (object(), "Cubism") if stage.per_style else (object(),)
    inspect.signature(run).bind(*args)  # a TypeError names what the CLI's call would miss
    assert run.__module__ == stage.module


def test_the_cli_and_the_table_load_no_stage_module():
    """`stylepipe --help` stays fast: neither torch nor any stage's module is imported to build it."""
    modules = sorted({stage.module for stage in STAGES} | {"torch"})
    code = (f"import sys, stylepipe.cli; print([m for m in {modules!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_an_unknown_stage_name_lists_the_known_ones():
    with pytest.raises(KeyError, match=r"'train' is not a pipeline stage .*train_adain"):
        stage_named("train")


@pytest.mark.parametrize("stage", STAGES, ids=STAGE_NAMES)
def test_a_stages_code_holds_its_function_and_not_the_table(stage):
    """Editing the table (adding a stage) re-runs no stage; editing a stage's own module re-runs it."""
    code = stage_code(stage.name)
    assert repo_paths([stage.module])[0] in code
    assert repo_paths(["stylepipe.stagetable"])[0] not in code
