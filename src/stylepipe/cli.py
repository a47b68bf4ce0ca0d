"""`stylepipe <stage>`: one subcommand per pipeline stage (the names dvc.yaml and the Snakefile use),
plus `stylize`, `demo --live/--host`, `profile`, `checksum`, `checkpoints` and `dvc-commit`. The stages,
and the function each runs, come from stylepipe.stagetable. Every stage reads params.yaml from the working
directory (the repo root).
The project's own errors (`StylepipeError`) and a full or read-only disk are printed as one clear message;
any other exception is a bug and keeps its traceback. SIGTERM (kill, SLURM) unwinds like Ctrl-C: temporary
files are removed, MLflow runs end as KILLED, torchrun's processes are stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TextIO, get_args

from stylepipe.core import paths
from stylepipe.core.config import Common, CompileMode, Device, Params, load_params
from stylepipe.core.errors import InputError, MissingInputError, StylepipeError
from stylepipe.stagetable import STAGES, Stage, stage_named

STOP_GRACE_S = 30  # what torchrun gets to stop its workers (and they to clean up) before SIGKILL


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that it unwinds like Ctrl-C (every `except KeyboardInterrupt`
    and `finally` runs)."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(signal.Signals(signum).name)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into `Terminated` for the block (the default action would end the process at once,
    leaving temporary files, RUNNING MLflow runs and torchrun's workers behind). Only the main thread
    can take signals: elsewhere (main() called from a thread) the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def own_warnings_as_lines(command: str) -> Iterator[None]:
    """Print stylepipe's own warnings as one line naming the command, without the source line Python adds;
    other packages' warnings print as usual."""
    default = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: TextIO | None = None, line: str | None = None) -> None:
        if category.__module__.startswith("stylepipe."):
            print(f"stylepipe {command}: warning: {message}", file=file or sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = default


def _stop_group(proc: subprocess.Popen, grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM the process group `proc` leads (torchrun and its workers), SIGKILL what is left after `grace_s`."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def run_process_group(cmd: list[str]) -> int:
    """Run `cmd` in a process group of its own and return its exit code; when this process is interrupted
    (Ctrl-C, SIGTERM) the whole group is stopped before the interrupt goes on."""
    proc = subprocess.Popen(cmd, start_new_session=True)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        _stop_group(proc)
        raise


def _under_torchrun(params, args, stage: str) -> bool:
    """With common.nproc_per_node > 1, run the stage as that many torchrun processes (DDP) instead."""
    from stylepipe.train.distributed import env_from_torchrun, torchrun_argv

    nproc = params.common.nproc_per_node
    if nproc == 1 or env_from_torchrun().enabled:
        return False
    code = run_process_group(torchrun_argv(nproc, ["--params", str(args.params), stage]))
    if code:
        raise StylepipeError(f"{stage} under torchrun ({nproc} processes) failed with exit code {code} "
                             "(the processes' own errors are printed above)")
    return True


def _run_stage(stage: Stage, params: Params, args: argparse.Namespace) -> Any:
    """Call the stage's function from the table: with the style of a per-style stage, under torchrun for a
    distributed one when common.nproc_per_node asks for it. It ends with one summary line (stylepipe.stagelog);
    the full record is the JSON file the stage wrote."""
    if stage.distributed and _under_torchrun(params, args, stage.name):
        return None
    started = time.monotonic()
    run = stage.load()
    record = run(params, args.style) if stage.per_style else run(params)
    if record is not None:  # None: a torchrun process other than rank 0, which writes nothing
        from stylepipe.stagelog import summary_line

        print(summary_line(stage.name, record, time.monotonic() - started, args.style if stage.per_style else None))
    return None


def _demo(params: Params, args: argparse.Namespace) -> Any:
    """`demo --live` runs on an OAK-1 and `demo --host SOURCE` stylises a video or webcam on this host;
    plain `demo` is the pipeline stage."""
    from stylepipe.demo.ui import DisplayError

    try:
        return _demo_run(params, args)
    except DisplayError as err:
        raise DisplayError(f"{err} (--record out.mp4)") from None


def _demo_run(params: Params, args: argparse.Namespace) -> Any:
    size = (params.export.width, params.export.height)
    if args.live:
        from stylepipe.demo.oak import HostOnlyWarning, run_live

        host_only = [f"demo.{name}" for name in ("feature_blend", "decoded_blend") if getattr(params.demo, name)]
        if host_only:
            verb = "steady" if len(host_only) > 1 else "steadies"
            warnings.warn(f"{' and '.join(host_only)} {verb} the host demo only: the OAK-1's blob is one graph from "
                          "the camera frame to the finished image (demo.flow_blend still applies, on the host)",
                          HostOnlyWarning, stacklevel=1)
        stats_blob = paths.BLOB_DIR / "adain_stats.blob"  # styles switch on the device when it is there
        blob = stats_blob if stats_blob.is_file() else paths.BLOB
        return run_live(blob if blob.is_file() else None, size, bank_path=paths.STYLE_BANK,
                        with_style_input=blob == stats_blob, record=args.record, flow_blend=params.demo.flow_blend)
    if args.host is not None:
        from stylepipe.demo.host import run_host, runner_from_params

        return run_host(args.host, runner_from_params(params), args.record, size,
                        fps=params.demo.fps, show=args.record is None)
    return _run_stage(stage_named("demo"), params, args)


def _add_demo_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--live", action="store_true", help="run on a connected OAK-1")
    group.add_argument("--host", metavar="SOURCE", help="webcam index or video file, stylised on this host")
    parser.add_argument("--record", type=Path, help="also record the side-by-side view to this .mp4")


def _profile(params_path: Path, args) -> Any:
    """Apply profiles/<name>.yaml; `pretrained --encoder/--decoder FILE_OR_URL` also checks and pins the files."""
    if args.encoder is None and args.decoder is None:
        from stylepipe.core.profiles import apply_profile

        return apply_profile(args.name, params_path)
    if args.name != "pretrained":
        raise InputError(f"--encoder, --decoder: the published model's files, for the pretrained profile only "
                         f"(not {args.name!r})")
    from stylepipe.adain.pretrained import pin_published

    return pin_published(args.encoder, args.decoder, params_path)


def _checkpoints(args) -> Any:
    """List the training checkpoints kept per stage, or prune each stage's folder to the newest --keep."""
    from stylepipe.train.checkpoint import KEEP, ROOT, list_checkpoints, prune_checkpoints

    if args.action == "prune":
        try:
            removed = prune_checkpoints(ROOT, KEEP if args.keep is None else args.keep)
        except InputError as err:
            raise InputError(f"checkpoints prune --keep: {err}") from None
        return {"removed": [str(p) for p in removed]}
    folders = sorted({p.parent for p in ROOT.rglob("*.pt")}) if ROOT.is_dir() else []
    return {str(f): [p.name for p in list_checkpoints(f)] for f in folders}


def _dvc_commit(args) -> Any:
    """Record in dvc.lock and the DVC cache the outputs of stages another runner built (Snakemake locally or
    on SLURM, an sbatch torchrun), so `dvc status` is clean, `dvc push` uploads them and `dvc repro` re-runs
    nothing. Names are DVC's: `train_adain`, `train_johnson@Cubism`. Nothing is recorded unless every
    named stage has all its outputs."""
    if not Path(".dvc").is_dir():
        raise MissingInputError(f"{Path.cwd()}: no DVC repository (.dvc): run `stylepipe dvc-commit` at the repo root")
    names = {stage.name for stage in STAGES}
    for target in args.stages:
        name, _, style = target.partition("@")
        if name not in names:
            raise InputError(f"dvc-commit {target}: not a stage (expected one of {', '.join(sorted(names))})")
        stage = stage_named(name)
        if stage.per_style != bool(style):
            expected = f"{name}@<style>" if stage.per_style else name
            raise InputError(f"dvc-commit {target}: expected {expected}")
        absent = [out.format(style=style) for out in stage.outputs if not Path(out.format(style=style)).exists()]
        if absent:
            raise MissingInputError(f"dvc-commit {target}: outputs missing: {', '.join(absent)} (run the stage first)")
    if args.stages:
        proc = subprocess.run([sys.executable, "-m", "dvc", "commit", "--force", "--quiet", *args.stages],
                              capture_output=True, text=True)
        if proc.returncode:
            raise StylepipeError(f"dvc commit {' '.join(args.stages)} failed: {proc.stderr.strip()[-2000:]}")
    return {"committed": list(args.stages)}


def _checksum(args) -> None:
    """Print FILE's digest and the params.yaml entry that pins it (e.g. WikiArt, which has no published one)."""
    from stylepipe.core.io import file_digest

    if not args.file.is_file():
        raise MissingInputError(f"{args.file}: no such file")
    digest = file_digest(args.file, args.algorithm)
    print(f"{digest}  {args.file}")
    if args.algorithm == "sha256" and args.file.suffix in (".pth", ".t7"):
        from stylepipe.nn.published import detect_format

        print("# params.yaml / profiles/pretrained.yaml: weights.vgg19_normalised (encoder) or adain.init "
              f"(decoder):\n  file: {args.file}\n  sha256: {digest}\n  format: {detect_format(args.file)}")
        return
    print(f"# params.yaml, download.remote.files:\n- name: {args.file.name}\n  urls: [<url>]\n"
          f"  {args.algorithm}: {digest}")


STYLIZE_FLAGS = {"alpha": "--alpha", "weights": "--weights", "mask": "--mask", "preserve_color": "--preserve-color",
                 "palette": "--palette", "detail": "--detail", "tile": "--tile", "style": "--style",
                 "style_stats": "--style-stats", "style_names": "--style-names", "flow_blend": "--flow-blend",
                 "decoded_blend": "--decoded-blend", "feature_blend": "--feature-blend",
                 "content_stats_momentum": "--content-stats-momentum", "palette_momentum": "--palette-momentum"}


def _flagged(err: StylepipeError, options: tuple[str, ...]) -> StylepipeError:
    """The library's error with the CLI's flags for the options at fault in front: `--alpha: alpha 1.5 ...`."""
    flags = [STYLIZE_FLAGS[name] for name in options if name in STYLIZE_FLAGS]
    return type(err)(f"{', '.join(flags)}: {err}") if flags else err


def _stylize(params, args) -> Any:
    from stylepipe.adain.engine import Finish
    from stylepipe.adain.stylize import StylizeOptions, stylize
    from stylepipe.apply import StylizeError
    from stylepipe.core.tiling import InsufficientMemoryError
    from stylepipe.johnson.model import parse_model_name

    try:
        johnson_style = None if Path(args.model).is_dir() else parse_model_name(args.model)
    except InputError as err:
        raise InputError(f"--model: {err}, or a model folder (no folder {args.model!r} exists)") from None
    if johnson_style is not None:
        return _stylize_johnson(johnson_style, args)
    options = StylizeOptions(
        alpha=args.alpha, weights=args.weights, preserve_color=args.preserve_color, mask=args.mask,
        palette=args.palette, detail=args.detail, tile=None if args.tile == "auto" else int(args.tile),
        compile_mode=args.compile_mode or params.common.compile_mode, flow_blend=args.flow_blend,
        decoded_blend=args.decoded_blend, feature_blend=args.feature_blend,
        content_stats_momentum=args.content_stats_momentum,
        palette_momentum=args.palette_momentum,
    )
    common = params.common if args.device is None else params.common.model_copy(update={"device": args.device})
    if args.model != "adain":
        return _stylize_folder(args, options, common, Path(args.model), "--model")
    if (args.encoder, args.decoder) == (paths.ENCODER, paths.DECODER) and (paths.STYLIZER_DIR / "model.json").is_file():
        from stylepipe.adain.folder import check_made_from

        check_made_from(paths.STYLIZER_DIR, {"encoder.pt": paths.ENCODER, "decoder.pt": paths.DECODER,
                                             "style_bank.pt": paths.STYLE_BANK})
        return _stylize_folder(args, options, common, paths.STYLIZER_DIR, str(paths.STYLIZER_DIR))
    if (args.backend, args.precision) != ("auto", "default"):
        flag = "--backend openvino" if args.backend == "openvino" else f"--backend {args.backend}/--precision"
        raise InputError(f"{flag}: the OpenVINO IR and its precisions live in a model folder, and "
                         f"{paths.STYLIZER_DIR} is missing: the package stage writes it (`dvc repro package`), or "
                         "give --model DIR")
    print(f"stylepipe stylize: {paths.STYLIZER_DIR} not found (the package stage writes it): PyTorch on "
          f"{args.encoder} and {args.decoder}", file=sys.stderr)
    try:
        return stylize(
            args.content, args.output, style=args.style or (), style_stats=args.style_stats,
            style_names=args.style_names, options=options,
            content_size=args.content_size, style_size=args.style_size, save_style_stats=args.save_style_stats,
            encoder=args.encoder, decoder=args.decoder, common=common, progress=not args.no_progress,
            finish=Finish.from_params(params),
        )
    except StylizeError as err:
        raise _flagged(err, err.options) from None
    except InsufficientMemoryError as err:
        raise InsufficientMemoryError(f"{err} (--content-size)") from None


def _stylize_folder(args, options, common, folder: Path, given_by: str) -> Any:
    """A model folder (`--model DIR` from any directory, or the package stage's inside the project) on
    `--backend` in `--precision`; the result names the folder and the engine that ran."""
    from stylepipe.adain.folder import load_model
    from stylepipe.adain.stylize import stylize_with
    from stylepipe.apply import StylizeError

    try:
        engine = load_model(folder, args.backend, args.precision, common.device).engine
    except InputError as err:
        raise type(err)(f"{given_by}: {err}") from None
    try:
        result = stylize_with(engine, args.content, args.output, args.style or (), args.style_stats,
                              args.style_names, options, args.content_size, args.style_size, args.save_style_stats,
                              not args.no_progress)
    except StylizeError as err:
        raise _flagged(err, err.options) from None
    return {**result, "model": str(folder), "engine": engine.describe()}


def _stylize_johnson(style: str, args) -> Any:
    """`--model johnson:<style>`: the per-style network has its style built in."""
    from stylepipe.apply import StylizeError, run_stylizer, video_flow_blend
    from stylepipe.johnson.model import load_johnson_stylizer

    adain_only = {"--style": args.style, "--style-stats": args.style_stats, "--weights": args.weights,
                  "--mask": args.mask, "--preserve-color": args.preserve_color, "--palette": args.palette,
                  "--detail": args.detail, "--alpha": None if args.alpha == 1.0 else args.alpha,
                  "--content-stats-momentum": args.content_stats_momentum or None,
                  "--palette-momentum": args.palette_momentum or None, "--decoded-blend": args.decoded_blend,
                  "--feature-blend": args.feature_blend}
    given = [flag for flag, value in adain_only.items() if value is not None]
    if given:
        raise StylizeError(f"{', '.join(given)}: AdaIN options; johnson:{style} has its style built in")
    try:
        return run_stylizer(args.content, args.output, load_johnson_stylizer(style), content_size=args.content_size,
                            progress=not args.no_progress, flow_blend=video_flow_blend(args.content, args.flow_blend))
    except StylizeError as err:
        raise _flagged(err, err.options) from None


def _tile_arg(value: str) -> str:
    if value != "auto" and not value.isdigit():
        raise argparse.ArgumentTypeError(f"expected auto, 0 or a tile size in px, got {value!r}")
    return value


def _gatys(params, args) -> Any:
    from stylepipe.gatys.files import gatys_files
    from stylepipe.gatys.optimise import GatysOptions

    names = ("iterations", "size", "optimizer", "lr", "init", "content_weight", "style_weight", "tv_weight",
             "content_layer")
    given = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if args.style_layers is not None:
        given["style_layers"] = [s.strip() for s in args.style_layers.split(",") if s.strip()]
    opts = GatysOptions(**given, seed=params.common.seed if args.seed is None else args.seed)
    return gatys_files(args.content, args.style, args.output, opts, params.common, encoder=args.encoder)


# One handler per stage of the table; a stage with options of its own (demo) has its handler and options here.
HANDLERS: dict[str, Callable[[Params, argparse.Namespace], Any]] = {
    **{stage.name: functools.partial(_run_stage, stage) for stage in STAGES}, "demo": _demo,
}
STAGE_OPTIONS: dict[str, Callable[[argparse.ArgumentParser], None]] = {"demo": _add_demo_options}
TOOLS: dict[str, Callable[..., Any]] = {"stylize": _stylize, "gatys": _gatys}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stylepipe", description=__doc__.split("\n")[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="parameters file")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for stage in STAGES:
        name = stage.name
        p = sub.add_parser(name, aliases=[name.replace("_", "-")] if "_" in name else [],
                           help=f"run the `{name}` pipeline stage")
        p.set_defaults(command=name)
        if stage.per_style:
            p.add_argument("style", help="a style listed in params.yaml train_johnson.styles")
        if name in STAGE_OPTIONS:
            STAGE_OPTIONS[name](p)
    st = sub.add_parser("stylize", help="stylise image(s), a folder or a video with the trained AdaIN model")
    st.add_argument("content", type=Path, help="content image, folder of images, or video (.mp4/.mov/.mkv/...)")
    st.add_argument("-o", "--output", type=Path, required=True,
                    help="output file (image or .mp4) or folder (for a folder input)")
    st.add_argument("--style", type=Path, nargs="+", help="style image(s)")
    st.add_argument("--style-stats", type=Path, help="cached style statistics file instead of --style images")
    st.add_argument("--style-names", nargs="+", help="use only these styles of the --style-stats file")
    st.add_argument("--save-style-stats", type=Path, help="write the styles' statistics to this file for reuse")
    st.add_argument("--weights", type=float, nargs="+", help="interpolation weight per style (normalised)")
    st.add_argument("--mask", type=Path, help="greyscale mask: white = first style ... black = last style")
    st.add_argument("--alpha", type=float, default=1.0, help="content/style trade-off in feature space, 0..1")
    st.add_argument("--preserve-color", nargs="?", const="luminance", choices=("luminance", "coral"),
                    help="keep the content's colours (default luminance; coral = recolour the style image)")
    st.add_argument("--palette", choices=("histogram", "none"),
                    help="match the output to the painting's palette (histogram) or not (none); default: the "
                         "model folder's record, or params finish.palette")
    st.add_argument("--flow-blend", type=float, default=None,
                    help="video, 0..<1: the previous output's share in each frame, warped along the optical flow "
                         "(default 0.7, AdaIN and johnson:STYLE; 0 = off; docs/video.md)")
    st.add_argument("--decoded-blend", type=float, default=None,
                    help="video, 0..<1: the previous decoded image's share before the palette and detail "
                         "finishing (AdaIN with one whole-frame style: default 0.8; 0 = off)")
    st.add_argument("--feature-blend", type=float, default=None,
                    help="video, 0..<1: the previous frame's share of the AdaIN features the decoder draws from, "
                         "warped along the optical flow (AdaIN with one whole-frame style: default 0.95; 0 = off)")
    st.add_argument("--content-stats-momentum", type=float, default=0.0,
                    help="video, 0..1: the content statistics smoothed within a shot (AdaIN)")
    st.add_argument("--palette-momentum", type=float, default=0.0,
                    help="video, 0..1: the palette map smoothed within a shot (AdaIN)")
    st.add_argument("--detail", type=float,
                    help="0..1: how much of the content's fine luminance detail is restored on the output; "
                         "default: the model folder's record, or params finish.detail")
    st.add_argument("--content-size", "--size", type=int, default=0,
                    help="shrink the content's shorter side to this (0 = keep the original size)")
    st.add_argument("--style-size", type=int, default=512, help="style images' shorter side (0 = as is)")
    st.add_argument("--tile", type=_tile_arg, default="auto",
                    help="auto (tile only when memory requires), 0 (never) or a tile size in px")
    st.add_argument("--device", choices=get_args(Device), help="default: params common.device")
    st.add_argument("--no-progress", action="store_true", help="no progress bar")
    st.add_argument("--compile-mode", choices=get_args(CompileMode),
                    help="torch.compile mode when compiling (CUDA); reduce-overhead = CUDA graphs, best for "
                         "video at a fixed size (default: params common.compile_mode)")
    st.add_argument("--encoder", type=Path, default=paths.ENCODER)
    st.add_argument("--decoder", type=Path, default=paths.DECODER)
    st.add_argument("--model", default="adain",
                    help="adain (default: the pipeline's model folder models/stylizer, or PyTorch on --encoder and "
                         "--decoder without it), a model folder DIR (any directory, no params.yaml needed) or "
                         "johnson:<style> (a trained per-style network)")
    st.add_argument("--backend", choices=("auto", "torch", "openvino"), default="auto",
                    help="with a model folder: auto = OpenVINO on a CPU (its IR checked against the weights), "
                         "torch on CUDA")
    st.add_argument("--precision", choices=("default", "f32", "bf16", "int8"), default="default",
                    help="with a model folder: default = the backend's own choice; int8 needs the folder's INT8 IR")
    # Options left out (None) take GatysOptions' defaults (stylepipe.gatys.optimise is imported lazily, with torch).
    g = sub.add_parser("gatys", help="Gatys et al. optimisation-based transfer (slow, needs no training)")
    g.add_argument("content", type=Path, help="content image")
    g.add_argument("style", type=Path, help="style image")
    g.add_argument("-o", "--output", type=Path, required=True, help="output image (+ <stem>_history.csv beside it)")
    g.add_argument("--encoder", type=Path, default=paths.ENCODER)
    g.add_argument("--iterations", type=int, help="loss evaluations, i.e. L-BFGS closure calls (default 300)")
    g.add_argument("--size", type=int, help="resize the shorter side (default 0 = keep original)")
    g.add_argument("--optimizer", choices=("lbfgs", "adam"), help="default lbfgs")
    g.add_argument("--lr", type=float, help="learning rate (default 1.0 for lbfgs, 0.02 for adam)")
    g.add_argument("--init", choices=("content", "noise"), help="start image (default content)")
    g.add_argument("--content-weight", type=float, help="default 1")
    g.add_argument("--style-weight", type=float, help="default tuned for vgg16_hed, see stylepipe.gatys.optimise")
    g.add_argument("--tv-weight", type=float, help="default 0")
    g.add_argument("--content-layer", help="default relu4_1")
    g.add_argument("--style-layers", help="comma-separated (default relu1_1,relu2_1,relu3_1,relu4_1)")
    g.add_argument("--seed", type=int, help="noise seed (default: params common.seed)")
    pr = sub.add_parser("profile", help="apply a params overlay (e.g. `full`, or `pretrained --encoder F --decoder F`)"
                        " to params.yaml")
    pr.add_argument("name", help="profile name: a file profiles/<name>.yaml")
    pr.add_argument("--encoder", metavar="FILE_OR_URL",
                    help="pretrained: the published encoder (.pth or .t7), checked and pinned in params.yaml")
    pr.add_argument("--decoder", metavar="FILE_OR_URL",
                    help="pretrained: the published decoder (.pth or .t7), checked and pinned in params.yaml")
    ck = sub.add_parser("checksum", help="print a file's sha256 (or md5) and its params.yaml entry")
    ck.add_argument("file", type=Path, help="e.g. a hand-downloaded wikiart.zip or a published model file")
    ck.add_argument("--algorithm", choices=("sha256", "md5"), default="sha256")
    dc = sub.add_parser("dvc-commit", help="record stages' outputs built outside `dvc repro` (Snakemake, sbatch) "
                        "in dvc.lock and the DVC cache")
    dc.add_argument("stages", nargs="*", help="DVC stage names, e.g. train_adain or train_johnson@Cubism")
    cp = sub.add_parser("checkpoints", help="list or prune the training checkpoints in .cache/checkpoints")
    cp.add_argument("action", choices=("list", "prune"))
    cp.add_argument("--keep", type=int, help="prune: checkpoints kept per stage, newest first (default 3)")
    return parser


# the machine's state, not a bug: the message (errno text and file name) says what to free or fix
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES})


def is_user_error(err: BaseException) -> bool:
    """The project's own errors carry a message meant for the user, and so does a full, read-only or
    forbidden disk; anything else (a ValueError deep in torch included) is a bug to show in full."""
    return isinstance(err, StylepipeError) or (isinstance(err, OSError) and err.errno in ENVIRONMENT_ERRNOS)


def _dispatch(args: argparse.Namespace) -> Any:
    if args.command == "profile":
        return _profile(args.params, args)
    if args.command == "checksum":
        return _checksum(args)
    if args.command == "checkpoints":
        return _checkpoints(args)
    if args.command == "dvc-commit":
        return _dvc_commit(args)
    if args.command == "stylize" and Path(args.model).is_dir() and not args.params.is_file():
        params = SimpleNamespace(common=Common())  # a model folder used outside a project: default settings
    else:
        params = load_params(args.params)
    handler = TOOLS.get(args.command) or HANDLERS[args.command]
    return handler(params, args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with sigterm_as_interrupt(), own_warnings_as_lines(args.command):
            result = _dispatch(args)
    except Terminated:
        print(f"stylepipe {args.command}: terminated (SIGTERM)", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print(f"stylepipe {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if not is_user_error(err):
            raise
        print(f"stylepipe {args.command}: error: {err}", file=sys.stderr)
        return 1
    if result is not None:
        print(json.dumps(result, indent=2, sort_keys=True, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
