"""Removes a mark by inverting its blend, J = (1 - A) I + A W, where the background still shows through.

A visible watermark is a blend of the photo I with the mark's colour W at opacity A. Where A is known and not too
close to 1, the photo comes back exactly: I = (J - A W) / (1 - A). Inpainting, which invents I from the
surroundings, cannot do that (engine.md: about 24 dB inside the mark against about 48 dB for the inversion).

The engine knows roughly where a mark is (the segmenter) and needs W, A and, per pixel, how much of the mark
covers it. Marks are drawn in one colour at one opacity far more often than not, and their coverage is nearly
binary (a glyph's inside, its anti-aliased rim, nothing). So:

- ``fit_blend``: from a smooth estimate B of the photo under the mark (inpainted on a proxy), each marked pixel's
  difference D = J - B is k (W - B) with k = coverage x A. One colour W and the per-pixel k are fitted by least
  squares (a coarse-to-fine search over W, k in closed form), and A is the level the fully covered pixels reach.
  The pixels are full-resolution ones (sampled within the proxy's marked pixels), where a glyph's inside is
  whole; on the proxy a thin stroke is only ever partly covered.
- ``coverage``: k / A per pixel at full resolution, *snapped*: at or above FULL it is 1 and below NONE it is 0,
  so for the inside of a glyph the inversion uses the exact A (and B's errors do not reach the result), outside
  the glyph nothing changes, and only the rim in between is graded.
- ``invert``: the inversion itself, with the opacity capped at OPAQUE and the mask of pixels too opaque to invert
  (their background is under the JPEG noise times 1 / (1 - A)), which the engine inpaints instead.
- ``one_colour``: whether a fitted blend explains a mark well enough to invert it with its one colour.
- ``standing_out``: what still stands out of B once un-blended (lettering in another colour, an outline): what one
  colour does not explain, to inpaint.
- ``fill_opaque``: inpaints the pixels too opaque to invert (and any others asked for), with the inversion fading
  into the fill from FEATHER_FROM so the seam does not show.

Both the network's marks (bot.engine.mark) and the text lines of the PP-OCR pass (bot.engine.text) go through
these, on one tile or one text line at a time, so the engines can bound their memory on huge images.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from bot.engine import inpaint

__all__ = ["CHANGED", "FEATHER_FROM", "FULL", "MIN_CONTRAST", "MIN_EXPLAINED", "MIN_ONE_COLOUR", "MIN_OPACITY", "NONE",
           "OPAQUE", "Blend", "coverage", "fill_opaque", "fit_blend", "invert", "one_colour", "standing_out"]

OPAQUE = 0.9  # at or above this opacity the background is not recovered but inpainted
CHANGED = 0.02  # full-resolution opacity above which a pixel is rewritten (the truth's own mask threshold)
NONE, FULL = 0.15, 0.7  # coverage below NONE is none, at or above FULL is whole (see coverage())
MIN_CONTRAST = 20.0  # 0..255: where |W - B| is below this the mark cannot be told from the photo; left alone
FIT_SAMPLES = 3000  # pixels used to fit one mark (a fixed-seed sample of its pixels when it has more)
COARSE_SAMPLES = 750  # of them, the first search over a coarse grid of 729 colours uses this many
MIN_SAMPLES = 4  # fewer pixels than this fit nothing
TOP_PERCENTILE = 95  # the opacity is the median share of the pixels within PLATEAU of this percentile's share:
PLATEAU = 0.6  # the fully covered inside of the mark, robust to noise (an upper percentile alone overshoots)
MAX_REFINEMENT = 0.15  # the regression on the inside may move the opacity by this much at most
MIN_EXPLAINED = 0.8  # a mark's one-colour blend must account for this share of its differences from B...
MIN_OPACITY = 0.04  # ...and be at least this opaque, or it is no blend at all
MIN_ONE_COLOUR = 0.95  # below this share a mark is a blend of several colours and is inpainted instead
FEATHER_FROM = 0.75  # from here up to OPAQUE the inversion is mixed with inpainting
STANDS_OUT = 30.0  # 0..255: what still stands out of B by more than this once un-blended is not the one colour's
# (an outline, a shadow, lettering on a plate; val: 20-50 alike)...
STANDS_OUT_SPREAD = 6.0  # ...and by more than this many median absolute deviations of the pixels looked at (val:
# 3-6 alike, 10 finds nothing; under 6 more of a textured photo under a see-through plate is taken for lettering)


class Blend(NamedTuple):
    """One mark's fitted blend."""

    colour: np.ndarray  # W, 3 float32 in 0..255
    opacity: float  # A in (0, 1]
    explained: float  # share of the differences J - B the model accounts for (1 = all of them)


def fit_blend(differences: np.ndarray, backgrounds: np.ndarray, seed: int = 0) -> Blend:
    """Fit one colour W and opacity A to a mark's pixels: differences J - B and backgrounds B, Nx3 float32.

    Each pixel's difference is modelled as k (W - B) with its own k in [0, 1] (coverage times A). W is searched
    on a coarse 0..255 grid, then refined twice around the best; k is the closed-form projection for each W.
    """
    if len(differences) < MIN_SAMPLES:
        return Blend(np.zeros(3, np.float32), 0.0, 0.0)  # too few pixels to say anything: left alone
    if len(differences) > FIT_SAMPLES:
        pick = np.random.default_rng(seed).choice(len(differences), FIT_SAMPLES, replace=False)
        differences, backgrounds = differences[pick], backgrounds[pick]
    levels = np.linspace(0, 255, 9, dtype=np.float32)
    candidates = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3)
    # The coarse grid only has to land near the right colour: a share of the (already random) sample does that.
    residuals, shares = _project(differences[:COARSE_SAMPLES], backgrounds[:COARSE_SAMPLES], candidates)
    best = int(np.argmin(residuals))
    colour = candidates[best]
    for step in (12.0, 4.0):
        offsets = np.arange(-2, 3, dtype=np.float32) * step
        around = np.stack(np.meshgrid(offsets, offsets, offsets, indexing="ij"), -1).reshape(-1, 3)
        candidates = np.clip(colour + around, 0, 255)
        residuals, shares = _project(differences, backgrounds, candidates)
        best = int(np.argmin(residuals))
        colour = candidates[best]
    energy = float((differences * differences).sum())
    explained = 1.0 - float(residuals[best]) / energy if energy > 0 else 0.0
    share = shares[:, best]
    inside = share >= PLATEAU * np.percentile(share, TOP_PERCENTILE)
    opacity = float(np.median(share[inside]))
    refined = _regress(differences[inside] + backgrounds[inside], backgrounds[inside])
    if refined is not None and abs(refined[1] - opacity) <= MAX_REFINEMENT:
        colour, opacity = refined  # a bigger change means B is too rough there (a big hole) to pin the slope
    return Blend(colour.astype(np.float32), opacity, explained)


def _regress(marked: np.ndarray, backgrounds: np.ndarray) -> tuple[np.ndarray, float] | None:
    """On fully covered pixels J = (1 - A) B + A W: one slope (1 - A) and an intercept A W per channel, by least
    squares. The search above trades W against k for marks near white or black (a dimmer W, a higher A fit
    about as well); across pixels whose B differs this pins both. None when it does not give a sane blend."""
    n = len(marked)
    if n < 20:
        return None
    design = np.zeros((3 * n, 4), np.float64)
    design[:, 0] = backgrounds.reshape(-1)
    for channel in range(3):
        design[channel::3, 1 + channel] = 1.0
    (slope, *intercepts), *_ = np.linalg.lstsq(design, marked.reshape(-1).astype(np.float64), rcond=None)
    opacity = 1.0 - slope
    if not 0.02 < opacity <= 1.0:
        return None
    colour = np.asarray(intercepts) / opacity
    if colour.min() < -MIN_CONTRAST or colour.max() > 255 + MIN_CONTRAST:
        return None
    return np.clip(colour, 0, 255).astype(np.float32), float(opacity)


def _project(differences: np.ndarray, backgrounds: np.ndarray, colours: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each candidate colour: the summed residual |D - k (W - B)|^2 and each pixel's k (clipped to [0, 1]).

    Expanded so that only N x K planes are formed (two matrix products), never the N x K x 3 differences:
    D.(W - B) = D.W - D.B, |W - B|^2 = |W|^2 - 2 B.W + |B|^2, |D - k t|^2 = |D|^2 - 2 k D.t + k^2 |t|^2."""
    d, b, w = (np.asarray(a, np.float64) for a in (differences, backgrounds, colours))
    dot = d @ w.T - (d * b).sum(-1)[:, None]
    length = (w * w).sum(-1)[None, :] - 2 * (b @ w.T) + (b * b).sum(-1)[:, None] + 1e-6
    shares = np.clip(dot / length, 0.0, 1.0)
    residual = (d * d).sum(-1)[:, None] - shares * (2 * dot - shares * length)
    return residual.sum(0), shares


def coverage(marked: np.ndarray, background: np.ndarray, colour: np.ndarray, opacity: np.ndarray) -> np.ndarray:
    """How much of the mark covers each pixel, snapped (see the module docstring); HxW float32 in [0, 1].

    marked, background: HxWx3 float32 0..255; colour: HxWx3 (W per pixel, constant per mark); opacity: HxW (A,
    zero off the marks)."""
    towards = colour - background
    length = (towards * towards).sum(-1)
    share = ((marked - background) * towards).sum(-1) / np.maximum(opacity * length, 1e-3)
    share[(length < MIN_CONTRAST**2) | (opacity <= 0)] = 0.0
    share[share < NONE] = 0.0
    share[share >= FULL] = 1.0
    return share


def invert(marked: np.ndarray, alpha: np.ndarray, colour: np.ndarray, opaque: float = OPAQUE
           ) -> tuple[np.ndarray, np.ndarray]:
    """The un-blended background I = (J - A W) / (1 - A) and the pixels too opaque to trust it.

    marked J: HxWx3 (any numeric type, 0..255); alpha A: HxW in [0, 1]; colour W: HxWx3 in 0..255. Returns
    (restored HxWx3 float32 clipped to 0..255, opaque HxW bool where A >= opaque); restored there uses A capped
    at opaque.
    """
    capped = np.minimum(alpha, opaque).astype(np.float32)[..., None]
    restored = (marked.astype(np.float32) - capped * colour) / (1.0 - capped)
    return np.clip(restored, 0.0, 255.0, out=restored), alpha >= opaque


def one_colour(blend: Blend) -> bool:
    """Whether one colour at one opacity explains a mark (MIN_ONE_COLOUR, MIN_OPACITY): then it is un-blended."""
    return blend.explained >= MIN_ONE_COLOUR and blend.opacity >= MIN_OPACITY


def standing_out(restored: np.ndarray, background: np.ndarray, where: np.ndarray) -> np.ndarray:
    """The pixels of where (HxW bool) that its un-blending left standing out of B: what one colour does not take
    off (a text line's outline or shadow; a name drawn on a see-through plate in another colour, which it may even
    make starker). They stand out of B by more than STANDS_OUT and than STANDS_OUT_SPREAD times the spread of the
    departures from B over where, which are the photo's texture and B's guesswork in a big hole."""
    departure = np.linalg.norm(restored - background, axis=-1)
    level = departure[where]
    if not level.size:
        return np.zeros_like(where)
    median = float(np.median(level))
    spread = float(np.median(np.abs(level - median)))
    return where & (departure > max(STANDS_OUT, median + STANDS_OUT_SPREAD * spread))


def fill_opaque(restored: np.ndarray, alpha: np.ndarray, fill: np.ndarray, max_hole_pixels: int) -> np.ndarray:
    """The un-blended pixels (HxWx3 float32) as uint8, with those at OPAQUE and above, and those of fill (HxW
    bool), inpainted from the rest; between FEATHER_FROM and OPAQUE the inversion is mixed with the fill."""
    hole = (alpha >= FEATHER_FROM) | fill
    if hole.any():
        known = np.clip(np.rint(restored), 0, 255).astype(np.uint8)
        filled = inpaint.fill(known, hole.astype(np.uint8), max_hole_pixels).astype(np.float32)
        # 0 at FEATHER_FROM, 1 at OPAQUE and above: the inversion fades into the fill instead of meeting it.
        mix = np.clip((alpha - FEATHER_FROM) / (OPAQUE - FEATHER_FROM), 0.0, 1.0)
        mix[fill] = 1.0
        restored = restored * (1 - mix[..., None]) + filled * mix[..., None]
    return np.clip(np.rint(restored), 0, 255).astype(np.uint8)
