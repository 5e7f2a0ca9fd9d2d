"""It is A2N: the authors' weights reproduce the paper's Set5 numbers (protocol in ../shared/docs/A2N.md),
through the Python API and through `animesr upscale-image`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from animesr import Upscaler, load_checkpoint
from animesr.cli import _register, app
from animesr.config import InferenceSettings
from animesr.imaging import bicubic_resize, crop_to_multiple, downscale, read_image, write_image
from animesr.training.metrics import psnr_y

SET5 = ("baby", "bird", "butterfly", "head", "woman")
EXPECTED = {2: 38.06, 3: 34.48}
BICUBIC = {2: 33.67, 3: 30.40}
TOLERANCE = 0.02

pytestmark = pytest.mark.slow


def _pairs(set5_dir: Path, scale: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    pairs = []
    for name in SET5:
        hr = crop_to_multiple(read_image(set5_dir / f"{name}.png"), scale)
        pairs.append((name, hr, downscale(hr, scale)))
    return pairs


_CACHE: dict[int, dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}


def _api_results(set5_dir: Path, official_dir: Path, scale: int) -> dict[str, tuple[np.ndarray, ...]]:
    """{name: (HR, LR, SR)} from the Python API; computed once per scale for the module."""
    if scale in _CACHE:
        return _CACHE[scale]
    loaded = load_checkpoint(official_dir / f"aan_x{scale}.pt", scale=scale)
    assert loaded.value_range == 255.0
    upscaler = Upscaler(loaded, InferenceSettings(device="cpu"))
    _CACHE[scale] = {name: (hr, lr, upscaler.upscale(lr)) for name, hr, lr in _pairs(set5_dir, scale)}
    return _CACHE[scale]


def test_bicubic_reference(set5_dir) -> None:
    for scale, expected in BICUBIC.items():
        scores = []
        for _, hr, lr in _pairs(set5_dir, scale):
            up = bicubic_resize(lr, hr.shape[1], hr.shape[0])
            scores.append(psnr_y(up, hr, border=scale))
        assert float(np.mean(scores)) == pytest.approx(expected, abs=TOLERANCE)


@pytest.mark.parametrize("scale", [2, 3])
def test_set5_parity_python_api(set5_dir, official_dir, scale: int) -> None:
    results = _api_results(set5_dir, official_dir, scale)
    scores = []
    for hr, _, sr in results.values():
        assert sr.shape == hr.shape and sr.dtype == np.uint8
        scores.append(psnr_y(sr, hr, border=scale))
    mean = float(np.mean(scores))
    assert mean == pytest.approx(EXPECTED[scale], abs=TOLERANCE), f"x{scale} Set5 Y-PSNR {mean:.3f}"
    assert mean - BICUBIC[scale] > 4.0


def test_set5_parity_cli(tmp_path: Path, set5_dir, official_dir, authors_x2) -> None:
    """`animesr upscale-image set5_lr/ -o out/ --scale 2 --model aan_x2.pt`, then measure the files."""
    api = _api_results(set5_dir, official_dir, 2)
    lr_dir, out_dir = tmp_path / "set5_lr", tmp_path / "out"
    lr_dir.mkdir()
    for name, (_, lr, _) in api.items():
        write_image(lr_dir / f"{name}.png", lr)
    _register()
    result = CliRunner().invoke(
        app, ["upscale-image", str(lr_dir), "-o", str(out_dir), "--scale", "2", "--model", str(authors_x2),
              "--device", "cpu"],
    )
    assert result.exit_code == 0, result.output
    scores = []
    for name, (hr, _, sr_api) in api.items():
        sr = read_image(out_dir / f"{name}.png")
        np.testing.assert_array_equal(sr, sr_api)  # the CLI writes exactly what the API returns
        scores.append(psnr_y(sr, hr, border=2))
    assert float(np.mean(scores)) == pytest.approx(EXPECTED[2], abs=TOLERANCE)
