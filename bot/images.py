"""Bytes → Image: sniff the real format, enforce PicWish's limits, apply EXIF orientation, normalise."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import PurePath
from typing import Literal

import numpy as np
import PIL.Image
from PIL import ImageOps

from bot.errors import FileTooLarge, ImageTooLarge, ImageTooSmall, NotAnImage

MIN_SIDE = 20
MAX_SIDE = 10_000
MAX_BYTES = 50 * 1024 * 1024
JPEG_QUALITY = 95  # used only when we must re-encode a JPEG (EXIF rotation, local engine output)

Format = Literal["jpeg", "png", "bmp"]
SENT_AS_IS: frozenset[str] = frozenset({"jpeg", "png", "bmp"})
CONVERTED_TO_PNG: frozenset[str] = frozenset({"webp", "gif", "tiff", "heic"})
EXTENSIONS: dict[str, str] = {"jpeg": "jpg", "png": "png", "bmp": "bmp"}

# Pillow's own bomb guard is tied to our pixel limit, so a bomb fails fast instead of warning.
PIL.Image.MAX_IMAGE_PIXELS = MAX_SIDE * MAX_SIDE

try:  # HEIC is optional: readable only with the `heic` extra installed.
    from pillow_heif import register_heif_opener

    register_heif_opener()
    HEIC_READABLE = True
except ImportError:  # pragma: no cover - depends on the environment
    HEIC_READABLE = False


@dataclass(frozen=True, slots=True)
class Image:
    """An image as every remover receives and returns it."""

    data: bytes
    format: Format
    width: int
    height: int
    sha256: str

    @property
    def extension(self) -> str:
        """File extension for this format, without the dot."""
        return EXTENSIONS[self.format]


def sniff(data: bytes) -> str | None:
    """The real format from the first bytes, whatever the file name or mime type claims."""
    head = data[:32]
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"BM") and len(head) >= 26:
        return "bmp"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    if head[4:8] == b"ftyp" and head[8:12] in {b"heic", b"heix", b"mif1", b"msf1", b"heim", b"heis", b"hevc"}:
        return "heic"
    if head.startswith(b"%PDF"):
        return "pdf"
    if head.lstrip().lower().startswith((b"<!doctype html", b"<html")):
        return "html"
    return None


def check_announced_size(size: int | None, limit: int = MAX_BYTES) -> None:
    """Refuse a file by its announced size, before downloading it."""
    if size is not None and size > limit:
        raise FileTooLarge(size, limit)


def load(data: bytes) -> Image:
    """Validate and normalise uploaded bytes into what PicWish accepts, or raise an InputError.

    JPEG, PNG and BMP pass through byte for byte unless EXIF says to rotate; WebP, GIF (first frame),
    TIFF and HEIC become PNG. Dimensions are checked from the header before any pixel is decoded.
    """
    check_announced_size(len(data))
    kind = sniff(data)
    if kind not in SENT_AS_IS and kind not in CONVERTED_TO_PNG or (kind == "heic" and not HEIC_READABLE):
        raise NotAnImage(kind)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PIL.Image.DecompressionBombWarning)
            picture = PIL.Image.open(io.BytesIO(data))
            width, height = picture.size  # read before draft() below shrinks it
            _check_sides(width, height)
            orientation = picture.getexif().get(0x0112, 1) if kind in {"jpeg", "png", "tiff", "webp", "heic"} else 1
            if kind == "jpeg" and orientation == 1:
                # Decoding at 1/8 scale still reads the whole entropy-coded stream, so a truncated or
                # corrupt JPEG is caught at a fraction of the cost of a full decode.
                picture.draft(picture.mode, (picture.width // 8, picture.height // 8))
            picture.load()
    except (PIL.Image.DecompressionBombError, PIL.Image.DecompressionBombWarning):
        raise ImageTooLarge() from None
    except (ImageTooSmall, ImageTooLarge):
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise NotAnImage(kind) from exc

    if kind in SENT_AS_IS and orientation == 1:
        return _image(data, kind, width, height)  # type: ignore[arg-type]
    # Rotated or foreign formats are re-encoded once, from a full-resolution decode.
    picture = PIL.Image.open(io.BytesIO(data))
    picture.seek(0)  # first frame of a GIF
    picture = ImageOps.exif_transpose(picture)
    fmt: Format = kind if kind in SENT_AS_IS else "png"  # type: ignore[assignment]
    _check_sides(*picture.size)
    return encode(picture, fmt)


def inspect(data: bytes) -> Image:
    """Describe trusted bytes (a remover's result) from the header only, without decoding pixels."""
    kind = sniff(data)
    if kind not in SENT_AS_IS:
        raise NotAnImage(kind)
    try:
        width, height = PIL.Image.open(io.BytesIO(data)).size
    except (OSError, SyntaxError, ValueError) as exc:
        raise NotAnImage(kind) from exc
    return _image(data, kind, width, height)  # type: ignore[arg-type]


def encode(picture: PIL.Image.Image, fmt: Format, *, icc_profile: bytes | None = None) -> Image:
    """Encode a Pillow image at full quality in ``fmt``."""
    out = io.BytesIO()
    icc = icc_profile if icc_profile is not None else picture.info.get("icc_profile")
    if fmt == "jpeg":
        if picture.mode not in {"RGB", "L", "CMYK"}:
            picture = picture.convert("RGB")
        picture.save(out, "JPEG", quality=JPEG_QUALITY, subsampling=0, icc_profile=icc)
    elif fmt == "bmp":
        if picture.mode not in {"RGB", "L", "P", "1"}:
            picture = picture.convert("RGB")
        picture.save(out, "BMP")
    else:
        if picture.mode not in {"RGB", "RGBA", "L", "LA", "P", "I", "I;16", "1"}:
            picture = picture.convert("RGBA" if "A" in picture.getbands() else "RGB")
        picture.save(out, "PNG", compress_level=3, icc_profile=icc)
    return _image(out.getvalue(), fmt, picture.width, picture.height)


def to_array(image: Image) -> tuple[np.ndarray, np.ndarray | None, bytes | None]:
    """Decode to (RGB uint8 HxWx3, alpha HxW or None, ICC profile) for the local engine."""
    picture = PIL.Image.open(io.BytesIO(image.data))
    icc = picture.info.get("icc_profile")
    has_alpha = "A" in picture.getbands() or "transparency" in picture.info
    alpha = np.asarray(picture.convert("RGBA").getchannel("A")) if has_alpha else None
    if picture.mode in WIDE_GREY:
        # Pillow converts 16-bit grey to 8 bits by clipping (all but the darkest 256 levels turn white): scale.
        grey = (_wide_pixels(picture) >> 8).astype(np.uint8)
        rgb = np.repeat(grey[..., None], 3, axis=2)
    else:
        rgb = np.asarray(picture.convert("RGB"))
    return rgb, alpha, icc


def from_array(rgb: np.ndarray, alpha: np.ndarray | None, fmt: Format, icc_profile: bytes | None = None, *,
               like: Image | None = None) -> Image:
    """Encode an engine result in the format the image came in (PNG keeps transparency).

    ``like``: the image the result was made from, whose kind of pixels it keeps where the format allows:
    greyscale stays greyscale, 16-bit grey stays 16-bit (unchanged pixels bit for bit), a palette stays a
    palette when the result's colours still fit in one; a greyscale PNG came back RGB and half as big again.
    """
    picture = PIL.Image.fromarray(rgb, "RGB")
    if alpha is not None:
        picture.putalpha(PIL.Image.fromarray(alpha, "L"))
        if fmt != "png":
            picture = picture.convert("RGB")
    if like is not None:
        picture = _in_kind_of(picture, PIL.Image.open(io.BytesIO(like.data)), fmt)
    return encode(picture, fmt, icc_profile=icc_profile)


GREY = frozenset({"1", "L", "LA", "La"})
WIDE_GREY = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
PALETTE_FORMATS = frozenset({"png", "bmp"})


def _in_kind_of(picture: PIL.Image.Image, source: PIL.Image.Image, fmt: Format) -> PIL.Image.Image:
    """``picture`` (RGB or RGBA) in the source's mode, where the format can hold it and nothing is lost."""
    has_alpha = picture.mode == "RGBA"
    if source.mode in GREY or source.mode in WIDE_GREY:
        # A remover may tint the pixels it fills, but a grey photo's result has no colour to keep.
        grey = picture.convert("L")
        if source.mode in WIDE_GREY and fmt == "png" and not has_alpha:
            wide = _wide_pixels(source)
            narrow = np.asarray(grey)
            kept = (wide >> 8).astype(np.uint8) == narrow  # what the engine left alone keeps all 16 bits
            return PIL.Image.fromarray(np.where(kept, wide, narrow.astype(np.uint16) * 257).astype(np.uint16))
        if has_alpha:
            grey.putalpha(picture.getchannel("A"))
        return grey
    if source.mode == "P" and fmt in PALETTE_FORMATS:
        return _as_palette(picture) or picture
    return picture


def _as_palette(picture: PIL.Image.Image) -> PIL.Image.Image | None:
    """The same pixels as a palette image, or None when they need more than 256 colours."""
    pixels = np.asarray(picture)
    channels = pixels.shape[2]
    packed = np.zeros(pixels.shape[:2], np.uint32)
    for channel in range(channels):
        packed = (packed << 8) | pixels[..., channel]
    colours, index = np.unique(packed, return_inverse=True)
    if len(colours) > 256:
        return None
    palette = np.stack([(colours >> (8 * (channels - 1 - c))) & 0xFF for c in range(channels)], axis=1)
    result = PIL.Image.fromarray(index.reshape(pixels.shape[:2]).astype(np.uint8), "P")
    result.putpalette(palette.astype(np.uint8).tobytes(), rawmode="RGBA" if channels == 4 else "RGB")
    return result


def _wide_pixels(picture: PIL.Image.Image) -> np.ndarray:
    return np.clip(np.asarray(picture), 0, 65535).astype(np.uint16)


def result_filename(original: str, result: Image) -> str:
    """``holiday.jpeg`` → ``holiday-clean.jpg``, in the result's real format."""
    stem = PurePath(original).stem or "image"
    return f"{stem}-clean.{result.extension}"


def _check_sides(width: int, height: int) -> None:
    if min(width, height) < MIN_SIDE:
        raise ImageTooSmall(width, height, MIN_SIDE)
    if max(width, height) > MAX_SIDE:
        raise ImageTooLarge(width, height, MAX_SIDE)


def _image(data: bytes, fmt: Format, width: int, height: int) -> Image:
    return Image(data=data, format=fmt, width=width, height=height, sha256=hashlib.sha256(data).hexdigest())
