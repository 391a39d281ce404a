"""MemoryPlatform: the adapter side of the core for core tests: sources held in memory, replies recorded."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any

from bot.errors import FileUnavailable
from bot.jobs import ChatRef, ImageJob
from tests.fakes.replies import RecordingReplies


class MemoryPlatform:
    """A platform whose files are bytes in a dict and whose chats are RecordingReplies, one per job's place."""

    def __init__(self, name: str = "telegram") -> None:
        self.name = name
        self.files: dict[str, bytes] = {}
        self.answers: dict[str, Any] = {}  # answer_to → the replies the job answers through
        self.fetched: list[str] = []
        self._ids = itertools.count(1)

    def job(self, data: bytes, chat: ChatRef, *, filename: str = "photo.jpg", size: int | None = None,
            replies: Any = None, request: str | None = None) -> ImageJob:
        """A job for ``data``, sent in ``chat``; its answers go to ``replies`` (a new RecordingReplies by default)."""
        n = next(self._ids)
        source, answer_to = f"file-{n}", f"message-{n}"
        self.files[source] = data
        self.answers[answer_to] = replies if replies is not None else RecordingReplies()
        return ImageJob(chat=chat, source=source, answer_to=answer_to, filename=filename, size=size, request=request)

    def replies_of(self, job: ImageJob) -> Any:
        """Where ``job`` answered."""
        return self.answers[job.answer_to]

    async def fetch(self, job: ImageJob) -> bytes:
        self.fetched.append(job.source)
        if job.source not in self.files:
            raise FileUnavailable(f"{job.source} is gone")
        return self.files[job.source]

    @contextlib.asynccontextmanager
    async def replies(self, job: ImageJob) -> AsyncIterator[Any]:
        yield self.answers.setdefault(job.answer_to, RecordingReplies())
