"""Self-ensemble (TTA ×8): exact inverses, the group mean, and its use by the Upscaler."""

from __future__ import annotations

import numpy as np
import torch

from animesr.config import InferenceSettings
from animesr.inference.ensemble import TRANSFORMS, self_ensemble, transform, untransform
from animesr.inference.upscaler import Upscaler
from conftest import smooth_image, tiny_loaded


def test_each_transform_is_undone_exactly_and_all_eight_differ() -> None:
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    seen = set()
    for k in range(TRANSFORMS):
        moved = transform(x, k)
        assert moved.shape[2:] == ((4, 5) if k % 2 == 0 else (5, 4))
        torch.testing.assert_close(untransform(moved, k), x, rtol=0, atol=0)
        seen.add(tuple(moved.flatten().tolist()))
    assert len(seen) == TRANSFORMS


def test_an_equivariant_forward_is_unchanged() -> None:
    def nearest_x2(v: torch.Tensor) -> torch.Tensor:
        return v.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)

    x = torch.rand(1, 3, 6, 9)
    torch.testing.assert_close(self_ensemble(nearest_x2, x), nearest_x2(x))


def test_the_result_is_the_mean_over_the_group() -> None:
    # a forward that is not rotation-invariant: adds a ramp across the width it is given
    def ramp(v: torch.Tensor) -> torch.Tensor:
        return v + torch.linspace(0, 1, v.shape[3])

    x = torch.zeros(1, 1, 4, 6)
    passes: list[int] = []
    out = self_ensemble(ramp, x, on_pass=passes.append)
    expected = sum(untransform(ramp(transform(x, k)), k) for k in range(TRANSFORMS)) / TRANSFORMS
    torch.testing.assert_close(out, expected)
    assert passes == list(range(TRANSFORMS))
    # horizontal and vertical ramps, in both directions, cancel to their mean everywhere
    torch.testing.assert_close(out, torch.full_like(out, 0.5))


def test_upscaler_tta_averages_the_model_over_the_eight_transforms() -> None:
    loaded = tiny_loaded(2)
    image = smooth_image(12, 17)
    plain = Upscaler(loaded, InferenceSettings(device="cpu"))
    tta = Upscaler(loaded, InferenceSettings(device="cpu", tta=True)).upscale(image)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    with torch.inference_mode():
        mean = sum(untransform(plain.model(transform(x, k)), k) for k in range(TRANSFORMS)) / TRANSFORMS
    expected = np.clip(np.round(mean[0].permute(1, 2, 0).numpy() * 255), 0, 255).astype(np.uint8)
    assert np.abs(tta.astype(int) - expected).max() <= 1
    assert np.abs(tta.astype(int) - plain.upscale(image)).max() > 0  # the ensemble really differs


def test_tta_with_tiles_equals_tta_without_and_reports_progress_across_passes() -> None:
    loaded = tiny_loaded(2)
    image = smooth_image(40, 33)
    whole = Upscaler(loaded, InferenceSettings(device="cpu", tta=True)).upscale(image)
    calls: list[tuple[int, int]] = []
    tiled = Upscaler(loaded, InferenceSettings(device="cpu", tta=True, tile=32)).upscale(
        image, on_tile=lambda done, total: calls.append((done, total)))
    assert np.abs(tiled.astype(int) - whole).max() <= 1
    totals = {total for _, total in calls}
    assert len(totals) == 1 and totals.pop() % TRANSFORMS == 0
    done = [d for d, _ in calls]
    assert done == sorted(done) and done[-1] == calls[-1][1]


def test_frames_use_tta_too() -> None:
    loaded = tiny_loaded(2)
    frames = np.stack([smooth_image(10, 14, seed=s) for s in range(2)])
    tta = Upscaler(loaded, InferenceSettings(device="cpu", tta=True))
    out = tta.upscale_frames(frames)
    assert np.abs(out.astype(int) - np.stack([tta.upscale(f) for f in frames])).max() <= 1
    plain = Upscaler(loaded, InferenceSettings(device="cpu")).upscale_frames(frames)
    assert np.abs(out.astype(int) - plain).max() > 0
