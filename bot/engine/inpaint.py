"""Fills masked pixels of one crop with OpenCV's Telea inpainting and pastes back only those pixels."""

from __future__ import annotations

import cv2
import numpy as np

INPAINT_RADIUS = 3
# Telea costs about 1 us per hole pixel on our CPUs; past this many hole pixels the fill runs on a downscaled
# crop instead (a big hole's fill is smooth anyway, so little is lost) to bound the time on 100 MP images.
MAX_HOLE_PIXELS = 2_000_000


def fill(crop: np.ndarray, mask: np.ndarray, max_hole_pixels: int = MAX_HOLE_PIXELS) -> np.ndarray:
    """A copy of crop (HxWx3 uint8) whose mask (HxW uint8, nonzero = hole) pixels are inpainted; with more than
    max_hole_pixels hole pixels, on a downscaled copy."""
    crop = np.ascontiguousarray(crop)
    holes = int(np.count_nonzero(mask))
    if holes <= max_hole_pixels:
        return cv2.inpaint(crop, mask, INPAINT_RADIUS, cv2.INPAINT_TELEA)
    h, w = mask.shape
    scale = (max_hole_pixels / holes) ** 0.5
    sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
    small = cv2.resize(crop, (sw, sh), interpolation=cv2.INTER_AREA)
    # On a 0/255 mask INTER_AREA keeps any partly covered pixel > 0: it is a hole, so no ink stays "known".
    full = (mask > 0).astype(np.uint8) * 255
    hole = (cv2.resize(full, (sw, sh), interpolation=cv2.INTER_AREA) > 0).astype(np.uint8)
    filled = cv2.inpaint(small, hole, INPAINT_RADIUS, cv2.INPAINT_TELEA)
    return cv2.resize(filled, (w, h), interpolation=cv2.INTER_LINEAR)


def paste(dst: np.ndarray, src: np.ndarray, mask: np.ndarray) -> None:
    """Copy src into dst (same HxWx3 shape; dst may be a view) where mask is nonzero, leaving the rest untouched."""
    np.copyto(dst, src, where=mask.astype(bool)[..., None])
