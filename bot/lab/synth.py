"""Synthesises watermarked photos with their ground truth (clean image, alpha map, colour) for training and benchmarks.

A mark is built as premultiplied layers (coverage a, colour a*W) combined with the "over" operator, then blended
once: J = (1 - A) * I + A * W, in float, rounded once to uint8. Optionally J is then re-encoded as JPEG; the
returned alpha and colour stay the pre-JPEG truth and meta["jpeg"] records the quality. Only the normal blend mode
is drawn, because multiply/screen/overlay have no (alpha, W) independent of the photo.

Pure and deterministic: every random choice comes from the numpy Generator passed in; same photo, assets and
seed give identical arrays. Without installed assets (empty `fonts`/`logos`) it uses Pillow's built-in font and a
procedurally drawn logo, so tests need no Debian package. No torch: training calls it on the fly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from bot.lab.assets import FontFile
from bot.lab.layers import Layer, hsv_colour, logo_layer, over, rotate, scaled, text_layer
from bot.lab.phrases import cjk_phrase, latin_phrase, short_phrase, stamp_phrase
from bot.lab.signs import draw_sign

__all__ = ["FAMILIES", "MARKED_FAMILIES", "MASK_THRESHOLD", "UNMARKED_FAMILIES", "Sample", "synthesize"]

FAMILIES = ("text", "tiled", "logo", "stamp", "clean", "scenetext", "signs")
MARKED_FAMILIES = ("text", "tiled", "logo", "stamp")
UNMARKED_FAMILIES = ("clean", "scenetext", "signs")  # signs: text drawn into the scene (signs.py), not a mark
MASK_THRESHOLD = 0.02  # alpha above this counts as "the mark" (the oracle mask and IoU use it)
JPEG_PROBABILITY = 0.7  # most watermarked files in the wild are JPEGs
JPEG_QUALITY = (60, 95)
CJK_PROBABILITY = 0.25
# Alpha (opacity) ranges per family; the mark's own anti-aliasing scales them down at its edges.
TEXT_ALPHA = (0.2, 0.85)
TILED_ALPHA = (0.1, 0.4)
LOGO_ALPHA = (0.3, 0.9)
STAMP_ALPHA = (0.85, 1.0)
SILHOUETTE_MAX_FILL = 0.65  # logos filling more of their box than this are drawn in their own colours only

Logos = list[Path | np.ndarray]


@dataclass(frozen=True, slots=True)
class Sample:
    """One synthetic image and its truth. marked is what a method sees; clean is what it should return."""

    marked: np.ndarray  # HxWx3 uint8 RGB, after the optional JPEG re-encode
    clean: np.ndarray  # HxWx3 uint8 RGB; for clean/scenetext samples the same pixels as marked
    alpha: np.ndarray  # HxW float32 in [0, 1], before JPEG; all zero without a mark
    colour: np.ndarray  # HxWx3 float32 in [0, 255]: the mark's colour W where alpha > 0, zero elsewhere
    family: str
    meta: Mapping[str, object] = field(default_factory=dict)  # JSON-friendly parameters of the draw

    @property
    def mask(self) -> np.ndarray:
        """The true mark as an HxW bool mask (alpha > MASK_THRESHOLD)."""
        return self.alpha > MASK_THRESHOLD


def synthesize(
    photo: np.ndarray,
    family: str,
    rng: np.random.Generator,
    *,
    fonts: Sequence[FontFile] = (),
    logos: Sequence[Path | np.ndarray] = (),
    size: tuple[int, int] | None = None,
    jpeg_probability: float = JPEG_PROBABILITY,
    jitter: bool = False,
    mirror: bool | None = None,
) -> Sample:
    """Mark (or, for the unmarked families, only crop, maybe draw scene text, and re-encode) a photo.

    Args:
        photo: HxWx3 uint8 RGB; not modified.
        family: one of FAMILIES.
        rng: the only source of randomness.
        fonts: font faces to draw from; empty means Pillow's built-in font (Latin only).
        logos: RGBA logo files or HxWx4 uint8 arrays; empty means procedurally drawn logos.
        size: (height, width) of a random crop at a random scale (cropped first, so big photos stay cheap);
            None keeps the whole photo.
        jpeg_probability: chance of the JPEG re-encode (quality uniform in JPEG_QUALITY).
        jitter: vary the photo itself first (exposure, contrast, gamma, colour, blur or sharpening, resampling,
            noise), as training does so that a few dozen photos look like many; the benchmark keeps it off.
        mirror: whether the crop may be mirrored (half the time); None: all but scene text (mirrored text is no
            text), False for screenshots and documents too.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")
    if photo.dtype != np.uint8 or photo.ndim != 3 or photo.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 photo, got {photo.dtype} {photo.shape}")
    may_mirror = family != "scenetext" if mirror is None else mirror  # mirrored scene text is not real text
    clean, meta = _crop(photo, size, rng, mirror=may_mirror)
    if family == "signs":  # before the jitter: the camera saw the sign, and it is part of the clean photo
        clean = draw_sign(clean, rng, fonts, meta)
    if jitter:
        clean = _jitter(clean, rng, meta)
    h, w = clean.shape[:2]
    alpha = np.zeros((h, w), np.float32)
    premult = np.zeros((h, w, 3), np.float32)
    meta["family"] = family
    if family in MARKED_FAMILIES:
        painter = {"text": _text, "tiled": _tiled, "logo": _logo, "stamp": _stamp}[family]
        meta.update(painter(alpha, premult, rng, list(fonts), list(logos)))
    marked = _blend(clean, alpha, premult)
    quality = int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))
    meta["jpeg"] = quality if rng.random() < jpeg_probability else None
    if meta["jpeg"] is not None:
        marked = _jpeg(marked, quality)
    if family not in MARKED_FAMILIES:
        clean = marked.copy()  # nothing to remove: the right answer is the input itself
    colour = np.zeros_like(premult)
    np.divide(premult, alpha[..., None], out=colour, where=alpha[..., None] > 0)
    meta["coverage"] = float(np.count_nonzero(alpha > MASK_THRESHOLD)) / (h * w)
    return Sample(marked, clean, alpha, np.clip(colour, 0, 255, out=colour), family, meta)


# --- the families -----------------------------------------------------------------------------------------------


def _text(alpha: np.ndarray, premult: np.ndarray, rng: np.random.Generator, fonts: list[FontFile], logos: Logos
          ) -> dict[str, object]:
    """One semi-transparent string (Latin or CJK), any colour, maybe rotated, with outline or drop shadow."""
    h, w = alpha.shape
    font, text = _font_and_text(rng, fonts, latin_phrase)
    colour = _mark_colour(rng)
    height = rng.uniform(0.04, 0.16) * min(h, w)
    opacity = rng.uniform(*TEXT_ALPHA)
    angle = 0.0 if rng.random() < 0.4 else float(rng.uniform(-45, 45))
    style = str(rng.choice(["plain", "outline", "shadow"], p=[0.5, 0.25, 0.25]))
    layer = text_layer(text, font, height, colour, style, rng, max_width=0.9 * w)
    layer = rotate(layer, angle)
    x, y = _position(layer, w, h, rng)
    over(alpha, premult, scaled(layer, opacity), x, y)
    return {"text": text, "font": _font_name(font), "alpha": opacity, "colour": colour, "angle": angle,
            "style": style}


def _tiled(alpha: np.ndarray, premult: np.ndarray, rng: np.random.Generator, fonts: list[FontFile], logos: Logos
          ) -> dict[str, object]:
    """A faint diagonal lattice of one text or logo, repeated over the whole frame."""
    h, w = alpha.shape
    opacity = rng.uniform(*TILED_ALPHA)
    angle = float(rng.uniform(-45, 45))
    colour = _mark_colour(rng)
    meta: dict[str, object] = {"alpha": opacity, "angle": angle, "colour": colour}
    if rng.random() < 0.3:
        element, meta["logo"] = logo_layer(rng, logos, rng.uniform(0.08, 0.2) * min(h, w))
    else:
        font, text = _font_and_text(rng, fonts, short_phrase)
        style = "outline" if rng.random() < 0.1 else "plain"
        element = text_layer(text, font, rng.uniform(0.03, 0.08) * min(h, w), colour, style, rng, max_width=0.6 * w)
        meta.update(text=text, font=_font_name(font), style=style)
    element = rotate(element, angle)
    eh, ew = element[0].shape
    step_x, step_y = ew * rng.uniform(1.2, 2.2), eh * rng.uniform(1.3, 3.0)
    brick = bool(rng.random() < 0.5)
    # Lattice points on a grid rotated by the same angle as the element, covering the frame with a random phase.
    theta = np.deg2rad(-angle)
    ux, uy = np.cos(theta), np.sin(theta)
    reach = int(np.hypot(w, h) / min(step_x, step_y)) + 2
    phase_x, phase_y = rng.uniform(0, step_x), rng.uniform(0, step_y)
    tile = scaled(element, opacity)
    count = 0
    for j in range(-reach, reach + 1):
        v = j * step_y + phase_y
        shift = step_x / 2 if brick and j % 2 else 0.0
        for i in range(-reach, reach + 1):
            u = i * step_x + shift + phase_x
            cx, cy = w / 2 + u * ux - v * uy, h / 2 + u * uy + v * ux
            x, y = int(round(cx - ew / 2)), int(round(cy - eh / 2))
            if x < w and y < h and x + ew > 0 and y + eh > 0:
                over(alpha, premult, tile, x, y)
                count += 1
    meta.update(brick=brick, step=[round(step_x, 1), round(step_y, 1)], tiles=count)
    return meta


def _logo(alpha: np.ndarray, premult: np.ndarray, rng: np.random.Generator, fonts: list[FontFile], logos: Logos
          ) -> dict[str, object]:
    """One RGBA logo at alpha 0.3-0.9, in its own colours or as a white/black silhouette."""
    h, w = alpha.shape
    layer, name = logo_layer(rng, logos, rng.uniform(0.12, 0.45) * min(h, w))
    mode = str(rng.choice(["colour", "white", "black"], p=[0.6, 0.25, 0.15]))
    if layer[0].mean() > SILHOUETTE_MAX_FILL:
        mode = "colour"  # the silhouette of a square app icon is a plain square, which no one uses as a mark
    if mode != "colour":
        value = 255.0 if mode == "white" else 0.0
        layer = (layer[0], layer[0][..., None] * np.full(3, value, np.float32))
    angle = 0.0 if rng.random() < 0.7 else float(rng.uniform(-20, 20))
    layer = rotate(layer, angle)
    opacity = rng.uniform(*LOGO_ALPHA)
    x, y = _position(layer, w, h, rng)
    over(alpha, premult, scaled(layer, opacity), x, y)
    return {"logo": name, "mode": mode, "alpha": opacity, "angle": angle}


def _stamp(alpha: np.ndarray, premult: np.ndarray, rng: np.random.Generator, fonts: list[FontFile], logos: Logos
          ) -> dict[str, object]:
    """A small near-opaque corner stamp: text, maybe a logo before it, maybe on a translucent banner."""
    h, w = alpha.shape
    font, text = _font_and_text(rng, fonts, stamp_phrase)
    colour = _mark_colour(rng)
    height = max(10.0, rng.uniform(0.025, 0.06) * min(h, w))
    style = str(rng.choice(["plain", "outline", "shadow"], p=[0.6, 0.2, 0.2]))
    parts = [text_layer(text, font, height, colour, style, rng, max_width=0.6 * w)]
    meta: dict[str, object] = {"text": text, "font": _font_name(font), "colour": colour, "style": style}
    if rng.random() < 0.4:
        logo, meta["logo"] = logo_layer(rng, logos, 1.6 * height)
        parts.insert(0, logo)
    gap = int(round(0.4 * height))
    th = max(p[0].shape[0] for p in parts)
    tw = sum(p[0].shape[1] for p in parts) + gap * (len(parts) - 1)
    pad = int(round(0.35 * height)) if rng.random() < 0.3 else 0
    canvas = (np.zeros((th + 2 * pad, tw + 2 * pad), np.float32), np.zeros((th + 2 * pad, tw + 2 * pad, 3), np.float32))
    if pad:
        banner = np.full(3, 0.0 if np.mean(colour) > 127 else 255.0, np.float32)
        box_alpha = rng.uniform(0.35, 0.75)
        canvas[0][:] = box_alpha
        canvas[1][:] = box_alpha * banner
        meta["banner"] = round(float(box_alpha), 3)
    x = pad
    for part in parts:
        over(*canvas, part, x, pad + (th - part[0].shape[0]) // 2)
        x += part[0].shape[1] + gap
    opacity = rng.uniform(*STAMP_ALPHA)
    margin = int(rng.uniform(0.01, 0.05) * min(h, w))
    ch, cw = canvas[0].shape
    corner = int(rng.choice(4, p=[0.15, 0.15, 0.25, 0.45]))  # top-left, top-right, bottom-left, bottom-right
    x = margin if corner in (0, 2) else w - cw - margin
    y = margin if corner in (0, 1) else h - ch - margin
    over(alpha, premult, scaled(canvas, opacity), x, y)
    meta.update(alpha=opacity, corner=["top-left", "top-right", "bottom-left", "bottom-right"][corner])
    return meta


def _blend(clean: np.ndarray, alpha: np.ndarray, premult: np.ndarray) -> np.ndarray:
    """J = (1 - A) I + A W in float32 (A W is premult), rounded once; only the mark's bounding box is computed."""
    marked = clean.copy()
    ys, xs = np.nonzero(alpha.any(axis=1))[0], np.nonzero(alpha.any(axis=0))[0]
    if ys.size:
        box = np.s_[ys[0] : ys[-1] + 1, xs[0] : xs[-1] + 1]
        mixed = clean[box].astype(np.float32) * (1 - alpha[box])[..., None] + premult[box]
        marked[box] = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
    return marked


def _crop(photo: np.ndarray, size: tuple[int, int] | None, rng: np.random.Generator, *, mirror: bool
          ) -> tuple[np.ndarray, dict]:
    """A random crop of photo at a random scale, resized to size (height, width), maybe mirrored."""
    flip = bool(rng.random() < 0.5) and mirror
    if size is None:
        return (np.ascontiguousarray(photo[:, ::-1]) if flip else photo.copy()), {"flip": flip}
    th, tw = size
    ph, pw = photo.shape[:2]
    smallest = max(th / ph, tw / pw)  # the output/source scale at which the whole photo just covers the crop
    scale = smallest if smallest >= 1 else float(np.exp(rng.uniform(np.log(smallest), 0.0)))
    ch, cw = min(ph, max(1, round(th / scale))), min(pw, max(1, round(tw / scale)))
    y, x = int(rng.integers(0, ph - ch + 1)), int(rng.integers(0, pw - cw + 1))
    crop = photo[y : y + ch, x : x + cw]
    method = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    out = cv2.resize(crop, (tw, th), interpolation=method) if (ch, cw) != (th, tw) else crop.copy()
    if flip:
        out = np.ascontiguousarray(out[:, ::-1])
    return out, {"flip": flip, "crop": [x, y, cw, ch], "scale": round(scale, 4)}


def _jitter(rgb: np.ndarray, rng: np.random.Generator, meta: dict) -> np.ndarray:
    """The photo as another camera, exposure or upload path might have left it: a new photo to the network."""
    image = rgb.astype(np.float32)
    h, w = rgb.shape[:2]
    done = []
    if rng.random() < 0.15 and min(h, w) >= 64:  # resampled: an upscaled small photo
        f = rng.uniform(0.35, 0.8)
        small = cv2.resize(image, (max(8, round(w * f)), max(8, round(h * f))), interpolation=cv2.INTER_AREA)
        image = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        done.append("resample")
    if rng.random() < 0.2:  # out of focus or motion-soft
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 1.8))
        done.append("blur")
    elif rng.random() < 0.15:  # over-sharpened by a camera or an editor: halos at every edge
        soft = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.8, 2.0))
        image = image + rng.uniform(0.4, 1.5) * (image - soft)
        done.append("sharpen")
    if rng.random() < 0.8:  # exposure, contrast, gamma, white balance, saturation
        grey = image.mean(axis=2, keepdims=True)
        image = grey + rng.uniform(0.3, 1.5) * (image - grey)
        image = image * rng.uniform(0.9, 1.1, size=3).astype(np.float32)
        mean = float(image.mean())
        image = (image - mean) * rng.uniform(0.6, 1.4) + mean + rng.uniform(-40, 40)
        np.clip(image, 0, 255, out=image)
        image = 255 * (image / 255) ** float(np.exp(rng.uniform(-0.4, 0.4)))
        done.append("colour")
    if rng.random() < 0.25:  # sensor noise, grey or coloured
        sigma = rng.uniform(1, 8)
        shape = (h, w, 1) if rng.random() < 0.5 else (h, w, 3)
        image = image + rng.normal(0, sigma, size=shape).astype(np.float32)
        done.append("noise")
    meta["jitter"] = done
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    """Round-trip through libjpeg at this quality (4:2:0, as cameras and websites save)."""
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - libjpeg does not fail on a valid uint8 image
        raise RuntimeError("JPEG encoding failed")
    return np.ascontiguousarray(cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1])


# --- choices ------------------------------------------------------------------------------------------------------


def _font_and_text(
    rng: np.random.Generator, fonts: list[FontFile], phrase: Callable[[np.random.Generator], str]
) -> tuple[FontFile | None, str]:
    """A font and a string for it: CJK text only from a CJK font; Pillow's default font without fonts."""
    cjk = [f for f in fonts if f.cjk]
    if cjk and rng.random() < CJK_PROBABILITY:
        return cjk[int(rng.integers(len(cjk)))], cjk_phrase(rng)
    if not fonts:
        return None, phrase(rng)
    # Family first, then a face: Inter's 36 faces would otherwise crowd out Open Sans's 13.
    families = sorted({f.family for f in fonts})
    family = families[int(rng.integers(len(families)))]
    faces = [f for f in fonts if f.family == family]
    return faces[int(rng.integers(len(faces)))], phrase(rng)


def _font_name(font: FontFile | None) -> str:
    return font.name if font else "pillow-default"


def _mark_colour(rng: np.random.Generator) -> list[int]:
    """White (half the marks), black, grey or a saturated colour."""
    kind = rng.choice(4, p=[0.5, 0.2, 0.1, 0.2])
    if kind == 0:
        return [int(rng.integers(235, 256))] * 3
    if kind == 1:
        return [int(rng.integers(0, 25))] * 3
    if kind == 2:
        return [int(rng.integers(90, 180))] * 3
    return hsv_colour(rng.integers(0, 180), rng.integers(150, 256), rng.integers(150, 256))


def _position(layer: Layer, w: int, h: int, rng: np.random.Generator) -> tuple[int, int]:
    """A random top-left corner that keeps the layer inside the frame when it fits, else centred."""
    lh, lw = layer[0].shape
    x = int(rng.integers(0, w - lw + 1)) if lw <= w else (w - lw) // 2
    y = int(rng.integers(0, h - lh + 1)) if lh <= h else (h - lh) // 2
    return x, y
