"""Turns the PP-OCR (DB) text detector's probability map into pixel masks of text overlays, region by region.

The DB network does not output glyphs: it outputs a *shrunk* core of each text line (a thin bar along the line),
so a region is first grown back to the whole line ("unclip", as DB's own post-processing does) and then narrowed
to the glyphs by colour contrast against a coarse fill of the line's surroundings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from bot.errors import EngineBroken

log = logging.getLogger(__name__)

DET_MAX_SIDE = 960  # the detector sees a proxy whose long side is at most this (it is trained on ~640-960 px)
DET_MIN_SIDE = 640  # smaller images are upscaled to this long side: DB misses text under ~10 px tall
DET_MULTIPLE = 32  # the DB backbone downsamples by 32, so both proxy sides must be multiples of it
# rapidocr_onnxruntime feeds the network BGR scaled to [-1, 1] (config.yaml: mean 0.5, std 0.5); we match it.
DET_MEAN = 0.5
DET_STD = 0.5
PROB_THRESHOLD = 0.3  # DB's binarisation threshold
MIN_SCORE = 0.6  # mean probability inside a component; lower ones are mostly texture (rapidocr uses 0.5)
MIN_COMPONENT_AREA = 6  # proxy pixels; specks below this are noise
UNCLIP_RATIO = 2.0  # DB grows a shrunk box by area * ratio / perimeter; rapidocr's 1.6 clips the line ends
CONTEXT_MARGIN = 12  # full-res pixels of untouched surroundings kept around each region for the fills
REFINE_SIDE = 384  # the coarse background fill used to find glyphs runs at this long side at most
MIN_CONTRAST = 14  # 0..255: a pixel must differ this much from the coarse background to count as ink
WEAK_FRACTION = 0.7  # of the Otsu threshold: fainter pixels count as ink only when touching sure ink...
WEAK_REACH = 0.5  # ...and lie within this many stroke widths of it
# The detector also fires on roundish blobs (it reads them as an "O"); these reject such regions.
MIN_INK_FRACTION = 0.02  # of the line region: less ink than this is nothing visible (soft shading, gradients)
MAX_INK_FRACTION = 0.72  # a "text line" that is nearly all ink is a solid object
MAX_STROKE_RATIO = 0.3  # stroke width / line height: text is about 0.15-0.25 (bold), a blob 0.3-0.8
STROKE_SLACK = 2.0  # pixels subtracted from the measured stroke width before comparing
SINGLE_SHAPE_SHARE = 0.9  # one connected shape holding this much of the ink...
SINGLE_SHAPE_STROKE = 0.2  # ...and this chunky is an object, not a word
DILATE_PER_PX = 1 / 500  # mask growth per pixel of the long side, to cover anti-aliasing and JPEG ringing
DILATE_MIN = 2


@dataclass(frozen=True)
class Region:
    """One group of text lines: a full-resolution crop rectangle and its uint8 line mask inside that crop."""

    x0: int
    y0: int
    x1: int
    y1: int
    line_mask: np.ndarray  # HxW uint8 {0,1}, the unclipped text lines, same size as the crop


class Detector:
    """The PP-OCR DB detector in an onnxruntime CPU session."""

    def __init__(self, model_path: Path, threads: int) -> None:
        """Open the session; raise EngineBroken if the file is missing, corrupt or not a DB detector."""
        # Imported here so that importing bot.engine stays cheap for code that never cleans an image.
        import onnxruntime as ort

        if not model_path.is_file():
            raise EngineBroken(f"text detector model not found at {model_path}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # onnxruntime's warnings go to stderr, not logging
        try:
            self._session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
            inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
            if len(inputs) != 1 or len(inputs[0].shape) != 4 or len(outputs) != 1:
                raise ValueError("expected one NCHW input and one output")
            self._input = inputs[0].name
            # A tiny run proves the graph executes, so a broken model fails at load and not mid-job.
            self._run(np.zeros((1, 3, DET_MULTIPLE, DET_MULTIPLE), np.float32))
        except Exception as exc:  # onnxruntime raises its own (non-public) exception types
            raise EngineBroken(f"cannot load text detector model {model_path}: {exc}") from exc

    def _run(self, batch: np.ndarray) -> np.ndarray:
        """Run the network on a NCHW float32 batch; returns the HxW probability map of the first image."""
        out = self._session.run(None, {self._input: batch})[0]
        return np.asarray(out, np.float32).reshape(out.shape[-2:])

    def probability(self, rgb: np.ndarray) -> np.ndarray:
        """The text probability map of a downscaled proxy of rgb (sides multiples of 32)."""
        h, w = rgb.shape[:2]
        pw, ph = proxy_size(w, h)
        shrinking = pw * ph < w * h
        small = cv2.resize(rgb, (pw, ph), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
        # RGB -> BGR and scale to [-1, 1] in one pass, in float32 on the proxy only.
        x = small[..., ::-1].astype(np.float32)
        x *= 1.0 / (255.0 * DET_STD)
        x -= DET_MEAN / DET_STD
        return self._run(np.ascontiguousarray(x.transpose(2, 0, 1)[None]))


def proxy_size(width: int, height: int) -> tuple[int, int]:
    """The detector input size for an image: long side at most DET_MAX_SIDE, both sides multiples of 32."""
    long_side = max(width, height)
    scale = DET_MIN_SIDE / long_side if long_side < DET_MIN_SIDE else min(1.0, DET_MAX_SIDE / long_side)

    def snap(side: float) -> int:
        return max(DET_MULTIPLE, int(round(side * scale / DET_MULTIPLE)) * DET_MULTIPLE)

    return snap(width), snap(height)


def line_regions(prob: np.ndarray, width: int, height: int) -> list[Region]:
    """Text-line regions of a full-size (width x height) image from its proxy probability map."""
    ph, pw = prob.shape
    binary = (prob > PROB_THRESHOLD).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    # Grow every kept component by its own unclip distance, on the proxy, into one map of whole text lines.
    lines = np.zeros((ph, pw), np.uint8)
    for i in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[i])
        if area < MIN_COMPONENT_AREA:
            continue
        comp = (labels[y : y + h, x : x + w] == i).astype(np.uint8)
        score = cv2.mean(prob[y : y + h, x : x + w], mask=comp)[0]
        if score < MIN_SCORE:
            continue
        contours, _ = cv2.findContours(comp, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        perimeter = max(1.0, sum(cv2.arcLength(c, True) for c in contours))
        grow = area * UNCLIP_RATIO / perimeter
        pad = int(np.ceil(grow)) + 1
        ax0, ay0 = max(0, x - pad), max(0, y - pad)
        ax1, ay1 = min(pw, x + w + pad), min(ph, y + h + pad)
        outside = (labels[ay0:ay1, ax0:ax1] != i).astype(np.uint8)
        distance = cv2.distanceTransform(outside, cv2.DIST_L2, 3)
        lines[ay0:ay1, ax0:ax1] |= (distance <= grow).astype(np.uint8)

    # Overlapping lines merge into one region, so no pixel is filled twice and crops never seam.
    count, labels, stats, _ = cv2.connectedComponentsWithStats(lines, connectivity=8)
    sx, sy = width / pw, height / ph
    margin = CONTEXT_MARGIN + dilation_radius(width, height)
    regions = []
    for i in range(1, count):
        x, y, w, h, _ = (int(v) for v in stats[i])
        x0, y0 = max(0, int(x * sx) - margin), max(0, int(y * sy) - margin)
        x1, y1 = min(width, int(np.ceil((x + w) * sx)) + margin), min(height, int(np.ceil((y + h) * sy)) + margin)
        # Only this region's label (not a neighbour's) on a 1-px-padded proxy window around it.
        px0, py0 = max(0, x - 1), max(0, y - 1)
        window = (labels[py0 : min(ph, y + h + 1), px0 : min(pw, x + w + 1)] == i).astype(np.float32)
        # Map each crop pixel centre back onto the proxy window, so the mask lines up to a fraction of a pixel.
        to_proxy = np.array(
            [[1 / sx, 0, (x0 + 0.5) / sx - 0.5 - px0], [0, 1 / sy, (y0 + 0.5) / sy - 0.5 - py0]], np.float32
        )
        up = cv2.warpAffine(
            window,
            to_proxy,
            (x1 - x0, y1 - y0),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
        )
        line_mask = (up > 0.5).astype(np.uint8)
        if line_mask.any():
            regions.append(Region(x0, y0, x1, y1, line_mask))
    return regions


def dilation_radius(width: int, height: int) -> int:
    """How far (in pixels) the ink mask is grown, scaled to the image so big images get proportionally more."""
    return max(DILATE_MIN, int(round(max(width, height) * DILATE_PER_PX)))


def ink_mask(crop: np.ndarray, line_mask: np.ndarray, radius: int, background: np.ndarray | None = None
             ) -> np.ndarray | None:
    """The pixels of crop (HxWx3 uint8) inside line_mask that are text ink, grown by radius; None if not text.
    background: coarse_background(crop, line_mask) when already known (or that of another version of the crop
    whose surroundings are the same)."""
    lines = int(np.count_nonzero(line_mask))
    if lines == 0:
        return None
    if background is None:
        background = coarse_background(crop, line_mask)
    # The strongest channel difference: a coloured mark may change one channel only.
    contrast = np.max(cv2.absdiff(crop, background), axis=2)
    contrast[line_mask == 0] = 0
    otsu, _ = cv2.threshold(contrast[line_mask > 0].reshape(1, -1), 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    strong = (contrast > max(MIN_CONTRAST, otsu)).astype(np.uint8)
    # An opening drops single-pixel noise hits without eating thin strokes (they come back below).
    strong = cv2.morphologyEx(strong, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
    stroke = _stroke_width(strong)
    reason = _not_text(strong, line_mask, lines, stroke)
    if reason:
        log.debug("region rejected: %s", reason)
        return None
    # Hysteresis: fainter pixels (glyph parts over a background close to the mark's colour, anti-aliased edges)
    # join the sure ink when they touch it, but only within half a stroke, so background texture stays out.
    weak = (contrast > max(MIN_CONTRAST, otsu * WEAK_FRACTION)).astype(np.uint8)
    weak &= _grow(strong, max(1.0, stroke * WEAK_REACH))
    touching = joined(weak > 0, (weak & strong) > 0)  # the opening above may shift a sure pixel out of weak
    ink = cv2.morphologyEx(touching.astype(np.uint8), cv2.MORPH_OPEN, np.ones((2, 2), np.uint8)) | strong
    return _grow(ink, radius)


def joined(pieces: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """HxW bool: the seeds and the pixels of pieces (HxW bool) 8-connected to them; hysteresis, where fainter
    evidence counts when it touches sure evidence."""
    count, labels = cv2.connectedComponents((pieces | seeds).astype(np.uint8), connectivity=8)
    hit = np.zeros(count, bool)
    hit[labels[seeds]] = True
    hit[0] = False
    return hit[labels]


def _grow(mask: np.ndarray, radius: float) -> np.ndarray:
    """Dilate a uint8 {0,1} mask by a Euclidean radius; a distance transform costs the same for any radius."""
    distance = cv2.distanceTransform((mask == 0).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_5)
    return (distance <= radius).astype(np.uint8)


def _stroke_width(ink: np.ndarray) -> float:
    """A robust stroke width of the ink in pixels: twice the 95th percentile of the distance to its edge."""
    if not ink.any():
        return 0.0
    inner = cv2.distanceTransform(ink, cv2.DIST_L2, 3)
    return 2 * float(np.percentile(inner[ink > 0], 95))


def _not_text(ink: np.ndarray, line_mask: np.ndarray, lines: int, stroke: float) -> str | None:
    """Why this ink is not text (None if it looks like text): the detector also fires on blobs shaped like an O."""
    fraction = np.count_nonzero(ink) / lines
    if fraction < MIN_INK_FRACTION:
        return f"{100 * fraction:.1f}% ink: nothing visible to remove"
    if fraction > MAX_INK_FRACTION:
        return f"{100 * fraction:.0f}% ink: a solid shape"
    # Text is made of strokes much thinner than the line is tall; a blob is about as thick as its region.
    contours, _ = cv2.findContours(line_mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    # The slack stops anti-aliasing from making the small text's 2-3 px strokes look chunky.
    ratio = max(0.0, stroke - STROKE_SLACK) / max(1.0, min(cv2.minAreaRect(np.vstack(contours))[1]))
    if ratio >= MAX_STROKE_RATIO:
        return f"strokes {ratio:.2f} of the line height: a solid shape"
    _, _, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    share = areas.max() / areas.sum()
    if share >= SINGLE_SHAPE_SHARE and ratio >= SINGLE_SHAPE_STROKE:
        return f"one shape holds {100 * share:.0f}% of the ink with strokes {ratio:.2f} of the line height"
    return None


def coarse_background(crop: np.ndarray, line_mask: np.ndarray) -> np.ndarray:
    """A smooth guess of what lies under the text lines: a Telea fill at low resolution, upsampled."""
    h, w = line_mask.shape
    scale = min(1.0, REFINE_SIDE / max(h, w))
    sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
    if scale < 1.0:
        small = cv2.resize(crop, (sw, sh), interpolation=cv2.INTER_AREA)
        # On a 0/255 mask INTER_AREA leaves any partly covered pixel > 0, so no ink leaks into the known ring.
        hole = (cv2.resize(line_mask * 255, (sw, sh), interpolation=cv2.INTER_AREA) > 0).astype(np.uint8)
    else:
        small, hole = np.ascontiguousarray(crop), line_mask
    hole = cv2.dilate(hole, np.ones((3, 3), np.uint8))
    filled = cv2.inpaint(small, hole, 3, cv2.INPAINT_TELEA)
    if scale < 1.0:
        filled = cv2.resize(filled, (w, h), interpolation=cv2.INTER_LINEAR)
    return filled
