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


def _scores(scale: int, preset: str) -> dict[str, float]:
    """Y-PSNR of bicubic, the clean and the real model on the Lucy crop degraded by `preset`."""
    from animesr.data.degrade import PRESETS
    from animesr.training.validation import degraded_lr

    hr = crop_to_multiple(read_image(SAMPLE), scale)
    lrs = [degraded_lr(hr, scale, PRESETS[preset], seed, 0) for seed in range(3)]
    scores = {"bicubic": sum(psnr_y(bicubic_resize(lr, hr.shape[1], hr.shape[0]), hr, scale) for lr in lrs)}
    for name in ("clean", "real"):
        upscaler = Upscaler(resolve_model(name, scale), InferenceSettings(device="cpu"))
        scores[name] = sum(psnr_y(upscaler.upscale(lr), hr, scale) for lr in lrs)
    return {k: v / len(lrs) for k, v in scores.items()}


@pytest.mark.slow
@pytest.mark.parametrize("scale,preset,over_clean", [(2, "dvd", 0.3), (4, "web", 0.0)])
def test_the_real_model_on_damaged_input(scale: int, preset: str, over_clean: float, monkeypatch) -> None:
    """x2: clearly better than the clean model on DVD-like input. x4: better than the clean model
    on web input, where the clean model is already strong (see the model card)."""
    monkeypatch.delenv("ANIMESR_MODELS", raising=False)
    path = shipped_model_path(scale, "real")
    assert path.is_file() and path.stat().st_size < 5 * 1024 * 1024
    assert load_checkpoint(path).training["degrade"] == preset  # the last fine-tune: the scale's main source
    scores = _scores(scale, preset)
    assert scores["real"] > scores["clean"] + over_clean and scores["real"] > scores["bicubic"] + 0.5, scores


@pytest.mark.slow
@pytest.mark.parametrize("scale,margin", [(2, 2.0), (4, 1.0)])
def test_the_real_model_keeps_clean_input_sharp(scale: int, margin: float, monkeypatch) -> None:
    monkeypatch.delenv("ANIMESR_MODELS", raising=False)
    scores = _scores(scale, "clean")
    assert scores["real"] >= scores["bicubic"] + margin, scores
