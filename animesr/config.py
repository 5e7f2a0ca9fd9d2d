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
