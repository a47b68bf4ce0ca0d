"""The runtime's speed switches: what `auto` turns on where."""

from __future__ import annotations

from stylepipe.core import runtime
from stylepipe.core.config import Common


def test_auto_leaves_every_speed_switch_off_on_the_cpu():
    rt = runtime.resolve_runtime(Common(device="cpu"))
    assert not rt.bf16 and not rt.channels_last and not rt.compile


def test_an_explicit_bf16_setting_turns_autocast_on_for_the_cpu():
    assert runtime.resolve_runtime(Common(device="cpu", bf16=True)).bf16 is True
    assert runtime.resolve_runtime(Common(device="cpu", bf16=False)).bf16 is False
