"""Shared Slack files → job records (by file id); fetched with the bot token, refused by type without a download."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import httpx
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import images
from bot.errors import FileTooLarge, FileUnavailable, NotAnImage
from bot.jobs import ChatRef, ImageJob

logger = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT = 30.0
IMAGE_FILETYPES = frozenset({"jpg", "jpeg", "png", "bmp", "gif", "webp", "tiff", "heic"})


class SlackFiles:
    """Makes job records of files shared in Slack, and fetches them again by id with the bot's token."""

    def __init__(self, client: AsyncWebClient, http: httpx.AsyncClient) -> None:
        self._client, self._http = client, http
        self._shared: dict[str, dict[str, Any]] = {}  # file id → what the event said of it, until fetched

    async def job(self, chat: ChatRef, file: dict[str, Any], *, answer_to: str, request: str | None,
                  language: str = "") -> ImageJob:
        """A record for one file of a message; its details wait here so the live job needs no second look.

        A file shared by id only (Slack Connect, some shares) is looked up with files.info for its name and
        size; if that fails, the record keeps the id and the fetch says what went wrong.
        """
        if _by_id_only(file):
            with contextlib.suppress(FileUnavailable):
                file = await self._info(file["id"])
        self._shared[file["id"]] = file
        return ImageJob(chat=chat, source=file["id"], answer_to=answer_to, filename=name_of(file),
                        size=file.get("size"), request=request, language=language)

    async def fetch(self, file_id: str) -> bytes:
        """The file's bytes; the core checks its announced size before this runs.

        A file the event did not describe (a restart since, Slack Connect, some shares) is looked up with
        files.info first; a file that is not an image by Slack's account is refused without downloading it.
        """
        file = self._shared.pop(file_id, None) or {"id": file_id}
        if _by_id_only(file):
            file = await self._info(file_id)
        if not is_image(file):
            raise NotAnImage(_detected(file))
        return await self.download(file)

    async def download(self, file: dict[str, Any]) -> bytes:
        """Fetch a shared file with the bot token; Slack's sign-in page is a refusal, never an image."""
        url = file.get("url_private_download") or file.get("url_private")
        if not url:  # a deleted or tombstoned file
            raise FileUnavailable(f"Slack gave no download URL for file {file.get('id')}")
        headers = {"Authorization": f"Bearer {self._client.token}"}
        try:
            # httpx drops Authorization on a redirect to another host, so the token stays with Slack.
            async with self._http.stream("GET", url, headers=headers) as response:
                if response.status_code != 200:
                    raise FileUnavailable(f"Slack answered HTTP {response.status_code} for file {file.get('id')}")
                if response.headers.get("content-type", "").startswith("text/html"):
                    # Status 200 and a sign-in page: what Slack serves when files:read is missing.
                    logger.warning("Slack served its sign-in page for file %s: does the app have files:read?",
                                   file.get("id"))
                    raise FileUnavailable("Slack served its sign-in page instead of the file")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > images.MAX_BYTES:
                        raise FileTooLarge(None, images.MAX_BYTES)
                return bytes(body)
        except httpx.HTTPError as exc:
            raise FileUnavailable(f"downloading from Slack: {type(exc).__name__}") from exc

    async def _info(self, file_id: str) -> dict[str, Any]:
        try:
            response = await self._client.files_info(file=file_id)
        except SlackApiError as exc:
            raise FileUnavailable(f"files.info: {exc.response.get('error')}") from exc
        return dict(response["file"])


def is_image(file: dict[str, Any]) -> bool:
    """Whether Slack's idea of the file's type is an image (the core still sniffs the bytes)."""
    return (str(file.get("mimetype", "")).startswith("image/")
            or str(file.get("filetype", "")).lower() in IMAGE_FILETYPES)


def _by_id_only(file: dict[str, Any]) -> bool:
    return "url_private" not in file or file.get("file_access") == "check_file_info"


def name_of(file: dict[str, Any]) -> str:
    """The name a shared file goes by."""
    return file.get("name") or file.get("title") or "image"


def _detected(file: dict[str, Any]) -> str | None:
    return "pdf" if str(file.get("filetype", "")).lower() == "pdf" else None
