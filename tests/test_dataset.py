"""Random aligned patches with flips and rotations, deterministic per sample number."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from animesr.data.dataset import PairedPatches, StepSampler, detail
from animesr.data.prepare import FORMAT_NAME, FORMAT_VERSION
from animesr.errors import DatasetError


def blocky_dataset(path: Path, scale: int = 2, samples: int = 3, crop: int = 32) -> None:
    """HR made of scale×scale blocks of the LR pixel, so every aligned pair satisfies
    LR == block mean of HR, whatever flip or rotation both got."""
    rng = np.random.default_rng(0)
    lr = rng.integers(0, 256, size=(samples, crop // scale, crop // scale, 3), dtype=np.uint8)
    hr = lr.repeat(scale, axis=1).repeat(scale, axis=2)
    with h5py.File(path, "w") as h5:
        h5["hr"] = hr
        h5[f"lr_x{scale}"] = lr
        h5.attrs.update({"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "crop": crop,
                         "scales": [scale]})


def test_patches_are_aligned_and_augmented(tmp_path: Path) -> None:
    path = tmp_path / "d.h5"
    blocky_dataset(path)
    data = PairedPatches(path, scale=2, patch=6, seed=3)
    orientations = set()
    for number in range(40):
        lr, hr = data[number]
        assert lr.shape == (3, 6, 6) and hr.shape == (3, 12, 12)
        assert lr.dtype == torch.float32 and 0 <= lr.min() and lr.max() <= 1
        block_mean = hr.reshape(3, 6, 2, 6, 2).mean(dim=(2, 4))
        assert torch.equal(block_mean, lr)
        orientations.add(tuple(hr[0, :2, :2].flatten().tolist()))
    assert len(orientations) > 10


def test_sample_depends_only_on_seed_and_number(tmp_path: Path) -> None:
    path = tmp_path / "d.h5"
    blocky_dataset(path)
    a, b = PairedPatches(path, 2, 6, seed=1), PairedPatches(path, 2, 6, seed=1)
    assert torch.equal(a[7][0], b[7][0])
    assert not torch.equal(a[7][0], PairedPatches(path, 2, 6, seed=2)[7][0])


def test_workers_see_the_same_batches(tmp_path: Path) -> None:
    path = tmp_path / "d.h5"
    blocky_dataset(path)
    data = PairedPatches(path, 2, 6, seed=0)

    def batches(workers: int) -> list[torch.Tensor]:
        loader = DataLoader(data, batch_size=4, sampler=StepSampler(2, 5, 4), num_workers=workers)
        return [lr for lr, _ in loader]

    single, double = batches(0), batches(2)
    assert len(single) == 3
    assert all(torch.equal(x, y) for x, y in zip(single, double))


def test_step_sampler_splits_the_global_batch_across_ranks() -> None:
    whole = list(StepSampler(3, 5, 4))
    ranks = [list(StepSampler(3, 5, 4, rank=r, world=2)) for r in (0, 1)]
    assert whole == [12, 13, 14, 15, 16, 17, 18, 19]
    assert ranks == [[12, 13, 16, 17], [14, 15, 18, 19]]


def test_patch_larger_than_crops_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.h5"
    blocky_dataset(path)
    with pytest.raises(DatasetError, match="larger than"):
        PairedPatches(path, 2, 64)


def test_flat_patches_are_redrawn(tmp_path: Path) -> None:
    path = tmp_path / "d.h5"
    blocky_dataset(path, samples=4)
    with h5py.File(path, "r+") as h5:  # crops 0-1 flat grey, crops 2-3 noise
        h5["lr_x2"][:2] = 128
        h5["hr"][:2] = 128

    def flat_share(min_detail: float) -> float:
        data = PairedPatches(path, 2, 6, seed=0, min_detail=min_detail)
        return sum(bool((data[n][0] == data[n][0][0, 0, 0]).all()) for n in range(60)) / 60

    assert flat_share(0.0) > 0.3
    assert flat_share(2.0) < 0.05
    kept = PairedPatches(path, 2, 6, seed=0, min_detail=2.0)
    assert torch.equal(kept[5][1], PairedPatches(path, 2, 6, seed=0, min_detail=2.0)[5][1])
    assert detail(np.full((6, 6, 3), 7, np.uint8)) == 0.0
    assert detail(np.tile(np.array([0, 10], np.uint8), (6, 3)).reshape(6, 6, 1)) == 5.0
