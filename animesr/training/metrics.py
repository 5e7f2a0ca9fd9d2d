"""Y-PSNR and SSIM on the BT.601 luma, with a border cropped (the SR benchmark convention)."""

from __future__ import annotations

import cv2
import numpy as np


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """H×W×3 (0..255) -> H×W luma in 16..235, float64 (BT.601, as MATLAB's rgb2ycbcr)."""
    rgb = image.astype(np.float64)
    return 16.0 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255.0


def _crop(y: np.ndarray, border: int) -> np.ndarray:
    return y[border:-border, border:-border] if border > 0 else y


def psnr_y(sr: np.ndarray, hr: np.ndarray, border: int) -> float:
    a, b = _crop(rgb_to_y(sr), border), _crop(rgb_to_y(hr), border)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def ssim_y(sr: np.ndarray, hr: np.ndarray, border: int) -> float:
    """SSIM of Wang et al. 2004: 11×11 Gaussian window, sigma 1.5, on the luma."""
    a, b = _crop(rgb_to_y(sr), border), _crop(rgb_to_y(hr), border)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)[5:-5, 5:-5]

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())
