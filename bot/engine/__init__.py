"""The local watermark-removal engines.

MarkEngine (bot.engine.mark) is the one the bot uses: a small segmentation network finds the mark pixel by pixel
and the blend is inverted. TextEngine (bot.engine.text), the first engine, finds text with the PP-OCR detector and
inpaints it; it stays as a baseline for `unmark bench engine`. onnxruntime loads only when an engine is loaded.
"""

from __future__ import annotations

from bot.engine.mark import MarkEngine
from bot.engine.text import TextEngine

__all__ = ["MarkEngine", "TextEngine"]
