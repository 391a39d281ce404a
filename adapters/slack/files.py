"""Shared Slack files → ImageJobs: refused by type without a download, fetched with the bot token otherwise."""

from __future__ import annotations

import functools
import logging
from typing import Any

import httpx
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import images
from bot.errors import FileTooLarge, FileUnavailable, NotAnImage, UnmarkError
from bot.jobs import ChatRef, ImageJob

logger = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT = 30.0
IMAGE_FILETYPES = frozenset({"jpg", "jpeg", "png", "bmp", "gif", "webp", "tiff", "heic"})


class SlackFiles:
    """Makes jobs of files shared in Slack; their bytes come from ``url_private`` with the bot's token."""

    def __init__(self, client: AsyncWebClient, http: httpx.AsyncClient) -> None:
        self._client, self._http = client, http

    async def job(self, chat: ChatRef, file: dict[str, Any]) -> ImageJob:
        """A job for one file of a message; the core checks its announced size before any download.

        A file shared by id only (Slack Connect, some shares) is looked up with files.info first; a file
        that is not an image by Slack's account is refused without downloading it.
        """
        if "url_private" not in file or file.get("file_access") == "check_file_info":
            try:
                file = await self._info(file["id"])
            except FileUnavailable as error:
                return ImageJob(chat=chat, fetch=functools.partial(_refuse, error), filename=_name(file))
        if not is_image(file):
            refusal = NotAnImage(_detected(file))
            return ImageJob(chat=chat, fetch=functools.partial(_refuse, refusal), filename=_name(file))
        return ImageJob(chat=chat, fetch=functools.partial(self.download, file), filename=_name(file),
                        size=file.get("size"))

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


def _name(file: dict[str, Any]) -> str:
    return file.get("name") or file.get("title") or "image"


def _detected(file: dict[str, Any]) -> str | None:
    return "pdf" if str(file.get("filetype", "")).lower() == "pdf" else None


async def _refuse(error: UnmarkError) -> bytes:
    raise error
