"""The engine's lab: watermark synthesis, training and the benchmark (`unmark bench engine`).

Nothing here runs when an image is cleaned: the runtime engine (`bot/engine/`) never imports the lab, which brings
fonts and photos from Debian packages and, for training, torch (the `[train]` extra).
"""
