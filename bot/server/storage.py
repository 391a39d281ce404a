"""FileStore: uploads and results on disk, and the signed, expiring URLs that hand results to clients.

A result URL stands in for PicWish's object-store link: it carries no API key, only an expiry time
and an HMAC of the file name and that time, so it works for exactly one hour and for nothing else.
The signing key is kept beside the files, so URLs given out before a restart still work after it.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

RESULTS_PATH = "/tasks/output/visual_external_watermark_remove"  # the path PicWish's own result URLs use
RESULT_NAME = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.(jpg|png|bmp)$")
MEDIA_TYPES = {"jpg": "image/jpeg", "png": "image/png", "bmp": "image/bmp"}
KEY_FILE = "signing.key"


@dataclass(frozen=True, slots=True)
class FileStore:
    """The ``uploads/`` and ``results/`` folders under one root, and the key that signs result URLs."""

    root: Path
    secret: bytes

    @classmethod
    def open(cls, root: Path) -> FileStore:
        """Create the folders and the signing key if needed (blocking: call it at start-up)."""
        for folder in (root, root / "uploads", root / "results"):
            folder.mkdir(parents=True, exist_ok=True)
        key = root / KEY_FILE
        if not key.exists():
            # Written under another name and moved in place: never a half-written key.
            partial = root / f"{KEY_FILE}.{os.getpid()}"
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(secrets.token_bytes(32))
            os.replace(partial, key)
        return cls(root, key.read_bytes())

    def upload_path(self, task_id: str) -> Path:
        """Where a task's source image waits for its worker."""
        return self.root / "uploads" / task_id

    def result_stem(self, task_id: str) -> Path:
        """A task's result path without the extension (the worker adds the format's)."""
        return self.root / "results" / task_id

    def result_path(self, name: str) -> Path | None:
        """The file behind a result URL's name, or None if the name is not one we could have made."""
        return self.root / "results" / name if RESULT_NAME.match(name) else None

    def signed_url(self, base_url: str, name: str, expires: int) -> str:
        """``{base}/tasks/output/…/<name>?Expires=…&Signature=…``: valid until ``expires``, keyless."""
        query = urlencode({"Expires": expires, "Signature": self._sign(name, str(expires))})
        return f"{base_url.rstrip('/')}{RESULTS_PATH}/{name}?{query}"

    def verify(self, name: str, expires: str, signature: str) -> bool:
        """Whether the signature was made by us for this name and expiry (constant time)."""
        return hmac.compare_digest(self._sign(name, expires), signature)

    def remove(self, task_id: str) -> None:
        """Delete a task's upload and result files, whichever exist (blocking)."""
        for path in (self.upload_path(task_id), *self.root.joinpath("results").glob(f"{task_id}.*")):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def remove_upload(self, task_id: str) -> None:
        """Delete a task's source image once a worker is done with it (blocking)."""
        with contextlib.suppress(FileNotFoundError):
            self.upload_path(task_id).unlink()

    def stored_task_ids(self) -> set[str]:
        """Ids of every task with a file on disk (blocking; for tidying up after a restart)."""
        names = [p.name for folder in ("uploads", "results") for p in self.root.joinpath(folder).iterdir()]
        return {name.split(".", 1)[0] for name in names}

    def _sign(self, name: str, expires: str) -> str:
        return hmac.new(self.secret, f"{name}:{expires}".encode(), hashlib.sha256).hexdigest()
