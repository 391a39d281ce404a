"""Tiled marks (bot.engine.tiled): the lattice is found from the segmenter's belief and the mark is taken out of
the stack of its repeats.

The belief here is what a segmenter would say (the true mask, or a lattice of blobs where there is no mark), so
these check the lattice, the stack and its gates on their own; `unmark bench engine` measures them with the trained
network.
"""

from __future__ import annotations

import cv2
import numpy as np

from bot.engine import tiled
from bot.engine.mark import MarkEngine
from bot.engine.segmenter import Segmentation, proxy_size, to_input
from tests.watermarks import blend, photo


def _element(text: str = "PREVIEW", angle: float = 30.0) -> np.ndarray:
    """One repeat's coverage: anti-aliased text, rotated, on its own small canvas."""
    canvas = np.zeros((60, 240), np.uint8)
    cv2.putText(canvas, text, (8, 45), cv2.FONT_HERSHEY_DUPLEX, 1.4, 255, 3, cv2.LINE_AA)
    canvas = canvas.astype(np.float32) / 255
    rotation = cv2.getRotationMatrix2D((120, 30), angle, 1.0)
    cos, sin = abs(rotation[0, 0]), abs(rotation[0, 1])
    w, h = int(240 * cos + 60 * sin) + 2, int(240 * sin + 60 * cos) + 2
    rotation[:, 2] += (w - 240) / 2, (h - 60) / 2
    return cv2.warpAffine(canvas, rotation, (w, h), flags=cv2.INTER_LINEAR)


def _tiled_alpha(height: int, width: int, opacity: float, step: tuple[float, float] = (150.0, 260.0),
                 shift: float = 0.5) -> np.ndarray:
    """The element pasted at whole pixels on a sheared lattice (rows shifted by `shift` of a step: a brick
    pattern), as watermarking tools do."""
    element = _element()
    eh, ew = element.shape
    alpha = np.zeros((height + 2 * eh, width + 2 * ew), np.float32)
    for row in range(-2, int(height / step[0]) + 3):
        for column in range(-2, int(width / step[1]) + 3):
            y = round(row * step[0] + 40)
            x = round(column * step[1] + (row % 2) * shift * step[1] + 25)
            if 0 <= y + eh < alpha.shape[0] - eh and 0 <= x + ew < alpha.shape[1] - ew:
                region = alpha[y + eh : y + 2 * eh, x + ew : x + 2 * ew]
                np.maximum(region, element, out=region)
    return alpha[eh : eh + height, ew : ew + width] * opacity


def _belief(alpha: np.ndarray, side: int = 640) -> np.ndarray:
    """A segmenter's proxy belief that sees the mark's pixels (not sure of them: 0.9)."""
    h, w = alpha.shape
    ph, pw = proxy_size(h, w, side)
    small = cv2.resize(alpha, (pw, ph), interpolation=cv2.INTER_AREA)
    return (small > 0.02).astype(np.float32) * np.float32(0.9)


def _psnr(result: np.ndarray, clean: np.ndarray, where: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((result[where].astype(float) - clean[where]) ** 2)))


def test_a_faint_tiled_mark_comes_off_every_repeat_with_its_colour_and_opacity() -> None:
    clean = photo(1200, 800, seed=4)
    alpha = _tiled_alpha(800, 1200, opacity=0.25)
    marked = blend(clean, alpha, (255, 255, 255))
    truth = alpha > 0.02

    found = tiled.remove(marked, _belief(alpha))

    assert found is not None
    out, changed, mark = found
    assert mark.repeats >= 12
    assert abs(mark.opacity - 0.25) < 0.06
    assert np.all(mark.colour > 200)  # white, not a grey at a higher opacity
    # Every repeat, including those cut by the frame's edges, comes back far closer to the photo.
    assert changed[truth].mean() > 0.9
    assert _psnr(out, clean, truth) > _psnr(marked, clean, truth) + 8
    # Pixels away from the mark are bit for bit the input, and `changed` says exactly which pixels differ.
    reach = cv2.dilate(truth.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    assert np.array_equal(out[~reach], marked[~reach])
    assert np.array_equal(np.any(out != marked, axis=2), changed)


def test_a_coloured_tiled_mark_keeps_its_colour() -> None:
    clean = photo(1000, 750, seed=9)
    alpha = _tiled_alpha(750, 1000, opacity=0.3, step=(140.0, 280.0), shift=0.0)
    marked = blend(clean, alpha, (40, 90, 230))

    found = tiled.remove(marked, _belief(alpha))

    assert found is not None
    out, _, mark = found
    assert np.abs(mark.colour - (40, 90, 230)).max() < 40
    truth = alpha > 0.02
    assert _psnr(out, clean, truth) > _psnr(marked, clean, truth) + 6


def test_one_mark_or_marks_off_any_lattice_are_no_tiled_mark() -> None:
    clean = photo(900, 600, seed=2)
    one = np.zeros((600, 900), np.float32)
    one[250:330, 300:600] = _element(angle=0.0)[:80, :300].max()  # one big block
    assert tiled.remove(clean, _belief(one)) is None
    scattered = np.zeros((600, 900), np.float32)
    rng = np.random.default_rng(1)
    for _ in range(9):
        y, x = rng.integers(0, 560), rng.integers(0, 840)
        scattered[y : y + rng.integers(15, 40), x : x + rng.integers(20, 60)] = 1.0
    assert tiled.remove(clean, _belief(scattered)) is None


def test_a_lattice_the_photo_does_not_show_changes_nothing() -> None:
    # The belief repeats on a lattice (a network fooled by a pattern), but no mark is blended into the photo: the
    # stack's mean has nothing standing out of its noise, so nothing is touched.
    clean = photo(1200, 800, seed=5)
    alpha = _tiled_alpha(800, 1200, opacity=0.25)

    assert tiled.remove(clean, _belief(alpha)) is None


class _Seen:
    """A segmenter that says what it is given (the engine's own steps run as they do on the network's maps)."""

    def __init__(self, belief: np.ndarray) -> None:
        self._belief = belief

    def predict(self, rgb: np.ndarray, max_side: int = 640) -> Segmentation:
        ph, pw = self._belief.shape
        return Segmentation(image=to_input(rgb, (ph, pw))[0].transpose(1, 2, 0), mask=self._belief,
                            alpha=np.zeros((ph, pw), np.float32), colour=np.zeros((ph, pw, 3), np.float32))


def test_the_engine_takes_off_a_tiled_mark_and_still_finds_a_mark_beside_it() -> None:
    clean = photo(1200, 800, seed=7)
    tiles = _tiled_alpha(800, 1200, opacity=0.25, step=(200.0, 320.0))
    # A one-colour block, sure to the network, in a gap between repeats low on the right (a logo by the tiles).
    gaps = [(y, x) for y in range(20, 740, 10) for x in range(20, 1060, 10)
            if tiles[y - 12 : y + 52, x - 12 : x + 132].max() == 0]
    y, x = max(gaps, key=lambda p: p[0] + p[1])
    logo = np.zeros((800, 1200), np.float32)
    logo[y : y + 40, x : x + 120] = 0.6
    marked = blend(blend(clean, tiles, (255, 255, 255)), logo, (20, 20, 20))
    sure = cv2.resize(logo, _belief(tiles).shape[::-1], interpolation=cv2.INTER_AREA) > 0.02
    belief = np.maximum(_belief(tiles), sure.astype(np.float32))
    engine = MarkEngine(_Seen(belief))  # type: ignore[arg-type]

    out = engine.clean(marked)

    for alpha, gain in ((tiles, 8), (logo, 15)):
        truth = alpha > 0.02
        assert _psnr(out, clean, truth) > _psnr(marked, clean, truth) + gain
