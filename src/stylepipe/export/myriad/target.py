"""The Myriad X (OAK-1) as a target of the exported ONNX graphs: its operator check and projected speed.

A method's export passes `MYRIAD_X` to `stylepipe.export.onnx.check_model`, which stays free of any
device; another device plugs in the same way, as an object with this `check` method.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stylepipe.export.myriad.opcheck import check_graph
from stylepipe.export.myriad.projection import oak_projection
from stylepipe.export.onnx import ExportError


class MyriadX:
    """Refuses a graph the Myriad X cannot run and projects the OAK-1 frame rate of one it can."""

    name = "myriad_x"

    def check(self, path: Path, gmac: float) -> dict[str, Any]:
        """The report's `oak1_projection` and `opcheck` for one graph; ExportError naming every violation."""
        ops = check_graph(path)
        if not ops.ok:
            raise ExportError(f"{path.name}: not Myriad X compatible:\n  " + "\n  ".join(ops.violations))
        return {"oak1_projection": oak_projection(gmac), "opcheck": ops.to_dict()}


MYRIAD_X = MyriadX()
