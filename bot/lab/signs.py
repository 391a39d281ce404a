"""Draws text that belongs to the scene (a sign, lettering painted on a wall, a printed page) into a photo.

These are the negatives of training: real text the engine must leave alone. What tells them from a watermark is
how they were made. A watermark is laid over the finished photo, flat and crisp, with one opacity and colour. Text
in the scene was photographed: it lies in the plane of a surface (a perspective, not only a rotation), takes the
light falling on that surface (a gradient, the surface's own texture under painted letters), is as soft as the
camera's focus, and goes through the same exposure, noise and JPEG as the rest of the photo. So the text is drawn
here, *before* synth's photo jitter, and the result is the clean photo itself: its mask is empty.

Pure and deterministic like synth.py: every random choice comes from the Generator passed in.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from bot.lab.assets import FontFile
from bot.lab.layers import Layer, hsv_colour, over, text_layer
from bot.lab.phrases import scene_phrase

__all__ = ["SIGN_KINDS", "draw_sign"]

SIGN_KINDS = ("panel", "painted", "page")  # a board with a background, letters on a surface, dark type on paper
SIGN_KIND_P = (0.5, 0.2, 0.3)
PAINTED_TRIES = 6  # painted letters go on the most textured of this many spots: a wall, not the sky
MAX_TILT = 0.18  # each corner moves by up to this fraction of the sign's size: a surface seen at an angle


def draw_sign(photo: np.ndarray, rng: np.random.Generator, fonts: Sequence[FontFile], meta: dict) -> np.ndarray:
    """The photo with one piece of scene text drawn into it (a new array); the draw's parameters go into meta."""
    h, w = photo.shape[:2]
    kind = str(rng.choice(SIGN_KINDS, p=SIGN_KIND_P))
    cjk = [f for f in fonts if f.cjk]
    use_cjk = bool(cjk) and rng.random() < 0.15
    pool = cjk if use_cjk else [f for f in fonts if not f.cjk]
    font = pool[int(rng.integers(len(pool)))] if pool else None
    text = scene_phrase(rng, cjk=use_cjk)
    ground, ink = _colours(kind, rng)
    height = rng.uniform(0.03, 0.12) * min(h, w) / (1 + text.count("\n") * 0.5)
    letters = text_layer(text, font, height, ink, "plain", rng, max_width=0.8 * w)
    sign = _on_ground(letters, ground, height, rng) if kind != "painted" else letters
    sign = _tilted(sign, rng)
    sign = _blurred(sign, rng.uniform(0.3, 1.2))
    x, y = _place(photo, sign[0].shape, rng, tries=PAINTED_TRIES if kind == "painted" else 1)
    out = photo.astype(np.float32)
    _light(out, sign, x, y, rng, textured=kind == "painted")
    meta.update(sign={"kind": kind, "text": text, "font": font.name if font else "pillow-default", "ink": ink,
                      "ground": ground})
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _place(photo: np.ndarray, shape: tuple[int, ...], rng: np.random.Generator, *, tries: int) -> tuple[int, int]:
    """A top-left corner for a sign of this shape: random, or the most textured of `tries` random ones (lettering
    painted on a smooth sky would be indistinguishable from an opaque watermark)."""
    h, w = photo.shape[:2]
    best, where = -1.0, (0, 0)
    for _ in range(tries):
        x, y = int(rng.integers(0, max(1, w - shape[1] + 1))), int(rng.integers(0, max(1, h - shape[0] + 1)))
        texture = float(photo[y : y + shape[0], x : x + shape[1]].std()) if tries > 1 else 0.0
        if texture > best:
            best, where = texture, (x, y)
    return where


def _colours(kind: str, rng: np.random.Generator) -> tuple[list[int] | None, list[int]]:
    """(background, ink): dark type on paper, contrasting board and letters, or any paint on a wall."""
    if kind == "page":
        paper = int(rng.integers(205, 250))
        return [paper, paper, int(paper - rng.integers(0, 25))], [int(rng.integers(10, 60))] * 3
    bright = hsv_colour(rng.integers(0, 180), rng.integers(60, 256), rng.integers(150, 256))
    pair = [bright, hsv_colour(rng.integers(0, 180), rng.integers(60, 256), rng.integers(20, 90))]
    if rng.random() < 0.3:
        pair[int(rng.integers(2))] = [int(rng.integers(225, 256))] * 3  # white letters or a white board
    if rng.random() < 0.5:
        pair.reverse()
    return (pair[0] if kind == "panel" else None), pair[1]


def _on_ground(letters: Layer, ground: list[int] | None, height: float, rng: np.random.Generator) -> Layer:
    """The letters on an opaque board or page with a margin around them."""
    a = letters[0]
    pad = int(round(rng.uniform(0.2, 0.8) * height))
    board_a = np.ones((a.shape[0] + 2 * pad, a.shape[1] + 2 * pad), np.float32)
    board_p = board_a[..., None] * np.asarray(ground, np.float32)
    over(board_a, board_p, letters, pad, pad)
    return board_a, board_p


def _tilted(layer: Layer, rng: np.random.Generator) -> Layer:
    """The layer as a plane seen at an angle: a random perspective of its four corners, on a canvas that fits."""
    a, p = layer
    h, w = a.shape
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = src + rng.uniform(-MAX_TILT, MAX_TILT, size=(4, 2)).astype(np.float32) * np.float32([w, h])
    dst -= dst.min(axis=0)
    size = (int(np.ceil(dst[:, 0].max())) + 1, int(np.ceil(dst[:, 1].max())) + 1)
    matrix = cv2.getPerspectiveTransform(src, dst)
    ta = np.clip(cv2.warpPerspective(a, matrix, size, flags=cv2.INTER_LINEAR, borderValue=0), 0, 1)
    tp = cv2.warpPerspective(p, matrix, size, flags=cv2.INTER_LINEAR, borderValue=0)
    return ta, np.clip(tp, 0, 255 * ta[..., None])


def _blurred(layer: Layer, sigma: float) -> Layer:
    """As soft as the camera saw it."""
    a, p = layer
    return cv2.GaussianBlur(a, (0, 0), sigma), cv2.GaussianBlur(p, (0, 0), sigma)


def _light(out: np.ndarray, sign: Layer, x: int, y: int, rng: np.random.Generator, *, textured: bool) -> None:
    """Composite the sign into out (float RGB, in place) under a light gradient; painted letters keep the texture
    of the surface under them (paint darkens or tints what is there, it does not replace it)."""
    a, p = sign
    h, w = out.shape[:2]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(w, x + a.shape[1]), min(h, y + a.shape[0])
    a, p = a[y0 - y : y1 - y, x0 - x : x1 - x], p[y0 - y : y1 - y, x0 - x : x1 - x]
    region = out[y0:y1, x0:x1]
    yy, xx = np.mgrid[0 : y1 - y0, 0 : x1 - x0].astype(np.float32)
    gx, gy = rng.uniform(-0.35, 0.35, size=2) / np.float32(max(1, x1 - x0, y1 - y0))
    light = (rng.uniform(0.75, 1.1) + gx * (xx - xx.mean()) + gy * (yy - yy.mean()))[..., None]
    colour = p * light
    if textured:
        grey = region.mean(axis=2, keepdims=True)
        texture = grey / np.maximum(cv2.GaussianBlur(grey, (0, 0), 6)[..., None], 8)
        colour = colour * np.clip(texture, 0.5, 1.5)
    region *= 1 - a[..., None]
    region += colour
