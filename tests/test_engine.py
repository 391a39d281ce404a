"""The local engines on synthesised photos.

MarkEngine (what the bot uses: the segmenter, un-blending, then the text engine's pass) removes marks and leaves
everything else bit-exact. TextEngine, the first engine and now MarkEngine's last pass, shares its contract
`clean(rgb, progress) -> rgb`; the tests that check the contract rather than the quality of removal run on both,
and the un-blending is tested on known masks in tests/test_unblend.py.
"""

from __future__ import annotations

import io
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw

from bot.engine import mark, text
from bot.engine.mark import FINDER, SEGMENTER, MarkEngine
from bot.engine.text import DEFAULT_MODEL, TextEngine
from bot.errors import EngineBroken, RemovalFailed
from tests.watermarks import add_text_watermark, encode, photo, text_font

FAR = 30  # px at about 1 MP: pixels further than this from the true mark must come back untouched
FAR_PER_PX = FAR / 1200  # the same distance relative to the long side, for bigger images


Engine = MarkEngine | TextEngine
LOADERS = {"mark": MarkEngine.load, "text": TextEngine.load}


@pytest.fixture(scope="module")
def engine() -> MarkEngine:
    """The bot's engine, one for the module: loading costs about 0.2 s, but there is no need to pay it per test."""
    return MarkEngine.load()


@pytest.fixture(scope="module")
def text_engine() -> TextEngine:
    """The text engine alone, for its pass after the network."""
    return TextEngine.load()


@pytest.fixture(scope="module", params=list(LOADERS))
def any_engine(request: pytest.FixtureRequest) -> Engine:
    """Each engine, for the tests of the contract they share."""
    return LOADERS[request.param]()


def mae_inside(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Mean absolute difference of two RGB images over the pixels of mask."""
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16))[mask].mean())


def far_from(mask: np.ndarray, distance: int) -> np.ndarray:
    """Pixels more than distance px away from any pixel of mask."""
    size = 2 * distance + 1
    return cv2.dilate(mask.astype(np.uint8), np.ones((size, size), np.uint8)) == 0


def test_default_model_is_found_without_importing_rapidocr() -> None:
    assert DEFAULT_MODEL.is_file()
    assert DEFAULT_MODEL.name == "ch_PP-OCRv4_det_infer.onnx"
    code = "import sys, bot.engine; print('rapidocr_onnxruntime' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("text", "alpha", "colour", "size", "seed"),
    [
        ("SAMPLE", 0.6, (255, 255, 255), 1.0, 10),
        ("© Photo Studio", 0.45, (0, 0, 0), 0.5, 11),
        ("watermark", 0.7, (255, 200, 0), 0.3, 12),
    ],
)
def test_removes_a_text_watermark(
    engine: MarkEngine, text: str, alpha: float, colour: tuple[int, int, int], size: float, seed: int
) -> None:
    clean = photo(1200, 800, seed)
    marked, mask = add_text_watermark(clean, text, alpha, colour, seed, size_fraction=size)

    out = engine.clean(marked)

    assert out.shape == marked.shape and out.dtype == np.uint8
    before, after = mae_inside(marked, clean, mask), mae_inside(out, clean, mask)
    assert after <= before / 2, f"error inside the mark only went from {before:.1f} to {after:.1f}"
    changed = np.any(out != marked, axis=2)
    assert np.count_nonzero(changed & mask) >= 0.9 * np.count_nonzero(mask)


def test_pixels_away_from_the_mark_are_bit_exact(engine: MarkEngine) -> None:
    clean = photo(1200, 800, 21)
    marked, mask = add_text_watermark(clean, "SAMPLE", 0.6, seed=21)
    before = marked.copy()

    out = engine.clean(marked)

    far = far_from(mask, FAR)
    assert np.array_equal(out[far], marked[far])
    assert np.array_equal(marked, before), "the input must not be modified"
    assert not np.shares_memory(out, marked)


@pytest.mark.parametrize("seed", [0, 1, 4])
def test_a_photo_without_text_comes_back_unchanged(engine: MarkEngine, seed: int) -> None:
    clean = photo(1000, 700, seed)

    out = engine.clean(clean)

    assert np.array_equal(out, clean)
    assert out is not clean and not np.shares_memory(out, clean)


def test_a_recompressed_jpeg_mark_is_still_removed(engine: MarkEngine) -> None:
    clean = photo(1200, 800, 31)
    marked, mask = add_text_watermark(clean, "SAMPLE", 0.5, seed=31)
    decoded = np.asarray(Image.open(io.BytesIO(encode(marked, "jpeg", quality=80))).convert("RGB"))

    out = engine.clean(decoded)

    assert mae_inside(out, clean, mask) <= mae_inside(decoded, clean, mask) / 2
    far = far_from(mask, FAR)
    assert np.array_equal(out[far], decoded[far])


def test_the_text_pass_keeps_lines_another_engine_cleaned_and_redoes_the_others(text_engine: TextEngine) -> None:
    clean = photo(1200, 800, 51)
    marked, mask = add_text_watermark(clean, "SAMPLE", 0.6, seed=51)
    restored = marked.copy()
    restored[mask] = clean[mask]  # as if the mark engine had un-blended this line

    assert np.array_equal(text_engine.clean(marked, after=restored.copy()), restored)
    # Where the other engine changed nothing, the line is filled as without it.
    alone = text_engine.clean(marked)
    assert np.array_equal(text_engine.clean(marked, after=marked.copy()), alone)
    assert mae_inside(alone, clean, mask) <= mae_inside(marked, clean, mask) / 2
    # Where it only began (the first letter or so), the line is redone whole.
    begun = marked.copy()
    ys, xs = np.nonzero(mask)
    first = xs < xs.min() + (xs.max() - xs.min()) // 5
    begun[ys[first], xs[first]] = clean[ys[first], xs[first]]
    assert mae_inside(text_engine.clean(marked, after=begun), clean, mask) <= mae_inside(marked, clean, mask) / 2
    # Where it changed the whole line but the text still shows (it missed an outline, a shadow), it is redone too.
    shown = marked.copy()
    shown[mask] ^= 1
    assert mae_inside(text_engine.clean(marked, after=shown), clean, mask) <= mae_inside(marked, clean, mask) / 2


def test_the_text_pass_fills_only_text_the_other_detector_believes_is_a_mark(text_engine: TextEngine) -> None:
    clean = photo(1200, 800, 52)
    marked, mask = add_text_watermark(clean, "SAMPLE", 0.6, seed=52)
    doubted = np.zeros(marked.shape[:2], np.float32)  # e.g. scene text the segmenter has learnt is no mark
    believed = np.where(mask, 0.47, 0).astype(np.float32)  # about half sure on the letters, of nothing around

    def window(plane: np.ndarray):  # type: ignore[no-untyped-def]
        return lambda y, x, h, w: plane[y : y + h, x : x + w]

    assert np.array_equal(text_engine.clean(marked, after=marked.copy(), belief=window(doubted)), marked)
    out = text_engine.clean(marked, after=marked.copy(), belief=window(believed))
    assert mae_inside(out, clean, mask) <= mae_inside(marked, clean, mask) / 2


def test_the_text_pass_leaves_believed_words_on_a_flat_surface_alone(text_engine: TextEngine) -> None:
    # A sign: a word on a flat panel in the photo, believed as much as the mark the test above fills. Scene text
    # lies on a surface of its own; a mark lies over the photo, whose grain shows around its letters.
    clean = photo(1200, 800, 55)
    sign = Image.fromarray(clean)
    draw = ImageDraw.Draw(sign)
    draw.rectangle((250, 300, 950, 480), fill=(30, 80, 150))
    draw.text((300, 330), "SAMPLE", font=text_font(110), fill=(245, 245, 245))
    scene = np.asarray(sign).copy()
    letters = np.all(scene > 200, axis=2) & (np.arange(800)[:, None] >= 300)
    believed = np.where(letters, 0.47, 0).astype(np.float32)
    window = lambda y, x, h, w: believed[y : y + h, x : x + w]

    assert np.array_equal(text_engine.clean(scene, after=scene.copy(), belief=window), scene)


def test_the_text_pass_fills_believed_words_on_a_flat_backdrop(text_engine: TextEngine) -> None:
    # The same word, believed as much, see-through on a clear sky: as flat around its letters as the sign above,
    # but the flat goes on beyond it (no panel's edge), which is where marks are put as often as anywhere.
    rng = np.random.default_rng(56)
    sky = np.linspace((70, 130, 205), (150, 190, 235), 800)[:, None, :] + rng.normal(0, 1.5, (800, 1200, 3))
    clean = np.clip(sky, 0, 255).astype(np.uint8)
    cover = Image.new("L", (1200, 800), 0)
    ImageDraw.Draw(cover).text((300, 330), "SAMPLE", font=text_font(110), fill=255)
    a = np.asarray(cover, np.float32)[..., None] / 255 * 0.6
    marked = np.clip(np.rint(clean * (1 - a) + 255 * a), 0, 255).astype(np.uint8)
    mask = a[..., 0] > 0.05
    believed = np.where(mask, 0.47, 0).astype(np.float32)
    window = lambda y, x, h, w: believed[y : y + h, x : x + w]

    out = text_engine.clean(marked, after=marked.copy(), belief=window)

    assert mae_inside(out, clean, mask) <= mae_inside(marked, clean, mask) / 2


def textured_photo(height: int, width: int, seed: int) -> np.ndarray:
    """A photo with fine texture throughout (gradients under grain of 12 levels): what a fill across a stroke
    cannot guess, so inpainting a see-through line smears over it."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([96 + 60 * np.sin(x / 37), 128 + 50 * np.cos(y / 23), 80 + 40 * np.sin((x + y) / 51)], -1)
    return np.clip(base + rng.normal(0, 12, (height, width, 3)), 0, 255).astype(np.uint8)


def psnr_inside(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    error = (a.astype(np.float64) - b.astype(np.float64))[mask]
    return float(10 * np.log10(255**2 / np.mean(error**2)))


@pytest.mark.parametrize(("colour", "alpha", "floor", "gain"),
                         [((255, 255, 255), 0.4, 30, 6), ((200, 200, 200), 0.5, 26, 3)])
def test_the_text_pass_un_blends_a_see_through_line(text_engine: TextEngine, monkeypatch: pytest.MonkeyPatch,
                                                    colour: tuple[int, int, int], alpha: float, floor: float,
                                                    gain: float) -> None:
    # White or grey text at 40-50 % over a textured photo: inverting its one-colour blend brings the photo back,
    # where inpainting its letters (the text pass before un-blending) invents smears. Grey is harder: where the
    # photo is about as grey, the mark can hardly be told from it (and is hardly seen either).
    clean = textured_photo(800, 1200, 61)
    marked, mask = add_text_watermark(clean, "SAMPLE PHOTO", alpha, colour, seed=61)

    out = text_engine.clean(marked)
    monkeypatch.setattr(text, "UNBLEND", False)
    inpainted = text_engine.clean(marked)

    assert psnr_inside(out, clean, mask) >= floor
    assert psnr_inside(out, clean, mask) >= psnr_inside(inpainted, clean, mask) + gain
    far = far_from(mask, FAR)
    assert np.array_equal(out[far], marked[far])


def test_the_text_pass_still_inpaints_an_opaque_line(text_engine: TextEngine, monkeypatch: pytest.MonkeyPatch
                                                    ) -> None:
    # Opaque text hides the photo under it: nothing to un-blend, so its ink is inpainted exactly as before.
    clean = textured_photo(800, 1200, 62)
    marked, mask = add_text_watermark(clean, "SAMPLE PHOTO", 1.0, seed=62)

    out = text_engine.clean(marked)
    monkeypatch.setattr(text, "UNBLEND", False)

    assert np.array_equal(out, text_engine.clean(marked))
    assert np.any(out != marked, axis=2)[mask].mean() > 0.9
    assert mae_inside(out, clean, mask) <= mae_inside(marked, clean, mask) / 2


def page_of_text(lines: int, seed: int) -> np.ndarray:
    """A photographed page: dark lines of text on light, slightly uneven paper."""
    rng = np.random.default_rng(seed)
    paper = np.clip(225 + rng.normal(0, 4, (800, 1200, 1)) + np.linspace(-12, 12, 1200)[None, :, None], 0, 255)
    page = Image.fromarray(np.repeat(paper, 3, axis=2).astype(np.uint8))
    draw = ImageDraw.Draw(page)
    font = text_font(44)
    words = ["invoice", "total", "paid", "amount", "number", "date", "account", "balance", "order", "terms"]
    for line in range(lines):
        draw.text((60, 40 + line * 80), " ".join(rng.choice(words, 4)), font=font, fill=(30, 30, 40))
    return np.asarray(page)


def tiled_mark(clean: np.ndarray, rows: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """A see-through white word repeated over the photo, rows x 3 times; (marked, true mask)."""
    h, w = clean.shape[:2]
    cover = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(cover)
    for row in range(rows):
        for column in range(3):
            draw.text((40 + column * w // 3, 30 + row * h // rows), "PROOF", font=text_font(48), fill=255)
    a = np.asarray(cover, np.float32)[..., None] / 255 * alpha
    marked = np.clip(np.rint(clean * (1 - a) + 255 * a), 0, 255).astype(np.uint8)
    return marked, a[..., 0] > 0


def test_the_text_pass_leaves_a_page_of_text_alone(text_engine: TextEngine, monkeypatch: pytest.MonkeyPatch
                                                  ) -> None:
    # The other detector believes all of it is a mark (documents fool it), but a mark is a line or two:
    # a picture with many lines of opaque text is a page, and its text is what the person sent.
    sure = lambda y, x, h, w: np.ones((h, w), np.float32)
    page = page_of_text(9, 53)
    assert np.array_equal(text_engine.clean(page, after=page.copy(), belief=sure), page)
    # Two lines on the same paper are left alone too: they lie on a flat surface of their own.
    note = page_of_text(2, 53)
    assert np.array_equal(text_engine.clean(note, after=note.copy(), belief=sure), note)
    # Without that rule the two lines are filled and the page is not: it is the count of lines that keeps a page.
    monkeypatch.setattr(text, "MIN_TEXTURE", 0.0)
    assert np.count_nonzero(np.any(text_engine.clean(note, after=note.copy(), belief=sure) != note, axis=2)) > 5000
    assert np.array_equal(text_engine.clean(page, after=page.copy(), belief=sure), page)
    # As many lines of a see-through word are a tiled mark, and are filled.
    clean = photo(1200, 800, 54)
    marked, mask = tiled_mark(clean, 4, 0.35)
    out = text_engine.clean(marked, after=marked.copy(), belief=sure)
    assert mae_inside(out, clean, mask) <= mae_inside(marked, clean, mask) / 2


def test_progress_rises_to_100(any_engine: Engine) -> None:
    clean = photo(800, 600, 41)
    marked, _ = add_text_watermark(clean, "SAMPLE", 0.6, seed=41)
    for image in (marked, clean):
        seen: list[int] = []
        any_engine.clean(image, progress=seen.append)
        assert len(seen) >= 3
        assert all(isinstance(p, int) and 0 <= p <= 100 for p in seen)
        assert seen == sorted(set(seen)), f"not strictly increasing: {seen}"
        assert seen[-1] == 100


def test_a_large_image_keeps_its_shape(engine: MarkEngine) -> None:
    clean = photo(6000, 4000, 51)
    marked, mask = add_text_watermark(clean, "SAMPLE", 0.6, seed=51)
    del clean

    out = engine.clean(marked)

    assert out.shape == (4000, 6000, 3) and out.dtype == np.uint8
    changed = np.any(out != marked, axis=2)
    assert np.count_nonzero(changed & mask) >= 0.9 * np.count_nonzero(mask)
    # The mark is as big relative to the frame as at 1 MP, so "far" is too. Far from it the network may still take a
    # speck of this made-up photo for a mark (here one of 35 x 37 px): never more than 0.01 % of the frame.
    assert np.count_nonzero(changed & far_from(mask, round(6000 * FAR_PER_PX))) <= 1e-4 * changed.size


@pytest.mark.parametrize(("width", "height"), [(20, 20), (20, 10000), (10000, 20), (33, 47)])
def test_extreme_sizes_work(any_engine: Engine, width: int, height: int) -> None:
    image = photo(width, height, 61)

    out = any_engine.clean(image)

    assert out.shape == (height, width, 3)


def test_non_contiguous_input_is_accepted(engine: MarkEngine) -> None:
    clean = photo(900, 600, 71)
    marked, mask = add_text_watermark(clean, "SAMPLE", 0.6, seed=71)
    flipped = marked[:, ::-1]  # a view with a negative stride

    out = engine.clean(flipped)

    assert mae_inside(out[:, ::-1], clean, mask) <= mae_inside(marked, clean, mask) / 2


def test_two_threads_get_the_same_answer_as_one(any_engine: Engine) -> None:
    images = [add_text_watermark(photo(800, 600, s), "SAMPLE", 0.6, seed=s)[0] for s in (81, 82)]
    expected = [any_engine.clean(image) for image in images]

    with ThreadPoolExecutor(max_workers=2) as pool:
        got = list(pool.map(any_engine.clean, images))

    assert all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((10, 10), np.uint8),
        np.zeros((10, 10, 4), np.uint8),
        np.zeros((10, 10, 3), np.float32),
    ],
)
def test_wrong_arrays_are_refused(any_engine: Engine, bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        any_engine.clean(bad)


def test_both_networks_ship_with_the_package_and_their_notes() -> None:
    import json

    assert mark.DEFAULT_MODEL == FINDER  # v2 is what the bot uses; v1 stays for the benchmark
    for path in (FINDER, SEGMENTER):
        note = json.loads(path.with_suffix(".json").read_text())
        assert path.is_file() and path.stat().st_size <= 20_000_000
        assert note["params"] <= 4_000_000
        assert {"data", "config", "steps", "machine"} <= set(note)
    assert json.loads(FINDER.with_suffix(".json").read_text())["pretrained"]["licence"] == "Apache-2.0"


@pytest.mark.parametrize("load", LOADERS.values(), ids=list(LOADERS))
def test_a_missing_model_is_engine_broken(tmp_path: Path, load) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(EngineBroken) as info:
        load(tmp_path / "nope.onnx")
    assert "not found" in info.value.detail
    assert isinstance(info.value, RemovalFailed) and info.value.code == "engine_broken"


@pytest.mark.parametrize("load", LOADERS.values(), ids=list(LOADERS))
@pytest.mark.parametrize("content", [b"", b"this is not an onnx model" * 100, bytes(range(256)) * 64])
def test_a_corrupt_model_is_engine_broken(tmp_path: Path, content: bytes, load) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "x.onnx"
    path.write_bytes(content)

    with pytest.raises(EngineBroken) as info:
        load(path, threads=1)
    assert str(path) in info.value.detail


def test_a_truncated_segmenter_is_engine_broken(tmp_path: Path) -> None:
    path = tmp_path / "segmenter.onnx"
    path.write_bytes(FINDER.read_bytes()[: FINDER.stat().st_size // 2])

    with pytest.raises(EngineBroken, match="cannot load"):
        MarkEngine.load(path)


@pytest.mark.parametrize("load", LOADERS.values(), ids=list(LOADERS))
def test_a_directory_is_not_a_model(tmp_path: Path, load) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(EngineBroken):
        load(tmp_path)


def test_photo_is_deterministic_and_encode_round_trips() -> None:
    a, b, c = photo(300, 200, 5), photo(300, 200, 5), photo(300, 200, 6)
    assert a.shape == (200, 300, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(encode(a, "png")))), a)
    assert encode(a, "jpeg")[:3] == b"\xff\xd8\xff"
    marked, mask = add_text_watermark(a, seed=5)
    assert mask.any() and np.array_equal(marked[~mask], a[~mask])
