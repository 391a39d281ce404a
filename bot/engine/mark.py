"""The local engine: finds the mark pixel by pixel with the segmenter and un-blends it.

1. The segmenter (bot.engine.segmenter) looks at a proxy of at most PROXY_MAX_SIDE px and gives, per proxy pixel,
   the probability of a mark, its opacity A and its colour W.
2. Marks are the proxy pixels above MARK_PROBABILITY, without specks smaller than MIN_AREA. None: the image comes
   back as it came, bit for bit.
3. Nearby pieces are grouped into marks (the letters of a word, the repeats of a tiled mark) and each mark is
   calibrated as a whole (unblend.calibrate): its opacity level, and its colour when it is drawn in one colour
   (most text and tiled marks), are fitted so the mark's edges vanish from the un-blended image; a many-coloured
   logo keeps the network's per-pixel colours.
4. The opacity A and the premultiplied colour A W are carried to full resolution by the fast colour guided
   filter (bot.engine.unblend), fitted on the proxy, applied to the full-resolution pixels: both are locally
   affine in the marked colours, so thin strokes, anti-aliased edges and a letter's outline come back sharp.
5. Where A is below FEATHER_FROM the blend is inverted; above OPAQUE the pixel is inpainted; in between the two
   are mixed, so the seam does not show. Only pixels with A above CHANGED are written; every other pixel is
   copied from the input exactly.

Full-resolution work runs tile by tile (TILE px a side), on the tiles a mark reaches, so memory stays bounded on
images up to 10000 x 10000 and time follows the mark's area rather than the image's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from bot.engine import unblend
from bot.engine.progress import Progress
from bot.engine.segmenter import PROXY_MAX_SIDE, Segmentation, Segmenter

__all__ = ["DEFAULT_SEGMENTER", "MarkEngine", "Marks"]

log = logging.getLogger(__name__)

DEFAULT_SEGMENTER = Path(__file__).parent / "models" / "segmenter.onnx"
DEFAULT_THREADS = 2

MARK_PROBABILITY = 0.5  # a proxy pixel is part of a mark above this probability
MIN_AREA = 6  # proxy px: smaller specks are noise, not marks
REACH = 2  # proxy px around a mark where its soft edges may still lie
REPEATS = 4  # this many marks or more are taken for the repeats of one tiled mark...
LARGE_MARK = 0.02  # ...except marks covering more than this fraction of the proxy, which are fitted on their own
MIN_GAIN = 0.2  # a mark must lose at least this share of its edge energy when un-blended, or it is left alone
GROUP_GAP = 0.03  # of the proxy's short side: pieces closer than this are one mark (letters of a word, repeats)
GUIDE_RADIUS = 1  # proxy px: the guided filter's window (3x3), small so thin strokes keep their own fit
GUIDE_EPS = 1e-5  # the guided filter's regulariser (colours in [0, 1])
UNIFORM_SPREAD = 24.0  # a mark whose colours spread less than this (0..255, weighted MAD) is one colour
CHANGED = 0.02  # full-resolution opacity above which a pixel is rewritten (the truth's own mask threshold)
FEATHER_FROM = 0.75  # from here up to unblend.OPAQUE the inversion is mixed with inpainting
INPAINT_RADIUS = 3
TILE = 1024  # full-resolution px per tile side
TILE_MARGIN = 16  # px of context around a tile for inpainting; only the tile itself is written

# Where the progress bar stands: after the segmenter, then spread over the tiles.
PROGRESS_SEGMENTED = 30
PROGRESS_DONE = 100


@dataclass(frozen=True, slots=True)
class Marks:
    """What the engine knows about the marks of one image, at proxy resolution."""

    region: np.ndarray  # hxw bool: the marks and REACH px around them
    coefficients: np.ndarray  # hxwx4x4 float32: guided-filter coefficients (a_rgb, b) of A and A W (0..255)
    count: int  # how many marks (groups of nearby pieces)

    @property
    def empty(self) -> bool:
        return self.count == 0


def find_marks(seen: Segmentation) -> Marks:
    """Turn the segmenter's proxy maps into marks: threshold, drop specks, group nearby pieces (the letters of one
    text, the repeats of a tiled mark), pool each group's colour, calibrate its opacity, fit the guided filter."""
    pieces_count, pieces, stats, _ = cv2.connectedComponentsWithStats(
        (seen.mask > MARK_PROBABILITY).astype(np.uint8), connectivity=8
    )
    keep = np.zeros(pieces_count, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= MIN_AREA
    marked = keep[pieces]
    h, w = marked.shape
    if not keep.any():
        return Marks(np.zeros((h, w), bool), np.zeros((h, w, 4, 4), np.float32), 0)
    region = _dilate(marked, REACH)
    # Groups: pieces closer than GROUP_GAP of the proxy's short side belong to one mark.
    count, groups, boxes, _ = cv2.connectedComponentsWithStats(
        _dilate(marked, max(REACH, round(GROUP_GAP * min(h, w)))).astype(np.uint8), connectivity=8
    )
    owner = np.where(region, groups, 0)  # a region pixel belongs to the group whose pieces it surrounds
    alpha = np.where(region, seen.alpha, 0.0).astype(np.float32)
    colour = _spread_colour(seen.colour.astype(np.float32), marked, region)
    image = seen.image * np.float32(255)
    weight = seen.alpha * seen.mask
    # Many small marks are the repeats of one tiled mark: they share one opacity and colour, fitted on all their
    # edges at once, which is far steadier than each repeat's own few edges.
    shared = None
    if count - 1 >= REPEATS:
        uniform = _uniform_colour(colour[marked], weight[marked] + 1e-6)
        shared = unblend.calibrate(image, alpha, None if uniform is not None else colour)
    dropped = 0
    for group in range(1, count):
        x, y, bw, bh = boxes[group, :4]
        box = np.s_[y : y + bh, x : x + bw]
        own = owner[box] == group
        core = own & marked[box]
        if not core.any():
            continue
        if shared is not None and np.count_nonzero(core) < LARGE_MARK * h * w:
            scale, fitted, gain = shared
        else:
            uniform = _uniform_colour(colour[box][core], weight[box][core] + 1e-6)
            a = np.where(own, alpha[box], 0.0)
            scale, fitted, gain = unblend.calibrate(image[box], a, None if uniform is not None else colour[box])
        if gain < MIN_GAIN:  # un-blending does not make it vanish: not a blended mark (a sign, a shadow, noise)
            region[box][own] = False
            alpha[box][own] = 0.0
            dropped += 1
            continue
        alpha[box][own] *= scale
        if fitted is not None:
            colour[box][own] = fitted
    if dropped == count - 1:
        return Marks(np.zeros((h, w), bool), np.zeros((h, w, 4, 4), np.float32), 0)
    np.clip(alpha, 0.0, 1.0, out=alpha)
    source = np.concatenate([alpha[..., None], alpha[..., None] * colour], axis=-1)
    coefficients = unblend.guided_coefficients(seen.image, source, GUIDE_RADIUS, GUIDE_EPS)
    return Marks(region, coefficients, count - 1 - dropped)


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    size = 2 * radius + 1
    return cv2.dilate(mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))) > 0


def _uniform_colour(pixels: np.ndarray, weights: np.ndarray) -> np.ndarray | None:
    """The weighted median colour of a mark's pixels if they are one colour (small weighted spread), else None."""
    median = np.array([_weighted_median(pixels[:, c], weights) for c in range(3)], np.float32)
    spread = np.average(np.abs(pixels - median), axis=0, weights=weights).max()
    return median if spread < UNIFORM_SPREAD else None


def _spread_colour(colour: np.ndarray, marked: np.ndarray, region: np.ndarray) -> np.ndarray:
    """The network's colour on marked pixels, and the nearest marked pixel's on the rest of the region, where soft
    edges still need a colour but the network's colour is not trained to mean anything."""
    _, nearest = cv2.distanceTransformWithLabels((~marked).astype(np.uint8), cv2.DIST_L2, 3,
                                                 labelType=cv2.DIST_LABEL_PIXEL)
    ys, xs = np.nonzero(marked)
    lookup = np.zeros((nearest.max() + 1, 3), np.float32)
    lookup[nearest[ys, xs]] = colour[ys, xs]
    return np.where((region & ~marked)[..., None], lookup[nearest], colour)


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, cumulative[-1] / 2)])


def remove(rgb: np.ndarray, marks: Marks, progress: Callable[[int], None] = lambda _: None) -> np.ndarray:
    """A new image with the marks un-blended (or inpainted where opaque); every other pixel copied exactly."""
    out = rgb.copy()
    if marks.empty:
        return out
    height, width = rgb.shape[:2]
    ph, pw = marks.region.shape
    sy, sx = ph / height, pw / width
    tiles = [(y, x) for y in range(0, height, TILE) for x in range(0, width, TILE)
             if _proxy_window(marks.region, y, x, sy, sx, height, width).any()]
    for done, (y0, x0) in enumerate(tiles, 1):
        y1, x1 = min(y0 + TILE, height), min(x0 + TILE, width)
        # The tile with a margin of context, for inpainting; the margin itself is never written.
        cy0, cx0 = max(0, y0 - TILE_MARGIN), max(0, x0 - TILE_MARGIN)
        cy1, cx1 = min(height, y1 + TILE_MARGIN), min(width, x1 + TILE_MARGIN)
        cleaned, changed = _clean_tile(rgb[cy0:cy1, cx0:cx1], marks, cy0, cx0, sy, sx)
        inner = np.s_[y0 - cy0 : y1 - cy0, x0 - cx0 : x1 - cx0]
        np.copyto(out[y0:y1, x0:x1], cleaned[inner], where=changed[inner][..., None])
        progress(PROGRESS_SEGMENTED + (PROGRESS_DONE - PROGRESS_SEGMENTED) * done // len(tiles))
    return out


def _proxy_window(region: np.ndarray, y: int, x: int, sy: float, sx: float, height: int, width: int) -> np.ndarray:
    """The proxy pixels a full-resolution tile at (y, x) can draw from (one proxy pixel of slack for bilinear)."""
    py0, px0 = max(0, int(y * sy) - 1), max(0, int(x * sx) - 1)
    py1 = min(region.shape[0], int(min(height, y + TILE) * sy) + 2)
    px1 = min(region.shape[1], int(min(width, x + TILE) * sx) + 2)
    return region[py0:py1, px0:px1]


def _upsample(plane: np.ndarray, y0: int, x0: int, h: int, w: int, sy: float, sx: float,
              interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """The h x w full-resolution window at (y0, x0) of a proxy plane, as cv2.resize would give it (pixel centres
    aligned), computed for the window alone."""
    map_x = ((np.arange(x0, x0 + w, dtype=np.float32) + 0.5) * np.float32(sx) - 0.5)[None, :].repeat(h, 0)
    map_y = ((np.arange(y0, y0 + h, dtype=np.float32) + 0.5) * np.float32(sy) - 0.5)[:, None].repeat(w, 1)
    return cv2.remap(plane, map_x, map_y, interpolation, borderMode=cv2.BORDER_REPLICATE)


def _clean_tile(tile: np.ndarray, marks: Marks, y0: int, x0: int, sy: float, sx: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """(cleaned tile uint8, changed HxW bool) for one full-resolution window whose top-left is (y0, x0)."""
    h, w = tile.shape[:2]
    region = _upsample(marks.region.astype(np.uint8), y0, x0, h, w, sy, sx, cv2.INTER_NEAREST) > 0
    guide = tile.astype(np.float32) * np.float32(1 / 255)
    ph, pw = marks.coefficients.shape[:2]
    coefficients = _upsample(marks.coefficients.reshape(ph, pw, 16), y0, x0, h, w, sy, sx).reshape(h, w, 4, 4)
    fitted = unblend.apply_coefficients(coefficients, guide)
    alpha = np.clip(fitted[..., 0], 0.0, 1.0)
    alpha[~region] = 0.0
    changed = alpha > CHANGED
    if not changed.any():
        return tile, changed
    premultiplied = np.clip(fitted[..., 1:], 0.0, 255.0 * alpha[..., None])
    restored, _ = unblend.invert(tile, alpha, premultiplied)
    hole = alpha >= FEATHER_FROM
    if hole.any():
        known = np.clip(np.rint(restored), 0, 255).astype(np.uint8)
        filled = cv2.inpaint(known, hole.astype(np.uint8), INPAINT_RADIUS, cv2.INPAINT_TELEA).astype(np.float32)
        # 0 at FEATHER_FROM, 1 at OPAQUE and above: the inversion fades into the fill instead of meeting it.
        mix = np.clip((alpha - FEATHER_FROM) / (unblend.OPAQUE - FEATHER_FROM), 0.0, 1.0)[..., None]
        restored = restored * (1 - mix) + filled * mix
    return np.clip(np.rint(restored), 0, 255).astype(np.uint8), changed


class MarkEngine:
    """Finds watermarks with the segmenter and un-blends them; see the module docstring."""

    def __init__(self, segmenter: Segmenter, proxy_side: int = PROXY_MAX_SIDE) -> None:
        """Wrap an opened segmenter; use MarkEngine.load() instead."""
        self._segmenter = segmenter
        self._proxy_side = proxy_side
        # One clean at a time: the segmenter and the tiles already use both cores, and memory stays predictable.
        self._lock = threading.Lock()

    @classmethod
    def load(cls, model_path: Path | None = None, *, threads: int = DEFAULT_THREADS) -> MarkEngine:
        """Open the segmenter; a missing or corrupt model raises EngineBroken with a clear detail."""
        path = Path(model_path) if model_path is not None else DEFAULT_SEGMENTER
        started = time.perf_counter()
        engine = cls(Segmenter.load(path, threads=threads))
        log.info("mark engine loaded from %s in %.2f s", path, time.perf_counter() - started)
        return engine

    def clean(self, rgb: np.ndarray, progress: Callable[[int], None] | None = None) -> np.ndarray:
        """rgb: HxWx3 uint8 RGB. Returns a new HxWx3 uint8 array; only pixels of found marks change."""
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 uint8 array, got {getattr(rgb, 'shape', type(rgb))}")
        rgb = np.ascontiguousarray(rgb)
        report = Progress(progress)
        with self._lock:
            started = time.perf_counter()
            report(0)
            marks = find_marks(self._segmenter.predict(rgb, self._proxy_side))
            found = time.perf_counter()
            report(PROGRESS_SEGMENTED)
            out = remove(rgb, marks, report)
            report(PROGRESS_DONE)
            log.debug("cleaned %dx%d: %d marks; find %.2f s, remove %.2f s", rgb.shape[1], rgb.shape[0],
                      marks.count, found - started, time.perf_counter() - found)
            return out
