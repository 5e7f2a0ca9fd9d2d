"""--backend and --device -> one backend, with `auto` picking the fastest correct one present."""

from __future__ import annotations

import torch

from animesr.checkpoint import LoadedModel
from animesr.config import InferenceSettings
from animesr.device import resolve_device
from animesr.errors import AnimeSRError, DeviceError
from animesr.inference.backends.base import InferenceBackend, describe_missing, installed
from animesr.inference.backends.torch_backend import TorchBackend, torch_dtype

# The CPU order is measured, not guessed: benchmarks/bench_backends.py on the project's quiet 2-core CPU
# (576×432 frames, x2 and x4, exact precision; README "Backends"): OpenVINO 1.86–1.89×, ONNX Runtime
# 1.64–1.74×, PyTorch (its 192-pixel tiles) 1.22–1.36× PyTorch on whole frames. On CUDA only torch is
# measured so far, so CUDA stays on torch.
CPU_ORDER = ("openvino", "onnxruntime", "torch")


def open_backend(loaded: LoadedModel, settings: InferenceSettings) -> InferenceBackend:
    if settings.backend != "auto" or settings.compile:  # --compile: torch's own compiler
        return _open("torch" if settings.compile else settings.backend, loaded, settings)
    candidates = _auto_candidates(settings.device)
    for name in candidates[:-1]:
        if installed(name):
            try:
                return _open(name, loaded, settings)
            except (AnimeSRError, RuntimeError, OSError):
                continue  # auto: this runtime cannot serve these settings here; the next one can
    return _open(candidates[-1], loaded, settings)


def _auto_candidates(device: str) -> tuple[str, ...]:
    name = device.lower()
    if name == "gpu" or name.startswith("gpu."):
        return ("openvino",)  # an Intel GPU: only OpenVINO drives it
    if name.startswith("cuda") or (name == "auto" and torch.cuda.is_available()):
        return ("torch",)
    return CPU_ORDER


def _open(name: str, loaded: LoadedModel, settings: InferenceSettings) -> InferenceBackend:
    if name == "torch":
        device = resolve_device(settings.device)
        return TorchBackend(loaded, device, torch_dtype(settings.precision, device), settings.channels_last,
                            compiled=settings.compile)
    if not installed(name):
        raise DeviceError(describe_missing(name))
    if name == "openvino":
        from animesr.inference.backends.openvino_backend import OpenVINOBackend

        return OpenVINOBackend(loaded, settings.device, settings.precision)
    from animesr.inference.backends.onnxruntime_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend(loaded, settings.device, settings.precision)
