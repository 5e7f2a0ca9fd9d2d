"""The models in models/ load, have the right scale, and beat bicubic on an OPEN image."""

from __future__ import annotations

from pathlib import Path

import pytest

from animesr.checkpoint import load_checkpoint
from animesr.config import InferenceSettings
from animesr.imaging import bicubic_resize, crop_to_multiple, downscale, read_image
from animesr.inference.upscaler import Upscaler
from animesr.pretrained import resolve_model, shipped_model_path
from animesr.errors import CheckpointError
from animesr.training.metrics import psnr_y

SAMPLE = Path(__file__).parent / "data" / "renpy_lucy_happy_crop192.png"
REPO_MODELS = Path(__file__).resolve().parents[1] / "models"


@pytest.mark.parametrize("scale", [2, 4])
def test_shipped_model_beats_bicubic_by_two_db(scale: int) -> None:
    path = REPO_MODELS / f"a2n-anime-x{scale}.safetensors"
    assert path.is_file(), f"{path} must ship with animesr"
    assert path.stat().st_size < 5 * 1024 * 1024
    loaded = load_checkpoint(path)
    assert loaded.scale == scale and loaded.value_range in (1.0, 255.0)
    hr = crop_to_multiple(read_image(SAMPLE), scale)
    lr = downscale(hr, scale)
    bicubic = psnr_y(bicubic_resize(lr, hr.shape[1], hr.shape[0]), hr, scale)
    ours = psnr_y(Upscaler(loaded).upscale(lr), hr, scale)
    assert ours >= bicubic + 2.0, (ours, bicubic)


def test_default_model_is_the_shipped_one(monkeypatch) -> None:
    monkeypatch.delenv("ANIMESR_MODELS", raising=False)
    assert shipped_model_path(4) == REPO_MODELS / "a2n-anime-x4.safetensors"
    assert resolve_model(None, 4).scale == 4


def test_no_x3_model_ships(monkeypatch) -> None:
    monkeypatch.delenv("ANIMESR_MODELS", raising=False)
    with pytest.raises(CheckpointError, match="no clean x3 model ships"):
        resolve_model(None, 3)


def test_tta_improves_the_shipped_x2_model() -> None:
    # self-ensemble must help a trained model (a wrong inverse transform would hurt it badly)
    loaded = load_checkpoint(REPO_MODELS / "a2n-anime-x2.safetensors")
    hr = crop_to_multiple(read_image(SAMPLE), 2)
    lr = downscale(hr, 2)
    plain = psnr_y(Upscaler(loaded, InferenceSettings(device="cpu")).upscale(lr), hr, 2)
    tta = psnr_y(Upscaler(loaded, InferenceSettings(device="cpu", tta=True)).upscale(lr), hr, 2)
    assert tta > plain + 0.05, (tta, plain)
