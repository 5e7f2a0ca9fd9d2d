"""Exact tiled inference for A2N.

A2N's attention dropout module pools each block's features over the *whole* image, so
cutting the image into tiles and running the network on each changes the result. Here
each stage runs tile by tile with just enough halo for its convolutions, and each block's
pooled statistics are summed over all tiles before any tile of that block is mixed. The
result equals the whole-image forward up to floating-point summation order. A stage that
ends before a block also gives the sum over its tile of that block's `reduce`, so a block
costs one pass over the image, not two.

Full feature maps (C×H×W at input resolution) live on `storage`; only one tile at a
time lives on the model's device, so large frames fit in little accelerator memory.

The stages are an interface (`Stages`): torch runs them from the model's own modules
(`ModelStages`); the ONNX runtimes run them as exported stage graphs (backends/staged.py),
so tiling is exact on every backend.
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
# Working set per input pixel, in elements: the trunk ≈ 8 live maps of 40 channels; the
# reconstruction ≈ 4 maps of 24 channels at scale² (the upscaler sizes tiles with these).
TRUNK_ELEMENTS_PER_PIXEL = 8 * 40
RECONSTRUCT_ELEMENTS_PER_PIXEL = 4 * 24  # × scale²


def trunk_tile(tile: int, scale: int) -> int:
    """A tile for the head and blocks with the working set of a `tile` of the whole network: they hold
    no scale² maps, so at x4 it is 2.4 times larger (fewer windows, less halo, fewer runtime calls)."""
    whole = TRUNK_ELEMENTS_PER_PIXEL + RECONSTRUCT_ELEMENTS_PER_PIXEL * scale**2
    return int(tile * (whole / TRUNK_ELEMENTS_PER_PIXEL) ** 0.5)


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
    """Cover the image with equal tiles of at most `tile` pixels a side, each computed from a window
    of one shared size: the tile grown by `halo` on every side, shifted inwards where it would leave
    the image (more context than needed there, never less). Runtimes compiled for one input shape
    run every window without re-planning, and no tile is a thin remainder."""
    if tile < 1:
        raise ValueError(f"tile must be positive, not {tile}")
    tile_h, tile_w = _balanced(height, tile), _balanced(width, tile)
    windows = []
    for y0 in range(0, height, tile_h):
        for x0 in range(0, width, tile_w):
            y1, x1 = min(y0 + tile_h, height), min(x0 + tile_w, width)
            (hy0, hy1), (hx0, hx1) = _span(y0, height, tile_h, halo), _span(x0, width, tile_w, halo)
            windows.append(Window(y0, y1, x0, x1, hy0, hy1, hx0, hx1))
    return windows


def _balanced(length: int, tile: int) -> int:
    """The tile side that cuts `length` into as few near-equal tiles of at most `tile` as possible."""
    count = -(-length // tile)
    return -(-length // count)


def _span(start: int, length: int, tile: int, halo: int) -> tuple[int, int]:
    size = min(tile + 2 * halo, length)
    begin = min(max(0, start - halo), length - size)
    return begin, begin + size


class _Progress:
    def __init__(self, total: int, callback: TileCallback | None) -> None:
        self.total, self.done, self.callback = total, 0, callback

    def step(self) -> None:
        self.done += 1
        if self.callback:
            self.callback(self.done, self.total)


Centre = tuple[slice, slice]  # a tile's own pixels inside its window
StageResult = tuple[torch.Tensor, torch.Tensor | None]  # a window's output, and a (N,C) float32 sum or None


def _apply_tiled(
    fn: Callable[..., StageResult],
    inputs: Sequence[torch.Tensor],
    windows: list[Window],
    out_scale: int,
    device: torch.device,
    progress: _Progress,
    into: torch.Tensor | None = None,
) -> StageResult:
    """Run `fn(*pieces, centre)` on each window of `inputs` (all N×C×H×W, same H, W) and stitch the
    centres into one output on the inputs' storage device (into `into` when given: a free map of the
    output's shape). `fn` returns out_scale× sizes, and maybe a sum over the centre: those sums come
    back as one mean over the image."""
    result, total = into, None
    for win in windows:
        pieces = (x[:, :, win.hy0:win.hy1, win.hx0:win.hx1].to(device, non_blocking=True) for x in inputs)
        out, part = fn(*pieces, _centre(win))
        result = _place(result, out, win, out_scale, inputs[0])
        if part is not None:
            total = part if total is None else total + part
        progress.step()
    assert result is not None
    return result, None if total is None else total / (inputs[0].shape[2] * inputs[0].shape[3])


def _place(result: torch.Tensor | None, out: torch.Tensor, win: Window, out_scale: int,
           like: torch.Tensor) -> torch.Tensor:
    """Copy the centre of one window's output into `result` (allocated on `like`'s device when None).
    `out` may be a runtime's buffer: it is not kept."""
    if result is None:
        n, _, h, w = like.shape
        result = torch.empty((n, out.shape[1], h * out_scale, w * out_scale), dtype=out.dtype, device=like.device)
    rows, cols = _centre(win, out_scale)
    result[:, :, win.y0 * out_scale: win.y1 * out_scale, win.x0 * out_scale: win.x1 * out_scale] = out[:, :, rows, cols]
    return result


def _centre(win: Window, out_scale: int = 1) -> Centre:
    top, left = (win.y0 - win.hy0) * out_scale, (win.x0 - win.hx0) * out_scale
    return (slice(top, top + (win.y1 - win.y0) * out_scale), slice(left, left + (win.x1 - win.x0) * out_scale))


class Stages(Protocol):
    """A2N cut where its pooling needs the whole image, each stage on one window. A stage that ends
    before a block also gives the (N,C) float32 sum over `centre` of that block's `reduce`, the
    block's share of the pooling. Shapes as in `A2N`; blocks 0..blocks-1."""

    scale: int
    blocks: int

    def head(self, image: torch.Tensor, centre: Centre) -> StageResult: ...  # (N,3,h,w) -> (N,C,h,w), radius 1

    def branch_weights(self, i: int, pooled: torch.Tensor) -> torch.Tensor: ...  # (N,C) mean -> (N,2)

    def mix(self, i: int, x: torch.Tensor, weights: torch.Tensor, centre: Centre) -> StageResult:
        ...  # block i < blocks-1, radius 2, and block i+1's sum

    def last(self, x: torch.Tensor, weights: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
        ...  # the last block, the trunk's conv and the long skip -> features, radius 3

    def reconstruct(self, features: torch.Tensor, image: torch.Tensor) -> torch.Tensor: ...  # radius 4


class ModelStages:
    """The stages from the torch model's own modules."""

    def __init__(self, model: A2N) -> None:
        self.model, self.scale, self.blocks = model, model.scale, len(model.blocks)

    def head(self, image: torch.Tensor, centre: Centre) -> StageResult:
        head = self.model.head(image)
        return head, self._centre_sum(0, head, centre)

    def branch_weights(self, i: int, pooled: torch.Tensor) -> torch.Tensor:
        return self.model.blocks[i].branch_weights(pooled)

    def mix(self, i: int, x: torch.Tensor, weights: torch.Tensor, centre: Centre) -> StageResult:
        y = self.block(i, x, weights)
        return y, self._centre_sum(i + 1, y, centre)

    def last(self, x: torch.Tensor, weights: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
        return head + self.model.trunk_out(self.block(self.blocks - 1, x, weights))

    def reconstruct(self, features: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.model.reconstruct(features, image)

    # the two formulas the stages share (the runtimes' stage graphs are built from them too)
    def block(self, i: int, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        block = self.model.blocks[i]
        return block.mix(x, block.reduce(x), weights.to(x.dtype))

    def reduce(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return self.model.blocks[i].reduce(x)

    def _centre_sum(self, i: int, x: torch.Tensor, centre: Centre) -> torch.Tensor:
        """Block i's reduce summed over the tile's own pixels (the runtimes mask instead of slicing)."""
        return self.reduce(i, x[:, :, centre[0], centre[1]]).float().sum(dim=(2, 3))


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
                   on_tile: TileCallback | None = None, trunk: int | None = None) -> torch.Tensor:
    """`tiled_forward` for any `Stages`: one pass over the image per block, plus the reconstruction.
    The head and blocks run in tiles of `trunk` pixels when given (see `trunk_tile`), else `tile`."""
    h, w = image.shape[2:]
    trunk = trunk or tile
    conv_windows = tile_windows(h, w, trunk, CONV_RADIUS)
    block_windows = tile_windows(h, w, trunk, AttentionInAttentionBlock.RADIUS)
    last_windows = tile_windows(h, w, trunk, AttentionInAttentionBlock.RADIUS + CONV_RADIUS)
    recon_windows = tile_windows(h, w, tile, RECONSTRUCT_RADIUS)
    progress = _Progress(len(conv_windows) * (1 + stages.blocks) + len(recon_windows), on_tile)

    head, pooled = _apply_tiled(stages.head, [image], conv_windows, 1, device, progress)
    x, spare = head, None  # two maps take turns as a block's input and output: no fresh memory per block
    for i in range(stages.blocks - 1):
        weights = stages.branch_weights(i, pooled)
        y, pooled = _apply_tiled(lambda t, centre, i=i, weights=weights: stages.mix(i, t, weights, centre),
                                 [x], block_windows, 1, device, progress, into=spare)
        x, spare = y, (x if x is not head else None)
    weights = stages.branch_weights(stages.blocks - 1, pooled)
    features, _ = _apply_tiled(lambda t, hd, _: (stages.last(t, weights, hd), None), [x, head], last_windows, 1,
                               device, progress, into=spare)
    del x, head, spare
    upscaled, _ = _apply_tiled(lambda f, im, _: (stages.reconstruct(f, im), None), [features, image],
                               recon_windows, stages.scale, device, progress)
    return upscaled
