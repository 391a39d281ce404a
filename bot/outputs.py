"""OutputFolder: where the shell and `unmark clean` write results, so that no result is ever lost to another."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path, PurePath

MAX_SUFFIX = 10_000  # photo-clean-2.jpg … photo-clean-9999.jpg; past that a folder is not worth searching


@dataclass
class OutputFolder:
    """A folder of results: a name already used by this session, or (without ``overwrite``) by a file already
    there, gets the next free ``-2``, ``-3``… so two inputs called ``photo.jpg`` give two results."""

    path: Path
    overwrite: bool = False  # replace files that were there before; results of this session still never clash
    _taken: set[Path] = field(default_factory=set, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def save(self, filename: str, data: bytes) -> Path:
        """Write ``data`` as ``filename`` or the first free variant of it; return the path written (blocking)."""
        self.path.mkdir(parents=True, exist_ok=True)
        name = PurePath(filename)
        with self._lock:  # results are written from worker threads
            for number in range(1, MAX_SUFFIX):
                candidate = self.path / (name.name if number == 1 else f"{name.stem}-{number}{name.suffix}")
                if candidate in self._taken or not self._write(candidate, data):
                    continue
                self._taken.add(candidate)
                return candidate
        raise FileExistsError(f"{self.path}: every name from {filename} to -{MAX_SUFFIX - 1} is taken")

    def _write(self, path: Path, data: bytes) -> bool:
        if self.overwrite:
            path.write_bytes(data)
            return True
        try:
            # "x": created here or not at all, so a file that appeared since we looked is not overwritten either.
            with path.open("xb") as file:
                file.write(data)
        except FileExistsError:
            return False
        return True
