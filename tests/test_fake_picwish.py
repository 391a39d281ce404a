"""The PicWish fake answers like shared/picwish-api.md says PicWish does, in-process and on loopback."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import httpx
import pytest
from PIL import Image

from tests.fakes.picwish import TASKS_PATH, FakePicWish, FilePart
from tests.fakes.servers import serve

KEY = {"X-API-KEY": "test-key"}


def _image(fmt: str = "JPEG", size: tuple[int, int] = (40, 30)) -> bytes:
    """A picture whose left half is red and right half blue, so a mirror is visible."""
    image = Image.new("RGB", size, (255, 0, 0))
    image.paste((0, 0, 255), (size[0] // 2, 0, size[0], size[1]))
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


@pytest.fixture
def fake() -> FakePicWish:
    return FakePicWish(keys={"test-key"})


@pytest.fixture
async def client(fake: FakePicWish) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=fake.app)
    async with httpx.AsyncClient(transport=transport, base_url="https://techhk.aoscdn.com") as http:
        yield http


async def _create(http: httpx.AsyncClient, *, sync: str = "0", content: bytes | None = None) -> httpx.Response:
    files = {"file": ("photo.jpg", content if content is not None else _image(), "image/jpeg")}
    return await http.post(TASKS_PATH, headers=KEY, data={"sync": sync}, files=files)


async def test_created_task_goes_2_4_1_and_its_result_is_the_mirrored_image(
    fake: FakePicWish, client: httpx.AsyncClient
) -> None:
    fake.qps = None
    created = await _create(client)
    assert created.status_code == 200
    task_id = created.json()["data"]["task_id"]
    assert created.json() == {"data": {"task_id": task_id}, "message": "success", "status": 200}

    polls = [(await client.get(f"{TASKS_PATH}/{task_id}", headers=KEY)) for _ in range(3)]
    assert [p.json()["data"]["state"] for p in polls] == [2, 4, 1]
    assert [p.json()["data"]["progress"] for p in polls] == [33, 66, 100]
    assert "file" not in polls[0].json()["data"]
    done = polls[2].json()["data"]
    assert list(done) == sorted(done)
    assert polls[2].text.startswith('{"data":{"completed_at":')
    assert set(done) == {
        "completed_at", "created_at", "file", "processed_at", "progress", "state", "state_detail", "task_id",
    }
    assert all(isinstance(done[k], int) for k in ("completed_at", "created_at", "processed_at"))
    assert done["file"].startswith(f"https://techhk.aoscdn.com/results/{task_id}.jpg?expires=")

    result = await client.get(done["file"])
    assert result.headers["content-type"] == "image/jpeg"
    pixels = Image.open(io.BytesIO(result.content)).convert("RGB")
    assert pixels.getpixel((2, 2))[2] > 200  # blue now on the left
    assert fake.tasks[task_id].source == "file"
    assert fake.requests[0].form == {"sync": "0", "file": FilePart("photo.jpg", len(_image()), "image/jpeg")}


async def test_sync_on_a_real_port_answers_the_finished_task(fake: FakePicWish) -> None:
    async with serve(fake.app) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        answer = (await _create(http, sync="1")).json()
        assert answer["data"]["state"] == 1
        assert answer["data"]["file"].startswith(f"{base_url}/results/")
        result = await http.get(answer["data"]["file"])
    assert result.status_code == 200
    assert Image.open(io.BytesIO(result.content)).size == (40, 30)
    assert fake.tasks[answer["data"]["task_id"]].sync is True


async def test_sync_returns_early_leaves_the_rest_to_polling(fake: FakePicWish, client: httpx.AsyncClient) -> None:
    fake.qps, fake.sync_returns_early = None, True
    fake.script(4, 4, 1)
    first = (await _create(client, sync="1")).json()["data"]
    assert (first["state"], "file" in first) == (4, False)
    states = [(await client.get(f"{TASKS_PATH}/{first['task_id']}", headers=KEY)).json()["data"]["state"]]
    states.append((await client.get(f"{TASKS_PATH}/{first['task_id']}", headers=KEY)).json()["data"]["state"])
    assert states == [4, 1]


async def test_bad_requests_get_error_envelopes(fake: FakePicWish, client: httpx.AsyncClient) -> None:
    fake.qps = None
    wrong_key = await client.post(TASKS_PATH, headers={"X-API-KEY": "nope"}, files={"file": _image()})
    assert (wrong_key.status_code, wrong_key.json()["status"]) == (401, 401)
    as_json = await client.post(TASKS_PATH, headers=KEY, json={"url": "http://127.0.0.1:9/x.jpg", "sync": 0})
    assert as_json.status_code == 400
    both = await client.post(TASKS_PATH, headers=KEY, data={"url": "http://x/y.jpg"}, files={"file": _image()})
    assert both.status_code == 400
    bad_sync = await client.post(TASKS_PATH, headers=KEY, data={"sync": "2"}, files={"file": _image()})
    assert bad_sync.json() == {"message": "sync must be 0 or 1", "status": 400}
    fake.max_upload = len(_image()) - 1
    assert (await _create(client)).status_code == 413
    assert (await client.get(f"{TASKS_PATH}/no-such-task", headers=KEY)).status_code == 404
    assert fake.tasks == {}


async def test_a_third_request_within_a_second_is_refused_with_429(
    fake: FakePicWish, client: httpx.AsyncClient
) -> None:
    statuses = [(await client.get(f"{TASKS_PATH}/x", headers=KEY)).status_code for _ in range(3)]
    assert statuses == [404, 404, 429]
    assert (await client.get(f"{TASKS_PATH}/x", headers=KEY)).json()["status"] == 429
    fake.advance(1.01)
    assert (await client.get(f"{TASKS_PATH}/x", headers=KEY)).status_code == 404
    fake.qps = None
    statuses = [(await client.get(f"{TASKS_PATH}/x", headers=KEY)).status_code for _ in range(5)]
    assert statuses == [404] * 5


async def test_result_and_task_expire_after_an_hour(fake: FakePicWish, client: httpx.AsyncClient) -> None:
    answer = (await _create(client, sync="1")).json()["data"]
    fake.advance(3601)
    expired = await client.get(answer["file"])
    assert expired.status_code == 403
    assert "<Code>AccessDenied</Code>" in expired.text and "Request has expired" in expired.text
    assert (await client.get(f"{TASKS_PATH}/{answer['task_id']}", headers=KEY)).status_code == 404
    tampered = answer["file"].replace("sig=", "sig=0")
    assert (await client.get(tampered)).status_code == 403


async def test_scripted_and_real_failures_show_negative_states(fake: FakePicWish, client: httpx.AsyncClient) -> None:
    fake.qps = None
    fake.script(0, 2, 4, -7)
    task_id = (await _create(client)).json()["data"]["task_id"]
    polls = [(await client.get(f"{TASKS_PATH}/{task_id}", headers=KEY)).json()["data"] for _ in range(5)]
    assert [p["state"] for p in polls] == [0, 2, 4, -7, -7]
    assert all("file" not in p for p in polls)
    assert (await _create(client, sync="1", content=b"not an image")).json()["data"]["state"] == -7
    assert (await _create(client, sync="1", content=_image(size=(19, 40)))).json()["data"]["state"] == -7
    png = (await _create(client, sync="1", content=_image("PNG"))).json()["data"]
    assert png["file"].split("?")[0].endswith(".png")
    assert fake.credits_used == 1
    with pytest.raises(ValueError):
        fake.script(1, 2)


async def _create_from_url(http: httpx.AsyncClient, url: str) -> httpx.Response:
    # (None, value) parts make httpx send multipart without a file; plain data= would be urlencoded.
    return await http.post(TASKS_PATH, headers=KEY, files={"url": (None, url), "sync": (None, "1")})


async def test_an_unreachable_url_fails_with_state_minus_3(fake: FakePicWish, client: httpx.AsyncClient) -> None:
    fake.qps = None
    urlencoded = await client.post(TASKS_PATH, headers=KEY, data={"url": "http://127.0.0.1:9/x.jpg"})
    assert urlencoded.status_code == 400
    answer = await _create_from_url(client, "http://127.0.0.1:9/x.jpg")
    assert answer.json()["data"]["state"] == -3
    fake.fetch_transport = httpx.MockTransport(lambda request: httpx.Response(200, content=_image()))
    answer = await _create_from_url(client, "https://cdn.example/x.jpg")
    assert answer.json()["data"]["state"] == 1
    assert fake.tasks[answer.json()["data"]["task_id"]].url == "https://cdn.example/x.jpg"


async def test_fail_answers_the_scripted_status_then_recovers(fake: FakePicWish, client: httpx.AsyncClient) -> None:
    fake.qps = None
    fake.fail("POST", TASKS_PATH, 503, times=2, retry_after=3)
    first, second, third = [await _create(client) for _ in range(3)]
    assert (first.status_code, first.headers["retry-after"], first.json()["status"]) == (503, "3", 503)
    assert second.status_code == 503
    assert third.status_code == 200
    assert len(fake.tasks) == 1
    assert [r.status for r in fake.requests] == [503, 503, 200]


async def test_a_hung_request_times_out_the_client_but_still_creates_its_task(fake: FakePicWish) -> None:
    fake.hang("POST", TASKS_PATH, 0.5)
    async with serve(fake.app) as base_url, httpx.AsyncClient(base_url=base_url, timeout=0.1) as http:
        with pytest.raises(httpx.ReadTimeout):
            await _create(http, sync="1")
        (task,) = fake.tasks.values()
        assert (task.hung, task.sync, task.outcome) == (True, True, 1)
        assert fake.credits_used == 1
