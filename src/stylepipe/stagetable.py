"""The pipeline's stages, one row each: the single source of truth that the CLI builds its stage
subcommands from, that codedeps reads each stage's code from, and that tests/test_dag_agreement.py checks
dvc.yaml and workflow/ against.

The table is plain data and imports nothing from stylepipe: `stylepipe --help` reads it without importing
torch, and it belongs to no stage's code (like cli.py, it is dispatch), so adding a row re-runs nothing.
Each stage's function is named as "module:function" (the entry-point syntax) and imported on use.
"""

from __future__ import annotations

import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Stage:
    """One pipeline stage: `stylepipe <name>` calls `run(params)`, or `run(params, style)` when per_style."""

    name: str
    run: str  # "module:function"
    params: tuple[str, ...]  # the params.yaml sections (or keys) it reads, as dvc.yaml lists them
    outs: tuple[str, ...]  # cached outputs; "{style}" stands for the style in a per-style stage
    metrics: tuple[str, ...] = ()
    plots: tuple[str, ...] = ()
    per_style: bool = False  # one run per train_johnson.styles entry: DVC foreach, a Snakemake wildcard
    distributed: bool = False  # re-launched as common.nproc_per_node torchrun processes when that is > 1

    @property
    def module(self) -> str:
        """The module holding the stage's function: the root of its code (see stylepipe.codedeps)."""
        return self.run.partition(":")[0]

    @property
    def outputs(self) -> tuple[str, ...]:
        """Every file or folder the stage writes: outs, metrics and plots."""
        return (*self.outs, *self.metrics, *self.plots)

    def load(self) -> Callable[..., Any]:
        """Import the stage's module and return its function."""
        return pkgutil.resolve_name(self.run)


STAGES: tuple[Stage, ...] = (
    Stage("download", "stylepipe.data.download:run_download", ("download",), ("data/raw",)),
    Stage("weights", "stylepipe.nn.weights:run_weights", ("weights",), ("models/encoder",)),
    Stage("preprocess", "stylepipe.data.preprocess:run_preprocess", ("common.seed", "preprocess"),
          ("data/prepared",)),
    Stage("train_recon", "stylepipe.adain.train:run_train_recon", ("common", "adain", "train_recon"),
          ("models/recon",), plots=("reports/train_recon/losses.csv",), distributed=True),
    Stage("train_adain", "stylepipe.adain.train:run_train_adain", ("common", "adain", "train_adain"),
          ("models/adain",), plots=("reports/train_adain/losses.csv",), distributed=True),
    Stage("train_johnson", "stylepipe.johnson.train:run_train_johnson", ("common", "train_johnson"),
          ("models/johnson/{style}",), plots=("reports/train_johnson/{style}/losses.csv",), per_style=True),
    Stage("evaluate", "stylepipe.evaluate.stage:run_evaluate", ("common", "finish", "evaluate", "train_johnson.styles"),
          ("reports/evaluate/grid.png", "reports/evaluate/johnson_grid.png", "reports/evaluate/curves.png",
           "reports/evaluate/report.html", "reports/evaluate/metrics_detail.json"),
          metrics=("reports/evaluate/metrics.json",), plots=("reports/evaluate/alpha_sweep.csv",)),
    Stage("export_onnx", "stylepipe.adain.export:run_export_onnx", ("common.seed", "finish", "export"),
          ("models/export/onnx",)),
    Stage("export_openvino", "stylepipe.adain.openvino:run_export_openvino", ("common.seed", "finish", "export"),
          ("models/export/openvino",)),
    Stage("package", "stylepipe.adain.package:run_package", ("common.seed", "finish", "package"),
          ("models/stylizer",)),
    Stage("export_johnson", "stylepipe.johnson.export:run_export_johnson",
          ("common.seed", "export", "train_johnson.styles"), ("models/export/johnson/{style}",), per_style=True),
    Stage("compile_blob", "stylepipe.export.myriad.blob:run_compile_blob", ("export", "blob", "train_johnson.styles"),
          ("models/export/blob",)),
    Stage("demo", "stylepipe.demo.host:run_demo", ("finish", "export", "demo"), ("demo",)),
)

STAGE_NAMES: tuple[str, ...] = tuple(stage.name for stage in STAGES)
_BY_NAME = {stage.name: stage for stage in STAGES}


def stage_named(name: str) -> Stage:
    """The table's row for `name`; a KeyError naming the known stages for any other name."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"{name!r} is not a pipeline stage (known: {', '.join(STAGE_NAMES)})") from None
