"""Reading images and videos robustly, writing H.264 video (with the source's audio copied).

Images: EXIF orientation applied; greyscale, palette, CMYK, RGBA/LA (composited on white), 16-bit and
float images are converted to RGB; unreadable, truncated or oversized files raise `MediaError` naming the file.
Videos: PyAV decode/encode; frames are turned upright by the stream's display matrix (phones record
portrait video as landscape frames plus a rotation); the first audio stream is copied unchanged when MP4
holds its codec, re-encoded to AAC otherwise, and dropped with a warning when it cannot be decoded.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO

import av
import numpy as np
from av.codec.codec import UnknownCodecError
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from stylepipe.core.errors import InputError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
# The only Pillow decoders ever tried, whatever a file's name says: EPS/PDF would run Ghostscript, and the
# rarer formats' parsers are attack surface no photo needs (phones' multi-picture JPEGs open as JPEG).
IMAGE_FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "TIFF", "GIF")
NOT_ACCEPTED = f"not a readable image of an accepted format ({', '.join(IMAGE_FORMATS)})"
VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v"}
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


class MediaError(InputError):
    """An input file cannot be read as the image/video it should be."""


class AudioDroppedWarning(UserWarning):
    """A video's sound could not be carried into the output, which is written without it."""


def _int_to_l(img: Image.Image) -> Image.Image:
    """16/32-bit greyscale -> 8-bit L (16-bit data scaled by 1/257)."""
    a = np.asarray(img).astype(np.float64)
    if img.mode == "F":
        a = a * 255.0 if a.max(initial=0) <= 1.0 else a
    elif img.mode.startswith("I;16") or a.max(initial=0) > 255:
        a = a / 257.0
    return Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8), "L")


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB: alpha composited on white, CMYK via its ICC profile."""
    if img.mode.startswith("I") or img.mode == "F":
        img = _int_to_l(img)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ALPHA_MODES:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if img.mode == "CMYK" and img.info.get("icc_profile"):
        with contextlib.suppress(Exception):
            src = ImageCms.ImageCmsProfile(io.BytesIO(img.info["icc_profile"]))
            return ImageCms.profileToProfile(img, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
    return img.convert("RGB")


def open_allowed(file: str | Path | IO[bytes]) -> Image.Image:
    """`Image.open` restricted to IMAGE_FORMATS (lazy: only the header is read); UnidentifiedImageError
    for anything else."""
    Image.init()  # registers every plugin (once): Image.open looks the listed formats up by name
    return Image.open(file, formats=IMAGE_FORMATS)


def upright_rgb(img: Image.Image) -> Image.Image:
    """Decode an opened image fully and return it as 8-bit RGB, upright (EXIF orientation applied)."""
    img.load()
    return to_rgb(ImageOps.exif_transpose(img))


def open_image(path: Path) -> Image.Image:
    """The file as an 8-bit RGB PIL image, fully decoded, upright (EXIF orientation applied)."""
    path = Path(path)
    try:
        with open_allowed(path) as img:
            return upright_rgb(img)
    except UnidentifiedImageError:
        raise MediaError(f"{path}: {NOT_ACCEPTED}") from None
    except FileNotFoundError:
        raise MediaError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise MediaError(f"{path}: is a directory, expected an image file") from None
    except Image.DecompressionBombError as err:
        raise MediaError(f"{path}: image too large ({err})") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise MediaError(f"{path}: not a readable image ({err})") from None


def is_video(path: Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: Fraction
    frames: int  # 0 when the container does not say
    has_audio: bool


def probe_video(path: Path) -> VideoInfo:
    """Size, rate and frame count of the first video stream; a clear error for unreadable or empty files."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: no such file")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"{path}: no video stream")
            vs = container.streams.video[0]
            rate = vs.average_rate or vs.guessed_rate or Fraction(25)
            return VideoInfo(vs.codec_context.width, vs.codec_context.height, Fraction(rate),
                             int(vs.frames or 0), bool(container.streams.audio))
    except av.FFmpegError as err:
        raise MediaError(f"{path}: not a readable video ({err})") from None


def upright_frame(frame: av.VideoFrame) -> np.ndarray:
    """The frame as RGB uint8 (H, W, 3), as a player shows it: rotated by its display matrix
    (`rotation`: degrees counter-clockwise; a flip in the matrix is not applied)."""
    arr = frame.to_ndarray(format="rgb24")
    turns = round(frame.rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(arr, turns)) if turns else arr


def iter_video_frames(path: str | Path, options: dict[str, str] | None = None) -> Iterator[np.ndarray]:
    """RGB uint8 frames (H, W, 3) of the first video stream, upright (see `upright_frame`); `options` go
    to av.open (e.g. format v4l2 for a webcam)."""
    try:
        with av.open(str(path), **(options or {})) as container:
            for frame in container.decode(video=0):
                yield upright_frame(frame)
    except av.FFmpegError as err:
        raise MediaError(f"{path}: video decoding failed ({err})") from None


def decodable(codec: str) -> bool:
    """Whether this build of FFmpeg (PyAV's) has a decoder for `codec`."""
    try:
        av.Codec(codec, "r")
    except (UnknownCodecError, av.FFmpegError):
        return False
    return True


# audio codecs copied into MP4 as they are; any other is re-encoded to AAC (ffmpeg's mp4 muxer refuses
# e.g. PCM, WavPack and Vorbis, common in .mov/.mkv/.avi)
MP4_AUDIO = frozenset({"aac", "mp3", "alac", "ac3", "eac3", "opus"})


class VideoWriter:
    """H.264 (yuv420p) MP4 writer; frames are RGB uint8 of one fixed, even size. With `audio_from`, the
    first audio stream of that file is carried over when the writer closes: copied packet by packet when
    MP4 holds its codec, re-encoded to AAC otherwise, dropped with an AudioDroppedWarning when it cannot
    be decoded. `audio` says which happened."""

    def __init__(self, path: Path, fps: int | Fraction, width: int, height: int,
                 audio_from: Path | None = None) -> None:
        if width % 2 or height % 2:
            raise MediaError(f"{path}: H.264 needs an even frame size, got {width}x{height}")
        self.container = av.open(str(path), mode="w", format="mp4")
        self.stream = self.container.add_stream("libx264", rate=fps)
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"
        self.stream.options = {"crf": "18", "preset": "medium"}
        self._audio_src = av.open(str(audio_from)) if audio_from is not None else None
        self._audio_out = None
        self.audio = "none"
        if self._audio_src is not None and self._audio_src.streams.audio:
            self._add_audio(self._audio_src.streams.audio[0], Path(audio_from))
        self.frames = 0

    def _add_audio(self, source: av.audio.stream.AudioStream, path: Path) -> None:
        codec = source.codec_context.name
        if codec in MP4_AUDIO:
            self._audio_out = self.container.add_stream_from_template(source)
            self.audio = "copied"
            return
        if not decodable(codec):
            warnings.warn(f"{path}: audio codec {codec!r} cannot be decoded here: the output has no sound",
                          AudioDroppedWarning, stacklevel=3)
            self.audio = f"dropped ({codec} cannot be decoded)"
            return
        self._audio_out = self.container.add_stream("aac", rate=source.codec_context.sample_rate or 48000)
        # a named layout (a source's unordered "2 channels" is refused by the encoder); more channels are
        # downmixed to stereo by the resampler
        self._audio_out.layout = "mono" if len(source.codec_context.layout.channels) == 1 else "stereo"
        self._audio_out.format = "fltp"  # the AAC encoder's one sample format: frames are resampled to it
        self.audio = f"re-encoded ({codec} -> aac)"

    def write(self, frame: np.ndarray) -> None:
        for packet in self.stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            self.container.mux(packet)
        self.frames += 1

    def _copy_audio(self) -> None:
        assert self._audio_src is not None and self._audio_out is not None
        for packet in self._audio_src.demux(self._audio_src.streams.audio[0]):
            if packet.dts is None:  # the demuxer's final flush packet
                continue
            packet.stream = self._audio_out
            self.container.mux(packet)

    def _reencode_audio(self) -> None:
        """Decode the source's audio and encode it as AAC (PyAV resamples to the encoder's format)."""
        assert self._audio_src is not None and self._audio_out is not None
        for frame in self._audio_src.decode(self._audio_src.streams.audio[0]):
            frame.pts = None  # the encoder numbers the samples itself
            for packet in self._audio_out.encode(frame):
                self.container.mux(packet)
        for packet in self._audio_out.encode(None):
            self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        if self._audio_out is not None and self.audio == "copied":
            self._copy_audio()
        elif self._audio_out is not None:
            self._reencode_audio()
        if self._audio_src is not None:
            self._audio_src.close()
        self.container.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
