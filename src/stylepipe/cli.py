"""`stylepipe <stage>`: one subcommand per pipeline stage (the names dvc.yaml and the Snakefile use),
plus `stylize`, `demo --live/--host` and `profile`. Every stage reads params.yaml from the working
directory (the repo root). Errors the user can fix are printed as one clear message, not a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stylepipe import paths
from stylepipe.config import load_params

STAGES = (
    "download", "weights", "preprocess", "train_recon", "train_adain", "train_johnson", "evaluate",
    "export_onnx", "export_openvino", "export_johnson", "compile_blob", "demo",
)
PER_STYLE = ("train_johnson", "export_johnson")  # one run per style: `stylepipe <stage> <style>`


def _stage_download(params, args) -> Any:
    from stylepipe.data.download import run_download

    return run_download(params)


def _stage_weights(params, args) -> Any:
    from stylepipe.models.weights import run_weights

    return run_weights(params)


def _stage_preprocess(params, args) -> Any:
    from stylepipe.data.preprocess import run_preprocess

    return run_preprocess(params)


def _stage_train_recon(params, args) -> Any:
    from stylepipe.train.stages import run_train_recon

    return run_train_recon(params)


def _stage_train_adain(params, args) -> Any:
    from stylepipe.train.stages import run_train_adain

    return run_train_adain(params)


def _stage_train_johnson(params, args) -> Any:
    from stylepipe.train.johnson import run_train_johnson

    return run_train_johnson(params, args.style)


def _stage_export_johnson(params, args) -> Any:
    from stylepipe.export.johnson import run_export_johnson

    return run_export_johnson(params, args.style)


def _stage_evaluate(params, args) -> Any:
    from stylepipe.evaluate import run_evaluate

    return run_evaluate(params)


def _stage_export_onnx(params, args) -> Any:
    from stylepipe.export.onnx import run_export_onnx

    return run_export_onnx(params)


def _stage_export_openvino(params, args) -> Any:
    from stylepipe.export.openvino import run_export_openvino

    return run_export_openvino(params)


def _stage_compile_blob(params, args) -> Any:
    from stylepipe.export.blob import run_compile_blob

    return run_compile_blob(params)


def _stage_demo(params, args) -> Any:
    size = (params.export.width, params.export.height)
    if args.live:
        from stylepipe.demo.oak import run_live

        blob = paths.BLOB
        return run_live(blob if blob.is_file() else None, size, bank_path=paths.STYLE_BANK,
                        record=args.record)
    if args.host is not None:
        from stylepipe.demo.host import make_runner, run_host

        runner = make_runner(params.demo.backend, paths.OPENVINO_DIR, paths.ONNX_DIR)
        return run_host(args.host, runner, args.record, size, fps=params.demo.fps, show=args.record is None)
    from stylepipe.demo.host import run_demo

    return run_demo(params)


def _profile(params_path: Path, args) -> Any:
    from stylepipe.profiles import apply_profile

    return apply_profile(args.name, params_path)


def _stylize(params, args) -> Any:
    from stylepipe.stylize import stylize_files

    return stylize_files(
        args.content, args.style, args.output, alpha=args.alpha, size=args.size,
        encoder=args.encoder, decoder=args.decoder, model=args.model,
    )


def _gatys(params, args) -> Any:
    from stylepipe.gatys import GatysOptions, gatys_files

    names = ("iterations", "size", "optimizer", "lr", "init", "content_weight", "style_weight", "tv_weight",
             "content_layer")
    given = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if args.style_layers is not None:
        given["style_layers"] = [s.strip() for s in args.style_layers.split(",") if s.strip()]
    opts = GatysOptions(**given, seed=params.common.seed if args.seed is None else args.seed)
    return gatys_files(args.content, args.style, args.output, opts, params.common, encoder=args.encoder)


HANDLERS: dict[str, Callable[..., Any]] = {name: globals()[f"_stage_{name}"] for name in STAGES}
TOOLS: dict[str, Callable[..., Any]] = {"stylize": _stylize, "gatys": _gatys}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stylepipe", description=__doc__.split("\n")[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="parameters file")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in STAGES:
        p = sub.add_parser(name, aliases=[name.replace("_", "-")] if "_" in name else [],
                           help=f"run the `{name}` pipeline stage")
        p.set_defaults(command=name)
        if name in PER_STYLE:
            p.add_argument("style", help="a style listed in params.yaml train_johnson.styles")
        if name == "demo":
            group = p.add_mutually_exclusive_group()
            group.add_argument("--live", action="store_true", help="run on a connected OAK-1")
            group.add_argument("--host", metavar="SOURCE", help="webcam index or video file, stylised on this host")
            p.add_argument("--record", type=Path, help="also record the side-by-side view to this .mp4")
    st = sub.add_parser("stylize", help="stylise image(s) with the trained AdaIN model")
    st.add_argument("content", type=Path, help="content image or folder")
    st.add_argument("style", type=Path, nargs="?", help="style image (AdaIN only)")
    st.add_argument("-o", "--output", type=Path, required=True, help="output file or folder")
    st.add_argument("--alpha", type=float, default=1.0, help="content/style trade-off in feature space, 0..1")
    st.add_argument("--size", type=int, default=0, help="resize the shorter side (0 = keep original)")
    st.add_argument("--encoder", type=Path, default=paths.ENCODER)
    st.add_argument("--decoder", type=Path, default=paths.DECODER)
    st.add_argument("--model", default="adain",
                    help="adain (default: any style image) or johnson:<style> (a trained per-style network)")
    # Options left out (None) take GatysOptions' defaults (stylepipe.gatys is imported lazily, with torch).
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
    g.add_argument("--style-weight", type=float, help="default tuned for vgg16_hed, see stylepipe.gatys")
    g.add_argument("--tv-weight", type=float, help="default 0")
    g.add_argument("--content-layer", help="default relu4_1")
    g.add_argument("--style-layers", help="comma-separated (default relu1_1,relu2_1,relu3_1,relu4_1)")
    g.add_argument("--seed", type=int, help="noise seed (default: params common.seed)")
    pr = sub.add_parser("profile", help="apply a params overlay (e.g. `full`) to params.yaml")
    pr.add_argument("name", help="profile name: a file profiles/<name>.yaml")
    return parser


def _is_user_error(err: BaseException) -> bool:
    """Errors raised by our own code carry a message meant for the user."""
    return type(err).__module__.startswith("stylepipe") or isinstance(err, FileNotFoundError | ValueError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "profile":
            result = _profile(args.params, args)
        else:
            params = load_params(args.params)
            handler = TOOLS.get(args.command) or HANDLERS[args.command]
            result = handler(params, args)
    except KeyboardInterrupt:
        print(f"stylepipe {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if not _is_user_error(err):
            raise
        print(f"stylepipe {args.command}: error: {err}", file=sys.stderr)
        return 1
    if result is not None:
        print(json.dumps(result, indent=2, sort_keys=True, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
