"""The local engine: finds the mark with the segmenter and un-blends it.

1. The segmenter (bot.engine.segmenter) looks at a proxy of at most PROXY_MAX_SIDE px and gives, per proxy pixel,
   the probability of a mark. Marks are the pixels above MARK_PROBABILITY, without specks under MIN_AREA; none,
   and the image comes back as it came, bit for bit. A mark must also have a core the network is all but sure
   of (MIN_PEAK): its false marks on photos it never saw (a sign, a bright object) reach 0.99 but seldom 0.9995,
   while real marks do; the faint repeats of a tiled mark need only one sure repeat of about their size, and a
   stamp, a small mark in a corner with text in it (a name or an address, often beside an icon), needs only
   STAMP_PEAK where the OCR detector (the text engine's) finds text lines in it: a photo's false marks are seldom
   in a corner and text at once. On a greyscale photo, where one grey explains whatever the finder takes for a
   mark (scikit-image's coins), a mark must be text the OCR detector finds as well (val, greyscale copies: no clean
   image touched instead of 1 in 10; logos in the mark 16.6 dB instead of 18.2, other families alike).
   Where the network's marks repeat on a lattice, the tiled mark is first taken out of the stack of its repeats
   (bot.engine.tiled, which pools them instead of fitting each against an inpainted guess); the steps below then
   look only for the marks besides it.
2. On the proxy the photo under the marks is inpainted (a smooth estimate B), nearby pieces are grouped into marks
   (the letters of a word; the repeats of a tiled mark share one fit) and each mark's colour W and opacity A are
   fitted to its pixels (unblend.fit_blend). A mark the one-colour blend explains well is un-blended; one it
   explains mostly (a logo of several colours) is inpainted, unless it covers more than MAX_FILL of the image;
   one it explains less, or with a negligible opacity, is left alone (most of the network's false marks on
   photos land there). A stamp, sure or not, is inpainted whatever its blend: its icon and name are seldom one
   colour, and un-blended with one they left a ghost (val, engine v2: 20.0 dB in the stamps as they were un-blended
   when sure, 26.5 inpainted; on plain backdrops 26.6 and 34.7). A mark to inpaint also takes the pixels the
   network believes less (MARK_EDGE) that are connected to it: an accent, the pale side of an icon.
3. At full resolution, tile by tile (TILE px a side, only the tiles a mark reaches, so memory stays bounded up
   to 10000 x 10000 and time follows the marks' area), each pixel's snapped coverage gives its opacity; the
   blend is inverted below unblend.FEATHER_FROM, inpainted at OPAQUE and above, and mixed in between so the seam
   does not show. A mark to inpaint is inpainted only where it is: its ink (the pixels that differ from B) and
   INK_REACH px around it, not the gaps between its letters. Only pixels whose opacity exceeds CHANGED, or that
   are inpainted, are written; every other pixel is copied exactly.
4. The text engine (bot.engine.text, the PP-OCR detector; it reads the original image once, before step 2, as
   its lines vouch for stamps) then removes, as that engine does (un-blending them as step 3 does where one colour
   explains them on a textured photo, inpainting them otherwise), the text lines whose ink the steps above left
   mostly unchanged (under text.HANDLED_SHARE) or still showing (text.STILL_SHARE: an outline or a shadow the
   one-colour blend did not take), if the segmenter gave their ink some belief (text.MIN_BELIEF): the network
   still misses text marks (big ones above all), or covers only part of them, that it half sees and the OCR
   detector finds, while scene text, which the OCR detector finds too, the network has learnt is mostly no mark.
   What it does believe of a sign, on a flat panel of its own, the text pass leaves alone (text.MIN_TEXTURE),
   unless that surface is a backdrop that goes on beyond the line, a sky or a studio wall, where marks are put as
   often (text.BACKDROP_REACH). Where the network handled a line the un-blending is kept, as it restores the
   photo rather than inventing it. An image with more lines of opaque text than a mark has (text.MAX_LINES,
   text.PAGE_OPACITY: a page, a screen, a puzzle) gets no text pass: its text is its own.
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

from bot.engine import inpaint, tiled
from bot.engine.progress import Progress
from bot.engine.rgb import as_rgb
from bot.engine.segmenter import (
    MIN_AREA,
    PROXY_MAX_SIDE,
    Segmentation,
    Segmenter,
    to_input,
    upsample,
)
from bot.engine.text import TextEngine
from bot.engine.textmask import Region, joined
from bot.engine.unblend import (
    CHANGED,
    FIT_SAMPLES,
    MIN_CONTRAST,
    MIN_EXPLAINED,
    MIN_OPACITY,
    coverage,
    fill_opaque,
    fit_blend,
    invert,
    one_colour,
)

__all__ = ["DEFAULT_MODEL", "FINDER", "SEGMENTER", "MarkEngine", "Marks"]

log = logging.getLogger(__name__)

# v2, what the bot uses: an EfficientNet-Lite0 finder fine-tuned from ImageNet weights (bot.lab.finetune), which
# finds more of the marks and touches far fewer clean images of every kind on val than v1 (docs/engine.md).
FINDER = Path(__file__).parent / "models" / "finder.onnx"
# v1: the LiteUNet trained from scratch (bot.lab.train), kept for `unmark bench engine` to compare against.
SEGMENTER = Path(__file__).parent / "models" / "segmenter.onnx"
DEFAULT_MODEL = FINDER
DEFAULT_THREADS = 2

MARK_PROBABILITY = 0.8  # a proxy pixel is part of a mark above this probability (chosen on the val split)
MARK_EDGE = 0.6  # a filled mark also takes the pixels above this connected to it: its fainter rim (hysteresis;
# val: 0.4 and 0.2 find as much and fill more of clean photos)
MIN_PEAK = 0.9995  # a mark's most probable proxy pixel must reach this (chosen on the val split; see step 1)
STAMP_PEAK = 0.99  # a corner stamp with text in it needs only this peak (val: 0.95-0.99 alike; see step 1)...
STAMP_TEXT = 0.3  # ...if this share of it lies in text lines the OCR detector found (val: 0.2-0.3 alike; 0.4 misses
# a stamp whose icon is twice as big as its name)...
STAMP_AREA = 0.03  # ...if it covers at most this fraction of the proxy (a stamp, not a sign filling the photo)...
CORNER = 0.06  # ...and reaches within this fraction of the proxy's side of two edges that meet (val: 0.04-0.1 alike)
REACH = 2  # proxy px around a mark where its soft edges may still lie
FIT_BAND = 5  # proxy px from the edge of the inpainted hole within which B is trusted for fitting
REPEATS = 4  # this many marks or more are taken for the repeats of one tiled mark...
LARGE_MARK = 0.02  # ...except marks covering more than this fraction of the proxy, which are fitted on their own
REPEAT_SIZES = 3.0  # a faint repeat needs an area within this factor of the sure repeats' median (val split)
# unblend.MIN_EXPLAINED, MIN_OPACITY: a mark's one-colour blend must account for this share of its differences from
# B and be this opaque, or it is left alone; below unblend.MIN_ONE_COLOUR it is a blend of several colours and is
# inpainted instead...
MAX_FILL = 0.15  # ...unless it covers more than this fraction of the proxy: then it is left alone (val scores
# alike from 0.05 up; at 12 MP one false mark of v1's filled a fifth of a photo; v2 on val reaches it nowhere, and it
# stays as the bound on what one false mark can do)
GROUP_GAP = 0.03  # of the proxy's short side: pieces closer than this are one mark (letters of a word, repeats)
INK_REACH = 2  # px around a filled mark's ink that are filled too: its soft rim (val: 1 and 2 alike, 3 worse)
TILE_HOLE_PIXELS = 150_000  # Telea costs ~1 us per hole pixel: bigger holes in a tile are filled at a lower scale
TILE = 1024  # full-resolution px per tile side
TILE_MARGIN = 16  # px of context around a tile for inpainting; only the tile itself is written

# Where the progress bar stands: after the segmenter, then spread over the tiles.
PROGRESS_SEGMENTED = 30
PROGRESS_MARKS = 70  # with the text pass: where the bar stands once the network's marks are removed
PROGRESS_DONE = 100


@dataclass(frozen=True, slots=True)
class Marks:
    """What the engine knows about the marks of one image, at proxy resolution."""

    fill: np.ndarray  # hxw bool: marks that are inpainted rather than un-blended
    background: np.ndarray  # hxwx3 float32 0..255: the photo under the marks, inpainted
    colour: np.ndarray  # hxwx3 float32 0..255: each mark's fitted colour W on its region
    opacity: np.ndarray  # hxw float32: each un-blended mark's fitted opacity A on its region, 0 elsewhere
    count: int  # how many marks (groups of nearby pieces)

    @property
    def empty(self) -> bool:
        return self.count == 0

    @property
    def region(self) -> np.ndarray:
        """hxw bool: the un-blended marks and REACH px around them (where an opacity was fitted)."""
        return self.opacity > 0


def _no_marks(h: int, w: int) -> Marks:
    return Marks(np.zeros((h, w), bool), np.zeros((h, w, 3), np.float32), np.zeros((h, w, 3), np.float32),
                 np.zeros((h, w), np.float32), 0)


def find_marks(seen: Segmentation, rgb: np.ndarray, lines: np.ndarray | None = None) -> Marks:
    """Turn the segmenter's proxy maps into fitted marks (steps 1 and 2 of the module docstring); rgb is the
    full-resolution image the proxy was made from, whose pixels the blends are fitted to; lines (hxw bool, or None
    without a text detector) the proxy pixels inside the text lines the OCR detector found."""
    pieces_count, pieces, stats, _ = cv2.connectedComponentsWithStats(
        (seen.mask > MARK_PROBABILITY).astype(np.uint8), connectivity=8
    )
    keep = np.zeros(pieces_count, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= MIN_AREA
    marked = keep[pieces]
    h, w = marked.shape
    if not keep.any():
        return _no_marks(h, w)
    region = _dilate(marked, REACH)
    image = np.clip(np.rint(seen.image * 255), 0, 255).astype(np.uint8)
    hole = _dilate(marked, REACH + 1).astype(np.uint8)  # a little wider, so no soft edge leaks into B
    background = inpaint.fill(image, hole).astype(np.float32)
    # Fit only where B is trustworthy: within FIT_BAND of the hole's edge (all of a thin stroke; the outer band of
    # a big glyph, whose middle B can only smear over).
    depth = cv2.distanceTransform(hole, cv2.DIST_L2, 3)
    usable = marked & (depth <= FIT_BAND)
    count, groups, boxes, _ = cv2.connectedComponentsWithStats(
        _dilate(marked, max(REACH, round(GROUP_GAP * min(h, w)))).astype(np.uint8), connectivity=8
    )
    owner = np.where(region, groups, 0)  # a region pixel belongs to the group whose pieces it surrounds
    # Many small marks are the repeats of one tiled mark: they share one fit, made on all of them at once.
    # Large marks are fitted on their own, so only the small ones count as repeats and go into the shared fit.
    areas = np.bincount(groups[marked], minlength=count)
    small = areas < LARGE_MARK * h * w
    small[0] = False
    repeats = np.count_nonzero(small) >= REPEATS
    # A mark needs a core the finder is sure of; the repeats of a tiled mark are faint, and sure repeats vouch
    # for the others of about their size (a star field's or a texture's specks vary more).
    peaks = np.zeros(count, np.float32)
    np.maximum.at(peaks, groups[marked], seen.mask[marked])
    sure = peaks >= MIN_PEAK
    stamps = np.zeros(count, bool)
    if lines is not None:
        # Sure or not: a stamp is filled whatever its blend (below), which a sure one needs as much.
        stamps = _corner_stamps(boxes, groups, marked & lines, areas) & (peaks >= STAMP_PEAK)
        if _greyscale(rgb):
            # One grey explains any difference on a greyscale photo, so the blend's fit tells a bright object (a
            # coin) from a mark no longer: there a mark must be text the OCR detector reads too.
            sure &= np.bincount(groups[marked & lines], minlength=count) >= STAMP_TEXT * np.maximum(areas, 1)
        sure |= stamps
    shared = None
    if repeats and (sure & small).any():
        typical = float(np.median(areas[sure & small]))
        sure |= small & (areas >= typical / REPEAT_SIZES) & (areas <= typical * REPEAT_SIZES)
        shared = fit_blend(*_samples(rgb, background, usable & small[groups]))
    colour = np.zeros((h, w, 3), np.float32)
    opacity = np.zeros((h, w), np.float32)
    fill = np.zeros((h, w), bool)
    kept = 0
    for group in np.flatnonzero(sure):
        x, y, bw, bh = boxes[group, :4]
        box = np.s_[y : y + bh, x : x + bw]
        own = owner[box] == group
        core = own & marked[box]
        if shared is not None and small[group]:
            blend = shared
        else:
            blend = fit_blend(*_samples(rgb, background, core & usable[box], box))
        if (blend.explained < MIN_EXPLAINED or blend.opacity < MIN_OPACITY) and not stamps[group]:
            continue  # not a blend at all: a sign, a shadow, the network's mistake
        if stamps[group] or not one_colour(blend):
            # A blend, but not of one colour (outlined text, a many-coloured logo), or a stamp (an icon beside a
            # name) whatever its blend: inverting it with one W would leave the rest behind, so it is inpainted
            # like the first engine does; unless it is so big that inventing it would do more harm than any mark
            # (the network's worst mistakes are such).
            if np.count_nonzero(own) > MAX_FILL * h * w:
                continue
            fill[box] |= own
            kept += 1
            continue
        colour[box][own] = blend.colour
        opacity[box][own] = blend.opacity
        kept += 1
    if not kept:
        return _no_marks(h, w)
    if fill.any():
        # A filled mark takes what the network believes less of it too (a letter's accent, an icon's pale side),
        # with the photo under that estimated again over the wider hole; not what a mark beside it un-blends.
        grown = _dilate(joined((seen.mask > MARK_EDGE) & ~marked, fill & marked), REACH) & ~fill & (opacity == 0)
        if grown.any():
            wider = inpaint.fill(image, (hole.astype(bool) | _dilate(grown, 1)).astype(np.uint8)).astype(np.float32)
            background[grown] = wider[grown]
            fill |= grown
    return Marks(fill, background, colour, opacity, kept)


def _greyscale(rgb: np.ndarray) -> bool:
    """Whether an HxWx3 image is grey (its three channels equal), judged on a few hundred of its rows."""
    rows = rgb[:: max(1, rgb.shape[0] // 256)]
    return bool(np.array_equal(rows[..., 0], rows[..., 1]) and np.array_equal(rows[..., 1], rows[..., 2]))


def _corner_stamps(boxes: np.ndarray, groups: np.ndarray, texted: np.ndarray, areas: np.ndarray) -> np.ndarray:
    """Per group (boxes and areas indexed by group, 0 none): whether it is small, in a corner and at least
    STAMP_TEXT of it text (texted: hxw bool, its pixels in text lines)."""
    h, w = groups.shape
    x, y, right, bottom = boxes[:, 0], boxes[:, 1], boxes[:, 0] + boxes[:, 2], boxes[:, 1] + boxes[:, 3]
    near_side = (x <= CORNER * w) | (right >= (1 - CORNER) * w)
    near_end = (y <= CORNER * h) | (bottom >= (1 - CORNER) * h)
    text = np.bincount(groups[texted], minlength=len(areas)) >= STAMP_TEXT * np.maximum(areas, 1)
    found = near_side & near_end & text & (areas <= STAMP_AREA * h * w)
    found[0] = False
    return found


def _text_lines(regions: list[Region], shape: tuple[int, int], height: int, width: int) -> np.ndarray:
    """hxw bool on a proxy of the given shape: the pixels inside the text lines of regions (found on the
    height x width image)."""
    h, w = shape
    out = np.zeros((h, w), bool)
    for region in regions:
        y0, x0 = int(region.y0 * h / height), int(region.x0 * w / width)
        y1 = max(y0 + 1, int(np.ceil(region.y1 * h / height)))
        x1 = max(x0 + 1, int(np.ceil(region.x1 * w / width)))
        lines = cv2.resize(region.line_mask, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST) > 0
        out[y0:y1, x0:x1] |= lines[: h - y0, : w - x0]
    return out


def _samples(rgb: np.ndarray, background: np.ndarray, where: np.ndarray, box: tuple[slice, slice] = np.s_[:, :]
             ) -> tuple[np.ndarray, np.ndarray]:
    """(differences J - B, backgrounds B), Nx3 float32: up to FIT_SAMPLES full-resolution pixels of rgb, each at a
    random spot inside one of the proxy pixels where `where` (within box) is set; B from the proxy's background.
    The draw is seeded afresh for each call, so a mark's fit depends on its own pixels alone, not on which marks
    were fitted before it."""
    rng = np.random.default_rng(0)
    ys, xs = np.nonzero(where)
    ys, xs = ys + (box[0].start or 0), xs + (box[1].start or 0)
    if ys.size > FIT_SAMPLES:
        pick = rng.choice(ys.size, FIT_SAMPLES, replace=False)
        ys, xs = ys[pick], xs[pick]
    (ph, pw), (height, width) = background.shape[:2], rgb.shape[:2]
    fy = ((ys + rng.random(ys.size)) * (height / ph)).astype(np.int64).clip(0, height - 1)
    fx = ((xs + rng.random(xs.size)) * (width / pw)).astype(np.int64).clip(0, width - 1)
    backgrounds = background[ys, xs]
    return rgb[fy, fx].astype(np.float32) - backgrounds, backgrounds


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    size = 2 * radius + 1
    return cv2.dilate(mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))) > 0


def remove(rgb: np.ndarray, marks: Marks, progress: Callable[[int], None] = lambda _: None) -> np.ndarray:
    """A new image with the marks un-blended (or inpainted where opaque); every other pixel copied exactly."""
    out = rgb.copy()
    if marks.empty:
        return out
    height, width = rgb.shape[:2]
    ph, pw = marks.fill.shape
    sy, sx = ph / height, pw / width
    reached = marks.region | marks.fill
    tiles = [(y, x) for y in range(0, height, TILE) for x in range(0, width, TILE)
             if _proxy_window(reached, y, x, sy, sx, height, width).any()]
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


def _clean_tile(tile: np.ndarray, marks: Marks, y0: int, x0: int, sy: float, sx: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """(cleaned tile uint8, changed HxW bool) for one full-resolution window whose top-left is (y0, x0)."""
    h, w = tile.shape[:2]
    nearest = cv2.INTER_NEAREST  # colour and opacity are constant per mark: no blending across two marks
    opacity = upsample(marks.opacity, y0, x0, h, w, sy, sx, nearest)
    colour = upsample(marks.colour, y0, x0, h, w, sy, sx, nearest)
    background = upsample(marks.background, y0, x0, h, w, sy, sx)
    marked = tile.astype(np.float32)
    alpha = opacity * coverage(marked, background, colour, opacity)
    # A lone covered pixel is the photo's own speck that happens to lie towards the mark's colour, not ink: a stroke
    # is never one pixel wide and tall (without this a finder's stray belief left single wrong pixels).
    stroke = (alpha > CHANGED).astype(np.uint8)
    alpha[(stroke > 0) & (cv2.boxFilter(stroke, -1, (3, 3), normalize=False, borderType=cv2.BORDER_CONSTANT) <= 1)] = 0
    fill = upsample(marks.fill.astype(np.uint8), y0, x0, h, w, sy, sx, nearest) > 0
    if fill.any():
        fill = _ink(marked, background, fill)
    changed = (alpha > CHANGED) | fill
    if not changed.any():
        return tile, changed
    restored, _ = invert(marked, alpha, colour)
    return fill_opaque(restored, alpha, fill, TILE_HOLE_PIXELS), changed


def _ink(marked: np.ndarray, background: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """The pixels of a filled mark's region (its proxy pixels, a few full-resolution px across) that are its ink,
    as they differ from the photo estimated under it by more than a mark can be told from the photo, and INK_REACH
    px around them: the gaps between its letters keep the photo instead of an invented one."""
    ink = fill & (np.linalg.norm(marked - background, axis=-1) > MIN_CONTRAST)
    return _dilate(ink, INK_REACH) & fill


class MarkEngine:
    """Finds watermarks with the segmenter and un-blends them; then, when it has one, lets the text engine fill
    the text lines the network left alone, only began on, or left showing (see the module docstring)."""

    def __init__(self, segmenter: Segmenter, text: TextEngine | None = None,
                 proxy_side: int = PROXY_MAX_SIDE) -> None:
        """Wrap an opened segmenter (and text engine); use MarkEngine.load() instead."""
        self._segmenter = segmenter
        self._text = text
        self._proxy_side = proxy_side
        # One clean at a time: the segmenter and the tiles already use both cores, and memory stays predictable.
        self._lock = threading.Lock()

    @classmethod
    def load(cls, model_path: Path | None = None, *, threads: int = DEFAULT_THREADS, text: bool = True
             ) -> MarkEngine:
        """Open the segmenter (and the text engine's detector unless text=False); a missing or corrupt model
        raises EngineBroken with a clear detail."""
        path = Path(model_path) if model_path is not None else DEFAULT_MODEL
        started = time.perf_counter()
        engine = cls(Segmenter.load(path, threads=threads), TextEngine.load(threads=threads) if text else None)
        log.info("mark engine loaded from %s in %.2f s", path, time.perf_counter() - started)
        return engine

    def clean(self, rgb: np.ndarray, progress: Callable[[int], None] | None = None) -> np.ndarray:
        """rgb: HxWx3 uint8 RGB. Returns a new HxWx3 uint8 array; only pixels of found marks change."""
        rgb = as_rgb(rgb)
        report = Progress(progress)
        share = PROGRESS_MARKS if self._text is not None else PROGRESS_DONE
        with self._lock:
            started = time.perf_counter()
            report(0)
            seen = self._segmenter.predict(rgb, self._proxy_side)
            base, rest = rgb, seen
            repeated = tiled.remove(rgb, seen.mask)
            if repeated is not None:
                base, changed, _ = repeated
                # The steps below fit the marks besides it against the photo without it, on the proxy too.
                proxy = to_input(base, seen.mask.shape)[0].transpose(1, 2, 0)
                rest = seen._replace(mask=tiled.without(seen.mask, changed), image=proxy)
            regions = self._text.lines(rgb) if self._text is not None else None
            lines = None if regions is None else _text_lines(regions, seen.mask.shape, *rgb.shape[:2])
            marks = find_marks(rest, base, lines)
            found = time.perf_counter()
            report(PROGRESS_SEGMENTED * share // PROGRESS_DONE)
            out = remove(base, marks, lambda p: report(p * share // PROGRESS_DONE))
            removed = time.perf_counter()
            if self._text is not None:
                span = PROGRESS_DONE - share
                (ph, pw), (height, width) = seen.mask.shape, rgb.shape[:2]

                def belief(y: int, x: int, h: int, w: int) -> np.ndarray:
                    return upsample(seen.mask, y, x, h, w, ph / height, pw / width)

                out = self._text.clean(rgb, lambda p: report(share + span * p // PROGRESS_DONE), after=out,
                                       belief=belief, regions=regions)
            report(PROGRESS_DONE)
            log.debug("cleaned %dx%d: %s, %d marks; find %.2f s, remove %.2f s, text %.2f s", rgb.shape[1],
                      rgb.shape[0], "a tiled mark" if repeated is not None else "no tiled mark", marks.count,
                      found - started, removed - found, time.perf_counter() - removed)
            return out
