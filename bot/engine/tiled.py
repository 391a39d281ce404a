"""Tiled marks: find the lattice the repeats sit on and remove the mark from the stack of repeats.

A tiled mark repeats one element (a word, a logo) on a lattice over the whole photo, faintly (A 0.1-0.4). One repeat
alone is hard to fit: under a faint mark on texture, an inpainted guess at the photo is as wrong as the mark is
strong. But every repeat covers a different part of the photo, so aligned and averaged, the photos under them blur
into a smooth field while the mark stays sharp (after Dekel et al., "On the Effectiveness of Visible Watermarks",
CVPR 2017, who pool one mark over many photos). So:

1. ``find_lattice``: the autocorrelation of the segmenter's belief (on its proxy) peaks at the lattice's vectors;
   of its strongest peaks, the pair whose whole lattice of combinations the autocorrelation confirms best is kept,
   if that mean (``Lattice.strength``) reaches MIN_STRENGTH. The vectors are then refined at full resolution on the
   image's own fine detail, where the mark is the only thing that repeats.
2. Windows of one lattice cell around the lattice points are cut out. The repeats most inside the photo (up to
   FIT_REPEATS) are aligned to their mean within ALIGN px (marks are pasted at whole pixels, so their repeats are
   not exactly on the lattice), the lattice is fitted again to where they landed, and every other repeat is
   aligned within ALIGN_ALL px of where that lattice puts it.
3. The mean of the stack M is the mark over a smooth field: inpainting M under the mark gives that field B, and
   D = M - B = k (W - B) per pixel, with k = coverage x A. D alone cannot tell a faint white from a strong grey,
   but the stack can: where the mark covers fully, the photos' spread from repeat to repeat shrinks by (1 - A),
   which gives A (bounded below by the least A whose colour W = B + D / A is a colour at all).
4. Each pixel's snapped coverage of the mean (unblend.coverage) times A is inverted in every repeat; where two repeats'
   windows overlap, each piece of the mark goes to the repeat it is nearest the middle of. A stack whose mark does
   not stand out of what averaging leaves of the photos (MIN_CONTRAST_TO_NOISE), or is too faint to see
   (MIN_OPACITY), or that would cover more than MAX_COVER of the photo, is no tiled mark: nothing is changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from bot.engine import inpaint
from bot.engine.segmenter import MIN_AREA, upsample
from bot.engine.unblend import CHANGED, OPAQUE, coverage

__all__ = ["Lattice", "TiledMark", "find_lattice", "remove", "without"]

BELIEF_BLUR = 2.0  # proxy px: blurs the belief so a word's letters make one blob, not a lattice of their own
LOBE_LEVEL = 0.3  # autocorrelation above this around zero lag is the blob itself, not a repeat
MAX_LAG = 0.45  # of the frame: longer lags overlap too little of it to trust
PEAKS = 12  # strongest autocorrelation peaks tried as lattice vectors
MIN_PEAK = 0.25  # weaker peaks are not tried
MIN_STRENGTH = 0.35  # mean autocorrelation over the lattice's points (val: non-tiled photos reach 0.30, wrong
# lattices on tiled ones 0.27, right ones 0.41 and up but for one at 0.24)
SPAN = 2  # the lattice's points i a + j b with |i|, |j| <= SPAN are checked
REFINE_SCALE = 2.0  # the lattice is refined first on a copy at most this many times the proxy, then at full size
REFINE_SAMPLES = 30_000  # mark pixels sampled for refining the lattice
MIN_SAMPLES = 100  # fewer sampled pixels than this (with every shifted partner in the image) refine nothing
MIN_PIECES = 3  # the belief must have this many separate marks before a lattice is looked for
FIT_REPEATS = 32  # repeats the mark is fitted on at most: those most inside the photo...
FIT_PIXELS = 6_000_000  # ...and no more than fill this many stacked pixels (time and memory on big photos)
MIN_REPEATS = 6  # fewer repeats in the photo average too little of it away
ALIGN_ALL = 1  # px every repeat may then move from where the fitted lattice puts it
ALIGN_SAMPLES = 20_000  # template pixels (the strongest) a repeat is aligned on
ALIGN = 2  # full-resolution px each repeat may move to align with the others
BELIEF_LEVEL = 0.25  # the mean belief over the stack above which a cell pixel may be under the mark
NOISE_RING = 4  # px outside the mark where the stack's own noise and the photos' spread are measured
MIN_CONTRAST_TO_NOISE = 2.0  # the mark's strongest differences over the mean's strays beside it (95th percentiles)
FULL_SHARE = 0.8  # pixels whose difference reaches this share of the 95th percentile are fully covered
MIN_OPACITY = 0.08  # the least opacity that explains the mean's differences must reach this
MAX_OPACITY_FACTOR = 2.5  # A may exceed its lower bound by this factor at most (few repeats give a noisy spread)
MAX_COVER = 0.25  # of the photo: a tiled mark is thin text or a logo (val: at most 0.13); a lattice of repeats
# covering more is the photo's own (scikit-image's coins: 0.42)
PIECE_GAP = 4  # px: pieces of the mark closer than this are one piece when repeats share out pixels


@dataclass(frozen=True, slots=True)
class Lattice:
    """A lattice in full-resolution pixels: points anchor + i a + j b (all (y, x))."""

    a: np.ndarray
    b: np.ndarray
    anchor: np.ndarray
    strength: float


@dataclass(frozen=True, slots=True)
class TiledMark:
    """What the stack said about one tiled mark."""

    lattice: Lattice
    repeats: int
    colour: np.ndarray  # W, 3 float32
    opacity: float  # A
    contrast_to_noise: float


def _autocorrelation(signal: np.ndarray) -> np.ndarray:
    """Normalised autocorrelation (1 at zero lag, centred), each lag divided by how many pixels overlap at it, so
    long lags are not penalised for the frame's edges."""
    h, w = signal.shape
    size = (cv2.getOptimalDFTSize(2 * h), cv2.getOptimalDFTSize(2 * w))
    centred = signal - signal.mean()
    spectrum = np.fft.rfft2(centred, size)
    power = np.fft.fftshift(np.fft.irfft2(spectrum * np.conj(spectrum), size))
    lags_y = np.abs(np.arange(size[0]) - size[0] // 2)
    lags_x = np.abs(np.arange(size[1]) - size[1] // 2)
    overlap = np.maximum(h - lags_y, 0)[:, None] * np.maximum(w - lags_x, 0)[None, :]
    ac = power / np.maximum(overlap, 0.25 * h * w)
    return ac / max(float(ac[size[0] // 2, size[1] // 2]), 1e-12)


def _reduce(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lagrange-Gauss reduction: the shortest basis of the same lattice."""
    for _ in range(32):
        if a @ a > b @ b:
            a, b = b, a
        m = np.round((a @ b) / (a @ a))
        if m == 0:
            break
        b = b - m * a
    return a, b


def find_lattice(belief: np.ndarray) -> tuple[float, np.ndarray, np.ndarray] | None:
    """(strength, a, b) of the lattice the segmenter's proxy belief repeats on, in proxy px, or None."""
    h, w = belief.shape
    # The square root lifts the faint repeats the network half sees towards the sure ones (val: the right lattice
    # more often, and wrong ones weaker).
    lifted = np.sqrt(np.clip(belief, 0, 1).astype(np.float32))
    ac = _autocorrelation(cv2.GaussianBlur(lifted, (0, 0), BELIEF_BLUR).astype(np.float64))
    ch, cw = ac.shape
    cy, cx = ch // 2, cw // 2
    _, lobes = cv2.connectedComponents((ac > LOBE_LEVEL).astype(np.uint8), connectivity=8)
    lobe = cv2.dilate((lobes == lobes[cy, cx]).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    yy, xx = np.mgrid[:ch, :cw]
    # One half-plane (the autocorrelation is symmetric), within a lag of less than half the frame.
    valid = ~lobe & (abs(yy - cy) < MAX_LAG * h) & (abs(xx - cx) < MAX_LAG * w) & ((yy > cy) | ((yy == cy) & (xx > cx)))
    masked = np.where(valid, ac, -1.0).astype(np.float32)
    peaks = valid & (masked >= cv2.dilate(masked, np.ones((5, 5), np.uint8))) & (masked >= MIN_PEAK)
    ys, xs = np.nonzero(peaks)
    order = np.argsort(-ac[ys, xs])[:PEAKS]
    vectors = np.stack([ys[order] - cy, xs[order] - cx], 1).astype(np.float64)

    def at(v: np.ndarray) -> float | None:
        y, x = round(cy + v[0]), round(cx + v[1])
        if not (0 <= y < ch and 0 <= x < cw):
            return None
        return float(ac[max(0, y - 1) : y + 2, max(0, x - 1) : x + 2].max())

    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for i in range(len(vectors)):
        for j in range(i + 1, len(vectors)):
            a, b = vectors[i], vectors[j]
            if abs(a[0] * b[1] - a[1] * b[0]) < 0.3 * np.hypot(*a) * np.hypot(*b):
                continue  # (nearly) parallel: no lattice
            a, b = _reduce(a, b)
            seen = [at(k * a + m * b) for k in range(-SPAN, SPAN + 1) for m in range(-SPAN, SPAN + 1) if k or m]
            values = [v for v in seen if v is not None]
            if len(values) < 4:
                continue
            strength = float(np.mean(np.minimum(values, 1.0)))
            if best is None or strength > best[0]:
                best = (strength, a, b)
    return best


def _refine_vector(detail: np.ndarray, ys: np.ndarray, xs: np.ndarray, v: np.ndarray, radius: int) -> np.ndarray:
    """The shift within radius of v (px of detail) at which the fine detail at the sampled mark pixels (ys, xs)
    best matches itself, to a fraction of a pixel (a parabola through the best whole shift and its neighbours)."""
    h, w = detail.shape
    vy, vx = round(v[0]), round(v[1])
    # Only samples whose every shifted partner lies inside the image, so each shift is scored on the same pixels.
    keep = ((ys + vy - radius >= 0) & (ys + vy + radius < h) & (xs + vx - radius >= 0) & (xs + vx + radius < w))
    ys, xs = ys[keep], xs[keep]
    if ys.size < MIN_SAMPLES:
        return v
    here = detail[ys, xs]
    scores = np.array([[float(here @ detail[ys + vy + dy, xs + vx + dx]) for dx in range(-radius, radius + 1)]
                       for dy in range(-radius, radius + 1)])
    by, bx = np.unravel_index(int(np.argmax(scores)), scores.shape)

    def vertex(before: float, top: float, after: float) -> float:
        curve = before - 2 * top + after
        return 0.5 * (before - after) / curve if curve < 0 else 0.0

    oy = vertex(*scores[by - 1 : by + 2, bx]) if 0 < by < 2 * radius else 0.0
    ox = vertex(*scores[by, bx - 1 : bx + 2]) if 0 < bx < 2 * radius else 0.0
    return np.array([vy + by - radius + oy, vx + bx - radius + ox])


def _refine_lattice(rgb: np.ndarray, belief: np.ndarray, a: np.ndarray, b: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The proxy lattice vectors carried to full resolution, refined on the image's fine detail near the marks: on a
    copy at most REFINE_SCALE times the proxy first, then at full resolution. Also returns the full-resolution
    fine detail."""
    height, width = rgb.shape[:2]
    ph, pw = belief.shape
    near = cv2.dilate((belief > 0.5).astype(np.uint8), np.ones((3, 3), np.uint8))
    rng = np.random.default_rng(0)  # fixed: the same image always gets the same lattice
    detail = _fine_detail(rgb)
    stages = []
    scale = max(height / ph, width / pw)
    if scale > REFINE_SCALE:
        factor = REFINE_SCALE / scale
        small = cv2.resize(rgb, (max(1, round(width * factor)), max(1, round(height * factor))),
                           interpolation=cv2.INTER_AREA)
        stages.append(_fine_detail(small))
    stages.append(detail)
    vectors = [a * np.array([height / ph, width / pw]), b * np.array([height / ph, width / pw])]
    step = scale  # how far off (full-resolution px) the vectors may be before this stage
    for plane in stages:
        h, w = plane.shape
        ys, xs = np.nonzero(cv2.resize(near, (w, h), interpolation=cv2.INTER_NEAREST))
        if ys.size > REFINE_SAMPLES:
            pick = rng.choice(ys.size, REFINE_SAMPLES, replace=False)
            ys, xs = ys[pick], xs[pick]
        shrink = w / width
        radius = int(np.ceil(step * shrink)) + 1
        vectors = [_refine_vector(plane, ys, xs, v * shrink, radius) / shrink for v in vectors]
        step = 0.5 / shrink  # half a px of this stage (it found the peak to a fraction), in full-resolution px
    return vectors[0], vectors[1], detail


def _fine_detail(rgb: np.ndarray) -> np.ndarray:
    grey = _grey(rgb)
    return grey - cv2.GaussianBlur(grey, (0, 0), 2.0)


def _grey(colour: np.ndarray) -> np.ndarray:
    """The mean of the three channels (the last axis), as float32: what .mean(-1) gives, without its float copy of
    the whole image or its slow reduction over an axis of three."""
    grey = colour[..., 0].astype(np.float32)
    grey += colour[..., 1]
    grey += colour[..., 2]
    grey /= 3
    return grey


def _window(image: np.ndarray, top: int, left: int, rows: int, columns: int) -> np.ndarray:
    """The rows x columns window of image whose corner is (top, left), as float32, NaN where it leaves the image."""
    return _read(lambda y0, y1, x0, x1: image[y0:y1, x0:x1], image.shape, top, left, rows, columns)


def _read(read: Callable[[int, int, int, int], np.ndarray], shape: tuple[int, ...], top: int, left: int, rows: int,
          columns: int) -> np.ndarray:
    """A window of an image of this shape, as float32, NaN where it leaves the image; read(y0, y1, x0, x1) gives the
    part inside."""
    h, w = shape[:2]
    out = np.full((rows, columns, *shape[2:]), np.nan, np.float32)
    y0, y1, x0, x1 = max(0, top), min(h, top + rows), max(0, left), min(w, left + columns)
    if y0 < y1 and x0 < x1:
        out[y0 - top : y1 - top, x0 - left : x1 - left] = read(y0, y1, x0, x1)
    return out


def _part(image: np.ndarray, point: tuple[int, int], half: tuple[int, int], box: tuple[slice, slice]) -> np.ndarray:
    """The part `box` (in window coordinates: 0 at the corner) of a lattice point's window, NaN off the image."""
    top, left = point[0] - half[0] + box[0].start, point[1] - half[1] + box[1].start
    return _window(image, top, left, box[0].stop - box[0].start, box[1].stop - box[1].start)


def _belief_window(belief: np.ndarray, shape: tuple[int, int], point: tuple[int, int], half: tuple[int, int]
                   ) -> np.ndarray:
    """A lattice point's whole window of the proxy belief carried to the full-resolution image's shape, NaN off it
    (only the window is upsampled: at 12 MP the whole belief would be 48 MB)."""
    (ph, pw), (height, width) = belief.shape, shape
    return _read(lambda y0, y1, x0, x1: upsample(belief, y0, x0, y1 - y0, x1 - x0, ph / height, pw / width),
                 shape, point[0] - half[0], point[1] - half[1], 2 * half[0] + 1, 2 * half[1] + 1)


def _align(detail: np.ndarray, points: list[tuple[int, int]], half: tuple[int, int], box: tuple[slice, slice],
           template: np.ndarray | None = None, radius: int = ALIGN) -> tuple[list[tuple[int, int]], np.ndarray]:
    """(points, template): each point moved by up to radius px to where the fine detail in the box (the part of
    its window where the mark is) best matches the template, by default the points' own mean there."""
    if template is None:
        template = np.nanmean(np.stack([_part(detail, p, half, box) for p in points]), 0)
        template = np.nan_to_num(template - np.nanmean(template)).astype(np.float32)
    wider = (np.s_[box[0].start - radius : box[0].stop + radius], np.s_[box[1].start - radius : box[1].stop + radius])
    # On big windows (big photos) only the template's strongest pixels, the mark's edges, are matched: they carry
    # the match (the rest is mostly what is left of the photos), at a fraction of the cost.
    sampled = template.size > 4 * ALIGN_SAMPLES
    if sampled:
        ys, xs = np.unravel_index(np.argpartition(np.abs(template).ravel(), -ALIGN_SAMPLES)[-ALIGN_SAMPLES:],
                                  template.shape)
        weights = template[ys, xs]
    moved = []
    for y, x in points:
        around = np.nan_to_num(_part(detail, (y, x), half, wider))  # off the photo: 0, which matches nothing
        if sampled:
            scores = np.array([[float(weights @ around[ys + dy, xs + dx]) for dx in range(2 * radius + 1)]
                               for dy in range(2 * radius + 1)])
        else:
            scores = cv2.matchTemplate(around, template, cv2.TM_CCORR)
        dy, dx = np.unravel_index(int(np.argmax(scores)), scores.shape)
        moved.append((y + dy - radius, x + dx - radius))
    return moved, template


def remove(rgb: np.ndarray, belief: np.ndarray) -> tuple[np.ndarray, np.ndarray, TiledMark] | None:
    """(cleaned HxWx3 uint8, changed HxW bool, what was found) for a photo with a tiled mark, given the segmenter's
    proxy belief; None when there is no such mark (then nothing was changed)."""
    _, _, stats, _ = cv2.connectedComponentsWithStats((belief > 0.5).astype(np.uint8), connectivity=8)
    if np.count_nonzero(stats[1:, cv2.CC_STAT_AREA] >= MIN_AREA) < MIN_PIECES:
        return None  # one mark or none: nothing repeats (and the autocorrelation is not worth its time)
    found = find_lattice(belief)
    if found is None or found[0] < MIN_STRENGTH:
        return None
    strength, a, b = found
    height, width = rgb.shape[:2]
    ph, pw = belief.shape
    a, b, detail = _refine_lattice(rgb, belief, a, b)
    a, b = _reduce(a, b)
    if abs(a[0] * b[1] - a[1] * b[0]) < 1.0:
        return None  # the refined vectors fell onto one line: no lattice after all
    py, px = np.unravel_index(int(np.argmax(cv2.GaussianBlur(belief, (0, 0), 1.0))), belief.shape)
    lattice = Lattice(a, b, (np.array([py, px]) + 0.5) * np.array([height / ph, width / pw]), strength)
    half = (int(abs(a[0]) + abs(b[0])) // 2 + 2, int(abs(a[1]) + abs(b[1])) // 2 + 2)  # a cell's bounding box
    points, steps = _lattice_points(lattice, height, width, half)
    if len(points) < MIN_REPEATS:
        return None
    # The fit needs a few whole repeats, not all of them: those most inside the photo, nearest its middle.
    order = sorted(range(len(points)), key=lambda i: (-_inside(points[i], half, height, width),
                                                      abs(points[i][0] - height / 2) + abs(points[i][1] - width / 2)))
    whole = (np.s_[0 : 2 * half[0] + 1], np.s_[0 : 2 * half[1] + 1])
    fit = order[: max(MIN_REPEATS, min(FIT_REPEATS, FIT_PIXELS // ((2 * half[0] + 1) * (2 * half[1] + 1))))]
    belief = belief.astype(np.float32)
    beliefs = np.stack([_belief_window(belief, (height, width), points[i], half) for i in fit])
    under = np.nan_to_num(np.nanmean(beliefs, 0))
    del beliefs
    rows, columns = np.nonzero(under > BELIEF_LEVEL)
    if rows.size == 0:
        return None
    # Alignment looks only at the part of the window where the mark is (and a margin): faster, and less photo.
    margin = 2 * ALIGN + 2
    box = (np.s_[max(0, rows.min() - margin) : min(2 * half[0] + 1, rows.max() + margin + 1)],
           np.s_[max(0, columns.min() - margin) : min(2 * half[1] + 1, columns.max() + margin + 1)])
    sample, _ = _align(detail, [points[i] for i in fit], half, box)
    sample, template = _align(detail, sample, half, box)
    # The aligned repeats pin the lattice down (no drift over many steps); the others need only ALIGN_ALL px then.
    design = np.column_stack([np.ones(len(fit)), steps[fit]])
    (anchor, a, b), *_ = np.linalg.lstsq(design, np.array(sample, np.float64), rcond=None)
    lattice = Lattice(a, b, anchor, strength)
    predicted = [(round(y), round(x)) for y, x in np.column_stack([np.ones(len(points)), steps])
                 @ np.stack([anchor, a, b])]
    points, _ = _align(detail, predicted, half, box, template, radius=ALIGN_ALL)
    for n, i in enumerate(fit):
        points[i] = sample[n]
    del detail
    stack = np.stack([_part(rgb, points[i], half, whole) for i in fit])  # NaN off the photo
    fitted = _fit(stack, under)
    del stack
    if fitted is None:
        return None
    alpha, colour, opacity, contrast = fitted
    out, changed = _paste(rgb, points, alpha, colour)
    if np.count_nonzero(changed) > MAX_COVER * changed.size:
        return None  # the photo's own pattern (coins on a tray, tiles, a grid of icons), not a mark laid over it
    return out, changed, TiledMark(lattice, len(points), colour, opacity, contrast)


def _inside(point: tuple[int, int], half: tuple[int, int], height: int, width: int) -> float:
    """The share of a point's window that lies inside the photo."""
    (y, x), (hy, hx) = point, half
    rows = max(0, min(height, y + hy + 1) - max(0, y - hy))
    columns = max(0, min(width, x + hx + 1) - max(0, x - hx))
    return rows * columns / ((2 * hy + 1) * (2 * hx + 1))


def _fit(stack: np.ndarray, under: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float] | None:
    """(per-pixel opacity over one cell, colour W, opacity A, contrast to noise) of the mark in a stack of aligned
    repeats (K x h x w x 3, NaN off the photo) under the mean belief `under`; None if the stack shows no mark."""
    counts = np.count_nonzero(~np.isnan(stack[..., 0]), 0)
    mean = np.nanmean(stack, 0)
    spread = np.nanvar(_grey(stack), 0)  # how the photos under one pixel of the cell differ from repeat to repeat
    held = counts >= MIN_REPEATS // 2
    hole = cv2.dilate(((under > BELIEF_LEVEL) & held).astype(np.uint8), np.ones((5, 5), np.uint8))
    ring = (cv2.dilate(hole, np.ones((2 * NOISE_RING + 1,) * 2, np.uint8)) > 0) & (hole == 0) & held
    inside = hole > 0
    if not inside.any() or not ring.any():
        return None
    smooth = np.clip(np.nan_to_num(mean, nan=float(np.nanmean(mean))), 0, 255).astype(np.uint8)
    field = inpaint.fill(smooth, hole).astype(np.float32)
    difference = np.nan_to_num(mean - field) * inside[..., None]
    size = np.linalg.norm(difference, axis=-1)
    # The stack's noise: how far the mean strays from the same inpainting in a ring beside the mark, where there is
    # no mark (what is left of the photos after averaging them, which the field cannot guess either).
    beside = inpaint.fill(smooth, (hole | ring).astype(np.uint8)).astype(np.float32)
    stray = np.linalg.norm(np.nan_to_num(mean - beside)[ring], axis=-1)
    contrast = float(np.percentile(size[inside], 95)) / max(float(np.percentile(stray, 95)), 1e-3)
    if contrast < MIN_CONTRAST_TO_NOISE:
        return None
    full = inside & (size >= FULL_SHARE * np.percentile(size[inside], 95))
    step, base = np.median(difference[full], 0), np.median(field[full], 0)
    room = np.where(step > 0, 255.0 - base, base)
    least = float(np.max(np.abs(step) / np.maximum(room, 1.0)))  # the opacity at which W reaches 0 or 255
    if not MIN_OPACITY <= least < OPAQUE:
        return None  # too faint to be a mark one sees (the leftovers of averaged photos reach about 0.06)
    shrink = float(np.median(spread[full]) / max(np.median(spread[ring]), 1e-6))  # (1 - A)^2 where fully covered
    opacity = float(np.clip(1.0 - np.sqrt(min(shrink, 1.0)), least, min(MAX_OPACITY_FACTOR * least, OPAQUE)))
    colour = np.clip(base + step / opacity, 0, 255).astype(np.float32)
    share = coverage(field + difference, field, colour, np.float32(opacity))  # the mean, where it is the mark's
    return np.clip(share, 0.0, 1.0) * opacity * inside, colour, opacity, contrast


def _paste(rgb: np.ndarray, points: list[tuple[int, int]], alpha: np.ndarray, colour: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """(the photo with every repeat un-blended, the pixels that changed). Only the mark's own pixels are visited;
    where two repeats' windows both cover one, the repeat whose piece of the mark there is nearer its middle
    gives it."""
    height, width = rgb.shape[:2]
    out = rgb.copy()
    changed = np.zeros((height, width), bool)
    hy, hx = (alpha.shape[0] - 1) // 2, (alpha.shape[1] - 1) // 2
    rows, columns = np.nonzero(alpha > CHANGED)
    if rows.size == 0:
        return out, changed
    # A pixel's claim is as near as the middle of its piece of the mark (a glyph, or a word once glyphs closer than
    # PIECE_GAP merge): a piece goes whole to one repeat, the one it belongs to, even where it reaches nearer to
    # another repeat's lattice point than to its own (long words on a sheared lattice).
    size = 2 * PIECE_GAP + 1
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    _, pieces, _, centres = cv2.connectedComponentsWithStats(cv2.dilate((alpha > CHANGED).astype(np.uint8), disc))
    offsets = centres - np.array([hx, hy])
    distance = (offsets * offsets).sum(1).astype(np.float32)[pieces[rows, columns]]
    k = alpha[rows, columns][:, None]
    nearest = np.full((height, width), np.inf, np.float32)
    for y, x in points:
        ty, tx = rows + (y - hy), columns + (x - hx)
        inside = (ty >= 0) & (ty < height) & (tx >= 0) & (tx < width)
        ty, tx = ty[inside], tx[inside]
        closer = distance[inside] < nearest[ty, tx]
        ty, tx = ty[closer], tx[closer]
        nearest[ty, tx] = distance[inside][closer]
        photo = rgb[ty, tx].astype(np.float32)
        kk = k[inside][closer]
        restored = np.clip(np.rint((photo - kk * colour) / (1.0 - kk)), 0, 255).astype(np.uint8)
        out[ty, tx] = restored
        changed[ty, tx] = np.any(restored != rgb[ty, tx], axis=1)
    return out, changed


def _lattice_points(lattice: Lattice, height: int, width: int, half: tuple[int, int]
                    ) -> tuple[list[tuple[int, int]], np.ndarray]:
    """Whole-pixel lattice points whose window reaches the photo, and their steps (i, j) from the anchor (n x 2)."""
    a, b = lattice.a, lattice.b
    reach = int(np.hypot(height, width) / min(np.hypot(*a), np.hypot(*b))) + 2
    points, steps = [], []
    for i in range(-reach, reach + 1):
        for j in range(-reach, reach + 1):
            y, x = (round(v) for v in lattice.anchor + i * a + j * b)
            if -half[0] < y < height + half[0] and -half[1] < x < width + half[1]:
                points.append((y, x))
                steps.append((i, j))
    return points, np.array(steps, np.float64).reshape(-1, 2)


def without(belief: np.ndarray, changed: np.ndarray) -> np.ndarray:
    """The proxy belief with the removed tiled mark (and a proxy pixel around it) taken out, so the engine's other
    steps look only for the marks besides it (a logo beside the repeats) and do not fit its repeats again."""
    ph, pw = belief.shape
    gone = cv2.resize(changed.astype(np.uint8), (pw, ph), interpolation=cv2.INTER_AREA) > 0
    gone = cv2.dilate(gone.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    return np.where(gone, np.float32(0), belief).astype(np.float32)
