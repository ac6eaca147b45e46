"""Catalog conversion: formats, alpha, bad files, resume, shards, path safety."""

import hashlib
import json
import os
import pathlib

import numpy as np
import pytest
from catalog_fixtures import write_bad_files
from PIL import Image

from gan_style import convert, image_io
from gan_style.networks import build_generator
from gan_style.translator import Translator


@pytest.fixture(scope="module")
def translator():
    return Translator(build_generator("resnet_6blocks", base_filters=4, seed=7))


def noise(height, width, channels=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)


def save(path, array, fmt=None, **options):
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format=fmt, **options)
    return path


def records(output, name="manifest.jsonl"):
    with open(pathlib.Path(output) / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def by_rel(rows):
    return {row["rel"]: row for row in rows}


def tree_digest(root):
    """sha1 of every file (path, bytes, mtime) under root: proves nothing changed."""
    h = hashlib.sha1()
    for path in sorted(pathlib.Path(root).rglob("*")):
        if path.is_file() and not path.is_symlink():
            h.update(str(path).encode())
            h.update(path.read_bytes())
            h.update(str(path.stat().st_mtime_ns).encode())
    return h.hexdigest()


def run(translator, source, output, **kwargs):
    kwargs.setdefault("progress", False)
    # These tests compare outputs with float32 Translator calls; bfloat16
    # conversion (what "auto" picks on some CPUs) has its own tests.
    kwargs.setdefault("precision", "float32")
    return convert.convert_catalog(translator, source, output, **kwargs)


def test_every_format_converts_at_its_own_size(translator, tmp_path):
    src = tmp_path / "in"
    rgba = noise(30, 41, 4, seed=1)
    rgba[:10, :, 3] = 0  # a transparent band: a cut-out's background
    frames = [Image.fromarray(noise(20, 24, seed=s)).convert("P") for s in (2, 3, 4)]
    (src / "anim").mkdir(parents=True)
    frames[0].save(src / "anim" / "spin.gif", save_all=True, append_images=frames[1:])
    cmyk = Image.fromarray(noise(24, 24, seed=5)).convert("CMYK")
    (src / "print").mkdir()
    cmyk.save(src / "print" / "cmyk.jpg")
    sixteen = (np.arange(32 * 40, dtype=np.uint16).reshape(32, 40) * 50).astype(np.uint16)
    Image.fromarray(sixteen).save(src / "deep16.png")
    save(src / "photo.jpg", noise(37, 53, seed=6))
    save(src / "cutout.png", rgba)
    save(src / "shop" / "item.webp", noise(48, 64, seed=7), quality=90)
    save(src / "shop" / "item2.WEBP", noise(48, 64, seed=8), fmt="WEBP", quality=90)
    save(src / "legacy.bmp", noise(13, 7, seed=9))
    save(src / "scan.tif", noise(40, 33, seed=10))
    save(src / "gray.png", noise(21, 22, 1, seed=11)[:, :, 0])
    save(src / "dot.png", noise(1, 1, seed=12))
    Image.fromarray(noise(16, 16, seed=13)).convert("P").save(src / "palette.png")

    summary = run(translator, src, tmp_path / "out", batch_size=2)
    assert (summary.converted, summary.skipped, summary.failed) == (12, 0, 0)
    assert summary.exit_code == 0
    rows = by_rel(records(tmp_path / "out"))
    assert len(rows) == 12 and all(r["status"] == "converted" for r in rows.values())
    expected = {
        "anim/spin.gif": ("anim/spin.png", "PNG", (20, 24)),
        "print/cmyk.jpg": ("print/cmyk.jpg", "JPEG", (24, 24)),
        "deep16.png": ("deep16.png", "PNG", (32, 40)),
        "photo.jpg": ("photo.jpg", "JPEG", (37, 53)),
        "cutout.png": ("cutout.png", "PNG", (30, 41)),
        "shop/item.webp": ("shop/item.webp", "WEBP", (48, 64)),
        "shop/item2.WEBP": ("shop/item2.WEBP", "WEBP", (48, 64)),
        "legacy.bmp": ("legacy.bmp", "BMP", (13, 7)),
        "scan.tif": ("scan.tif", "TIFF", (40, 33)),
        "gray.png": ("gray.png", "PNG", (21, 22)),
        "dot.png": ("dot.png", "PNG", (1, 1)),
        "palette.png": ("palette.png", "PNG", (16, 16)),
    }
    for rel, (out_rel, fmt, (height, width)) in expected.items():
        out = tmp_path / "out" / out_rel
        assert rows[rel]["output"] == str(out)
        with Image.open(out) as image:
            image.load()
            assert image.format == fmt and image.size == (width, height), rel
        assert rows[rel]["output_size"] == out.stat().st_size
        assert isinstance(rows[rel]["seconds"], float)
    assert "animated GIF" in rows["anim/spin.gif"]["reason"]
    assert "first frame of 3" in rows["anim/spin.gif"]["reason"]
    assert "16-bit" in rows["deep16.png"]["reason"]
    # Alpha kept bit for bit; the colour was translated.
    with Image.open(tmp_path / "out" / "cutout.png") as image:
        out = np.asarray(image)
    assert out.shape == (30, 41, 4)
    np.testing.assert_array_equal(out[:, :, 3], rgba[:, :, 3])
    # The colour is the translation of the image with its alpha (within
    # the Translator's graph-vs-eager level of rounding).
    expected = _translation(translator, src / "cutout.png")
    assert np.abs(out[:, :, :3].astype(int) - expected).max() <= 1


def test_same_size_images_match_a_direct_translator_call(translator, tmp_path):
    images = [noise(24, 40, seed=s) for s in range(5)]
    for i, image in enumerate(images):
        save(tmp_path / "in" / f"{i}.png", image)
    save(tmp_path / "in" / "odd.png", noise(9, 11, seed=9))
    run(translator, tmp_path / "in", tmp_path / "out", batch_size=3)
    # Same-size images run as one batch in a tf.function; eager and graph
    # execution may round a uint8 conversion differently (the Translator's
    # documented tolerance: 1 level on under 0.1% of pixels).
    expected = translator(np.stack(images)).numpy()
    for i in range(5):
        with Image.open(tmp_path / "out" / f"{i}.png") as image:
            assert_close_uint8(np.asarray(image), expected[i])
    with Image.open(tmp_path / "out" / "odd.png") as image:
        assert_close_uint8(np.asarray(image), translator(noise(9, 11, seed=9)[None]).numpy()[0])


def assert_close_uint8(actual, expected):
    assert actual.shape == expected.shape
    diff = np.abs(actual.astype(int) - expected.astype(int))
    assert diff.max() <= 1 and np.mean(diff > 0) < 1e-3


def test_bad_files_fail_with_reasons_and_never_stop_the_run(translator, tmp_path):
    src = tmp_path / "in"
    save(src / "good1.jpg", noise(32, 32, seed=1))
    save(src / "z_good2.png", noise(20, 28, seed=2))
    write_bad_files(src, seed=3)
    save(src / "huge.png", noise(50, 60, seed=4))
    (src / "dangling.jpg").symlink_to(src / "missing-target.jpg")
    locked = save(src / "locked.png", noise(8, 8, seed=5))
    os.chmod(locked, 0)
    can_lock = os.geteuid() != 0  # root reads files whatever their mode

    summary = run(translator, src, tmp_path / "out", max_pixels=2000)
    rows = by_rel(records(tmp_path / "out"))
    assert rows["good1.jpg"]["status"] == "converted"
    assert rows["z_good2.png"]["status"] == "converted"
    reasons = {rel: row["reason"] for rel, row in rows.items() if row["status"] == "failed"}
    assert "empty file" in reasons["empty.jpg"]
    assert "truncated" in reasons["truncated.jpg"]
    assert "not an image" in reasons["notes.png"]
    assert "too many pixels" in reasons["huge.png"] and "max_pixels" in reasons["huge.png"]
    assert "not found" in reasons["dangling.jpg"]
    if can_lock:
        assert "permission" in reasons["locked.png"]
    assert summary.failed == len(reasons) >= 5
    assert summary.exit_code == convert.EXIT_SOME_FAILED == 3
    for rel in reasons:
        assert not (tmp_path / "out" / rel).exists()
    os.chmod(locked, 0o644)


def test_resume_skips_done_and_redoes_changed_or_missing(translator, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    for i in range(4):
        save(src / f"{i}.jpg", noise(16, 16, seed=i))
    first = run(translator, src, out)
    assert first.converted == 4
    second = run(translator, src, out)
    assert (second.converted, second.skipped, second.failed) == (0, 4, 0)
    # A changed source and a deleted output are converted again.
    save(src / "1.jpg", noise(16, 20, seed=99))
    os.utime(src / "1.jpg", ns=(1, 1))
    (out / "2.jpg").unlink()
    third = run(translator, src, out)
    assert (third.converted, third.skipped) == (2, 2)
    assert {r["rel"] for r in records(out)[-4:] if r["status"] == "converted"} == {"1.jpg", "2.jpg"}
    # Other settings (a tone) are not "done"; --overwrite redoes everything.
    assert run(translator, src, out, tone="warm").converted == 4
    assert run(translator, src, out, tone="warm").skipped == 4
    assert run(translator, src, out, tone="warm", overwrite=True).converted == 4
    # So is another mirrored context; the translator's own (0 here) is the same as not giving it.
    assert run(translator, src, out, tone="warm", context=0).skipped == 4
    assert run(translator, src, out, tone="warm", context=8).converted == 4
    assert run(translator, src, out, tone="warm", context=8).skipped == 4
    # Every other setting that changes the pixels is part of "done" too.
    settings = dict(tone="warm", context=8)
    for changed in (dict(strength=0.5), dict(quality=80), dict(tile=8, overlap=4)):
        settings.update(changed)
        assert run(translator, src, out, **settings).converted == 4, changed
    assert run(translator, src, out, **settings).skipped == 4
    assert len(records(out)) == 4 * 13


def test_a_new_quality_converts_only_the_outputs_it_changes(translator, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    save(src / "a.jpg", noise(16, 16, seed=1))
    save(src / "b.webp", noise(16, 16, seed=2))
    for name in ("c.png", "d.tif", "e.bmp"):
        save(src / name, noise(16, 16, seed=3))
    assert run(translator, src, out, quality=95).converted == 5
    again = run(translator, src, out, quality=90)
    assert (again.converted, again.skipped) == (2, 3)
    assert {r["rel"] for r in records(out)[-5:] if r["status"] == "converted"} == {"a.jpg", "b.webp"}
    assert run(translator, src, out, quality=90).skipped == 5
    # --format=png makes every output lossless: quality is no longer part of "done".
    assert run(translator, src, tmp_path / "png", format="png", quality=95).converted == 5
    assert run(translator, src, tmp_path / "png", format="png", quality=50).skipped == 5
    # Records made before the split (every output fingerprinted with its quality) stay done.
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    old = convert.run_settings(translator, format="same", quality=90, tile=512, overlap=96, stats_size=1024,
                               precision="float32")
    assert {r["settings"] for r in lines[-5:]} == {old["lossy"], old["lossless"]}  # the defaults, measured
    for row in lines:
        row["settings"] = old["lossy"]
    (out / "manifest.jsonl").write_text("".join(json.dumps(row) + "\n" for row in lines))
    assert run(translator, src, out, quality=90).skipped == 5


def test_context_reaches_the_outputs(translator, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    image = noise(24, 36, seed=7)
    save(src / "a.png", image)
    run(translator, src, out, context=6)
    expected = translator.with_context(6)(image[None]).numpy()[0]
    assert np.array_equal(np.asarray(Image.open(out / "a.png")), expected)


def test_formats_alpha_and_metadata(translator, tmp_path):
    src = tmp_path / "in"
    rgba = noise(20, 20, 4, seed=1)
    save(src / "cut.png", rgba)
    exif = Image.Exif()
    exif[0x010F] = "gan_style test camera"  # Make
    exif[0x0112] = 6  # orientation: rotate 90 on display
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    save(src / "camera.jpg", noise(20, 30, seed=2), exif=exif.tobytes(), icc_profile=icc)

    run(translator, src, tmp_path / "as_jpg", format="jpg")
    rows = by_rel(records(tmp_path / "as_jpg"))
    with Image.open(tmp_path / "as_jpg" / "cut.jpg") as image:
        assert image.mode == "RGB"
    assert "transparency dropped" in rows["cut.png"]["reason"]
    with Image.open(tmp_path / "as_jpg" / "camera.jpg") as image:
        assert image.size == (20, 30)  # EXIF orientation applied once
        assert image.info.get("icc_profile") == icc
        out_exif = image.getexif()
        assert out_exif.get(0x010F) == "gan_style test camera"
        assert out_exif.get(0x0112, 1) == 1

    run(translator, src, tmp_path / "as_webp", format="webp")
    with Image.open(tmp_path / "as_webp" / "cut.webp") as image:
        assert image.format == "WEBP" and image.mode == "RGBA"
        # WebP is lossy for colour; its alpha stays exact at quality 95.
        np.testing.assert_array_equal(np.asarray(image)[:, :, 3], rgba[:, :, 3])


def test_semi_transparent_pixels_keep_their_own_colours(tmp_path):
    # A cut-out's anti-aliased edge and soft shadow: at strength 0 the output
    # is the source, colour and alpha, on every path (batched with an opaque
    # image of its size, tiled, flat); at strength 1 it is what
    # Translator(rgb, alpha=a) gives, not the translation of white-lightened colours.
    src = tmp_path / "in"
    cutout = noise(24, 40, 4, seed=3)
    cutout[..., 3] = np.linspace(0, 255, 40).round().astype(np.uint8)[None, :]
    save(src / "cutout.png", cutout)
    save(src / "photo.png", noise(24, 40, seed=4))  # same size: one batch with the cut-out
    big = noise(70, 90, 4, seed=5)
    big[..., 3] = np.linspace(30, 255, 90).round().astype(np.uint8)[None, :]
    save(src / "big.png", big)  # tiled at tile=64
    swatch = np.zeros((20, 20, 4), np.uint8)
    swatch[..., :3] = (200, 40, 90)
    swatch[..., 3] = 128
    save(src / "swatch.png", swatch)  # one flat colour: tone only
    generator = build_generator("resnet_6blocks", base_filters=4, seed=7)
    for strength in (0.0, 1.0):
        out = tmp_path / f"out{strength:g}"
        translator = Translator(generator, strength=strength)
        summary = run(translator, src, out, tile=64, overlap=32, batch_size=2)
        assert summary.converted == 4
        rows = by_rel(records(out))
        assert rows["big.png"]["tiled"] and "one flat colour" in rows["swatch.png"]["reason"]
        for name, source in (("cutout.png", cutout), ("big.png", big), ("swatch.png", swatch)):
            with Image.open(out / name) as written:
                result = np.asarray(written)
            np.testing.assert_array_equal(result[..., 3], source[..., 3])
            if strength == 0.0:
                np.testing.assert_array_equal(result, source, err_msg=name)
        expected = translator(cutout[None, ..., :3], alpha=cutout[None, ..., 3:]).numpy()[0]
        with Image.open(out / "cutout.png") as written:
            np.testing.assert_array_equal(np.asarray(written)[..., :3], expected)


XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:tiff="http://ns.adobe.com/tiff/1.0/"'
       b' tiff:Orientation="6"><dc:rights>(c) Example Shop</dc:rights></rdf:Description></rdf:RDF></x:xmpmeta>')


def _xmp_of(image):
    return image.info.get("xmp") or image.info.get("XML:com.adobe.xmp", "").encode()


def test_resolution_rights_and_png_text_are_kept(translator, tmp_path):
    # Layout tools place images by their dpi; XMP and PNG text hold the rights.
    from PIL import PngImagePlugin

    src = tmp_path / "in"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated on display: the XMP copy of the orientation must go too
    assert XMP.count(b'tiff:Orientation="6"') == 1
    save(src / "print.jpg", noise(20, 30, seed=1), dpi=(300, 300), xmp=XMP, exif=exif.tobytes())
    chunks = PngImagePlugin.PngInfo()
    chunks.add_text("Copyright", "(c) Example Shop")
    chunks.add_itxt("Author", "Zoë")
    chunks.add_itxt("XML:com.adobe.xmp", XMP.decode())
    save(src / "art.png", noise(20, 30, seed=2), dpi=(150, 150), pnginfo=chunks)
    save(src / "scan.tif", noise(20, 30, seed=3), dpi=(600, 600), tiffinfo={700: XMP})
    save(src / "web.webp", noise(20, 30, seed=4), xmp=XMP)
    run(translator, src, tmp_path / "same")
    out = tmp_path / "same"
    for name, dpi in (("print.jpg", 300), ("art.png", 150), ("scan.tif", 600), ("web.webp", None)):
        with Image.open(out / name) as image:
            if dpi is not None:
                assert np.allclose(image.info["dpi"], (dpi, dpi), atol=0.05), (name, image.info.get("dpi"))  # PNG: per metre
            xmp = _xmp_of(image)
            assert b"<dc:rights>(c) Example Shop</dc:rights>" in xmp, name
            # Turned upright (EXIF, or Pillow's reading of the XMP orientation) or
            # not: the XMP copy of the orientation goes exactly when it was applied.
            assert (b"tiff:Orientation" in xmp) == (image.size == (30, 20)), name
    with Image.open(out / "art.png") as image:
        assert image.text["Copyright"] == "(c) Example Shop" and image.text["Author"] == "Zoë"
    with Image.open(out / "print.jpg") as image:
        assert image.size == (20, 30)
    rows = by_rel(records(out))
    assert not [n for n, row in rows.items() if "dropped" in row["reason"]], rows
    # What another format cannot hold is named in the report.
    run(translator, src, tmp_path / "as_jpg", format="jpg")
    rows = by_rel(records(tmp_path / "as_jpg"))
    assert rows["art.png"]["reason"].endswith("; PNG text (Author, Copyright) dropped: JPEG output")
    with Image.open(tmp_path / "as_jpg" / "art.jpg") as image:
        assert b"(c) Example Shop" in _xmp_of(image) and image.info["dpi"] == (150, 150)


def test_metadata_an_output_cannot_hold_is_named_and_never_fails_the_write(tmp_path):
    from gan_style import image_writer

    big = b"<x>" + b"y" * 70000 + b"</x>"
    assert image_writer.metadata_notes("JPEG", big, None) == [
        "XMP metadata (70,007 bytes) dropped: over JPEG's 65,504 bytes"]
    assert image_writer.metadata_notes("WEBP", big, None) == []
    assert image_writer.metadata_notes("BMP", b"<x/>", {"Title": "t"}) == [
        "XMP metadata (4 bytes) dropped: BMP has no place for it", "PNG text (Title) dropped: BMP output"]
    pixels = noise(8, 8)
    image_writer.write_image(tmp_path / "a.jpg", pixels, fmt="JPEG", xmp=big, dpi=(300, 300))
    image_writer.write_image(tmp_path / "a.webp", pixels, fmt="WEBP", xmp=big)
    with Image.open(tmp_path / "a.jpg") as jpeg, Image.open(tmp_path / "a.webp") as webp:
        assert "xmp" not in jpeg.info and jpeg.info["dpi"] == (300, 300) and webp.info["xmp"] == big


def test_junk_resolutions_and_camera_exif_in_tiff_never_fail_a_write(translator, tmp_path):
    src = tmp_path / "in"
    save(src / "junk.tif", noise(8, 8, seed=1), dpi=(1e9, 1e9))  # over what PNG and JPEG store
    camera = Image.Exif()
    camera[0x010F] = "Camera maker"
    camera.get_ifd(0x8769)[0x9003] = "2026:11:29 10:00:00"  # DateTimeOriginal, in the Exif sub-IFD
    save(src / "camera.jpg", noise(8, 8, seed=2), exif=camera.tobytes(), dpi=(300, 300))
    for fmt in ("png", "jpg"):
        summary = run(translator, src / "junk.tif", tmp_path / fmt, format=fmt)
        assert (summary.converted, summary.failed) == (1, 0), records(tmp_path / fmt)
        assert records(tmp_path / fmt)[0]["reason"] == "resolution 1e+09x1e+09 dpi dropped: out of 1-65535"
    # A TIFF with camera EXIF failed its write: libtiff cannot write the sub-IFD compressed.
    save(tmp_path / "scans" / "scan.tif", noise(8, 8, seed=3), exif=camera.tobytes())
    summary = run(translator, tmp_path / "scans", tmp_path / "tif")
    assert (summary.converted, summary.failed) == (1, 0), records(tmp_path / "tif")
    assert records(tmp_path / "tif")[0]["reason"] == (
        "EXIF camera and GPS details dropped: libtiff cannot write them in a compressed TIFF")
    with Image.open(tmp_path / "tif" / "scan.tif") as image:
        assert image.getexif().get(0x010F) == "Camera maker"
    from gan_style import image_writer

    pixels = image_io.read_image(src / "camera.jpg")
    image_writer.write_image(tmp_path / "camera.tif", pixels.rgb, fmt="TIFF", exif=pixels.exif, dpi=pixels.dpi,
                             xmp=XMP)
    with Image.open(tmp_path / "camera.tif") as image:
        assert image.getexif().get(0x010F) == "Camera maker" and b"(c) Example Shop" in image.info["xmp"]
        assert image.info["dpi"] == (300, 300)
    assert image_writer.metadata_notes("TIFF", None, None, exif=pixels.exif) == [
        "EXIF camera and GPS details dropped: libtiff cannot write them in a compressed TIFF"]
    assert image_writer.metadata_notes("JPEG", None, None, exif=pixels.exif, dpi=(300, 300)) == []


def test_tone_only_writes_in_place_when_asked():
    translator = Translator(build_generator("resnet_6blocks", base_filters=4, seed=7), tone="warm")
    flat = np.full((40, 30, 3), 120, np.uint8)
    expected = convert.untranslated(translator, flat)
    buffer = flat.copy()
    assert convert.untranslated(translator, buffer, out=buffer) is buffer
    np.testing.assert_array_equal(buffer, expected)
    assert not np.array_equal(expected, flat)  # the warm tone did something


def test_clashing_output_names_get_distinct_files(translator, tmp_path):
    save(tmp_path / "in" / "a.jpg", noise(8, 8, seed=1))
    save(tmp_path / "in" / "a.png", noise(8, 8, seed=2))
    run(translator, tmp_path / "in", tmp_path / "out", format="png")
    outputs = {r["rel"]: pathlib.Path(r["output"]).name for r in records(tmp_path / "out")}
    assert outputs == {"a.jpg": "a_jpg.png", "a.png": "a_png.png"}


def test_large_images_are_tiled(translator, tmp_path):
    image = noise(72, 150, seed=3)
    save(tmp_path / "in" / "wide.png", image)
    run(translator, tmp_path / "in", tmp_path / "out", tile=64, overlap=32)
    row = records(tmp_path / "out")[0]
    assert row["status"] == "converted" and row["tiled"] is True
    with Image.open(tmp_path / "out" / "wide.png") as out:
        assert out.size == (150, 72)


def test_big_jpeg_is_translated_in_place_and_written_as_a_separate_output_would_be(
        translator, tmp_path, monkeypatch):
    # A big JPEG is decoded into an RGBX buffer, translated in place and
    # encoded from that buffer: the file must be byte for byte what decoding,
    # translating into a new array and writing it gives.
    from gan_style import image_io, image_writer, tiling

    smooth = np.clip(noise(150, 210, seed=5).astype(int) // 2 + 64, 0, 255).astype(np.uint8)
    save(tmp_path / "in" / "big.jpg", smooth, quality=92)
    calls = []
    generate = tiling.TiledTranslator.generate

    def spy(self, image, finish=None, out=None, transparent=None):
        calls.append((image.strides, out is image))
        return generate(self, image, finish, out, transparent)

    monkeypatch.setattr(tiling.TiledTranslator, "generate", spy)
    run(translator, tmp_path / "in", tmp_path / "out", tile=64, overlap=32, quality=92, batch_size=2)
    assert calls == [((210 * 4, 4, 1), True)]  # the RGBX buffer, in place
    monkeypatch.setattr(tiling.TiledTranslator, "generate", generate)

    source = image_io.read_image(tmp_path / "in" / "big.jpg")
    expected = convert.tiled_translator(translator, 64, 32, tiling.DEFAULT_STATS_SIZE, 2).generate(source.rgb)
    image_writer.write_image(tmp_path / "expected.jpg", expected, fmt="JPEG", quality=92)
    assert (tmp_path / "out" / "big.jpg").read_bytes() == (tmp_path / "expected.jpg").read_bytes()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF", "BMP"])
def test_writing_an_rgbx_view_gives_the_same_file(tmp_path, fmt):
    from gan_style import image_writer

    buffer = noise(40, 50, 4, seed=2)
    image_writer.write_image(tmp_path / "view", buffer[:, :, :3], fmt=fmt)
    image_writer.write_image(tmp_path / "copy", buffer[:, :, :3].copy(), fmt=fmt)
    assert (tmp_path / "view").read_bytes() == (tmp_path / "copy").read_bytes()
    assert image_writer._rgbx_buffer(buffer[:, :, :3]) is buffer
    assert image_writer._rgbx_buffer(buffer[:20, :, :3]) is None  # part of a buffer: copied as usual
    assert image_writer._rgbx_buffer(buffer[:, :, 1:]) is None
    assert image_writer._rgbx_buffer(buffer[:, :, :2]) is None


@pytest.mark.parametrize("ahead_pixels,most_ahead", [(1, 2), (None, 5)])
def test_big_images_are_decoded_only_one_ahead_of_the_model(translator, tmp_path, monkeypatch,
                                                              ahead_pixels, most_ahead):
    # Decodes are submitted from the main thread, which also runs the model:
    # count how many were submitted, not yet translated, at each model call
    # (the image going in included). Images over the pixel budget (here:
    # every image) go one ahead; small ones fill the window of
    # 2 * batch_size + 2 (= 4 at batch 1) behind the one going in.
    from gan_style import image_io

    for i in range(7):
        save(tmp_path / "in" / f"{i}.png", noise(20, 24, seed=i))
    if ahead_pixels is not None:
        monkeypatch.setattr(convert, "_AHEAD_PIXELS", ahead_pixels)
    events = []
    header_pixels = image_io.header_pixels
    monkeypatch.setattr(image_io, "header_pixels", lambda path: events.append("submit") or header_pixels(path))
    translate_group = convert._Converter.translate_group
    monkeypatch.setattr(convert._Converter, "translate_group",
                        lambda self, group: events.append("model") or translate_group(self, group))
    summary = run(translator, tmp_path / "in", tmp_path / "out", batch_size=1)
    assert summary.converted == 7
    ahead = [events[:i].count("submit") - events[:i].count("model") for i, e in enumerate(events) if e == "model"]
    assert max(ahead) == most_ahead, events


def test_shards_cover_the_catalog_exactly_once(translator, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    names = [f"d{i % 3}/img{i}.png" for i in range(14)]
    for i, name in enumerate(names):
        save(src / name, noise(8, 8, seed=i))
    seen = []
    for shard in range(3):
        summary = run(translator, src, out, num_shards=3, shard_index=shard)
        rows = records(out, convert.manifest_name(3, shard))
        assert summary.converted == len(rows)
        seen += [r["rel"] for r in rows if r["status"] == "converted"]
    assert sorted(seen) == sorted(names)
    # The same shards on every machine and in every process (hosts split one
    # catalog between them): sha1 of the name, not Python's salted hash().
    # Measured once with hashlib; a change of scheme would re-split old runs.
    assert [convert.shard_of(n, 3) for n in names] == [1, 2, 1, 0, 0, 2, 2, 1, 1, 1, 0, 1, 1, 0]
    # A rerun of any shard finds its work done (resume reads every manifest).
    assert run(translator, src, out, num_shards=3, shard_index=1).converted == 0


def test_path_safety(translator, tmp_path, caplog):
    root = tmp_path / "catalog"
    save(root / "ok.png", noise(8, 8, seed=1))
    save(root / "sub" / "deep.png", noise(8, 8, seed=2))
    outside = save(tmp_path / "secret" / "outside.png", noise(8, 8, seed=3))
    (root / "link.png").symlink_to(outside)
    (root / "list.txt").write_text(
        "# product shots\nok.png\nsub/deep.png\n../secret/outside.png\n"
        f"{outside}\nsub/../ok.png\nlink.png\n\n./ok.png\n"
    )
    before_inputs = tree_digest(tmp_path / "secret"), tree_digest(root)

    summary = run(translator, root / "list.txt", tmp_path / "out")
    rows = records(tmp_path / "out")
    status = {r["rel"]: (r["status"], r["reason"]) for r in rows}
    assert status["ok.png"][0] == status["sub/deep.png"][0] == "converted"
    assert "'..' refused" in status["../secret/outside.png"][1]
    assert "absolute path refused" in status[str(outside)][1]
    assert "'..' refused" in status["sub/../ok.png"][1]
    assert "outside the input folder" in status["link.png"][1]
    assert all(r["output"] is None for r in rows if r["status"] == "failed")
    assert summary.converted == 2 and summary.failed == 4  # ./ok.png is ok.png again
    failed_rows = [(r["rel"], r["reason"]) for r in rows if r["status"] == "failed"]
    assert summary.failures == failed_rows[:convert.FAILURES_SHOWN]  # the first few, for the console
    assert (tree_digest(tmp_path / "secret"), tree_digest(root)) == before_inputs
    written = {p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    assert written == {"ok.png", "sub/deep.png", "manifest.jsonl", ".conversion.lock"}

    # Walking a folder: the symlink is refused the same way; an output folder
    # inside the input is not walked on the next run.
    inner = root / "styled"
    first = run(translator, root, inner)
    second = run(translator, root, inner)
    assert first.total == second.total == 3
    assert by_rel(records(inner))["link.png"]["status"] == "failed"
    assert second.skipped == 2
    caplog.clear()
    with pytest.raises(ValueError, match="is the input folder"):
        run(translator, root, root)
    # Not first a warning that the input holds no images (the output, which
    # is the input, is left out of it): the error alone.
    assert not [r for r in caplog.records if "no image files" in r.getMessage()]
    with pytest.raises(ValueError, match="inside --output"):
        run(translator, root / "sub", root)
    with pytest.raises(ValueError, match="is the input folder"):  # a glob's folder: not "matches no image files"
        run(translator, str(root / "*.png"), root)


def test_files_that_are_not_images_are_named_not_passed_over(translator, tmp_path, caplog):
    import logging as std_logging

    src = tmp_path / "in"
    save(src / "a.jpg", noise(8, 8, seed=1))
    for name in ("b.heic", "c.jpeg2", "d", ".DS_Store"):
        (src / name).write_bytes(b"x")
    os.mkfifo(src / "pipe.jpg")
    for source in (src, str(src / "*")):  # a folder or a glob: the same report
        caplog.clear()
        with caplog.at_level(std_logging.WARNING):
            summary = run(translator, source, tmp_path / "out", overwrite=True)
        assert (summary.converted, summary.failed) == (1, 1)  # the pipe fails with its reason
        assert "3 file(s) not converted, their extensions are not image ones (b.heic, c.jpeg2, d)" in caplog.text
    caplog.clear()
    (tmp_path / "empty").mkdir()
    with caplog.at_level(std_logging.WARNING):
        assert run(translator, tmp_path / "empty", tmp_path / "out2").total == 0
    assert "no image files to convert" in caplog.text


def test_glob_source(translator, tmp_path):
    save(tmp_path / "cat" / "a" / "x.jpg", noise(8, 8, seed=1))
    save(tmp_path / "cat" / "b" / "y.jpg", noise(8, 8, seed=2))
    save(tmp_path / "cat" / "b" / "z.png", noise(8, 8, seed=3))
    summary = run(translator, str(tmp_path / "cat" / "*" / "*.jpg"), tmp_path / "out")
    assert summary.converted == 2
    assert (tmp_path / "out" / "a" / "x.jpg").exists() and (tmp_path / "out" / "b" / "y.jpg").exists()


def test_bad_arguments_are_named(translator, tmp_path):
    save(tmp_path / "in" / "a.png", noise(8, 8))
    for kwargs, flag in [
        ({"format": "gif"}, "--format"),
        ({"quality": 0}, "--quality"),
        ({"batch_size": 0}, "--batch_size"),
        ({"num_shards": 2, "shard_index": 2}, "--shard_index"),
        ({"max_pixels": 0}, "--max_pixels"),
        ({"tile": 4}, "--tile"),
        ({"context": -1}, "--context"),
        ({"strength": 1.5}, "--strength"),
    ]:
        with pytest.raises(ValueError, match=flag):
            run(translator, tmp_path / "in", tmp_path / "out", **kwargs)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        run(translator, tmp_path / "nowhere", tmp_path / "out")


def test_source_pixels_are_released_before_encoding(tmp_path):
    """A translated image's input is freed before its output is encoded
    (the peak of a big tiled image: input + output, not input + output + PIL's copy)."""
    import gc
    import weakref

    from gan_style import image_io

    path = save(tmp_path / "a.png", noise(30, 20))
    image = image_io.read_image(path)
    item = convert._Decoded(convert.Source(path=path, rel="a.png"), image, convert.model_input(image), 0.0)
    pixels = weakref.ref(image.rgb)
    del image
    item.release_pixels()
    gc.collect()
    assert pixels() is None and item.model_input is None
    assert (item.image.height, item.image.width) == (30, 20)  # the manifest still has the size
    assert item.image.rgb.strides == (0, 0, 0)


def _outputs(output):
    return {r["rel"]: r["output"] for r in convert.Manifest.read(pathlib.Path(output)).values()}


def test_no_two_sources_ever_share_an_output(translator, tmp_path):
    src = tmp_path / "in"
    images = {
        "shot.jpg": noise(10, 12, seed=1),
        "shot.png": noise(10, 12, seed=2),  # JPEG bytes under a PNG name: stays shot.png
        "cut.png": noise(10, 12, 4, seed=3),
        "cut.jpg": noise(10, 12, 4, seed=4),  # a PNG with alpha under a JPEG name: a PNG keeps its alpha
        "x_jpg.png": noise(10, 12, seed=5),
    }
    for name, array in images.items():
        fmt = {"shot.png": "JPEG", "cut.jpg": "PNG"}.get(name)
        save(src / name, array, fmt=fmt)
    summary = run(translator, src, tmp_path / "same", batch_size=2)
    assert summary.converted == len(images)
    outputs = {rel: pathlib.Path(path).name for rel, path in _outputs(tmp_path / "same").items()}
    assert outputs == {"shot.jpg": "shot.jpg", "shot.png": "shot.png", "cut.png": "cut.png",
                       "cut.jpg": "cut_jpg.png", "x_jpg.png": "x_jpg.png"}
    with Image.open(tmp_path / "same" / "shot.png") as image:
        assert image.format == "PNG"
    with Image.open(tmp_path / "same" / "cut_jpg.png") as image:
        assert image.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(image)[:, :, 3], images["cut.jpg"][:, :, 3])

    # --format=png: shot.jpg and shot.png both want shot.png, x.jpg's tagged
    # name x_jpg.png is a source's own: every source still gets its own file.
    save(src / "x.jpg", noise(10, 12, seed=6))
    save(src / "x.png", noise(10, 12, seed=7))
    out = tmp_path / "png"
    run(translator, src, out, format="png")
    outputs = _outputs(out)
    assert len(set(outputs.values())) == len(outputs) == len(images) + 2
    for rel, path in outputs.items():  # each file is its own source's translation
        expected = _translation(translator, src / rel)
        with Image.open(path) as written:
            np.testing.assert_array_equal(np.asarray(written.convert("RGB")), expected)

    # Shards name outputs as a single run does (planned over the whole catalog).
    sharded = tmp_path / "sharded"
    for shard in range(3):
        run(translator, src, sharded, format="png", num_shards=3, shard_index=shard)
    assert {rel: pathlib.Path(p).name for rel, p in _outputs(sharded).items()} == {
        rel: pathlib.Path(p).name for rel, p in outputs.items()}


def _translation(translator, source_path):
    image = image_io.read_image(source_path)
    alpha = None if image.alpha is None else image.alpha[None, ..., None]
    return translator(image.rgb[None], alpha=alpha).numpy()[0]


def _is_translation_of(translator, output_path, source_path):
    expected = _translation(translator, source_path)
    with Image.open(output_path) as written:
        return np.array_equal(np.asarray(written.convert("RGB")), expected)


def test_an_output_is_never_taken_over_by_another_source(translator, tmp_path):
    # A product photo replaced by another of the same name in another format:
    # the old one's output must not pass for the new one's.
    src, out = tmp_path / "in", tmp_path / "out"
    save(src / "sku42.png", noise(10, 12, seed=1))
    run(translator, src, out)
    (src / "sku42.png").unlink()
    save(src / "sku42.jpg", noise(10, 12, seed=2))  # sku42.png is its PNG name, should it have alpha
    assert run(translator, src, out).converted == 1
    assert convert.Manifest.read(out)["sku42.jpg"]["output_rel"] == "sku42.jpg"
    assert (out / "sku42.jpg").exists()
    # Under --format=png both want a.png.
    src, out = tmp_path / "in2", tmp_path / "out2"
    save(src / "a.jpg", noise(10, 12, seed=3))
    run(translator, src, out, format="png")
    (src / "a.jpg").unlink()
    save(src / "a.png", noise(10, 12, seed=4))
    assert run(translator, src, out, format="png").converted == 1
    assert _is_translation_of(translator, out / "a.png", src / "a.png")
    # A new source re-plans an older one's name: a.jpg wrote a.png, then a.png
    # arrives; both get tagged names and each is its own source's translation.
    src, out = tmp_path / "in3", tmp_path / "out3"
    save(src / "a.jpg", noise(10, 12, seed=5))
    run(translator, src, out, format="png")
    save(src / "a.png", noise(10, 12, seed=6))
    assert run(translator, src, out, format="png").converted == 2
    outputs = _outputs(out)
    assert (outputs["a.jpg"], outputs["a.png"]) == (str(out / "a_jpg.png"), str(out / "a_png.png"))
    for rel in ("a.jpg", "a.png"):
        assert _is_translation_of(translator, outputs[rel], src / rel)
    assert run(translator, src, out, format="png").skipped == 2
    # An output that no source's record claims is still left alone.
    src, out = tmp_path / "in4", tmp_path / "out4"
    save(src / "b.jpg", noise(10, 12, seed=7))
    save(out / "b.jpg", noise(10, 12, seed=8))
    assert run(translator, src, out).skipped == 1
    assert "output already exists (no manifest record)" in convert.Manifest.read(out)["b.jpg"]["reason"]


def test_a_file_name_that_is_not_utf8_converts_and_resumes(translator, tmp_path):
    src = tmp_path / "in"
    save(src / "plain.png", noise(8, 8, seed=1))
    name = os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes: not valid UTF-8
    save(src / name, noise(8, 8, seed=2))
    first = run(translator, src, tmp_path / "out")
    assert (first.converted, first.failed) == (2, 0)
    raw = (tmp_path / "out" / "manifest.jsonl").read_bytes()
    raw.decode("utf-8")  # the manifest stays valid UTF-8 JSON lines
    assert _outputs(tmp_path / "out")[name] == str(tmp_path / "out" / name)
    assert run(translator, src, tmp_path / "out", num_shards=2, shard_index=0).failed == 0
    assert run(translator, src, tmp_path / "out").skipped == 2


def test_moved_output_folder_still_resumes(translator, tmp_path):
    src = tmp_path / "in"
    for i in range(3):
        save(src / f"{i}.jpg", noise(8, 8, seed=i))
    assert run(translator, src, tmp_path / "a").converted == 3
    (tmp_path / "a").rename(tmp_path / "b")
    again = run(translator, src, tmp_path / "b")
    assert (again.converted, again.skipped) == (0, 3)
    assert all(r["output"].startswith(str(tmp_path / "b")) for r in records(tmp_path / "b")[-3:])


def test_newest_record_wins_across_sharded_and_single_runs(translator, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    for i in range(5):
        save(src / f"{i}.png", noise(8, 8, seed=i))
    for shard in range(2):
        run(translator, src, out, tone="warm", num_shards=2, shard_index=shard)
    assert run(translator, src, out, tone="cool").converted == 5
    # manifest.jsonl sorts before the shards' manifests: still the cool run's records count.
    assert run(translator, src, out, tone="cool").skipped == 5


def test_glob_with_the_output_inside_leaves_old_outputs_alone(translator, tmp_path):
    save(tmp_path / "gl" / "x.jpg", noise(8, 8, seed=1))
    pattern, out = str(tmp_path / "gl" / "**" / "*.jpg"), tmp_path / "gl" / "styled"
    assert run(translator, pattern, out).converted == 1
    again = run(translator, pattern, out)
    assert (again.total, again.skipped, again.failed) == (1, 1, 0)


def test_an_earlier_runs_output_folder_inside_the_input_is_not_input(translator, tmp_path, caplog):
    # styled/ from last night, styled_v2/ tonight: styled/ must not be styled again.
    catalog = tmp_path / "cat"
    save(catalog / "a.jpg", noise(8, 8, seed=1))
    save(catalog / "shelf" / "b.png", noise(8, 8, seed=2))
    assert run(translator, catalog, catalog / "styled").converted == 2
    save(catalog / "shelf" / "styled" / "c.png", noise(8, 8, seed=3))  # a folder of that name without a manifest
    save(tmp_path / "elsewhere" / "x.png", noise(8, 8, seed=4))
    (catalog / "styled" / "linked").symlink_to(tmp_path / "elsewhere")  # left out with styled/: not a failure
    with caplog.at_level("WARNING"):
        again = run(translator, catalog, catalog / "styled_v2")
    assert (again.converted, again.failed) == (3, 0)
    assert sorted(p.relative_to(catalog / "styled_v2").as_posix() for p in (catalog / "styled_v2").rglob("*.*")
                  if "manifest" not in p.name and p.name != ".conversion.lock") == ["a.jpg", "shelf/b.png",
                                                                                     "shelf/styled/c.png"]
    warnings = [r.getMessage() for r in caplog.records if "earlier conversion" in r.getMessage()]
    assert len(warnings) == 1 and "1 folder(s) left out" in warnings[0] and "(styled)" in warnings[0]
    # A glob leaves both earlier outputs out too.
    third = run(translator, str(catalog / "**" / "*.*"), catalog / "styled_v3")
    assert third.converted == 3
    # An earlier output given as the input itself is converted: that is asked for.
    assert run(translator, catalog / "styled", tmp_path / "twice").converted == 2


def test_more_bad_arguments_are_named_before_any_work(translator, tmp_path):
    save(tmp_path / "in" / "a.png", noise(8, 8))
    with pytest.raises(ValueError, match="--overlap"):
        run(translator, tmp_path / "in", tmp_path / "out", tile=256, overlap=300)
    with pytest.raises(ValueError, match="--overlap"):  # fits some sizes, fails others: refused up front
        run(translator, tmp_path / "in", tmp_path / "out", tile=256, overlap=200)
    (tmp_path / "file").write_text("not a folder")
    for output in (tmp_path / "file", tmp_path / "file" / "sub"):
        with pytest.raises(ValueError, match="--output"):
            run(translator, tmp_path / "in", output)
    for pattern in (tmp_path / "nowhere" / "*.jpg", tmp_path / "in" / "*.jgp"):
        with pytest.raises(FileNotFoundError, match="matches nothing"):
            run(translator, str(pattern), tmp_path / "out")
    (tmp_path / "in" / "notes.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="no image files"):
        run(translator, str(tmp_path / "in" / "*.txt"), tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing was started


def test_list_file_with_a_byte_order_mark(translator, tmp_path):
    save(tmp_path / "a.jpg", noise(8, 8, seed=1))
    save(tmp_path / "a.png", noise(8, 8, seed=2))
    (tmp_path / "list.txt").write_bytes(b"\xef\xbb\xbfa.jpg\r\na.png\r\n")
    summary = run(translator, tmp_path / "list.txt", tmp_path / "out")
    assert (summary.converted, summary.failed) == (2, 0)
    assert set(_outputs(tmp_path / "out")) == {"a.jpg", "a.png"}


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_output_size_limits_are_the_encoders_own(fmt, tmp_path):
    # The limit size_problem checks before translating is exactly where the
    # encoder starts refusing (libjpeg: 65500, not the header's 65535).
    from gan_style import image_writer

    limit = image_writer._MAX_SIDE[fmt]
    assert image_writer.size_problem(fmt, 1, limit) is None
    assert "too large" in image_writer.size_problem(fmt, 1, limit + 1)
    image_writer.write_image(tmp_path / "edge", np.zeros((1, limit, 3), np.uint8), fmt=fmt)
    with pytest.raises((OSError, ValueError)):  # libjpeg: "broken data stream"; libwebp: "exceeds"
        Image.fromarray(np.zeros((1, limit + 1, 3), np.uint8)).save(tmp_path / "over", format=fmt)


def test_too_wide_for_webp_fails_before_translating(translator, tmp_path, monkeypatch):
    save(tmp_path / "in" / "strip.png", noise(4, 16400, seed=1))
    save(tmp_path / "in" / "ok.png", noise(8, 8, seed=2))
    summary = run(translator, tmp_path / "in", tmp_path / "out", format="webp", tile=0)
    rows = by_rel(records(tmp_path / "out"))
    assert (summary.converted, summary.failed) == (1, 1)
    assert "too large for WEBP output" in rows["strip.png"]["reason"]
    assert rows["strip.png"]["seconds"] < 5  # decoded and refused, never translated


def test_manifest_is_compacted_once_mostly_old_lines(tmp_path):
    path = tmp_path / "manifest.jsonl"
    lines = [json.dumps({"rel": f"{i % 300}.jpg", "status": "skipped", "time": f"2026-01-01T00:{i // 300:02d}:00"})
             for i in range(1500)]
    path.write_text("\n".join(lines) + '\n{"rel": "cut by a ki')
    before = convert.Manifest.read(tmp_path)
    convert.Manifest.compact(path)
    assert len(path.read_text().splitlines()) == 300
    assert convert.Manifest.read(tmp_path) == before
    assert not list(tmp_path.glob(".*"))  # no temporary file left
    convert.Manifest.compact(path)  # already compact: left as it is
    assert len(path.read_text().splitlines()) == 300
    # The newest record on an unterminated last line is kept, and ended.
    newer = json.dumps({"rel": "7.jpg", "status": "converted", "time": "2026-02-01T00:00:00"})
    path.write_text("\n".join(lines * 2) + "\n" + newer)
    convert.Manifest.compact(path)
    kept = path.read_text()
    assert kept.endswith(newer + "\n") and len(kept.splitlines()) == 300
    assert convert.Manifest.read(tmp_path)["7.jpg"]["status"] == "converted"
    # A run keeps only what resuming reads of each record (half the memory of whole ones).
    assert convert.Manifest.read(tmp_path, convert.RESUME_FIELDS)["7.jpg"] == {"status": "converted"}


def test_a_symlinked_folder_is_reported_not_passed_over(translator, tmp_path):
    save(tmp_path / "elsewhere" / "x.png", noise(8, 8, seed=1))
    save(tmp_path / "in" / "a.png", noise(8, 8, seed=2))
    (tmp_path / "in" / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    summary = run(translator, tmp_path / "in", tmp_path / "out")
    assert (summary.converted, summary.failed) == (1, 1)
    row = by_rel(records(tmp_path / "out"))["linked/"]
    assert "symlinked folder" in row["reason"] and "--input" in row["reason"]


def test_a_glob_does_not_follow_symlinked_folders_either(translator, tmp_path):
    # glob.glob's `**` followed links: one link to a parent folder made one
    # image 41 sources, two made the listing grow without end.
    save(tmp_path / "in" / "sub" / "a.jpg", noise(8, 8, seed=1))
    save(tmp_path / "in" / ".hidden" / "h.jpg", noise(8, 8, seed=2))
    save(tmp_path / "brand" / "b.jpg", noise(8, 8, seed=3))
    for name in ("loop", "loop2"):
        (tmp_path / "in" / "sub" / name).symlink_to("..", target_is_directory=True)
    summary = run(translator, str(tmp_path / "in" / "**" / "*.jpg"), tmp_path / "out")
    assert (summary.converted, summary.failed) == (1, 0)
    # A link a single `*` matches is reported as the folder walk reports it.
    (tmp_path / "in" / "linked").symlink_to(tmp_path / "brand", target_is_directory=True)
    summary = run(translator, str(tmp_path / "in" / "*" / "*.jpg"), tmp_path / "out")
    assert (summary.skipped, summary.failed) == (1, 1)
    row = by_rel(records(tmp_path / "out"))["linked/"]
    assert "symlinked folder" in row["reason"] and "not walked" in row["reason"]


def test_list_file_names_are_taken_as_written(translator, tmp_path):
    save(tmp_path / " lead space.jpg", noise(8, 8, seed=1))
    save(tmp_path / "plain.jpg", noise(8, 8, seed=2))
    # A name with its own leading space; a stray trailing space after a name
    # that has none; an indented comment.
    # A line naming an existing file is a path even when it starts with "#";
    # a comment too long to be a file name is still a comment.
    save(tmp_path / "#hash.jpg", noise(8, 8, seed=3))
    (tmp_path / "list.txt").write_text(" lead space.jpg\nplain.jpg  \n  # not a file\n#hash.jpg\n# " + "x" * 300 + "\n")
    summary = run(translator, tmp_path / "list.txt", tmp_path / "out")
    assert (summary.converted, summary.failed) == (3, 0)
    assert set(_outputs(tmp_path / "out")) == {" lead space.jpg", "plain.jpg", "#hash.jpg"}


def test_an_input_subfolder_holding_images_is_refused_as_output(translator, tmp_path):
    src = tmp_path / "cat"
    save(src / "a.jpg", noise(8, 8, seed=1))
    save(src / "sub" / "a.jpg", noise(8, 8, seed=2))
    before = tree_digest(src)
    with pytest.raises(ValueError, match=r"--output .*sub.* is inside --input and already holds 1 image\(s\) "
                                         r"that no conversion wrote \(e.g. a.jpg\)"):
        run(translator, src, src / "sub", overwrite=True)
    assert tree_digest(src) == before
    # An output folder of an earlier run inside the input is fine (it has a manifest).
    assert run(translator, src, src / "styled").converted == 2
    assert run(translator, src, src / "styled").skipped == 2
    # So is one a Beam run was killed in: it writes its manifests only at
    # the end, but its plan at the start.
    src = tmp_path / "cat2"
    save(src / "a.jpg", noise(8, 8, seed=1))
    save(src / "beam" / "a.jpg", noise(8, 8, seed=3))
    (src / "beam" / ".beam-plan-20261128T000000-abcdef.jsonl").write_text("")
    summary = run(translator, src, src / "beam")
    assert (summary.total, summary.skipped) == (1, 1)  # the killed run's output is taken over


def test_outputs_of_a_killed_beam_run_are_converted_again(translator, tmp_path):
    # A Beam run writes its manifests only at the end; killed, it leaves its
    # outputs (made with its own settings) and its plan. They must not be
    # taken over as "already exists" with this run's settings.
    src, out = tmp_path / "in", tmp_path / "out"
    save(src / "a.jpg", noise(8, 8, seed=1))
    save(src / "b.jpg", noise(8, 8, seed=2))
    save(out / "a.jpg", noise(8, 8, seed=3))  # what the killed run wrote
    save(out / "b.jpg", noise(8, 8, seed=4))  # not in its plan: someone else's file
    plan = [{"rel": "a.jpg", "output_rel": "a.jpg", "alpha_output_rel": "a.png", "refused": None},
            {"rel": "c.jpg", "output_rel": "c.jpg", "skip": ["unchanged", {}], "refused": None}]
    (out / ".beam-plan-20261128T000000-abcdef.jsonl").write_text("".join(json.dumps(p) + "\n" for p in plan))
    assert convert.outputs_of_killed_beam_runs([(out / ".beam-plan-20261128T000000-abcdef.jsonl").read_bytes()
                                                .splitlines()]) == {"a.jpg", "a.png"}
    summary = run(translator, src, out)
    assert (summary.converted, summary.skipped) == (1, 1)
    rows = convert.Manifest.read(out)
    assert rows["a.jpg"]["status"] == "converted"
    assert "already exists (no manifest record)" in rows["b.jpg"]["reason"]


def test_flat_colours_are_not_turned_grey(tmp_path):
    # A generator normalises each image's features, so every flat image comes
    # out the same grey (and a swatch's JPEG noise as a pattern): such images
    # get the tone only, and the report says so.
    translator = Translator(build_generator("resnet_6blocks", base_filters=4, seed=7),
                            tone={"brightness": 0.1, "temperature": 0.2})
    source = tmp_path / "in"
    red = save(source / "red.png", np.full((64, 64, 3), (200, 30, 40), np.uint8))
    save(source / "white.png", np.full((1, 1, 3), 255, np.uint8))
    swatch = np.clip(np.full((48, 40, 3), (40, 90, 200)) + noise(48, 40, seed=3) % 5 - 2, 0, 255)
    save(source / "swatch.png", swatch.astype(np.uint8))
    line = np.full((60, 60, 3), 255, np.uint8)
    line[30, :] = 0  # a thin detail on a plain background: translated
    save(source / "line.png", line)
    save(source / "big.png", np.full((150, 200, 3), 90, np.uint8))  # over --tile: still not translated
    summary = run(translator, source, tmp_path / "out", tile=64, overlap=16)
    assert (summary.converted, summary.failed) == (5, 0)
    rows = by_rel(records(tmp_path / "out"))
    for name in ("red.png", "white.png", "swatch.png", "big.png"):
        assert "one flat colour" in rows[name]["reason"], name
        original = image_io.load_rgb(source / name)
        toned = translator.finish(original[None], np.zeros((1, *original.shape), np.float32), strength=0.0)
        np.testing.assert_array_equal(image_io.load_rgb(tmp_path / "out" / name), toned.numpy()[0], err_msg=name)
    assert rows["line.png"]["reason"] == "" and rows["big.png"]["tiled"] is False
    assert_close_uint8(image_io.load_rgb(tmp_path / "out" / "line.png"), translator(line[None]).numpy()[0])
    # Without the rule: the red square would have come out grey.
    grey = translator(image_io.load_rgb(red)[None]).numpy()[0]
    assert np.ptp(grey.reshape(-1, 3).mean(axis=0)) < np.ptp(image_io.load_rgb(tmp_path / "out" / "red.png")[0, 0]) / 4


def test_is_flat_measures_exactly_in_chunks(monkeypatch):
    monkeypatch.setattr(convert, "_FLAT_ROWS", 50)  # many chunks of rows
    rng = np.random.default_rng(0)
    base = np.full((97, 31, 3), 128, np.uint8)
    for std in (1.0, 1.9, 2.1, 3.0):
        image = np.clip(128 + rng.normal(0, std, base.shape), 0, 255).round().astype(np.uint8)
        measured = image.reshape(-1, 3).std(axis=0).max()
        assert convert.is_flat(image) == (measured < convert.FLAT_STD), (std, measured)
    dot = base.copy()
    dot[50, 20] = 0  # one pixel: std 13 levels over 3,007 pixels
    assert not convert.is_flat(dot)
    monkeypatch.setattr(convert, "_FLAT_ROWS", 1 << 20)
    tone_only = convert.untranslated(Translator(build_generator("resnet_6blocks", base_filters=4, seed=7)), base)
    np.testing.assert_array_equal(tone_only, base)  # neutral tone, strength 0: the source itself


def test_output_names_past_255_bytes_are_shortened_and_the_run_goes_on(translator, tmp_path):
    # A 255-byte .tif name is 256 bytes as .webp; two 253-byte names that
    # share a stem get tagged past the limit. One such name stopped the whole
    # catalog with "File name too long", on every rerun.
    src = tmp_path / "in"
    names = ["R" * 251 + ".tif", "N" * 249 + ".jpg", "N" * 249 + ".png", "ok.jpg"]
    for seed, name in enumerate(names):
        save(src / name, noise(8, 8, seed=seed))
    out = tmp_path / "out"
    summary = run(translator, src, out, format="webp")
    assert (summary.converted, summary.failed) == (4, 0), records(out)
    outputs = {rel: pathlib.Path(path).name for rel, path in _outputs(out).items()}
    assert outputs["ok.jpg"] == "ok.webp"
    long_ones = [outputs[name] for name in names[:3]]
    assert len(set(long_ones)) == 3
    for name, written in zip(names, long_ones):
        assert len(os.fsencode(written)) <= 255 and written.endswith(".webp") and "~" in written
        assert written.startswith(name[:200]) and (out / written).is_file()
    assert run(translator, src, out, format="webp").skipped == 4  # the same names again
    # Multi-byte characters are cut whole.
    cjk = "商" * 83 + "ab.tif"  # 255 bytes; 256 as .webp
    save(tmp_path / "cjk" / cjk, noise(8, 8, seed=9))
    assert run(translator, tmp_path / "cjk", tmp_path / "cjk_out", format="webp").converted == 1
    (written,) = (tmp_path / "cjk_out").glob("*.webp")
    assert written.name.startswith("商" * 79) and len(os.fsencode(written.name)) == 255


def test_a_second_conversion_into_the_same_output_stops_at_once(translator, tmp_path):
    import fcntl

    save(tmp_path / "in" / "a.jpg", noise(8, 8, seed=1))
    out = tmp_path / "out"
    out.mkdir()
    leftover = out / ".a.jpg.99999.gan_style-tmp"  # the first run's file in the making
    leftover.write_bytes(b"half")
    with open(out / ".conversion.lock", "a+") as other_run:
        fcntl.flock(other_run, fcntl.LOCK_EX | fcntl.LOCK_NB)
        other_run.write("pid 12345 on elsewhere")
        other_run.flush()
        with pytest.raises(ValueError, match=r"--output .*out' is in use by another conversion "
                                             r"\(pid 12345 on elsewhere\); wait for it to end"):
            run(translator, tmp_path / "in", out)
        assert leftover.exists() and not (out / "manifest.jsonl").exists()
        # Shards hold their own locks: they run side by side.
        for shard in range(2):
            run(translator, tmp_path / "in", out, num_shards=2, shard_index=shard)
    assert run(translator, tmp_path / "in", out).skipped == 1  # free again


def test_a_file_system_without_locks_converts_unguarded(translator, tmp_path, monkeypatch, caplog):
    import errno
    import fcntl

    def no_locks(handle, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    save(tmp_path / "in" / "a.jpg", noise(8, 8, seed=1))
    with caplog.at_level("WARNING"):
        assert run(translator, tmp_path / "in", tmp_path / "out").converted == 1
    assert "this file system takes no locks (No locks available)" in caplog.text


def test_a_folder_that_cannot_be_listed_gets_a_failed_line(translator, tmp_path, monkeypatch):
    # Root lists any folder whatever its mode: the refusal is simulated.
    save(tmp_path / "in" / "a.jpg", noise(8, 8, seed=1))
    save(tmp_path / "in" / "locked" / "b.jpg", noise(8, 8, seed=2))
    real_scandir = os.scandir

    def scandir(path="."):
        if os.path.basename(os.fspath(path)) in ("locked", "in"):
            if os.path.basename(os.fspath(path)) == "locked" or refuse_root:
                raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    refuse_root = False
    monkeypatch.setattr(os, "scandir", scandir)
    summary = run(translator, tmp_path / "in", tmp_path / "out")
    assert (summary.converted, summary.failed) == (1, 1)
    row = by_rel(records(tmp_path / "out"))["locked/"]
    assert row["status"] == "failed"
    assert row["reason"] == "cannot list this folder (Permission denied): its images are not converted"
    # A glob that could match files in it says so too (pathlib's glob passes it over in silence).
    for pattern, failed in (("**/*.jpg", 1), ("*/*.jpg", 1), ("*.jpg", 0)):
        summary = run(translator, str(tmp_path / "in" / pattern), tmp_path / "out_glob")
        assert summary.failed == failed, pattern
        if failed:
            assert "locked/" in by_rel(records(tmp_path / "out_glob"))
    with pytest.raises(FileNotFoundError, match="the glob matches nothing"):
        run(translator, str(tmp_path / "in" / "other" / "*.jpg"), tmp_path / "out_glob")
    refuse_root = True
    with pytest.raises(ValueError, match=r"--input .*in': .*in: cannot list the folder \(Permission denied\)"):
        run(translator, tmp_path / "in", tmp_path / "out")


def test_an_output_a_new_source_takes_the_name_of_is_removed_when_renamed(translator, tmp_path):
    # a.jpg -> a.png; then an a.png joins: both get tagged names, and the old
    # a.png (a.jpg's translation) must not stay under the new source's name.
    src, out = tmp_path / "in", tmp_path / "out"
    save(src / "a.jpg", noise(8, 8, seed=1))
    run(translator, src, out, format="png")
    assert (out / "a.png").is_file()
    save(src / "a.png", noise(8, 8, seed=2))
    summary = run(translator, src, out, format="png")
    assert summary.converted == 2
    assert sorted(p.name for p in out.glob("*.png")) == ["a_jpg.png", "a_png.png"]
    rows = by_rel(records(out))
    assert "its earlier output a.png was removed: another source now wants that name too" in rows["a.jpg"]["reason"]
    # Not removed: an earlier output that is not the recorded file any more,
    # even one of the same size (an uncompressed BMP's size is its shape's).
    src2, out2 = tmp_path / "in2", tmp_path / "out2"
    save(src2 / "a.bmp", noise(8, 8, seed=1))
    run(translator, src2, out2)
    mine = noise(8, 8, seed=5)
    save(out2 / "a.bmp", mine)
    save(src2 / "a.BMP", noise(8, 8, seed=2))
    run(translator, src2, out2)
    with Image.open(out2 / "a.bmp") as kept:
        np.testing.assert_array_equal(np.asarray(kept), mine)
    # --overwrite converts everything again and removes the moved output too.
    src3, out3 = tmp_path / "in3", tmp_path / "out3"
    save(src3 / "a.jpg", noise(8, 8, seed=1))
    run(translator, src3, out3, format="png")
    save(src3 / "a.png", noise(8, 8, seed=2))
    run(translator, src3, out3, format="png", overwrite=True)
    assert sorted(p.name for p in out3.glob("*.png")) == ["a_jpg.png", "a_png.png"]


def test_a_long_legal_file_name_converts(translator, tmp_path):
    # 78 CJK characters + ".jpg" are 238 bytes, under the 255-byte limit; the
    # temporary name's additions would pass it.
    name = "商" * 78 + ".jpg"
    save(tmp_path / "in" / name, noise(8, 8, seed=1))
    out = tmp_path / "out"
    summary = run(translator, tmp_path / "in", out)
    assert (summary.converted, summary.failed) == (1, 0), records(out)
    assert (out / name).is_file()
    temp = convert.image_writer.temp_file_name(name, "123")
    assert len(os.fsencode(temp)) <= 255 and temp.startswith(".") and temp.endswith(".123.gan_style-tmp")
    assert convert.image_writer.temp_file_name("a.jpg", "123") == ".a.jpg.123.gan_style-tmp"
    (out / temp).write_bytes(b"half an image")  # a killed run's leftover, by its shortened name
    run(translator, tmp_path / "in", out, overwrite=True)
    assert not (out / temp).exists()
