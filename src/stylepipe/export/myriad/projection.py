"""Projected OAK-1 (Myriad X, Luxonis RVC2) frame rate of a network from its multiply-accumulates per frame.

The Myriad X's usable convolution throughput is not published as a GMAC/s figure (its "4 TOPS", "1.4 TOPS
for AI" are peaks), so it is derived from Luxonis' own measurements of dense CNNs on RVC2, the "RVC2 NN
Performance" table (SOURCE; blobs compiled for 8 shaves, 2 inference threads, FPS averaged over 5 runs,
latency including the USB3 transfer):

    ResNet-50 at 224x224: 26.5 FPS x 4.087 GMAC = 108.3 GMAC/s effective  -> the projection
    ResNet-18 at 224x224: 94.8 FPS x 1.814 GMAC = 172.0 GMAC/s effective  -> the optimistic bound

The GMAC are torchvision's ResNets' convolution multiply-accumulates as `stylepipe.export.onnx.count_macs` counts
them (the tests recount them). projected FPS = effective GMAC/s / the model's GMAC per frame. ResNet-50 is
the closer kin (dense 3x3/1x1 convolutions, more work per frame), so its rate is the projection. Style
networks also keep large full-resolution activations and run reflect Pad (on the SHAVEs), MVN and nearest
upsampling, which cost time MACs do not count: the real rate may be lower still; measure it with
`stylepipe demo --live`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SOURCE = (
    "Luxonis, Robotics Vision Core 2 (RVC2), 'RVC2 NN Performance' table: "
    "https://docs.luxonis.com/hardware/platform/rvc/rvc2 (8 shaves, 2 NN inference threads)"
)
TARGET_FPS = 10.0  # the demo's real-time bar at 256x256: a projection below it is flagged


@dataclass(frozen=True)
class Reference:
    """One measured network on the OAK (RVC2): its FPS and its convolution GMAC per frame."""

    name: str
    size: int
    fps: float
    gmac: float

    @property
    def gmac_per_s(self) -> float:
        return self.fps * self.gmac


RESNET50 = Reference("ResNet-50", 224, 26.5, 4.087)
RESNET18 = Reference("ResNet-18", 224, 94.8, 1.814)


def projected_oak_fps(gmac: float, reference: Reference = RESNET50) -> float:
    """Frames per second on an OAK-1 for a network of `gmac` GMAC per frame, at reference's throughput."""
    if not gmac > 0:
        raise ValueError(f"GMAC per frame must be positive, got {gmac!r}")
    return reference.gmac_per_s / gmac


def oak_projection(gmac: float) -> dict[str, Any]:
    """The projection with its reasoning, for a report: FPS, optimistic bound, constants and source."""
    fps = projected_oak_fps(gmac)
    return {
        "fps": round(fps, 2),
        "fps_optimistic": round(projected_oak_fps(gmac, RESNET18), 2),
        "meets_target": fps >= TARGET_FPS,
        "target_fps": TARGET_FPS,
        "effective_gmac_per_s": round(RESNET50.gmac_per_s, 1),
        "basis": f"{RESNET50.name} {RESNET50.size}x{RESNET50.size}: {RESNET50.fps} FPS x {RESNET50.gmac} GMAC"
        f" (optimistic: {RESNET18.name} {RESNET18.fps} FPS x {RESNET18.gmac} GMAC)",
        "source": SOURCE,
    }
