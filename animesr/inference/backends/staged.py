"""Exact tiling on the ONNX runtimes: A2N's stages (tiling.py) as exported graphs.

The expensive stages run on the runtime: each block's `mix` (its graph takes the tile and the
block's branch weights, pooled over the whole image beforehand) and the reconstruction. The
cheap ones stay on torch float32 (the head: 3 input channels; each block's pointwise `reduce`
and pooling; the ADM weights; the trunk's last 3×3 conv): about 4 % of the multiply-adds.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from animesr.checkpoint import LoadedModel
from animesr.inference.backends.export import cached_onnx, export_module, float32_copy
from animesr.inference.tiling import ModelStages

GraphRunner = Callable[[dict[str, np.ndarray]], np.ndarray]  # named inputs -> the one output
Compile = Callable[[Path], GraphRunner]


class _Mix(nn.Module):
    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return self.block.mix(x, self.block.reduce(x), weights)


class _Reconstruct(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.model.reconstruct(features, image)


def export_stage(loaded: LoadedModel, stage: str, path: Path) -> None:
    """`mix{i}` (inputs x, weights -> y) or `reconstruct` (features, image -> upscaled)."""
    model = float32_copy(loaded)
    c = model.config.channels
    if stage == "reconstruct":
        examples = (torch.rand(1, c, 16, 16), torch.rand(1, 3, 16, 16))
        export_module(_Reconstruct(model), examples, ["features", "image"], "upscaled", path)
    elif stage.startswith("mix") and stage[3:].isdigit():
        examples = (torch.rand(1, c, 16, 16), torch.softmax(torch.rand(1, 2), dim=1))
        export_module(_Mix(model.blocks[int(stage[3:])]), examples, ["x", "weights"], "y", path)
    else:
        raise ValueError(f"unknown stage {stage!r}")


def _array(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())


class RuntimeStages(ModelStages):
    """`tiling.ModelStages` with `mix` and `reconstruct` run by a runtime; the cheap stages stay on the
    float32 torch model.

    One stage graph is compiled at a time: a runtime keeps a compiled graph's working memory at the
    largest tile it has run, so the 17 graphs held together needed 17 times one graph's memory
    (8 GB for a 1920×1080 picture at x2 on OpenVINO). Compiling again is cheap: OpenVINO loads its
    cached blob, and ONNX Runtime builds a session from the cached export."""

    def __init__(self, loaded: LoadedModel, compile_graph: Compile) -> None:
        super().__init__(float32_copy(loaded))
        self._compile = compile_graph
        names = [*(f"mix{i}" for i in range(self.blocks)), "reconstruct"]
        self._paths = {name: cached_onnx(loaded, name) for name in names}  # exported now: failures come early
        self._current: tuple[str, GraphRunner] | None = None

    def _graph(self, name: str) -> GraphRunner:
        if self._current is None or self._current[0] != name:
            self._current = None  # the previous graph and its memory go before the next is compiled
            self._current = (name, self._compile(self._paths[name]))
        return self._current[1]

    def mix(self, i: int, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self._graph(f"mix{i}")({"x": _array(x), "weights": _array(weights)}))

    def reconstruct(self, features: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self._graph("reconstruct")({"features": _array(features), "image": _array(image)}))
