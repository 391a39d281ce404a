"""Scores a cleaned image against the truth: PSNR (whole and inside the mark), SSIM, mask IoU, unchanged pixels.

Numpy and OpenCV only (no scikit-image). All images are HxWx3 uint8 on the 0..255 scale.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["PSNR_CAP", "changed", "iou", "precision_recall", "psnr", "psnr_inside", "ssim", "unchanged_fraction"]

PSNR_CAP = 100.0  # dB for identical images, so means stay finite and JSON stays valid
# SSIM as in Wang et al. 2004: an 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, L = 255.
SSIM_SIGMA = 1.5
SSIM_C1 = (0.01 * 255) ** 2
SSIM_C2 = (0.03 * 255) ** 2


def psnr(result: np.ndarray, truth: np.ndarray) -> float:
    """PSNR in dB over all pixels and channels, capped at PSNR_CAP."""
    _same_shape(result, truth)
    return _psnr(result.astype(np.float64) - truth.astype(np.float64))


def psnr_inside(result: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float | None:
    """PSNR in dB over the pixels of an HxW bool mask (PSNR-w, "inside the mark"); None for an empty mask."""
    _same_shape(result, truth)
    if not mask.any():
        return None
    return _psnr(result[mask].astype(np.float64) - truth[mask].astype(np.float64))


def ssim(result: np.ndarray, truth: np.ndarray) -> float:
    """Mean SSIM over pixels and colour channels (Gaussian window; borders reflected)."""
    _same_shape(result, truth)
    x, y = result.astype(np.float64), truth.astype(np.float64)

    def blur(image: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(image, (11, 11), SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    num = (2 * mx * my + SSIM_C1) * (2 * cov + SSIM_C2)
    den = (mx * mx + my * my + SSIM_C1) * (vx + vy + SSIM_C2)
    return float(np.mean(num / den))


def changed(result: np.ndarray, given: np.ndarray) -> np.ndarray:
    """HxW bool: the pixels a method changed (any channel differs from what it was given)."""
    _same_shape(result, given)
    return np.any(result != given, axis=2)


def unchanged_fraction(result: np.ndarray, given: np.ndarray) -> float:
    """The fraction of pixels a method left bit-exact."""
    return 1.0 - float(np.count_nonzero(changed(result, given))) / (given.shape[0] * given.shape[1])


def iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two HxW bool masks; 1.0 when both are empty (they agree)."""
    union = np.count_nonzero(predicted | truth)
    return 1.0 if union == 0 else np.count_nonzero(predicted & truth) / union


def precision_recall(predicted: np.ndarray, truth: np.ndarray) -> tuple[float | None, float | None]:
    """(share of predicted pixels that are true, share of true pixels predicted); None where undefined."""
    hits = np.count_nonzero(predicted & truth)
    npred, ntrue = np.count_nonzero(predicted), np.count_nonzero(truth)
    return (hits / npred if npred else None), (hits / ntrue if ntrue else None)


def _psnr(diff: np.ndarray) -> float:
    mse = float(np.mean(diff * diff))
    return PSNR_CAP if mse == 0 else min(PSNR_CAP, 10 * np.log10(255.0**2 / mse))


def _same_shape(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
