"""The local watermark-removal engines.

TextEngine (bot.engine.text) is the one the bot uses: it finds text with the PP-OCR detector and inpaints it.
MarkEngine (bot.engine.mark), in development, finds the mark with a small segmentation network of our own and
inverts its blend, then lets the text engine fill the text the network half saw and left; `unmark bench engine`
compares them. onnxruntime loads only when an engine is loaded.
"""

from __future__ import annotations

from bot.engine.mark import MarkEngine
from bot.engine.text import TextEngine

__all__ = ["MarkEngine", "TextEngine"]
