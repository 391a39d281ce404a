"""Synthesis gives exact, reproducible ground truth; the benchmark's metrics and runner behave on tiny inputs.

Everything here runs on procedural photos, Pillow's built-in font and drawn logos, so no Debian package is needed.
"""

from __future__ import annotations

import importlib.util

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from bot.lab import assets, bench, metrics, report
from bot.lab.layers import procedural_logo
from bot.lab.synth import FAMILIES, MARKED_FAMILIES, MASK_THRESHOLD, UNMARKED_FAMILIES, Sample, synthesize
from tests.watermarks import photo

SIZE = (192, 256)  # (height, width) of the crops: small keeps the module fast
ALPHA_RANGES = {"text": (0.2, 0.85), "tiled": (0.1, 0.4), "logo": (0.3, 0.9), "stamp": (0.85, 1.0)}
SEEDS = range(6)


@pytest.fixture(scope="module")
def base() -> np.ndarray:
    return photo(400, 300, 7)


def draw(base: np.ndarray, family: str, seed: int, **kwargs: object) -> Sample:
    return synthesize(base, family, np.random.default_rng(seed), size=SIZE, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("family", FAMILIES)
def test_the_same_seed_gives_identical_samples(base: np.ndarray, family: str) -> None:
    a, b = draw(base, family, 3), draw(base, family, 3)

    for name in ("marked", "clean", "alpha", "colour"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.meta == b.meta and a.family == b.family == family


@pytest.mark.parametrize("family", FAMILIES)
def test_different_seeds_give_different_samples(base: np.ndarray, family: str) -> None:
    a, b = draw(base, family, 1), draw(base, family, 2)

    assert not np.array_equal(a.marked, b.marked)


@pytest.mark.parametrize("family", MARKED_FAMILIES)
def test_the_marked_image_is_the_blend_of_clean_alpha_and_colour(base: np.ndarray, family: str) -> None:
    for seed in SEEDS:
        s = draw(base, family, seed, jpeg_probability=0.0)
        a = s.alpha[..., None].astype(np.float64)
        blend = (1 - a) * s.clean + a * s.colour

        assert np.abs(s.marked - blend).max() <= 0.5 + 1e-3, f"seed {seed}"


@pytest.mark.parametrize("family", MARKED_FAMILIES)
def test_pixels_outside_the_mark_are_exactly_the_clean_ones(base: np.ndarray, family: str) -> None:
    for seed in SEEDS:
        s = draw(base, family, seed, jpeg_probability=0.0)
        outside = s.alpha == 0

        assert np.array_equal(s.marked[outside], s.clean[outside])
        assert np.all(s.colour[outside] == 0)
        assert s.mask.any(), f"seed {seed}: no mark drawn"


@pytest.mark.parametrize("family", MARKED_FAMILIES)
def test_alpha_stays_in_the_family_range(base: np.ndarray, family: str) -> None:
    low, high = ALPHA_RANGES[family]
    for seed in SEEDS:
        s = draw(base, family, seed)

        assert s.alpha.dtype == np.float32 and s.alpha.shape == SIZE
        assert s.alpha.min() >= 0 and s.alpha.max() <= high + 1e-5
        # Somewhere the mark is at its full opacity (inside a glyph or logo), so at least near the family's floor.
        assert s.alpha.max() >= (0.8 if family == "stamp" else 0.5 * low), f"seed {seed}: the mark is barely there"
        assert s.colour.min() >= 0 and s.colour.max() <= 255


@pytest.mark.parametrize("family", UNMARKED_FAMILIES)
def test_unmarked_families_have_no_alpha_and_ask_for_the_input_back(base: np.ndarray, family: str) -> None:
    for seed in SEEDS:
        s = draw(base, family, seed, jpeg_probability=1.0)

        assert not s.alpha.any() and not s.colour.any()
        assert np.array_equal(s.marked, s.clean)
        assert s.meta["coverage"] == 0.0


def test_signs_draw_scene_text_into_the_clean_photo_itself(base: np.ndarray) -> None:
    kinds = set()
    for seed in SEEDS:
        plain = draw(base, "clean", seed, jpeg_probability=0.0)
        sign = draw(base, "signs", seed, jpeg_probability=0.0)
        changed = np.any(sign.clean != plain.clean, axis=2)

        # Same crop, so only the sign differs: a compact patch of the frame, and the answer keeps it.
        assert 0.002 < changed.mean() < 0.6, f"seed {seed}"
        assert np.array_equal(sign.marked, sign.clean) and not sign.alpha.any()
        kinds.add(sign.meta["sign"]["kind"])  # type: ignore[index]
    assert len(kinds) >= 2


@pytest.mark.parametrize("family", MARKED_FAMILIES)
def test_jpeg_changes_only_the_marked_image_not_the_truth(base: np.ndarray, family: str) -> None:
    raw, jpeg = draw(base, family, 5, jpeg_probability=0.0), draw(base, family, 5, jpeg_probability=1.0)

    assert raw.meta["jpeg"] is None and 60 <= jpeg.meta["jpeg"] <= 95  # type: ignore[operator]
    assert np.array_equal(raw.alpha, jpeg.alpha) and np.array_equal(raw.clean, jpeg.clean)
    assert not np.array_equal(raw.marked, jpeg.marked)


def test_crops_have_the_asked_size_and_leave_the_photo_alone(base: np.ndarray) -> None:
    before = base.copy()

    tall = synthesize(base, "text", np.random.default_rng(0), size=(500, 120))
    whole = synthesize(base, "logo", np.random.default_rng(0))

    assert tall.marked.shape == (500, 120, 3) and tall.marked.dtype == np.uint8
    assert whole.marked.shape == base.shape
    assert np.array_equal(base, before)


def test_fallback_assets_and_logo_arrays_are_used(base: np.ndarray) -> None:
    text = draw(base, "text", 0)
    logo = draw(base, "logo", 0, logos=[procedural_logo(np.random.default_rng(9))])

    assert text.meta["font"] == "pillow-default"
    assert logo.meta["logo"] == "array" and logo.mask.any()
    assert draw(base, "logo", 0).meta["logo"] == "procedural"


def test_bad_input_is_refused(base: np.ndarray) -> None:
    with pytest.raises(ValueError):
        draw(base, "sparkle", 0)
    with pytest.raises(ValueError):
        synthesize(base[..., 0], "text", np.random.default_rng(0))


def test_synthesis_does_not_import_torch() -> None:
    code = "import sys, bot.lab.synth, bot.lab.bench; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_jitter_varies_the_photo_reproducibly_and_keeps_the_truth_exact(base: np.ndarray) -> None:
    plain = draw(base, "text", 4, jpeg_probability=0.0)
    jittered = [draw(base, "text", seed, jpeg_probability=0.0, jitter=True) for seed in SEEDS]

    assert all(np.array_equal(draw(base, "text", 4, jitter=True).marked, draw(base, "text", 4, jitter=True).marked)
               for _ in range(2))
    assert sum(bool(s.meta["jitter"]) for s in jittered) >= 3  # most draws change the photo in some way
    for s in jittered:  # the photo changed, the blend over it is still exact
        a = s.alpha[..., None].astype(np.float64)
        assert np.abs(s.marked - ((1 - a) * s.clean + a * s.colour)).max() <= 0.5 + 1e-3
    assert "jitter" not in plain.meta  # off by default: the benchmark's sets stay as they were


def test_train_val_and_test_assets_never_overlap() -> None:
    for kind in assets.KINDS:
        train, val, test = (set(assets.photos(split, kind)) for split in assets.SPLITS)  # type: ignore[arg-type]
        assert not train & test and not train & val and not val & test, kind
    # Across kinds too: a file (a document's page) is in one split only, whatever kind it is drawn as.
    files = {split: {assets.source_file(p).resolve() for s in assets.photo_sources() if s.split == split
                     for p in s.paths} for split in assets.SPLITS}
    assert not files["train"] & files["val"] and not files["train"] & files["test"]
    assert not files["val"] & files["test"]
    # val's Latin fonts are unseen by training too (its CJK one is the train split's)
    latin = ({f.path for f in assets.fonts(split) if not f.cjk} for split in assets.SPLITS)  # type: ignore[arg-type]
    train, val, test = latin
    assert not train & test and not train & val and not val & test
    assert not set(assets.logos("train")) & set(assets.logos("test"))


def test_no_split_draws_on_the_packages_kept_for_independent_evaluation() -> None:
    import fnmatch
    import shutil

    sources = assets.photo_sources()
    for source in sources:
        assert not any(fnmatch.fnmatch(source.package, r) for r in assets.RESERVED_PACKAGES), source.name
        for path in source.paths:
            assert not str(assets.source_file(path)).startswith(assets.RESERVED_PATHS), path
    files = sorted({str(assets.source_file(p).resolve()) for s in sources for p in s.paths})
    if files and shutil.which("dpkg-query"):
        # Which installed package owns each file (pip's scikit-image owns none): never a reserved one.
        owned = subprocess.run(["dpkg-query", "-S", *files], capture_output=True, text=True).stdout
        owners = {name.strip() for line in owned.splitlines() for name in line.split(":", 1)[0].split(",")}
        reserved = {o for o in owners if any(fnmatch.fnmatch(o.split(":")[0], r) for r in assets.RESERVED_PACKAGES)}
        assert not reserved


@pytest.mark.parametrize("split", ["val", "test"])
def test_every_clean_kind_has_images_in_val_and_test(split: str) -> None:
    counts = {kind: len(assets.photos(split, kind)) for kind in assets.KINDS}  # type: ignore[arg-type]
    if not any(counts.values()):
        pytest.skip("benchmarks/assets.sh has not been run: no photos installed")
    if split == "val" and not counts["grey"]:
        pytest.skip("scikit-image ([train] extra) and opencv-doc bring val's greyscale photos")
    assert all(counts.values()), counts
    # scikit-image (the [train] extra) brings two of val's six real-text photos.
    scenes = 6 if split == "test" or importlib.util.find_spec("skimage") else 4
    assert counts["photo"] >= 14 and counts["scenetext"] >= scenes


def test_the_train_split_has_several_hundred_photos_and_every_kind() -> None:
    counts = {kind: len(assets.photos("train", kind)) for kind in assets.KINDS}
    if not counts["photo"]:
        pytest.skip("benchmarks/assets.sh has not been run: no photos installed")
    assert counts["photo"] >= 300 and all(counts.values()), counts


def test_document_pages_render_and_grey_images_load_grey() -> None:
    pages = assets.photos("val", "document")
    if not pages:
        pytest.skip("no documents installed (benchmarks/assets.sh: debian-refcard, gnuplot-doc, poppler-utils)")
    page = assets.load_photo(pages[0], 500_000, grey=True)
    assert page.dtype == np.uint8 and page.ndim == 3 and page.shape[0] * page.shape[1] <= 1.01 * 500_000
    assert np.array_equal(page[..., 0], page[..., 1]) and np.array_equal(page[..., 1], page[..., 2])
    assert page.std() > 5  # a page with print on it, not a blank


# --- metrics ------------------------------------------------------------------------------------------------------


def test_psnr_of_identical_images_is_the_cap_and_known_errors_give_known_values() -> None:
    a = photo(64, 48, 1)
    b = a.astype(np.int16)
    b[..., 0] += np.where(b[..., 0] < 255, 1, -1).astype(np.int16)  # every red value off by exactly 1
    b = b.astype(np.uint8)

    assert metrics.psnr(a, a) == metrics.PSNR_CAP
    assert metrics.psnr(a, b) == pytest.approx(10 * np.log10(255**2 / (1 / 3)))
    assert metrics.psnr_inside(a, b, np.zeros(a.shape[:2], bool)) is None
    assert metrics.psnr_inside(a, b, np.ones(a.shape[:2], bool)) == pytest.approx(metrics.psnr(a, b))


def test_ssim_is_one_for_identical_images_and_falls_with_noise() -> None:
    a = photo(96, 64, 2)
    noisy = np.clip(a + np.random.default_rng(0).normal(0, 20, a.shape), 0, 255).astype(np.uint8)

    assert metrics.ssim(a, a) == pytest.approx(1.0, abs=1e-9)
    assert 0 < metrics.ssim(a, noisy) < 0.9


def test_iou_precision_and_recall_on_simple_masks() -> None:
    left, right, empty = np.zeros((4, 4), bool), np.zeros((4, 4), bool), np.zeros((4, 4), bool)
    left[:, :2] = True
    right[:, 1:3] = True

    assert metrics.iou(left, left) == 1.0
    assert metrics.iou(left, ~left) == 0.0
    assert metrics.iou(left, right) == pytest.approx(1 / 3)
    assert metrics.iou(empty, empty) == 1.0
    assert metrics.precision_recall(left, right) == (0.5, 0.5)
    assert metrics.precision_recall(empty, right) == (None, 0.0)


def test_unchanged_fraction_counts_bit_exact_pixels() -> None:
    a = photo(10, 10, 3)
    b = a.copy()
    b[0, :5, 2] ^= 1

    assert metrics.unchanged_fraction(a, a) == 1.0
    assert metrics.unchanged_fraction(b, a) == pytest.approx(0.95)


# --- the benchmark runner -----------------------------------------------------------------------------------------


def tiny_cases(n: int) -> list[bench.Case]:
    photos = {f"p{i}": photo(320, 240, 20 + i) for i in range(2)}
    return bench.build_cases(photos, {"s0": photo(200, 150, 30)}, n, seed=1, megapixels=0.03)


def test_the_benchmark_set_is_fixed_and_grows_by_adding_samples() -> None:
    one, two = tiny_cases(1), tiny_cases(2)

    assert [c.sample.family for c in one] == list(bench.FAMILIES)
    assert len(two) == 2 * len(bench.FAMILIES)
    firsts = [c for c in two if c.index == 0]
    for a, b in zip(one, firsts, strict=True):
        assert np.array_equal(a.sample.marked, b.sample.marked) and a.photo == b.photo


def test_clean_images_of_each_kind_get_their_own_row_and_kept_share(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    from PIL import Image

    files: dict[str, tuple[Path, ...]] = {}
    for i, kind in enumerate(bench.NEGATIVE_KINDS):
        files[kind] = (tmp_path / f"{kind}-a.png", tmp_path / f"{kind}-b.png")
        for j, path in enumerate(files[kind]):
            Image.fromarray(photo(120, 90, 40 + 2 * i + j)).save(path)
    monkeypatch.setattr(assets, "photos", lambda split, kind="photo": files.get(kind, ()))

    cases = bench.kind_cases("val", 2, megapixels=0.005)
    again = bench.kind_cases("val", 2, megapixels=0.005)

    assert [c.kind for c in cases] == [k for k in bench.NEGATIVE_KINDS for _ in range(2)]
    assert [c.photo for c in cases[:2]] == ["grey-a.png", "grey-b.png"]  # spread over the kind's files
    assert all(c.sample.family == "clean" and np.array_equal(c.sample.marked, c.sample.clean) for c in cases)
    assert all(np.array_equal(a.sample.marked, b.sample.marked) for a, b in zip(cases, again, strict=True))
    grey = next(c for c in cases if c.kind == "grey").sample.marked.astype(int)
    assert np.abs(grey[..., 0] - grey[..., 2]).max() <= 2  # grey, but for the JPEG round trip's chroma
    assert not any(c.sample.meta["flip"] for c in cases if c.kind in ("screenshot", "document"))

    summary = bench.summarize(bench.run([*tiny_cases(1), *cases], {"noop": bench.METHODS["noop"]}))

    for kind in bench.NEGATIVE_KINDS:
        assert summary[kind]["noop"]["n"] == 2 and summary[kind]["noop"]["kept"] == 1.0
    assert summary["clean"]["noop"]["n"] == 1  # the photos' row keeps photos only
    text = report.table(summary)
    assert "left unchanged, by kind" in text and all(kind in text for kind in bench.NEGATIVE_KINDS)


def test_the_runner_scores_methods_side_by_side(tmp_path: Path) -> None:
    methods = {name: bench.METHODS[name] for name in ("noop", "oracle_telea")}

    results = bench.run(tiny_cases(1), methods, keep=1)
    summary = bench.summarize(results)

    marked, unmarked = summary["all marked"], summary["all unmarked"]
    assert marked["noop"]["iou"] == 0.0 and marked["noop"]["unchanged"] == 1.0
    assert marked["oracle_telea"]["recall"] > 0.99  # it repaints the whole true mask (a fill may equal the input)
    assert marked["oracle_telea"]["psnr_w"] > marked["noop"]["psnr_w"]  # type: ignore[operator]
    assert unmarked["oracle_telea"]["touched"] == 0 and unmarked["noop"]["psnr"] == metrics.PSNR_CAP
    text = report.table(summary)
    assert all(family in text for family in bench.FAMILIES) and "oracle_telea" in text
    assert report.grid(tmp_path / "grid.png", results) == len(bench.FAMILIES)
    report.write_json(tmp_path / "engine.json", results, summary, {"n": 1})
    assert (tmp_path / "engine.json").stat().st_size > 0


def test_the_oracle_changes_only_pixels_near_the_true_mark(base: np.ndarray) -> None:
    s = draw(base, "tiled", 4, jpeg_probability=0.0)

    out = bench.METHODS["oracle_telea"]()(s)

    near = cv2.dilate(s.mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)  # 2 px each way
    touched = metrics.changed(out, s.marked)
    assert touched.any() and not (touched & ~near).any()
    assert np.array_equal(s.mask, s.alpha > MASK_THRESHOLD)


def test_the_backdrop_set_puts_the_marks_on_plain_grounds() -> None:
    one, again = bench.backdrop_set(1, megapixels=0.05), bench.backdrop_set(1, megapixels=0.05)

    assert [c.sample.family for c in one] == list(MARKED_FAMILIES)  # nothing to leave alone on a plain ground
    for case, same in zip(one, again, strict=True):
        assert case.photo in bench.BACKDROPS and np.array_equal(case.sample.marked, same.sample.marked)
        ground = case.sample.clean.astype(np.float32)
        assert np.abs(ground - cv2.GaussianBlur(ground, (0, 0), 2.0)).mean() < 2  # no texture to hide a mark in
        assert case.sample.mask.any()


def test_each_set_and_size_writes_its_own_result_files(tmp_path: Path) -> None:
    names = {report.outputs(tmp_path, mp, split)[0].name for mp in (1.0, 12.0) for split in ("test", "val")}

    assert names == {"engine.json", "engine-12mp.json", "engine-val.json", "engine-12mp-val.json"}
    assert report.outputs(tmp_path, 1.0, "val", "backdrops")[0].name == "engine-val-backdrops.json"
    assert report.outputs(tmp_path)[1] == tmp_path / "engine-grid.png"


def test_the_cli_offers_every_set_the_benchmark_builds() -> None:
    from bot.cli import bench_engine

    # The CLI names the sets itself (it imports the engine only when a command runs), so they must not drift.
    choices = next(p.type.choices for p in bench_engine.params if p.name == "on")
    assert list(choices) == list(bench.SETS)


@pytest.mark.parametrize(("split", "on"), [("test", "photos"), ("val", "photos"), ("val", "signs")])
def test_a_missing_photo_set_is_one_plain_sentence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   split: str, on: str) -> None:
    from click.testing import CliRunner

    from bot.cli import main

    monkeypatch.setattr(assets, "photos", lambda *_: ())  # as on a machine without benchmarks/assets.sh

    result = CliRunner().invoke(main, ["bench", "engine", "--quick", "--split", split, "--on", on,
                                       "--out", str(tmp_path)])

    assert result.exit_code == 2
    assert result.stderr == f"unmark: the benchmark's {split} photos are not installed: run benchmarks/assets.sh\n"
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(("arguments", "expected"), [
    ([], 12), (["--split", "val"], 36), (["--split", "val", "--on", "signs"], 24),
    (["--split", "val", "--on", "backdrops"], 12), (["--split", "val", "--quick"], 2),
    (["--split", "val", "--n", "5"], 5),
])
def test_the_benchmark_draws_as_many_images_as_its_figures_were_made_with(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, arguments: list[str], expected: int) -> None:
    from click.testing import CliRunner

    from bot.cli import main

    asked: list[int] = []

    def building(n: int, **_: object) -> list[bench.Case]:
        asked.append(n)
        raise FileNotFoundError("not installed")  # stop before anything runs

    for on in bench.SETS:
        monkeypatch.setitem(bench.SETS, on, building)

    result = CliRunner().invoke(main, ["bench", "engine", *arguments, "--out", str(tmp_path)])

    assert result.exit_code == 2
    assert asked == [expected]  # val settings are chosen on 36 photos a family; the held-out table has 12
