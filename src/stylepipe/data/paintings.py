"""Deterministic, procedurally generated "paintings" for the embedded sample's style domain.

Each style is a renderer ``(photo, rng, size) -> PIL.Image``: brush strokes that follow the photo's
edges (or a flow field), palette quantisation, dots, flat geometric facets, posterised woodblock
colours, and a canvas/paper texture. Only numpy + PIL + scipy.ndimage; no randomness outside `rng`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy import ndimage

from stylepipe.core.colour import luminance

Renderer = Callable[[Image.Image, np.random.Generator, int], Image.Image]

PALETTES: dict[str, list[tuple[int, int, int]]] = {
    "impressionism": [(244, 214, 94), (122, 170, 218), (96, 158, 92), (238, 150, 120), (250, 244, 222),
                      (168, 128, 196), (62, 104, 160), (214, 92, 64), (178, 210, 120)],
    "expressionism": [(226, 40, 34), (246, 180, 20), (20, 60, 160), (30, 140, 90), (120, 30, 110),
                      (250, 120, 20), (40, 170, 200), (236, 226, 190)],
    "pointillism": [(238, 64, 50), (250, 210, 40), (40, 110, 200), (60, 170, 80), (250, 248, 236),
                    (250, 140, 40), (120, 70, 170), (120, 200, 230), (30, 60, 60)],
    "cubism": [(120, 92, 64), (176, 146, 100), (86, 92, 84), (200, 180, 140), (60, 54, 48),
               (140, 120, 90), (160, 96, 60), (210, 200, 170)],
    "abstract": [(220, 30, 40), (250, 205, 10), (20, 70, 170), (20, 20, 24), (245, 240, 228),
                 (40, 150, 110), (240, 120, 30)],
    "ukiyo_e": [(34, 52, 96), (52, 92, 140), (200, 70, 50), (226, 176, 100), (236, 222, 190),
                (96, 126, 90), (40, 34, 30), (150, 170, 170)],
}


def _arr(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.float32)


def _img(a: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")


def square_crop(photo: Image.Image, size: int, rng: np.random.Generator) -> Image.Image:
    """A random square crop (at least 70% of the shorter side) resized to `size`."""
    w, h = photo.size
    side = int(min(w, h) * rng.uniform(0.7, 1.0))
    x = int(rng.integers(0, w - side + 1))
    y = int(rng.integers(0, h - side + 1))
    return photo.crop((x, y, x + side, y + side)).resize((size, size), Image.Resampling.BICUBIC)


def quantize_to_palette(a: np.ndarray, palette: list[tuple[int, int, int]], mix: float = 1.0) -> np.ndarray:
    """Map every pixel to its nearest palette colour (by RGB distance after contrast stretch)."""
    pal = np.asarray(palette, dtype=np.float32)
    flat = a.reshape(-1, 3)
    lo, hi = np.percentile(flat, 2, axis=0), np.percentile(flat, 98, axis=0)
    stretched = (flat - lo) / np.maximum(hi - lo, 1.0) * 255.0
    d = ((stretched[:, None, :] - pal[None, :, :]) ** 2).sum(-1)
    q = pal[d.argmin(1)].reshape(a.shape)
    return q * mix + a * (1.0 - mix)


def edge_angles(a: np.ndarray, sigma: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Stroke direction (perpendicular to the luminance gradient) and gradient magnitude."""
    lum = ndimage.gaussian_filter(luminance(a), sigma)
    gy, gx = ndimage.sobel(lum, 0), ndimage.sobel(lum, 1)
    return np.arctan2(gy, gx) + np.pi / 2, np.hypot(gx, gy)


def flow_angles(size: int, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    """A smooth swirling direction field from a few random sinusoids."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    ang = np.zeros((size, size), np.float32)
    for _ in range(3):
        fx, fy = rng.uniform(0.5, 2.5, 2) * scale
        px, py = rng.uniform(0, 2 * np.pi, 2)
        ang += np.sin(2 * np.pi * fx * xx + px) * np.cos(2 * np.pi * fy * yy + py)
    return ang * np.pi * 0.6 + rng.uniform(0, np.pi)


def canvas_texture(a: np.ndarray, rng: np.random.Generator, strength: float = 0.07) -> np.ndarray:
    """Multiply by a woven-canvas pattern plus fine grain."""
    h, w = a.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    weave = np.sin(xx * 2.1) * np.sin(yy * 2.1 + 0.5 * np.sin(xx * 0.05))
    grain = ndimage.gaussian_filter(rng.normal(0, 1, (h, w)).astype(np.float32), 0.8)
    tex = 1.0 + strength * (0.6 * weave + 0.8 * grain)
    return a * tex[..., None]


def paint_strokes(
    canvas: Image.Image,
    colours: np.ndarray,
    angles: np.ndarray,
    rng: np.random.Generator,
    spacing: int,
    length: tuple[int, int],
    width: tuple[int, int],
    jitter: float = 14.0,
    outline: tuple[int, int, int] | None = None,
) -> Image.Image:
    """Paint curved strokes on a jittered grid; each follows `angles` for two segments."""
    size = canvas.size[0]
    draw = ImageDraw.Draw(canvas)
    gy, gx = np.mgrid[0:size:spacing, 0:size:spacing].reshape(2, -1).astype(np.float32)
    n = gx.size
    order = rng.permutation(n)
    xs = np.clip(gx[order] + rng.uniform(0, spacing, n), 0, size - 1)
    ys = np.clip(gy[order] + rng.uniform(0, spacing, n), 0, size - 1)
    lens = rng.uniform(*length, n)
    widths = rng.integers(width[0], width[1] + 1, n)
    cols = colours[ys.astype(int), xs.astype(int)] + rng.normal(0, jitter, (n, 3))
    cols = np.clip(cols, 0, 255).astype(int)
    a0 = angles[ys.astype(int), xs.astype(int)]
    x1 = np.clip(xs + np.cos(a0) * lens / 2, 0, size - 1)
    y1 = np.clip(ys + np.sin(a0) * lens / 2, 0, size - 1)
    a1 = angles[y1.astype(int), x1.astype(int)]
    a1 = np.where(np.cos(a1 - a0) < 0, a1 + np.pi, a1)  # keep the stroke going the same way
    x2, y2 = x1 + np.cos(a1) * lens / 2, y1 + np.sin(a1) * lens / 2
    for i in range(n):
        pts = [(xs[i], ys[i]), (x1[i], y1[i]), (x2[i], y2[i])]
        if outline is not None:
            draw.line(pts, fill=outline, width=int(widths[i]) + 2, joint="curve")
        draw.line(pts, fill=tuple(cols[i]), width=int(widths[i]), joint="curve")
    return canvas


def impressionism(photo: Image.Image, rng: np.random.Generator, size: int) -> Image.Image:
    """Short dabbed strokes along edges, bright pastel palette, visible canvas."""
    a = _arr(square_crop(photo, size, rng))
    bright = np.clip((a - 128) * 1.1 + 150, 0, 255)
    colours = quantize_to_palette(bright, PALETTES["impressionism"], mix=0.55)
    angles, _ = edge_angles(a, sigma=3.0)
    base = _img(ndimage.gaussian_filter(colours, (6, 6, 0)))
    s = max(2, size // 96)
    img = paint_strokes(base, colours, angles, rng, spacing=s, length=(3 * s, 5 * s),
                        width=(s, 2 * s), jitter=18)
    img = paint_strokes(img, colours, angles, rng, spacing=2 * s, length=(2 * s, 3 * s),
                        width=(s, s + 1), jitter=24)
    return _img(canvas_texture(_arr(img), rng, 0.06))


def smooth_angles(angles: np.ndarray, sigma: float) -> np.ndarray:
    """Smooth an orientation field (angles modulo pi) by averaging doubled-angle vectors."""
    c = ndimage.gaussian_filter(np.cos(2 * angles), sigma)
    s = ndimage.gaussian_filter(np.sin(2 * angles), sigma)
    return np.arctan2(s, c) / 2


def expressionism(photo: Image.Image, rng: np.random.Generator, size: int) -> Image.Image:
    """Long swirling strokes in strong colours over a dark ground, with dark contours."""
    a = _arr(square_crop(photo, size, rng))
    colours = quantize_to_palette(a, PALETTES["expressionism"], mix=0.85)
    colours = ndimage.median_filter(colours, size=(9, 9, 1))
    edges, mag = edge_angles(a, sigma=4.0)
    edges = smooth_angles(edges, size / 40)
    flow = flow_angles(size, rng, scale=0.8)
    w = np.clip(ndimage.gaussian_filter(mag, 6) / (np.percentile(mag, 75) + 1e-6), 0, 1)
    angles = np.arctan2(w * np.sin(2 * edges) + (1 - w) * np.sin(2 * flow),
                        w * np.cos(2 * edges) + (1 - w) * np.cos(2 * flow)) / 2
    base = _img(ndimage.gaussian_filter(colours, (8, 8, 0)) * 0.6)
    s = max(4, size // 48)
    img = paint_strokes(base, colours, angles, rng, spacing=s, length=(5 * s, 9 * s),
                        width=(s - 1, s + 2), jitter=16)
    img = paint_strokes(img, colours * 1.1, angles, rng, spacing=2 * s, length=(3 * s, 6 * s),
                        width=(max(2, s // 2), s), jitter=22)
    out = _arr(img)
    lum = ndimage.gaussian_filter(luminance(a), 2.5)
    grad = np.hypot(ndimage.sobel(lum, 0), ndimage.sobel(lum, 1))
    line = ndimage.grey_dilation(grad > np.percentile(grad, 93), size=(3, 3))
    line = ndimage.gaussian_filter(line.astype(np.float32), 1.0)[..., None]
    out = out * (1 - 0.85 * line) + np.array([24, 14, 40], np.float32) * 0.85 * line
    return _img(canvas_texture(out, rng, 0.05))


def pointillism(photo: Image.Image, rng: np.random.Generator, size: int) -> Image.Image:
    """Dots of pure palette colours on a pale ground."""
    a = _arr(square_crop(photo, size, rng))
    a = ndimage.gaussian_filter(a, (1.5, 1.5, 0))
    pal = np.asarray(PALETTES["pointillism"], np.float32)
    canvas = Image.new("RGB", (size, size), (246, 240, 226))
    draw = ImageDraw.Draw(canvas)
    r = max(2, size // 128)
    n = int((size / r) ** 2 * 0.55)
    xs = rng.uniform(0, size, n)
    ys = rng.uniform(0, size, n)
    target = a[ys.astype(int), xs.astype(int)] + rng.normal(0, 38, (n, 3))
    lo, hi = np.percentile(a.reshape(-1, 3), 2, 0), np.percentile(a.reshape(-1, 3), 98, 0)
    target = (target - lo) / np.maximum(hi - lo, 1) * 255
    idx = ((target[:, None, :] - pal[None]) ** 2).sum(-1).argmin(1)
    radii = r * rng.uniform(0.8, 1.3, n)
    for x, y, rad, k in zip(xs, ys, radii, idx, strict=True):
        draw.ellipse((x - rad, y - rad, x + rad, y + rad), fill=tuple(int(c) for c in pal[k]))
    return _img(canvas_texture(_arr(canvas), rng, 0.04))


def _facets(size: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Label map of straight-edged facets (Voronoi cells of random seeds, sheared for angularity)."""
    pts = rng.uniform(0, size, (n, 2)).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    shear = rng.uniform(-0.6, 0.6)
    d = (xx[None] + shear * yy[None] - pts[:, 0, None, None] - shear * pts[:, 1, None, None]) ** 2
    d += (yy[None] - pts[:, 1, None, None]) ** 2 * rng.uniform(0.3, 1.5)
    return d.argmin(0)


def cubism(photo: Image.Image, rng: np.random.Generator, size: int) -> Image.Image:
    """Flat shaded facets in an earthy palette, dark facet edges."""
    a = _arr(square_crop(photo, size, rng))
    labels = _facets(size, int(rng.integers(40, 70)), rng)
    n = labels.max() + 1
    means = np.stack([ndimage.mean(a[..., c], labels, np.arange(n)) for c in range(3)], 1)
    flat = quantize_to_palette(means[None].astype(np.float32), PALETTES["cubism"], mix=0.8)[0]
    out = flat[labels]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    theta = rng.uniform(0, 2 * np.pi, n)[labels]
    shade = np.cos(theta) * xx + np.sin(theta) * yy
    out = out * (0.75 + 0.4 * (shade - shade.min()) / (np.ptp(shade) + 1e-6))[..., None]
    edge = (labels != np.roll(labels, 1, 0)) | (labels != np.roll(labels, 1, 1))
    edge = ndimage.binary_dilation(edge, iterations=max(1, size // 256))
    out[edge] = (40, 34, 30)
    return _img(canvas_texture(out, rng, 0.07))


def abstract(photo: Image.Image, rng: np.random.Generator, size: int) -> Image.Image:
    """A geometric composition: colour fields, circles, bars and lines in primary colours."""
    del photo
    pal = PALETTES["abstract"]
    canvas = Image.new("RGB", (size, size), pal[4])
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(5, 9))):
        x0, y0 = rng.uniform(-0.1, 0.8, 2) * size
        w, h = rng.uniform(0.1, 0.5, 2) * size
        draw.rectangle((x0, y0, x0 + w, y0 + h), fill=pal[int(rng.integers(0, len(pal)))])
    for _ in range(int(rng.integers(3, 7))):
        cx, cy = rng.uniform(0.1, 0.9, 2) * size
        r = rng.uniform(0.04, 0.2) * size
        c = pal[int(rng.integers(0, len(pal)))]
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=c, outline=pal[3], width=max(2, size // 128))
    for _ in range(int(rng.integers(6, 12))):
        x0, y0, x1, y1 = rng.uniform(0, 1, 4) * size
        draw.line((x0, y0, x1, y1), fill=pal[3], width=int(rng.integers(2, max(3, size // 48))))
    for _ in range(int(rng.integers(2, 5))):
        pts = [tuple(rng.uniform(0, 1, 2) * size) for _ in range(3)]
        draw.polygon(pts, fill=pal[int(rng.integers(0, len(pal)))], outline=pal[3])
    a = ndimage.gaussian_filter(_arr(canvas), (0.7, 0.7, 0))
    return _img(canvas_texture(a, rng, 0.09))


def ukiyo_e(photo: Image.Image, rng: np.random.Generator, size: int) -> Image.Image:
    """Woodblock print: flat posterised colours, dark contours, paper texture."""
    a = _arr(square_crop(photo, size, rng))
    smooth = ndimage.median_filter(ndimage.gaussian_filter(a, (1.5, 1.5, 0)), size=(7, 7, 1))
    flat = quantize_to_palette(smooth, PALETTES["ukiyo_e"], mix=1.0)
    flat = ndimage.median_filter(flat, size=(5, 5, 1))
    lum = luminance(flat)
    edge = np.hypot(ndimage.sobel(lum, 0), ndimage.sobel(lum, 1)) > 60
    out = flat.copy()
    out[edge] = (36, 30, 28)
    out = _arr(_img(out).filter(ImageFilter.SMOOTH))
    paper = ndimage.gaussian_filter(rng.normal(0, 1, (size, size)).astype(np.float32), (0.6, 6.0))
    out = out * (1.0 + 0.05 * paper)[..., None] * np.array([1.0, 0.97, 0.9], np.float32)
    return _img(out)


STYLES: dict[str, Renderer] = {
    "Impressionism": impressionism,
    "Expressionism": expressionism,
    "Pointillism": pointillism,
    "Cubism": cubism,
    "Abstract": abstract,
    "Ukiyo_e": ukiyo_e,
}

ARTISTS: dict[str, str] = {
    "Impressionism": "claudine-moreau",
    "Expressionism": "ernst-kessler",
    "Pointillism": "georges-pointel",
    "Cubism": "juan-brisa",
    "Abstract": "wassily-kandel",
    "Ukiyo_e": "hokusai-kato",
}


def generate_painting(style: str, photo: Image.Image, rng: np.random.Generator, size: int) -> Image.Image:
    """Render one painting of `style` (a key of STYLES) from `photo`."""
    return STYLES[style](photo.convert("RGB"), rng, size)
