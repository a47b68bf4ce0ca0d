"""export.onnx names no device: targets plug into check_model, and the Myriad X is one of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from stylepipe.export.myriad.target import MYRIAD_X
from stylepipe.export.onnx import ExportError, check_model, export_graph


class Recording:
    """A stand-in device: records what check_model hands it and adds one figure to the report."""

    name = "recording"

    def __init__(self) -> None:
        self.calls: list[tuple[Path, float]] = []

    def check(self, path: Path, gmac: float) -> dict[str, Any]:
        self.calls.append((path, gmac))
        return {"recorded_gmac": gmac}


class Refusing:
    """A stand-in device that cannot run anything."""

    name = "refusing"

    def check(self, path: Path, gmac: float) -> dict[str, Any]:
        raise ExportError(f"{path.name}: refused by the test device")


def _exported(tmp_path: Path, module: nn.Module) -> tuple[nn.Module, tuple[torch.Tensor, ...], Path]:
    module = module.eval()
    args = (torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)),)
    path = tmp_path / "net.onnx"
    export_graph(module, args, ["content"], path, 13, {})
    return module, args, path


def _conv() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 1))


def test_without_targets_the_report_names_no_device(tmp_path: Path) -> None:
    module, args, path = _exported(tmp_path, _conv())
    report = check_model(module, args, ["content"], path, 1e-4)
    assert report["max_abs_diff"] <= 1e-4 and report["params"] == 4 * 3 * 9 + 4 + 3 * 4 + 3
    assert "opcheck" not in report and "oak1_projection" not in report


def test_each_target_gets_the_graph_and_its_compute_and_adds_its_figures(tmp_path: Path) -> None:
    module, args, path = _exported(tmp_path, _conv())
    first, second = Recording(), Recording()
    report = check_model(module, args, ["content"], path, 1e-4, (first, second))
    macs = 16 * 16 * (4 * 3 * 9 + 3 * 4)  # both convolutions, one output pixel at a time
    assert first.calls == second.calls == [(path, pytest.approx(macs / 1e9))]
    assert report["recorded_gmac"] == pytest.approx(macs / 1e9)


def test_a_target_that_refuses_the_graph_fails_the_check(tmp_path: Path) -> None:
    module, args, path = _exported(tmp_path, _conv())
    with pytest.raises(ExportError, match=r"net\.onnx: refused by the test device"):
        check_model(module, args, ["content"], path, 1e-4, (Recording(), Refusing()))


def test_myriad_x_projects_a_graph_it_runs_and_refuses_instance_norm(tmp_path: Path) -> None:
    module, args, path = _exported(tmp_path, _conv())
    report = check_model(module, args, ["content"], path, 1e-4, (MYRIAD_X,))
    assert report["opcheck"]["ok"] and report["oak1_projection"]["fps"] > 1000  # a tiny net: thousands of FPS
    torch.manual_seed(0)
    norm = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.InstanceNorm2d(3, affine=True))
    module, args, path = _exported(tmp_path, norm)
    with pytest.raises(ExportError, match=r"net\.onnx: not Myriad X compatible:\n.*InstanceNormalization"):
        check_model(module, args, ["content"], path, 1e-4, (MYRIAD_X,))
