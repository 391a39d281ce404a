"""Runs the trained watermark segmenter (segmenter.onnx, see bot.lab.train) with onnxruntime on the CPU. No torch.

The network sees a downscaled proxy (long side at most PROXY_MAX_SIDE, both sides multiples of 32, as its encoder
halves five times) and its maps are returned at the proxy's size, with the proxy itself: carrying them to full
resolution is the engine's job (bot.engine.mark), not this module's. PROXY_MAX_SIDE is about the
scale the network was trained at (marks drawn on 256-512 px canvases), so marks look to it as they did in training.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from bot.engine.rgb import as_rgb
from bot.errors import EngineBroken

__all__ = ["MIN_AREA", "MULTIPLE", "PROXY_MAX_SIDE", "Segmentation", "Segmenter", "proxy_size", "to_input", "upsample"]

PROXY_MAX_SIDE = 640
MULTIPLE = 32  # the network's total stride
DEFAULT_THREADS = 2
OUTPUTS = ("mask", "alpha", "colour")
MIN_AREA = 6  # proxy px: smaller specks of the mask are noise, not marks


class Segmentation(NamedTuple):
    """The segmenter's answer on the proxy (h x w, smaller than or about the image)."""

    image: np.ndarray  # hxwx3 float32 RGB in [0, 1]: the proxy the network saw
    mask: np.ndarray  # hxw float32 in [0, 1]: probability that a pixel belongs to a mark
    alpha: np.ndarray  # hxw float32 in [0, 1]: the estimated blend opacity of the mark
    colour: np.ndarray  # hxwx3 float32 in [0, 255]: the estimated colour W of the mark (meaningful on the mark)


def proxy_size(height: int, width: int, max_side: int = PROXY_MAX_SIDE, multiple: int = MULTIPLE) -> tuple[int, int]:
    """(height, width) of the proxy: shrunk to fit max_side (never enlarged beyond the rounding), each side rounded
    to the nearest multiple (at least one)."""
    scale = min(1.0, max_side / max(height, width))
    return (max(multiple, round(height * scale / multiple) * multiple),
            max(multiple, round(width * scale / multiple) * multiple))


def to_input(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """HxWx3 uint8 RGB -> 1x3xhxw float32 in [0, 1] at size (h, w); INTER_AREA when shrinking, to avoid aliasing."""
    h, w = size
    shrinking = h * w < rgb.shape[0] * rgb.shape[1]
    proxy = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return np.ascontiguousarray(proxy.transpose(2, 0, 1)[None], dtype=np.float32) * np.float32(1 / 255)


def upsample(plane: np.ndarray, y0: int, x0: int, h: int, w: int, sy: float, sx: float,
             interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """The h x w full-resolution window at (y0, x0) of a proxy plane (sy, sx: proxy px per full-resolution px), as
    cv2.resize would give it (pixel centres aligned), computed for the window alone: a 12 MP image's planes are never
    made whole."""
    map_x = ((np.arange(x0, x0 + w, dtype=np.float32) + 0.5) * np.float32(sx) - 0.5)[None, :].repeat(h, 0)
    map_y = ((np.arange(y0, y0 + h, dtype=np.float32) + 0.5) * np.float32(sy) - 0.5)[:, None].repeat(w, 1)
    return cv2.remap(plane, map_x, map_y, interpolation, borderMode=cv2.BORDER_REPLICATE)


class Segmenter:
    """An onnxruntime session over segmenter.onnx: input ``image`` (N×3×H×W RGB in [0, 1]), outputs ``mask``,
    ``alpha`` and ``colour`` (W / 255), all through a sigmoid."""

    def __init__(self, session: object, input_name: str) -> None:
        """Wrap an opened session; use Segmenter.load() instead."""
        self._session = session
        self._input = input_name
        # One predict at a time keeps memory predictable (sessions are thread-safe, but a 1024² run is ~100 MB).
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path, *, threads: int = DEFAULT_THREADS) -> Segmenter:
        """Open the model; a missing, corrupt or wrong-shaped file raises EngineBroken."""
        import onnxruntime as ort  # here, so importing bot.engine stays cheap

        path = Path(path)
        if not path.is_file():
            raise EngineBroken(f"segmenter model not found at {path}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            inputs = session.get_inputs()
            outputs = {o.name for o in session.get_outputs()}
            if len(inputs) != 1 or len(inputs[0].shape) != 4 or not set(OUTPUTS) <= outputs:
                raise ValueError(f"expected one NCHW input and outputs {OUTPUTS}, got {sorted(outputs)}")
            segmenter = cls(session, inputs[0].name)
            # A tiny run proves the graph executes, so a broken model fails at load and not mid-job.
            segmenter._run(np.zeros((1, 3, MULTIPLE, MULTIPLE), np.float32))
        except Exception as exc:  # onnxruntime raises its own (non-public) exception types
            raise EngineBroken(f"cannot load segmenter model {path}: {exc}") from exc
        return segmenter

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        return self._session.run(list(OUTPUTS), {self._input: batch})  # type: ignore[attr-defined,no-any-return]

    def predict(self, rgb: np.ndarray, max_side: int = PROXY_MAX_SIDE) -> Segmentation:
        """rgb: HxWx3 uint8 RGB. The network's maps on a proxy of at most max_side (see Segmentation)."""
        rgb = as_rgb(rgb)
        batch = to_input(rgb, proxy_size(*rgb.shape[:2], max_side))
        with self._lock:
            mask, alpha, colour = self._run(batch)
        return Segmentation(
            image=batch[0].transpose(1, 2, 0),
            mask=mask[0, 0],
            alpha=alpha[0, 0],
            colour=colour[0].transpose(1, 2, 0) * np.float32(255),
        )
