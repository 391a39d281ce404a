"""Files that installed packages carry (the text detector's model, scikit-image's sample photos), found without
importing the package: one is slow to import, the other is a ``[train]``-only dependency."""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["folder"]


def folder(package: str) -> Path | None:
    """The folder an installed package lives in, or None when it is not installed."""
    spec = importlib.util.find_spec(package)
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(spec.origin).parent if spec.origin else None
