"""Exact tiling: A2N's attention dropout pools over the whole image, and the tiler honours that."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from animesr import Upscaler, load_checkpoint
from animesr.config import InferenceSettings
from animesr.imaging import read_image
from animesr.inference.tiling import tile_windows, tiled_forward
from animesr.inference.upscaler import _to_dtype
from animesr.model import A2N
from conftest import tiny_loaded, tiny_model


@pytest.mark.parametrize(("height", "width", "tile", "halo"),
                         [(64, 64, 16, 2), (37, 29, 16, 4), (5, 100, 32, 1), (10, 10, 64, 3), (33, 17, 1, 0)])
def test_tile_windows_cover_the_image_exactly(height: int, width: int, tile: int, halo: int) -> None:
    count = np.zeros((height, width), dtype=int)
    windows = tile_windows(height, width, tile, halo)
    for w in windows:
        assert 0 < w.y1 - w.y0 <= tile and 0 < w.x1 - w.x0 <= tile
        count[w.y0:w.y1, w.x0:w.x1] += 1
        # the window holds the centre grown by `halo` (clipped to the image), and stays inside the image
        assert 0 <= w.hy0 <= max(0, w.y0 - halo) and min(height, w.y1 + halo) <= w.hy1 <= height
        assert 0 <= w.hx0 <= max(0, w.x0 - halo) and min(width, w.x1 + halo) <= w.hx1 <= width
    assert (count == 1).all(), "every pixel in exactly one tile"
    # one window shape for all (a runtime compiled for one shape), and no thin remainder tile
    assert len({(w.hy1 - w.hy0, w.hx1 - w.hx0) for w in windows}) == 1
    heights, widths = {w.y1 - w.y0 for w in windows}, {w.x1 - w.x0 for w in windows}
    assert max(heights) - min(heights) <= len({w.y0 for w in windows}) and \
        max(widths) - min(widths) <= len({w.x0 for w in windows})
    assert len({w.y0 for w in windows}) == -(-height // tile) and len({w.x0 for w in windows}) == -(-width // tile)


def test_tile_windows_rejects_a_zero_tile() -> None:
    with pytest.raises(ValueError):
        tile_windows(8, 8, 0, 1)


def _naive_tiled(model: A2N, x: torch.Tensor, tile: int, halo: int) -> torch.Tensor:
    """What most tools do: each haloed tile through the whole network on its own, centres stitched."""
    s = model.scale
    out = torch.empty(x.shape[0], 3, x.shape[2] * s, x.shape[3] * s)
    for w in tile_windows(x.shape[2], x.shape[3], tile, halo):
        piece = model(x[:, :, w.hy0:w.hy1, w.hx0:w.hx1])
        top, left = (w.y0 - w.hy0) * s, (w.x0 - w.hx0) * s
        out[:, :, w.y0 * s:w.y1 * s, w.x0 * s:w.x1 * s] = \
            piece[:, :, top:top + (w.y1 - w.y0) * s, left:left + (w.x1 - w.x0) * s]
    return out


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize(("height", "width", "tile"), [(37, 29, 16), (23, 41, 8), (17, 17, 17), (9, 50, 12)])
def test_tiled_forward_equals_whole_forward(scale: int, height: int, width: int, tile: int) -> None:
    model = tiny_model(scale, seed=scale)
    torch.manual_seed(0)
    x = torch.rand(2, 3, height, width)  # batch > 1: per-image pooled statistics
    x[1] = x[1] ** 3  # a different image, with different statistics
    with torch.no_grad():
        whole = model(x)
        tiled = tiled_forward(model, x, tile)
    assert tiled.shape == whole.shape
    torch.testing.assert_close(tiled, whole, rtol=1e-4, atol=1e-4)


def test_tiled_forward_reports_every_step() -> None:
    model = tiny_model(2)
    calls: list[tuple[int, int]] = []
    with torch.no_grad():
        tiled_forward(model, torch.rand(1, 3, 20, 20), 8, on_tile=lambda done, total: calls.append((done, total)))
    total = 9 * (2 + len(model.blocks))  # 3×3 tiles; the head, a pass per block, the reconstruction
    assert calls[-1] == (total, total) and len(calls) == total
    assert [d for d, _ in calls] == list(range(1, total + 1))


def test_naive_tiling_does_not_match_tiny() -> None:
    # Guard against a vacuous test: independent tiles change each block's ADM weights (a, b),
    # so naive tiling must be measurably off while the exact tiler stays at rounding level.
    model = tiny_model(2)
    with torch.no_grad():  # let the trunk and the ADM weigh more in the output
        model.blocks[0].project_out.weight.mul_(30.0)
        model.blocks[0].adm[2].weight.mul_(5.0)
    torch.manual_seed(0)
    x = torch.rand(1, 3, 32, 32)
    x[:, :, :16] *= 0.2  # top half dark, bottom half bright: different per-tile statistics
    with torch.no_grad():
        whole = model(x)
        naive_error = (_naive_tiled(model, x, 8, 4) - whole).abs().max().item()
        exact_error = (tiled_forward(model, x, 16) - whole).abs().max().item()
    assert exact_error < 1e-5
    assert naive_error > 50 * max(exact_error, 1e-7)


def test_upscaler_tiled_equals_untiled_tiny() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (45, 70, 3), dtype=np.uint8)
    loaded = tiny_loaded(3)
    whole = Upscaler(loaded, InferenceSettings(device="cpu")).upscale(image)
    tiled = Upscaler(loaded, InferenceSettings(device="cpu", tile=32)).upscale(image)
    assert np.abs(whole.astype(int) - tiled.astype(int)).max() <= 1


@pytest.fixture(scope="module")
def real_crop(anime_val_dir):
    """A 160×128 region of a real anime frame from ../shared/data/anime/val (used as the LR input):
    with 64-pixel tiles that is 3×2 tiles, each window shifted or clipped at some border."""
    image = read_image(anime_val_dir / "anime4k_12_720pto1080p_8.png")
    return np.ascontiguousarray(image[300:428, 560:720])


@pytest.mark.slow
def test_tiled_equals_untiled_with_the_authors_weights(real_crop, authors_x2) -> None:
    loaded = load_checkpoint(authors_x2, scale=2)
    pixels = torch.from_numpy(real_crop)[None]
    whole = Upscaler(loaded, InferenceSettings(device="cpu")).run_pixels(pixels, 255.0, None, None)[0]
    tiled = Upscaler(loaded, InferenceSettings(device="cpu", tile=64)).run_pixels(pixels, 255.0, None, None)[0]
    assert whole.shape == (256, 320, 3)
    # what Upscaler.upscale returns: rounded and clipped to uint8
    whole8, tiled8 = _to_dtype(whole.numpy(), np.uint8), _to_dtype(tiled.numpy(), np.uint8)
    assert np.abs(whole8.astype(int) - tiled8.astype(int)).max() <= 1
    exact_error = (tiled - whole).abs().max().item()
    assert exact_error < 0.05  # grey levels: float summation order only

    # ...while naive tiling (independent tiles, Real-ESRGAN's 10-pixel overlap) does not match
    with torch.no_grad():
        x = pixels.permute(0, 3, 1, 2).float()
        naive = _naive_tiled(loaded.model.to(memory_format=torch.contiguous_format), x, 64, 10)[0]
    naive_error = (naive.permute(1, 2, 0) - whole).abs().max().item()
    assert naive_error > 0.5 and naive_error > 20 * exact_error
