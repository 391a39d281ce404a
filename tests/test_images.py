"""bot.images: real bytes in, a normalised Image or a typed refusal out."""

from __future__ import annotations

import io

import PIL.Image
import pytest

from bot import images, messages
from bot.errors import FileTooLarge, ImageTooLarge, ImageTooSmall, NotAnImage
from tests.conftest import encode, jpeg


def test_jpeg_passes_through_byte_for_byte() -> None:
    data = jpeg(300, 200)
    image = images.load(data)
    assert (image.data, image.format, image.width, image.height) == (data, "jpeg", 300, 200)


@pytest.mark.parametrize("fmt", ["PNG", "BMP"])
def test_png_and_bmp_pass_through(fmt: str) -> None:
    data = encode(PIL.Image.new("RGB", (50, 40), "red"), fmt)
    image = images.load(data)
    assert image.data == data and image.format == fmt.lower()


@pytest.mark.parametrize("fmt", ["WEBP", "GIF", "TIFF"])
def test_other_formats_become_png(fmt: str) -> None:
    data = encode(PIL.Image.new("RGB", (64, 48), "blue"), fmt)
    image = images.load(data)
    assert image.format == "png" and (image.width, image.height) == (64, 48)
    assert PIL.Image.open(io.BytesIO(image.data)).format == "PNG"


def test_animated_gif_keeps_the_first_frame() -> None:
    frames = [PIL.Image.new("RGB", (30, 30), colour) for colour in ("red", "green")]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:])
    picture = PIL.Image.open(io.BytesIO(images.load(out.getvalue()).data)).convert("RGB")
    assert picture.getpixel((5, 5))[0] > 200  # red, not green


def test_a_lying_name_or_mime_type_does_not_matter() -> None:
    png = encode(PIL.Image.new("RGB", (40, 40)), "PNG")
    assert images.sniff(png) == "png"
    assert images.load(png).format == "png"


def test_exif_orientation_is_applied() -> None:
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    data = jpeg(300, 100, exif=exif.tobytes())
    image = images.load(data)
    assert (image.width, image.height) == (100, 300)
    assert PIL.Image.open(io.BytesIO(image.data)).getexif().get(0x0112, 1) == 1


@pytest.mark.parametrize("data, detected", [
    (b"%PDF-1.7 not an image", "pdf"),
    (b"<!DOCTYPE html><html><body>login</body></html>", "html"),
    (b"just some text", None),
    (b"", None),
])
def test_non_images_are_refused(data: bytes, detected: str | None) -> None:
    with pytest.raises(NotAnImage) as caught:
        images.load(data)
    assert caught.value.detected == detected


def test_corrupt_jpeg_is_refused_with_a_plain_sentence() -> None:
    data = jpeg(400, 300)
    with pytest.raises(NotAnImage) as caught:
        images.load(data[: len(data) // 2])
    assert messages.describe(caught.value) == "That file isn't a valid image. Send me a jpg, png or bmp."


def test_tiny_image_is_refused() -> None:
    with pytest.raises(ImageTooSmall) as caught:
        images.load(encode(PIL.Image.new("RGB", (19, 100)), "PNG"))
    assert "19×100 px" in messages.describe(caught.value)


def test_twenty_pixels_is_enough() -> None:
    assert images.load(encode(PIL.Image.new("RGB", (20, 20)), "PNG")).width == 20


def test_huge_dimensions_are_refused_from_the_header() -> None:
    # A 10001×20 PNG is small in bytes; the limit is on the sides.
    with pytest.raises(ImageTooLarge) as caught:
        images.load(encode(PIL.Image.new("L", (10_001, 20)), "PNG"))
    assert "10001×20 px" in messages.describe(caught.value)


def test_decompression_bomb_is_refused_without_decoding() -> None:
    # A 1-bit 10000×10000 PNG compresses to a few KB but is at the limit; 10000×10001 is over it.
    bomb = encode(PIL.Image.new("1", (10_000, 10_001)), "PNG")
    assert len(bomb) < 100_000
    with pytest.raises(ImageTooLarge):
        images.load(bomb)


def test_oversize_file_is_refused_before_decoding() -> None:
    with pytest.raises(FileTooLarge) as caught:
        images.load(b"\xff\xd8\xff" + bytes(images.MAX_BYTES))
    assert messages.describe(caught.value).startswith("That file is 50 MB; the most I can take is 50 MB.")


def test_announced_size_is_checked_before_download() -> None:
    images.check_announced_size(None)
    images.check_announced_size(images.MAX_BYTES)
    with pytest.raises(FileTooLarge):
        images.check_announced_size(images.MAX_BYTES + 1)


def test_result_filename_uses_the_real_format() -> None:
    image = images.load(encode(PIL.Image.new("RGB", (30, 30)), "PNG"))
    assert images.result_filename("holiday.webp", image) == "holiday-clean.png"
    assert images.result_filename("", image) == "image-clean.png"


def test_array_round_trip_keeps_transparency() -> None:
    picture = PIL.Image.new("RGBA", (30, 30), (10, 20, 30, 128))
    image = images.load(encode(picture, "PNG"))
    rgb, alpha, _ = images.to_array(image)
    assert rgb.shape == (30, 30, 3) and alpha is not None and int(alpha[0, 0]) == 128
    back = images.from_array(rgb, alpha, image.format)
    assert PIL.Image.open(io.BytesIO(back.data)).getpixel((0, 0)) == (10, 20, 30, 128)


def test_an_unreadable_heic_says_to_send_a_jpg_or_png() -> None:
    heic = b"\x00\x00\x00\x18ftypheic" + bytes(64)
    assert images.sniff(heic) == "heic"
    with pytest.raises(NotAnImage) as caught:
        images.load(heic)
    assert messages.describe(caught.value) == "I can't read HEIC images here. Send it as a jpg or png instead."
