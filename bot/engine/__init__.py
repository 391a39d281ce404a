"""The local watermark-removal engines.

MarkEngine (bot.engine.mark) is the one the bot uses: it finds the mark with a small segmentation network of
our own and inverts its blend, then lets TextEngine fill the text the network half saw and left. TextEngine
(bot.engine.text), the first engine, finds text with the PP-OCR detector and inpaints it; `unmark bench engine`
compares them. onnxruntime loads only when an engine is loaded.
"""

from __future__ import annotations

from bot.engine.mark import MarkEngine
from bot.engine.text import TextEngine

__all__ = ["MarkEngine", "TextEngine"]
