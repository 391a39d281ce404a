"""Runs the trained watermark segmenter (segmenter.onnx, see bot.lab.train) with onnxruntime on the CPU. No torch.

The network sees a downscaled proxy (long side at most PROXY_MAX_SIDE, both sides multiples of 32, as its encoder
halves five times) and its maps are returned at the proxy's size, with the proxy itself: carrying them to full
resolution is the engine's job (bot.engine.mark), not this module's. PROXY_MAX_SIDE is about the
scale the network was trained at (marks drawn on 256-512 px canvases), so marks look to it as they did in training.

Two kinds of graph are run, both with input ``image`` (N×3×H×W RGB in [0, 1]); which one a file is comes from the
note beside it (its .json: ``"kind": "probability"``, or its ``outputs``), or, without a note, from its outputs:

- ``heads`` (bot.lab.train's LiteUNet, segmenter.onnx): outputs ``mask``, ``alpha`` and ``colour``;
- ``probability`` (a finder fine-tuned from pretrained weights, bot.lab.finetune: finder.onnx): one output, the
  mask probability. The engine uses only the mask, so alpha and colour come back as zeros.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from bot.engine.rgb import as_rgb
from bot.errors import EngineBroken

__all__ = ["KINDS", "MIN_AREA", "MULTIPLE", "PROXY_MAX_SIDE", "Segmentation", "Segmenter", "model_kind", "proxy_size",
           "to_input", "upsample"]

PROXY_MAX_SIDE = 640
MULTIPLE = 32  # the network's total stride
DEFAULT_THREADS = 2
OUTPUTS = ("mask", "alpha", "colour")
KINDS = ("heads", "probability")  # three outputs (OUTPUTS), or the mask probability alone
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


def model_kind(path: Path, outputs: list[str]) -> str:
    """The kind (KINDS) of the graph at path with these outputs: from its note (path.with_suffix(".json")) when it
    has one, else from the outputs."""
    note_path = Path(path).with_suffix(".json")
    note = json.loads(note_path.read_text()) if note_path.is_file() else {}
    kind = note.get("kind") or ("heads" if set(OUTPUTS) <= set(note.get("outputs", outputs)) else "probability")
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r} in {note_path}")
    if kind == "heads" and not set(OUTPUTS) <= set(outputs):
        raise ValueError(f"expected outputs {OUTPUTS}, got {sorted(outputs)}")
    if kind == "probability" and len(outputs) != 1:
        raise ValueError(f"expected one probability output, got {sorted(outputs)}")
    return str(kind)


class Segmenter:
    """An onnxruntime session over segmenter.onnx (outputs ``mask``, ``alpha`` and ``colour`` = W / 255, all through
    a sigmoid) or over a one-output finder (the mask probability); input ``image``, N×3×H×W RGB in [0, 1]."""

    def __init__(self, session: object, input_name: str, outputs: tuple[str, ...] = OUTPUTS) -> None:
        """Wrap an opened session; use Segmenter.load() instead. outputs: OUTPUTS, or the one probability's name."""
        self._session = session
        self._input = input_name
        self._outputs = list(outputs)
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
            outputs = [o.name for o in session.get_outputs()]
            if len(inputs) != 1 or len(inputs[0].shape) != 4:
                raise ValueError(f"expected one NCHW input, got {len(inputs)}")
            kind = model_kind(path, outputs)
            segmenter = cls(session, inputs[0].name, OUTPUTS if kind == "heads" else tuple(outputs))
            # A tiny run proves the graph executes, so a broken model fails at load and not mid-job.
            segmenter._run(np.zeros((1, 3, MULTIPLE, MULTIPLE), np.float32))
        except Exception as exc:  # onnxruntime raises its own (non-public) exception types
            raise EngineBroken(f"cannot load segmenter model {path}: {exc}") from exc
        return segmenter

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        return self._session.run(self._outputs, {self._input: batch})  # type: ignore[attr-defined,no-any-return]

    def predict(self, rgb: np.ndarray, max_side: int = PROXY_MAX_SIDE) -> Segmentation:
        """rgb: HxWx3 uint8 RGB. The network's maps on a proxy of at most max_side (see Segmentation)."""
        rgb = as_rgb(rgb)
        batch = to_input(rgb, proxy_size(*rgb.shape[:2], max_side))
        with self._lock:
            maps = self._run(batch)
        mask = maps[0]
        if len(maps) == len(OUTPUTS):
            alpha, colour = maps[1], maps[2]
        else:  # a probability-only finder: the engine reads the mask alone
            alpha, colour = np.zeros_like(mask), np.zeros((1, 3, *mask.shape[2:]), np.float32)
        return Segmentation(
            image=batch[0].transpose(1, 2, 0),
            mask=mask[0, 0],
            alpha=alpha[0, 0],
            colour=colour[0].transpose(1, 2, 0) * np.float32(255),
        )
