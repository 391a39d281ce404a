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

Issue 25 added several hundred photos (train 342 against 68: Endless Sky's land photos, KPhotoAlbum's demo album,
Scratch's stages; some Endless Sky ones held out for val and test by a hash of their names) and clean images of
every other kind (KINDS: greyscale photos, product shots on plain grounds, screenshots, rendered document pages,
illustrations) in every split, which training draws marks on as it does on photos and the benchmark checks are
left alone, a row per kind; the constants below the `issue 25` line say which package gives what to which split,
with its licence. A file is in one split only, whatever kind it is drawn as. RESERVED_PACKAGES are kept for an
independent evaluation and never drawn on.

When nothing is installed every list is empty and synthesis falls back to procedural stand-ins (see synth.py).
"""

from __future__ import annotations

import functools
import gzip
import re
import subprocess
import zlib
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
    "BACKGROUND_KINDS",
    "KINDS",
    "RESERVED_PACKAGES",
    "RESERVED_PATHS",
    "SPLITS",
    "FontFile",
    "PhotoSource",
    "Split",
    "fonts",
    "load_logo",
    "load_photo",
    "logos",
    "photo_name",
    "source_file",
    "photo_sources",
    "photos",
]

Split = Literal["train", "val", "test"]
Kind = Literal["photo", "grey", "product", "screenshot", "document", "illustration", "scenetext"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")
# Every kind of clean image the engine must return untouched; the benchmark reports each on its own.
KINDS: tuple[Kind, ...] = ("photo", "grey", "product", "screenshot", "document", "illustration", "scenetext")
# The kinds training draws marks on (and leaves clean), besides its photos: all but real scene text, which it only
# leaves clean (its mirror image is no text).
BACKGROUND_KINDS: tuple[Kind, ...] = ("photo", "grey", "product", "screenshot", "document", "illustration")
# Packages kept for an independent evaluation: no split may draw on them, not even val or test (a test says so).
RESERVED_PACKAGES = ("lxqt-themes", "palapeli-data", "tuxpaint-data", "kodi-data", "sddm-theme-*", "digikam-data",
                     "gcompris-qt-data", "stellarium-data", "scribus-data", "scribus-template", "visp-images-data",
                     "hugin-data", "pingus-data", "wesnoth-*-data", "fotoxx-common", "gwenview", "gimp-help-*",
                     "debian-handbook", "groff")
# Where those packages put their files: no source path may lie under one.
RESERVED_PATHS = ("/usr/share/lxqt/themes", "/usr/share/palapeli", "/usr/share/tuxpaint", "/usr/share/kodi",
                  "/usr/share/sddm", "/usr/share/digikam", "/usr/share/gcompris", "/usr/share/stellarium",
                  "/usr/share/scribus", "/usr/share/visp-images-data", "/usr/share/hugin", "/usr/share/games/pingus",
                  "/usr/share/games/wesnoth", "/usr/share/fotoxx", "/usr/share/gwenview", "/usr/share/gimp/2.0/help",
                  "/usr/share/doc/gimp-help", "/usr/share/doc/debian-handbook", "/usr/share/groff",
                  "/usr/share/doc/groff")

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

# --- issue 25: more photos, and clean images of every kind ---------------------------------------------------------
# endless-sky-data (CC-BY-SA-4.0; GPL-3+ code): 273 landscape, city and interior photographs (the game's planet
# views), 720x360; endless-sky-high-dpi has each at 1440x720, used where installed. A file's split is fixed by a
# hash of its name (HELD_OUT_BUCKETS); one bucket of the train ones is trained on in grey only.
ENDLESS_LAND = Path("/usr/share/games/endless-sky/images/land")
ENDLESS_LAND_2X = Path("/usr/share/games/endless-sky/plugins/endless-sky-high-dpi/images/land")
HELD_OUT_BUCKETS: dict[int, Split] = {0: "val", 1: "test"}  # crc32(name) % 10; the other buckets train
GREY_BUCKET = 2  # of the train buckets: these photos are trained on as greyscale conversions
# kphotoalbum (GPL-2): its demo album, people, pets and places (the Qt logo left out).
KPHOTOALBUM_DEMO = Path("/usr/share/kphotoalbum/demo")
KPHOTOALBUM_NOT_PHOTOS = ("qt-logo.jpg",)
# scratch (media CC-BY-SA-3.0): its stage backgrounds, 480x360 photographs but for a few drawn ones.
SCRATCH_BACKGROUNDS = Path("/usr/share/scratch/Media/Backgrounds")
SCRATCH_DRAWN = ("party-room.jpg", "room1.jpg", "room2.jpg", "room3.jpg", "spotlight-stage.jpg", "woods-and-bench.jpg")
SCRATCH_GREY = ("moon.jpg",)
# Real greyscale photos: opencv-doc's stereo calibration pairs (a person holding a board in a room; a pair shares a
# split) and two basketball frames; scikit-image's grey samples.
OPENCV_GREY_TRAIN = tuple(f"{side}0{i}.jpg" for i in range(1, 8) for side in ("left", "right")) + (
    "basketball1.png", "basketball2.png")
OPENCV_GREY_VAL = tuple(f"{side}0{i}.jpg" for i in (8, 9) for side in ("left", "right"))
OPENCV_GREY_TEST = tuple(f"{side}{i}.jpg" for i in range(11, 15) for side in ("left", "right"))
SKIMAGE_GREY = ("brick.png", "camera.png", "coins.png", "grass.png", "gravel.png", "moon.png")
# Product shots on plain grounds: argyll-doc's (AGPL-3) colorimeters and spectrometers, split by crc32(name) % 4
# (ARGYLL_HELD_OUT; the rest train).
ARGYLL_DOC = Path("/usr/share/doc/argyll-doc")
ARGYLL_PRODUCTS = ("Chroma4", "ColorHug", "ColorMunki", "ColorMunkiCreate", "DTP20", "DTP22", "DTP41", "DTP51", "DTP92",
                   "DTP94", "EX1", "HCFR", "Huey", "JETI_1211", "JETI_1501", "K10A", "SMCube", "Smile", "Spyd2",
                   "Spyd3", "Spyd3x", "Spyd4", "Spyd5", "SpydX", "i1Pro3", "i1d", "i1d3_1", "i1d3_2", "i1m", "i1p",
                   "i1pro2", "mox", "moxxr", "sl", "ss")
ARGYLL_HELD_OUT: dict[int, Split] = {0: "test", 1: "val"}
# Screenshots: train: Kalzium's handbook (kalzium-data, GPL-2+), CImg's demo screens (cimg-doc, CeCILL); val:
# XSane's manual (xsane-common, GPL-2+); test: KPhotoAlbum's handbook.
KDE_HANDBOOK = Path("/usr/share/doc/HTML/en")
CIMG_IMAGES = Path("/usr/share/doc/cimg-dev/html/img")
XSANE_HTML = Path("/usr/share/doc/xsane-common/html")
SCREENSHOT_MIN_PIXELS = 120_000  # the manuals' small pictures are icons and buttons, not screens
# Documents, rendered pages (pdftoppm, from poppler-utils, at DOCUMENT_DPI): train: the R manuals (r-doc-pdf,
# GPL-2), every DOCUMENT_STRIDE-th page; val: gnuplot's manual (gnuplot-doc) and half the Debian reference cards
# (debian-refcard, GPL-3+, one language each: crc32(language) % 2 == 0); test: Asymptote's manual (asymptote-doc,
# GPL-3+) and the other cards.
DOCUMENT_DPI = 100  # an A4 or letter page at about 1 MP
DOCUMENT_STRIDE = 8
R_MANUALS = Path("/usr/share/R/doc/manual")
R_MANUAL_PAGES = {"R-FAQ.pdf": 52, "R-admin.pdf": 85, "R-data.pdf": 41, "R-exts.pdf": 236, "R-intro.pdf": 113,
                  "R-ints.pdf": 81, "R-lang.pdf": 69}
GNUPLOT_MANUAL = Path("/usr/share/doc/gnuplot/gnuplot.pdf")
GNUPLOT_PAGES = tuple(range(1, 311, 24))
ASYMPTOTE_MANUAL = Path("/usr/share/doc/asymptote/asymptote.pdf")
ASYMPTOTE_PAGES = tuple(range(1, 196, 16))
REFCARDS = Path("/usr/share/doc/debian-refcard")
# Illustrations: train: MATE's abstract and desktop backgrounds, Scratch's drawn stages, pysiogame's art4apps
# clip art (GPL-3+; but its food and people); val: GNOME's backgrounds (gnome-backgrounds, CC-BY-SA), art4apps'
# people; test: Lomiri's three artworks and art4apps' food.
MATE_ARTWORK = ("abstract", "desktop")
ART4APPS = Path("/usr/share/games/pysiogame/res/images/art4apps")
ART4APPS_VAL, ART4APPS_TEST = ("people",), ("food",)
GNOME_BACKGROUNDS = BACKGROUNDS / "gnome"
PDF_PAGE = re.compile(r"(.+\.pdf(?:\.gz)?)#(\d+)")  # a document page: the PDF's name, "#", the page (from 1)

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
        *_issue25_sources(),
    )


def _issue25_sources() -> tuple[PhotoSource, ...]:
    """The sources issue 25 added: several hundred more photos, and clean images of every other kind."""
    land = _endless_land()
    art4apps = sorted(p for p in ART4APPS.glob("*/*.jpg"))
    refcards = sorted(REFCARDS.glob("refcard-*.pdf.gz"))
    return (
        # photos
        PhotoSource("endless-sky-land", "endless-sky-data", "train", "photo",
                    tuple(p for name, p in land
                          if _bucket(name) not in HELD_OUT_BUCKETS and _bucket(name) != GREY_BUCKET)),
        PhotoSource("endless-sky-land-val", "endless-sky-data", "val", "photo",
                    tuple(p for name, p in land if HELD_OUT_BUCKETS.get(_bucket(name)) == "val")),
        PhotoSource("endless-sky-land-test", "endless-sky-data", "test", "photo",
                    tuple(p for name, p in land if HELD_OUT_BUCKETS.get(_bucket(name)) == "test")),
        PhotoSource("kphotoalbum-demo", "kphotoalbum", "train", "photo",
                    _existing(p for p in sorted(KPHOTOALBUM_DEMO.glob("*.jpg"))
                              if p.name not in KPHOTOALBUM_NOT_PHOTOS)),
        PhotoSource("scratch-photos", "scratch", "train", "photo",
                    _existing(p for p in sorted(SCRATCH_BACKGROUNDS.glob("*/*.jpg"))
                              if p.name not in SCRATCH_DRAWN + SCRATCH_GREY)),
        # greyscale photos
        PhotoSource("opencv-grey", "opencv-doc", "train", "grey",
                    _existing(OPENCV_DATA / n for n in OPENCV_GREY_TRAIN)),
        PhotoSource("endless-sky-land-grey", "endless-sky-data", "train", "grey",
                    tuple(p for name, p in land if _bucket(name) == GREY_BUCKET)),
        PhotoSource("scratch-grey", "scratch", "train", "grey",
                    _existing(p for p in sorted(SCRATCH_BACKGROUNDS.glob("*/*.jpg")) if p.name in SCRATCH_GREY)),
        PhotoSource("opencv-grey-val", "opencv-doc", "val", "grey",
                    _existing(OPENCV_DATA / n for n in OPENCV_GREY_VAL)),
        PhotoSource("skimage-grey", "scikit-image", "val", "grey",
                    _existing(_skimage_data() / n for n in SKIMAGE_GREY)),
        PhotoSource("opencv-grey-test", "opencv-doc", "test", "grey",
                    _existing(OPENCV_DATA / n for n in OPENCV_GREY_TEST)),
        # product shots on plain grounds
        *(PhotoSource("argyll-products" + ("" if split == "train" else f"-{split}"), "argyll-doc", split, "product",
                      _existing(ARGYLL_DOC / f"{n}.jpg" for n in ARGYLL_PRODUCTS
                                if ARGYLL_HELD_OUT.get(_crc(n) % 4, "train") == split)) for split in SPLITS),
        # screenshots
        PhotoSource("kalzium-handbook", "kalzium-data", "train", "screenshot",
                    _big(sorted((KDE_HANDBOOK / "kalzium").glob("*.png")))),
        PhotoSource("cimg-screens", "cimg-doc", "train", "screenshot",
                    _big(p for p in sorted(CIMG_IMAGES.glob("ss_*.jpg")) if not p.name.startswith("ss_mini"))),
        PhotoSource("xsane-manual", "xsane-common", "val", "screenshot", _big(sorted(XSANE_HTML.glob("*.jpg")))),
        PhotoSource("kphotoalbum-handbook", "kphotoalbum", "test", "screenshot",
                    _big(sorted((KDE_HANDBOOK / "kphotoalbum").glob("*.png")))),
        # documents: rendered pages
        PhotoSource("r-manuals", "r-doc-pdf", "train", "document",
                    tuple(page for name, pages in R_MANUAL_PAGES.items()
                          for page in _pages(R_MANUALS / name, range(1, pages + 1, DOCUMENT_STRIDE)))),
        PhotoSource("gnuplot-manual", "gnuplot-doc", "val", "document", _pages(GNUPLOT_MANUAL, GNUPLOT_PAGES)),
        PhotoSource("debian-refcards-val", "debian-refcard", "val", "document",
                    tuple(page for p in refcards if _crc(_refcard_language(p)) % 2 == 0 for page in _pages(p, (1,)))),
        PhotoSource("asymptote-manual", "asymptote-doc", "test", "document", _pages(ASYMPTOTE_MANUAL, ASYMPTOTE_PAGES)),
        PhotoSource("debian-refcards-test", "debian-refcard", "test", "document",
                    tuple(page for p in refcards if _crc(_refcard_language(p)) % 2 == 1 for page in _pages(p, (1,)))),
        # illustrations
        PhotoSource("mate-artwork", "mate-backgrounds", "train", "illustration",
                    _existing(p for folder in MATE_ARTWORK for p in sorted((BACKGROUNDS / "mate" / folder).glob("*.*"))
                              if p.suffix.lower() in (".jpg", ".png"))),
        PhotoSource("scratch-drawn", "scratch", "train", "illustration",
                    _existing(p for p in sorted(SCRATCH_BACKGROUNDS.glob("*/*.jpg")) if p.name in SCRATCH_DRAWN)),
        PhotoSource("art4apps", "pysiogame", "train", "illustration",
                    tuple(p for p in art4apps if p.parent.name not in ART4APPS_VAL + ART4APPS_TEST)),
        PhotoSource("gnome-backgrounds", "gnome-backgrounds", "val", "illustration",
                    _existing(sorted(GNOME_BACKGROUNDS.glob("*.webp")))),
        PhotoSource("art4apps-val", "pysiogame", "val", "illustration",
                    tuple(p for p in art4apps if p.parent.name in ART4APPS_VAL)),
        PhotoSource("lomiri-artwork", "lomiri-wallpapers-16.04", "test", "illustration",
                    _existing(BACKGROUNDS / n for n in LOMIRI_ARTWORK)),
        PhotoSource("lomiri-artwork-20.04", "lomiri-wallpapers-20.04", "test", "illustration",
                    _existing(BACKGROUNDS / n for n in LOMIRI_2004_ARTWORK)),
        PhotoSource("art4apps-test", "pysiogame", "test", "illustration",
                    tuple(p for p in art4apps if p.parent.name in ART4APPS_TEST)),
    )


def photos(split: Split, kind: Kind = "photo") -> tuple[Path, ...]:
    """The installed photo files of one split and kind, in a fixed order."""
    return tuple(p for s in photo_sources() if s.split == split and s.kind == kind for p in s.paths)


def photo_name(path: Path) -> str:
    """A photo's name for reports: the file name (with a document's page), or a Plasma wallpaper's folder (its
    files are named by size)."""
    plasma = path.parent.name == "images" and path.parent.parent.name == "contents"
    return path.parents[2].name if plasma else path.name


def source_file(path: Path) -> Path:
    """The file on disk a photo path comes from: itself, or a document page's PDF."""
    page = PDF_PAGE.fullmatch(path.name)
    return path.with_name(page[1]) if page else path


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


def load_photo(path: Path, max_pixels: int | None = None, *, grey: bool = False) -> np.ndarray:
    """An HxWx3 uint8 RGB photo, EXIF-rotated, shrunk (INTER_AREA) to at most max_pixels if given; grey: as a
    greyscale photo (three equal channels). A document page (`file.pdf#3`, see photo_sources) is rendered first."""
    rgb = _decode(path, max_pixels)
    if grey:
        rgb = np.repeat(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    return rgb


def _decode(path: Path, max_pixels: int | None) -> np.ndarray:
    page = PDF_PAGE.fullmatch(path.name)
    if page:
        return _shrink(_render_page(path.with_name(page[1]), int(page[2])), max_pixels)
    with PIL.Image.open(path) as image:
        if max_pixels is not None and image.format == "JPEG":
            # JPEG's DCT scaling decodes a 16 MP file at 1/2..1/8 size for a fraction of the time.
            shrink = (image.width * image.height / max_pixels) ** 0.5
            if shrink >= 2:
                image.draft("RGB", (int(image.width / shrink) + 1, int(image.height / shrink) + 1))
        if image.mode in ("RGBA", "LA", "P", "PA") and image.has_transparency_data:
            # clip art and screenshots with transparency: as shown on a white page, not on black
            image = PIL.Image.alpha_composite(PIL.Image.new("RGBA", image.size, "white"), image.convert("RGBA"))
        rgb = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    return _shrink(rgb, max_pixels)


def _shrink(rgb: np.ndarray, max_pixels: int | None) -> np.ndarray:
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
    return tuple(p for p in paths if source_file(p).is_file())


def _endless_land() -> list[tuple[str, Path]]:
    """Endless Sky's land photos as (name, file): the 1440x720 one where endless-sky-high-dpi is installed."""
    out = []
    for path in sorted(ENDLESS_LAND.glob("*.jpg")):
        double = ENDLESS_LAND_2X / f"{path.stem}@2x.jpg"
        out.append((path.name, double if double.is_file() else path))
    return out


def _crc(name: str) -> int:
    return zlib.crc32(name.encode())


def _bucket(name: str) -> int:
    """A file's bucket, 0-9, by its name alone: the same whatever else is installed."""
    return _crc(name) % 10


def _big(paths: Iterable[Path]) -> tuple[Path, ...]:
    """The files among paths at least SCREENSHOT_MIN_PIXELS big (read from their headers)."""
    out = []
    for path in _existing(paths):
        with PIL.Image.open(path) as image:
            if image.width * image.height >= SCREENSHOT_MIN_PIXELS:
                out.append(path)
    return tuple(out)


def _pages(pdf: Path, pages: Iterable[int]) -> tuple[Path, ...]:
    """Pages of an installed PDF (plain or gzipped) as photo paths, `file.pdf#3`; none when it is not installed."""
    return tuple(pdf.with_name(f"{pdf.name}#{page}") for page in pages) if pdf.is_file() else ()


def _refcard_language(path: Path) -> str:
    """refcard-pt_BR-a4.pdf.gz -> pt_BR (a language's A4 and letter cards share a split)."""
    return path.name.removeprefix("refcard-").split("-")[0]


def _render_page(pdf: Path, page: int) -> np.ndarray:
    """One page of a PDF rendered by poppler's pdftoppm at DOCUMENT_DPI, as HxWx3 uint8 RGB."""
    data = gzip.decompress(pdf.read_bytes()) if pdf.suffix == ".gz" else pdf.read_bytes()
    command = ["pdftoppm", "-r", str(DOCUMENT_DPI), "-f", str(page), "-l", str(page), "-png", "-singlefile", "-"]
    try:
        done = subprocess.run(command, input=data, capture_output=True, check=True, timeout=60)
    except FileNotFoundError as error:
        raise FileNotFoundError("rendering document pages needs pdftoppm: run benchmarks/assets.sh") from error
    image = cv2.imdecode(np.frombuffer(done.stdout, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"pdftoppm rendered nothing for page {page} of {pdf}")
    return np.ascontiguousarray(image[..., ::-1])
