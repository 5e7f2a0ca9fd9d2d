"""PyTorch: every device torch has, every precision, exact staged tiling (tiling.py)."""

from __future__ import annotations

import copy
from dataclasses import replace

import torch

from animesr.checkpoint import LoadedModel
from animesr.errors import InputError
from animesr.inference.backends.base import Capabilities
from animesr.inference.tiling import TileCallback, tiled_forward

# On the CPU, exact tiles this size run 1.2–1.4× faster than whole frames and pictures (their feature maps
# stay in the caches): measured with benchmarks/bench_backends.py (576×432 and 1920×1080, x2 and x4).
CPU_FASTEST_TILE = 192

_DTYPES = {"fp32": torch.float32, "exact": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def torch_dtype(precision: str, device: torch.device) -> torch.dtype:
    """auto: fp16 on CUDA, fp32 on the CPU; fast: fp16 on CUDA, bf16 on the CPU."""
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if precision == "fast":
        return torch.float16 if device.type == "cuda" else torch.bfloat16
    if precision not in _DTYPES:
        raise InputError(f"unknown precision {precision!r}")
    return _DTYPES[precision]


class TorchBackend:
    name = "torch"
    capabilities = Capabilities(exact_tiling=True, batch=True, precisions=("float32", "float16", "bfloat16"))

    def __init__(self, loaded: LoadedModel, device: torch.device, dtype: torch.dtype,
                 channels_last: bool = True, compiled: bool = False) -> None:
        self.device, self.dtype, self.target = device, dtype, str(device)
        if device.type == "cpu" and not compiled:  # compiled, whole frames run in the compiled graph
            self.capabilities = replace(self.capabilities, fastest_tile=CPU_FASTEST_TILE)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        # a copy: the caller's model keeps its device, dtype and layout (a second Upscaler must not change the first)
        self.model = copy.deepcopy(loaded.model).to(device, dtype, memory_format=self.memory_format).eval()
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # video frames repeat one shape: pick the fastest kernels once
        self._whole = self.model
        if compiled:  # compiled on the first call of each input shape; on CUDA replayed as a CUDA graph
            mode = "reduce-overhead" if device.type == "cuda" else "default"
            self._whole = torch.compile(self.model, mode=mode, dynamic=False, fullgraph=True)
        self.compiled = compiled

    @property
    def precision(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.dtype).contiguous(memory_format=self.memory_format)

    @torch.inference_mode()
    def run(self, x: torch.Tensor) -> torch.Tensor:
        y = self._whole(self.prepare(x))
        # a CUDA graph's output is overwritten by its next replay: the caller gets its own copy
        return y.clone() if self.compiled and self.device.type == "cuda" else y

    @torch.inference_mode()
    def run_tiled(self, x: torch.Tensor, tile: int, on_tile: TileCallback | None) -> torch.Tensor:
        """Exact staged tiling (tiling.py); feature maps on the host, one tile at a time on the device."""
        storage = self.prepare(x.to("cpu") if self.device.type == "cuda" else x)
        return tiled_forward(self.model, storage, tile, self.device, on_tile).to(self.device)
