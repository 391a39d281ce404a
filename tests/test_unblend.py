"""Un-blending: fitting a mark's colour and opacity, its coverage, the inversion, and the tiles (bot.engine.unblend,
bot.engine.mark's removal step).

These run on masks we know (what a perfect segmenter would say), so they check the fitting, the arithmetic and the
tiling on their own; how well the trained network finds marks is measured by `unmark bench engine`, and
tests/test_engine.py runs the whole engine through its contract.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from bot.engine import mark, unblend
from bot.engine.segmenter import Segmentation, proxy_size, to_input
from tests.watermarks import blend


def _photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A textured stand-in photo: smooth gradients plus fine noise, so inpainting could not guess it."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([96 + 60 * np.sin(x / 37), 128 + 50 * np.cos(y / 23), 80 + 40 * np.sin((x + y) / 51)], -1)
    return np.clip(base + rng.normal(0, 12, (height, width, 3)), 0, 255).astype(np.uint8)


def _text_alpha(height: int, width: int, opacity: float, text: str = "SAMPLE (c) 2026", scale: float = 3.0
                ) -> np.ndarray:
    """Anti-aliased text as a float opacity map."""
    canvas = np.zeros((height, width), np.uint8)
    cv2.putText(canvas, text, (width // 10, height // 2), cv2.FONT_HERSHEY_DUPLEX, scale, 255, 6, cv2.LINE_AA)
    return canvas.astype(np.float32) / 255 * opacity


def test_inverting_a_known_blend_gives_the_photo_back() -> None:
    clean = _photo(120, 160)
    alpha = np.tile(np.linspace(0.0, 0.85, 160, dtype=np.float32), (120, 1))
    marked = blend(clean, alpha, (250, 250, 250))

    restored, opaque = unblend.invert(marked, alpha, np.full((120, 160, 3), 250, np.float32))

    # Rounding J to uint8 costs at most 0.5 / (1 - A) levels; at A = 0.85 that is 3.3.
    error = np.abs(restored - clean)
    assert error.max() <= 0.5 / (1 - 0.85) + 1e-3
    assert not opaque.any()
    assert float(np.sqrt(np.mean(error**2))) < 1.2


def test_too_opaque_pixels_are_flagged_and_stay_finite() -> None:
    clean = _photo(40, 40)
    alpha = np.full((40, 40), 0.97, np.float32)
    marked = blend(clean, alpha, (0, 0, 0))

    restored, opaque = unblend.invert(marked, alpha, np.zeros((40, 40, 3), np.float32))

    assert opaque.all()
    assert np.isfinite(restored).all() and restored.min() >= 0 and restored.max() <= 255


def test_one_colour_and_opacity_are_fitted_from_the_marks_pixels() -> None:
    rng = np.random.default_rng(1)
    backgrounds = rng.uniform(20, 200, (4000, 3)).astype(np.float32)
    covered = np.where(rng.random(4000) < 0.7, 1.0, rng.uniform(0, 1, 4000)).astype(np.float32)  # insides and rims
    colour, opacity = np.float32([240, 230, 40]), 0.45
    differences = (covered * opacity)[:, None] * (colour - backgrounds) + rng.normal(0, 2, (4000, 3))

    blend = unblend.fit_blend(differences.astype(np.float32), backgrounds)

    assert np.abs(blend.colour - colour).max() <= 12
    assert abs(blend.opacity - opacity) < 0.05
    assert blend.explained > 0.95


def test_coverage_is_snapped_whole_inside_and_none_outside() -> None:
    background = np.full((1, 5, 3), 100, np.float32)
    colour = np.full((1, 5, 3), 250, np.float32)
    opacity = np.full((1, 5), 0.4, np.float32)
    shares = np.float32([0.0, 0.05, 0.45, 0.8, 1.0])  # true coverage per pixel, with B a little off below
    marked = background + (shares * 0.4)[None, :, None] * (colour - background) + 3

    cover = unblend.coverage(marked, background, colour, opacity)

    assert cover[0, 0] == 0 and cover[0, 1] == 0  # nothing, and a slightly wrong B, stay nothing
    assert cover[0, 3] == 1 and cover[0, 4] == 1  # the inside of a glyph is whole: the exact A is used
    assert 0.4 < cover[0, 2] < 0.55  # the anti-aliased rim is graded, as it is


def _truth_segmentation(marked: np.ndarray, alpha: np.ndarray, colour: tuple[int, int, int], side: int
                        ) -> Segmentation:
    """What a perfect segmenter would say on the proxy: the true opacity and colour, area-downscaled."""
    h, w = alpha.shape
    ph, pw = proxy_size(h, w, side)
    small = cv2.resize(alpha, (pw, ph), interpolation=cv2.INTER_AREA)
    return Segmentation(
        image=to_input(marked, (ph, pw))[0].transpose(1, 2, 0),
        mask=(small > 0.02).astype(np.float32),
        alpha=small,
        colour=np.broadcast_to(np.float32(colour), (ph, pw, 3)).copy(),
    )


def test_a_mark_known_on_the_proxy_is_removed_sharply_at_full_resolution() -> None:
    clean = _photo(600, 900)
    alpha = _text_alpha(600, 900, opacity=0.5)
    marked = blend(clean, alpha, (255, 255, 255))
    truth = alpha > 0.02

    out = mark.remove(marked, mark.find_marks(_truth_segmentation(marked, alpha, (255, 255, 255), side=320), marked))

    def psnr(a: np.ndarray) -> float:
        return float(10 * np.log10(255**2 / np.mean((a[truth].astype(float) - clean[truth]) ** 2)))

    # Fitted on a proxy at a third of the size and un-blended at full resolution, the marked pixels come back to
    # within a few levels: far better than the marked input, and better than inpainting the true mask.
    inpainted = cv2.inpaint(marked, cv2.dilate(truth.astype(np.uint8), np.ones((5, 5), np.uint8)), 3,
                            cv2.INPAINT_TELEA)
    assert psnr(out) > 30
    assert psnr(out) > psnr(marked) + 10
    assert psnr(out) > psnr(inpainted) + 5


def test_pixels_outside_the_marks_reach_are_bit_exact() -> None:
    clean = _photo(400, 500, seed=3)
    alpha = np.zeros((400, 500), np.float32)
    alpha[150:200, 100:300] = 0.6
    marked = blend(clean, alpha, (20, 20, 200))

    out = mark.remove(marked, mark.find_marks(_truth_segmentation(marked, alpha, (20, 20, 200), side=256), marked))

    near = cv2.dilate((alpha > 0).astype(np.uint8), np.ones((13, 13), np.uint8)).astype(bool)
    assert np.array_equal(out[~near], marked[~near])
    assert np.any(out[alpha > 0] != marked[alpha > 0])


def test_an_image_without_marks_comes_back_identical() -> None:
    photo = _photo(300, 400)
    ph, pw = proxy_size(300, 400)
    seen = Segmentation(to_input(photo, (ph, pw))[0].transpose(1, 2, 0), np.zeros((ph, pw), np.float32),
                        np.zeros((ph, pw), np.float32), np.zeros((ph, pw, 3), np.float32))

    marks = mark.find_marks(seen, photo)
    out = mark.remove(photo, marks)

    assert marks.empty and out is not photo and np.array_equal(out, photo)


def test_a_huge_image_is_cleaned_tile_by_tile_like_a_small_one(monkeypatch: pytest.MonkeyPatch) -> None:
    # 10000 px long, the largest side we accept, with marks at both ends and across a tile seam.
    height, width = 600, 10000
    clean = _photo(height, width, seed=5)
    alpha = np.zeros((height, width), np.float32)
    alpha[:, :2000] = _text_alpha(height, 2000, opacity=0.45)
    alpha[:, 8500:] = _text_alpha(height, 1500, opacity=0.7, text="PROOF")
    alpha[100:140, 950:1100] = 0.4  # straddles the seam between the first two 1024 px tiles
    marked = blend(clean, alpha, (245, 245, 245))
    marks = mark.find_marks(_truth_segmentation(marked, alpha, (245, 245, 245), side=2048), marked)
    visited: list[tuple[int, int]] = []
    clean_tile = mark._clean_tile

    def spy(tile: np.ndarray, *args: object) -> tuple[np.ndarray, np.ndarray]:
        visited.append(tile.shape[:2])
        return clean_tile(tile, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(mark, "_clean_tile", spy)
    tiled = mark.remove(marked, marks)
    tiles_used = len(visited)
    monkeypatch.setattr(mark, "TILE", 20000)
    whole = mark.remove(marked, marks)

    # Tiles are at most TILE + 2 margins a side, only those a mark reaches are visited, and the seams do not show:
    # the tiled result equals the one-piece result except where inpainting saw less context.
    assert all(h <= 1024 + 32 and w <= 1024 + 32 for h, w in visited[:tiles_used])
    assert tiles_used <= 5  # of 10: two for the first mark, two for the last, none for the bare middle
    assert np.array_equal(tiled[:, 3000:8000], marked[:, 3000:8000])
    assert np.mean(tiled != whole) < 1e-4


@pytest.mark.parametrize("colour", [(255, 255, 255), (0, 0, 0), (230, 40, 40)])
def test_the_colour_and_opacity_come_from_the_pixels_not_the_network(colour: tuple[int, int, int]) -> None:
    clean = _photo(600, 900, seed=7)
    alpha = _text_alpha(600, 900, opacity=0.5)
    marked = blend(clean, alpha, colour)
    truth = alpha > 0.02
    seen = _truth_segmentation(marked, alpha, colour, side=320)
    wrong = seen._replace(alpha=seen.alpha * 0.3, colour=np.full_like(seen.colour, 128))  # the network is way off

    out = mark.remove(marked, mark.find_marks(wrong, marked))

    error_inside = np.sqrt(np.mean((out[truth].astype(float) - clean[truth]) ** 2))
    assert 10 * np.log10(255**2 / error_inside**2) > 28


def test_a_mark_seen_where_there_is_none_is_left_alone() -> None:
    # The network "sees" a mark on a patch of plain photo: un-blending it cannot make any edge vanish.
    photo = _photo(400, 600, seed=9)
    ph, pw = proxy_size(400, 600, 256)
    mask = np.zeros((ph, pw), np.float32)
    mask[60:90, 40:200] = 1.0
    seen = Segmentation(to_input(photo, (ph, pw))[0].transpose(1, 2, 0), mask, 0.5 * mask,
                        np.full((ph, pw, 3), 255, np.float32))

    marks = mark.find_marks(seen, photo)

    assert marks.empty
    assert np.array_equal(mark.remove(photo, marks), photo)


def test_a_mark_the_network_is_not_sure_of_anywhere_is_left_alone() -> None:
    clean = _photo(600, 900, seed=4)
    alpha = _text_alpha(600, 900, opacity=0.5)
    marked = blend(clean, alpha, (255, 255, 255))
    seen = _truth_segmentation(marked, alpha, (255, 255, 255), side=320)

    doubted = mark.find_marks(seen._replace(mask=seen.mask * 0.99), marked)
    believed = mark.find_marks(seen, marked)

    # The same pixels at 0.99 probability everywhere (a bright sign in a photo looks like this to the network) are
    # no mark; one pixel the network is sure of makes them one.
    assert doubted.empty and np.array_equal(mark.remove(marked, doubted), marked)
    assert not believed.empty


def test_one_sure_repeat_of_a_tiled_mark_vouches_for_the_faint_others_of_its_size() -> None:
    clean = _photo(600, 900, seed=6)
    alpha = np.zeros((600, 900), np.float32)
    for y in range(60, 600, 150):
        for x in range(60, 900, 220):
            alpha[y : y + 30, x : x + 120] = 0.3
    speck = np.s_[137:162, 425:450]  # a faint something of another size, between the rows: no repeat
    alpha[speck] = 0.3
    marked = blend(clean, alpha, (255, 255, 255))
    truth = alpha > 0.02
    truth[speck] = False
    seen = _truth_segmentation(marked, alpha, (255, 255, 255), side=320)
    faint = seen.mask * 0.99
    ph, pw = faint.shape
    faint[: ph // 4, : pw // 4] = seen.mask[: ph // 4, : pw // 4]  # the top-left repeat is sure

    out = mark.remove(marked, mark.find_marks(seen._replace(mask=faint), marked))

    changed = np.any(out != marked, axis=2)
    assert changed[truth].mean() > 0.95  # every repeat, not only the sure one
    assert not changed[speck].any()
    error = np.abs(out[truth].astype(float) - clean[truth]).mean()
    assert error < np.abs(marked[truth].astype(float) - clean[truth]).mean() / 3


def _shades(height: int, width: int, hue: int) -> np.ndarray:
    """HxWx3 uint8 colours shading from red (left) to the given OpenCV hue (right): a mark of several colours."""
    hues = np.tile(np.linspace(0, hue, width, dtype=np.float32).astype(np.uint8), (height, 1))
    return cv2.cvtColor(np.dstack([hues, np.full_like(hues, 255), np.full_like(hues, 255)]), cv2.COLOR_HSV2RGB)


def _shaded_band(rows: slice, columns: slice, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(clean, marked, alpha): a band shading from red to orange at opacity 0.6 over a 600 x 900 photo."""
    clean = _photo(600, 900, seed=seed)
    alpha = np.zeros((600, 900), np.float32)
    alpha[rows, columns] = 0.6
    return clean, blend(clean, alpha, _shades(600, 900, 30)), alpha


def test_a_mark_of_several_colours_is_inpainted_instead_of_half_inverted() -> None:
    # A band shading from red to orange: one colour explains most of it but not all, so it is filled in, not
    # inverted with the wrong colour over half its length.
    clean, marked, alpha = _shaded_band(np.s_[250:330], np.s_[150:750], seed=12)
    truth = alpha > 0.02
    seen = _truth_segmentation(marked, alpha, (128, 128, 128), side=320)

    marks = mark.find_marks(seen, marked)
    out = mark.remove(marked, marks)

    def error(a: np.ndarray) -> float:
        return float(np.abs(a[truth].astype(float) - clean[truth]).mean())

    telea = cv2.inpaint(marked, cv2.dilate(truth.astype(np.uint8), np.ones((5, 5), np.uint8)), 3, cv2.INPAINT_TELEA)
    assert marks.fill.any() and not marks.region.any()
    assert error(out) < error(marked) / 2
    assert error(out) < 1.2 * error(telea)  # about what inpainting the true mask gives
    # The fill reaches REACH proxy px (about 6 px here) around the mark, never further.
    far = ~cv2.dilate(truth.astype(np.uint8), np.ones((21, 21), np.uint8)).astype(bool)
    assert np.array_equal(out[far], marked[far])


def test_a_mark_too_big_to_invent_is_left_alone() -> None:
    # The same band over half the photo: inpainting it would invent half the photo, worse than any watermark.
    clean, marked, alpha = _shaded_band(np.s_[100:400], np.s_[50:850], seed=13)

    marks = mark.find_marks(_truth_segmentation(marked, alpha, (128, 128, 128), side=320), marked)

    assert marks.empty and np.array_equal(mark.remove(marked, marks), marked)


def test_a_filled_mark_keeps_the_photo_between_its_letters() -> None:
    # Letters shading from red to yellow are filled, not inverted; only their ink (and a rim) is invented: the
    # photo in the gaps that the mark's region spans around the strokes stays as it was (where it is smooth enough
    # to be told from ink: its noise here is under unblend's MIN_CONTRAST).
    clean = cv2.GaussianBlur(_photo(600, 900, seed=14), (0, 0), 1.5)
    alpha = _text_alpha(600, 900, 0.7, "MARK", scale=6.0)
    marked = blend(clean, alpha, _shades(600, 900, 50))
    truth = alpha > 0.02

    marks = mark.find_marks(_truth_segmentation(marked, alpha, (128, 128, 128), side=320), marked)
    out = mark.remove(marked, marks)

    region = cv2.resize(marks.fill.astype(np.uint8), (900, 600), interpolation=cv2.INTER_NEAREST) > 0
    gaps = region & ~cv2.dilate(truth.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    assert marks.fill.any() and gaps.sum() > 2000
    assert np.all(out[gaps] == marked[gaps], axis=1).mean() > 0.7  # inpainting the whole region keeps 14 %
    error = np.abs(out[truth].astype(float) - clean[truth]).mean()
    assert error < np.abs(marked[truth].astype(float) - clean[truth]).mean() / 2


def test_a_filled_mark_takes_the_part_the_network_is_less_sure_of_too() -> None:
    # Letters of several colours (so they are filled), whose lower halves the network believes at 0.7 only: an
    # accent, a descender, an icon's pale side. Connected to what it is sure of, that part is the mark's too.
    clean = cv2.GaussianBlur(_photo(600, 900, seed=16), (0, 0), 1.5)
    alpha = _text_alpha(600, 900, 0.7, "MARK", scale=6.0)
    marked = blend(clean, alpha, _shades(600, 900, 50))
    seen = _truth_segmentation(marked, alpha, (128, 128, 128), side=320)
    rows = np.flatnonzero(seen.mask.any(axis=1))
    middle = (rows[0] + rows[-1]) // 2
    mask = seen.mask.copy()
    mask[middle:] *= 0.7
    lower = alpha > 0.02
    lower[: middle * 600 // mask.shape[0] + 10] = False

    out = mark.remove(marked, mark.find_marks(seen._replace(mask=mask), marked))

    error = np.abs(out[lower].astype(float) - clean[lower]).mean()
    assert error < np.abs(marked[lower].astype(float) - clean[lower]).mean() / 2


@pytest.mark.parametrize(("top", "left", "stamp", "peak"),
                         [(540, 630, True, 0.995), (540, 630, True, 1.0), (270, 320, False, 0.995)])
def test_a_mark_with_text_in_it_is_a_stamp_only_in_a_corner(top: int, left: int, stamp: bool, peak: float) -> None:
    # A name of several colours at 0.995 probability: no mark on its own (MIN_PEAK). Where the OCR detector reads
    # a text line over it, in a corner it is a stamp and inpainted; in the middle of the photo it is text the
    # network doubts, a sign as likely as a mark, and left alone. A stamp the network is sure of is inpainted as
    # well, though no one colour explains it (as a mark elsewhere it would be no blend, and left as it is).
    clean = _photo(600, 900, seed=16)
    alpha = np.zeros((600, 900), np.float32)
    alpha[top : top + 60, left : left + 260] = _text_alpha(60, 260, 0.8, "Studio Nord", scale=1.2)
    colours = np.zeros((600, 900, 3), np.uint8)
    colours[top : top + 60, left : left + 260] = _shades(60, 260, 120)  # red to green
    marked = blend(clean, alpha, colours)
    truth = alpha > 0.02
    seen = _truth_segmentation(marked, alpha, (128, 128, 128), side=320)
    seen = seen._replace(mask=seen.mask * peak)
    ph, pw = seen.mask.shape
    lines = np.zeros((ph, pw), bool)
    lines[top * ph // 600 : (top + 60) * ph // 600 + 1, left * pw // 900 : (left + 260) * pw // 900 + 1] = True

    assert mark.find_marks(seen, marked).empty  # without the detector's lines: a doubted mark, or no blend
    marks = mark.find_marks(seen, marked, lines)
    out = mark.remove(marked, marks)

    if stamp:
        assert marks.fill.any()
        error = np.abs(out[truth].astype(float) - clean[truth]).mean()
        assert error < np.abs(marked[truth].astype(float) - clean[truth]).mean() / 2
    else:
        assert marks.empty and np.array_equal(out, marked)


def test_a_marks_fit_does_not_depend_on_the_other_marks_in_the_image() -> None:
    # The same mark, alone or beside another one: the same colour and opacity, so the same pixels come back.
    clean = _photo(600, 900, seed=17)
    right = np.zeros((600, 900), np.float32)
    right[100:500, 500:900] = _text_alpha(400, 400, 0.5, "MARK", scale=3.0)
    left = np.zeros((600, 900), np.float32)
    left[100:500, :400] = _text_alpha(400, 400, 0.6, "MARK", scale=3.0)
    alone = blend(clean, right, (250, 250, 250))
    both = blend(alone, left, (30, 30, 200))

    def fitted(marked: np.ndarray, alpha: np.ndarray) -> mark.Marks:
        return mark.find_marks(_truth_segmentation(marked, alpha, (128, 128, 128), side=320), marked)

    one, two = fitted(alone, right), fitted(both, np.maximum(left, right))
    pw = one.opacity.shape[1]
    side = np.s_[:, pw // 2 :]
    assert one.count == 1 and two.count == 2
    assert np.array_equal(one.opacity[side], two.opacity[side]) and np.array_equal(one.colour[side], two.colour[side])


@pytest.mark.parametrize("text_found", [False, True])
def test_on_a_greyscale_photo_a_mark_must_be_text_the_detector_finds_too(text_found: bool) -> None:
    # On a grey photo one grey explains any bright object as well as a mark (scikit-image's coins): a sure mark the
    # OCR detector finds no text in is left alone there, and removed where it does.
    grey = cv2.cvtColor(_photo(600, 900, seed=18), cv2.COLOR_RGB2GRAY)
    clean = np.dstack([grey] * 3)
    alpha = _text_alpha(600, 900, opacity=0.5)
    marked = blend(clean, alpha, (255, 255, 255))
    assert np.array_equal(marked[..., 0], marked[..., 2])
    seen = _truth_segmentation(marked, alpha, (255, 255, 255), side=320)
    lines = np.full(seen.mask.shape, text_found)

    out = mark.remove(marked, mark.find_marks(seen, marked, lines))

    truth = alpha > 0.02
    if text_found:
        error = np.abs(out[truth].astype(float) - clean[truth]).mean()
        assert error < np.abs(marked[truth].astype(float) - clean[truth]).mean() / 3
    else:
        assert np.array_equal(out, marked)
    # In colour the blend's fit vouches for the mark, text or not.
    colour = blend(_photo(600, 900, seed=18), alpha, (255, 255, 255))
    assert not mark.find_marks(_truth_segmentation(colour, alpha, (255, 255, 255), side=320), colour, lines).empty
