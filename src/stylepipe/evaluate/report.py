"""The evaluation report: one self-contained HTML file (images embedded as base64 PNG, no external assets)."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from stylepipe.core.io import atomic_path
from stylepipe.core.tracking import flatten

SWEEP_PLOTS = (("content_loss", "content loss (relu4_1)"), ("style_loss", "style loss (mean/std)"),
               ("gram_loss", "Gram style loss"), ("ssim_content", "SSIM of luminance vs content"),
               ("hist_distance_style", "colour-histogram distance vs style"))
CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%;border:1px solid #ddd}
.note{background:#fff8e0;padding:.5em 1em;border-left:4px solid #e0b000}"""


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def sweep_figure(sweep: Sequence[Mapping[str, float]]) -> bytes:
    """One small panel per metric against alpha, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [(k, label) for k, label in SWEEP_PLOTS if k in sweep[0]]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.8), squeeze=False)
    alphas = [row["alpha"] for row in sweep]
    for ax, (key, label) in zip(axes[0], keys, strict=True):
        ax.plot(alphas, [row[key] for row in sweep], marker="o")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("alpha")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def _table(rows: Sequence[Mapping[str, Any]]) -> str:
    cols = list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c, ''))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _image(caption: str, image: Path) -> str:
    return (f"<h2>{html.escape(caption)}</h2><img alt='{html.escape(caption)}' "
            f"src='{png_data_uri(Path(image).read_bytes())}'>")


def write_report(path: Path, metrics: Mapping[str, Any], sweep: Sequence[Mapping[str, float]],
                 images: Mapping[str, Path], notes: Mapping[str, str], title: str = "stylepipe evaluation",
                 verdict_rows: Sequence[Mapping[str, Any]] = ()) -> Path:
    """The HTML report: the verdict against the references, the first image (the grid), notes (e.g.
    skipped metrics), the alpha sweep (table and curves), the other images, and every metric."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    if verdict_rows:
        parts += ["<h2>Verdict (alpha 1): the model against the colour-transfer floor and Gatys</h2>",
                  _table(verdict_rows)]
    present = [(caption, image) for caption, image in images.items() if Path(image).is_file()]
    if present:
        parts.append(_image(*present[0]))
    for key, text in notes.items():
        parts.append(f"<p class='note'><b>{html.escape(key)}</b>: {html.escape(text)}</p>")
    if sweep:
        parts += ["<h2>Alpha sweep</h2>", _table(sweep),
                  f"<img alt='alpha sweep' src='{png_data_uri(sweep_figure(sweep))}'>"]
    parts += [_image(caption, image) for caption, image in present[1:]]
    scalars = {k: v for k, v in flatten(metrics).items() if k != "verdict"}
    parts += ["<h2>Every metric</h2>", _table([{"metric": k, "value": v} for k, v in scalars.items()])]
    parts.append("</body></html>\n")
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(parts))
    return path
