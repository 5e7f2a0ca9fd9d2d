"""ONNX Runtime: the cached ONNX export on the CPU, or on the CUDA, TensorRT or DirectML
execution providers where the installed onnxruntime build has them. float32 only; exact tiling
through the stage graphs (staged.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from animesr.checkpoint import LoadedModel
from animesr.errors import DeviceError, InputError
from animesr.inference.backends.base import Capabilities
from animesr.inference.backends.export import INPUT_NAME, cached_onnx
from animesr.inference.backends.staged import RuntimeStages
from animesr.inference.tiling import TileCallback, staged_forward, trunk_tile

_ACCELERATED = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "DmlExecutionProvider")


def providers_for(device: str, available: list[str]) -> list[str]:
    """auto: the accelerated providers present, then the CPU; cpu: the CPU; cuda/gpu: an accelerated one."""
    name = device.lower()
    accelerated = [p for p in _ACCELERATED if p in available]
    if name == "cpu":
        return ["CPUExecutionProvider"]
    if name == "auto":
        return [*accelerated, "CPUExecutionProvider"]
    if name in ("cuda", "gpu") or name.startswith("cuda:"):
        if not accelerated:
            raise DeviceError(f"this onnxruntime has no GPU provider (it has: {', '.join(available)}); "
                              "install onnxruntime-gpu or onnxruntime-directml, or use --device cpu")
        return [*accelerated, "CPUExecutionProvider"]
    raise DeviceError(f"--backend onnxruntime runs on auto, cpu or cuda, not {device!r}")


class OnnxRuntimeBackend:
    name = "onnxruntime"
    device = torch.device("cpu")
    precision = "float32"
    compiled = False
    capabilities = Capabilities(exact_tiling=True, batch=True, precisions=("float32",))

    def __init__(self, loaded: LoadedModel, device: str, precision: str) -> None:
        import onnxruntime as ort

        if precision not in ("auto", "exact", "fp32"):
            raise InputError(f"--backend onnxruntime runs float32 only, not --precision {precision}; "
                             "use --backend openvino or torch for reduced precision")
        self._ort, self._loaded = ort, loaded
        self._providers = providers_for(device, ort.get_available_providers())
        self.session = self._session(cached_onnx(loaded))
        self.target = self.session.get_providers()[0]
        self._stages: RuntimeStages | None = None

    def _session(self, path: Path):
        options = self._ort.SessionOptions()
        options.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return self._ort.InferenceSession(str(path), options, providers=self._providers)

    def _compile(self, path: Path, shapes: dict[str, tuple[int, ...]]):
        session = self._session(path)  # one session serves any shapes
        return lambda inputs: session.run(None, inputs)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run(None, {INPUT_NAME: array})[0])

    def run_tiled(self, x: torch.Tensor, tile: int, on_tile: TileCallback | None) -> torch.Tensor:
        if self._stages is None:  # built on the first tiled image only
            self._stages = RuntimeStages(self._loaded, self._compile)
        with torch.inference_mode():
            return staged_forward(self._stages, x.float().contiguous(), tile, self.device, on_tile,
                                  trunk=trunk_tile(tile, self._loaded.scale))
