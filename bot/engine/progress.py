"""Progress reporting shared by the engines: forwards strictly increasing percentages to an optional callback."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Progress"]


class Progress:
    """Forwards strictly increasing percentages (clamped to 0..100) to an optional callback."""

    def __init__(self, callback: Callable[[int], None] | None) -> None:
        self._callback = callback
        self._last = -1

    def __call__(self, percent: int) -> None:
        percent = max(0, min(100, int(percent)))
        if self._callback is not None and percent > self._last:
            self._last = percent
            self._callback(percent)
