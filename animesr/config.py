"""Frozen settings, built once at the CLI boundary and passed down whole."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PRECISIONS = ("auto", "fp32", "fp16", "bf16")


@dataclass(frozen=True)
class InferenceSettings:
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto: fp16 on CUDA, fp32 on the CPU
    tile: int | None = None  # input pixels; None: whole image on the CPU, from free memory on CUDA
    channels_last: bool = True
    min_tile: int = 32

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}")
        if self.tile is not None and self.tile < self.min_tile:
            raise ValueError(f"--tile must be at least {self.min_tile} pixels")


@dataclass(frozen=True)
class ImageJob:
    inputs: tuple[Path, ...]
    output_dir: Path
    scale: int
    model: Path | None
    fmt: str = "same"  # same | png | jpg | webp
    suffix: str = ""
    recursive: bool = False
    overwrite: bool = False
    inference: InferenceSettings = InferenceSettings()


# ---- video (upscale-video) ------------------------------------------------------------------

DEFAULT_DEDUP_THRESHOLD = 2.0  # grey levels; measured on ../shared/data/video (see README)
DEFAULT_CHUNK_FRAMES = 240


@dataclass(frozen=True)
class EncodeSettings:
    codec: str = "libx264"
    crf: int | None = 18  # ignored by codecs without a CRF mode (ffv1)
    preset: str | None = None  # the codec's own default when None
    pix_fmt: str = "yuv420p"


@dataclass(frozen=True)
class VideoJob:
    input: Path
    output: Path
    scale: int
    model: Path | None = None
    encode: EncodeSettings = EncodeSettings()
    fps: str | None = None  # ffmpeg rate syntax: "25", "24000/1001"; None keeps the source timing
    deinterlace: bool = False
    start: float | None = None  # seconds
    duration: float | None = None  # seconds
    batch: int = 4
    resume: bool = True
    overwrite: bool = False
    dedup_threshold: float = DEFAULT_DEDUP_THRESHOLD
    chunk_frames: int = DEFAULT_CHUNK_FRAMES
    inference: InferenceSettings = InferenceSettings()

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise ValueError("--batch must be at least 1")
        if self.chunk_frames < 1:
            raise ValueError("chunk_frames must be at least 1")
        if self.dedup_threshold < 0:
            raise ValueError("--dedup-threshold must be 0 (off) or more")
        if self.start is not None and self.start < 0:
            raise ValueError("--start must not be negative")
        if self.duration is not None and self.duration <= 0:
            raise ValueError("--duration must be positive")
