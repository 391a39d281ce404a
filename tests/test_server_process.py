"""`unmark serve` as a real process on loopback: `unmark clean` and the PicWish client use it over HTTP,
and schemathesis checks it against its own /openapi.json."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import httpx
import PIL.Image
import pytest

from bot import images
from bot.picwish import PicWishClient
from bot.server.tasks import TASKS_PATH
from tests.conftest import jpeg
from tests.watermarks import add_text_watermark, encode, photo

KEY = "process-key-1"
START_TIMEOUT = 90.0  # seconds: a cold start imports numpy, OpenCV and onnxruntime twice (server and worker)
STOP_TIMEOUT = 15.0
LISTENING = re.compile(r"serving the PicWish-compatible API on (http://\S+)")


def environment(**extra: str) -> dict[str, str]:
    """This interpreter's environment without anyone's unmark/PicWish settings, plus ``extra``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PICWISH_", "UNMARK_", "TELEGRAM_", "SLACK_"))}
    return {**clean, **extra}


@contextlib.contextmanager
def serving(folder: Path, **settings: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`python -m bot serve --port 0` in ``folder`` (its own session); yields its base URL and process."""
    log = folder / "server.log"
    seen = log.stat().st_size if log.exists() else 0  # a second start in the folder appends to the log
    env = environment(UNMARK_API_KEYS=f"{KEY},second-key", UNMARK_WORKERS="1", UNMARK_SERVER_QPS="1000",
                      UNMARK_DATA_DIR=str(folder / "data"), **settings)
    with log.open("ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "bot", "serve", "--port", "0"], cwd=folder, env=env,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not (found := LISTENING.search(log.read_bytes()[seen:].decode())):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"not listening after {START_TIMEOUT} s:\n{log.read_text()}"
            time.sleep(0.1)
        yield found.group(1), process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One `unmark serve` for the module; yields its base URL."""
    folder = tmp_path_factory.mktemp("served")
    with serving(folder) as (url, _):
        yield url
    assert "Traceback" not in (folder / "server.log").read_text(), (folder / "server.log").read_text()


async def test_unmark_clean_works_through_a_running_unmark_serve(served: str, tmp_path: Path) -> None:
    clean = photo(640, 480, seed=4)
    marked, mask = add_text_watermark(clean, text="SAMPLE", alpha=0.6, seed=4)
    (tmp_path / "marked.png").write_bytes(encode(marked, "png"))
    (tmp_path / "photo.jpg").write_bytes(jpeg(400, 300))
    env = environment(PICWISH_API_KEY=KEY, PICWISH_API_URL=served, UNMARK_DATABASE=str(tmp_path / "jobs.sqlite3"))

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "clean", "marked.png", "photo.jpg", "--out", "out", cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 120)

    assert process.returncode == 0, err.decode()
    assert "Watermark removed" in out.decode()
    result = np.asarray(PIL.Image.open(tmp_path / "out" / "marked-clean.png").convert("RGB")).astype(int)
    assert np.abs(result - clean)[mask].mean() < np.abs(marked.astype(int) - clean)[mask].mean() / 2
    assert PIL.Image.open(tmp_path / "out" / "photo-clean.jpg").size == (400, 300)


async def test_the_client_creates_polls_and_downloads_over_real_http(served: str) -> None:
    async with PicWishClient(KEY, base_url=served, poll_interval=0.05) as client:
        task = await client.create(image=images.load(jpeg(300, 200, seed=7)), sync=False)
        assert task.state == 0
        done = await client.wait(task)
        assert done.file is not None and done.file.startswith(served + "/tasks/output/")
        result = await client.download(done.file)
        synced = await client.create(image=images.load(jpeg(200, 100, seed=8)), sync=True)
    assert (result.format, result.width, result.height) == ("jpeg", 300, 200)
    assert (synced.state, synced.progress) == (1, 100) and synced.file


async def test_a_killed_server_loses_nothing_when_it_starts_again(tmp_path: Path) -> None:
    marked, _ = add_text_watermark(photo(4000, 3000, seed=6), seed=6)
    big, small = encode(marked, "jpeg"), [jpeg(300, 200, seed=i) for i in range(2)]
    key = {"X-API-KEY": KEY}
    with serving(tmp_path) as (url, process):
        async with httpx.AsyncClient(base_url=url, headers=key) as http:
            async def create(content: bytes) -> str:
                answer = await http.post(TASKS_PATH, files={"file": ("a.jpg", content, "image/jpeg")})
                return answer.json()["data"]["task_id"]

            cut_off = await create(big)
            queued = [await create(content) for content in small]
            for _ in range(3000):  # bounded: 30 s
                if (await http.get(f"{TASKS_PATH}/{cut_off}")).json()["data"]["state"] in (3, 4):
                    break
                await asyncio.sleep(0.01)
            os.killpg(process.pid, signal.SIGKILL)  # the server and its worker, mid-task, without warning
            process.wait()

    with serving(tmp_path) as (url, _):
        async with httpx.AsyncClient(base_url=url, headers=key) as http:
            failed = (await http.get(f"{TASKS_PATH}/{cut_off}")).json()["data"]
        assert (failed["state"], failed["state_detail"]) == (-1, "Failed")
        async with PicWishClient(KEY, base_url=url, poll_interval=0.05) as client:
            for task_id in queued:
                assert (await client.resume(task_id)).width == 300


SCHEMATHESIS_CONFIG = """
# schemathesis judges a multipart body without its binary parts, so it cannot see the `file` half of
# "exactly one of file and url" and would call a correct 400 a rejected valid request (and the reverse).
[[operations]]
include-operation-id = "createTask"
checks.positive_data_acceptance.enabled = false
checks.negative_data_rejection.enabled = false
"""


def test_schemathesis_finds_no_server_errors_or_schema_violations(served: str, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(SCHEMATHESIS_CONFIG)
    st = str(Path(sys.executable).with_name("st"))  # the test extra installs schemathesis beside this Python
    # Every check (schemathesis runs all by default), every phase; bounded by the examples per operation.
    command = [st, "--no-color", "--config-file", str(config), "run", f"{served}/openapi.json",
               "--header", f"X-API-KEY: {KEY}", "--max-examples", "25", "--seed", "20240601",
               "--request-timeout", "40"]
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert re.search(r"\d+ passed", run.stdout) and "failed" not in run.stdout
