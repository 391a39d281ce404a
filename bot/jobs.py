"""What adapters see of the core: who asked (ChatRef), the job record (ImageJob), and the Platform seam that
fetches a record's source and answers in the place it names (Replies)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ChatRef:
    """Who asked, and where the answer goes."""

    platform: str  # "telegram" | "slack" | "shell" | "cli"
    chat_id: str
    user_id: str


@dataclass(frozen=True, slots=True)
class ImageJob:
    """One image a person asked us to clean: a record that any process with the same settings can run again.

    It is written to the jobs table before the first byte is fetched, so a restart can finish it and still
    answer the person. None of its fields ever holds a token or a URL that carries one.

    - ``source``: what the platform fetches again (a Telegram ``file_id``, a Slack file id, a local path), or
      the link itself when ``url`` is set.
    - ``answer_to``: where in the chat the answer goes, in the platform's own words (a message id, a thread);
      the core stores it and hands it back, never reads it.
    - ``request``: the platform's id of the message or event that asked, when the platform may deliver it
      again (Telegram after a crash, Slack's retries): a job is taken once per request and source.
    - ``url``: a link the person typed. The core fetches it, and it is the one kind of URL PicWish may see.
    - ``language``: the person's language as their platform or terminal names it (``zh-CN``, ``zh_CN.UTF-8``);
      empty when it does not say. Kept with the record, so an answer after a restart is in their language too.
    """

    chat: ChatRef
    source: str
    answer_to: str = ""
    filename: str = "image.jpg"
    size: int | None = None  # bytes, as announced by the platform: checked before fetching
    url: str | None = None
    request: str | None = None
    language: str = ""

    @classmethod
    def link(cls, chat: ChatRef, url: str, *, answer_to: str = "", request: str | None = None,
             language: str = "") -> ImageJob:
        """A job for a link the person typed; its name is the link's last path segment."""
        name = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or "image"
        return cls(chat=chat, source=url, answer_to=answer_to, filename=name, url=url, request=request,
                   language=language)


class Replies(Protocol):
    """How the core talks back in the place a job names."""

    async def progress(self, text: str) -> None:
        """Show or update this job's one status line."""

    async def send_image(self, data: bytes, filename: str, caption: str) -> None:
        """Send the cleaned image as a file, uncompressed."""

    async def say(self, text: str) -> None:
        """Send one plain sentence (an outcome or an error), closing the status line."""


class Platform(Protocol):
    """An adapter as the core sees it: it fetches a record's source and answers where the record says.

    Tokens stay inside: ``fetch`` downloads through the platform, ``replies`` opens the answers for one job
    (and tidies up, e.g. a status message, when the job leaves).
    """

    name: str

    async def fetch(self, job: ImageJob) -> bytes:
        """The bytes of ``job.source``."""

    def replies(self, job: ImageJob) -> AbstractAsyncContextManager[Replies]:
        """Replies in the chat and place ``job`` names, for as long as the job runs."""
