"""Removes a mark by inverting its blend, J = (1 - A) I + A W, where the background still shows through.

A visible watermark is a blend of the photo I with the mark's colour W at opacity A. Where A is known and not too
close to 1, the photo comes back exactly: I = (J - A W) / (1 - A). Inpainting, which invents I from the
surroundings, cannot do that (engine.md: about 24 dB inside the mark against about 48 dB for the inversion).

Functions here are pure numpy/OpenCV on one tile at a time, so the engine can bound its memory on huge images:

- ``guided_coefficients`` / ``apply_coefficients``: the fast colour guided filter (He and Sun 2015). The
  segmenter's alpha comes from a downscaled proxy; alpha is locally an affine function of the marked colours
  (J = I + A (W - I) with I and W locally constant), so the per-window affine fit is made on the proxy and applied
  to the full-resolution pixels, which restores thin strokes and anti-aliased edges the proxy blurred.
- ``invert``: the inversion, with the opacity capped at OPAQUE, and the mask of pixels too opaque to invert
  (their background is under the JPEG noise times 1 / (1 - A)), which the engine inpaints instead.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["OPAQUE", "SCALES", "apply_coefficients", "calibrate", "guided_coefficients", "invert"]

OPAQUE = 0.9  # at or above this opacity the background is not recovered but inpainted
SCALES = np.round(np.arange(0.5, 1.81, 0.05), 2)  # opacity corrections tried by calibrate()


def _box(plane: np.ndarray, radius: int) -> np.ndarray:
    size = 2 * radius + 1
    return cv2.boxFilter(plane, -1, (size, size), normalize=True, borderType=cv2.BORDER_REFLECT)


def guided_coefficients(guide: np.ndarray, source: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Per-pixel affine coefficients of the colour guided filter: source_k ≈ a_k · guide + b_k for each plane k.

    guide: hxwx3 float32 in [0, 1]; source: hxwxK float32. Returns hxwxKx4 float32 (a_r, a_g, a_b, b per plane),
    already window-averaged, so ``apply_coefficients`` on the same guide gives the guided filter's output, and on
    upsampled coefficients with the full-resolution guide gives the fast guided filter's.
    """
    guide = guide.astype(np.float32, copy=False)
    source = source.astype(np.float32, copy=False)
    mean_i = _box(guide, radius)
    # The 3x3 covariance of the guide per window (symmetric: six planes), regularised by eps on the diagonal.
    rr, rg, rb, gg, gb, bb = (
        _box(guide[..., i] * guide[..., j], radius) - mean_i[..., i] * mean_i[..., j]
        for i, j in ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))
    )
    rr, gg, bb = rr + eps, gg + eps, bb + eps
    # Its inverse by the adjugate, vectorised over pixels: rows (i_rr, i_rg, i_rb), (i_rg, i_gg, i_gb), ...
    adj = [gg * bb - gb * gb, gb * rb - rg * bb, rg * gb - gg * rb, rr * bb - rb * rb, rg * rb - rr * gb, rr * gg - rg * rg]
    det = rr * adj[0] + rg * adj[1] + rb * adj[2]
    i_rr, i_rg, i_rb, i_gg, i_gb, i_bb = (plane / det for plane in adj)
    planes = []
    for k in range(source.shape[2]):
        p = source[..., k]
        mean_p = _box(p, radius)
        c_r, c_g, c_b = (_box(guide[..., c] * p, radius) - mean_i[..., c] * mean_p for c in range(3))
        a_r = i_rr * c_r + i_rg * c_g + i_rb * c_b
        a_g = i_rg * c_r + i_gg * c_g + i_gb * c_b
        a_b = i_rb * c_r + i_gb * c_g + i_bb * c_b
        b = mean_p - a_r * mean_i[..., 0] - a_g * mean_i[..., 1] - a_b * mean_i[..., 2]
        planes.append(_box(np.stack([a_r, a_g, a_b, b], axis=-1), radius))
    return np.stack(planes, axis=2)


def apply_coefficients(coefficients: np.ndarray, guide: np.ndarray) -> np.ndarray:
    """a_k · guide + b_k per pixel and plane: coefficients HxWxKx4 and guide HxWx3 (float32, same H, W) -> HxWxK."""
    out = np.einsum("hwkc,hwc->hwk", coefficients[..., :3], guide)
    out += coefficients[..., 3]
    return out


def invert(marked: np.ndarray, alpha: np.ndarray, premultiplied: np.ndarray, opaque: float = OPAQUE
           ) -> tuple[np.ndarray, np.ndarray]:
    """The un-blended background I = (J - A W) / (1 - A) and the pixels too opaque to trust it.

    marked J: HxWx3 (any numeric type, 0..255); alpha A: HxW in [0, 1]; premultiplied A W: HxWx3 in 0..255 (the
    mark's colour times its opacity, which is what the guided filter carries well across colour edges inside a
    mark, such as a white letter's dark outline). Returns (restored HxWx3 float32 clipped to 0..255, opaque HxW
    bool where A >= opaque); there the colour is scaled down with A capped at opaque.
    """
    alpha = alpha.astype(np.float32, copy=False)
    capped = np.minimum(alpha, opaque)
    scale = np.divide(capped, alpha, out=np.ones_like(alpha), where=alpha > 0)[..., None]
    restored = (marked.astype(np.float32) - premultiplied * scale) / (1.0 - capped)[..., None]
    return np.clip(restored, 0.0, 255.0, out=restored), alpha >= opaque


def calibrate(marked: np.ndarray, alpha: np.ndarray, colour: np.ndarray | None, scales: np.ndarray = SCALES
              ) -> tuple[float, np.ndarray | None, float]:
    """The opacity scale (and, when colour is None, the one colour W) that make a mark vanish best.

    A network's opacity is right in shape more often than in level, and a level 30 % off leaves the mark (or its
    negative) at about 20 dB. The right A and W make the un-blended I = (J - A W) / (1 - A) continuous across the
    mark's edges, so for each scale s of the opacity this fits W in closed form (least squares of the gradient of
    I, weighted to the mark's edges, where the mark shows and the photo's own texture matters least) and keeps the
    s with the smallest residual.

    marked: hxwx3 float32 0..255 around one mark; alpha: hxw in [0, 1] (the mark's own opacity, zero elsewhere);
    colour: hxwx3 per-pixel colour to keep, or None to fit one colour. Returns (scale, fitted colour or None,
    gain), gain being how much of the edge energy the un-blending took away (1 - best / untouched): a real mark's
    edges vanish, so a gain near zero says the network saw a mark that is not there.
    """
    gx, gy = np.abs(np.diff(alpha, axis=1)), np.abs(np.diff(alpha, axis=0))
    best: tuple[float, float, np.ndarray | None, float] = (np.inf, 1.0, None, 0.0)
    for scale in scales:
        a = np.minimum(alpha * np.float32(scale), OPAQUE)
        inverse = 1.0 / (1.0 - a)
        # Weighted by (1 - A)^2: residuals measured in the marked image's units, so a higher opacity is not
        # penalised merely for amplifying the photo's texture and JPEG noise by 1 / (1 - A).
        keep = (1.0 - a) ** 2
        wx, wy = gx * np.minimum(keep[:, 1:], keep[:, :-1]), gy * np.minimum(keep[1:], keep[:-1])
        total = wx.sum() + wy.sum() + 1e-12
        wx, wy = wx / total, wy / total
        background = marked * inverse[..., None]  # I = J / (1 - A) - W A / (1 - A)
        weight = a * inverse
        if colour is not None:
            background = background - colour * weight[..., None]
            fitted = None
            residual = _weighted_gradient_energy(background, None, wx, wy)
        else:
            fitted = _fit_colour(background, weight, wx, wy)
            residual = _weighted_gradient_energy(background, weight[..., None] * fitted, wx, wy)
        if residual < best[0]:
            untouched = _weighted_gradient_energy(marked, None, wx, wy)
            best = (residual, float(scale), fitted, 1.0 - residual / max(untouched, 1e-12))
    return best[1], best[2], best[3]


def _fit_colour(background: np.ndarray, weight: np.ndarray, wx: np.ndarray, wy: np.ndarray) -> np.ndarray:
    """Per channel, W minimising sum w |grad(J / (1 - A)) - W grad(A / (1 - A))|^2, clipped to 0..255."""
    kx, ky = np.diff(weight, axis=1), np.diff(weight, axis=0)
    jx, jy = np.diff(background, axis=1), np.diff(background, axis=0)
    numerator = (wx[..., None] * kx[..., None] * jx).sum((0, 1)) + (wy[..., None] * ky[..., None] * jy).sum((0, 1))
    denominator = (wx * kx * kx).sum() + (wy * ky * ky).sum() + 1e-12
    return np.clip(numerator / denominator, 0.0, 255.0).astype(np.float32)


def _weighted_gradient_energy(background: np.ndarray, mark: np.ndarray | None, wx: np.ndarray, wy: np.ndarray
                              ) -> float:
    image = background if mark is None else background - mark
    return float((wx[..., None] * np.diff(image, axis=1) ** 2).sum() + (wy[..., None] * np.diff(image, axis=0) ** 2).sum())
