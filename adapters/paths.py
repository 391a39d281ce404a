"""A local file as a person types or pastes it in the shell: quoted or escaped as terminals paste a dragged file,
with ``~``, or as a ``file://`` URL."""

from __future__ import annotations

import shlex
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

LOCAL_HOSTS = frozenset({"", "localhost"})


def typed_path(text: str) -> Path:
    """``'/tmp/x/my photo.jpg'``, ``/tmp/x/my\\ photo.jpg``, ``~/x.jpg`` and ``file:///tmp/x.jpg`` → a Path."""
    text = text.strip()
    try:
        words = shlex.split(text)
    except ValueError:  # an unpaired quote: an apostrophe in a name typed bare (bob's.jpg)
        words = []
    if len(words) == 1:  # one quoted or escaped path; several words are a bare path with spaces, kept as typed
        text = words[0]
    if text.lower().startswith("file://"):
        parts = urlsplit(text)
        if parts.netloc.lower() in LOCAL_HOSTS:
            return Path(url2pathname(parts.path))  # %20 → space
    return Path(text).expanduser()
