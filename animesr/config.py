"""Frozen settings, built once at the CLI boundary and passed down whole."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

PRECISIONS = ("auto", "exact", "fast", "fp32", "fp16", "bf16")  # exact = fp32; fast: the backend's reduced precision
BACKENDS = ("auto", "torch", "openvino", "onnxruntime")
# An 8K×6K picture. A PNG of a few kilobytes can claim 12000×12000 pixels (gigabytes once
# decoded and upscaled), so image sizes are read from the header and checked before decoding.
DEFAULT_MAX_PIXELS = 50_000_000


def _paths(settings: object, *names: str) -> None:
    """Paths given as text, as Python callers may, become Paths once, here (a tuple of them too)."""
    for name in names:
        value = getattr(settings, name)
        if isinstance(value, str):
            object.__setattr__(settings, name, Path(value))
        elif isinstance(value, (list, tuple)):
            object.__setattr__(settings, name, tuple(Path(v) for v in value))


@dataclass(frozen=True)
class InferenceSettings:
    device: str = "auto"  # auto | cpu | cuda | cuda:N | gpu | gpu.N (OpenVINO's Intel GPUs)
    precision: str = "auto"  # auto: fp16 on CUDA, fp32 on the CPU
    tile: int | None = None  # input pixels; None: from free memory (CUDA) or available RAM (CPU)
    backend: str = "auto"  # auto: the fastest correct runtime installed for the device (measured)
    channels_last: bool = True
    min_tile: int = 32
    tta: bool = False  # self-ensemble ×8: the mean over the 8 rotations/mirrors, 8× the compute
    compile: bool = False  # torch.compile the network (the torch backend; with CUDA graphs on CUDA)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"--backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}")
        if self.tile is not None and self.tile < self.min_tile:
            raise ValueError(f"--tile must be at least {self.min_tile} pixels")
        if self.compile and self.backend not in ("auto", "torch"):
            raise ValueError(f"--compile compiles the torch backend; it does not apply to --backend {self.backend}")


@dataclass(frozen=True)
class ImageJob:
    inputs: tuple[Path, ...]
    output_dir: Path
    scale: int
    model: Path | str | None  # a file, a shipped model's name (clean, real), or None: the default
    fmt: str = "same"  # same | png | jpg | webp
    suffix: str = ""
    recursive: bool = False
    overwrite: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS  # per input image; more is that file's error
    inference: InferenceSettings = InferenceSettings()
    denoise: float | None = None  # mix of the shipped clean (0) and real (1) models

    def __post_init__(self) -> None:
        _paths(self, "inputs", "output_dir")
        if self.max_pixels < 1:
            raise ValueError("--max-pixels must be at least 1")
        if any(sep in self.suffix for sep in ("/", "\\", "\n", "\0")):
            raise ValueError(f"--suffix must not contain a path separator or a line break: {self.suffix!r}")


@dataclass(frozen=True)
class PrepareSettings:
    sources: tuple[Path, ...]
    output: Path
    crop: int = 480
    stride: int = 200
    scales: tuple[int, ...] = (2, 4)
    min_size: int | None = None  # shorter side; None: the crop size
    overwrite: bool = False

    def __post_init__(self) -> None:
        _paths(self, "sources", "output")


@dataclass(frozen=True)
class TrainSettings:
    data: Path
    scale: int
    out: Path
    iters: int = 100_000
    batch_size: int = 32
    patch: int = 64  # LR pixels
    min_detail: float = 2.0  # redraw LR patches flatter than this (mean |gradient|, grey levels)
    lr: float = 5e-4
    lr_milestones: tuple[float, ...] = (0.5, 0.75, 0.9)  # fractions of iters; LR halves at each
    val_dir: Path | None = None
    val_every: int = 1000
    val_crop: int | None = None  # centre-crop validation HR images to this size (px)
    checkpoint_every: int = 100
    init: Path | None = None
    resume: bool = False
    new_data: bool = False  # with resume: continuing on data other than the run's is intended
    device: str = "auto"
    workers: int = 2
    seed: int = 0
    ema_decay: float | None = 0.999
    amp: str = "auto"  # auto (bf16 on CUDA), off, bf16, fp16
    channels: int = 40
    up_channels: int = 24
    blocks: int = 16
    charbonnier_eps: float = 1e-6  # applied on [0, 1] pixel values
    degrade: str = "clean"  # a preset of animesr.data.degrade: the LR is made from the HR crop on the fly
    clean_share: float = 0.35  # with a degrading preset: share of samples kept clean (bicubic)
    sharpen_target: float = 0.0  # unsharp-mask weight of the HR targets (0: the HR as it is)
    gan_weight: float = 0.0  # weight of the adversarial loss beside the pixel loss (0: no adversarial stage)
    gan_lr: float = 1e-4  # the discriminator's Adam learning rate

    def __post_init__(self) -> None:
        _paths(self, "data", "out", *(name for name in ("val_dir", "init") if getattr(self, name) is not None))


# ---- video (upscale-video) ------------------------------------------------------------------

DEFAULT_DEDUP_THRESHOLD = 2.0  # grey levels; measured on ../shared/data/video (see README)
DEFAULT_CHUNK_FRAMES = 240
FIELD_MODES = ("auto", "ivtc", "deinterlace", "progressive")
# bounds that keep a typo from scanning forever or exhausting memory
FPS_RANGE = (Fraction(1, 10), Fraction(1000))
MAX_BATCH = 256
MAX_CHUNK_FRAMES = 100_000
MAX_SECONDS = 1_000_000.0  # --start / --duration


DEFAULT_CRF = 18


@dataclass(frozen=True)
class EncodeSettings:
    codec: str = "libx264"
    crf: int | None = DEFAULT_CRF  # ignored by codecs without a CRF mode (ffv1)
    preset: str | None = None  # the codec's own default when None
    pix_fmt: str = "yuv420p"


@dataclass(frozen=True)
class VideoJob:
    input: Path
    output: Path
    scale: int
    model: Path | str | None = None  # a file, a shipped model's name (clean, real), or None: the default
    denoise: float | None = None  # mix of the shipped clean (0) and real (1) models
    encode: EncodeSettings = EncodeSettings()
    fps: str | None = None  # ffmpeg rate syntax: "25", "24000/1001"; None keeps the source timing
    deinterlace: bool = False  # the same as field_mode="deinterlace"
    field_mode: str = "progressive"  # auto | ivtc | deinterlace | progressive (frames as they are)
    start: float | None = None  # seconds
    duration: float | None = None  # seconds
    batch: int | None = None  # frames per network call; None: 4 on CUDA, 1 on the CPU
    resume: bool = True
    overwrite: bool = False
    dedup_threshold: float = DEFAULT_DEDUP_THRESHOLD
    chunk_frames: int = DEFAULT_CHUNK_FRAMES
    inference: InferenceSettings = InferenceSettings()
    accept_truncated: bool = False  # upscale what decodes of a source shorter than its container says

    def __post_init__(self) -> None:
        _paths(self, "input", "output")
        if self.field_mode not in FIELD_MODES:
            raise ValueError(f"--field-mode must be one of {', '.join(FIELD_MODES)}, not {self.field_mode!r}")
        if self.deinterlace and self.field_mode not in ("progressive", "deinterlace"):
            raise ValueError(f"--deinterlace and --field-mode {self.field_mode} contradict each other: choose one")
        if self.deinterlace or self.field_mode == "deinterlace":  # one spelling, whichever was used
            object.__setattr__(self, "field_mode", "deinterlace")
            object.__setattr__(self, "deinterlace", True)
        if self.batch is not None and not 1 <= self.batch <= MAX_BATCH:
            raise ValueError(f"--batch must be 1 to {MAX_BATCH}")
        if not 1 <= self.chunk_frames <= MAX_CHUNK_FRAMES:
            raise ValueError(f"--chunk-frames must be 1 to {MAX_CHUNK_FRAMES}")
        if not 0 <= self.dedup_threshold <= 255:  # also refuses NaN
            raise ValueError("--dedup-threshold must be 0 (off) to 255")
        if self.start is not None and not 0 <= self.start <= MAX_SECONDS:
            raise ValueError(f"--start must be 0 to {MAX_SECONDS:.0f} seconds")
        if self.duration is not None and not 0 < self.duration <= MAX_SECONDS:
            raise ValueError(f"--duration must be more than 0 and at most {MAX_SECONDS:.0f} seconds")
        if self.fps is not None:
            _check_fps(self.fps)


# ---- preview ---------------------------------------------------------------------------------

DEFAULT_PREVIEW_CROP = 128  # source pixels per side of each crop


PREVIEW_CANDIDATES = 12  # places in a video a preview looks at to pick the most detailed frames


@dataclass(frozen=True)
class PreviewJob:
    input: Path  # an image or a video
    output: Path  # the sheet: .png, .jpg or .webp
    scale: int = 2
    models: tuple[str, ...] = ()  # model files or shipped models' names (clean, real)
    denoise: tuple[float, ...] = ()  # mixes of the shipped clean and real models; with no models
    # and no mixes: the default shipped model for `scale`
    at: tuple[float, ...] = ()  # seconds into a video; none: the most detailed frames
    frames: int = 2  # frames picked when `at` is empty
    crop: int = DEFAULT_PREVIEW_CROP
    field_mode: str = "progressive"  # as upscale-video's --field-mode
    overwrite: bool = False
    inference: InferenceSettings = InferenceSettings()

    def __post_init__(self) -> None:
        _paths(self, "input", "output")
        if self.field_mode not in FIELD_MODES:
            raise ValueError(f"--field-mode must be one of {', '.join(FIELD_MODES)}, not {self.field_mode!r}")
        if not 1 <= self.frames <= PREVIEW_CANDIDATES:
            raise ValueError(f"--frames must be 1 to {PREVIEW_CANDIDATES}, the places a preview looks at")
        if self.crop < 16:
            raise ValueError("--crop must be at least 16 pixels")
        if any(t < 0 for t in self.at):
            raise ValueError("--at must not be negative")
        for option, values in (("--at", self.at), ("--model", self.models), ("--denoise", self.denoise)):
            twice = next((value for i, value in enumerate(values) if value in values[:i]), None)
            if twice is not None:
                raise ValueError(f"{option} {twice:g} is given twice" if isinstance(twice, float)
                                 else f"{option} {twice} is given twice")


def _check_fps(fps: str) -> None:
    low, high = FPS_RANGE
    try:
        rate = Fraction(fps)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"--fps must be a number or a fraction like 24000/1001, not {fps!r}") from None
    if not low <= rate <= high:
        raise ValueError(f"--fps must be {float(low):g} to {float(high):g}, not {fps}")
