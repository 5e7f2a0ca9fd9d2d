"""Degradations: shapes, purity in (seed, i), real damage, codecs, and their use in training data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from animesr.data.dataset import PairedPatches, unsharp_mask
from animesr.data.degrade import (CLEAN, PRESETS, Degradation, degrade, gaussian_kernel, parse_preset,
                                  still_roundtrip, video_roundtrip)
from animesr.imaging import downscale
from animesr.training.metrics import psnr_y
from conftest import small_dataset, smooth_image


def _lines(height: int, width: int) -> np.ndarray:
    """Line art: thin dark strokes on flat colours, where blocks and ringing show."""
    image = np.full((height, width, 3), (235, 210, 190), np.uint8)
    image[height // 3:, : width // 2] = (90, 140, 200)
    for offset in range(0, width, 11):
        image[:, offset: offset + 2] = 20
    image[::9] = 30
    return image


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_every_preset_makes_the_exact_lr_size(name: str, scale: int) -> None:
    hr = smooth_image(37 * scale, 41 * scale, seed=scale)  # odd LR sides: 4:2:0 codecs need padding
    lr = degrade(hr, scale, PRESETS[name], np.random.default_rng([0, 1]))
    assert lr.shape == (37, 41, 3) and lr.dtype == np.uint8


@pytest.mark.parametrize("name", sorted(set(PRESETS) - {"clean"}))
def test_a_sample_is_a_pure_function_of_its_seed(name: str) -> None:
    hr = _lines(96, 96)
    first = [degrade(hr, 2, PRESETS[name], np.random.default_rng([7, i])) for i in range(6)]
    again = [degrade(hr, 2, PRESETS[name], np.random.default_rng([7, i])) for i in range(6)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert len({a.tobytes() for a in first}) > 1  # and different samples differ


def test_clean_is_the_bicubic_down_scaling() -> None:
    hr = smooth_image(64, 80)
    assert np.array_equal(degrade(hr, 2, CLEAN, np.random.default_rng(0)), downscale(hr, 2))


@pytest.mark.parametrize("name", ["dvd", "web", "vhs"])
def test_degrading_presets_damage_the_picture_more_than_bicubic(name: str) -> None:
    hr = _lines(128, 128)
    bicubic = downscale(hr, 2)
    losses = [psnr_y(degrade(hr, 2, PRESETS[name], np.random.default_rng([0, i])), bicubic, 0) for i in range(8)]
    assert np.mean(losses) < 38, losses  # visibly different from the clean LR on average


@pytest.mark.parametrize("codec,low,high", [("h264", 18, 45), ("hevc", 20, 45), ("mpeg2", 2, 31)])
def test_video_codecs_round_trip_in_memory_with_their_quality(codec: str, low: int, high: int) -> None:
    image = _lines(48, 64)
    good, bad = video_roundtrip(image, codec, low), video_roundtrip(image, codec, high)
    assert good.shape == bad.shape == image.shape
    assert psnr_y(good, image, 0) > psnr_y(bad, image, 0) > 15
    assert np.array_equal(bad, video_roundtrip(image, codec, high))  # deterministic (one thread)


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_still_codecs_lose_more_at_lower_quality(fmt: str) -> None:
    image = _lines(48, 64)
    assert psnr_y(still_roundtrip(image, fmt, 95), image, 0) > psnr_y(still_roundtrip(image, fmt, 20), image, 0)


def test_kernels_are_normalised_and_anisotropic_ones_point_their_way() -> None:
    iso = gaussian_kernel(1.5, 1.5, 0.0)
    wide = gaussian_kernel(3.0, 0.5, 0.0)  # wide across x
    assert iso.sum() == pytest.approx(1.0, abs=1e-5) and wide.sum() == pytest.approx(1.0, abs=1e-5)
    centre = wide.shape[0] // 2
    assert wide[centre, centre + 2] > wide[centre + 2, centre]
    assert gaussian_kernel(1.0, 1.0, 0.0, beta=4.0).shape == gaussian_kernel(1.0, 1.0, 0.0).shape


def test_clean_share_keeps_that_share_bicubic() -> None:
    hr = _lines(64, 64)
    bicubic = downscale(hr, 2)
    mixed = Degradation(PRESETS["dvd"], clean_share=0.5)
    clean = sum(np.array_equal(mixed(hr, 2, np.random.default_rng([3, i])), bicubic) for i in range(200))
    assert 70 < clean < 130


def test_unsharp_mask_steepens_edges_and_leaves_flat_areas() -> None:
    image = np.zeros((32, 32, 3), np.uint8)
    image[:, 16:] = 200
    sharp = unsharp_mask(image, 0.5)
    assert sharp[:, 17].min() > 200 - 1 and sharp[:, 17].astype(int).mean() > 200  # overshoot at the edge
    assert np.array_equal(sharp[:, :6], image[:, :6]) and np.array_equal(sharp[:, 28:], image[:, 28:])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_dataset(tmp_path_factory.mktemp("degrade-data"), size=(96, 112), crop=64)


def test_degraded_samples_keep_the_clean_patches_and_are_pure(dataset: Path) -> None:
    clean = PairedPatches(dataset, 2, 16, seed=5)
    degraded = PairedPatches(dataset, 2, 16, seed=5, degradation=Degradation(PRESETS["real"], 0.0))
    again = PairedPatches(dataset, 2, 16, seed=5, degradation=Degradation(PRESETS["real"], 0.0))
    for number in (0, 3, 17):
        (lr_c, hr_c), (lr_d, hr_d), (lr_a, hr_a) = clean[number], degraded[number], again[number]
        assert torch.equal(hr_c, hr_d) and torch.equal(hr_d, hr_a)  # the same patch is drawn
        assert torch.equal(lr_d, lr_a) and lr_d.shape == lr_c.shape == (3, 16, 16)
    assert any(not torch.equal(clean[n][0], degraded[n][0]) for n in range(6))


def test_sharpened_targets_change_only_the_hr(dataset: Path) -> None:
    plain, sharp = PairedPatches(dataset, 2, 16, seed=1), PairedPatches(dataset, 2, 16, seed=1, sharpen=0.5)
    (lr_p, hr_p), (lr_s, hr_s) = plain[4], sharp[4]
    assert torch.equal(lr_p, lr_s) and not torch.equal(hr_p, hr_s)


def test_a_mix_of_presets_draws_each_sample_from_one_of_them_by_weight() -> None:
    hr = _lines(64, 64)
    bicubic = downscale(hr, 2)
    mix = parse_preset("clean:1, web:3")
    assert mix.name == "clean:1,web:3" and [(p.name, w) for p, w in mix.mix] == [("clean", 1.0), ("web", 3.0)]
    samples = [degrade(hr, 2, mix, np.random.default_rng([3, i])) for i in range(80)]
    clean = sum(np.array_equal(lr, bicubic) for lr in samples)
    assert 10 <= clean <= 30  # a quarter of 80, give or take
    only = parse_preset("clean:1,vhs:1e-12")
    assert all(np.array_equal(degrade(hr, 2, only, np.random.default_rng([3, i])), bicubic) for i in range(5))
    assert parse_preset("dvd") is PRESETS["dvd"]


@pytest.mark.parametrize("spec, message", [
    ("tv", "--degrade must be one of clean, dvd, web, vhs, real or a mix like dvd:0.6,web:0.4, not 'tv'"),
    ("dvd:0.5,tv:0.5", "--degrade mix: 'tv' is not one of clean, dvd, web, vhs"),
    ("real:1,dvd:1", "--degrade mix: 'real' is not one of clean, dvd, web, vhs"),
    ("dvd:0,web:1", "--degrade mix: the weight of dvd must be a positive number, not '0'"),
    ("dvd:x", "--degrade mix: the weight of dvd must be a positive number, not 'x'"),
    ("dvd:nan", "--degrade mix: the weight of dvd must be a positive number, not 'nan'"),
    ("dvd:1,dvd:2", "--degrade mix: each preset may appear once, not 'dvd:1,dvd:2'"),
])
def test_a_bad_mix_is_refused_with_one_line(spec: str, message: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_preset(spec)
    assert str(error.value) == message
