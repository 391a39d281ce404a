"""The first local engine: finds text-like overlays with the PP-OCR detector bundled in rapidocr and inpaints them.

Kept as a baseline for `unmark bench engine`; the bot uses bot.engine.mark.MarkEngine.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bot.engine.inpaint import fill, paste
from bot.engine.progress import Progress
from bot.engine.rgb import as_rgb
from bot.engine.textmask import Detector, dilation_radius, ink_mask, line_regions

__all__ = ["DEFAULT_MODEL", "TextEngine"]

log = logging.getLogger(__name__)

DETECTOR_PACKAGE = "rapidocr_onnxruntime"
DETECTOR_FILE = Path("models") / "ch_PP-OCRv4_det_infer.onnx"
DEFAULT_THREADS = 2
# Where the progress bar stands after each stage; the inpainting of regions spreads over the gap in between.
PROGRESS_START = 0
PROGRESS_DETECTED = 30
PROGRESS_FILLED = 95
PROGRESS_DONE = 100


def _default_model() -> Path:
    """The detector .onnx shipped inside rapidocr_onnxruntime, located without importing the (slow) package."""
    spec = importlib.util.find_spec(DETECTOR_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations))) / DETECTOR_FILE
    # Not installed: a path that does not exist, so load() reports it as a broken engine.
    return Path(DETECTOR_PACKAGE) / DETECTOR_FILE


DEFAULT_MODEL: Path = _default_model()


class TextEngine:
    """Finds text-like overlays with the PP-OCR detector and inpaints them."""

    def __init__(self, detector: Detector) -> None:
        """Wrap an opened detector; use TextEngine.load() instead."""
        self._detector = detector
        # onnxruntime sessions are thread-safe, but one clean at a time keeps memory and CPU use predictable.
        self._lock = threading.Lock()

    @classmethod
    def load(cls, model_path: Path | None = None, *, threads: int = DEFAULT_THREADS) -> TextEngine:
        """Open the ONNX session; a missing or corrupt file raises EngineBroken with a clear detail."""
        path = Path(model_path) if model_path is not None else DEFAULT_MODEL
        started = time.perf_counter()
        engine = cls(Detector(path, threads))
        log.info("text engine loaded from %s in %.2f s", path, time.perf_counter() - started)
        return engine

    def clean(self, rgb: np.ndarray, progress: Callable[[int], None] | None = None) -> np.ndarray:
        """rgb: HxWx3 uint8 RGB. Returns a new HxWx3 uint8 array; only pixels inside detected text change."""
        rgb = as_rgb(rgb)
        report = Progress(progress)
        with self._lock:
            started = time.perf_counter()
            report(PROGRESS_START)
            height, width = rgb.shape[:2]
            regions = line_regions(self._detector.probability(rgb), width, height)
            detected = time.perf_counter()
            report(PROGRESS_DETECTED)

            out = rgb.copy()
            radius = dilation_radius(width, height)
            changed = 0
            for index, region in enumerate(regions):
                crop = rgb[region.y0 : region.y1, region.x0 : region.x1]
                mask = ink_mask(crop, region.line_mask, radius)
                if mask is not None:
                    paste(out[region.y0 : region.y1, region.x0 : region.x1], fill(crop, mask), mask)
                    changed += int(np.count_nonzero(mask))
                span = PROGRESS_FILLED - PROGRESS_DETECTED
                report(PROGRESS_DETECTED + span * (index + 1) // len(regions))
            report(PROGRESS_DONE)
            log.debug(
                "cleaned %dx%d: %d text regions, %d px filled; detect %.2f s, fill %.2f s",
                width,
                height,
                len(regions),
                changed,
                detected - started,
                time.perf_counter() - detected,
            )
            return out
