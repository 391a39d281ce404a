"""The first local engine: finds text-like overlays with the PP-OCR detector bundled in rapidocr and removes them.

The mark engine (bot.engine.mark), the bot's engine, runs it after its own network, on the text lines the
network left alone, only began on, or left showing.

A line's ink is removed as the network's marks are (bot.engine.unblend): one colour W and opacity A are fitted to
it against a guess of the photo under it (Telea's fill of the ink); where that one colour explains the ink and the
photo around it is textured, the blend is inverted pixel by pixel (the photo comes back instead of a smear
invented from around it), and only its opaque core (A at unblend.OPAQUE and above) and what still stands out once
un-blended (an outline, a shadow) are inpainted. Ink one colour does not explain, that is opaque all through, or
that lies on a smooth ground (where the fill is all but exact) is inpainted with Telea, as before.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from bot.engine import packages
from bot.engine.inpaint import MAX_HOLE_PIXELS, fill, paste
from bot.engine.progress import Progress
from bot.engine.rgb import as_rgb
from bot.engine.textmask import Detector, Region, coarse_background, dilation_radius, ink_mask, line_regions
from bot.engine.unblend import (CHANGED, FIT_SAMPLES, MIN_CONTRAST, MIN_OPACITY, OPAQUE, coverage, fill_opaque,
                                fit_blend, invert, standing_out)

__all__ = ["DEFAULT_MODEL", "Belief", "TextEngine"]

log = logging.getLogger(__name__)

DETECTOR_PACKAGE = "rapidocr_onnxruntime"
DETECTOR_FILE = Path("models") / "ch_PP-OCRv4_det_infer.onnx"
DEFAULT_THREADS = 2
MIN_BELIEF = 0.35  # see TextEngine.clean(belief=...); chosen on the val split for the width-3 network: 0.35-0.5
# leave its real text 99.4 % unchanged and touch 8-7 of 24 painted signs, 0.25-0.3 98.4 % (0.25 touches 11), at
# the same score inside the marks (20.13 against 20.14 dB; 0.15 gains 0.08 there and touches one more clean photo)
HANDLED_SHARE = 0.8  # see TextEngine.clean(after=...); 0.5-0.9 score alike on the val split, and 0.8 redoes
# big bold marks the network covers only two thirds of
STILL_SHARE = 0.4  # see TextEngine.clean(after=...); 0.3-0.5 score alike on the val split
BELIEF_REACH = 4  # px: ink this close together is one word, judged as a whole
MIN_TEXTURE = 4.5  # 0..255: the least spread of the pixels around a word for it to be filled (see _on_the_photo;
# val split: 3 changes nothing, 4-4.5 leave real text 98.4-98.5 % unchanged instead of 98.2 % and its synthetic
# signs touched 14-15 times in 24 instead of 21, for 0.1 dB less in the marks; 5.5 loses text marks: 19.8 against
# 20.3 dB in them)
BACKDROP_REACH = 1.5  # text heights around a region's text where a backdrop shows no detail (see _on_a_backdrop;
# val split, its synthetic signs and marks drawn on flat backgrounds: 1-1.5 alike, 1.5 better on the last)...
BACKDROP_GAP = 0.15  # ...beyond this many text heights, clear of the letters' own rims...
BACKDROP_DETAIL = 6.0  # ...detail being a pixel this far (0..255) from its 2 px blur...
BACKDROP_SHARE = 0.02  # ...in at most this share of the pixels (a sign's panel edge within reach is about 5 %; on
# marks drawn on flat backgrounds 0.05 does better, but a panel a little larger than its text then counts as none)
MIN_LINE_HEIGHT = 8  # px: the least text height _on_a_backdrop reckons with
STRIP_ROWS = 256  # _on_a_backdrop's rows at a time
BLUR_REACH = 8  # px: how far its 2 px Gaussian blur reaches (OpenCV's kernel for sigma 2 is 17 px)
UNBLEND = True  # un-blend a line's ink where one colour explains it (see _removed); False: Telea, as before
MIN_ONE_COLOUR = 0.8  # a line's one-colour blend must explain this share of its ink's departures from the photo
# inpainted under it to be un-blended (unblend.MIN_EXPLAINED: on a textured photo, a cat's fur, that guess is rough
# under thick strokes, and a blend one colour explains fits at 0.8-0.9; val split: 0.8 and 0.95 alike)...
TEXTURED = 250.0  # ...and the photo around it must have this much fine detail (see _texture), or it is inpainted:
# on the val split (36 a family), lines under 80 came back better inpainted (smooth grounds, where Telea is all but
# exact and the inversion multiplies JPEG's noise by 1 / (1 - A)), those over 300 mostly better un-blended, those
# in between either way; inside the marks 100, 250 and 400 give 19.94, 19.96 and 19.94 dB (Telea alone 19.97),
# over the image 33.71, 33.72 and 33.71 (33.70)
INSIDE = 3  # px: the strokes' inside, where a line's opacity is read again, is its ink eroded by this (val: 3...
MIN_INSIDE = 20  # ...if it has this many pixels; over 36 a family 19.98 dB in the marks and 33.76 over the image
# against 19.96 and 33.72 without it)
AROUND_SIGMA = 8.0  # px: the Gaussian over which an un-blended line's doubtful inside pixels are compared with the
# trusted ones around (val: alike with it and without; a textured photo's lines gain 0.2-0.6 dB)...
MIN_TRUST = 0.05  # ...where the trusted pixels weigh at least this much
MIN_AROUND = 50  # pixels clear of the ink _texture needs to say anything
OUTLINE_REACH = 2  # px around what still stands out of a line once un-blended that are inpainted with it (val:
# inpainting it gains 0.2 dB in the stamps; on a cat's fur it costs 0.3, as the fur's own texture stands out too)
MAX_LINES = 5  # see TextEngine.clean(after=...); chosen on the val split (its pages, signs and screens of text)
PAGE_OPACITY = 0.5  # ...with ink at least this opaque (val: tiled marks 0.16-0.38, pages and puzzles 0.54-1)
# Where the progress bar stands after each stage; the inpainting of regions spreads over the gap in between.
PROGRESS_START = 0
PROGRESS_DETECTED = 30
PROGRESS_FILLED = 95
PROGRESS_DONE = 100


# The detector .onnx shipped inside rapidocr_onnxruntime; when that is not installed, a path that does not exist,
# so load() reports it as a broken engine.
DEFAULT_MODEL: Path = (packages.folder(DETECTOR_PACKAGE) or Path(DETECTOR_PACKAGE)) / DETECTOR_FILE

# (y0, x0, height, width) of a full-resolution window -> that window's HxW probabilities (0..1) of being a mark.
Belief = Callable[[int, int, int, int], np.ndarray]
# One region's (belief window, coarse background, ink mask), each None when not computed or not text.
Ink = tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]


class TextEngine:
    """Finds text-like overlays with the PP-OCR detector and inpaints them."""

    def __init__(self, detector: Detector) -> None:
        """Wrap an opened detector; use TextEngine.load() instead."""
        self._detector = detector
        # onnxruntime sessions are thread-safe, but one clean at a time keeps memory and CPU use predictable.
        self._lock = threading.Lock()

    @classmethod
    def load(cls, model_path: Path | None = None, *, threads: int = DEFAULT_THREADS) -> TextEngine:
        """Open the ONNX session; a missing or corrupt file raises EngineBroken with a clear detail."""
        path = Path(model_path) if model_path is not None else DEFAULT_MODEL
        started = time.perf_counter()
        engine = cls(Detector(path, threads))
        log.info("text engine loaded from %s in %.2f s", path, time.perf_counter() - started)
        return engine

    def lines(self, rgb: np.ndarray) -> list[Region]:
        """The text-line regions the detector finds in rgb (HxWx3 uint8 RGB)."""
        rgb = as_rgb(rgb)
        with self._lock:
            return self._lines(rgb)

    def _lines(self, rgb: np.ndarray) -> list[Region]:
        return line_regions(self._detector.probability(rgb), rgb.shape[1], rgb.shape[0])

    def clean(self, rgb: np.ndarray, progress: Callable[[int], None] | None = None, *,
              after: np.ndarray | None = None, belief: Belief | None = None, regions: list[Region] | None = None
              ) -> np.ndarray:
        """rgb: HxWx3 uint8 RGB. Returns a new HxWx3 uint8 array (`after` itself when given); only pixels inside
        detected text change.

        after: another engine's result for the same rgb. When the detector finds more than MAX_LINES text lines
        and their ink is opaque (PAGE_OPACITY), the text is what the picture shows (a page, a screen, a puzzle),
        not a mark, which is a line or two or the see-through repeats of a tiled one, and nothing is filled. Otherwise
        the text lines whose ink it changed at least HANDLED_SHARE of, and in which its result shows less than
        STILL_SHARE of that ink, are left as it left them (it knows that mark better); the other lines, which it
        missed, only began on, or left visible (an outline or a shadow it did not remove), are filled into it, in
        place (no second copy of a huge image), and it is returned.
        belief: another detector's probability that a pixel belongs to a mark, asked for each text region's
        window only (so no full-size plane is made for a huge image). Text whose mean belief is under MIN_BELIEF
        is left alone: the OCR detector finds all text, scene text too, and a
        detector trained to tell marks from scene text settles which of it is a mark. With a belief, a word on a
        flat surface (a sign's panel, a page: under MIN_TEXTURE around it) is left alone too, as that detector
        believes some signs, unless that surface goes on well beyond the line without an edge (a backdrop, a sky:
        _on_a_backdrop), where marks are as often put.
        regions: the text lines of rgb when the caller already has them (lines()), so the detector runs once."""
        rgb = as_rgb(rgb)
        report = Progress(progress)
        with self._lock:
            started = time.perf_counter()
            report(PROGRESS_START)
            height, width = rgb.shape[:2]
            if regions is None:
                regions = self._lines(rgb)
            detected = time.perf_counter()
            report(PROGRESS_DETECTED)

            radius = dilation_radius(width, height)
            if after is not None and len(regions) > MAX_LINES and _opaque(rgb, regions, radius, belief):
                log.debug("%d lines of opaque text: the picture's own, left to the other engine", len(regions))
                regions = []
            out = rgb.copy() if after is None else as_rgb(after)
            boxes = [np.s_[r.y0 : r.y1, r.x0 : r.x1] for r in regions]
            # What the other engine changed, per region, before any fill here changes `out`.
            handled = [None if after is None else np.any(out[box] != rgb[box], axis=2) for box in boxes]
            changed = 0
            for index, (region, box, done) in enumerate(zip(regions, boxes, handled)):
                window, background, mask = _ink(rgb, region, radius, belief)
                if mask is not None and done is not None and done.any():
                    # The text the other engine's result still shows (ink found the same way in it, against the
                    # same guess of the photo around the lines, which that engine left as it was).
                    still = ink_mask(out[box], region.line_mask, radius, background)
                    mask = _left_over(mask, region.line_mask, done, still, radius)
                if mask is not None and window is not None:
                    mask = _believed(mask, window)
                    if mask.any() and not _on_a_backdrop(rgb, region):
                        mask = _on_the_photo(mask, rgb[box])
                if mask is not None and mask.any():
                    paste(out[box], _removed(rgb[box], mask, radius), mask)
                    changed += int(np.count_nonzero(mask))
                span = PROGRESS_FILLED - PROGRESS_DETECTED
                report(PROGRESS_DETECTED + span * (index + 1) // len(regions))
            report(PROGRESS_DONE)
            log.debug(
                "cleaned %dx%d: %d text regions, %d px filled; detect %.2f s, fill %.2f s",
                width,
                height,
                len(regions),
                changed,
                detected - started,
                time.perf_counter() - detected,
            )
            return out


def _ink(rgb: np.ndarray, region: Region, radius: int, belief: Belief | None) -> Ink:
    """One region's belief window (None without belief), coarse background and ink mask (None when no word can be
    believed there, or it is not text)."""
    window = None if belief is None else belief(region.y0, region.x0, *region.line_mask.shape)
    # No word can be believed where nothing reaches MIN_BELIEF (scene text, mostly): its ink is not looked for.
    if window is not None and window.max() < MIN_BELIEF:
        return window, None, None
    crop = rgb[region.y0 : region.y1, region.x0 : region.x1]
    background = coarse_background(crop, region.line_mask)
    return window, background, ink_mask(crop, region.line_mask, radius, background)


def _removed(crop: np.ndarray, mask: np.ndarray, radius: int) -> np.ndarray:
    """crop (HxWx3 uint8) with the text ink of mask (HxW uint8, nonzero: the ink grown by radius) removed: un-blended
    where one colour at one opacity explains it and the photo around it is textured, with its opaque core and what
    one colour leaves standing out inpainted; otherwise inpainted with Telea. Only the pixels of mask are meant to
    be pasted from it."""
    filled = fill(crop, mask)
    if not UNBLEND:
        return filled
    # The photo under the ink, inpainted from just around it (between the letters too): a far closer guess than
    # the line's coarse background, whose fill spans the whole line.
    marked, under = crop.astype(np.float32), filled.astype(np.float32)
    grown = mask > 0
    # The blend is fitted on the ink itself, not the photo around it that the mask's growth took in, whose
    # departures from the smooth guess B are the photo's grain, which no colour explains.
    size = 2 * radius + 1
    core = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))) > 0
    ink = core & (np.linalg.norm(marked - under, axis=-1) > MIN_CONTRAST)
    blend = fit_blend(marked[ink] - under[ink], under[ink])
    if blend.opacity < MIN_OPACITY or blend.opacity >= OPAQUE or blend.explained < MIN_ONE_COLOUR:
        return filled  # opaque all through, or not one colour: nothing to un-blend
    if _texture(marked, ink, grown) < TEXTURED:
        return filled  # a smooth ground: Telea's fill is all but exact there, and the inversion's noise is not
    # The fit's opacity is the level of its most covered samples, which on a textured photo the grain's high tail
    # lifts (the guess of the photo under thick strokes is rough); the median over the strokes' inside is not.
    inside = cv2.erode(ink.astype(np.uint8), np.ones((INSIDE, INSIDE), np.uint8)) > 0
    towards = blend.colour - under[inside]
    length = (towards**2).sum(-1)
    shares = ((marked[inside] - under[inside]) * towards).sum(-1)[length >= MIN_CONTRAST**2]
    if shares.size >= MIN_INSIDE:
        level = float(np.median(shares / length[length >= MIN_CONTRAST**2]))
        if MIN_OPACITY <= level < OPAQUE:
            blend = blend._replace(opacity=level)
    colour = np.broadcast_to(blend.colour, marked.shape)
    opacity = np.where(grown, np.float32(blend.opacity), np.float32(0))
    alpha = opacity * coverage(marked, under, colour, opacity)
    restored, _ = invert(marked, alpha, colour)
    # Inside the strokes, a pixel whose guess of the photo under it is off (a dark stripe of fur the fill did not
    # see) gets too little coverage and keeps some of the mark: where taking it as whole brings it closer to what
    # the trusted pixels around it (whole ones, and the photo beyond the ink) came back as, it is taken as whole.
    trust = ((alpha >= blend.opacity) | ~grown).astype(np.float32)
    weight = cv2.GaussianBlur(trust, (0, 0), AROUND_SIGMA)
    around = cv2.GaussianBlur(restored * trust[..., None], (0, 0), AROUND_SIGMA) / np.maximum(weight, 1e-3)[..., None]
    whole, _ = invert(marked, np.where(grown, np.float32(blend.opacity), np.float32(0)), colour)
    closer = core & (alpha < blend.opacity) & (weight > MIN_TRUST)
    closer &= np.abs(whole - around).sum(-1) < np.abs(restored - around).sum(-1)
    alpha[closer] = blend.opacity
    restored[closer] = whole[closer]
    # What one colour does not take off (an outline, a shadow, a letter of another colour) stands out once the
    # rest is un-blended, and is inpainted with the opaque core.
    size = 2 * OUTLINE_REACH + 1
    left = cv2.dilate(standing_out(restored, under, grown).astype(np.uint8),
                      cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))) > 0
    left &= grown
    out = fill_opaque(restored, alpha, left, MAX_HOLE_PIXELS)
    # Pixels the mark does not reach are the photo's own: they stay as they came.
    return np.where(((alpha > CHANGED) | left)[..., None], out, crop)


def _texture(marked: np.ndarray, ink: np.ndarray, grown: np.ndarray) -> float:
    """How much fine detail the photo around a line's ink has, at the scale of its strokes: the mean squared
    departure (summed over channels) of the pixels clear of the grown ink from their Gaussian blur of half a
    stroke's width. What a fill across a stroke cannot bring back, so where it is high inpainting smears."""
    around = ~(cv2.dilate(grown.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0)
    if np.count_nonzero(around) < MIN_AROUND or not ink.any():
        return 0.0
    stroke = 2 * float(np.percentile(cv2.distanceTransform(ink.astype(np.uint8), cv2.DIST_L2, 3)[ink], 95))
    blurred = cv2.GaussianBlur(marked, (0, 0), max(1.0, stroke / 2))
    return float(((marked - blurred) ** 2).sum(-1)[around].mean())


def _opaque(rgb: np.ndarray, regions: list[Region], radius: int, belief: Belief | None) -> bool:
    """Whether the believed ink of all the lines is one opaque ink (at least PAGE_OPACITY): printed text, not the
    see-through repeats of a tiled mark. One blend fitted to up to FIT_SAMPLES pixels spread over the lines; each
    region's ink is found again when it is filled, so no more than one region's planes are held at a time."""
    rng = np.random.default_rng(0)
    share = FIT_SAMPLES // max(1, len(regions)) + 1
    differences, backgrounds = [], []
    for region in regions:
        window, background, mask = _ink(rgb, region, radius, belief)
        if mask is None or background is None:
            continue
        ys, xs = np.nonzero(mask if window is None else _believed(mask, window))
        if ys.size > share:
            pick = rng.choice(ys.size, share, replace=False)
            ys, xs = ys[pick], xs[pick]
        under = background[ys, xs].astype(np.float32)
        differences.append(rgb[region.y0 + ys, region.x0 + xs].astype(np.float32) - under)
        backgrounds.append(under)
    if not differences:
        return False
    return fit_blend(np.concatenate(differences), np.concatenate(backgrounds)).opacity >= PAGE_OPACITY


def _words(mask: np.ndarray) -> tuple[int, np.ndarray]:
    """(count, labels) of the words of an ink mask: ink within BELIEF_REACH px of each other, with the BELIEF_REACH
    px around it; label 0 is neither."""
    size = 2 * BELIEF_REACH + 1
    return cv2.connectedComponents(cv2.dilate(mask, np.ones((size, size), np.uint8)), connectivity=8)


def _believed(mask: np.ndarray, belief: np.ndarray) -> np.ndarray:
    """The words of an ink mask whose mean belief (the same window's probabilities, 0..1) is at least
    MIN_BELIEF."""
    count, parts = _words(mask)
    ink = mask > 0
    sums = np.bincount(parts[ink], weights=belief[ink], minlength=count)
    pixels = np.bincount(parts[ink], minlength=count)
    kept = sums >= MIN_BELIEF * np.maximum(pixels, 1)
    kept[0] = False
    return np.where(kept[parts] & ink, mask, 0).astype(mask.dtype)


def _on_the_photo(mask: np.ndarray, crop: np.ndarray) -> np.ndarray:
    """The words of an ink mask around which the picture has some texture: the pixels within BELIEF_REACH px of
    the word, but not next to its ink, spread by at least MIN_TEXTURE (a robust standard deviation, 1.4826 times
    the median absolute deviation, so the letters' soft edges and any bits of them the ink mask missed do not
    count; the mean over channels). Text in the scene lies on a surface of its own, a sign's panel or a page, flat
    around its letters; a mark lies over the photo, whose grain shows around it. A word without such pixels is
    kept."""
    count, parts = _words(mask)
    ring = (parts > 0) & ~(cv2.dilate(mask, np.ones((3, 3), np.uint8)) > 0)
    labels = parts[ring]
    order = np.argsort(labels, kind="stable")
    values = crop[ring][order].astype(np.float32)
    ends = np.cumsum(np.bincount(labels, minlength=count))
    kept = np.zeros(count, bool)
    for word in range(1, count):
        around = values[ends[word - 1] : ends[word]]
        deviation = np.median(np.abs(around - np.median(around, axis=0)), axis=0) if len(around) else None
        kept[word] = deviation is None or float(1.4826 * deviation.mean()) >= MIN_TEXTURE
    return np.where(kept[parts] & (mask > 0), mask, 0).astype(mask.dtype)


def _on_a_backdrop(rgb: np.ndarray, region: Region) -> bool:
    """Whether a region's text lies on a flat backdrop (a sky, a studio wall) rather than on a sign's panel or a
    page: within BACKDROP_REACH times its height around the text (and clear of it by BACKDROP_GAP times that),
    under BACKDROP_SHARE of the pixels show detail (are over BACKDROP_DETAIL from their 2 px blur), where a
    panel's edge, or the scene beyond it, would. A mark on such a backdrop is as flat around its letters as a
    sign, so _on_the_photo cannot tell them apart; a panel ends, a backdrop goes on."""
    ys, xs = np.nonzero(region.line_mask)
    y0, y1 = region.y0 + int(ys.min()), region.y0 + int(ys.max()) + 1
    x0, x1 = region.x0 + int(xs.min()), region.x0 + int(xs.max()) + 1
    height, width = rgb.shape[:2]
    tall = max(MIN_LINE_HEIGHT, y1 - y0)

    def around(reach: int) -> tuple[int, int, int, int]:
        return max(0, y0 - reach), min(height, y1 + reach), max(0, x0 - reach), min(width, x1 + reach)

    oy0, oy1, ox0, ox1 = around(int(BACKDROP_REACH * tall))
    iy0, iy1, ix0, ix1 = around(int(BACKDROP_GAP * tall))
    detailed = total = 0
    # Strip by strip, so the float planes of big text on a huge image stay small; each strip is blurred with
    # BLUR_REACH rows of its neighbours (within the window), which gives the same blur as the whole window would.
    for top in range(oy0, oy1, STRIP_ROWS):
        bottom = min(oy1, top + STRIP_ROWS)
        above, below = max(oy0, top - BLUR_REACH), min(oy1, bottom + BLUR_REACH)
        window = rgb[above:below, ox0:ox1].astype(np.float32)
        detail = np.abs(window - cv2.GaussianBlur(window, (0, 0), 2.0)).mean(-1)[top - above : bottom - above]
        band = np.ones(detail.shape, bool)
        band[max(0, iy0 - top) : max(0, iy1 - top), ix0 - ox0 : ix1 - ox0] = False
        detailed += int(np.count_nonzero(detail[band] > BACKDROP_DETAIL))
        total += int(np.count_nonzero(band))
    if not total:
        return False  # the text fills the picture: no backdrop to see
    return detailed < BACKDROP_SHARE * total


def _left_over(mask: np.ndarray, line_mask: np.ndarray, handled: np.ndarray, still: np.ndarray | None, radius: int
               ) -> np.ndarray:
    """The ink mask (grown by radius) of the text lines (of a region's line mask) of whose ink less than
    HANDLED_SHARE is handled (handled pixels grown alike, so that a line cleaned to its glyphs' edges counts whole),
    or at least STILL_SHARE still shows (in `still`, the ink mask of the handled result; None if none shows)."""
    size = 2 * radius + 1
    handled = cv2.dilate(handled.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))) > 0
    # The ink is grown past its line's mask: each line takes the ink around it.
    count, lines = cv2.connectedComponents(np.maximum(line_mask, mask), connectivity=8)
    ink = mask > 0
    total = np.bincount(lines[ink], minlength=count)
    done = np.bincount(lines[ink & handled], minlength=count)
    left = done < HANDLED_SHARE * total
    if still is not None:
        left |= np.bincount(lines[ink & (still > 0)], minlength=count) >= STILL_SHARE * total
    left[0] = False
    return np.where(left[lines], mask, 0).astype(mask.dtype)
