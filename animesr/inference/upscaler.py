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
from animesr.device import available_ram_bytes, free_memory_bytes
from animesr.errors import DeviceError, InputError, ModelOutputError
from animesr.imaging import check_image
from animesr.inference.backends import InferenceBackend, open_backend
from animesr.inference.backends.base import describe
from animesr.inference.backends.torch_backend import TorchBackend
from animesr.inference.ensemble import TRANSFORMS, self_ensemble
from animesr.inference.tiling import RECONSTRUCT_ELEMENTS_PER_PIXEL, TRUNK_ELEMENTS_PER_PIXEL, TileCallback

Notice = Callable[[str], None]

# Exact tiling keeps ~3 full feature maps of 40 channels (float32) in host memory.
_TILED_MAPS_BYTES_PER_PIXEL = 3 * 40 * 4
# On the CPU the network's working set is held to this (or half the available RAM, if less);
# images whose whole-image estimate fits run untiled. 1920×1080 at x4 then peaks under 3 GB RSS.
CPU_BUDGET_BYTES = 2 * 2**30


class Upscaler:
    """Holds a backend (with its own copy of the model) and the inference settings; no per-call state."""

    def __init__(self, loaded: LoadedModel, settings: InferenceSettings = InferenceSettings()) -> None:
        self.settings = settings
        self.value_range = loaded.value_range
        self.scale = loaded.scale
        self._loaded = loaded
        self.backend: InferenceBackend = open_backend(loaded, settings)
        self.device = self.backend.device
        self._torch: TorchBackend | None = self.backend if isinstance(self.backend, TorchBackend) else None
        self._pinned: dict[tuple[int, ...], torch.Tensor] = {}

    @property
    def precision(self) -> str:
        """float32 | float16 | bfloat16: what the network computes in."""
        return self.backend.precision

    @property
    def dtype(self) -> torch.dtype:
        return getattr(torch, self.precision)

    @property
    def model(self) -> torch.nn.Module:
        """The network as a torch module: the torch backend's (a copy: the loaded model is never changed),
        or a float32 CPU copy beside another backend."""
        if self._torch is None:
            self._torch = TorchBackend(self._loaded, torch.device("cpu"), torch.float32, self.settings.channels_last)
        return self._torch.model

    def describe(self) -> str:
        """'backend openvino on CPU, float32' for the first line of a command."""
        return describe(self.backend)

    # ---- arrays -------------------------------------------------------------------------

    def upscale(self, image: np.ndarray, on_tile: TileCallback | None = None,
                notice: Notice | None = None) -> np.ndarray:
        """One H×W×C image -> (sH)×(sW)×C, same dtype."""
        check_image(image)
        gray = image.shape[2] in (1, 2)
        colour = np.repeat(image[..., :1], 3, axis=2) if gray else image[..., :3]
        maximum = float(np.iinfo(image.dtype).max)
        batch = torch.from_numpy(np.require(colour, requirements=["C", "W"]))[None]
        out = self.run_pixels(batch, maximum, on_tile, notice)[0].cpu().numpy()  # float32, writable
        self._require_finite(bool(np.isfinite(out).all()))
        out = _to_dtype(out, image.dtype)
        if gray:
            out = _to_dtype(colour_mean(out), image.dtype)
        if image.shape[2] in (2, 4):
            out = np.concatenate([out, self._upscale_alpha(image[..., -1:])], axis=2)
        return out

    def upscale_frames(self, frames: np.ndarray, notice: Notice | None = None) -> np.ndarray:
        """A batch of N×H×W×3 uint8 RGB frames -> N×sH×sW×3 uint8, converted on the device."""
        if (not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[3] != 3
                or frames.dtype != np.uint8 or frames.size == 0):
            shape = f"{frames.shape} {frames.dtype}" if isinstance(frames, np.ndarray) else type(frames).__name__
            raise InputError(f"frames must be a non-empty N×H×W×3 uint8 array, not {shape}")
        with torch.inference_mode():
            out = self.run_pixels(self._to_device(frames), 255.0, None, notice)
            self._require_finite(bool(torch.isfinite(out).all()))
            return out.round_().clamp_(0, 255).to(torch.uint8).cpu().numpy()  # the one sync per batch

    def _to_device(self, frames: np.ndarray) -> torch.Tensor:
        """Host frames -> the device; on CUDA through a pinned buffer reused per shape (asynchronous copy).
        Reuse is safe: the previous batch's result was copied back (a sync) before this call."""
        if self.device.type != "cuda":
            return torch.from_numpy(np.require(frames, requirements=["C", "W"]))
        pinned = self._pinned.get(frames.shape)
        if pinned is None:
            pinned = self._pinned[frames.shape] = torch.empty(frames.shape, dtype=torch.uint8, pin_memory=True)
        pinned.numpy()[...] = frames
        return pinned.to(self.device, non_blocking=True)

    # ---- tensors ------------------------------------------------------------------------

    @torch.inference_mode()
    def run_pixels(self, pixels: torch.Tensor, maximum: float, on_tile: TileCallback | None,
                   notice: Notice | None) -> torch.Tensor:
        """N×H×W×3 integer pixels (0..maximum) -> N×sH×sW×3 float pixels (0..maximum, unrounded)."""
        pixels = pixels.to(self.device, non_blocking=True)
        # scaled in float32 before any reduced precision: 65535 is inf in fp16 (the backend converts)
        x = pixels.permute(0, 3, 1, 2).float().mul_(self.value_range / maximum)
        y = self.run_network(x, on_tile, notice)
        y = y if y.dtype == torch.float32 else y.float()
        return y.mul_(maximum / self.value_range).permute(0, 2, 3, 1)

    def run_network(self, x: torch.Tensor, on_tile: TileCallback | None = None,
                    notice: Notice | None = None) -> torch.Tensor:
        """N×3×H×W float32 in the model's value range -> N×3×sH×sW (a new tensor); retries with half the
        tile on running out of memory."""
        tile = self.settings.tile or self._auto_tile(x)
        while True:
            try:
                return self._forward(x, tile, on_tile)
            except (torch.OutOfMemoryError, MemoryError):
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
            return self.backend.run(x)
        return self.backend.run_tiled(x, tile, on_tile)

    def _auto_tile(self, x: torch.Tensor) -> int | None:
        """The tile for this input: what memory allows, or the backend's fastest tile where that is smaller."""
        tile = self._memory_tile(x)
        fastest = self.backend.capabilities.fastest_tile
        if fastest is None or max(x.shape[2:]) <= fastest:
            return tile
        return fastest if tile is None else min(tile, fastest)

    def _memory_tile(self, x: torch.Tensor) -> int | None:
        element = torch.finfo(self.dtype).bits // 8
        per_pixel = x.shape[0] * element * (TRUNK_ELEMENTS_PER_PIXEL + RECONSTRUCT_ELEMENTS_PER_PIXEL * self.scale**2)
        # the whole output stays on the device beside the tiles, and with --tta its float32 sum too
        resident = x.numel() * self.scale**2 * (element + (4 if self.settings.tta else 0))
        pixels = x.shape[2] * x.shape[3]
        if self.device.type == "cuda":
            free = free_memory_bytes(self.device)
            fit = 0.6 * max(0, free - resident) / per_pixel
        else:
            available = available_ram_bytes()
            if available is None:
                return None
            budget = min(CPU_BUDGET_BYTES, available // 2)
            if per_pixel * pixels <= budget:
                return None  # the whole image fits: no tiling overhead
            held = x.shape[0] * pixels * _TILED_MAPS_BYTES_PER_PIXEL  # the output is already in `resident`
            fit = max(0, budget - resident - held) / per_pixel
        if fit >= pixels:
            return None
        return max(self.settings.min_tile, int(fit**0.5) // 8 * 8)

    def _require_finite(self, finite: bool) -> None:
        # NaN and inf would become black or arbitrary pixels: a damaged model must not look like a picture
        if not finite:
            raise ModelOutputError(f"the model {self._loaded.label} gave NaN or infinite values (weights out "
                                   "of range, or an overflow at half precision)")

    def _upscale_alpha(self, alpha: np.ndarray) -> np.ndarray:
        h, w = alpha.shape[:2]
        resized = cv2.resize(alpha[..., 0], (w * self.scale, h * self.scale), interpolation=cv2.INTER_CUBIC)
        return resized[..., None]


def colour_mean(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32).mean(axis=2, keepdims=True)


def _to_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Finite float pixels -> integers, rounding and clipping in place (large outputs: no float copies)."""
    maximum = np.iinfo(dtype).max
    np.rint(values, out=values)
    np.clip(values, 0, maximum, out=values)
    return values.astype(dtype)
