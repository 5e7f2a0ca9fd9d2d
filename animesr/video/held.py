"""Held frames: anime holds a drawing for two or three frames, and a decoded held frame differs
from its original only by compression noise. A frame is "held" when no 16×16 block's mean
absolute difference from the reference exceeds the threshold (grey levels, all channels)."""

from __future__ import annotations

import cv2
import numpy as np

BLOCK = 16


def block_difference(frame: np.ndarray, reference: np.ndarray, block: int = BLOCK) -> float:
    """The largest mean absolute difference of any block×block block (edge blocks may be smaller)."""
    diff = cv2.absdiff(frame, reference).sum(axis=2, dtype=np.uint32)
    height, width = diff.shape
    rows, cols = np.arange(0, height, block), np.arange(0, width, block)
    sums = np.add.reduceat(np.add.reduceat(diff, rows, axis=0), cols, axis=1)
    counts = np.outer(np.diff(np.append(rows, height)), np.diff(np.append(cols, width))) * frame.shape[2]
    return float((sums / counts).max())


class HeldFrameDetector:
    """Compares each frame with the last frame that went through the network (not the previous
    frame, so a slow pan cannot creep past the threshold one small step at a time)."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.reference: np.ndarray | None = None

    def is_held(self, frame: np.ndarray) -> bool:
        """True: reuse the reference's output. False: `frame` becomes the new reference."""
        if self.threshold > 0 and self.reference is not None and self.reference.shape == frame.shape:
            if block_difference(frame, self.reference) <= self.threshold:
                return True
        self.reference = frame
        return False

    def reset(self) -> None:
        self.reference = None
