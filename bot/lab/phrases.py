"""Draws the strings that synthetic watermarks say (credits, site names, handles, stock-photo words, CJK notices) and
the ones real text in a scene says (signs, shop fronts, labels, pages), which must be left alone."""

from __future__ import annotations

import numpy as np

__all__ = ["cjk_phrase", "latin_phrase", "scene_phrase", "short_phrase", "stamp_phrase"]

NAMES = ("Anna Berg", "J. Müller", "Studio Nord", "Lumen Photo", "PixelHaus", "M. Rossi", "Kai Tanaka",
         "Oak & Pine", "Fotograf Lind", "Blue Hour Images", "Élise Moreau", "R. Kowalski", "Northlight",
         "Sara Okafor", "Wild Frame", "D. Alvarez", "Casa Foto", "Nils Ek", "Urban Lens", "T. Nguyen")
WORDS = ("SAMPLE", "PREVIEW", "PROOF", "DRAFT", "COPYRIGHT", "WATERMARK", "DO NOT COPY", "STOCK", "CONFIDENTIAL",
         "NOT FOR SALE", "DEMO", "COMP", "PROTECTED", "LICENSED", "MUSTER", "ÉCHANTILLON")
SITES = ("photo", "pics", "stock", "images", "lens", "foto", "snap", "shots", "gallery", "pixel", "frame", "studio")
TLDS = ("com", "net", "de", "io", "co.uk", "fr", "org", "photo")
CJK = ("版权所有", "样片", "水印", "禁止转载", "摄影作品", "图片来源", "样本", "仅供预览",
       "サンプル", "見本", "著作権", "写真", "無断転載禁止",
       "샘플", "저작권", "미리보기")
SIGNS = ("OPEN", "EXIT", "STOP", "CAFE", "Bakery", "PHARMACY", "Hotel Central", "No Parking", "SALE", "Main St",
         "Platform 2", "Bus Stop", "Fresh Fruit", "Books", "Pizza & Pasta", "PUSH", "PULL", "Entrance", "Toilets",
         "Station Road", "Market Square", "Closed on Sundays", "Gate B12", "Keep Clear", "Coffee", "Museum", "Bar",
         "POLICE", "TAXI", "Apotheke", "Bäckerei", "Rue de la Paix", "Ausgang", "Sortie", "Kiosk", "Fish & Chips")
PAGE_WORDS = ("the", "of", "and", "river", "morning", "table", "city", "was", "light", "over", "with", "house",
              "garden", "new", "year", "from", "report", "chapter", "page", "price", "total", "water", "road")
SCENE_CJK = ("出口", "入口", "营业中", "药店", "咖啡", "停车场", "駅", "出口専用", "営業中", "약국", "출구")


def latin_phrase(rng: np.random.Generator) -> str:
    """A typical single watermark: a word, a credit, a site or a handle, sometimes on two lines."""
    name, word, site = _pick(rng, NAMES), _pick(rng, WORDS), _site(rng)
    year = int(rng.integers(2005, 2026))
    templates = (word, f"© {name}", f"© {year} {name}", site, f"@{_handle(name)}", f"Photo: {name}", name,
                 f"{word}\n{site}", f"{name}\n{site}", f"© {name}. All rights reserved.")
    text = _pick(rng, templates)
    return text.upper() if rng.random() < 0.2 else text


def short_phrase(rng: np.random.Generator) -> str:
    """A short string for a tiled lattice: one line, a word, site or name."""
    name = _pick(rng, NAMES)
    text = _pick(rng, (_pick(rng, WORDS), _site(rng), f"© {name}", name, f"@{_handle(name)}"))
    return text.upper() if rng.random() < 0.2 else text


def stamp_phrase(rng: np.random.Generator) -> str:
    """What a corner stamp says: a credit, a site or a handle."""
    name = _pick(rng, NAMES)
    return _pick(rng, (f"© {name}", _site(rng), f"@{_handle(name)}", name, f"{name} | {_site(rng)}"))


def cjk_phrase(rng: np.random.Generator) -> str:
    """A Chinese, Japanese or Korean watermark notice, sometimes with a Latin credit after it."""
    text = _pick(rng, CJK)
    return f"{text} © {_pick(rng, NAMES)}" if rng.random() < 0.3 else text


def scene_phrase(rng: np.random.Generator, *, cjk: bool = False) -> str:
    """What real text in a photo says: a sign, a shop front, a number, or a few lines of a printed page."""
    if cjk:
        return _pick(rng, SCENE_CJK)
    kind = rng.random()
    if kind < 0.6:
        text = _pick(rng, SIGNS)
    elif kind < 0.75:
        if rng.random() < 0.5:
            text = str(int(rng.integers(1, 2000)))  # a house number
        else:
            text = f"{int(rng.integers(1, 100))}.{int(rng.integers(0, 100)):02d}"  # a price
    else:
        rows = []  # a printed page
        for _ in range(int(rng.integers(2, 5))):
            rows.append(" ".join(_pick(rng, PAGE_WORDS) for _ in range(int(rng.integers(2, 6)))))
        text = "\n".join(rows)
    return text.upper() if rng.random() < 0.25 else text


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _handle(name: str) -> str:
    return "".join(c for c in name.lower() if c.isascii() and c.isalnum())


def _site(rng: np.random.Generator) -> str:
    site = f"{_pick(rng, SITES)}{_pick(rng, SITES)}.{_pick(rng, TLDS)}"
    return f"www.{site}" if rng.random() < 0.4 else site
