"""The one tree of failures a job can end in; each carries a stable ``code`` stored in the jobs table.

    UnmarkError                   code
    ├── InputError                the person can fix it
    │   ├── NotAnImage            not_an_image      unknown, corrupt or lying format
    │   ├── ImageTooSmall         too_small         a side under 20 px
    │   ├── ImageTooLarge         too_large         a side over 10000 px, or a decompression bomb
    │   ├── FileTooLarge          file_too_large    more bytes than we (or the platform) can take
    │   ├── UnreachableLink       unreachable_link  a typed URL we (or PicWish) could not fetch
    │   ├── FileUnavailable       file_unavailable  the chat platform would not serve a shared file
    │   └── UnreadableFile        unreadable_file   a local path (shell, CLI) that cannot be read
    ├── QuotaExceeded             quota_exceeded    the chat's daily limit is used up
    ├── Interrupted               interrupted       a restart cut the job off and it cannot be finished
    └── RemovalFailed             removal_failed    the remover gave up on this image (state -1)
        ├── RemoverBusy           remover_busy      429 after our retries; try again shortly
        ├── RemoverUnavailable    remover_down      5xx, network, timeouts, state -2
        ├── InvalidApiKey         invalid_api_key   401: the operator's key was rejected
        ├── RemovalTimedOut       timed_out         state -8, or our polling deadline passed
        ├── ResultExpired         result_expired    the result URL or task is gone
        └── EngineBroken          engine_broken     the local engine's model cannot be loaded

Errors carry data, never prose: the sentences live in ``bot.messages``.
"""

from __future__ import annotations


class UnmarkError(Exception):
    """Root of every failure we expect; ``code`` is what the jobs table records."""

    code = "error"


class InputError(UnmarkError):
    """Something about the image or link the person sent; they can fix it."""

    code = "bad_input"


class NotAnImage(InputError):
    """The bytes are not an image we can read (whatever the name or mime type said)."""

    code = "not_an_image"

    def __init__(self, detected: str | None = None) -> None:
        super().__init__(detected or "unknown")
        self.detected = detected


class ImageTooSmall(InputError):
    """A side is shorter than the API accepts."""

    code = "too_small"

    def __init__(self, width: int, height: int, minimum: int) -> None:
        super().__init__(f"{width}x{height} < {minimum}")
        self.width, self.height, self.minimum = width, height, minimum


class ImageTooLarge(InputError):
    """A side is longer than the API accepts (or the pixel count is a decompression bomb)."""

    code = "too_large"

    def __init__(self, width: int | None = None, height: int | None = None, maximum: int = 10_000) -> None:
        super().__init__(f"{width}x{height} > {maximum}")
        self.width, self.height, self.maximum = width, height, maximum


class FileTooLarge(InputError):
    """The file has more bytes than the limit that applies (ours, PicWish's or the platform's)."""

    code = "file_too_large"

    def __init__(self, size: int | None, limit: int) -> None:
        super().__init__(f"{size} > {limit} bytes")
        self.size, self.limit = size, limit


class UnreachableLink(InputError):
    """A link the person typed could not be downloaded."""

    code = "unreachable_link"

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


class FileUnavailable(InputError):
    """The chat platform would not hand over a file that was shared (deleted, or a missing permission)."""

    code = "file_unavailable"

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


class UnreadableFile(InputError):
    """A local file (shell or CLI) that does not exist or cannot be read."""

    code = "unreadable_file"

    def __init__(self, path: str, reason: str = "") -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


class QuotaExceeded(UnmarkError):
    """The chat has used its images for today (UTC)."""

    code = "quota_exceeded"

    def __init__(self, limit: int, resets_at: int) -> None:
        super().__init__(f"limit {limit}")
        self.limit, self.resets_at = limit, resets_at


class Interrupted(UnmarkError):
    """A stop or a crash cut the job off, and the restart could not finish it (its source is gone, or its hour)."""

    code = "interrupted"


class RemovalFailed(UnmarkError):
    """The remover could not clean this image."""

    code = "removal_failed"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail)
        self.detail = detail


class RemoverBusy(RemovalFailed):
    """Rate limited (429) even after backing off."""

    code = "remover_busy"

    def __init__(self, detail: str = "", retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class RemoverUnavailable(RemovalFailed):
    """Server errors, network failures or timeouts talking to the remover."""

    code = "remover_down"


class InvalidApiKey(RemovalFailed):
    """PicWish rejected the key (401): an operator problem, not the user's."""

    code = "invalid_api_key"


class RemovalTimedOut(RemovalFailed):
    """Processing took longer than the remover or our deadline allows."""

    code = "timed_out"


class ResultExpired(RemovalFailed):
    """The result (or the task) is no longer available."""

    code = "result_expired"


class EngineBroken(RemovalFailed):
    """The local engine's model file is missing or corrupt."""

    code = "engine_broken"


def _codes(root: type[UnmarkError]) -> frozenset[str]:
    return frozenset({root.code}).union(*(_codes(sub) for sub in root.__subclasses__()))


# Jobs that ended in one of these were never tried: the person's input (a typo, a text file) or their quota.
# They stay recorded, but a success rate is over the images we tried to clean.
REFUSALS: frozenset[str] = _codes(InputError) | {QuotaExceeded.code}
