"""Random aligned LR/HR patches with flips and 90° rotations, from an animesr HDF5 file.

Sample number `i` is a pure function of (seed, i): the same run always sees the same
batches, whatever the number of DataLoader workers, so a resumed run continues exactly.
The HDF5 file is opened lazily in each worker (h5py handles must not cross a fork).

Flat patches teach nothing (bicubic already reproduces them) yet cost a full step: a
quarter of the patches cut from anime pictures are flat. A patch whose LR mean absolute
gradient is under `min_detail` grey levels is redrawn, up to `DRAWS` times, from the same
per-sample random stream, so sampling stays a pure function of (seed, i).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import h5py
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from animesr.data.degrade import Degradation
from animesr.data.prepare import check_dataset, content_id
from animesr.errors import DatasetError


DRAWS = 8


class PairedPatches(Dataset):
    def __init__(self, path: Path, scale: int, patch: int, seed: int = 0, min_detail: float = 0.0,
                 degradation: Degradation | None = None, sharpen: float = 0.0) -> None:
        attrs = check_dataset(path, scale)
        self.path, self.scale, self.patch, self.seed = path, scale, patch, seed
        self.content_id = content_id(attrs)
        self.min_detail = min_detail
        self.degradation = degradation if degradation and not degradation.preset.is_clean else None
        self.sharpen = sharpen
        self.lr_size = int(attrs["crop"]) // scale
        if patch > self.lr_size:
            raise DatasetError(f"--patch {patch} is larger than the dataset's LR crops ({self.lr_size} px)")
        with h5py.File(path, "r") as h5:
            if "hr" not in h5:
                raise DatasetError(f"{path} holds no HR crops ('hr'); make it with `animesr prepare`")
            self.samples = h5["hr"].shape[0]
        if self.samples == 0:
            raise DatasetError(f"{path} holds no samples")
        self._file: h5py.File | None = None

    def __len__(self) -> int:
        return self.samples

    def _h5(self) -> h5py.File:
        if self._file is None:
            self._file = h5py.File(self.path, "r")
        return self._file

    def __getitem__(self, number: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample `number` (any non-negative int) -> (LR 3×p×p, HR 3×sp×sp) float in [0, 1]."""
        rng = np.random.default_rng([self.seed, number])
        s, p = self.scale, self.patch
        h5 = self._h5()
        for _ in range(DRAWS):
            index = int(rng.integers(self.samples))
            y, x = (int(v) for v in rng.integers(0, self.lr_size - p + 1, size=2))
            lr = h5[f"lr_x{s}"][index, y: y + p, x: x + p]
            if self.min_detail <= 0 or detail(lr) >= self.min_detail:
                break
        hr = h5["hr"][index, y * s: (y + p) * s, x * s: (x + p) * s]
        flip_h, flip_v, rotate = rng.random(3) < 0.5
        hr = augment(hr, flip_h, flip_v, rotate)
        if self.degradation is None:
            lr = augment(lr, flip_h, flip_v, rotate)
        else:  # its own stream: the patch drawn for sample i does not depend on the degradation
            lr = self.degradation(np.ascontiguousarray(hr), s, np.random.default_rng([self.seed, number, 1]))
        if self.sharpen:
            hr = unsharp_mask(np.ascontiguousarray(hr), self.sharpen)
        return to_tensor(lr), to_tensor(hr)


def detail(image: np.ndarray) -> float:
    """Mean absolute difference between neighbouring pixels (grey levels), across and down."""
    pixels = image.astype(np.int16)
    across = np.abs(np.diff(pixels, axis=1)).mean()
    down = np.abs(np.diff(pixels, axis=0)).mean()
    return float(across + down) / 2


def unsharp_mask(image: np.ndarray, weight: float, sigma: float = 2.0, threshold: float = 10.0) -> np.ndarray:
    """Crisper line art as the target: image + weight × (image − blurred), applied where the
    detail exceeds `threshold` grey levels (with a soft edge), so flat areas gain no noise."""
    pixels = image.astype(np.float32)
    residual = pixels - cv2.GaussianBlur(pixels, (0, 0), sigma)
    mask = (np.abs(residual).max(axis=2, keepdims=True) > threshold).astype(np.float32)
    soft = cv2.GaussianBlur(mask, (0, 0), sigma)[..., None]
    sharpened = pixels + weight * residual * soft
    return np.clip(np.rint(sharpened), 0, 255).astype(np.uint8)


def augment(image: np.ndarray, flip_h: bool, flip_v: bool, rotate: bool) -> np.ndarray:
    if flip_h:
        image = image[:, ::-1]
    if flip_v:
        image = image[::-1]
    if rotate:
        image = np.rot90(image)
    return image


def to_tensor(image: np.ndarray) -> torch.Tensor:
    # H×W×3 uint8 -> 3×H×W float32 in [0, 1]
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0)


class StepSampler(Sampler[int]):
    """Yields sample numbers for steps `start_step`, `start_step + 1`, … `end_step - 1`.

    `batch_size` is the global batch. With several processes (DDP) each rank takes its own
    slice of it, so any number of processes sees the same samples at the same step.
    """

    def __init__(self, start_step: int, end_step: int, batch_size: int, rank: int = 0, world: int = 1) -> None:
        if batch_size % world:
            raise ValueError(f"batch size {batch_size} is not divisible by {world} processes")
        self.start_step, self.end_step = start_step, end_step
        self.batch_size, self.rank, self.per_rank = batch_size, rank, batch_size // world

    def __len__(self) -> int:
        return max(0, self.end_step - self.start_step) * self.per_rank

    def __iter__(self) -> Iterator[int]:
        for step in range(self.start_step, self.end_step):
            first = step * self.batch_size + self.rank * self.per_rank
            yield from range(first, first + self.per_rank)
