"""`stylepipe profile pretrained --encoder FILE_OR_URL --decoder FILE_OR_URL`: the published AdaIN encoder
and decoder read in full as the models they must hold, then pinned (path or URL, sha256, format) in
params.yaml with the pretrained profile, in one step. Kept apart from `adain.published`, which the training
stages import, so that the profile machinery is in no stage's code."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from stylepipe.adain.published import PUBLISHED_ENCODER, published_decoder
from stylepipe.core.io import DOWNLOAD_ERRORS, atomic_path, download_verified, file_digest
from stylepipe.core.profiles import PROFILES_DIR, apply_profile
from stylepipe.nn.encoders import SPECS, WeightsError, build_encoder, full_depth
from stylepipe.nn.published import Format, cached_download, detect_format, is_url, read_published

PROFILE = "pretrained"
ENCODER_KEY, DECODER_KEY = f"weights.{PUBLISHED_ENCODER}", "adain.init"


def _read_encoder(path: Path) -> Format:
    fmt = detect_format(path)
    encoder = build_encoder(PUBLISHED_ENCODER, full_depth(PUBLISHED_ENCODER))
    read_published(path, fmt, encoder.layers, "layers.", SPECS[PUBLISHED_ENCODER].weights.what)
    return fmt


def _read_decoder(path: Path) -> Format:
    fmt = detect_format(path)
    published_decoder(path, fmt, PUBLISHED_ENCODER)
    return fmt


def _checked_download(url: str, read: Callable[[Path], Format], cache_dir: Path) -> Path:
    """`url` downloaded into the cache folder the stages fetch it from, once it reads as the model expected
    (nothing is kept of a download that fails or does not)."""
    staging = cached_download(url, "incoming", cache_dir)

    def verify(tmp: Path) -> None:
        try:
            read(tmp)
        except WeightsError as err:  # named by the URL the user gave, not the temporary file
            raise WeightsError(str(err).replace(str(tmp), url)) from None

    try:
        download_verified(url, staging, verify)
    except DOWNLOAD_ERRORS as err:
        raise WeightsError(f"{url}: download failed ({err}); fetch the file by hand and give its path") from None
    dest = cached_download(url, file_digest(staging), cache_dir)
    with atomic_path(dest) as tmp:
        staging.replace(tmp)
    staging.parent.rmdir()
    return dest


def _pin(source: str, read: Callable[[Path], Format], cache_dir: Path) -> dict[str, str]:
    """{file, sha256, format} of the published file at `source` (a path or an http(s) URL), read in full
    as the model `read` expects."""
    if is_url(source):
        path = _checked_download(source, read, cache_dir)
        fmt = detect_format(path)
    else:
        path = Path(source)
        if not path.is_file():
            raise WeightsError(f"{path}: no such published model file")
        fmt = read(path)
    return {"file": source, "sha256": file_digest(path), "format": fmt}


def pin_published(encoder: str | None, decoder: str | None, params_path: Path = Path("params.yaml"),
                  profiles_dir: Path = PROFILES_DIR, cache_dir: Path = Path(".cache")) -> dict:
    """Apply the pretrained profile to params.yaml with the published encoder and/or decoder pinned
    (path or URL, sha256, format), each file first read in full as the model it must hold: a missing,
    unreadable or wrong file raises before params.yaml is touched."""
    pins: dict[str, dict[str, str]] = {}
    if encoder is not None:
        pins[ENCODER_KEY] = _pin(encoder, _read_encoder, cache_dir / "published")
    if decoder is not None:
        pins[DECODER_KEY] = _pin(decoder, _read_decoder, cache_dir / "published")
    values: dict[str, dict] = {}
    for key, entry in pins.items():
        section, name = key.split(".")
        values.setdefault(section, {})[name] = dict(entry)
    result = apply_profile(PROFILE, params_path, profiles_dir, values)
    return {**result, "pinned": pins}
