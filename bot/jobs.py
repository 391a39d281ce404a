"""What adapters see of the core: who asked (ChatRef), what to clean (ImageJob), how to answer (Replies)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
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
    """One image a person asked us to clean; the adapter knows how to fetch its bytes.

    ``fetch`` downloads through the platform so tokens never leave the adapter. ``url`` is set only
    for a link the person typed: it is the one kind of URL that may be handed to PicWish.
    """

    chat: ChatRef
    fetch: Callable[[], Awaitable[bytes]]
    filename: str = "image.jpg"
    size: int | None = None  # bytes, as announced by the platform: checked before fetching
    url: str | None = None


class Replies(Protocol):
    """How the core talks back in the chat a job came from."""

    async def progress(self, text: str) -> None:
        """Show or update this job's one status line."""

    async def send_image(self, data: bytes, filename: str, caption: str) -> None:
        """Send the cleaned image as a file, uncompressed."""

    async def say(self, text: str) -> None:
        """Send one plain sentence (an outcome or an error), closing the status line."""
