"""Synthesises photo-like images and semi-transparent text watermarks (with their true masks) for tests."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_PATH = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")
# The scene is composed at this long side and upsampled: cheap even for 10000 px, and it keeps the photo smooth.
BASE_LONG_SIDE = 384
GRAIN = 3  # sensor-like noise amplitude, in 0..255 units
TEXT_WIDTH_FRACTION = 0.6  # the mark spans about this much of the image width...
TEXT_HEIGHT_FRACTION = 0.2  # ...unless that would make it taller than this much of the height
ENCODE_FORMATS = {"jpeg": "JPEG", "jpg": "JPEG", "png": "PNG", "bmp": "BMP", "webp": "WEBP"}


def photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A deterministic photo-like HxWx3 uint8 RGB image: gradients, blurred noise and a few soft shapes."""
    rng = np.random.default_rng(seed)
    scale = min(1.0, BASE_LONG_SIDE / max(width, height))
    bw, bh = max(8, round(width * scale)), max(8, round(height * scale))
    yy, xx = np.mgrid[0:bh, 0:bw].astype(np.float32)
    yy /= bh
    xx /= bw

    # A sky-to-ground style gradient between two random mid-tone colours.
    top, bottom = rng.uniform(40, 170, size=(2, 3)).astype(np.float32)
    tilt = rng.uniform(-0.3, 0.3)
    t = np.clip(yy + tilt * (xx - 0.5), 0, 1)[..., None]
    base = top * (1 - t) + bottom * t

    # Blurred noise at a few scales gives texture without text-like strokes; mostly luminance, like real scenes.
    for sigma, amp in ((bw / 8, 28.0), (bw / 32, 12.0), (1.5, 5.0)):
        noise = rng.standard_normal((bh, bw, 4)).astype(np.float32)
        noise = cv2.GaussianBlur(noise, (0, 0), sigma)
        noise *= amp / (noise.std() + 1e-6)
        base += noise[..., :1] + 0.3 * noise[..., 1:]

    # Soft, roundish blobs: the "objects" of the scene (thin ones look like an "I" to a text detector).
    for _ in range(rng.integers(3, 7)):
        cx, cy = rng.uniform(0, bw), rng.uniform(0, bh)
        ax = rng.uniform(0.05, 0.2) * min(bw, bh)
        ay = ax * rng.uniform(0.6, 1.6)
        shape = np.zeros((bh, bw), np.float32)
        cv2.ellipse(shape, (int(cx), int(cy)), (int(ax), int(ay)), float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
        shape = cv2.GaussianBlur(shape, (0, 0), rng.uniform(1.0, 6.0))[..., None]
        colour = rng.uniform(20, 200, size=3).astype(np.float32)
        base = base * (1 - 0.8 * shape) + colour * 0.8 * shape

    base = np.clip(base, 0, 255).astype(np.uint8)
    if (bw, bh) != (width, height):
        base = cv2.resize(base, (width, height), interpolation=cv2.INTER_CUBIC)
    # Fine luminance grain at full resolution; saturating uint8 maths keeps huge frames cheap.
    grain = rng.integers(0, 2 * GRAIN + 1, size=(height, width), dtype=np.uint8)
    grain3 = cv2.merge([grain, grain, grain])
    cv2.add(base, grain3, dst=base)
    cv2.subtract(base, (GRAIN, GRAIN, GRAIN, 0), dst=base)
    return base


def blend(clean: np.ndarray, alpha: np.ndarray, colour: tuple[int, int, int] | np.ndarray) -> np.ndarray:
    """A mark blended over clean (HxWx3 uint8) with a per-pixel opacity alpha (HxW float): of one colour, or of a
    colour per pixel (HxWx3)."""
    a = alpha[..., None]
    return np.clip(np.rint(clean * (1 - a) + a * np.float32(colour)), 0, 255).astype(np.uint8)


def text_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans Bold when installed, otherwise Pillow's built-in scalable font."""
    if FONT_PATH.exists():
        return ImageFont.truetype(str(FONT_PATH), size)
    return ImageFont.load_default(size=size)


def add_text_watermark(
    rgb: np.ndarray,
    text: str = "SAMPLE",
    alpha: float = 0.6,
    colour: tuple[int, int, int] = (255, 255, 255),
    seed: int = 0,
    *,
    size_fraction: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Blend large semi-transparent text onto a copy of rgb; returns (marked_rgb, true_mask_bool)."""
    h, w = rgb.shape[:2]
    rng = np.random.default_rng(seed)

    # Size the font from a probe rendering so the text fits the frame whatever the aspect ratio.
    probe = 100
    left, top, right, bottom = text_font(probe).getbbox(text)
    size = probe * min(TEXT_WIDTH_FRACTION * w / (right - left), TEXT_HEIGHT_FRACTION * h / (bottom - top))
    font = text_font(max(6, int(size * size_fraction)))
    left, top, right, bottom = font.getbbox(text)
    tw, th = right - left, bottom - top
    x = int(rng.integers(0, max(1, w - tw))) - left
    y = int(rng.integers(0, max(1, h - th))) - top

    # Render coverage only over the text's box, so huge frames never get a full-size float copy.
    x0, y0 = max(0, x + left), max(0, y + top)
    x1, y1 = min(w, x + right + 1), min(h, y + bottom + 1)
    cover_img = Image.new("L", (x1 - x0, y1 - y0), 0)
    ImageDraw.Draw(cover_img).text((x - x0, y - y0), text, font=font, fill=255)
    cover = np.asarray(cover_img, dtype=np.float32) / 255.0

    marked = rgb.copy()
    region = marked[y0:y1, x0:x1].astype(np.float32)
    a = (alpha * cover)[..., None]
    region = region * (1 - a) + np.asarray(colour, np.float32) * a
    marked[y0:y1, x0:x1] = np.clip(np.rint(region), 0, 255).astype(np.uint8)

    mask = np.zeros((h, w), bool)
    mask[y0:y1, x0:x1] = cover > 0
    return marked, mask


def encode(rgb: np.ndarray, fmt: str = "png", quality: int = 92) -> bytes:
    """Encode an HxWx3 uint8 RGB array as jpeg, png, bmp or webp bytes."""
    pil_format = ENCODE_FORMATS[fmt.lower()]
    buf = io.BytesIO()
    kwargs = {"quality": quality} if pil_format in ("JPEG", "WEBP") else {}
    Image.fromarray(rgb, "RGB").save(buf, format=pil_format, **kwargs)
    return buf.getvalue()
