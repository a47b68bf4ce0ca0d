"""How many CPUs this process may use: what a pool of workers should be sized by (torch-free, so the
data stages and their forked workers do not import it)."""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _cgroup_paths(proc_cgroup: Path) -> dict[str, str]:
    """Controller -> cgroup path of this process ('' for the unified v2 hierarchy)."""
    out: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in proc_cgroup.read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for name in controllers.split(",") if controllers else [""]:
                out[name] = path
    return out


def _quota_v2(root: Path, path: str) -> float | None:
    """The tightest cpu.max ("<quota> <period>" or "max <period>") from the process's cgroup up to the root."""
    best = None
    folder = root / path.lstrip("/")
    for d in [folder, *folder.parents]:
        with contextlib.suppress(OSError, ValueError):
            quota, period = (d / "cpu.max").read_text().split()
            if quota != "max":
                best = min(best or math.inf, int(quota) / int(period))
        if d == root:
            break
    return best


def _quota_v1(root: Path, path: str) -> float | None:
    for folder in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        d = root / folder / path.lstrip("/")
        with contextlib.suppress(OSError, ValueError):
            quota = int((d / "cpu.cfs_quota_us").read_text())
            period = int((d / "cpu.cfs_period_us").read_text())
            return quota / period if quota > 0 else None
    return None


def cgroup_cpu_quota(root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")) -> float | None:
    """CPUs' worth of time this process's cgroup may use (docker --cpus, Kubernetes limits, systemd
    CPUQuota), cgroup v2 or v1; None when unlimited or unknown."""
    paths = _cgroup_paths(proc_cgroup)
    if "" in paths:
        quota = _quota_v2(root, paths[""])
        if quota is not None:
            return quota
    return _quota_v1(root, paths["cpu"]) if "cpu" in paths else None


def granted_cpus(root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")) -> int:
    """CPUs this process may actually use: its affinity mask (taskset, SLURM's cpuset) capped by its
    cgroup CPU quota, where os.cpu_count() counts every core of the machine."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = cgroup_cpu_quota(root, proc_cgroup)
    return max(1, min(cpus, math.ceil(quota))) if quota is not None else cpus
