"""The first hour of a person at their own terminal (issue 28): `unmark clean` and the shell chat, run as a
subprocess on real files, reading what they print and what they leave in the output folder."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import jpeg
from tests.test_cli import unmark


async def test_two_inputs_with_one_name_give_two_results_and_each_line_says_where(tmp_path: Path) -> None:
    for folder, seed in (("a", 1), ("b", 2)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "photo.jpg").write_bytes(jpeg(160, 120, seed=seed))

    status, out, err = await unmark("clean", "a/photo.jpg", "b/photo.jpg", "--out", "o")

    assert status == 0, err
    first, second = out.strip().splitlines()
    assert first.startswith("a/photo.jpg: ") and first.endswith("Saved o/photo-clean.jpg")
    assert second.startswith("b/photo.jpg: ") and second.endswith("Saved o/photo-clean-2.jpg")
    assert sorted(path.name for path in (tmp_path / "o").iterdir()) == ["photo-clean-2.jpg", "photo-clean.jpg"]


async def test_an_existing_result_is_kept_unless_overwrite_is_given(tmp_path: Path) -> None:
    (tmp_path / "photo.jpg").write_bytes(jpeg(160, 120))
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
    (tmp_path / "a" / "photo.jpg").write_bytes(jpeg(160, 120, seed=1))
    (tmp_path / "photo.jpg").write_bytes(jpeg(160, 120, seed=2))

    status, out, err = await unmark("run", "--out", "o", stdin=b"a/photo.jpg\nphoto.jpg\n")

    assert status == 0, err
    saved = [line.rpartition("Saved ")[2] for line in out.splitlines() if "Saved " in line]
    assert saved == ["o/photo-clean.jpg", "o/photo-clean-2.jpg"]


async def test_the_terminal_has_no_daily_limit(tmp_path: Path) -> None:
    for seed in range(3):
        (tmp_path / f"{seed}.jpg").write_bytes(jpeg(120, 90, seed=seed))

    status, out, err = await unmark("clean", "0.jpg", "1.jpg", "2.jpg", env={"UNMARK_DAILY_LIMIT": "2"})

    assert status == 0, err
    assert [line.rpartition("Saved ")[2] for line in out.strip().splitlines()] == [
        "unmark-out/0-clean.jpg", "unmark-out/1-clean.jpg", "unmark-out/2-clean.jpg"]
    status, out, err = await unmark("run", stdin=b"/usage\n", env={"UNMARK_DAILY_LIMIT": "2"})
    assert status == 0, err
    assert "Images cleaned today: 0; no daily limit applies here." in out


async def test_typos_and_text_files_are_recorded_but_not_held_against_the_success_rate(tmp_path: Path) -> None:
    (tmp_path / "good.jpg").write_bytes(jpeg(120, 90))
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
