"""`stylepipe gatys`: read a content and a style image, optimise (`gatys.optimise.run_gatys`), and write
the image and its loss history atomically."""

from __future__ import annotations

from pathlib import Path

from stylepipe.core import paths
from stylepipe.gatys.optimise import GatysError, GatysOptions, check_layers, check_options, run_gatys


def history_path(output: Path) -> Path:
    return output.with_name(f"{output.stem}_history.csv")


def gatys_files(
    content: Path, style: Path, output: Path, opts: GatysOptions, common,
    encoder: Path = paths.ENCODER, progress: bool = True,
) -> dict:
    """The `stylepipe gatys` command: read, optimise, save image + loss history atomically."""
    from PIL import Image

    from stylepipe.apply import read_image
    from stylepipe.core.io import atomic_path, write_csv
    from stylepipe.core.runtime import resolve_runtime
    from stylepipe.core.viz import to_pil
    from stylepipe.nn.encoders import load_encoder

    fmt = Image.registered_extensions().get(output.suffix.lower())
    if fmt is None:
        raise GatysError(f"{output}: unknown image extension {output.suffix!r} (use e.g. .png)")
    check_options(opts)
    runtime = resolve_runtime(common)
    enc = load_encoder(encoder, map_location=runtime.device).to(runtime.device)
    check_layers(enc, [opts.content_layer, *opts.style_layers])
    content_img = read_image(content, opts.size)
    style_img = read_image(style, opts.size)
    result = run_gatys(enc, content_img, style_img, opts, progress=progress)
    with atomic_path(output) as tmp:
        to_pil(result.image).save(tmp, format=fmt)
    hist = history_path(output)
    write_csv(hist, result.history, ["step", "loss", "content", "style", "tv"])
    first, last = result.history[0], result.history[-1]
    return {
        "output": str(output),
        "history": str(hist),
        "encoder": enc.spec.name,
        "device": str(runtime.device),
        "size": list(result.image.shape[1:]),
        "optimizer": opts.optimizer,
        "init": opts.init,
        "iterations": result.iterations,
        "seconds": round(result.seconds, 3),
        "iterations_per_s": round(result.iterations / result.seconds, 3) if result.seconds else None,
        "weights": {"content": opts.content_weight, "style": opts.style_weight, "tv": opts.tv_weight},
        "initial_loss": first["loss"],
        "final": {k: last[k] for k in ("loss", "content", "style", "tv")},
    }
