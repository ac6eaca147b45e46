"""Tests for gan_style.image_io: every format and mode, EXIF, errors, listing."""

import io
import os
import pickle
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from gan_style import image_io
from gan_style.image_io import ImageError, composite, list_images, load_rgb, read_image


def _gradient(h=16, w=24):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack(
        [x * 255 // (w - 1), y * 255 // (h - 1), (x + y) * 255 // (h + w - 2)], axis=-1
    ).astype(np.uint8)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def _png_with_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height but holds one tiny row of data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" + b"\x00" * 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


# --------------------------------------------------------------------- formats

LOSSLESS = [("png", "PNG"), ("bmp", "BMP"), ("tif", "TIFF"), ("tiff", "TIFF")]


@pytest.mark.parametrize("ext,fmt", LOSSLESS)
def test_lossless_formats_round_trip_exactly(tmp_path, ext, fmt):
    rgb = _gradient()
    path = tmp_path / f"img.{ext}"
    Image.fromarray(rgb).save(path)
    decoded = read_image(path)
    assert decoded.format == fmt
    assert decoded.rgb.dtype == np.uint8 and decoded.rgb.shape == (16, 24, 3)
    np.testing.assert_array_equal(decoded.rgb, rgb)
    assert decoded.alpha is None and not decoded.animated


def test_webp_lossless_and_lossy(tmp_path):
    rgb = _gradient()
    Image.fromarray(rgb).save(tmp_path / "a.webp", lossless=True)
    decoded = read_image(tmp_path / "a.webp")
    assert decoded.format == "WEBP"
    np.testing.assert_array_equal(decoded.rgb, rgb)
    Image.fromarray(rgb).save(tmp_path / "b.webp", quality=90)
    lossy = read_image(tmp_path / "b.webp").rgb
    assert lossy.shape == rgb.shape
    assert np.abs(lossy.astype(int) - rgb).mean() < 6


def test_jpeg_matches_pil_and_source(tmp_path):
    rgb = _gradient(32, 48)
    path = tmp_path / "a.JPG"  # upper-case extension
    Image.fromarray(rgb).save(path, format="JPEG", quality=95)
    decoded = read_image(path)
    assert decoded.format == "JPEG"
    with Image.open(path) as img:
        np.testing.assert_array_equal(decoded.rgb, np.asarray(img.convert("RGB")))
    assert np.abs(decoded.rgb.astype(int) - rgb).mean() < 4
    np.testing.assert_array_equal(load_rgb(path), decoded.rgb)


def _textured(h=61, w=83, seed=0):
    """Smooth colour with noise: every chroma subsampling and DCT choice shows."""
    rng = np.random.default_rng(seed)
    return np.clip(_gradient(h, w).astype(int) + rng.integers(-40, 41, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    "options",
    [{"quality": 95}, {"quality": 75, "subsampling": 0}, {"quality": 90, "subsampling": 1},
     {"quality": 85, "progressive": True}, {"quality": 80, "optimize": True},
     {"quality": 100, "subsampling": 0, "icc_profile": b"fake icc profile bytes"}],
)
def test_rgbx_jpeg_decode_equals_pil(tmp_path, options):
    # read_image(rgbx_over=N) decodes plain JPEGs with libjpeg-turbo into a
    # 4-byte buffer; the pixels and everything else must be PIL's.
    path = tmp_path / "a.jpg"
    Image.fromarray(_textured()).save(path, format="JPEG", **options)
    plain, rgbx = read_image(path), read_image(path, rgbx_over=0)
    assert rgbx.rgb.shape == plain.rgb.shape and rgbx.rgb.strides == (83 * 4, 4, 1)
    assert rgbx.rgb.flags.writeable
    np.testing.assert_array_equal(rgbx.rgb, plain.rgb)
    assert (rgbx.icc_profile, rgbx.exif, rgbx.notes, rgbx.format, rgbx.alpha) == (
        plain.icc_profile, plain.exif, plain.notes, plain.format, None)
    assert rgbx.icc_profile == options.get("icc_profile")


def test_rgbx_leaves_other_jpegs_and_formats_to_pil(tmp_path):
    # Grayscale, CMYK, EXIF-rotated JPEGs and other formats: the usual
    # contiguous RGB, as without rgbx.
    Image.fromarray(_textured()[..., 0]).save(tmp_path / "gray.jpg")
    Image.fromarray(_textured()).convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray(_textured()).save(tmp_path / "a.png")
    paths = [tmp_path / "gray.jpg", tmp_path / "cmyk.jpg", tmp_path / "a.png", _oriented(tmp_path, "JPEG", "jpg")]
    for path in paths:
        plain, rgbx = read_image(path), read_image(path, rgbx_over=0)
        assert rgbx.rgb.flags.c_contiguous, path
        np.testing.assert_array_equal(rgbx.rgb, plain.rgb)
        assert rgbx.notes == plain.notes
    # Only images with a side over rgbx_over (the converter's tile size).
    Image.fromarray(_textured()).save(tmp_path / "small.jpg")
    assert read_image(tmp_path / "small.jpg", rgbx_over=83).rgb.flags.c_contiguous
    assert read_image(tmp_path / "small.jpg", rgbx_over=82).rgb.strides == (83 * 4, 4, 1)


def test_rgbx_decodes_the_file_whose_header_was_read(tmp_path, monkeypatch):
    # The pixels come through PIL's own handle: replacing the file after its
    # header was read (a sync tool's atomic rename) cannot mix two images.
    path = tmp_path / "a.jpg"
    Image.fromarray(_textured(60, 80, seed=1)).save(path, quality=95)
    expected = read_image(path).rgb
    orientation_and_exif = image_io._orientation_and_exif

    def replace_after_the_header(img):  # runs between the header and the pixels
        Image.fromarray(_textured(40, 50, seed=2)).save(tmp_path / "b.jpg", quality=95)
        os.replace(tmp_path / "b.jpg", path)
        return orientation_and_exif(img)

    monkeypatch.setattr(image_io, "_orientation_and_exif", replace_after_the_header)
    decoded = read_image(path, rgbx_over=0).rgb
    assert decoded.strides == (80 * 4, 4, 1)
    np.testing.assert_array_equal(decoded, expected)


def test_rgbx_bad_jpegs_get_pils_verdict(tmp_path):
    # libjpeg-turbo refuses on any warning; PIL then decides, so a truncated
    # file is still the same error, and data PIL accepts is still accepted.
    good = io.BytesIO()
    Image.fromarray(_textured(200, 200)).save(good, format="JPEG", quality=90)
    data = good.getvalue()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    assert "truncated" in _reason(tmp_path / "cut.jpg", rgbx_over=0)
    assert _reason(tmp_path / "cut.jpg", rgbx_over=0) == _reason(tmp_path / "cut.jpg")
    # Junk bytes before the end marker: a libjpeg warning PIL lets pass.
    (tmp_path / "junk.jpg").write_bytes(data[:-2] + b"\x00" * 50 + data[-2:])
    junk = read_image(tmp_path / "junk.jpg", rgbx_over=0).rgb
    assert junk.flags.c_contiguous  # PIL's array: libjpeg-turbo refused it
    np.testing.assert_array_equal(junk, read_image(tmp_path / "junk.jpg").rgb)


def test_gif_palette_exact_and_not_animated(tmp_path):
    rgb = np.zeros((8, 12, 3), np.uint8)
    rgb[:, :6] = (255, 0, 0)
    rgb[:, 6:] = (0, 0, 255)
    Image.fromarray(rgb).save(tmp_path / "a.gif")
    decoded = read_image(tmp_path / "a.gif")
    assert decoded.format == "GIF" and not decoded.animated
    np.testing.assert_array_equal(decoded.rgb, rgb)


def test_animated_gif_gives_first_frame_and_says_so(tmp_path):
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    frames = [Image.new("RGB", (10, 6), c) for c in colours]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    decoded = read_image(path)
    assert decoded.animated
    assert decoded.rgb.shape == (6, 10, 3)
    np.testing.assert_array_equal(decoded.rgb, np.full((6, 10, 3), colours[0], np.uint8))
    assert "animated GIF: first frame of 3 converted" in decoded.notes


@pytest.mark.parametrize("ext,fmt", [("webp", "WEBP"), ("png", "PNG")])
def test_animated_webp_and_apng_give_first_frame(tmp_path, ext, fmt):
    frames = [Image.new("RGB", (10, 6), c) for c in [(255, 0, 0), (0, 255, 0)]]
    path = tmp_path / f"anim.{ext}"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, lossless=True)
    decoded = read_image(path)
    assert decoded.animated and decoded.format == fmt
    assert tuple(decoded.rgb[3, 5]) == (255, 0, 0)
    assert f"animated {fmt}: first frame of 2 converted" in decoded.notes


def test_multipage_tiff_is_first_page(tmp_path):
    pages = [Image.new("RGB", (5, 4), (10 * i, 20, 30)) for i in range(1, 3)]
    path = tmp_path / "pages.tif"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    decoded = read_image(path)
    assert decoded.animated
    assert tuple(decoded.rgb[0, 0]) == (10, 20, 30)
    assert any("first page of 2" in n for n in decoded.notes)


# ----------------------------------------------------------------------- modes


def test_grayscale_and_bilevel_become_equal_channels(tmp_path):
    gray = _gradient()[:, :, 0]
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    decoded = read_image(tmp_path / "g.png")
    for c in range(3):
        np.testing.assert_array_equal(decoded.rgb[:, :, c], gray)
    assert decoded.alpha is None

    bits = gray > 128
    Image.fromarray(bits).convert("1").save(tmp_path / "b.bmp")
    rgb = read_image(tmp_path / "b.bmp").rgb
    np.testing.assert_array_equal(rgb[:, :, 1], np.where(bits, 255, 0))


def test_palette_without_and_with_transparency(tmp_path):
    img = Image.new("P", (4, 2))
    img.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    img.putdata([0, 1, 2, 0, 1, 2, 0, 1])
    img.save(tmp_path / "p.png")
    decoded = read_image(tmp_path / "p.png")
    assert decoded.alpha is None
    assert tuple(decoded.rgb[0, 0]) == (255, 0, 0)
    assert tuple(decoded.rgb[0, 1]) == (0, 255, 0)
    assert tuple(decoded.rgb[0, 2]) == (0, 0, 255)

    img.save(tmp_path / "pt.png", transparency=1)  # index 1 (green) transparent
    decoded = read_image(tmp_path / "pt.png")
    assert decoded.alpha is not None
    assert decoded.alpha[0, 1] == 0 and decoded.alpha[0, 0] == 255
    flat = load_rgb(tmp_path / "pt.png")
    assert tuple(flat[0, 1]) == (255, 255, 255)  # transparent -> white
    assert tuple(flat[0, 0]) == (255, 0, 0)

    img.save(tmp_path / "pt.gif", transparency=2)  # GIF transparency too
    flat = load_rgb(tmp_path / "pt.gif")
    assert tuple(flat[0, 2]) == (255, 255, 255) and tuple(flat[0, 1]) == (0, 255, 0)


def test_rgba_composited_on_white_with_exact_values(tmp_path):
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[0, 0] = (200, 100, 0, 128)
    rgba[0, 1] = (10, 20, 30, 0)
    rgba[0, 2] = (10, 20, 30, 255)
    rgba[1, :] = (0, 0, 0, 64)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "cut.png")
    decoded = read_image(tmp_path / "cut.png")
    np.testing.assert_array_equal(decoded.alpha, rgba[:, :, 3])
    np.testing.assert_array_equal(decoded.rgb, rgba[:, :, :3])
    flat = load_rgb(tmp_path / "cut.png")
    # (c * a + 255 * (255 - a)) / 255, rounded to nearest:
    # 200*128 + 255*127 = 57985 -> 227.39; 100*128 + 32385 = 45185 -> 177.20;
    # 0*128 + 32385 -> 127.0; black at a=64: 255*191/255 = 191.
    assert tuple(flat[0, 0]) == (227, 177, 127)
    assert tuple(flat[0, 1]) == (255, 255, 255)
    assert tuple(flat[0, 2]) == (10, 20, 30)
    assert tuple(flat[1, 0]) == (191, 191, 191)
    on_black = load_rgb(tmp_path / "cut.png", background=(0, 0, 0))
    assert tuple(on_black[0, 0]) == (100, 50, 0)  # 200*128/255 = 100.39, 50.2


def test_la_and_webp_alpha_kept(tmp_path):
    la = np.zeros((2, 2, 2), np.uint8)
    la[..., 0] = 90
    la[..., 1] = [[0, 255], [255, 0]]
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    decoded = read_image(tmp_path / "la.png")
    np.testing.assert_array_equal(decoded.alpha, la[..., 1])
    assert (decoded.rgb == 90).all()
    assert tuple(load_rgb(tmp_path / "la.png")[0, 0]) == (255, 255, 255)

    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:2, :, 3] = 255
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.webp", lossless=True)
    decoded = read_image(tmp_path / "a.webp")
    np.testing.assert_array_equal(decoded.alpha, rgba[..., 3])


def test_cmyk_tiff_and_jpeg(tmp_path):
    cmyk = np.zeros((8, 8, 4), np.uint8)
    cmyk[:, :4] = (0, 255, 255, 0)  # red
    cmyk[:, 4:] = (0, 0, 0, 0)  # white (no ink)
    Image.fromarray(cmyk, mode="CMYK").save(tmp_path / "c.tif")
    decoded = read_image(tmp_path / "c.tif")
    assert decoded.rgb.shape == (8, 8, 3)
    assert tuple(decoded.rgb[0, 0]) == (255, 0, 0)
    assert tuple(decoded.rgb[0, 7]) == (255, 255, 255)
    assert any("CMYK" in n for n in decoded.notes)

    Image.fromarray(cmyk, mode="CMYK").save(tmp_path / "c.jpg", quality=95)
    rgb = read_image(tmp_path / "c.jpg").rgb
    assert np.abs(rgb[2, 1].astype(int) - (255, 0, 0)).max() < 12
    assert np.abs(rgb[2, 6].astype(int) - (255, 255, 255)).max() < 12


def test_sixteen_bit_gray_png_and_tiff(tmp_path):
    values = np.array([[0, 0x1234, 0x80FF, 0xFFFF]], np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    Image.fromarray(values).save(tmp_path / "g16.tif")
    for name in ("g16.png", "g16.tif"):
        decoded = read_image(tmp_path / name)
        np.testing.assert_array_equal(decoded.rgb[0, :, 0], [0x00, 0x12, 0x80, 0xFF])
        assert "16-bit image scaled to 8 bits" in decoded.notes


def test_sixteen_bit_rgb_png(tmp_path):
    # Pillow cannot write 48-bit PNG, so build one: 1x2 RGB, 16 bits/sample.
    px = np.array([[[0x1234, 0xABCD, 0x00FF], [0xFFFF, 0x0100, 0x7F80]]], ">u2")
    raw = b"\x00" + px[0].tobytes()
    png = (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 1, 16, 2, 0, 0, 0))
        + _png_chunk(b"IDAT", zlib.compress(raw))
        + _png_chunk(b"IEND", b"")
    )
    (tmp_path / "rgb16.png").write_bytes(png)
    decoded = read_image(tmp_path / "rgb16.png")
    np.testing.assert_array_equal(decoded.rgb[0], px[0].astype(np.uint16) >> 8)
    assert "16-bit image scaled to 8 bits" in decoded.notes


def _png16(pixels: np.ndarray, colour_type: int, trns: bytes) -> bytes:
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in pixels)
    height, width = pixels.shape[:2]
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0))
        + _png_chunk(b"tRNS", trns)
        + _png_chunk(b"IDAT", zlib.compress(raw))
        + _png_chunk(b"IEND", b"")
    )


def test_sixteen_bit_png_transparent_colour_key(tmp_path):
    # A 16-bit PNG's tRNS chunk names one transparent grey or colour, in 16 bits.
    grey = np.array([[1000, 5, 1000, 65535]], np.uint16)
    (tmp_path / "g.png").write_bytes(_png16(grey, 0, struct.pack(">H", 1000)))
    np.testing.assert_array_equal(read_image(tmp_path / "g.png").alpha, [[0, 255, 0, 255]])
    # RGB: PIL keeps the high bytes only, and every colour within 1/256 of a
    # black key would go with it (deep shadows), so the key is not applied.
    rgb = np.array([[[0, 0, 0], [200, 100, 50], [256, 0, 0], [1000, 2000, 3000]]], np.uint16)
    (tmp_path / "c.png").write_bytes(_png16(rgb, 2, struct.pack(">HHH", 0, 0, 0)))
    decoded = read_image(tmp_path / "c.png")
    assert decoded.alpha is None
    assert "16-bit transparent colour key (tRNS) not applied: the image is kept opaque" in decoded.notes


def test_to_srgb_converts_through_the_profile_and_survives_unusable_ones(adobe_rgb_icc):
    from PIL import ImageCms

    from gan_style.image_io import to_srgb

    rgb = np.array([[[255, 0, 0], [0, 128, 0], [40, 40, 200]]], np.uint8)
    assert to_srgb(rgb, None) is rgb
    srgb_icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    assert np.abs(to_srgb(rgb, srgb_icc).astype(int) - rgb).max() <= 1
    # Adobe RGB's red lies outside sRGB: clipped to sRGB red; its mid green is more saturated than sRGB's.
    adobe = to_srgb(rgb, adobe_rgb_icc)
    assert tuple(adobe[0, 0]) == (255, 0, 0) and adobe[0, 1, 1] > 128 and adobe[0, 1, 0] == 0
    # A profile that reads but cannot be converted from (Lab), and one that does not read.
    lab_icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    for icc in (lab_icc, b"not a profile"):
        notes = []
        assert to_srgb(rgb, icc, notes) is rgb
        assert notes and "ICC profile unusable" in notes[0]


def test_sixteen_bit_rgb_tiff(tmp_path):
    tifffile = pytest.importorskip(
        "tifffile", reason="tifffile writes the 48-bit TIFF Pillow cannot"
    )
    px = (np.arange(2 * 3 * 3).reshape(2, 3, 3) * 7000).astype(np.uint16)
    tifffile.imwrite(tmp_path / "rgb16.tif", px, photometric="rgb")
    decoded = read_image(tmp_path / "rgb16.tif")
    np.testing.assert_array_equal(decoded.rgb, px >> 8)


def test_int32_and_float_tiff(tmp_path):
    ints = np.array([[0, 256, 65535]], np.int32)
    Image.fromarray(ints).save(tmp_path / "i.tif")
    decoded = read_image(tmp_path / "i.tif")
    np.testing.assert_array_equal(decoded.rgb[0, :, 0], [0, 1, 255])

    floats = np.array([[0.0, 0.5, 1.0]], np.float32)
    Image.fromarray(floats).save(tmp_path / "f.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "f.tif").rgb[0, :, 0], [0, 128, 255])

    wide = np.array([[-1.0, 0.0, 3.0]], np.float32)  # out of 0..1: stretched
    Image.fromarray(wide).save(tmp_path / "w.tif")
    decoded = read_image(tmp_path / "w.tif")
    np.testing.assert_array_equal(decoded.rgb[0, :, 0], [0, 64, 255])  # 1/4*255=63.75
    assert any("stretched" in n for n in decoded.notes)


# ------------------------------------------------------------------------ EXIF


def _oriented(tmp_path, fmt, ext):
    # Stored 20 wide x 30 high; a red 8x8 block at the stored top-left corner.
    rgb = np.full((30, 20, 3), 255, np.uint8)
    rgb[:8, :8] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    exif[0x010F] = "gan_style test camera"  # Make: must survive
    path = tmp_path / f"o.{ext}"
    Image.fromarray(rgb).save(path, format=fmt, exif=exif.tobytes(), quality=95)
    return path


@pytest.mark.parametrize("fmt,ext", [("JPEG", "jpg"), ("PNG", "png")])
def test_exif_orientation_6_rotates_clockwise(tmp_path, fmt, ext):
    decoded = read_image(_oriented(tmp_path, fmt, ext))
    assert decoded.rgb.shape == (20, 30, 3)  # now 30 wide x 20 high
    # Rotating 90 degrees clockwise moves the top-left block to the top-right.
    top_right = decoded.rgb[1:7, -7:-1].astype(int)
    top_left = decoded.rgb[1:7, 1:7].astype(int)
    assert np.abs(top_right - (255, 0, 0)).max() < 10
    assert np.abs(top_left - (255, 255, 255)).max() < 10
    assert "EXIF orientation 6 applied" in decoded.notes
    # The returned EXIF keeps the other tags but not the orientation, so
    # writing it back into the (already upright) output cannot rotate twice.
    exif = Image.Exif()
    exif.load(decoded.exif)
    assert 0x0112 not in exif
    assert exif[0x010F] == "gan_style test camera"


def test_tiff_tags_are_carried_as_exif(tmp_path):
    # A TIFF has no EXIF block: its descriptive tags are its metadata. They
    # reach the output's EXIF; its layout tags (size, strips) and the
    # orientation (applied) do not.
    exif = Image.Exif()
    exif[0x010F] = "gan_style test camera"  # Make
    exif[0x8298] = "(c) gan_style"  # Copyright
    exif[0x0112] = 6
    Image.fromarray(np.zeros((30, 20, 3), np.uint8)).save(tmp_path / "t.tif", exif=exif.tobytes())
    decoded = read_image(tmp_path / "t.tif")
    assert decoded.rgb.shape == (20, 30, 3)
    carried = Image.Exif()
    carried.load(decoded.exif)
    assert dict(carried) == {0x010F: "gan_style test camera", 0x8298: "(c) gan_style"}
    # A TIFF without any of those tags carries none.
    Image.fromarray(np.zeros((3, 2, 3), np.uint8)).save(tmp_path / "plain.tif")
    assert read_image(tmp_path / "plain.tif").exif is None


@pytest.mark.parametrize("orientation", range(1, 9))
def test_tiff_orientation_is_applied_once(tmp_path, orientation):
    # Pillow's TIFF plugin turns TIFFs upright while loading: the result must
    # equal the PNG with the same tag, which Pillow leaves to us.
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[:4, :6] = 255
    rgb[:, 25:, 1] = 200
    exif = Image.Exif()
    exif[0x0112] = orientation
    decoded = {}
    for fmt, ext in (("TIFF", "tif"), ("PNG", "png")):
        Image.fromarray(rgb).save(tmp_path / f"o.{ext}", format=fmt, exif=exif.tobytes())
        decoded[fmt] = read_image(tmp_path / f"o.{ext}")
    np.testing.assert_array_equal(decoded["TIFF"].rgb, decoded["PNG"].rgb)
    assert decoded["TIFF"].rgb.shape == ((30, 20, 3) if orientation >= 5 else (20, 30, 3))


def test_grey_colour_profile_is_not_put_on_rgb_pixels(tmp_path):
    from PIL import ImageCms

    # ImageCms cannot build a GRAY profile; a Lab one is as foreign to RGB pixels.
    lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    rgb_profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    assert lab[16:20] == b"Lab "
    Image.fromarray(_gradient()[:, :, 0]).save(tmp_path / "g.png", icc_profile=lab)
    decoded = read_image(tmp_path / "g.png")
    assert decoded.icc_profile is None
    assert any("colour profile dropped" in note for note in decoded.notes)
    Image.fromarray(_gradient()).save(tmp_path / "c.png", icc_profile=rgb_profile)
    assert read_image(tmp_path / "c.png").icc_profile == rgb_profile


def test_jfif_and_avif_names_decode(tmp_path):
    Image.fromarray(_gradient()).save(tmp_path / "a.jfif", format="JPEG", quality=95)
    assert read_image(tmp_path / "a.jfif").format == "JPEG"
    if "AVIF" not in Image.SAVE:
        pytest.skip("this Pillow has no AVIF plugin")
    Image.fromarray(_gradient()).save(tmp_path / "b.avif", quality=95)
    decoded = read_image(tmp_path / "b.avif")
    assert decoded.format == "AVIF" and decoded.rgb.shape == (16, 24, 3)


def test_a_pipe_named_like_an_image_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "stream.jpg"
    os.mkfifo(fifo)
    assert "not a regular file" in _reason(fifo)
    assert image_io.header_pixels(fifo) == 0


# ---------------------------------------------------------------------- errors


def _reason(path, **kwargs):
    with pytest.raises(ImageError) as info:
        read_image(path, **kwargs)
    err = info.value
    assert err.path == str(path)
    assert str(err) == f"{path}: {err.reason}"
    assert isinstance(err, ValueError)
    return err.reason


def test_error_missing_and_directory(tmp_path):
    assert _reason(tmp_path / "nope.jpg") == "file not found"
    assert "directory" in _reason(tmp_path)


def test_error_zero_byte(tmp_path):
    (tmp_path / "empty.png").touch()
    assert _reason(tmp_path / "empty.png") == "empty file (0 bytes)"
    with pytest.raises(ImageError, match="empty file"):
        image_io.read_image_bytes(b"", name="x")


def test_error_text_named_jpg(tmp_path):
    (tmp_path / "notes.jpg").write_text("this is not a JPEG\n" * 10)
    assert _reason(tmp_path / "notes.jpg").startswith("not an image")


def test_error_unsupported_format_is_not_an_image(tmp_path):
    # PIL could open a PPM, but only the listed formats are allowed.
    Image.new("RGB", (4, 4)).save(tmp_path / "x.ppm")
    os.rename(tmp_path / "x.ppm", tmp_path / "x.png")
    assert _reason(tmp_path / "x.png").startswith("not an image")


def test_error_truncated_jpeg_is_not_padded(tmp_path):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="JPEG", quality=90)
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    assert "truncated" in _reason(tmp_path / "cut.jpg")


def test_error_truncated_and_corrupt_png(tmp_path):
    buf = io.BytesIO()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, "PNG")
    data = buf.getvalue()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    assert "truncated" in _reason(tmp_path / "cut.png")
    bad = bytearray(data)
    start = data.index(b"IDAT") + 20
    bad[start : start + 16] = b"\xff" * 16  # damage the compressed pixels
    (tmp_path / "bad.png").write_bytes(bytes(bad))
    reason = _reason(tmp_path / "bad.png")
    assert reason == "corrupt image data (PNG chunk IDAT fails its CRC check)"


def test_error_unreadable_file(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("running as root: file permissions do not stop reading")
    path = tmp_path / "locked.png"
    Image.new("RGB", (2, 2)).save(path)
    path.chmod(0)
    try:
        assert "permission denied" in _reason(path)
    finally:
        path.chmod(0o644)


def test_max_pixels_checked_from_header_before_decoding(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(_png_with_header(5000, 4000))  # 20 MP claimed, ~60 bytes held
    reason = _reason(path, max_pixels=1_000_000)
    assert reason.startswith("too many pixels")
    assert "5000x4000" in reason and "1,000,000" in reason
    # Without the limit the same file gets as far as decoding, and fails
    # there: so the message above came from the header alone.
    assert "too many pixels" not in _reason(path)
    # A real image within the limit passes.
    Image.new("RGB", (10, 10)).save(tmp_path / "ok.png")
    assert read_image(tmp_path / "ok.png", max_pixels=100).rgb.shape == (10, 10, 3)
    assert _reason(tmp_path / "ok.png", max_pixels=99).startswith("too many pixels")


def test_decompression_bomb_refused(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_with_header(20000, 20000))  # 400 MP > PIL's 2x limit
    reason = _reason(path)
    assert reason.startswith("decompression bomb refused") and "--max_pixels" in reason


def test_a_max_pixels_above_pils_guard_lets_big_images_through(tmp_path, monkeypatch):
    # A big print master must be convertible: max_pixels is the limit then.
    # PIL's guard is shrunk here so the image can stay small.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    Image.new("RGB", (50, 50), (9, 8, 7)).save(tmp_path / "master.png")  # 2,500 > 2 x 1,000
    assert _reason(tmp_path / "master.png").startswith("decompression bomb refused")
    assert read_image(tmp_path / "master.png", max_pixels=2500).rgb.shape == (50, 50, 3)
    assert Image.MAX_IMAGE_PIXELS == 2500  # raised, for every decoding thread
    assert _reason(tmp_path / "master.png", max_pixels=2499).startswith("too many pixels")
    assert Image.MAX_IMAGE_PIXELS == 2500  # never lowered


def test_global_truncated_switch_refused(tmp_path, monkeypatch):
    Image.new("RGB", (2, 2)).save(tmp_path / "ok.png")
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    assert "LOAD_TRUNCATED_IMAGES" in _reason(tmp_path / "ok.png")


def test_image_error_pickles():
    err = pickle.loads(pickle.dumps(ImageError("/x/y.png", "empty file (0 bytes)")))
    assert err.path == "/x/y.png" and err.reason == "empty file (0 bytes)"
    assert str(err) == "/x/y.png: empty file (0 bytes)"


def test_read_image_bytes_matches_file(tmp_path):
    Image.fromarray(_gradient()).save(tmp_path / "a.png")
    from_file = read_image(tmp_path / "a.png")
    from_bytes = image_io.read_image_bytes((tmp_path / "a.png").read_bytes(), name="a")
    np.testing.assert_array_equal(from_bytes.rgb, from_file.rgb)
    with pytest.raises(ImageError, match="^record 7: not an image"):
        image_io.read_image_bytes(b"hello", name="record 7")


# ------------------------------------------------------------------- composite


def test_composite_validates_and_passes_through():
    rgb = np.zeros((2, 2, 3), np.uint8)
    assert composite(rgb, None) is rgb
    with pytest.raises(ValueError, match="alpha"):
        composite(rgb, np.zeros((3, 2), np.uint8))
    with pytest.raises(ValueError, match="rgb"):
        composite(rgb.astype(np.float32), None)
    with pytest.raises(ValueError, match="background"):
        composite(rgb, np.zeros((2, 2), np.uint8), background=(0, 300, 0))


def test_composite_matches_float_formula_on_all_alphas():
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (600, 256, 3), dtype=np.uint8)  # > one row chunk
    alpha = np.tile(np.arange(256, dtype=np.uint8), (600, 1))
    bg = (30, 140, 250)
    expect = np.floor(
        (rgb * (alpha[..., None] / 255.0) + np.array(bg) * (1 - alpha[..., None] / 255.0))
        + 0.5
        + 1e-9
    )
    np.testing.assert_array_equal(composite(rgb, alpha, bg), expect.astype(np.uint8))


# ------------------------------------------------------------------- listing


def test_list_images(tmp_path):
    for rel in [
        "b.jpg",
        "A.PNG",
        "sub/c.webp",
        "sub/deeper/d.TIFF",
        "sub/e.gif",
        "f.bmp",
        "g.jpeg",
        "h.tif",
        "i.jfif",
        "j.avif",
        "notes.txt",
        ".hidden.jpg",
        "._b.jpg",
        ".cache/x.jpg",
        "out/styled.jpg",
    ]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert found == sorted(found)
    assert set(found) == {
        "A.PNG",
        "b.jpg",
        "f.bmp",
        "g.jpeg",
        "h.tif",
        "i.jfif",
        "j.avif",
        "out/styled.jpg",
        "sub/c.webp",
        "sub/deeper/d.TIFF",
        "sub/e.gif",
    }
    excluded = list_images(tmp_path, exclude=tmp_path / "out")
    assert "out/styled.jpg" not in [p.relative_to(tmp_path).as_posix() for p in excluded]
    assert len(excluded) == len(found) - 1
    both = list_images(tmp_path, exclude=[str(tmp_path / "out"), tmp_path / "sub"])
    assert len(both) == 7
    flat = [p.name for p in list_images(tmp_path, recursive=False)]
    assert flat == ["A.PNG", "b.jpg", "f.bmp", "g.jpeg", "h.tif", "i.jfif", "j.avif"]
    with pytest.raises(FileNotFoundError, match="nowhere"):
        list_images(tmp_path / "nowhere")
    with pytest.raises(NotADirectoryError):
        list_images(tmp_path / "b.jpg")


# ------------------------------------------------------------------ real data


def test_real_grayscale_jpeg_from_horse2zebra(shared_data):
    train_b = shared_data / "horse2zebra" / "trainB"
    files = list_images(train_b)
    assert len(files) == 1334
    gray = None
    for path in files:
        with Image.open(path) as img:
            if img.mode == "L":
                gray = path
                break
    assert gray is not None, "README says 7 trainB images are grayscale"
    decoded = read_image(gray)
    assert decoded.rgb.shape == (256, 256, 3)
    np.testing.assert_array_equal(decoded.rgb[..., 0], decoded.rgb[..., 2])
