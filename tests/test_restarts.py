"""Every accepted image is answered: ``unmark run`` as a real process, killed (SIGKILL) or stopped (SIGTERM) in
each state of a job, then started again on the same database, against the Telegram and PicWish fakes."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot import messages
from tests.conftest import KEY, jpeg
from tests.fakes.picwish import TASKS_PATH, FakePicWish
from tests.fakes.servers import serve
from tests.fakes.telegram import TOKEN, FakeBotAPI
from tests.processes import unmark

START_TIMEOUT = 30.0  # a cold `unmark run` on a busy 2-core machine
ANSWER_TIMEOUT = 60.0


@pytest.fixture
def tg() -> FakeBotAPI:
    return FakeBotAPI()


@pytest.fixture
async def env(tg: FakeBotAPI, picwish: FakePicWish) -> AsyncIterator[dict[str, str]]:
    """What `unmark run` needs to poll the Telegram fake and clean through the PicWish fake."""
    async with tg.running() as api_url, serve(picwish.app) as picwish_url:
        yield {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_URL": api_url, "PICWISH_API_KEY": KEY,
               "PICWISH_API_URL": picwish_url, "UNMARK_LOG_LEVEL": "INFO", "UNMARK_SHUTDOWN_GRACE": "1"}


@pytest.fixture
def picwish() -> FakePicWish:
    return FakePicWish(keys={KEY})


def rows(path: Path = Path("unmark.sqlite3")) -> list[sqlite3.Row]:
    """The jobs table as another process sees it now (the bot's cwd is the test's tmp_path)."""
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        return db.execute("SELECT * FROM jobs ORDER BY id").fetchall()


def posts(picwish: FakePicWish) -> int:
    """Task creations PicWish received (a 429 refusal creates nothing)."""
    return sum(r.method == "POST" for r in picwish.requests if r.status != 429)


def answers(tg: FakeBotAPI, chat: dict[str, Any]) -> list[tuple[int | None, str]]:
    """What the bot answered, and to which message: its files and its sentences (status lines aside)."""
    status = (messages.WORKING, "Queued:", "Image ")
    return [(m.reply_to, "file" if m.document else m.text or "") for m in tg.sent(chat)
            if m.document or not (m.text or "").startswith(status)]


async def started(tg: FakeBotAPI) -> None:
    await tg.wait_for(lambda: tg.calls_to("getUpdates"), timeout=START_TIMEOUT, what="the first getUpdates")


# Each state a job can be in when the process dies: how to hold it there, and how to tell it got there.
STATES: dict[str, tuple[Callable[[FakeBotAPI, FakePicWish], None], Callable[[FakeBotAPI, FakePicWish], bool]]] = {
    "downloading": (lambda tg, pw: tg.hang("file", 60), lambda tg, pw: bool(tg.calls_to("file"))),
    "waiting on PicWish's create": (lambda tg, pw: pw.hang("POST", TASKS_PATH, 60),
                                    lambda tg, pw: len(pw.tasks) == 1),  # created; the answer is held
    "polling": (lambda tg, pw: (setattr(pw, "sync_returns_early", True), pw.script(*[2] * 5, 1)),
                lambda tg, pw: any(r.method == "GET" and r.path.startswith(TASKS_PATH) for r in pw.requests)),
    "uploading the result": (lambda tg, pw: tg.hang("sendDocument", 60), lambda tg, pw: bool(tg.calls_to("sendDocument"))),
}


@pytest.mark.parametrize("state", list(STATES))
async def test_killed_in_any_state_each_image_gets_exactly_one_answer_after_the_restart(
        tg: FakeBotAPI, picwish: FakePicWish, env: dict[str, str], state: str) -> None:
    hold, reached = STATES[state]
    chat = tg.private_chat()
    async with unmark("run", env=env) as bot:
        await started(tg)
        hold(tg, picwish)
        photo = tg.send_photo(chat, jpeg(400, 300))
        queued = tg.send_photo(chat, jpeg(400, 300, seed=1))  # behind it in the chat's line
        await tg.wait_for(lambda: reached(tg, picwish) and len(rows()) == 2, timeout=START_TIMEOUT, what=state)
        await bot.kill()
    task_known = rows()[0]["task_id"] is not None

    async with unmark("run", env=env) as bot:
        try:
            await tg.wait_for(lambda: len(tg.documents(chat)) == 2, timeout=ANSWER_TIMEOUT, what="both answers")
        finally:
            err = await bot.stop()
            print(err)  # shown if the test fails

    assert answers(tg, chat) == [(photo["message_id"], "file"), (queued["message_id"], "file")]
    assert [r["state"] for r in rows()] == ["done", "done"]
    # Where PicWish's task id was known, the restart polled it: one task for each image, in all. Cut off before
    # PicWish answered the create, the image is sent again (the README says this can cost a second credit).
    assert task_known == (state in ("polling", "uploading the result"))
    assert len(picwish.tasks) == (3 if state == "waiting on PicWish's create" else 2)
    assert "Traceback" not in err


async def test_a_sigterm_in_a_burst_of_ten_photos_leaves_none_unanswered_and_keeps_their_order(
        tg: FakeBotAPI, picwish: FakePicWish, env: dict[str, str]) -> None:
    picwish.sync_returns_early = True
    for _ in range(10):
        picwish.script(2, 2, 1)  # a second or two an image: the stop comes mid-burst
    chat = tg.private_chat()
    async with unmark("run", env=env) as bot:
        await started(tg)
        photos = [tg.send_photo(chat, jpeg(300, 200, seed=i)) for i in range(10)]
        await tg.wait_for(lambda: len(tg.documents(chat)) >= 1 and len(rows()) == 10, timeout=START_TIMEOUT)
        err = await bot.stop()
    assert bot.process.returncode == 0, err
    answered_before = len(tg.documents(chat))
    assert answered_before < 10
    assert {r["state"] for r in rows()[answered_before + 1:]} == {"queued"}  # left for the next start, not failed

    async with unmark("run", env=env) as bot:
        await tg.wait_for(lambda: len(tg.documents(chat)) == 10, timeout=60, what="all ten answers")
        await bot.stop()

    assert answers(tg, chat) == [(p["message_id"], "file") for p in photos]
    assert [r["state"] for r in rows()] == ["done"] * 10


async def test_a_queued_job_whose_file_is_gone_after_the_restart_is_asked_for_again(
        tg: FakeBotAPI, picwish: FakePicWish, env: dict[str, str]) -> None:
    chat = tg.private_chat()
    async with unmark("run", env=env) as bot:
        await started(tg)
        picwish.hang("POST", TASKS_PATH, 60)
        first = tg.send_photo(chat, jpeg(400, 300))
        second = tg.send_photo(chat, jpeg(400, 300, seed=1))
        await tg.wait_for(lambda: posts(picwish) == 1 and len(rows()) == 2, timeout=START_TIMEOUT)
        await bot.kill()
    tg.forget(second["photo"][-1]["file_id"])  # Telegram no longer serves it

    async with unmark("run", env=env) as bot:
        await tg.wait_for(lambda: len(answers(tg, chat)) == 2, timeout=START_TIMEOUT)
        await bot.stop()

    assert answers(tg, chat) == [(first["message_id"], "file"), (second["message_id"], messages.RESTARTED)]
    assert [(r["state"], r["error_code"]) for r in rows()] == [("done", None), ("interrupted", "interrupted")]


async def test_nothing_in_the_job_records_can_act_as_the_bot(
        tg: FakeBotAPI, picwish: FakePicWish, env: dict[str, str], tmp_path: Path) -> None:
    chat = tg.private_chat()
    async with unmark("run", env=env) as bot:
        await started(tg)
        picwish.hang("POST", TASKS_PATH, 60)
        tg.send_photo(chat, jpeg(400, 300))
        tg.send_text(chat, "https://example.com/cat.jpg")
        await tg.wait_for(lambda: posts(picwish) == 1 and len(rows()) == 2, timeout=START_TIMEOUT)
        await bot.kill()  # the records as a crash leaves them, write-ahead log included

    stored = b"".join(path.read_bytes() for path in tmp_path.glob("unmark.sqlite3*"))
    secret = TOKEN.split(":", 1)[1].encode()
    assert TOKEN.encode() not in stored and secret not in stored and b"/file/bot" not in stored
    assert KEY.encode() not in stored
    assert [r["source"] for r in rows()] == [tg.calls_to("getFile")[0].params["file_id"], "https://example.com/cat.jpg"]


async def test_the_shell_names_the_images_an_interrupted_session_did_not_finish(
        picwish: FakePicWish, tmp_path: Path) -> None:
    (tmp_path / "harbour.jpg").write_bytes(jpeg(300, 200))
    async with serve(picwish.app) as url:
        env = {**os.environ, "PICWISH_API_KEY": KEY, "PICWISH_API_URL": url}
        picwish.hang("POST", TASKS_PATH, 60)
        shell = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL, env=env)
        assert shell.stdin is not None
        shell.stdin.write(b"harbour.jpg\n")
        await shell.stdin.drain()
        async with asyncio.timeout(START_TIMEOUT):
            while posts(picwish) < 1:
                await asyncio.sleep(0.05)
        shell.kill()  # the terminal closed, the laptop slept: the image was at PicWish
        await shell.wait()

        async def next_session() -> str:
            again = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "run", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL, env=env)
            out, _ = await asyncio.wait_for(again.communicate(b"/quit\n"), START_TIMEOUT)
            return out.decode()

        first, second = await next_session(), await next_session()

    said = messages.unfinished(["harbour.jpg"])
    assert said == "The last session stopped before it finished harbour.jpg. Type the path again to clean it."
    assert said in first.splitlines() and said not in second  # named once, then closed
    assert [(r["state"], r["error_code"]) for r in rows()] == [("interrupted", "interrupted")]
