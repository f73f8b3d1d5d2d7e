"""Decoding: header sizes before decoding, EXIF rotation, every Pillow mode, and the
TensorFlow and Pillow paths giving the same 28x28 result."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from batchdigits.imaging.decode import (
    UnreadableImage,
    _header_pixels,
    _jpeg_needs_rotation,
    decode_tf,
    read_with_pillow,
)
from batchdigits.imaging.preprocess import normalize
from batchdigits.runtime.lazy import tf


def encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "GIF", "BMP", "JPEG"])
def test_header_pixels(fmt):
    image = Image.new("RGB", (37, 21), "white")
    assert int(_header_pixels(tf().constant(encoded(image, fmt)))) == 37 * 21


def test_header_pixels_unknown_format_and_short_input():
    assert int(_header_pixels(tf().constant(b"hello"))) == 0
    assert int(_header_pixels(tf().constant(b""))) == 0


def test_jpeg_rotation_detected():
    image = Image.new("L", (40, 30), 200)
    exif = Image.Exif()
    exif[0x0112] = 6
    assert bool(_jpeg_needs_rotation(tf().constant(encoded(image, "JPEG", exif=exif))))
    exif[0x0112] = 1
    assert not bool(_jpeg_needs_rotation(tf().constant(encoded(image, "JPEG", exif=exif))))
    assert not bool(_jpeg_needs_rotation(tf().constant(encoded(image, "JPEG"))))


def _little_endian_exif(orientation: int) -> bytes:
    """An APP1 EXIF block in Intel byte order ("II") holding only the orientation."""
    entry = bytes([0x12, 0x01, 0x03, 0x00, 1, 0, 0, 0, orientation, 0, 0, 0])
    return b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x01\x00" + entry + b"\x00\x00\x00\x00"


@pytest.mark.parametrize(("orientation", "rotated"), [(1, False), (3, True), (6, True)])
def test_jpeg_rotation_detected_little_endian(orientation, rotated):
    image = Image.new("L", (40, 30), 200)
    data = encoded(image, "JPEG", exif=_little_endian_exif(orientation))
    assert b"II*" in data
    assert bool(_jpeg_needs_rotation(tf().constant(data))) is rotated
    with Image.open(io.BytesIO(data)) as im:  # Pillow reads the same orientation
        assert im.getexif()[0x0112] == orientation


def test_tf_refuses_over_limit_and_rotated():
    image = Image.new("L", (100, 100), 255)
    with pytest.raises(tf().errors.InvalidArgumentError):
        decode_tf(tf().constant(encoded(image, "PNG")), max_pixels=9999)
    assert decode_tf(tf().constant(encoded(image, "PNG")), max_pixels=10000).shape == (100, 100, 1)
    exif = Image.Exif()
    exif[0x0112] = 8
    with pytest.raises(tf().errors.InvalidArgumentError):
        decode_tf(tf().constant(encoded(image, "JPEG", exif=exif)))
    with pytest.raises(tf().errors.InvalidArgumentError):  # not a format of the fast path
        decode_tf(tf().constant(encoded(image, "TIFF")))
    wide = Image.new("L", (30, 20), 255)  # each dimension read right, not just the product
    for fmt in ("PNG", "GIF", "BMP", "JPEG"):
        assert decode_tf(tf().constant(encoded(wide, fmt))).shape[:2] == (20, 30)


def _digit_images(mnist):
    """The same digit as dark ink on paper in several encodings both decoders read."""
    ink = Image.fromarray(255 - mnist.x_test[11]).resize((84, 84), Image.BICUBIC)
    rgb = Image.merge("RGB", (ink, ink.point(lambda v: min(255, v + 30)), ink))
    rgba = Image.fromarray(np.dstack([np.zeros((28, 28, 3), np.uint8), mnist.x_test[11]]))
    return {
        "gray.png": encoded(ink, "PNG"),
        "rgb.png": encoded(rgb, "PNG"),
        "rgba.png": encoded(rgba, "PNG"),
        "gray.bmp": encoded(ink, "BMP"),
        "rgb.bmp": encoded(rgb, "BMP"),
        "palette.gif": encoded(ink.convert("P"), "GIF"),
        "gray.jpg": encoded(ink, "JPEG", quality=90),
        "rgb.jpg": encoded(rgb, "JPEG", quality=90),
    }


def test_tensorflow_and_pillow_paths_agree(mnist, tmp_path):
    for name, data in _digit_images(mnist).items():
        path = tmp_path / name
        path.write_bytes(data)
        via_tf = normalize(decode_tf(tf().constant(data)))[0]
        via_pillow = normalize(read_with_pillow(str(path)))[0]
        diff = np.abs(via_tf - via_pillow)
        # Lossless formats: rounding only. JPEG: the two libjpeg builds' IDCTs differ a little.
        limit = 4.0 if name.endswith(".jpg") else 1.0
        assert diff.mean() < limit / 4 and np.percentile(diff, 99) <= limit * 8, name


def _reference(mnist, index=11):
    return normalize(mnist.x_test[index])[0]


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F"])
def test_every_pillow_mode_reads_the_same_digit(mnist, tmp_path, mode):
    digit = Image.fromarray(mnist.x_test[11])  # bright ink on black
    if mode in ("I;16", "I", "F"):
        arr = mnist.x_test[11].astype(np.float64) * (257 if mode != "F" else 1)
        image = Image.fromarray(
            arr.astype({"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode])
        )
        fmt = "TIFF"
    else:
        image = digit.convert(mode)
        fmt = "TIFF" if mode in ("CMYK", "LA") else "PNG"
    path = tmp_path / f"d.{fmt.lower()}"
    image.save(path, format=fmt)
    pixels = read_with_pillow(str(path))
    assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] in (1, 2, 3, 4)
    got = normalize(pixels)[0]
    tolerance = 25 if mode == "1" else 4  # 1-bit loses the anti-aliasing
    assert np.abs(got - _reference(mnist)).mean() < tolerance, mode


def test_first_frame_of_animated_gif_and_multipage_tiff(mnist, tmp_path):
    frames = [Image.fromarray(mnist.x_test[i]) for i in (11, 0, 1)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "a.tiff", save_all=True, append_images=frames[1:])
    for name in ("a.gif", "a.tiff"):
        got = normalize(read_with_pillow(str(tmp_path / name)))[0]
        assert np.abs(got - _reference(mnist)).mean() < 4, name
    data = (tmp_path / "a.gif").read_bytes()
    assert decode_tf(tf().constant(data)).shape[:2] == (28, 28)


def test_exif_orientation_applied(mnist, tmp_path):
    upright = Image.fromarray(255 - mnist.x_test[11]).resize((112, 112))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view": store it rotated the other way
    upright.rotate(90, expand=True).save(tmp_path / "r.jpg", exif=exif, quality=95)
    got = normalize(read_with_pillow(str(tmp_path / "r.jpg")))[0]
    assert np.abs(got - normalize(np.asarray(upright))[0]).mean() < 6


def test_pillow_limit_checked_from_header(tmp_path):
    Image.new("L", (300, 200), 255).save(tmp_path / "big.png")
    with pytest.raises(UnreadableImage, match=r"300x200 = 60,000 pixels; the limit is 59,999"):
        read_with_pillow(str(tmp_path / "big.png"), max_pixels=59_999)


@pytest.mark.parametrize(("size", "decoded"), [((1300, 900), (225, 325)), ((640, 500), (250, 320))])
def test_big_jpegs_decoded_scaled_like_pillows_draft(size, decoded, tmp_path):
    """A big photo is decoded at a reduced DCT scale by the fast path, giving exactly the
    pixels of the Pillow fallback (draft mode)."""
    rng = np.random.default_rng(0)
    small = (rng.random((size[1] // 10, size[0] // 10, 3)) * 255).astype(np.uint8)
    photo = Image.fromarray(small).resize(size, Image.BICUBIC)
    path = tmp_path / "photo.jpg"
    photo.save(path, quality=90)
    fast = decode_tf(tf().constant(path.read_bytes())).numpy()
    assert fast.shape[:2] == decoded
    np.testing.assert_array_equal(fast, read_with_pillow(str(path)))
