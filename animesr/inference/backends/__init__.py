"""Inference backends: the runtime that runs the network, behind one small interface.

A backend runs A2N on N×3×H×W float pixels in the model's value range and says what it can
do. The `Upscaler` keeps everything else (pixels, value range, alpha and grey, TTA, tiling
policy). Backends: `torch` (always; the only one with exact staged tiling), `openvino` and
`onnxruntime` (optional extras, exported from the checkpoint on first use and cached).
"""

from __future__ import annotations

from animesr.inference.backends.base import (BACKENDS, Capabilities, InferenceBackend, describe_missing,
                                             installed)
from animesr.inference.backends.choose import open_backend

__all__ = ["BACKENDS", "Capabilities", "InferenceBackend", "describe_missing", "installed", "open_backend"]
