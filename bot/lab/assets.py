"""Finds the photos, fonts and logos that synthesis draws on, with a fixed train/test split, and loads them.

Everything comes from Debian packages that `benchmarks/assets.sh` installs; nothing is downloaded at run time.
The split never changes with what happens to be installed: a file belongs to a split by the package (and, inside
opencv-doc, the file name) it comes from, so the benchmark's held-out set stays unseen by training.

- train photos: mate-backgrounds nature (12), plasma-workspace-wallpapers photos (7) and artwork (19), UKUI
  artwork (12: sharp-edged graphics the network must learn are not marks), opencv-doc `examples/data` photos (18);
  scene text (no mark): opencv-doc `scenetext_segmented_word01-04`; fonts: DejaVu, Liberation 2, Noto
  Sans/Serif/Mono/Display (Latin), WenQuanYi Micro Hei (CJK); logos: Oxygen icons (256 px; 128 px apps).
- val photos (never trained on; for choosing thresholds and measuring false marks without touching the test
  set): lomiri-wallpapers-20.04's two photos, four plasma photos, four opencv-doc photos, scikit-image's eight
  colour sample photos (when the `[train]` extra installed it: faces, animals, objects, space); scene text:
  `scenetext_segmented_word05` and opencv-doc's and scikit-image's other photos of real text (products, a
  newspaper, a document, a sign, a page; all grey); fonts: FreeFont and Roboto (Latin; unseen by training, like
  the test fonts), the train split's CJK one; logos: the train split's.
- test photos: lomiri-wallpapers-16.04 (14; the one artwork, umang, is left out); scene text: opencv-doc
  `scenetext01-06`; fonts: Lato, Open Sans, Inter, URW base35, WenQuanYi Zen Hei (CJK); logos: GNOME icons
  (256 px) and opencv-doc's two OpenCV logos.

When nothing is installed every list is empty and synthesis falls back to procedural stand-ins (see synth.py).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import PIL.Image
from PIL import ImageOps

from bot.engine import packages

__all__ = [
    "SPLITS",
    "FontFile",
    "PhotoSource",
    "Split",
    "fonts",
    "load_logo",
    "load_photo",
    "logos",
    "photo_name",
    "photo_sources",
    "photos",
]

Split = Literal["train", "val", "test"]
Kind = Literal["photo", "scenetext"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")

BACKGROUNDS = Path("/usr/share/backgrounds")
WALLPAPERS = Path("/usr/share/wallpapers")
OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
OPENCV_TEXT = Path("/usr/share/doc/opencv-doc/examples/text")
FONTS = Path("/usr/share/fonts")
ICONS = Path("/usr/share/icons")

PLASMA_PHOTOS = ("BytheWater", "ColdRipple", "DarkestHour", "FallenLeaf", "Grey", "OneStandsOut", "summer_1am")
VAL_PLASMA_PHOTOS = ("ColorfulCups", "EveningGlow", "Kite", "Path")
PLASMA_ARTWORK = ("Altai", "Autumn", "Canopee", "Cascade", "Cluster", "Elarun", "Flow", "FlyingKonqui", "Honeywave",
                  "IceCold", "Kay", "Kokkini", "MilkyWay", "Opal", "PastelHills", "Patak", "SafeLanding", "Shell",
                  "Volna")
PLASMA_LONG_SIDE = 2560  # each wallpaper ships in many sizes; the largest at most this decodes fast enough
# Natural-looking colour photos among opencv-doc's samples (the rest are calibration boards, masks, drawings).
OPENCV_PHOTOS = ("aero1", "aero3", "aloeL", "apple", "baboon", "Blender_Suzanne1", "board", "butterfly",
                 "ela_original", "fruits", "HappyFish", "left", "leuvenA", "licenseplate_motion",
                 "orange", "pca_test1", "squirrel_cls", "starry_night")
VAL_OPENCV_PHOTOS = ("building", "home", "messi5", "stuff")
VAL_OPENCV_TEXT = ("box_in_scene.png", "imageTextR.png", "sudoku.png")  # real text, not marks: must stay
VAL_SKIMAGE_TEXT = ("page.png", "text.png")
UKUI_ARTWORK = ("2004default.jpg", "calla.png", "city.png", "desert.png", "firstgeneration.jpg", "fluent-color.png",
                "focal-ubuntukylin.png", "goldfish.png", "rhythm.jpg", "rollpaper.png", "string.jpg", "the-mouse.jpg")
# scikit-image's bundled samples that are colour photographs (its other samples are grey or drawings).
SKIMAGE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg", "ihc.png",
                  "motorcycle_left.png", "retina.jpg", "rocket.jpg")
LOMIRI_ARTWORK = ("umang_by_Abhishek_Mudgal.jpg",)  # a colour gradient, not a photograph
# lomiri-wallpapers-20.04 shares the folder and the "_by_" naming with 16.04; its photos are the val split's and
# its artworks are left out, so none of them may fall into the test glob.
LOMIRI_2004_PHOTOS = ("Infinite-Sea_by_Aury88.jpg", "Kleiber_by_Lukas_Baubkus.jpg")
LOMIRI_2004_ARTWORK = ("Fossa_by_Jasper_Roks.jpg", "Painting-Colors_by__herobrine7gamer.jpg")

# Glob patterns under /usr/share/fonts; CJK fonts are flagged so only they get CJK strings.
TRAIN_FONTS = ("truetype/dejavu/DejaVuSans*.ttf", "truetype/dejavu/DejaVuSerif*.ttf",
               "truetype/liberation2/Liberation*.ttf",
               "truetype/noto/NotoSans-*.ttf", "truetype/noto/NotoSerif-*.ttf", "truetype/noto/NotoSansMono-*.ttf",
               "truetype/noto/NotoSansDisplay-*.ttf", "truetype/noto/NotoSerifDisplay-*.ttf")
TRAIN_CJK_FONTS = ("truetype/wqy/wqy-microhei.ttc",)
# Val's own Latin fonts, which training never draws either, so that val sees how marks in new fonts fare.
VAL_FONTS = ("truetype/freefont/Free*.ttf", "truetype/roboto/unhinted/RobotoTTF/Roboto-*.ttf",
             "truetype/roboto/unhinted/RobotoCondensed-*.ttf")
TEST_FONTS = ("truetype/lato/Lato-*.ttf", "truetype/open-sans/OpenSans-*.ttf", "opentype/inter/Inter*.otf",
              "opentype/urw-base35/*.otf")
TEST_CJK_FONTS = ("truetype/wqy/wqy-zenhei.ttc",)
NOT_TEXT_FONTS = ("D050000L", "StandardSymbols")  # URW's dingbats and symbols have no letters

# Icon categories whose pictures look like logos; mimetypes (paper sheets), actions (arrows) and Oxygen's applets
# (panel screenshots) do not.
LOGO_CATEGORIES = ("apps", "categories", "devices", "emblems", "emotes", "places", "status")
TRAIN_LOGOS = tuple(f"oxygen/base/256x256/{c}/*.png" for c in LOGO_CATEGORIES) + ("oxygen/base/128x128/apps/*.png",)
TEST_LOGOS = tuple(f"gnome/256x256/{c}/*.png" for c in LOGO_CATEGORIES)
TEST_OPENCV_LOGOS = ("opencv-logo.png", "opencv-logo-white.png")


@dataclass(frozen=True, slots=True)
class FontFile:
    """A font face on disk: a .ttf/.otf, or one face (index) of a .ttc collection."""

    path: Path
    index: int = 0
    cjk: bool = False  # covers the CJK watermark strings (Latin too)

    @property
    def family(self) -> str:
        """The family part of the file name (Lato-BoldItalic -> Lato; FreeSansBoldOblique -> FreeSans), so draws
        can weigh families, not faces."""
        return re.sub(r"(Bold|Italic|Oblique)+$", "", self.path.stem.split("-")[0])

    @property
    def name(self) -> str:
        """A short name for reports."""
        return self.path.stem if self.index == 0 else f"{self.path.stem}#{self.index}"


@dataclass(frozen=True, slots=True)
class PhotoSource:
    """One Debian package's photos, all in one split."""

    name: str
    package: str
    split: Split
    kind: Kind
    paths: tuple[Path, ...]


def photo_sources() -> tuple[PhotoSource, ...]:
    """Every photo source with the files that are installed (an uninstalled package has no paths)."""
    plasma = [_largest_wallpaper(WALLPAPERS / name) for name in PLASMA_PHOTOS]
    artwork = [_largest_wallpaper(WALLPAPERS / name) for name in PLASMA_ARTWORK]
    return (
        PhotoSource("mate-nature", "mate-backgrounds", "train", "photo",
                    _existing(sorted((BACKGROUNDS / "mate" / "nature").glob("*.jpg")))),
        PhotoSource("plasma-photos", "plasma-workspace-wallpapers", "train", "photo", _existing(plasma)),
        PhotoSource("plasma-artwork", "plasma-workspace-wallpapers", "train", "photo", _existing(artwork)),
        PhotoSource("opencv-data", "opencv-doc", "train", "photo",
                    _existing(OPENCV_DATA / f"{name}.jpg" for name in OPENCV_PHOTOS)),
        PhotoSource("ukui-artwork", "ukui-wallpapers", "train", "photo",
                    _existing(BACKGROUNDS / name for name in UKUI_ARTWORK)),
        PhotoSource("opencv-scenetext-words", "opencv-doc", "train", "scenetext",
                    _existing(OPENCV_TEXT / f"scenetext_segmented_word0{i}.jpg" for i in range(1, 5))),
        PhotoSource("lomiri-20.04", "lomiri-wallpapers-20.04", "val", "photo",
                    _existing(BACKGROUNDS / name for name in LOMIRI_2004_PHOTOS)),
        PhotoSource("plasma-photos-val", "plasma-workspace-wallpapers", "val", "photo",
                    _existing(_largest_wallpaper(WALLPAPERS / name) for name in VAL_PLASMA_PHOTOS)),
        PhotoSource("opencv-data-val", "opencv-doc", "val", "photo",
                    _existing(OPENCV_DATA / f"{name}.jpg" for name in VAL_OPENCV_PHOTOS)),
        PhotoSource("skimage-data", "scikit-image", "val", "photo",
                    _existing(_skimage_data() / name for name in SKIMAGE_PHOTOS)),
        PhotoSource("opencv-scenetext-words-val", "opencv-doc", "val", "scenetext",
                    _existing([OPENCV_TEXT / "scenetext_segmented_word05.jpg"])),
        PhotoSource("opencv-text-val", "opencv-doc", "val", "scenetext",
                    _existing(OPENCV_DATA / name for name in VAL_OPENCV_TEXT)),
        PhotoSource("skimage-text", "scikit-image", "val", "scenetext",
                    _existing(_skimage_data() / name for name in VAL_SKIMAGE_TEXT)),
        PhotoSource("lomiri-16.04", "lomiri-wallpapers-16.04", "test", "photo",
                    _existing(p for p in sorted(BACKGROUNDS.glob("*_by_*.jpg"))
                              if p.name not in LOMIRI_ARTWORK + LOMIRI_2004_PHOTOS + LOMIRI_2004_ARTWORK)),
        PhotoSource("opencv-scenetext", "opencv-doc", "test", "scenetext",
                    _existing(OPENCV_TEXT / f"scenetext0{i}.jpg" for i in range(1, 7))),
    )


def photos(split: Split, kind: Kind = "photo") -> tuple[Path, ...]:
    """The installed photo files of one split and kind, in a fixed order."""
    return tuple(p for s in photo_sources() if s.split == split and s.kind == kind for p in s.paths)


def photo_name(path: Path) -> str:
    """A photo's name for reports: the file name, or a Plasma wallpaper's folder (its files are named by size)."""
    plasma = path.parent.name == "images" and path.parent.parent.name == "contents"
    return path.parents[2].name if plasma else path.name


def fonts(split: Split) -> tuple[FontFile, ...]:
    """The installed font faces of one split (val has Latin fonts of its own and the train split's CJK one), in a
    fixed order; empty when none is installed."""
    latin = {"train": TRAIN_FONTS, "val": VAL_FONTS, "test": TEST_FONTS}[split]
    cjk = TEST_CJK_FONTS if split == "test" else TRAIN_CJK_FONTS
    found = [FontFile(p) for pattern in latin for p in sorted(FONTS.glob(pattern))
             if not p.stem.startswith(NOT_TEXT_FONTS)]
    found += [FontFile(p, cjk=True) for pattern in cjk for p in sorted(FONTS.glob(pattern))]
    return tuple(dict.fromkeys(found))  # DejaVuSans* also matches DejaVuSansMono*: keep the first of each


def logos(split: Split) -> tuple[Path, ...]:
    """The installed RGBA logo files of one split (val draws the train split's), in a fixed order; empty when none
    is installed."""
    patterns = TEST_LOGOS if split == "test" else TRAIN_LOGOS
    found = [p for pattern in patterns for p in sorted(ICONS.glob(pattern))]
    if split == "test":
        found += _existing(OPENCV_DATA / name for name in TEST_OPENCV_LOGOS)
    return tuple(dict.fromkeys(found))


def load_photo(path: Path, max_pixels: int | None = None) -> np.ndarray:
    """An HxWx3 uint8 RGB photo, EXIF-rotated, shrunk (INTER_AREA) to at most max_pixels if given."""
    with PIL.Image.open(path) as image:
        if max_pixels is not None and image.format == "JPEG":
            # JPEG's DCT scaling decodes a 16 MP file at 1/2..1/8 size for a fraction of the time.
            shrink = (image.width * image.height / max_pixels) ** 0.5
            if shrink >= 2:
                image.draft("RGB", (int(image.width / shrink) + 1, int(image.height / shrink) + 1))
        rgb = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    h, w = rgb.shape[:2]
    if max_pixels is not None and h * w > max_pixels:
        scale = (max_pixels / (h * w)) ** 0.5
        rgb = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(rgb)


@functools.lru_cache(maxsize=256)
def load_logo(path: Path) -> np.ndarray:
    """An HxWx4 uint8 RGBA logo (straight alpha), cropped to its visible pixels; cached, so do not modify it."""
    with PIL.Image.open(path) as image:
        rgba = np.asarray(image.convert("RGBA"))
    if rgba[..., 3].min() == 255:
        # A logo without transparency (a JPEG-like PNG): treat near-white paper as transparent.
        rgba = rgba.copy()
        rgba[..., 3] = np.where(rgba[..., :3].min(axis=2) > 240, 0, 255).astype(np.uint8)
    ys, xs = np.nonzero(rgba[..., 3] > 8)
    if ys.size:
        rgba = rgba[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    rgba = np.ascontiguousarray(rgba)
    rgba.flags.writeable = False
    return rgba


def _largest_wallpaper(folder: Path) -> Path:
    """One size of a Plasma wallpaper (sizes are in the file names): the largest whose long side is at most
    PLASMA_LONG_SIDE, else the smallest there is."""
    fitting: list[tuple[int, str, Path]] = []
    bigger: list[tuple[int, str, Path]] = []
    for path in (folder / "contents" / "images").glob("*x*.*"):
        try:
            w, h = (int(v) for v in path.stem.split("x"))
        except ValueError:
            continue
        if max(w, h) <= PLASMA_LONG_SIDE:
            fitting.append((-w * h, path.name, path))
        else:
            bigger.append((w * h, path.name, path))
    return min(fitting or bigger)[2] if fitting or bigger else folder / "missing"


def _skimage_data() -> Path:
    """scikit-image's bundled sample folder; a path that does not exist when it is not installed."""
    return (packages.folder("skimage") or Path("/nonexistent")) / "data"


def _existing(paths: Iterable[Path]) -> tuple[Path, ...]:
    return tuple(p for p in paths if p.is_file())
