"""Exact tiling on the ONNX runtimes: A2N's stages (tiling.py) as exported graphs.

Every stage runs on the runtime: the head, each block but the last, the last block with the
trunk's end, and the reconstruction. A graph that ends before a block takes masks of the tile's
centre and also gives the centre's sum of that block's `reduce`. Only the ADM weights (a tiny
MLP on the pooled means) stay on torch float32.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from animesr.checkpoint import LoadedModel
from animesr.inference.backends.export import cached_onnx, export_module, float32_copy
from animesr.inference.tiling import Centre, ModelStages, StageResult

GraphRunner = Callable[[dict[str, np.ndarray]], list[np.ndarray]]  # named inputs -> the outputs, valid until its next run
Compile = Callable[[Path, dict[str, tuple[int, ...]]], GraphRunner]  # graph, the input shapes it will run


def _masked_sum(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    # x (N,C,h,w); rows (h,), cols (w,): 1 on the tile's own pixels, 0 on its halo -> (N,C)
    return ((x * cols.view(1, 1, 1, -1)).sum(dim=3) * rows.view(1, 1, -1)).sum(dim=2)


class _Stage(nn.Module):
    """A stage of `ModelStages` as a module to export: masks stand in for its centre slices."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.stages = ModelStages(model)


class _Head(_Stage):
    def forward(self, image: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor):
        head = self.model.head(image)
        return head, _masked_sum(self.stages.reduce(0, head), rows, cols)


class _Block(_Stage):
    def __init__(self, model: nn.Module, i: int) -> None:
        super().__init__(model)
        self.i = i

    def forward(self, x: torch.Tensor, weights: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor):
        y = self.stages.block(self.i, x, weights)
        return y, _masked_sum(self.stages.reduce(self.i + 1, y), rows, cols)


class _Last(_Stage):
    def forward(self, x: torch.Tensor, weights: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
        return self.stages.last(x, weights, head)


class _Reconstruct(_Stage):
    def forward(self, features: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.stages.reconstruct(features, image)


def stage_names(blocks: int) -> list[str]:
    return ["head", *(f"block{i}" for i in range(blocks - 1)), "last", "reconstruct"]


def export_stage(loaded: LoadedModel, stage: str, path: Path) -> None:
    """One stage graph of `stage_names`, with named inputs and outputs as RuntimeStages feeds them."""
    model = float32_copy(loaded)
    c, blocks = model.config.channels, len(model.blocks)
    features, image, weights = torch.rand(1, c, 16, 16), torch.rand(1, 3, 16, 16), torch.softmax(torch.rand(1, 2), 1)
    masks = (torch.ones(16), torch.ones(16))
    if stage == "head":
        export_module(_Head(model), (image, *masks), ["image", "rows", "cols"], ["head", "sums"], path)
    elif stage.startswith("block") and stage[5:].isdigit() and int(stage[5:]) < blocks - 1:
        i = int(stage[5:])
        export_module(_Block(model, i), (features, weights, *masks),
                      ["x", "weights", "rows", "cols"], ["y", "sums"], path)
    elif stage == "last":
        export_module(_Last(model), (features, weights, features), ["x", "weights", "head"], ["features"], path)
    elif stage == "reconstruct":
        export_module(_Reconstruct(model), (features, image), ["features", "image"], ["upscaled"], path)
    else:
        raise ValueError(f"unknown stage {stage!r}")


class RuntimeStages(ModelStages):
    """`tiling.ModelStages` with every stage run by a runtime (the ADM weights stay on the float32
    torch model).

    One stage graph is compiled at a time, for the input shapes it is about to run (every window of
    an image has one shape: tiling.tile_windows): a runtime keeps a compiled graph's working memory
    at the largest tile it has run, so the 17 graphs held together needed 17 times one graph's memory
    (8 GB for a 1920×1080 picture at x2 on OpenVINO). Compiling again is cheap: OpenVINO loads its
    cached blob, and ONNX Runtime builds a session from the cached export."""

    def __init__(self, loaded: LoadedModel, compile_graph: Compile) -> None:
        super().__init__(float32_copy(loaded))
        self._compile = compile_graph
        self._paths = {name: cached_onnx(loaded, name) for name in stage_names(self.blocks)}  # failures come early
        self._current: tuple[tuple[str, dict[str, tuple[int, ...]]], GraphRunner] | None = None
        self._staging: dict[str, torch.Tensor] = {}

    def head(self, image: torch.Tensor, centre: Centre) -> StageResult:
        head, sums = self._run("head", {"image": self._array("image", image), **_masks(image, centre)})
        return torch.from_numpy(head), torch.from_numpy(np.array(sums, dtype=np.float32))

    def mix(self, i: int, x: torch.Tensor, weights: torch.Tensor, centre: Centre) -> StageResult:
        y, sums = self._run(f"block{i}", {"x": self._array("x", x), "weights": _weights(weights), **_masks(x, centre)})
        return torch.from_numpy(y), torch.from_numpy(np.array(sums, dtype=np.float32))

    def last(self, x: torch.Tensor, weights: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
        inputs = {"x": self._array("x", x), "weights": _weights(weights), "head": self._array("head", head)}
        return torch.from_numpy(self._run("last", inputs)[0])

    def reconstruct(self, features: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        inputs = {"features": self._array("features", features), "image": self._array("image", image)}
        return torch.from_numpy(self._run("reconstruct", inputs)[0])

    def _array(self, name: str, x: torch.Tensor) -> np.ndarray:
        """A window as a contiguous float32 array, in a buffer kept per input (grown to the largest):
        copying into memory already touched is about 3× faster than into a fresh allocation."""
        buffer = self._staging.get(name)
        if buffer is None or buffer.numel() < x.numel():
            self._staging[name] = buffer = torch.empty(x.numel(), dtype=torch.float32)
        return buffer[: x.numel()].view(x.shape).copy_(x).numpy()

    def _run(self, name: str, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        shapes = {key: value.shape for key, value in inputs.items()}
        if self._current is None or self._current[0] != (name, shapes):
            self._current = None  # the previous graph and its memory go before the next is compiled
            self._current = ((name, shapes), self._compile(self._paths[name], shapes))
        return self._current[1](inputs)


def _weights(weights: torch.Tensor) -> np.ndarray:
    return weights.to(torch.float32).contiguous().numpy()


def _masks(x: torch.Tensor, centre: Centre) -> dict[str, np.ndarray]:
    rows, cols = np.zeros(x.shape[2], np.float32), np.zeros(x.shape[3], np.float32)
    rows[centre[0]], cols[centre[1]] = 1.0, 1.0
    return {"rows": rows, "cols": cols}
