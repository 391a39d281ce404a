"""The `unmark` command as a person runs it: a real subprocess, real files, the PicWish fake on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from tests.conftest import KEY, jpeg, marked
from tests.fakes.picwish import FakePicWish
from tests.fakes.servers import serve
from tests.watermarks import add_text_watermark, encode, photo


async def unmark(*args: str, env: dict[str, str] | None = None, stdin: bytes | None = None,
                 timeout: float = 120) -> tuple[int, str, str]:
    """Run the installed command; return (status, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), timeout)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_clean_without_a_key_removes_a_text_watermark_locally(tmp_path: Path) -> None:
    clean = photo(640, 480, seed=3)
    marked, mask = add_text_watermark(clean, text="SAMPLE", alpha=0.6, seed=3)
    (tmp_path / "marked.png").write_bytes(encode(marked, "png"))

    status, out, err = await unmark("clean", "marked.png", "--out", "out")

    assert status == 0, err
    assert out.strip().startswith("marked.png: Watermark removed in ")
    result = np.asarray(PIL.Image.open(tmp_path / "out" / "marked-clean.png").convert("RGB")).astype(int)
    before = np.abs(marked.astype(int) - clean)[mask].mean()
    after = np.abs(result - clean)[mask].mean()
    assert after < before / 2
    assert (result[~mask_dilated(mask)] == marked[~mask_dilated(mask)]).mean() > 0.97


def mask_dilated(mask: np.ndarray, pixels: int = 25) -> np.ndarray:
    import cv2

    return cv2.dilate(mask.astype(np.uint8), np.ones((2 * pixels + 1, 2 * pixels + 1), np.uint8)) > 0


async def test_clean_through_picwish_and_usage_shows_both_jobs(tmp_path: Path) -> None:
    (tmp_path / "photo.jpg").write_bytes(jpeg(400, 300))
    (tmp_path / "second.jpg").write_bytes(marked(320, 240, seed=9, fmt="jpeg"))
    fake = FakePicWish(keys={KEY})
    async with serve(fake.app) as url:
        status, out, err = await unmark("clean", "photo.jpg", env={"PICWISH_API_KEY": KEY, "PICWISH_API_URL": url})
    assert status == 0, err
    assert len(fake.tasks) == 1 and (tmp_path / "unmark-out" / "photo-clean.jpg").exists()
    assert KEY not in out + err

    status, _, err = await unmark("clean", "second.jpg")  # no key: the local engine
    assert status == 0, err

    status, out, _ = await unmark("usage", "--json")
    [row] = json.loads(out)
    assert (row["platform"], row["chat_id"], row["all_time"]) == ("cli", "local", 2)
    with sqlite3.connect(tmp_path / "unmark.sqlite3") as db:
        assert [r[0] for r in db.execute("SELECT backend FROM jobs ORDER BY id")] == ["picwish", "local"]
    status, out, _ = await unmark("usage")
    assert out.splitlines()[0].split()[:3] == ["platform", "chat", "today"]
    assert out.splitlines()[1].split()[:5] == ["cli", "local", "2", "2", "2"]


async def test_clean_reports_each_failure_in_one_line_and_exits_non_zero(tmp_path: Path) -> None:
    (tmp_path / "good.jpg").write_bytes(jpeg(200, 100))
    (tmp_path / "broken.jpg").write_bytes(jpeg(200, 100)[:300])
    (tmp_path / "notes.txt").write_text("hello")
    status, out, err = await unmark("clean", "good.jpg", "broken.jpg", "notes.txt", "missing.png")
    assert status == 1
    lines = out.strip().splitlines()
    assert lines[0].startswith("good.jpg: ")
    assert lines[1:] == [
        "broken.jpg: That file isn't a valid image. Send me a jpg, png or bmp.",
        "notes.txt: That file isn't a valid image. Send me a jpg, png or bmp.",
        "missing.png: I can't read missing.png. Check the path and try again.",
    ]
    assert "Traceback" not in err


async def test_run_without_tokens_is_a_shell_chat_that_reads_piped_input(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(marked(320, 240, seed=1, fmt="jpeg"))
    (tmp_path / "b.jpg").write_bytes(marked(320, 240, seed=2, fmt="jpeg"))
    # An absolute path starts with a slash as commands do, and is still a path.
    piped = f"a.jpg\n/usage\n/nonsense\n{tmp_path / 'b.jpg'}\n/quit\nignored.jpg\n".encode()
    status, out, err = await unmark("run", "--out", "results", stdin=piped)
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("No chat platform configured, so this is the local shell.")
    assert any(line.startswith("Watermark removed in ") and line.endswith("results/a-clean.jpg") for line in lines)
    assert any(line.startswith("Images cleaned today: 1; no daily limit applies here.") for line in lines)
    assert lines.count("I don't know that command. Type /help to see what I can do.") == 1
    assert (tmp_path / "results" / "a-clean.jpg").exists()
    assert (tmp_path / "results" / "b-clean.jpg").exists()


@pytest.mark.parametrize("name, value", [("UNMARK_DAILY_LIMIT", "many"), ("PORT", "0")])
async def test_a_bad_setting_stops_start_up_with_one_line(name: str, value: str) -> None:
    status, out, err = await unmark("run", env={name: value}, stdin=b"")
    assert status == 2
    assert err.strip().count("\n") == 0 and err.startswith(f"unmark: bad setting {name}: ")


async def test_run_no_work_needs_the_shared_database_and_says_so() -> None:
    status, _, err = await unmark("run", "--no-work", env={"UNMARK_DATABASE": "unmark.sqlite3"})
    assert status == 2
    assert err.startswith("unmark: bad setting UNMARK_DATABASE: --no-work needs the shared job queue")
    assert "postgresql://" in err and "Traceback" not in err


async def test_unmark_usage_reads_a_postgresql_database(postgres_url: str) -> None:
    from bot.jobs import ChatRef, ImageJob
    from bot.usage import UsageStore

    async with UsageStore.open(postgres_url) as store:
        job = await store.start(ImageJob(ChatRef("telegram", "42", "7"), "file-1"), backend="picwish")
        assert job is not None
        await store.finish(job)
    status, out, err = await unmark("usage", "--json", env={"UNMARK_DATABASE": postgres_url})
    assert status == 0, err
    [row] = json.loads(out)
    assert (row["platform"], row["chat_id"], row["all_time"]) == ("telegram", "42", 1)


async def test_a_postgresql_url_nobody_answers_at_stops_start_up_in_one_line() -> None:
    from tests.processes import free_port

    url = f"postgresql://unmark:hunter2@127.0.0.1:{free_port()}/unmark"
    status, _, err = await unmark("usage", env={"UNMARK_DATABASE": url})
    assert status == 2
    last = err.strip().splitlines()[-1]  # after psycopg's own warnings of each try
    assert last.startswith("unmark: UNMARK_DATABASE: PostgreSQL did not answer at postgresql://unmark:***@127.0.0.1:")
    assert "hunter2" not in err and "Traceback" not in err
