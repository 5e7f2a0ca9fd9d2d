"""The optional adversarial stage of `train --gan-weight W`: a U-Net discriminator with spectral
normalisation, trained from scratch beside the pixel loss (the design Real-ESRGAN describes in
its paper, §3.3: per-pixel real/fake logits, so it judges local lines and texture rather than the
whole picture; written here from that description). No pretrained network is involved: nothing
is downloaded.

The discriminator and its optimiser live in the training state only, never in a checkpoint.
Pixels are in [0, 1]; the discriminator always runs in float32.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.nn.utils.parametrizations import spectral_norm

DISCRIMINATOR_FEATURES = 32  # Real-ESRGAN uses 64; half keeps a CPU step affordable


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


class UNetDiscriminator(nn.Module):
    """(N, 3, H, W) in [0, 1] -> (N, 1, H, W) logits: three stride-2 steps down, three up with skip
    connections, two refining convolutions. Every convolution but the first and last is spectrally
    normalised. Any H, W of at least 8."""

    def __init__(self, features: int = DISCRIMINATOR_FEATURES) -> None:
        super().__init__()
        f = features
        self.first = nn.Conv2d(3, f, 3, padding=1)
        self.down = nn.ModuleList(spectral_norm(nn.Conv2d(a, b, 4, stride=2, padding=1, bias=False))
                                  for a, b in ((f, 2 * f), (2 * f, 4 * f), (4 * f, 8 * f)))
        self.up = nn.ModuleList(spectral_norm(nn.Conv2d(a, b, 3, padding=1, bias=False))
                                for a, b in ((8 * f, 4 * f), (4 * f, 2 * f), (2 * f, f)))
        self.refine = nn.ModuleList(spectral_norm(nn.Conv2d(f, f, 3, padding=1, bias=False)) for _ in range(2))
        self.last = nn.Conv2d(f, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [_lrelu(self.first(x))]  # (N, f, H, W)
        for conv in self.down:
            skips.append(_lrelu(conv(skips[-1])))  # (N, 2f, H/2, W/2) … (N, 8f, H/8, W/8)
        y = skips.pop()
        for conv in self.up:
            skip = skips.pop()
            y = F.interpolate(y, size=skip.shape[2:], mode="bilinear", align_corners=False)
            y = _lrelu(conv(y)) + skip
        for conv in self.refine:
            y = _lrelu(conv(y))
        return self.last(y)


def _towards(logits: torch.Tensor, real: bool) -> torch.Tensor:
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


class Adversary:
    """The discriminator, its optimiser, and the two losses of one training step."""

    def __init__(self, lr: float, device: torch.device, distributed: bool) -> None:
        self.discriminator = UNetDiscriminator().to(device)
        self._trained = (DistributedDataParallel(self.discriminator, device_ids=[device.index]
                                                 if device.type == "cuda" else None)
                         if distributed else self.discriminator)
        self.optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=(0.9, 0.99))

    def generator_loss(self, sr: torch.Tensor) -> torch.Tensor:
        """How far the discriminator is from taking `sr` for real; gradients reach `sr` only."""
        self.discriminator.requires_grad_(False)
        try:
            return _towards(self.discriminator(sr.float()), real=True)
        finally:
            self.discriminator.requires_grad_(True)

    def train_step(self, sr: torch.Tensor, hr: torch.Tensor) -> float:
        """One optimiser step of the discriminator: HR is real, the network's output fake (one forward
        pass over both, as DDP wants one per backward)."""
        real, fake = self._trained(torch.cat([hr.float(), sr.detach().float()])).chunk(2)
        loss = _towards(real, real=True) + _towards(fake, real=False)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def state(self) -> dict[str, Any]:
        return {"discriminator": self.discriminator.state_dict(), "optimizer": self.optimizer.state_dict()}

    def restore(self, state: dict[str, Any]) -> None:
        self.discriminator.load_state_dict(state["discriminator"])
        self.optimizer.load_state_dict(state["optimizer"])
