"""The runtime's speed switches: what `auto` turns on where."""

from __future__ import annotations

import pytest

from stylepipe.core import runtime
from stylepipe.core.config import Common


@pytest.mark.parametrize("units", [True, False])
def test_auto_bf16_on_the_cpu_follows_its_bf16_units(monkeypatch, units: bool):
    monkeypatch.setattr(runtime, "cpu_has_bf16_units", lambda: units)
    rt = runtime.resolve_runtime(Common(device="cpu"))
    assert rt.bf16 is units
    assert not rt.channels_last and not rt.compile  # the other switches stay off on the CPU


def test_an_explicit_bf16_setting_wins_over_the_cpus_units(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_has_bf16_units", lambda: True)
    assert runtime.resolve_runtime(Common(device="cpu", bf16=False)).bf16 is False
    monkeypatch.setattr(runtime, "cpu_has_bf16_units", lambda: False)
    assert runtime.resolve_runtime(Common(device="cpu", bf16=True)).bf16 is True
