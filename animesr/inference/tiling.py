"""Exact tiled inference for A2N.

A2N's attention dropout module pools each block's features over the *whole* image, so
cutting the image into tiles and running the network on each changes the result. Here
each stage runs tile by tile with just enough halo for its convolutions, and each block's
pooled statistics are summed over all tiles before any tile of that block is mixed. The
result equals the whole-image forward up to floating-point summation order.

Full feature maps (C×H×W at input resolution) live on `storage`; only one tile at a
time lives on the model's device, so large frames fit in little accelerator memory.

The stages are an interface (`Stages`): torch runs them from the model's own modules
(`ModelStages`); the ONNX runtimes run the expensive ones from exported stage graphs
(backends/staged.py), so tiling is exact on every backend.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from animesr.model import A2N
from animesr.model.a2n import AttentionInAttentionBlock

TileCallback = Callable[[int, int], None]

CONV_RADIUS = 1
RECONSTRUCT_RADIUS = 4  # nearest/bilinear upsampling + three 3×3 convs per step, in input pixels


@dataclass(frozen=True)
class Window:
    """A tile (`y0:y1, x0:x1`) and the haloed region (`hy0:hy1, hx0:hx1`) it is computed from."""

    y0: int
    y1: int
    x0: int
    x1: int
    hy0: int
    hy1: int
    hx0: int
    hx1: int


def tile_windows(height: int, width: int, tile: int, halo: int) -> list[Window]:
    """Cover the image with tiles of at most `tile` pixels, each haloed by `halo` pixels."""
    if tile < 1:
        raise ValueError(f"tile must be positive, not {tile}")
    windows = []
    for y0 in range(0, height, tile):
        for x0 in range(0, width, tile):
            y1, x1 = min(y0 + tile, height), min(x0 + tile, width)
            windows.append(
                Window(y0, y1, x0, x1, max(0, y0 - halo), min(height, y1 + halo),
                       max(0, x0 - halo), min(width, x1 + halo))
            )
    return windows


class _Progress:
    def __init__(self, total: int, callback: TileCallback | None) -> None:
        self.total, self.done, self.callback = total, 0, callback

    def step(self) -> None:
        self.done += 1
        if self.callback:
            self.callback(self.done, self.total)


def _apply_tiled(
    fn: Callable[..., torch.Tensor],
    inputs: Sequence[torch.Tensor],
    windows: list[Window],
    out_scale: int,
    device: torch.device,
    progress: _Progress,
) -> torch.Tensor:
    """Run `fn` on each haloed window of `inputs` (all N×C×H×W, same H, W) and stitch the
    centres into one output on the inputs' storage device. `fn` returns out_scale× sizes."""
    n, _, h, w = inputs[0].shape
    result: torch.Tensor | None = None
    for win in windows:
        pieces = [x[:, :, win.hy0:win.hy1, win.hx0:win.hx1].to(device, non_blocking=True) for x in inputs]
        out = fn(*pieces)
        top, left = (win.y0 - win.hy0) * out_scale, (win.x0 - win.hx0) * out_scale
        centre = out[:, :, top: top + (win.y1 - win.y0) * out_scale, left: left + (win.x1 - win.x0) * out_scale]
        if result is None:
            result = torch.empty((n, out.shape[1], h * out_scale, w * out_scale),
                                 dtype=out.dtype, device=inputs[0].device)
        result[:, :, win.y0 * out_scale: win.y1 * out_scale, win.x0 * out_scale: win.x1 * out_scale] = centre
        progress.step()
    assert result is not None
    return result


class Stages(Protocol):
    """A2N cut where its pooling needs the whole image. Shapes as in `A2N`; block i in 0..blocks-1."""

    scale: int
    blocks: int

    def head(self, image: torch.Tensor) -> torch.Tensor: ...  # (N,3,H,W) -> (N,C,H,W), radius 1

    def reduce(self, i: int, x: torch.Tensor) -> torch.Tensor: ...  # pointwise (N,C,H,W) -> (N,C,H,W)

    def branch_weights(self, i: int, pooled: torch.Tensor) -> torch.Tensor: ...  # (N,C) -> (N,2)

    def mix(self, i: int, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor: ...  # radius 2

    def trunk_out(self, x: torch.Tensor, head: torch.Tensor) -> torch.Tensor: ...  # head + conv(x), radius 1

    def reconstruct(self, features: torch.Tensor, image: torch.Tensor) -> torch.Tensor: ...  # radius 4


class ModelStages:
    """The stages from the torch model's own modules."""

    def __init__(self, model: A2N) -> None:
        self.model, self.scale, self.blocks = model, model.scale, len(model.blocks)

    def head(self, image: torch.Tensor) -> torch.Tensor:
        return self.model.head(image)

    def reduce(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return self.model.blocks[i].reduce(x)

    def branch_weights(self, i: int, pooled: torch.Tensor) -> torch.Tensor:
        return self.model.blocks[i].branch_weights(pooled)

    def mix(self, i: int, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        block = self.model.blocks[i]
        return block.mix(x, block.reduce(x), weights.to(x.dtype))

    def trunk_out(self, x: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
        return head + self.model.trunk_out(x)

    def reconstruct(self, features: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.model.reconstruct(features, image)


def _pooled_mean(reduce: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, windows: list[Window],
                 device: torch.device, progress: _Progress) -> torch.Tensor:
    """Mean of `reduce(x)` over the whole image, accumulated tile by tile (pointwise: no halo)."""
    total = None
    for win in windows:
        part = reduce(x[:, :, win.y0:win.y1, win.x0:win.x1].to(device)).float().sum(dim=(2, 3))
        total = part if total is None else total + part
        progress.step()
    assert total is not None
    return total / (x.shape[2] * x.shape[3])


def tiled_forward(
    model: A2N,
    image: torch.Tensor,
    tile: int,
    device: torch.device | None = None,
    on_tile: TileCallback | None = None,
) -> torch.Tensor:
    """(N, 3, H, W) on any device -> (N, 3, sH, sW) on the same device, computed on `device`
    (the model's) one tile of at most `tile`×`tile` input pixels at a time."""
    device = device or next(model.parameters()).device
    return staged_forward(ModelStages(model), image, tile, device, on_tile)


def staged_forward(stages: Stages, image: torch.Tensor, tile: int, device: torch.device,
                   on_tile: TileCallback | None = None) -> torch.Tensor:
    """`tiled_forward` for any `Stages`."""
    h, w = image.shape[2:]
    conv_windows = tile_windows(h, w, tile, CONV_RADIUS)
    block_windows = tile_windows(h, w, tile, AttentionInAttentionBlock.RADIUS)
    recon_windows = tile_windows(h, w, tile, RECONSTRUCT_RADIUS)
    n_tiles = len(conv_windows)
    progress = _Progress(n_tiles * (3 + 2 * stages.blocks), on_tile)

    head = _apply_tiled(stages.head, [image], conv_windows, 1, device, progress)
    x = head
    for i in range(stages.blocks):
        pooled = _pooled_mean(lambda t, i=i: stages.reduce(i, t), x, conv_windows, device, progress)
        weights = stages.branch_weights(i, pooled)
        x = _apply_tiled(lambda t, i=i, wts=weights: stages.mix(i, t, wts), [x], block_windows, 1, device, progress)
    features = _apply_tiled(stages.trunk_out, [x, head], conv_windows, 1, device, progress)
    del x, head
    return _apply_tiled(stages.reconstruct, [features, image], recon_windows, stages.scale, device, progress)
