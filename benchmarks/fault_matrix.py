"""Fault-injection matrix: the faults a user meets, what the real tools answer, what the user does next and
what was lost. Runs on tiny copies of the project under a temporary folder (the embedded sample, and a
local HTTP server for the remote download), and prints a Markdown table for the README.

    python benchmarks/fault_matrix.py [--skip-kills] [--skip-disk]

Faults: SIGKILL inside every stage just before its first (and second) atomic write would land (a real kill:
no Python cleanup), then `dvc repro`; a dropped connection, a full disk (a 1 MiB tmpfs mounted on the staging folder;
needs root) and a corrupted verified file during the remote download; a damaged training checkpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from stylepipe import stagetable
from tests.conftest import make_project_copy, run, tool_env
from tests.data_fixtures import ServerState, http_server

# `stylepipe ARGS` in a process that SIGKILLs itself at its N-th flush of a temporary file or folder (N =
# argv[1]): every atomic write flushes the new file (or directory tree) with io.fsync_path just before
# renaming it into place.
KILL_AT_NTH_OUTPUT = """
import os, signal, sys
from pathlib import Path
import stylepipe.core.io as io
from stylepipe.cli import main

flush, left = io.fsync_path, [int(sys.argv[1])]

def flush_or_die(path):
    if Path(path).name.endswith(".tmp"):  # a new file or tree about to be renamed into place
        left[0] -= 1
        if left[0] == 0:
            os.kill(os.getpid(), signal.SIGKILL)
    flush(path)

io.fsync_path = flush_or_die
sys.exit(main(sys.argv[2:]))
"""
STAGES = tuple(f"{stage.name} Cubism" if stage.per_style else stage.name for stage in stagetable.STAGES)
Row = tuple[str, str, str, str]
ORDINAL = {1: "first", 2: "second", 3: "third"}


def ran_stages(output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", output)


def kill_inside(repo: Path, nth: int, args: list[str]) -> tuple[int, int]:
    """Run the stage under KILL_AT_NTH_OUTPUT in a session of its own; (exit code, processes of that session
    still alive a second after it died, which are then killed too)."""
    proc = subprocess.Popen([sys.executable, "-c", KILL_AT_NTH_OUTPUT, str(nth), *args], cwd=repo, env=tool_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    code = proc.wait(timeout=900)
    time.sleep(1)
    alive = [pid for pid in map(int, filter(str.isdigit, os.listdir("/proc"))) if _session(pid) == proc.pid]
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    return code, len(alive)


def _session(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3])  # session id
    except (OSError, ValueError, IndexError):
        return None


def reran(output: str) -> str:
    """Which stages `dvc repro` ran, or restored from its run cache."""
    ran = ran_stages(output)
    cached = re.findall(r"Stage '([^']+)' is cached", output)
    parts = [f"re-ran {', '.join(ran)}"] if ran else []
    parts += [f"restored {', '.join(cached)} from DVC's run cache"] if cached else []
    return "; ".join(parts) or "nothing to re-run (old outputs intact)"


def leftovers(repo: Path) -> list[str]:
    """Temporary files or folders of atomic writes anywhere in the project (DVC/git internals aside)."""
    return [str(p.relative_to(repo)) for p in repo.rglob(".*.tmp") if ".dvc" not in p.parts and ".git" not in p.parts]


def first_error_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if "error" in line.lower()]
    return (lines[0] if lines else output.strip().splitlines()[-1])[:160]


def kill_rows(root: Path, nth: int) -> list[Row]:
    repo = make_project_copy(root / f"kills{nth}")
    t0 = time.perf_counter()
    run(["dvc", "repro"], repo)
    print(f"tiny DAG reproduced in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "reproduced"], repo)
    rows = []
    for stage in STAGES:
        code, orphans = kill_inside(repo, nth, stage.split())
        answer = "killed (SIGKILL)" if code == -9 else f"finished first (exit {code})"
        answer += f", {orphans} forked helper process(es) left running" if orphans else ""
        left = leftovers(repo)
        for p in left:  # what the kill left beside the outputs, so each row counts its own
            path = repo / p
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            elif path.exists():
                path.unlink()
        t0 = time.perf_counter()
        repro = run(["dvc", "repro"], repo)
        status = run(["dvc", "status"], repo).stdout
        clean = "up to date" in status
        rows.append((
            f"SIGKILL in `{stage}` at its {ORDINAL[nth]} flush of a new file or folder (just before a rename)",
            f"{answer}; {len([p for p in left if '.tmp/' not in p])} temporary file(s)/folder(s) left beside "
            "the outputs (ignored by DVC and git)",
            f"`dvc repro`: {reran(repro.stdout)} in {time.perf_counter() - t0:.0f} s",
            "nothing" if clean else f"NOT CLEAN: {status.strip()[:120]}",
        ))
        print(rows[-1], file=sys.stderr)
    if nth != 1:
        return rows
    ckpt = max((repo / ".cache/checkpoints/train_recon").glob("*.pt"), key=lambda p: p.stat().st_mtime)
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    damaged = run(["dvc", "repro", "-f", "-s", "train_recon"], repo, check=False)
    rows.append((
        "a training checkpoint cut in half",
        f"`{first_error_line(damaged.stdout + damaged.stderr)}`",
        "delete the named file, `dvc repro` (trains from step 0)",
        "the damaged checkpoint's steps (the file itself was damaged); every output intact",
    ))
    return rows


def remote_project(root: Path, url: str, payloads: dict[str, bytes]) -> Path:
    repo = make_project_copy(root)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["download"]["source"] = "remote"
    params["download"]["remote"].update(split=1, max_tries=1, timeout_s=5, files=[
        {"name": n, "urls": [f"{url}/{n}"], "sha256": hashlib.sha256(d).hexdigest()} for n, d in payloads.items()
    ])
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return repo


def download_rows(root: Path, disk: bool) -> list[Row]:
    big, small = os.urandom(1_500_000), os.urandom(400_000)
    rows = []
    state = ServerState(files={"/a.bin": big, "/b.bin": small}, drop_after=600_000)
    with http_server(state) as url:
        repo = remote_project(root / "dropped", url, {"a.bin": big, "b.bin": small})
        failed = run(["dvc", "repro", "download"], repo, check=False)
        first_requests = len(state.starts)
        state.drop_after = None
        run(["dvc", "repro", "download"], repo)
        resumed_at = max(state.starts[first_requests:], default=0)
        rows.append((
            "connection dropped after 600 kB of a 1.5 MB file (b.bin, 400 kB, complete)",
            f"`{first_error_line(failed.stdout + failed.stderr)}`",
            f"`dvc repro` when the server is back: a.bin resumed at byte {resumed_at:,}, b.bin not requested "
            f"again ({'yes' if '/b.bin' not in state.requests[first_requests:] else 'NO'})",
            "nothing",
        ))
        output = repo / "data/raw/a.bin"
        data = bytearray(output.read_bytes())
        data[1000] ^= 0xFF
        output.write_bytes(bytes(data))
        status = run(["dvc", "status"], repo).stdout
        requests = len(state.requests)
        again = run(["dvc", "repro", "download"], repo)
        rows.append((
            "a downloaded file in data/raw corrupted (one byte flipped)",
            "`dvc status`: " + ("data/raw modified" if "modified" in status else status.strip()[:80]),
            f"`dvc repro`: {reran(again.stdout)}, {len(state.requests) - requests} requests",
            "nothing" if output.read_bytes() == big else "NOT RESTORED",
        ))
    if disk:
        rows.append(full_disk_row(root))
    return rows


def full_disk_row(root: Path) -> Row:
    big = os.urandom(1_500_000)
    state = ServerState(files={"/a.bin": big})
    with http_server(state) as url:
        repo = remote_project(root / "disk", url, {"a.bin": big})
        staging = repo / ".cache/downloads"
        staging.mkdir(parents=True)
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(staging)],
                                 capture_output=True, text=True)
        if mounted.returncode != 0:
            return ("full disk (1 MiB tmpfs)", f"not run: mount failed ({mounted.stderr.strip()})", "", "")
        try:
            failed = run(["dvc", "repro", "download"], repo, check=False)
        finally:
            subprocess.run(["umount", str(staging)], check=True)
        run(["dvc", "repro", "download"], repo)
        ok = (repo / "data/raw/a.bin").read_bytes() == big
    return (
        "disk full while downloading (1 MiB tmpfs on .cache/downloads, 1.5 MB file)",
        f"`{first_error_line(failed.stdout + failed.stderr)}`",
        "free space, `dvc repro`" + (": file verified" if ok else ": FAILED"),
        "nothing but the partial file on the full disk",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-kills", action="store_true", help="only the download and disk faults")
    parser.add_argument("--skip-disk", action="store_true", help="no tmpfs mount (needs root)")
    parser.add_argument("--kill-at", type=int, nargs="+", default=[1, 2], choices=sorted(ORDINAL),
                        help="kill each stage at its N-th flush of a temporary file or folder")
    parser.add_argument("--skip-downloads", action="store_true", help="only the kills")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stylepipe-faults-") as tmp:
        rows = [] if args.skip_downloads else download_rows(Path(tmp), disk=not args.skip_disk)
        if not args.skip_kills:
            rows += [row for nth in args.kill_at for row in kill_rows(Path(tmp), nth)]
    print("| fault | what the tools answer | what the user does next | what was lost |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(cell.replace("|", "/") for cell in row) + " |")


if __name__ == "__main__":
    main()
