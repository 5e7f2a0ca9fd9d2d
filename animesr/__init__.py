"""animesr: sharp anime images and videos with the A2N super-resolution network."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# The public API is loaded on first use, so that `animesr --help` does not import torch.
_EXPORTS = {
    "A2N": "animesr.model",
    "A2NConfig": "animesr.model",
    "LoadedModel": "animesr.checkpoint",
    "load_checkpoint": "animesr.checkpoint",
    "save_checkpoint": "animesr.checkpoint",
    "Upscaler": "animesr.inference",
}

if TYPE_CHECKING:
    from animesr.checkpoint import LoadedModel, load_checkpoint, save_checkpoint
    from animesr.inference import Upscaler
    from animesr.model import A2N, A2NConfig


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'animesr' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


__all__ = ["A2N", "A2NConfig", "LoadedModel", "Upscaler", "load_checkpoint", "save_checkpoint", "__version__"]
