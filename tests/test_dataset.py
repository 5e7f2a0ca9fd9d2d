"""Random aligned patches with flips and rotations, deterministic per sample number."""

from __future__ import annotations

import re
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


def _rewrite(path: Path, name: str, array: np.ndarray) -> None:
    with h5py.File(path, "r+") as h5:
        del h5[name]
        h5[name] = array


@pytest.mark.parametrize("damage, message", [
    (lambda path: _delete(path, "hr"), "holds no HR crops ('hr')"),
    (lambda path: _rewrite(path, "lr_x2", np.zeros((3, 15, 15, 3), np.uint8)), "'lr_x2' is (3, 15, 15, 3), not (N, 16, 16, 3)"),
    (lambda path: _rewrite(path, "hr", np.zeros((3, 32, 32), np.uint8)), "'hr' is (3, 32, 32), not (N, 32, 32, 3)"),
    (lambda path: _rewrite(path, "lr_x2", np.zeros((3, 16, 16, 1), np.uint8)), "not (N, 16, 16, 3) RGB crops"),
    (lambda path: _rewrite(path, "lr_x2", np.zeros((2, 16, 16, 3), np.uint8)), "'lr_x2' holds 2 samples, 'hr' 3"),
    (lambda path: _rewrite(path, "hr", np.zeros((3, 32, 32, 3), np.float32)), "holds float32, not 8-bit"),
    (lambda path: _set(path, "crop", "32"), "attribute 'crop' is '32', not an integer"),
    (lambda path: _set(path, "format_version", "one"), "attribute 'format_version' is 'one'"),
    (lambda path: _set(path, "scales", "2"), "attribute 'scales' is '2'"),
    (lambda path: _set(path, "crop", 33), "crop 33 is not a positive multiple"),
])
def test_a_wrong_layout_is_refused_at_open_in_one_line(tmp_path: Path, damage, message: str) -> None:
    """Our attributes over the wrong arrays gave tracebacks deep in a DataLoader worker, or
    (float pixels) trained on garbage."""
    path = tmp_path / "d.h5"
    blocky_dataset(path)
    damage(path)
    with pytest.raises(DatasetError, match=re.escape(message)) as caught:
        PairedPatches(path, 2, 6)
    assert "\n" not in str(caught.value)


def _delete(path: Path, name: str) -> None:
    with h5py.File(path, "r+") as h5:
        del h5[name]


def _set(path: Path, name: str, value) -> None:
    with h5py.File(path, "r+") as h5:
        h5.attrs[name] = value


def test_a_wrong_layout_is_one_line_from_the_cli(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from animesr.cli import _register, app
    from conftest import handled

    _register()
    path = tmp_path / "d.h5"
    blocky_dataset(path)
    _rewrite(path, "hr", np.zeros((3, 32, 32, 3), np.float32))
    result = CliRunner().invoke(app, ["train", "--data", str(path), "--scale", "2", "--out", str(tmp_path / "run"),
                                      "--patch", "6", "--workers", "0", "--device", "cpu", "--iters", "1"])
    assert result.exit_code == DatasetError.exit_code and handled(result), (result.output, result.exception)
    assert "not 8-bit pixels" in result.output and not (tmp_path / "run").exists()
