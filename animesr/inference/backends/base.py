"""The backend interface and what every backend shares."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from animesr.config import BACKENDS  # noqa: F401  (re-exported)

EXTRAS = {"openvino": ("openvino", "onnx"), "onnxruntime": ("onnxruntime", "onnx")}  # backend -> imports (onnx: the export)


@dataclass(frozen=True)
class Capabilities:
    exact_tiling: bool  # can run the network stage by stage (tiling.py); else whole images only
    batch: bool  # N > 1 in one call
    precisions: tuple[str, ...]  # the reduced/full precisions it offers: "float32", "bfloat16", ...
    fastest_tile: int | None = None  # tiles of this size run faster than a larger whole image (cache-sized)


class InferenceBackend(Protocol):
    name: str  # torch | openvino | onnxruntime
    device: torch.device  # where the Upscaler stages pixels for it
    target: str  # the runtime's own device: "cpu", "cuda:0", "CPU", "GPU.0", "CUDAExecutionProvider"
    precision: str  # float32 | float16 | bfloat16: what the network computes in
    compiled: bool  # torch.compile (--compile; the torch backend only)
    capabilities: Capabilities

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """N×3×H×W float32 on `device`, in the model's value range -> N×3×sH×sW float on `device`."""
        ...

    def run_tiled(self, x: torch.Tensor, tile: int, on_tile: Callable[[int, int], None] | None) -> torch.Tensor:
        """`run`, exactly (tiling.py), one tile of at most tile×tile input pixels at a time (or one of the
        same working memory: tiling.trunk_tile); needs `capabilities.exact_tiling`."""
        ...


def installed(name: str) -> bool:
    return all(importlib.util.find_spec(module) is not None for module in EXTRAS.get(name, ()))


def describe_missing(name: str) -> str:
    return (f"--backend {name} needs the {name} package, which is not installed: "
            f'pip install "animesr[{name}]" (or use --backend auto or torch)')


def describe(backend: InferenceBackend) -> str:
    """One phrase for the first line of every command: 'openvino on CPU, float32'."""
    compiled = ", compiled" if backend.compiled else ""
    return f"backend {backend.name} on {backend.target}, {backend.precision}{compiled}"
