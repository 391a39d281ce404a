"""The one image type the engines take: an HxWx3 uint8 RGB array."""

from __future__ import annotations

import numpy as np

__all__ = ["as_rgb"]


def as_rgb(value: object) -> np.ndarray:
    """value as a C-contiguous HxWx3 uint8 array (OpenCV wants contiguous rows; free when it already is); anything
    else raises ValueError naming what came instead."""
    if not isinstance(value, np.ndarray) or value.dtype != np.uint8 or value.ndim != 3 or value.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 array, got {getattr(value, 'shape', type(value))}")
    return np.ascontiguousarray(value)
