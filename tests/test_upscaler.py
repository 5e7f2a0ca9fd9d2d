"""The Upscaler: dtypes, channel layouts, alpha, gray, and out-of-memory retries."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from animesr import Upscaler
from animesr.config import InferenceSettings
from animesr.errors import DeviceError, InputError, ModelOutputError
from conftest import smooth_image, tiny_loaded

CPU = InferenceSettings(device="cpu")


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_dtype_and_layout_are_kept(dtype, channels: int) -> None:
    image = smooth_image(14, 19, channels=channels, dtype=dtype)
    out = Upscaler(tiny_loaded(2), CPU).upscale(image)
    assert out.dtype == dtype
    assert out.shape == (28, 38, channels)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_scales(scale: int) -> None:
    out = Upscaler(tiny_loaded(scale), CPU).upscale(smooth_image(10, 7))
    assert out.shape == (10 * scale, 7 * scale, 3)


def test_uint16_uses_the_full_range() -> None:
    # the same picture at 8 and 16 bits gives the same result, to within 8-bit rounding
    image8 = smooth_image(16, 16)
    image16 = image8.astype(np.uint16) * 257
    upscaler = Upscaler(tiny_loaded(2, value_range=255.0), CPU)
    out8, out16 = upscaler.upscale(image8), upscaler.upscale(image16)
    assert np.abs(out16.astype(np.float64) / 257.0 - out8).max() <= 1.0
    assert out16.max() > 255  # really 16-bit values, not 8-bit ones in a 16-bit array


def test_alpha_is_upscaled_separately_and_recombined() -> None:
    colour = smooth_image(16, 20)
    alpha = np.full((16, 20, 1), 255, dtype=np.uint8)
    alpha[:, :8] = 0  # transparent left part
    rgba = np.concatenate([colour, alpha], axis=2)
    upscaler = Upscaler(tiny_loaded(2), CPU)
    out = upscaler.upscale(rgba)
    assert out.shape == (32, 40, 4)
    np.testing.assert_array_equal(out[..., :3], upscaler.upscale(colour))  # colour unaffected by alpha
    assert (out[:, 20:, 3] == 255).all()  # fully-opaque region stays 255
    assert (out[:, :12, 3] == 0).all()  # transparent region stays 0

    opaque = np.concatenate([colour, np.full((16, 20, 1), 255, np.uint8)], axis=2)
    assert (upscaler.upscale(opaque)[..., 3] == 255).all()


def test_gray_in_gray_out() -> None:
    gray = smooth_image(12, 12, channels=1)
    upscaler = Upscaler(tiny_loaded(2), CPU)
    out = upscaler.upscale(gray)
    assert out.shape == (24, 24, 1)
    # gray goes through the network as three equal channels, then back to one
    as_rgb = upscaler.upscale(np.repeat(gray, 3, axis=2)).astype(np.float32).mean(axis=2, keepdims=True)
    assert np.abs(out.astype(np.float32) - as_rgb).max() <= 1.0


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 5), np.uint8),
                                 np.zeros((4, 4, 3), np.float32)])
def test_unsupported_arrays_are_input_errors(bad: np.ndarray) -> None:
    with pytest.raises(InputError):
        Upscaler(tiny_loaded(2), CPU).upscale(bad)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_gray_alpha_stays_gray_alpha(dtype) -> None:
    gray = smooth_image(12, 10, channels=1, dtype=dtype, seed=2)
    alpha = smooth_image(12, 10, channels=1, dtype=dtype, seed=3)
    upscaler = Upscaler(tiny_loaded(2), CPU)
    out = upscaler.upscale(np.concatenate([gray, alpha], axis=2))
    assert out.shape == (24, 20, 2) and out.dtype == dtype
    np.testing.assert_array_equal(out[..., :1], upscaler.upscale(gray))  # the grey goes through as grey
    rgba = upscaler.upscale(np.concatenate([gray, gray, gray, alpha], axis=2))
    np.testing.assert_array_equal(out[..., 1], rgba[..., 3])  # alpha as for RGBA


def _overflowing(scale: int = 2):
    """Finite weights whose output overflows float32: NaN/inf at the end of the network."""
    loaded = tiny_loaded(scale)
    with torch.no_grad():
        loaded.model.tail.weight.fill_(3e38)
    return loaded


def test_non_finite_output_is_an_error_never_pixels() -> None:
    upscaler = Upscaler(_overflowing(), CPU)
    for image in (smooth_image(8, 8), smooth_image(8, 8, channels=1, dtype=np.uint16)):
        with pytest.raises(ModelOutputError, match="the model tiny gave NaN or infinite"):
            upscaler.upscale(image)
    with pytest.raises(ModelOutputError, match="the model tiny gave NaN or infinite"):
        upscaler.upscale_frames(np.stack([smooth_image(8, 8)] * 2))


def test_frames_batch() -> None:
    frames = np.stack([smooth_image(9, 11, seed=i) for i in range(3)])
    upscaler = Upscaler(tiny_loaded(2), CPU)
    out = upscaler.upscale_frames(frames)
    assert out.shape == (3, 18, 22, 3) and out.dtype == np.uint8
    for i in range(3):  # batching does not mix images (per-image ADM statistics)
        assert np.abs(out[i].astype(int) - upscaler.upscale(frames[i]).astype(int)).max() <= 1


def test_unknown_device_is_a_device_error() -> None:
    with pytest.raises(DeviceError):
        Upscaler(tiny_loaded(2), InferenceSettings(device="tpu"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_is_a_device_error() -> None:
    with pytest.raises(DeviceError, match="no CUDA"):
        Upscaler(tiny_loaded(2), InferenceSettings(device="cuda"))


# ---- out of memory ----------------------------------------------------------------------------

class _FlakyForward:
    """Wraps Upscaler._forward: raises OutOfMemoryError for the first `failures` calls."""

    def __init__(self, real, failures: int) -> None:
        self.real, self.failures, self.tiles = real, failures, []

    def __call__(self, x, tile, on_tile):
        self.tiles.append(tile)
        if len(self.tiles) <= self.failures:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.real(x, tile, on_tile)


def test_out_of_memory_retries_with_half_the_tile(monkeypatch) -> None:
    image = smooth_image(40, 40)
    upscaler = Upscaler(tiny_loaded(2), InferenceSettings(device="cpu", tile=64))
    expected = upscaler.upscale(image)
    flaky = _FlakyForward(upscaler._forward, failures=1)
    monkeypatch.setattr(upscaler, "_forward", flaky)
    notices: list[str] = []
    out = upscaler.upscale(image, notice=notices.append)
    assert flaky.tiles == [64, 32]
    assert len(notices) == 1 and "32-pixel tiles" in notices[0]
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 1  # exact tiling: same picture


def test_out_of_memory_without_a_tile_starts_from_the_image_size(monkeypatch) -> None:
    upscaler = Upscaler(tiny_loaded(2), CPU)
    flaky = _FlakyForward(upscaler._forward, failures=1)
    monkeypatch.setattr(upscaler, "_forward", flaky)
    notices: list[str] = []
    out = upscaler.upscale(smooth_image(80, 70), notice=notices.append)
    assert flaky.tiles == [None, 40]
    assert out.shape == (160, 140, 3) and notices


def test_out_of_memory_below_the_smallest_tile_is_a_device_error(monkeypatch) -> None:
    upscaler = Upscaler(tiny_loaded(2), InferenceSettings(device="cpu", tile=64))
    flaky = _FlakyForward(upscaler._forward, failures=10**6)
    monkeypatch.setattr(upscaler, "_forward", flaky)
    notices: list[str] = []
    with pytest.raises(DeviceError, match="out of memory"):
        upscaler.upscale(smooth_image(40, 40), notice=notices.append)
    assert flaky.tiles == [64, 32]  # 16 < min_tile (32): give up instead of trying
    assert len(notices) == 1


def test_tiles_are_sized_from_free_memory_less_the_output_held_on_the_device(monkeypatch) -> None:
    free = {"bytes": 2**40}
    monkeypatch.setattr("animesr.inference.upscaler.free_memory_bytes", lambda device: free["bytes"])
    plain = Upscaler(tiny_loaded(4), InferenceSettings(device="cpu", backend="torch"))
    tta = Upscaler(tiny_loaded(4), InferenceSettings(device="cpu", backend="torch", tta=True))
    plain.device = tta.device = torch.device("cuda")  # the CUDA formula, without a GPU (no tensor goes there)
    x = torch.zeros(1, 3, 200, 200)
    assert plain._memory_tile(x) is None  # room for the whole image
    free["bytes"] = 100 * 2**20
    plain_tile, tta_tile = plain._memory_tile(x), tta._memory_tile(x)
    assert plain_tile is not None and tta_tile is not None
    assert 32 <= tta_tile < plain_tile < 200 and plain_tile % 8 == 0 == tta_tile % 8
    free["bytes"] = 10 * 2**20  # less than the x4 output and its float32 sum
    assert tta._memory_tile(x) == 32


def test_cpu_tiles_are_sized_from_available_ram(monkeypatch) -> None:
    ram = {"bytes": 2**40}
    monkeypatch.setattr("animesr.inference.upscaler.available_ram_bytes", lambda: ram["bytes"])
    plain = Upscaler(tiny_loaded(4), InferenceSettings(device="cpu"))
    tta = Upscaler(tiny_loaded(4), InferenceSettings(device="cpu", tta=True))
    x = torch.zeros(1, 3, 200, 200)
    assert plain._memory_tile(x) is None  # fits in the CPU budget: whole image, no tiling overhead
    big = plain._memory_tile(torch.zeros(1, 3, 1080, 1920))  # 1920×1080 at x4 is tiled by default,
    assert big is not None and big >= 256  # in tiles large enough to cost little (the held maps counted once)
    ram["bytes"] = 120 * 2**20  # half of it is the budget; the whole 200×200 image needs ~300 MB at x4
    plain_tile, tta_tile = plain._memory_tile(x), tta._memory_tile(x)
    assert plain_tile is not None and tta_tile is not None
    assert 32 <= tta_tile < plain_tile < 200 and plain_tile % 8 == 0 == tta_tile % 8
    ram["bytes"] = None  # the system does not say: whole image, as before
    assert plain._memory_tile(x) is None


def test_torch_on_the_cpu_runs_cache_sized_tiles_where_they_are_faster(monkeypatch) -> None:
    from animesr.inference.backends.torch_backend import CPU_FASTEST_TILE

    monkeypatch.setattr("animesr.inference.upscaler.available_ram_bytes", lambda: 2**40)
    torch_cpu = Upscaler(tiny_loaded(2), InferenceSettings(device="cpu", backend="torch"))
    assert torch_cpu._auto_tile(torch.zeros(1, 3, 100, CPU_FASTEST_TILE)) is None  # small: whole
    assert torch_cpu._auto_tile(torch.zeros(1, 3, 432, 576)) == CPU_FASTEST_TILE  # fits whole, but tiles are faster
    monkeypatch.setattr("animesr.inference.upscaler.available_ram_bytes", lambda: 120 * 2**20)
    assert torch_cpu._auto_tile(torch.zeros(1, 3, 432, 576)) < CPU_FASTEST_TILE  # memory asks for smaller ones
    image = smooth_image(230, 250)
    default = torch_cpu.upscale(image)
    whole = Upscaler(tiny_loaded(2), InferenceSettings(device="cpu", backend="torch", tile=4096)).upscale(image)
    assert np.abs(default.astype(int) - whole.astype(int)).max() <= 1  # exact tiles: the same picture
