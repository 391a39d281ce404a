"""RecordingReplies: what a person in the chat would have seen, in order."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass(slots=True)
class SentImage:
    """A file the bot sent back."""

    data: bytes
    filename: str
    caption: str


@dataclass(slots=True)
class RecordingReplies:
    """The adapter side of the core, recorded; ``gate`` (if set) holds send_image until released."""

    progress_lines: list[str] = field(default_factory=list)
    images: list[SentImage] = field(default_factory=list)
    said: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)  # every call, in order: "progress:…", "image:…", "say:…"

    async def progress(self, text: str) -> None:
        self.progress_lines.append(text)
        self.events.append(f"progress:{text}")

    async def send_image(self, data: bytes, filename: str, caption: str) -> None:
        self.images.append(SentImage(data, filename, caption))
        self.events.append(f"image:{filename}")

    async def say(self, text: str) -> None:
        self.said.append(text)
        self.events.append(f"say:{text}")
        await asyncio.sleep(0)
