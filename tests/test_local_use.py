"""The first hour of a person at their own terminal (issue 28): `unmark clean` and the shell chat, run as a
subprocess on real files, reading what they print and what they leave in the output folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import PIL.Image

from bot import messages
from tests.conftest import KEY, jpeg, marked
from tests.fakes.picwish import FakePicWish
from tests.fakes.servers import serve
from tests.test_cli import unmark
from tests.watermarks import add_text_watermark


async def test_two_inputs_with_one_name_give_two_results_and_each_line_says_where(tmp_path: Path) -> None:
    for folder, seed in (("a", 1), ("b", 2)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "photo.jpg").write_bytes(marked(320, 240, seed=seed, fmt="jpeg"))

    status, out, err = await unmark("clean", "a/photo.jpg", "b/photo.jpg", "--out", "o")

    assert status == 0, err
    first, second = out.strip().splitlines()
    assert first.startswith("a/photo.jpg: ") and first.endswith("Saved o/photo-clean.jpg")
    assert second.startswith("b/photo.jpg: ") and second.endswith("Saved o/photo-clean-2.jpg")
    assert sorted(path.name for path in (tmp_path / "o").iterdir()) == ["photo-clean-2.jpg", "photo-clean.jpg"]


async def test_an_existing_result_is_kept_unless_overwrite_is_given(tmp_path: Path) -> None:
    (tmp_path / "photo.jpg").write_bytes(marked(320, 240, seed=0, fmt="jpeg"))
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "photo-clean.jpg").write_bytes(b"my own file")

    status, out, err = await unmark("clean", "photo.jpg", "--out", "o")
    assert status == 0, err
    assert out.strip().endswith("Saved o/photo-clean-2.jpg")
    assert (tmp_path / "o" / "photo-clean.jpg").read_bytes() == b"my own file"

    status, out, err = await unmark("clean", "photo.jpg", "--out", "o", "--overwrite")
    assert status == 0, err
    assert out.strip().endswith("Saved o/photo-clean.jpg")
    assert (tmp_path / "o" / "photo-clean.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
    assert sorted(path.name for path in (tmp_path / "o").iterdir()) == ["photo-clean-2.jpg", "photo-clean.jpg"]


async def test_the_shell_never_writes_over_an_earlier_result(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "photo.jpg").write_bytes(marked(320, 240, seed=1, fmt="jpeg"))
    (tmp_path / "photo.jpg").write_bytes(marked(320, 240, seed=2, fmt="jpeg"))

    status, out, err = await unmark("run", "--out", "o", stdin=b"a/photo.jpg\nphoto.jpg\n")

    assert status == 0, err
    saved = [line.rpartition("Saved ")[2] for line in out.splitlines() if "Saved " in line]
    assert saved == ["o/photo-clean.jpg", "o/photo-clean-2.jpg"]


async def test_the_terminal_has_no_daily_limit(tmp_path: Path) -> None:
    for seed in range(3):
        (tmp_path / f"{seed}.jpg").write_bytes(marked(320, 240, seed=seed, fmt="jpeg"))

    status, out, err = await unmark("clean", "0.jpg", "1.jpg", "2.jpg", env={"UNMARK_DAILY_LIMIT": "2"})

    assert status == 0, err
    assert [line.rpartition("Saved ")[2] for line in out.strip().splitlines()] == [
        "unmark-out/0-clean.jpg", "unmark-out/1-clean.jpg", "unmark-out/2-clean.jpg"]
    status, out, err = await unmark("run", stdin=b"/usage\n", env={"UNMARK_DAILY_LIMIT": "2"})
    assert status == 0, err
    assert "Images cleaned today: 0; no daily limit applies here." in out


async def test_typos_and_text_files_are_recorded_but_not_held_against_the_success_rate(tmp_path: Path) -> None:
    (tmp_path / "good.jpg").write_bytes(marked(320, 240, seed=0, fmt="jpeg"))
    (tmp_path / "notes.txt").write_text("not an image")
    piped = b"good.jpg\nmissing.jpg\nnotes.txt\ngod.jpg\n/usage\n"

    status, out, err = await unmark("run", stdin=piped)

    assert status == 0, err
    [usage] = [line for line in out.splitlines() if line.startswith("Images cleaned today")]
    assert usage.startswith("Images cleaned today: 1; no daily limit applies here. Last 30 days: 1; all time: 1. "
                            "Success rate 100% of the images I tried to clean")
    status, out, _ = await unmark("usage", "--json")
    [row] = json.loads(out)
    assert (row["all_time"], row["failed"], row["refused"], row["success_rate"]) == (1, 0, 3, 1.0)


async def test_the_shell_takes_quoted_escaped_home_and_file_url_paths(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    for name, seed in (("rocket.jpg", 1), ("my photo.jpg", 2), ("home.jpg", 3), ("url photo.jpg", 4)):
        (tmp_path / "x" / name).write_bytes(marked(320, 240, seed=seed, fmt="jpeg"))
    pasted = [
        f"'{tmp_path}/x/rocket.jpg'",  # as a terminal pastes a dragged file
        f"{tmp_path}/x/my\\ photo.jpg",  # as another escapes it
        "~/x/home.jpg",
        f"file://{tmp_path}/x/url%20photo.jpg",
    ]

    status, out, err = await unmark("run", "--out", "o", stdin="\n".join(pasted).encode() + b"\n",
                                    env={"HOME": str(tmp_path)})

    assert status == 0, err
    assert "I can't read" not in out
    assert sorted(path.name for path in (tmp_path / "o").iterdir()) == [
        "home-clean.jpg", "my photo-clean.jpg", "rocket-clean.jpg", "url photo-clean.jpg"]


async def test_piped_output_is_one_line_per_image(tmp_path: Path) -> None:
    for seed in range(2):
        (tmp_path / f"{seed}.jpg").write_bytes(marked(320, 240, seed=seed, fmt="jpeg"))

    status, out, err = await unmark("run", "--out", "cleaned", stdin=b"0.jpg\n1.jpg\n")

    assert status == 0, err
    hint, help_, *answers = out.splitlines()
    assert (hint, help_) == (messages.SHELL_HINT, messages.SHELL_HELP)
    assert len(answers) == 2 and all(line.startswith("Watermark removed in ") for line in answers)
    # `unmark clean` on one image writes its status to stderr; into a pipe, none of it.
    status, out, err = await unmark("clean", "0.jpg")
    assert status == 0 and messages.WORKING not in err and len(out.splitlines()) == 1


async def test_clean_with_a_rejected_key_tells_the_operator_what_to_fix(tmp_path: Path) -> None:
    (tmp_path / "photo.jpg").write_bytes(jpeg(320, 240))
    fake = FakePicWish(keys={KEY})
    async with serve(fake.app) as url:
        status, out, _ = await unmark("clean", "photo.jpg", env={"PICWISH_API_KEY": "wrong-key", "PICWISH_API_URL": url})

    assert status == 1
    assert out.strip() == ("photo.jpg: PicWish rejected the API key (HTTP 401). Check PICWISH_API_KEY, or unset it "
                           "to use the built-in engine.")
    assert "operator" not in out


def _grey(width: int, height: int, *, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    return np.clip(x * 200 / width + y * 40 / height + rng.normal(0, 6, (height, width)), 0, 255)


async def test_greyscale_palette_and_16_bit_images_come_back_in_their_own_mode(tmp_path: Path) -> None:
    grey = np.asarray(PIL.Image.fromarray(_grey(320, 240).astype(np.uint8), "L"))
    marked_grey = PIL.Image.fromarray(add_text_watermark(np.repeat(grey[..., None], 3, 2), text="SAMPLE", alpha=0.6,
                                                         seed=1)[0]).convert("L")
    marked_grey.save(tmp_path / "grey.png")
    marked_grey.quantize(64).save(tmp_path / "palette.png")
    # Its top 8 bits are the marked picture (what the engine sees); the low 8 are noise that must survive.
    wide = np.asarray(marked_grey).astype(np.uint16) * 256 + (_grey(320, 240, seed=2) % 256).astype(np.uint16)
    PIL.Image.fromarray(wide).save(tmp_path / "wide.png")

    status, out, err = await unmark("clean", "grey.png", "palette.png", "wide.png")

    assert status == 0, err
    assert out.count("Watermark removed in ") == 3, out
    results = {name: PIL.Image.open(tmp_path / "unmark-out" / f"{name}-clean.png")
               for name in ("grey", "palette", "wide")}
    assert {name: result.mode for name, result in results.items()} == {"grey": "L", "palette": "P", "wide": "I;16"}
    assert (tmp_path / "unmark-out" / "grey-clean.png").stat().st_size < 1.2 * (tmp_path / "grey.png").stat().st_size
    # What the engine leaves alone is kept exactly, all 16 bits of it.
    kept = np.asarray(results["grey"]) == np.asarray(marked_grey)
    assert 0.5 < kept.mean() < 1
    assert np.array_equal(np.asarray(results["wide"])[kept], wide[kept])


async def test_an_image_without_a_watermark_is_left_as_it_is_and_said_so(tmp_path: Path) -> None:
    (tmp_path / "holiday.jpg").write_bytes(jpeg(640, 480, seed=5))
    (tmp_path / "marked.png").write_bytes(marked())

    status, out, err = await unmark("clean", "holiday.jpg", "marked.png", "--out", "o")

    assert status == 0, err  # nothing to remove is an answer, not a failure
    first, second = out.strip().splitlines()
    assert first == f"holiday.jpg: {messages.NO_WATERMARK}"
    assert second.startswith("marked.png: Watermark removed in ") and second.endswith("Saved o/marked-clean.png")
    assert [path.name for path in (tmp_path / "o").iterdir()] == ["marked-clean.png"]  # no copy of the clean one
    # The shell chat says the same, in the same words.
    status, out, err = await unmark("run", "--out", "o", stdin=b"holiday.jpg\n")
    assert status == 0, err
    assert messages.NO_WATERMARK in out.splitlines()
    assert [path.name for path in (tmp_path / "o").iterdir()] == ["marked-clean.png"]
