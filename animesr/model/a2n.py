"""A2N: "Attention in Attention Network for Image Super-Resolution" (Chen, Gu, Zhang, 2021).

Every number follows ../shared/docs/A2N.md. The module is pure: it knows nothing about
value ranges, files or devices. Shapes: N = batch, C = channels, s = scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

SUPPORTED_SCALES = (2, 3, 4)


@dataclass(frozen=True)
class A2NConfig:
    scale: int = 4
    channels: int = 40
    up_channels: int = 24
    blocks: int = 16
    adm_reduction: int = 4
    temperature: float = 30.0

    def __post_init__(self) -> None:
        if self.scale not in SUPPORTED_SCALES:
            raise ValueError(f"A2N supports scales {SUPPORTED_SCALES}, not {self.scale}")


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


def _conv3x3(c_in: int, c_out: int, bias: bool) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1, bias=bias)


class PixelAttention(nn.Module):
    """PA: x * sigmoid(conv1x1(x))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.conv(x))


class AttentionBranch(nn.Module):
    """k4( k3(y) * sigmoid( k2( lrelu( k1(y) ) ) ) ). Receptive radius: 2 pixels."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.k1 = _conv3x3(channels, channels, bias=False)
        self.k2 = nn.Conv2d(channels, channels, 1)
        self.k3 = _conv3x3(channels, channels, bias=False)
        self.k4 = _conv3x3(channels, channels, bias=False)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.k2(_lrelu(self.k1(y))))
        return self.k4(self.k3(y) * gate)


class AttentionInAttentionBlock(nn.Module):
    """AAB. The attention dropout module (ADM) weighs the two branches per image from the
    global average of the reduced features: that pooling is the only non-local step of A2N,
    which is why `forward` is split into `reduce`, `branch_weights` and `mix` for exact tiling.
    """

    RADIUS = 2  # pixels of context `mix` needs around each output pixel

    def __init__(self, config: A2NConfig) -> None:
        super().__init__()
        c = config.channels
        self.temperature = config.temperature
        self.reduce_in = nn.Conv2d(c, c, 1, bias=False)
        self.adm = nn.Sequential(
            nn.Linear(c, c // config.adm_reduction, bias=False),
            nn.ReLU(),
            nn.Linear(c // config.adm_reduction, 2, bias=False),
        )
        self.attention = AttentionBranch(c)
        self.non_attention = _conv3x3(c, c, bias=False)
        self.project_out = nn.Conv2d(c, c, 1, bias=False)

    def reduce(self, x: torch.Tensor) -> torch.Tensor:
        # (N, C, H, W) -> (N, C, H, W), pointwise
        return _lrelu(self.reduce_in(x))

    def branch_weights(self, pooled: torch.Tensor) -> torch.Tensor:
        # (N, C) mean of `reduce(x)` over the whole image -> (N, 2) = (a, b)
        return torch.softmax(self.adm(pooled) / self.temperature, dim=1)

    def mix(self, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        # x, y: (N, C, H, W); weights: (N, 2) -> (N, C, H, W)
        a = weights[:, 0].view(-1, 1, 1, 1)
        b = weights[:, 1].view(-1, 1, 1, 1)
        mixed = a * self.attention(y) + b * self.non_attention(y)
        return self.project_out(_lrelu(mixed)) + x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.reduce(x)
        return self.mix(x, y, self.branch_weights(y.mean(dim=(2, 3))))


class UpsampleStep(nn.Module):
    """nearest x factor -> conv3x3 -> PA -> lrelu -> conv3x3 -> lrelu."""

    def __init__(self, c_in: int, c_out: int, factor: int) -> None:
        super().__init__()
        self.factor = factor
        self.conv = _conv3x3(c_in, c_out, bias=True)
        self.attention = PixelAttention(c_out)
        self.refine = _conv3x3(c_out, c_out, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (N, c_in, H, W) -> (N, c_out, fH, fW)
        x = F.interpolate(x, scale_factor=self.factor, mode="nearest")
        x = _lrelu(self.attention(self.conv(x)))
        return _lrelu(self.refine(x))


class A2N(nn.Module):
    def __init__(self, config: A2NConfig = A2NConfig()) -> None:
        super().__init__()
        self.config = config
        c, u = config.channels, config.up_channels
        self.head = _conv3x3(3, c, bias=True)
        self.blocks = nn.ModuleList(AttentionInAttentionBlock(config) for _ in range(config.blocks))
        self.trunk_out = _conv3x3(c, c, bias=True)
        factors = (2, 2) if config.scale == 4 else (config.scale,)
        self.upsample = nn.ModuleList(
            UpsampleStep(c if i == 0 else u, u, f) for i, f in enumerate(factors)
        )
        self.tail = _conv3x3(u, 3, bias=True)

    @property
    def scale(self) -> int:
        return self.config.scale

    def features(self, image: torch.Tensor) -> torch.Tensor:
        # (N, 3, H, W) -> (N, C, H, W): head + trunk with the long skip
        head = self.head(image)
        x = head
        for block in self.blocks:
            x = block(x)
        return head + self.trunk_out(x)

    def reconstruct(self, features: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        # features (N, C, H, W), image (N, 3, H, W) -> (N, 3, sH, sW)
        x = features
        for step in self.upsample:
            x = step(x)
        base = F.interpolate(image, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return self.tail(x) + base

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        # (N, 3, H, W) -> (N, 3, sH, sW)
        return self.reconstruct(self.features(image), image)
