"""Draws watermark layers (text with outline or shadow, logos) as premultiplied coverage and colour; composites them.

A layer is (a, p): coverage a (HxW float32 in [0, 1]) and premultiplied colour p = a * W (HxWx3 float32). Layers
combine with the "over" operator, a_new = a + A (1 - a), P_new = p + P (1 - a), which is exactly what blending them
onto a photo one after another would do, so a stack of layers is again one (alpha, colour) pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from bot.lab.assets import FontFile, load_logo

__all__ = ["Layer", "hsv_colour", "logo_layer", "open_face", "over", "procedural_logo", "rotate", "scaled", "text_layer"]

Layer = tuple[np.ndarray, np.ndarray]  # (coverage HxW float32 in [0,1], premultiplied colour HxWx3 float32)
MAX_CACHED_FACES = 512


def text_layer(
    text: str, font: FontFile | None, height: float, colour: list[int], style: str, rng: np.random.Generator,
    *, max_width: float,
) -> Layer:
    """Text as premultiplied layers: optional drop shadow, optional outline, then the fill, opaque (scale later)."""
    size = max(6, int(round(height)))
    face = open_face(font, size)
    stroke = max(1, int(round(size * rng.uniform(0.03, 0.08)))) if style == "outline" else 0
    probe = _bbox(text, face, stroke)
    if probe[2] - probe[0] > max_width:  # too wide for the frame: shrink the font to fit
        size = max(6, int(size * max_width / (probe[2] - probe[0])))
        face = open_face(font, size)
        stroke = min(stroke, max(1, size // 12)) if stroke else 0
        probe = _bbox(text, face, stroke)
    shadow = (int(round(size * rng.uniform(0.04, 0.1))), float(size * rng.uniform(0.0, 0.06))) if style == "shadow" \
        else (0, 0.0)
    # Italic and script faces draw past the box Pillow reports; a margin of size/8 keeps their overhang.
    pad = stroke + shadow[0] + int(3 * shadow[1]) + 2 + size // 8
    width, tall = probe[2] - probe[0] + 2 * pad, probe[3] - probe[1] + 2 * pad
    origin = (pad - probe[0], pad - probe[1])
    fill = _draw(text, face, (width, tall), origin, 0)
    layers: list[tuple[np.ndarray, np.ndarray]] = []
    if style == "shadow":
        offset, blur = shadow
        body = np.zeros_like(fill)
        body[offset:, offset:] = fill[: tall - offset, : width - offset]
        if blur > 0.3:
            body = cv2.GaussianBlur(body, (0, 0), blur)
        strength = rng.uniform(0.4, 0.8)
        dark = 0.0 if np.mean(colour) > 100 else 255.0
        layers.append((body * strength, np.full(3, dark, np.float32)))
    if stroke:
        dark = 0.0 if np.mean(colour) > 100 else 255.0
        layers.append((_draw(text, face, (width, tall), origin, stroke), np.full(3, dark, np.float32)))
    layers.append((fill, np.asarray(colour, np.float32)))
    a = np.zeros((tall, width), np.float32)
    p = np.zeros((tall, width, 3), np.float32)
    for cover, rgb in layers:
        over(a, p, (cover, cover[..., None] * rgb), 0, 0)
    return a, p


def _bbox(text: str, face: ImageFont.FreeTypeFont, stroke: int) -> tuple[int, int, int, int]:
    """The box _draw's text covers when drawn at the origin."""
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    box = probe.multiline_textbbox((0, 0), text, font=face, stroke_width=stroke, align="center",
                                   spacing=_spacing(face))
    return int(box[0]), int(box[1]), int(np.ceil(box[2])), int(np.ceil(box[3]))


def _draw(text: str, face: ImageFont.FreeTypeFont, size: tuple[int, int], origin: tuple[int, int], stroke: int
          ) -> np.ndarray:
    """Coverage in [0, 1] of text drawn (with stroke_width) on a blank canvas."""
    canvas = Image.new("L", size, 0)
    ImageDraw.Draw(canvas).multiline_text(origin, text, font=face, fill=255, stroke_width=stroke, stroke_fill=255,
                                          align="center", spacing=_spacing(face))
    return np.asarray(canvas, np.float32) * (1 / 255)


def _spacing(face: ImageFont.FreeTypeFont) -> int:
    return max(2, int(face.size) // 5)


def logo_layer(rng: np.random.Generator, logos: Sequence[Path | np.ndarray], side: float
               ) -> tuple[Layer, str]:
    """A logo scaled so its long side is `side` px, as an opaque premultiplied layer, and its name."""
    if logos:
        item = logos[int(rng.integers(len(logos)))]
        rgba, name = (load_logo(item), item.stem) if isinstance(item, Path) else (item, "array")
    else:
        rgba, name = procedural_logo(rng), "procedural"
    scale = max(4.0, side) / max(rgba.shape[:2])
    lh, lw = max(2, round(rgba.shape[0] * scale)), max(2, round(rgba.shape[1] * scale))
    a = rgba[..., 3].astype(np.float32) * (1 / 255)
    p = rgba[..., :3].astype(np.float32) * a[..., None]
    # Resample premultiplied colour, so transparent pixels' (arbitrary) RGB never bleeds into the edges.
    method = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    a = np.clip(cv2.resize(a, (lw, lh), interpolation=method), 0, 1)
    p = np.clip(cv2.resize(p, (lw, lh), interpolation=method), 0, None)
    np.minimum(p, 255 * a[..., None], out=p)
    return (a, p), name


def procedural_logo(rng: np.random.Generator) -> np.ndarray:
    """A deterministic RGBA logo of a few flat shapes, drawn at 2x and downsampled for smooth edges."""
    big = Image.new("RGBA", (512, 512), (0, 0, 0, 0))
    draw = ImageDraw.Draw(big)
    for _ in range(int(rng.integers(2, 5))):
        fill = tuple(int(v) for v in rng.integers(0, 256, 3)) + (255,)
        x0, y0 = (int(v) for v in rng.integers(60, 240, 2))  # overlapping near the centre, like one emblem
        x1, y1 = x0 + int(rng.integers(120, 212)), y0 + int(rng.integers(120, 212))
        shape = int(rng.integers(3))
        if shape == 0:
            draw.ellipse((x0, y0, x1, y1), fill=fill)
        elif shape == 1:
            draw.rounded_rectangle((x0, y0, x1, y1), radius=int(rng.integers(0, 40)), fill=fill)
        else:
            draw.polygon([(x0, y1), ((x0 + x1) // 2, y0), (x1, y1)], fill=fill)
    return np.asarray(big.resize((256, 256), Image.Resampling.LANCZOS))


def hsv_colour(hue: int, saturation: int, value: int) -> list[int]:
    """The [R, G, B] of an OpenCV HSV colour (hue 0-179, saturation and value 0-255)."""
    hsv = np.uint8([[[hue, saturation, value]]])
    return [int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]]


def rotate(layer: Layer, angle: float) -> Layer:
    """Rotate a premultiplied layer by angle degrees (counter-clockwise), growing its canvas to fit."""
    if abs(angle) < 0.01:
        return layer
    a, p = layer
    h, w = a.shape
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    nw, nh = int(np.ceil(w * cos + h * sin)) + 2, int(np.ceil(w * sin + h * cos)) + 2
    matrix[:, 2] += (nw / 2 - w / 2, nh / 2 - h / 2)
    ra = cv2.warpAffine(a, matrix, (nw, nh), flags=cv2.INTER_LINEAR, borderValue=0)
    rp = cv2.warpAffine(p, matrix, (nw, nh), flags=cv2.INTER_LINEAR, borderValue=0)
    np.clip(ra, 0, 1, out=ra)
    return ra, np.clip(rp, 0, 255 * ra[..., None])


def scaled(layer: Layer, opacity: float) -> Layer:
    """The layer at a global opacity (what a watermark tool's opacity slider does)."""
    return layer[0] * np.float32(opacity), layer[1] * np.float32(opacity)


def over(alpha: np.ndarray, premult: np.ndarray, layer: Layer, x: int, y: int) -> None:
    """Composite a premultiplied layer over (alpha, premult) at (x, y), in place, clipped to the frame."""
    a, p = layer
    h, w = alpha.shape
    x0, y0, x1, y1 = max(0, x), max(0, y), min(w, x + a.shape[1]), min(h, y + a.shape[0])
    if x0 >= x1 or y0 >= y1:
        return
    la, lp = a[y0 - y : y1 - y, x0 - x : x1 - x], p[y0 - y : y1 - y, x0 - x : x1 - x]
    keep = 1 - la
    premult[y0:y1, x0:x1] *= keep[..., None]
    premult[y0:y1, x0:x1] += lp
    alpha[y0:y1, x0:x1] *= keep
    alpha[y0:y1, x0:x1] += la


_FACES: dict[tuple[Path | None, int, int], ImageFont.FreeTypeFont] = {}


def open_face(font: FontFile | None, size: int) -> ImageFont.FreeTypeFont:
    """An opened FreeType face, cached: opening one costs far more than drawing with it."""
    key = (font.path if font else None, font.index if font else 0, size)
    face = _FACES.get(key)
    if face is None:
        if len(_FACES) > MAX_CACHED_FACES:
            _FACES.clear()
        face = ImageFont.load_default(size=size) if font is None else ImageFont.truetype(str(font.path), size,
                                                                                         index=font.index)
        _FACES[key] = face  # type: ignore[assignment]
    return face  # type: ignore[return-value]
