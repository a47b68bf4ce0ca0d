"""Load and validate params.yaml: typed sections, unknown keys and bad values are errors naming the key."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from stylepipe.core.errors import StylepipeError
from stylepipe.core.paths import STYLE_NAME

PARAMS_FILE = "params.yaml"
Auto = Literal["auto"] | bool
PositiveInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")


class ConfigError(StylepipeError, ValueError):
    """params.yaml is missing, malformed or has an unknown key / out-of-range value."""


def _non_empty_distinct(v: list[str]) -> list[str]:
    if not v or len(set(v)) != len(v):
        raise ValueError("must be a non-empty list without repeats")
    return v


Names = TypeVar("Names", bound=list)
Distinct = Annotated[Names, AfterValidator(_non_empty_distinct)]  # a non-empty list without repeats


Device = Literal["auto", "cpu", "cuda"]
CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Common(Section):
    seed: NonNegInt = 0
    device: Device = "auto"
    bf16: Auto = "auto"
    channels_last: Auto = "auto"
    compile: Auto = "auto"
    compile_mode: CompileMode = "default"
    num_threads: NonNegInt = 0
    nproc_per_node: PositiveInt = 1


class Tracking(Section):
    enabled: bool = True
    uri: str = "sqlite:///mlflow.db"
    experiment: str = "stylepipe"


class SampleParams(Section):
    seed: NonNegInt = 0
    max_side: Annotated[int, Field(ge=64, le=4096)] = 512
    paintings_per_style: Annotated[int, Field(ge=1, le=50)] = 3
    painting_size: Annotated[int, Field(ge=64, le=2048)] = 384


class RemoteFile(Section):
    """One file to download: several mirror URLs, a checksum, and where preprocess should look."""

    name: str
    urls: list[str] = Field(min_length=1)
    sha256: str | None = None
    md5: str | None = None

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if not v or "/" in v or "\\" in v or v.startswith("."):
            raise ValueError(f"file name {v!r} must be a plain file name (no directories, no leading dot)")
        return v

    @field_validator("sha256")
    @classmethod
    def _sha256_hex(cls, v: str | None) -> str | None:
        if v is not None and (len(v) != 64 or any(c not in "0123456789abcdef" for c in v.lower())):
            raise ValueError(f"sha256 {v!r} must be 64 hex digits")
        return v.lower() if v else v

    @field_validator("md5")
    @classmethod
    def _md5_hex(cls, v: str | None) -> str | None:
        if v is not None and (len(v) != 32 or any(c not in "0123456789abcdef" for c in v.lower())):
            raise ValueError(f"md5 {v!r} must be 32 hex digits")
        return v.lower() if v else v

    @model_validator(mode="after")
    def _has_checksum(self) -> RemoteFile:
        if not (self.sha256 or self.md5):
            raise ValueError(f"file {self.name!r} needs a sha256 or md5 checksum")
        return self


class RemoteParams(Section):
    staging_dir: str = ".cache/downloads"
    split: Annotated[int, Field(ge=1, le=16)] = 4
    max_connection_per_server: Annotated[int, Field(ge=1, le=16)] = 4
    max_concurrent_downloads: Annotated[int, Field(ge=1, le=16)] = 3
    max_tries: Annotated[int, Field(ge=1, le=100)] = 5
    timeout_s: Annotated[int, Field(ge=1, le=3600)] = 60
    files: list[RemoteFile] = []

    @field_validator("files")
    @classmethod
    def _distinct_names(cls, v: list[RemoteFile]) -> list[RemoteFile]:
        """Each file lands in data/raw/<name>: two entries of one name would overwrite each other."""
        names = [f.name for f in v]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"file names must be distinct: {repeated} appear more than once")
        return v


class Download(Section):
    source: Literal["sample", "remote"] = "sample"
    sample: SampleParams = SampleParams()
    remote: RemoteParams = RemoteParams()


def _sha256_hex(v: str) -> str:
    if len(v) != 64 or any(c not in "0123456789abcdef" for c in v.lower()):
        raise ValueError(f"sha256 {v!r} must be 64 hex digits")
    return v.lower()


class PublishedFile(Section):
    """A published AdaIN model file: a path (relative to the repo root; published/ is where DVC watches)
    or an http(s) URL, its pinned sha256 (null until `stylepipe checksum FILE` prints it: stages refuse an
    unpinned file), and its format (pth: the PyTorch port's state dict; t7: the official Torch7 file),
    checked against the file's content."""

    file: Annotated[str, Field(min_length=1)]
    sha256: Annotated[str, AfterValidator(_sha256_hex)] | None = None
    format: Literal["pth", "t7"]


MOVED_WEIGHTS_KEYS = {"vgg16_hed": "the .h5's sha256", "torchvision": "the checkpoint URLs"}


class Weights(Section):
    """The weights stage's encoder, by its name in the registry `stylepipe.nn.encoders.SPECS` (which also
    says where its weights come from; the stage refuses an unknown name), and the file of the one encoder
    whose weights the user supplies (vgg19_normalised, the published AdaIN encoder)."""

    encoder: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")] = "vgg16_hed"
    vgg19_normalised: PublishedFile = PublishedFile(file="published/vgg_normalised.pth", format="pth")

    @model_validator(mode="before")
    @classmethod
    def _moved_keys(cls, data: Any) -> Any:
        moved = [key for key in MOVED_WEIGHTS_KEYS if isinstance(data, dict) and key in data]
        if moved:
            what = ", ".join(f"weights.{key} ({MOVED_WEIGHTS_KEYS[key]})" for key in moved)
            raise ValueError(f"{what}: no longer params; each encoder's weights source is part of its entry in "
                             "stylepipe.nn.encoders.SPECS: delete the key from params.yaml")
        return data


class PublishedDecoder(PublishedFile):
    """adain.init: the published decoder that train_recon imports (no training) and train_adain then
    fine-tunes for `steps` iterations (0 = passes it through unchanged)."""

    steps: NonNegInt = 0


class Finish(Section):
    """How the outputs are finished after the network, read only by the stages that apply it (evaluate,
    the exports, the demo, package): the content's fine luminance detail restored (0..1) and the output
    matched to the painting's RGB palette (histogram) or not (none)."""

    palette: Literal["histogram", "none"] = "histogram"
    detail: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0


FINISH_KEYS = tuple(Finish.model_fields)


class Adain(Section):
    """The AdaIN model both training stages build: the encoder layer where AdaIN re-normalises (the
    decoder mirrors the encoder from there) and the decoder's hidden channel width."""

    layer: Literal["relu3_1", "relu4_1"] = "relu3_1"
    decoder_width: Annotated[float, Field(ge=0.25, le=1.0, multiple_of=0.125)] = 0.5
    init: PublishedDecoder | None = None  # start from a published decoder instead of train_recon

    @model_validator(mode="before")
    @classmethod
    def _finishing_lives_in_finish(cls, raw: Any) -> Any:
        moved = [key for key in FINISH_KEYS if isinstance(raw, dict) and key in raw]
        if moved:
            raise ValueError(f"adain.{'/'.join(moved)} moved to the finish section: write finish.{moved[0]} "
                             "(the finishing settings act after the network and re-run no training stage)")
        return raw

    @model_validator(mode="after")
    def _published_decoder_shape(self) -> Adain:
        if self.init is not None and (self.layer, self.decoder_width) != ("relu4_1", 1.0):
            raise ValueError(
                f"adain.init imports a published decoder, which mirrors the encoder from relu4_1 at full width: "
                f"set adain.layer relu4_1 and decoder_width 1.0 (got {self.layer}, {self.decoder_width:g})"
            )
        return self


class Preprocess(Section):
    short_side: Annotated[int, Field(ge=32, le=4096)] = 256
    min_side: Annotated[int, Field(ge=1, le=4096)] = 64
    val_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.25
    shard_max_mb: Annotated[int, Field(ge=1, le=4096)] = 256
    max_image_pixels: PositiveInt = 178_956_970
    max_archive_bytes: PositiveInt = 60_000_000_000
    max_archive_members: PositiveInt = 1_000_000
    workers: NonNegInt = 0


Schedule = Literal["constant", "inverse", "step", "cosine", "exponential", "polynomial", "sgdr", "onecycle"]


class TrainBase(Section):
    iterations: PositiveInt
    batch_size: PositiveInt
    crop: Annotated[int, Field(ge=16, le=1024, multiple_of=8)]
    lr: PositiveFloat
    lr_schedule: Schedule = "inverse"
    lr_decay: NonNegFloat = 0.0  # inverse: lr / (1 + lr_decay * step)
    lr_step_size: PositiveInt = 1000  # step: multiply by lr_gamma every lr_step_size steps
    lr_gamma: Annotated[float, Field(gt=0, le=1)] = 0.5  # step; exponential (per step)
    lr_min: NonNegFloat = 0.0  # cosine, sgdr: the floor
    lr_power: PositiveFloat = 1.0  # polynomial decay to 0 at the last step
    lr_restart_every: PositiveInt = 1000  # sgdr: first period, doubling after each restart
    lr_warmup_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.3  # onecycle: share of steps rising to lr
    checkpoint_every: PositiveInt
    log_every: PositiveInt
    image_every: PositiveInt
    num_workers: NonNegInt = 0
    # workers: PIL decodes in the DataLoader workers; device: workers slice JPEG bytes, the training
    # process batch-decodes them on its device (nvJPEG on CUDA), sparing the CPU cores
    decode_on: Literal["workers", "device"] = "workers"
    # random hue/saturation/contrast per image (0 = off, 1 = hue +-180 degrees): palettes beyond the data's
    colour_jitter: Annotated[float, Field(ge=0, le=1)] = 0.0


class TrainRecon(TrainBase):
    """Reconstruction pre-training: the shared training knobs only."""

    lr_schedule: Schedule = "constant"
    lr_decay: NonNegFloat = 0.0005
    colour_jitter: Annotated[float, Field(ge=0, le=1)] = 0.5


class TrainAdain(TrainBase):
    lr_decay: NonNegFloat = 0.0005
    colour_jitter: Annotated[float, Field(ge=0, le=1)] = 1.0
    content_weight: NonNegFloat = 1.0
    style_weight: NonNegFloat = 0.15
    style_layers: Distinct[list[Literal["relu1_1", "relu2_1", "relu3_1", "relu4_1"]]] = list(LAYERS[:3])
    style_size: Annotated[int, Field(ge=32, le=2048, multiple_of=8)] = 256  # style bank image size
    style_reduction: Literal["mean", "sum"] = "mean"  # sum: over channels / batch (the Lua original)
    style_sqrt: bool = False  # square root of each layer's distance
    style_layer_weights: list[NonNegFloat] | None = [1.0, 0.5, 0.5]  # one per style layer; None = all 1
    tv_weight: NonNegFloat = 0.0
    colour_weight: NonNegFloat = 30000.0  # the output's RGB palette against the style image's
    colour_term: Literal["moments", "histogram"] = "moments"  # losses.COLOUR_TERMS: mean/std or whole histogram
    structure_weight: NonNegFloat = 700.0  # normalised features of output vs content (losses.structure_loss)
    structure_layers: list[Literal["relu1_1", "relu2_1", "relu3_1", "relu4_1"]] = ["relu1_1", "relu2_1"]
    stability_weight: NonNegFloat = 0.0  # losses.shift_consistency_loss: outputs stable to a pixel of motion
    stability_noise: Annotated[float, Field(ge=0, le=0.1)] = 0.01  # its Gaussian noise per pixel (std, values 0..1)

    @model_validator(mode="after")
    def _weights_match_layers(self) -> TrainAdain:
        if self.style_layer_weights is not None and len(self.style_layer_weights) != len(self.style_layers):
            raise ValueError(
                f"style_layer_weights has {len(self.style_layer_weights)} values for "
                f"{len(self.style_layers)} style_layers {self.style_layers}"
            )
        return self


class TrainJohnson(TrainBase):
    """Johnson et al.: one TransformerNet per style in `styles` (DVC foreach / Snakemake wildcard)."""

    styles: Distinct[list[Annotated[str, Field(pattern=STYLE_NAME)]]]
    lr_schedule: Schedule = "constant"
    style_size: Annotated[int, Field(ge=32, le=2048, multiple_of=8)] = 256  # the style image's size
    content_layer: str = "relu2_2"
    style_layers: Distinct[list[str]] = ["relu1_2", "relu2_2", "relu3_3", "relu4_3"]
    content_weight: NonNegFloat = 2.5
    style_weight: NonNegFloat = 1.0
    tv_weight: NonNegFloat = 0.0
    colour_weight: NonNegFloat = 3.0  # RGB mean/std of the output against the style image
    normalise_losses: bool = True  # divide each term by its value measured before training
    pad: Annotated[int, Field(ge=0, le=256, multiple_of=2)] = 8  # reflect-pad the input (px), crop the output
    width: Annotated[float, Field(ge=0.25, le=1.0, multiple_of=0.125)] = 1.0  # channel width multiplier
    stability_weight: NonNegFloat = 0.0  # losses.shift_consistency_loss (normalised like the other terms)
    stability_noise: Annotated[float, Field(ge=0, le=0.1)] = 0.01  # its Gaussian noise per pixel (std, values 0..1)



class Evaluate(Section):
    image_size: Annotated[int, Field(ge=32, le=2048, multiple_of=8)] = 256
    num_pairs: Annotated[int, Field(ge=1, le=1000)] = 6
    alphas: Distinct[list[Annotated[float, Field(ge=0, le=1)]]] = [0.25, 0.5, 0.75, 1.0]
    speed_repeats: PositiveInt = 3
    gatys_pairs: Annotated[int, Field(ge=0, le=100)] = 2  # per-image optimum reference (0 = skip)
    gatys_iterations: PositiveInt = 40
    gatys_init: Literal["content", "noise"] = "content"
    log_model: bool = True  # log the pyfunc serving model to the evaluate MLflow run
    serve_max_pixels: PositiveInt = 3840 * 2160  # larger request images get HTTP 400


class Export(Section):
    height: Annotated[int, Field(ge=32, le=2048, multiple_of=8)] = 256
    width: Annotated[int, Field(ge=32, le=2048, multiple_of=8)] = 256
    opset: Annotated[int, Field(ge=11, le=13)] = 13
    style_index: NonNegInt = 0
    atol: PositiveFloat = 1e-3
    openvino_atol: PositiveFloat = 5e-2
    openvino_mean_atol: PositiveFloat = 5e-3
    stats_scale: Annotated[float, Field(ge=1, le=1024)] = 4.0
    speed_repeats: PositiveInt = 3


BLOB_INPUTS = "blobs"  # where a pre-compiled blob goes: a DVC/Snakemake dependency of compile_blob


def _under_blob_inputs(v: str | None) -> str | None:
    """blob.path lies under blobs/, the folder compile_blob depends on, so a replaced blob re-runs it."""
    if v is None:
        return v
    p = PurePosixPath(v)
    if p.is_absolute() or ".." in p.parts or len(p.parts) < 2 or p.parts[0] != BLOB_INPUTS:
        raise ValueError(f"must be a file under {BLOB_INPUTS}/ (e.g. {BLOB_INPUTS}/adain_baked.blob): "
                         "compile_blob depends on that folder, so a changed blob re-runs the stage")
    return v


class Blob(Section):
    enabled: bool = False
    path: Annotated[str | None, AfterValidator(_under_blob_inputs)] = None
    shaves: Annotated[int, Field(ge=1, le=16)] = 6
    openvino_version: Literal["2021.4", "2022.1"] = "2022.1"
    timeout_s: Annotated[int, Field(ge=1, le=3600)] = 300
    retries: Annotated[int, Field(ge=0, le=10)] = 2
    url: str = "https://blobconverter.luxonis.com"


class Package(Section):
    """The model folder the package stage writes: how many prepared content photos, at what size, calibrate
    its INT8 OpenVINO IR (0 photos: no INT8 IR)."""

    calibration_images: Annotated[int, Field(ge=0, le=1000)] = 8
    calibration_size: Annotated[int, Field(ge=32, le=2048, multiple_of=8)] = 256


class Demo(Section):
    frames: Annotated[int, Field(ge=1, le=10_000)] = 36
    fps: Annotated[int, Field(ge=1, le=120)] = 12
    backend: Literal["auto", "torch", "openvino"] = "auto"  # the engine's; auto: OpenVINO on a CPU, torch on CUDA
    precision: Literal["default", "f32", "bf16"] = "default"  # default: the OpenVINO CPU plugin's choice
    feature_blend: Annotated[float, Field(ge=0, lt=1)] = 0.0  # AdaIN features: the previous frame's share
    decoded_blend: Annotated[float, Field(ge=0, lt=1)] = 0.0  # decoded image: the previous frame's share
    flow_blend: Annotated[float, Field(ge=0, lt=1)] = 0.0  # share of the previous output along the DIS flow


class Params(Section):
    common: Common = Common()
    tracking: Tracking = Tracking()
    download: Download = Download()
    weights: Weights = Weights()
    preprocess: Preprocess = Preprocess()
    adain: Adain = Adain()
    finish: Finish = Finish()
    train_recon: TrainRecon
    train_adain: TrainAdain
    train_johnson: TrainJohnson
    evaluate: Evaluate = Evaluate()
    export: Export = Export()
    blob: Blob = Blob()
    package: Package = Package()
    demo: Demo = Demo()

    @model_validator(mode="after")
    def _style_layers_within_adain_layer(self) -> Params:
        deepest = LAYERS.index(self.adain.layer)
        for key in ("style_layers", "structure_layers"):
            beyond = [name for name in getattr(self.train_adain, key) if LAYERS.index(name) > deepest]
            if beyond:
                raise ValueError(
                    f"train_adain.{key} {beyond} lie deeper than adain.layer {self.adain.layer}: the encoder "
                    f"stops there (use layers up to {self.adain.layer})"
                )
        return self


def _format_errors(path: Path, err: ValidationError) -> str:
    lines = [f"{path}: invalid parameters"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        if not key:  # a check across sections: its message names the keys
            lines.append(f"  {e['msg'].removeprefix('Value error, ')}")
        elif e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key (check the spelling; see params.yaml in the repo)")
        elif e["type"] == "missing":
            lines.append(f"  {key}: required key is missing")
        else:
            lines.append(f"  {key}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def parse_params(raw: Any, source: Path | str = PARAMS_FILE) -> Params:
    """Validate an already-loaded mapping; raise ConfigError naming every bad key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of sections at the top level, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_errors(Path(source), err)) from None


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load that refuses a key given twice in one mapping: plain YAML loaders keep the last
    value silently, so an edit lower in the file would undo one above it unseen."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) or key == "<<":
                continue
            if key in first:
                raise yaml.YAMLError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r} (first given on "
                                     f"line {first[key] + 1})")
            first[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def load_params(path: str | os.PathLike[str] = PARAMS_FILE) -> Params:
    """Read and validate params.yaml."""
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(), Loader=UniqueKeyLoader)
    except FileNotFoundError:
        raise ConfigError(f"{path}: parameters file not found (run from the repo root)") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    return parse_params(raw, path)


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge `overlay` into a copy of `base` (overlay wins; lists are replaced)."""
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out
