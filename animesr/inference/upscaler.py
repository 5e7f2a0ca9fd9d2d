"""The Upscaler: arrays in, arrays out, for every command.

Takes H×W×C uint8 or uint16 arrays with 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA)
channels and returns the upscaled array in the same dtype and layout. Colour goes through
A2N; alpha is upscaled on its own with bicubic and put back; gray goes through as three
equal channels. Non-finite network output is a ModelOutputError, never pixels.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import torch

from animesr.checkpoint import LoadedModel
from animesr.config import InferenceSettings
from animesr.device import free_memory_bytes, resolve_device, resolve_dtype
from animesr.errors import DeviceError, InputError, ModelOutputError
from animesr.inference.ensemble import TRANSFORMS, self_ensemble
from animesr.inference.tiling import TileCallback, tiled_forward

Notice = Callable[[str], None]

# Peak activation bytes per input pixel per unit of element size, estimated from the network
# (trunk ≈ 8 live maps of 40 channels; reconstruction ≈ 4 maps of 24 channels at s²).
_TRUNK_BYTES_PER_PIXEL = 8 * 40
_RECON_BYTES_PER_PIXEL = 4 * 24


class Upscaler:
    """Holds a loaded model on its device and the inference settings; no per-call state."""

    def __init__(self, loaded: LoadedModel, settings: InferenceSettings = InferenceSettings()) -> None:
        self.settings = settings
        self.value_range = loaded.value_range
        self.device = resolve_device(settings.device)
        self.dtype = resolve_dtype(settings.precision, self.device)
        memory_format = torch.channels_last if settings.channels_last else torch.contiguous_format
        self.model = loaded.model.to(self.device, self.dtype, memory_format=memory_format).eval()
        self.scale = loaded.scale

    # ---- arrays -------------------------------------------------------------------------

    def upscale(self, image: np.ndarray, on_tile: TileCallback | None = None,
                notice: Notice | None = None) -> np.ndarray:
        """One H×W×C image -> (sH)×(sW)×C, same dtype."""
        _check_image(image)
        gray = image.shape[2] in (1, 2)
        colour = np.repeat(image[..., :1], 3, axis=2) if gray else image[..., :3]
        maximum = float(np.iinfo(image.dtype).max)
        batch = torch.from_numpy(np.require(colour, requirements=["C", "W"]))[None]
        out = self.run_pixels(batch, maximum, on_tile, notice)[0].cpu().numpy()
        out = _to_dtype(out, image.dtype)
        if gray:
            out = _to_dtype(colour_mean(out), image.dtype)
        if image.shape[2] in (2, 4):
            out = np.concatenate([out, self._upscale_alpha(image[..., -1:])], axis=2)
        return out

    def upscale_frames(self, frames: np.ndarray, notice: Notice | None = None) -> np.ndarray:
        """A batch of N×H×W×3 uint8 RGB frames -> N×sH×sW×3 uint8, converted on the device."""
        if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
            raise InputError(f"frames must be N×H×W×3 uint8, not {frames.shape} {frames.dtype}")
        out = self.run_pixels(torch.from_numpy(np.require(frames, requirements=["C", "W"])), 255.0, None, notice)
        _require_finite(bool(torch.isfinite(out).all()))
        return out.round().clamp(0, 255).to(torch.uint8).cpu().numpy()

    # ---- tensors ------------------------------------------------------------------------

    @torch.inference_mode()
    def run_pixels(self, pixels: torch.Tensor, maximum: float, on_tile: TileCallback | None,
                   notice: Notice | None) -> torch.Tensor:
        """N×H×W×3 integer pixels (0..maximum) -> N×sH×sW×3 float pixels (0..maximum, unrounded)."""
        pixels = pixels.to(self.device, non_blocking=True)
        x = pixels.permute(0, 3, 1, 2).to(self.dtype) * (self.value_range / maximum)
        x = x.contiguous(memory_format=torch.channels_last) if self.settings.channels_last else x
        y = self.run_network(x, on_tile, notice)
        return (y.float() * (maximum / self.value_range)).permute(0, 2, 3, 1)

    def run_network(self, x: torch.Tensor, on_tile: TileCallback | None = None,
                    notice: Notice | None = None) -> torch.Tensor:
        """N×3×H×W in the model's value range -> N×3×sH×sW; retries with half the tile on OOM."""
        tile = self.settings.tile or self._auto_tile(x)
        while True:
            try:
                return self._forward(x, tile, on_tile)
            except torch.OutOfMemoryError:
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                current = tile or max(x.shape[2:])
                tile = current // 2
                if tile < self.settings.min_tile:
                    raise DeviceError(
                        f"out of memory on {self.device} even with {current}-pixel tiles; "
                        "use --device cpu or a smaller --batch"
                    ) from None
                if notice:
                    notice(f"out of memory on {self.device}: retrying with {tile}-pixel tiles")

    def _forward(self, x: torch.Tensor, tile: int | None, on_tile: TileCallback | None) -> torch.Tensor:
        if not self.settings.tta:
            return self._forward_once(x, tile, on_tile)
        current_pass = 0

        def on_pass(k: int) -> None:
            nonlocal current_pass
            current_pass = k

        def on_pass_tile(done: int, steps: int) -> None:
            if on_tile:
                on_tile(current_pass * steps + done, TRANSFORMS * steps)

        return self_ensemble(lambda v: self._forward_once(v, tile, on_pass_tile), x, on_pass)

    def _forward_once(self, x: torch.Tensor, tile: int | None, on_tile: TileCallback | None) -> torch.Tensor:
        h, w = x.shape[2:]
        if tile is None or (h <= tile and w <= tile):
            return self.model(x)
        storage = x.to("cpu") if self.device.type == "cuda" else x
        return tiled_forward(self.model, storage, tile, self.device, on_tile).to(self.device)

    def _auto_tile(self, x: torch.Tensor) -> int | None:
        free = free_memory_bytes(self.device)
        if free is None:
            return None
        element = torch.finfo(self.dtype).bits // 8
        per_pixel = x.shape[0] * element * (_TRUNK_BYTES_PER_PIXEL + _RECON_BYTES_PER_PIXEL * self.scale**2)
        # the whole output stays on the device beside the tiles, and with --tta its float32 sum too
        resident = x.numel() * self.scale**2 * (element + (4 if self.settings.tta else 0))
        pixels = 0.6 * max(0, free - resident) / per_pixel
        if pixels >= x.shape[2] * x.shape[3]:
            return None
        return max(self.settings.min_tile, int(pixels**0.5) // 8 * 8)

    def _upscale_alpha(self, alpha: np.ndarray) -> np.ndarray:
        h, w = alpha.shape[:2]
        resized = cv2.resize(alpha[..., 0], (w * self.scale, h * self.scale), interpolation=cv2.INTER_CUBIC)
        return resized[..., None]


def colour_mean(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32).mean(axis=2, keepdims=True)


def _to_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    _require_finite(bool(np.isfinite(values).all()))
    maximum = np.iinfo(dtype).max
    return np.clip(np.round(values), 0, maximum).astype(dtype)


def _require_finite(finite: bool) -> None:
    # NaN and inf would become black or arbitrary pixels: a damaged model must not look like a picture
    if not finite:
        raise ModelOutputError("the network gave NaN or infinite values (weights out of range, or an overflow "
                               "at half precision); nothing was written")


def _check_image(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] not in (1, 2, 3, 4):
        raise InputError(f"images must be H×W×C with 1, 2, 3 or 4 channels, not shape {image.shape}")
    if image.dtype not in (np.uint8, np.uint16):
        raise InputError(f"images must be uint8 or uint16, not {image.dtype}")
