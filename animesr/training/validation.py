"""Validation and evaluation: HR images → bicubic LR → model → Y-PSNR / SSIM with a border."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from animesr.data.degrade import CLEAN, Preset, degrade
from animesr.errors import InputError, OutputError
from animesr.imaging import bicubic_resize, crop_to_multiple, list_images, read_image, to_rgb8, write_image
from animesr.inference.upscaler import Upscaler
from animesr.training.metrics import psnr_y, ssim_y


@dataclass(frozen=True)
class ImageScore:
    name: str
    bicubic_psnr: float
    bicubic_ssim: float
    psnr: float
    ssim: float


def load_hr_images(paths: list[Path], crop: int | None, *, skip: Callable[[str], None] | None = None,
                   warn: Callable[[str], None] | None = None) -> list[tuple[str, np.ndarray]]:
    """Read HR images (folders walked), as RGB uint8, centre-cropped to `crop` px when given. With
    `skip`, an unreadable image is reported through it and left out instead of stopping the job;
    with `warn`, an image narrower or lower than `crop` is reported as scored at its own size there."""
    images = []
    for path, _ in list_images(paths, recursive=True):
        try:
            image = to_rgb8(read_image(path))
        except InputError as error:
            if skip is None:
                raise
            skip(str(error))
            continue
        cropped = centre_crop(image, crop)
        if warn is not None and crop is not None and cropped.shape[:2] != (crop, crop):
            h, w = image.shape[:2]
            warn(f"{path.name} is {w}×{h}, smaller than --crop {crop}: scored at {cropped.shape[1]}×{cropped.shape[0]}")
        images.append((path.name, cropped))
    if not images:
        raise InputError("no validation images found" if skip is None else "no image could be read")
    return images


def centre_crop(image: np.ndarray, size: int | None) -> np.ndarray:
    if size is None:
        return image
    h, w = image.shape[:2]
    th, tw = min(size, h), min(size, w)
    top, left = (h - th) // 2, (w - tw) // 2
    return image[top: top + th, left: left + tw]


def degraded_lr(hr: np.ndarray, scale: int, preset: Preset | None, seed: int, index: int) -> np.ndarray:
    """The LR of image `index`: bicubic, or degraded by `preset` reproducibly from (seed, index)."""
    return degrade(hr, scale, preset or CLEAN, np.random.default_rng([seed, index]))


def score_image(name: str, hr: np.ndarray, lr: np.ndarray, upscaler: Upscaler) -> ImageScore:
    """`hr` with sides that are multiples of the scale, and its LR."""
    scale = upscaler.scale
    bicubic = bicubic_resize(lr, hr.shape[1], hr.shape[0])
    sr = upscaler.upscale(lr)
    return ImageScore(
        name=name,
        bicubic_psnr=psnr_y(bicubic, hr, scale),
        bicubic_ssim=ssim_y(bicubic, hr, scale),
        psnr=psnr_y(sr, hr, scale),
        ssim=ssim_y(sr, hr, scale),
    )


def score_images(images: list[tuple[str, np.ndarray]], upscaler: Upscaler,
                 on_image: Callable[[int, int], None] | None = None,
                 preset: Preset | None = None, seed: int = 0) -> list[ImageScore]:
    scores = []
    for i, (name, hr, lr) in enumerate(scored_pairs(images, upscaler.scale, preset, seed)):
        scores.append(score_image(name, hr, lr, upscaler))
        if on_image:
            on_image(i + 1, len(images))
    return scores


def scored_pairs(images: list[tuple[str, np.ndarray]], scale: int, preset: Preset | None,
                 seed: int) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(name, HR cropped to a multiple of `scale`, its LR) of each image, as scoring sees them."""
    for i, (name, hr) in enumerate(images):
        hr = crop_to_multiple(hr, scale)
        yield name, hr, degraded_lr(hr, scale, preset, seed, i)


def save_pairs(images: list[tuple[str, np.ndarray]], scale: int, preset: Preset | None, seed: int,
               folder: Path) -> None:
    """Write the HR (cropped to a multiple of `scale`) and the LR that scoring uses, as
    folder/hr/STEM.png and folder/lr/STEM.png, so other tools can be scored on the same input."""
    stems = [Path(name).stem for name, _ in images]
    twice = sorted({stem for stem in stems if stems.count(stem) > 1})
    if twice:
        raise InputError(f"--save-pairs: more than one image is named {twice[0]}.*; give them different names")
    for kind in ("hr", "lr"):
        try:
            (folder / kind).mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OutputError(f"--save-pairs: cannot make {folder / kind}: {error.strerror or error}") from None
    for (_, hr, lr), stem in zip(scored_pairs(images, scale, preset, seed), stems):
        write_image(folder / "hr" / f"{stem}.png", hr)
        write_image(folder / "lr" / f"{stem}.png", lr)


def mean_score(scores: list[ImageScore]) -> ImageScore:
    def mean(field: str) -> float:
        return float(np.mean([getattr(s, field) for s in scores]))

    return ImageScore("mean", mean("bicubic_psnr"), mean("bicubic_ssim"), mean("psnr"), mean("ssim"))


MIN_VALIDATION_LR = 16  # LR pixels a side: room for SSIM's 11-pixel window after the border, and the codecs


def check_image_sizes(images: list[tuple[str, np.ndarray]], scale: int,
                      skip: Callable[[str], None] | None = None) -> list[tuple[str, np.ndarray]]:
    """Refuse, before any work, an image too small to be scored at `scale`; with `skip`, report it
    through `skip` and leave it out. Returns the images kept."""
    least = MIN_VALIDATION_LR * scale
    kept = []
    for name, image in images:
        height, width = image.shape[:2]
        if min(height, width) >= least:
            kept.append((name, image))
            continue
        message = f"{name} is {width}×{height}: scoring at x{scale} needs at least {least} pixels a side"
        if skip is None:
            raise InputError(message)
        skip(f"{message}; left out")
    if not kept:
        raise InputError(f"no image is large enough to score at x{scale} (at least {least} pixels a side)")
    return kept
