"""The local shell chat: type an image path or link, get the cleaned file in the output folder."""

from __future__ import annotations

import asyncio
import functools
import getpass
import sys
from pathlib import Path
from typing import TextIO

from adapters.paths import typed_path
from bot import messages
from bot.config import Settings
from bot.core import Service
from bot.errors import UnreadableFile
from bot.jobs import ChatRef, ImageJob
from bot.links import looks_like_link
from bot.outputs import OutputFolder

DEFAULT_OUT = Path("unmark-out")


class ShellReplies:
    """Replies for a terminal: status lines on ``status``, results written into ``out_dir``.

    ``out_dir`` may be an OutputFolder shared by several replies (one per `unmark clean` argument), so that
    their results never take each other's names.
    """

    def __init__(self, out_dir: Path | OutputFolder, *, stream: TextIO = sys.stdout,
                 status: TextIO | None = None) -> None:
        self.out = out_dir if isinstance(out_dir, OutputFolder) else OutputFolder(out_dir)
        self.stream = stream
        self.status = status  # None: keep quiet while working (a progress bar owns the terminal)
        self.saved: list[Path] = []

    async def progress(self, text: str) -> None:
        """Rewrite the status line in place on a terminal; into a pipe or a file, only the outcome is written,
        so each image is one line there (``ls *.jpg | unmark run > log``)."""
        if self.status is None or not self.status.isatty():
            return
        self.status.write(f"\r\033[K{text}")
        self.status.flush()

    async def send_image(self, data: bytes, filename: str, caption: str) -> None:
        """Write the result into the output folder under a name no other result has, and say which."""
        path = await asyncio.to_thread(self.out.save, filename, data)
        self.saved.append(path)
        await self.say(f"{caption} Saved {path}")

    async def say(self, text: str) -> None:
        """Print one line, ending any status line first."""
        if self.status is not None and self.status.isatty():
            self.status.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()


def file_job(chat: ChatRef, path: Path) -> ImageJob:
    """An ImageJob for a local file; its size is checked before it is read."""
    try:
        size = path.stat().st_size
    except OSError:
        size = None
    return ImageJob(chat=chat, fetch=functools.partial(_read, path), filename=path.name, size=size)


def job_for(service: Service, chat: ChatRef, text: str) -> ImageJob:
    """A typed line is a link or a path."""
    text = text.strip()
    if looks_like_link(text):
        return service.link_job(chat, text)
    return file_job(chat, typed_path(text))


async def _read(path: Path) -> bytes:
    try:
        return await asyncio.to_thread(path.read_bytes)
    except OSError as exc:
        raise UnreadableFile(str(path), exc.strerror or "") from None


def _is_a_path(text: str) -> bool:
    """Whether a line that starts with a slash, as commands do, is an absolute path instead: one with more than
    one part (/home/me/photo.jpg), or a file that is there."""
    return "/" in text[1:] or Path(text).exists()


def local_chat(platform: str) -> ChatRef:
    """The one chat of a local session, owned by the logged-in user."""
    try:
        user = getpass.getuser()
    except Exception:  # no user database entry (containers)
        user = "local"
    return ChatRef(platform=platform, chat_id="local", user_id=user)


async def run(service: Service, settings: Settings, *, out_dir: Path | OutputFolder = DEFAULT_OUT,
              stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> None:
    """Read paths, links and commands line by line until /quit or end of input (pipes work too)."""
    chat = local_chat("shell")
    replies = ShellReplies(out_dir, stream=stdout, status=stdout)
    await replies.say(messages.SHELL_HINT)
    await replies.say(messages.SHELL_HELP)
    while True:
        if stdin.isatty():
            stdout.write("unmark> ")
            stdout.flush()
        line = await asyncio.to_thread(stdin.readline)
        if not line:
            break
        text = line.strip()
        if not text:
            continue
        match text.split()[0].lower():
            case "/quit" | "/exit":
                break
            case "/help" | "/start":
                await replies.say(messages.SHELL_HELP)
            case "/usage":
                await replies.say(await service.usage_text(chat))
            case "/stats":
                await replies.say(await service.stats_text(chat))
            case command if command.startswith("/") and not _is_a_path(text):
                await replies.say(messages.NOT_A_COMMAND)
            case _:
                await service.handle(job_for(service, chat, text), replies)
