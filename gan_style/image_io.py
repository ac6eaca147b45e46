"""One image decoder for every place where outputs are compared.

Training, evaluation and catalog conversion all read pixels through
:func:`read_image`, so a JPEG gives the same array wherever it is decoded.
TensorFlow's ``tf.io.decode_image`` reads no TIFF and drops alpha instead of
compositing it, so decoding is done with PIL and handed to ``tf.data`` as
uint8 arrays (see ``gan_style.input_pipeline``). Big JPEGs that the converter
translates in place are decoded by libjpeg-turbo through ``simplejpeg``
instead (``rgbx_over``), into a buffer PIL could not give us; the pixels are
the same.

What :func:`read_image` guarantees:

* EXIF orientation is applied (a phone photo stored sideways comes out
  upright) and the returned EXIF has its orientation tag removed, so writing
  it back does not rotate the image a second time.
* Every mode becomes 8-bit RGB plus an optional 8-bit alpha: grayscale, 1-bit,
  LA, palette with or without transparency, CMYK (through its embedded ICC
  profile when it has one), YCbCr, 16-bit (``I;16*``, ``I``, 16-bit PNG/TIFF)
  and 32-bit float.
* Bad files raise :class:`ImageError` naming the file and the reason; a
  truncated file is an error, never silently padded with grey.
* ``max_pixels`` is checked from the header, before any pixel is decoded.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import os
import pathlib
import re
import stat
import struct
import threading
import zlib
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import simplejpeg
from absl import logging
from PIL import Image, ImageFile, UnidentifiedImageError

try:
    from PIL.ImageCms import PyCMSError as _PyCMSError
except ImportError:  # a Pillow built without littlecms: no profile is converted

    class _PyCMSError(Exception):
        pass

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".avif"}
)

# Only these PIL plugins may open a file. PIL can also open EPS (through
# Ghostscript), PSD, ICO and dozens of rarer formats; limiting the list keeps a
# renamed file from reaching an unexpected (or external) decoder. The JPEG
# plugin also opens camera JPEGs with embedded previews, as format "MPO".
Image.init()  # Image.open(formats=...) needs these plugins registered
# AVIF when this Pillow has the plugin (wheels since 11.3); without it .avif
# files are still listed and fail with a reason instead of being skipped unseen.
_ALLOWED_FORMATS = ("JPEG", "PNG", "BMP", "DIB", "GIF", "WEBP", "TIFF") + (
    ("AVIF",) if "AVIF" in Image.OPEN else ()
)

_EXIF_ORIENTATION = 0x0112

# Rows per chunk when compositing, so a 100-megapixel image needs a few MB of
# scratch space instead of a full-size integer copy.
_COMPOSITE_ROWS = 512


class ImageError(ValueError):
    """An image file that cannot be decoded.

    Attributes:
      path: the file, as given.
      reason: a short human-readable reason ("empty file (0 bytes)", ...).
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # keep the two-argument constructor picklable
        return (type(self), (self.path, self.reason))


@dataclasses.dataclass
class DecodedImage:
    """A decoded image and what is known about its source.

    Attributes:
      rgb: uint8 [H, W, 3], upright (EXIF orientation applied).
      alpha: uint8 [H, W], or None when the source has no transparency (no
        alpha channel and no transparent palette entry). A fully opaque alpha
        channel in the source is kept as an all-255 array.
      format: PIL format name of the source ("JPEG", "PNG", ...). Camera JPEGs
        that PIL opens as "MPO" are reported as "JPEG".
      icc_profile: the ICC profile that describes ``rgb``, or None (sRGB).
        A CMYK source converted through its profile to sRGB reports None.
      exif: raw EXIF bytes with the orientation tag removed, or None.
      dpi: ``(x, y)`` resolution the source declares, or None.
      xmp: the XMP packet (rights, credits, keywords), with any
        ``tiff:Orientation`` removed once the orientation is applied, or None.
      text: a PNG's text chunks other than XMP (``Copyright``, ``Author``,
        ...), or None.
      animated: True when the source has more than one frame (animated GIF,
        WebP or PNG, multi-page TIFF); the first frame is decoded.
      notes: human-readable remarks about what the conversion did.
    """

    rgb: np.ndarray
    alpha: np.ndarray | None
    format: str
    icc_profile: bytes | None = None
    exif: bytes | None = None
    dpi: tuple[float, float] | None = None
    xmp: bytes | None = None
    text: dict[str, str] | None = None
    animated: bool = False
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])


def _check_file(path: pathlib.Path) -> None:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImageError(path, "file not found") from None
    except PermissionError:
        raise ImageError(path, "permission denied (cannot stat file)") from None
    except OSError as e:
        raise ImageError(path, f"cannot access file ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(path, "is a directory, not an image file")
    if not stat.S_ISREG(st.st_mode):
        # A FIFO or device would block or never end.
        raise ImageError(path, "not a regular file (a pipe, socket or device)")
    if st.st_size == 0:
        raise ImageError(path, "empty file (0 bytes)")


def _source_bits(img: Image.Image) -> int:
    """Bits per sample of the stored data, read from the undecoded tile list.

    PIL decodes 16-bit RGB(A) PNG/TIFF straight into 8-bit modes (keeping the
    high byte), so the mode alone does not tell that the source was 16-bit.
    """
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        return 16 if img.mode.startswith("I;16") else 32
    for tile in getattr(img, "tile", None) or ():
        args = tile[3] if len(tile) > 3 else None
        rawmode = args[0] if isinstance(args, tuple) and args else args
        if isinstance(rawmode, str) and ";16" in rawmode:
            return 16
    return 8


def _wide_to_uint8(img: Image.Image, notes: list[str]) -> np.ndarray:
    """Single-channel I;16*, I or F image -> uint8 [H, W]."""
    if img.mode.startswith("I;16"):
        data = np.asarray(img).astype(np.uint16)  # also fixes I;16B byte order
        # Keep the high byte: the same rule PIL applies to 16-bit RGB PNG and
        # TIFF, so 16-bit gray and 16-bit colour sources scale identically.
        notes.append("16-bit image scaled to 8 bits")
        return (data >> 8).astype(np.uint8)
    data = np.asarray(img)
    if img.mode == "I":
        lo, hi = (int(data.min()), int(data.max())) if data.size else (0, 0)
        if lo >= 0 and hi <= 65535:
            notes.append("16-bit image scaled to 8 bits")
            return (data.astype(np.uint32) >> 8).astype(np.uint8)
        notes.append(
            f"32-bit integer image with values {lo}..{hi} stretched to 0..255"
        )
    else:  # "F"
        finite = data[np.isfinite(data)]
        lo = float(finite.min()) if finite.size else 0.0
        hi = float(finite.max()) if finite.size else 0.0
        if lo >= 0.0 and hi <= 1.0:
            notes.append("floating-point image (0..1) scaled to 8 bits")
            out = np.nan_to_num(data, nan=0.0, posinf=1.0, neginf=0.0)
            return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)
        notes.append(
            f"floating-point image with values {lo:g}..{hi:g} stretched to 0..255"
        )
    # Out-of-range data: stretch the observed range linearly onto 0..255.
    data = np.nan_to_num(data.astype(np.float64), nan=lo, posinf=hi, neginf=lo)
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return np.clip(np.rint((data - lo) * scale), 0, 255).astype(np.uint8)


def _cmyk_to_rgb(img: Image.Image, icc: bytes | None, notes: list[str]):
    """CMYK -> (RGB image, icc profile describing it)."""
    if icc:
        try:
            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            dst = ImageCms.createProfile("sRGB")
            out = ImageCms.profileToProfile(
                img, src, dst, renderingIntent=0, outputMode="RGB"
            )
            notes.append("CMYK converted to sRGB through its ICC profile")
            return out, None
        except (ImportError, OSError, ValueError, TypeError, _PyCMSError) as e:
            # An unusable profile: fall back to PIL's naive conversion and say so.
            notes.append(
                f"CMYK ICC profile unusable ({e}); converted without colour management"
            )
    else:
        notes.append("CMYK converted to RGB without a colour profile (approximate)")
    return img.convert("RGB"), None


def _to_rgb_alpha(img: Image.Image, notes: list[str], sixteen_bit: bool = False):
    """Any PIL mode -> (uint8 [H,W,3], uint8 [H,W] or None, icc or None).

    ``sixteen_bit``: the source stored 16-bit samples (a 16-bit RGB PNG
    decodes to mode RGB, but its transparent colour key stays 16-bit).
    """
    icc = img.info.get("icc_profile") or None
    mode = img.mode
    has_transparency = "transparency" in img.info

    if mode in ("I", "F") or mode.startswith("I;16"):
        gray = _wide_to_uint8(img, notes)
        alpha = None
        key = img.info.get("transparency")
        if isinstance(key, int) and mode != "F":  # a 16-bit grey PNG's tRNS: the exact grey
            alpha = np.where(np.asarray(img) == key, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2), alpha, icc
    if mode == "RGB" and sixteen_bit and "transparency" in img.info:
        # PIL keeps only each sample's high byte, and its convert("RGBA")
        # compares the 16-bit key with those: rarely right. Matching the high
        # bytes would take every colour within 1/256 of the key with it (a
        # black key, all deep shadows), so the key is not applied.
        notes.append("16-bit transparent colour key (tRNS) not applied: the image is kept opaque")
        return np.asarray(img, dtype=np.uint8), None, icc
    if mode == "CMYK":
        rgb_img, icc = _cmyk_to_rgb(img, icc, notes)
        return np.asarray(rgb_img, dtype=np.uint8), None, icc
    if mode in ("L", "1") and not has_transparency:
        gray = np.asarray(img.convert("L"), dtype=np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2), None, icc
    if mode in ("LA", "La"):
        la = np.asarray(img.convert("LA"), dtype=np.uint8)
        return np.repeat(la[:, :, :1], 3, axis=2), la[:, :, 1].copy(), icc
    if mode == "RGB" and not has_transparency:
        return np.asarray(img, dtype=np.uint8), None, icc

    wants_alpha = has_transparency or mode in ("RGBA", "RGBa", "PA", "LA", "La")
    if mode == "P":
        # The palette decides: a palette with alpha or a transparent index
        # becomes RGBA, anything else plain RGB.
        wants_alpha = wants_alpha or img.palette is not None and (
            img.palette.mode == "RGBA"
        )
    if wants_alpha:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.uint8)
        return rgba[:, :, :3].copy(), rgba[:, :, 3].copy(), icc
    # YCbCr, RGBX, LAB, HSV, P without transparency, ...
    return np.asarray(img.convert("RGB"), dtype=np.uint8), None, icc


def _rgb_profile(icc: bytes | None, notes: list[str]) -> bytes | None:
    """``icc`` if it describes RGB pixels, else None (with a note).

    A grey source's profile (colour space ``GRAY``) cannot describe the RGB
    output the image becomes: written with it, colour-managed viewers and
    ``ImageCms`` refuse the file. Grey values are kept as they are.
    """
    # An ICC header: 128 bytes, the colour space at 16, the signature "acsp" at 36.
    if icc is None or len(icc) < 128 or icc[36:40] != b"acsp" or icc[16:20] == b"RGB ":
        return icc
    space = icc[16:20].decode("latin-1", "replace").strip() or "unknown"
    notes.append(f"{space} colour profile dropped: it cannot describe the RGB output")
    return None


# What a TIFF's own tags hold of what other formats keep in EXIF: its
# descriptive IFD0 tags (ImageDescription, Make, Model, Software, DateTime,
# Artist, Copyright) and the Exif and GPS sub-IFDs. Its layout tags (sizes,
# strip offsets, compression) describe the source file, not the output.
_TIFF_EXIF_TAGS = (0x010E, 0x010F, 0x0110, 0x0131, 0x0132, 0x013B, 0x8298)
_EXIF_SUB_IFDS = (0x8769, 0x8825)


def _tiff_exif(tags: Image.Exif) -> bytes | None:
    exif = Image.Exif()
    for tag in _TIFF_EXIF_TAGS:
        if tag in tags:
            exif[tag] = tags[tag]
    for ifd in _EXIF_SUB_IFDS:
        if entries := tags.get_ifd(ifd):
            exif.get_ifd(ifd).update(entries)
    return exif.tobytes() if len(exif) or any(exif.get_ifd(i) for i in _EXIF_SUB_IFDS) else None


def _orientation_and_exif(img: Image.Image) -> tuple[int, bytes | None]:
    """EXIF orientation (1 when absent) and the EXIF bytes without it."""
    raw = img.info.get("exif")
    try:
        exif = img.getexif()
        orientation = int(exif.get(_EXIF_ORIENTATION, 1) or 1)
        if raw is None and img.format == "TIFF":  # TIFF has no EXIF block: its tags are the metadata
            return orientation, _tiff_exif(exif)
    except (ValueError, TypeError, OSError, SyntaxError, KeyError):
        # Broken EXIF must not cost the user the picture itself.
        return 1, None
    if raw and _EXIF_ORIENTATION in exif:
        del exif[_EXIF_ORIENTATION]
        raw = exif.tobytes()
    if isinstance(raw, str):
        raw = raw.encode("latin-1")
    return orientation, (bytes(raw) if raw else None)


#: The PNG text chunk that holds XMP (read here, written by image_writer).
XMP_PNG_KEY = "XML:com.adobe.xmp"
# tiff:Orientation as an attribute (tiff:Orientation="6") or an element.
_XMP_ORIENTATION = re.compile(
    rb'\s*tiff:Orientation\s*=\s*("[^"]*"|\'[^\']*\')|<tiff:Orientation>[^<]*</tiff:Orientation>')


def _other_metadata(img: Image.Image, oriented: bool) -> tuple[tuple[float, float] | None, bytes | None,
                                                               dict[str, str] | None]:
    """The resolution, XMP packet and PNG text chunks of an open image.

    Once the orientation is applied to the pixels, an XMP ``tiff:Orientation``
    would turn them again in the viewers that read it: it is removed.
    """
    dpi = img.info.get("dpi")
    try:
        dpi = (float(dpi[0]), float(dpi[1])) if dpi and float(dpi[0]) > 0 and float(dpi[1]) > 0 else None
    except (TypeError, ValueError, IndexError):
        dpi = None
    xmp = img.info.get("xmp") or img.info.get(XMP_PNG_KEY)
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    if xmp and oriented:
        xmp = _XMP_ORIENTATION.sub(b"", bytes(xmp))
    text = None
    if img.format == "PNG":
        text = {k: v for k, v in getattr(img, "text", {}).items() if k != XMP_PNG_KEY and isinstance(v, str)} or None
    return dpi, (bytes(xmp) if xmp else None), text


_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def read_image(
    path: str | os.PathLike, *, max_pixels: int | None = None, rgbx_over: int | None = None
) -> DecodedImage:
    """Decodes one image file with PIL into 8-bit RGB plus optional alpha.

    Args:
      path: the image file.
      max_pixels: refuse images with more than this many pixels (width x
        height read from the header, before decoding). It replaces PIL's
        decompression-bomb guard, which it raises process-wide when larger
        (never lowers). None: no limit of our own; PIL's guard
        (``2 * Image.MAX_IMAGE_PIXELS``, about 179 megapixels by default)
        applies.
      rgbx_over: decode plain RGB JPEGs (no EXIF rotation) with a side over
        this many pixels into a writable ``[H, W, 4]`` buffer, and return its
        first three channels as ``rgb`` (a view; the same pixels as without).
        The catalog converter passes its tile size: it translates tiled
        images in place in that buffer, and PIL encodes RGBX without a copy
        (it holds RGB as 4 bytes a pixel anyway), so a big JPEG costs 4 bytes
        a pixel from decoding to encoding instead of 7. None: never.

    Returns:
      A :class:`DecodedImage`.

    Raises:
      ImageError: missing or unreadable file, empty file, not an image,
        truncated or corrupt data, too many pixels, decompression bomb.
    """
    path = pathlib.Path(path)
    _check_file(path)
    return _decode(path, path, max_pixels, rgbx_over)


def header_pixels(path: str | os.PathLike) -> int:
    """Width x height from the file's header, without decoding pixels; 0 when
    the file cannot be opened (:func:`read_image` says why)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return 0  # opening a FIFO would block
        with Image.open(path, formats=_ALLOWED_FORMATS) as img:
            return img.width * img.height
    except Exception:  # noqa: BLE001 - any failure is read_image's to report
        return 0


def read_image_bytes(
    data: bytes, *, name: str = "<bytes>", max_pixels: int | None = None,
    rgbx_over: int | None = None,
) -> DecodedImage:
    """Like :func:`read_image` for an encoded image held in memory.

    Args:
      data: the encoded file contents (JPEG, PNG, ...).
      name: what error messages call the image (``ImageError.path``).
      max_pixels, rgbx_over: as in :func:`read_image`.
    """
    if not data:
        raise ImageError(name, "empty file (0 bytes)")
    return _decode(io.BytesIO(bytes(data)), name, max_pixels, rgbx_over)


def _png_crc_error(source) -> str | None:
    """Checks every PNG chunk's CRC; PIL skips the check for pixel data.

    Without this, flipped bits inside IDAT often still inflate into a
    plausible image, and damaged files would train as if they were fine.
    """
    fp = open(source, "rb") if isinstance(source, (str, os.PathLike)) else source
    try:
        fp.seek(8)  # past the signature
        while True:
            header = fp.read(8)
            if len(header) < 8:
                return None  # end reached; truncation is PIL's to report
            length, kind = struct.unpack(">I4s", header)
            payload = fp.read(length)
            crc = fp.read(4)
            if len(payload) < length or len(crc) < 4:
                return None
            if zlib.crc32(kind + payload) & 0xFFFFFFFF != struct.unpack(">I", crc)[0]:
                name = kind.decode("latin-1")
                return f"corrupt image data (PNG chunk {name} fails its CRC check)"
            if kind == b"IEND":
                return None
    finally:
        if fp is not source:
            fp.close()


def _jpeg_rgbx(img: Image.Image, width: int, height: int) -> np.ndarray | None:
    """A plain JPEG decoded by libjpeg-turbo straight into an RGBX buffer.

    simplejpeg decodes into a buffer we own, which PIL cannot; its pixels
    equal PIL's (both are libjpeg-turbo with the accurate DCT and smooth
    upsampling; tests/image_io_test.py checks). The bytes come through PIL's
    own file handle, so a file replaced since its header was read cannot
    slip in. With ``strict`` any libjpeg warning raises, and then None sends
    the file to PIL, so what is accepted or refused (and why) stays PIL's
    decision.
    """
    img.fp.seek(0)
    data = img.fp.read()
    buffer = np.empty((height, width, 4), np.uint8)
    try:
        decoded = simplejpeg.decode_jpeg(data, colorspace="RGBX", buffer=buffer, strict=True)
    except Exception:  # noqa: BLE001 - ValueError for bad data; anything else: PIL decides too
        return None
    return buffer if decoded.shape == buffer.shape else None


_bomb_lock = threading.Lock()


def _allow_pixels(count: int) -> None:
    """Raises PIL's decompression-bomb limit to ``count`` pixels (never lowers it):
    a caller's own ``max_pixels`` is checked from the header instead."""
    with _bomb_lock:
        if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < count:
            Image.MAX_IMAGE_PIXELS = count


def _decode(source, path, max_pixels: int | None, rgbx_over: int | None = None) -> DecodedImage:
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # Someone flipped PIL's global switch; truncated files would then be
        # padded with grey and pass as valid training data.
        raise ImageError(
            path,
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True in this process; "
            "refusing to decode because truncated files would pass silently",
        )
    notes: list[str] = []
    if max_pixels is not None:
        _allow_pixels(int(max_pixels))
    try:
        with Image.open(source, formats=_ALLOWED_FORMATS) as img:
            width, height = img.size
            if width <= 0 or height <= 0:
                raise ImageError(path, f"invalid image size {width}x{height}")
            if max_pixels is not None and width * height > max_pixels:
                raise ImageError(
                    path,
                    f"too many pixels: {width}x{height} = {width * height:,} "
                    f"exceeds max_pixels={max_pixels:,}",
                )
            fmt = img.format or "unknown"
            n_frames = int(getattr(img, "n_frames", 1) or 1)
            if fmt == "MPO":
                # A camera JPEG with embedded previews, not an animation.
                fmt = "JPEG"
                animated = False
            else:
                animated = n_frames > 1
            if animated:
                img.seek(0)
                kind = {"TIFF": "multi-page TIFF", "GIF": "animated GIF"}.get(
                    fmt, f"animated {fmt}"
                )
                unit = "page" if fmt == "TIFF" else "frame"
                notes.append(f"{kind}: first {unit} of {n_frames} converted")
            sixteen_bit = _source_bits(img) == 16
            if sixteen_bit and not img.mode.startswith("I;16"):
                notes.append("16-bit image scaled to 8 bits")
            orientation, exif = _orientation_and_exif(img)
            # Before any transpose: a transposed copy has no format or PNG text.
            dpi, xmp, text = _other_metadata(img, orientation in _TRANSPOSE)
            buffer = None
            if (rgbx_over is not None and max(width, height) > rgbx_over and fmt == "JPEG"
                    and img.mode == "RGB" and orientation not in _TRANSPOSE):
                buffer = _jpeg_rgbx(img, width, height)
            if buffer is not None:
                rgb, alpha, icc = buffer[:, :, :3], None, img.info.get("icc_profile") or None
            else:
                img.load()  # decode now: truncation and corruption raise here
                if orientation in _TRANSPOSE:
                    # Pillow's TIFF plugin turns the image upright itself while
                    # loading (since before the Pillow 10 we require): turning
                    # it again would rotate it twice.
                    if fmt != "TIFF":
                        img = img.transpose(_TRANSPOSE[orientation])
                    notes.append(f"EXIF orientation {orientation} applied")
                rgb, alpha, icc = _to_rgb_alpha(img, notes, sixteen_bit)
            icc = _rgb_profile(icc, notes)
        if fmt == "PNG":
            crc_error = _png_crc_error(source)
            if crc_error:
                raise ImageError(path, crc_error)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(
            path,
            "not an image: contents are not a supported format "
            f"({', '.join(f for f in _ALLOWED_FORMATS if f != 'DIB')})",
        ) from None
    except Image.DecompressionBombError as e:
        raise ImageError(path, f"decompression bomb refused: {e}; a larger max_pixels "
                         "(infer.py --max_pixels) allows it") from None
    except FileNotFoundError:
        raise ImageError(path, "file not found") from None
    except PermissionError:
        raise ImageError(path, "permission denied (file is not readable)") from None
    except MemoryError:
        raise ImageError(path, "out of memory while decoding") from None
    except Exception as e:  # noqa: BLE001
        # PIL's plugins raise a zoo of types on bad data (OSError "image file
        # is truncated", SyntaxError "broken PNG file", ValueError, EOFError,
        # struct.error, IndexError, ...). Every one means "this file cannot be
        # decoded", and the caller must get an ImageError for it, not a crash.
        msg = str(e) or type(e).__name__
        if "truncated" in msg.lower():
            reason = f"truncated image data ({msg})"
        else:
            reason = f"corrupt image data ({type(e).__name__}: {msg})"
        raise ImageError(path, reason) from e
    return DecodedImage(
        rgb=rgb if buffer is not None else np.ascontiguousarray(rgb),
        alpha=None if alpha is None else np.ascontiguousarray(alpha),
        format=fmt,
        icc_profile=icc,
        exif=exif,
        dpi=dpi,
        xmp=xmp,
        text=text,
        animated=animated,
        notes=notes,
    )


def composite(
    rgb: np.ndarray,
    alpha: np.ndarray | None,
    background: Sequence[int] = (255, 255, 255),
) -> np.ndarray:
    """Alpha-composites ``rgb`` over a flat background colour.

    ``out = round((rgb * a + background * (255 - a)) / 255)`` in exact integer
    arithmetic, row chunk by row chunk so no full-size wide copy is made.

    Args:
      rgb: uint8 [H, W, 3] (straight, not premultiplied, colour).
      alpha: uint8 [H, W], or None (returns ``rgb`` unchanged).
      background: RGB colour, 0..255 each.

    Returns:
      uint8 [H, W, 3].
    """
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must be uint8 [H, W, 3], got {rgb.dtype} {rgb.shape}")
    if alpha is None:
        return rgb
    alpha = np.asarray(alpha)
    if alpha.dtype != np.uint8 or alpha.shape != rgb.shape[:2]:
        raise ValueError(
            f"alpha must be uint8 {rgb.shape[:2]}, got {alpha.dtype} {alpha.shape}"
        )
    bg = np.asarray(background, dtype=np.int64).reshape(-1)
    if bg.shape != (3,) or bg.min() < 0 or bg.max() > 255:
        raise ValueError(f"background must be 3 values in 0..255, got {background}")
    bg = bg.astype(np.uint32)
    out = np.empty_like(rgb)
    for top in range(0, rgb.shape[0], _COMPOSITE_ROWS):
        rows = slice(top, top + _COMPOSITE_ROWS)
        a = alpha[rows].astype(np.uint32)[:, :, None]
        mixed = rgb[rows].astype(np.uint32) * a + bg * (255 - a)
        out[rows] = ((mixed + 127) // 255).astype(np.uint8)
    return out


def visible_srgb(decoded: DecodedImage) -> np.ndarray:
    """What a colour comparison sees of ``decoded``: its colours in sRGB
    (:func:`to_srgb`), uint8 ``[N, 3]``, of the pixels at least half opaque
    (all of an opaque image's, row by row; a cut-out's background is left out)."""
    return visible_pixels(to_srgb(decoded.rgb, decoded.icc_profile, decoded.notes), decoded.alpha)


def visible_pixels(rgb: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """The ``[N, 3]`` colours of ``rgb`` where ``alpha`` is at least 128 (all where None)."""
    return rgb.reshape(-1, 3) if alpha is None else rgb[alpha >= 128]


@functools.lru_cache(maxsize=8)
def _to_srgb_transform(icc: bytes):
    from PIL import ImageCms

    return ImageCms.buildTransform(
        ImageCms.ImageCmsProfile(io.BytesIO(icc)), ImageCms.createProfile("sRGB"), "RGB", "RGB"
    )


def to_srgb(rgb: np.ndarray, icc_profile: bytes | None, notes: list[str] | None = None) -> np.ndarray:
    """uint8 ``rgb`` described by ``icc_profile``, converted to sRGB.

    The converter keeps a source's values and its profile (the output is
    tagged like the source), but colours compared across images -- fitting a
    tone to an Adobe RGB or Display P3 reference, say -- must be in one
    space. An unusable profile leaves the values as they are, with a note
    appended to ``notes``.

    Returns:
      uint8 [H, W, 3]; ``rgb`` itself when there is no profile.
    """
    if not icc_profile:
        return rgb
    try:
        from PIL import ImageCms

        image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB")
        return np.asarray(ImageCms.applyTransform(image, _to_srgb_transform(icc_profile)))
    except (ImportError, OSError, ValueError, TypeError, _PyCMSError) as e:
        # A profile that does not read (OSError), or that reads but cannot be
        # converted from (grey, Lab, a device link: PyCMSError).
        if notes is not None:
            notes.append(f"ICC profile unusable ({e}); its values are taken as sRGB")
        return rgb


def load_rgb(
    path: str | os.PathLike,
    *,
    background: Sequence[int] = (255, 255, 255),
    max_pixels: int | None = None,
) -> np.ndarray:
    """Reads an image as uint8 [H, W, 3], alpha composited on ``background``.

    White by default: product cut-outs are shot for white pages.

    Raises:
      ImageError: see :func:`read_image`.
    """
    decoded = read_image(path, max_pixels=max_pixels)
    return composite(decoded.rgb, decoded.alpha, background)


def _as_dir_set(exclude) -> set[str]:
    if exclude is None:
        return set()
    if isinstance(exclude, (str, os.PathLike)):
        exclude = [exclude]
    return {os.path.realpath(os.fspath(e)) for e in exclude}


def is_hidden(relative: str | os.PurePath) -> bool:
    """True when any part of ``relative`` starts with a dot (``.thumbs/x.jpg``,
    ``._x.jpg``): what :func:`list_images` does not walk into or list."""
    return any(part.startswith(".") for part in pathlib.PurePath(relative).parts)


def list_images(
    root: str | os.PathLike,
    *,
    recursive: bool = True,
    exclude: str | os.PathLike | Iterable[str | os.PathLike] | None = None,
    linked_folders: list[pathlib.Path] | None = None,
    others: list[pathlib.Path] | None = None,
    skip_folder: Callable[[str, list[str]], bool] | None = None,
    unlisted: list[tuple[pathlib.Path, OSError]] | None = None,
) -> list[pathlib.Path]:
    """Image files under ``root``, sorted, matched by extension.

    Extensions are compared case-insensitively against
    :data:`IMAGE_EXTENSIONS`. Hidden files and folders (name starting with
    ".", which includes macOS "._x.jpg" resource forks) are skipped; symlinked
    folders are not followed (no loops), symlinked files are listed.

    Args:
      root: the folder to walk.
      recursive: walk sub-folders too.
      exclude: a folder or folders not to walk, e.g. an output folder that
        lives inside the input folder.
      linked_folders: when given, the symlinked folders that were not
        followed are appended to it (so a caller can report them).
      others: when given, the files passed over for their extension
        (``x.heic``, ``notes.txt``, a JPEG named without one) are appended
        to it; hidden files are not.
      skip_folder: ``(folder, its file names) -> bool``, asked of every
        sub-folder (not ``root``): True leaves it and everything under it out.
      unlisted: when given, the sub-folders that could not be listed (no
        permission, say) are appended to it with their error; otherwise each
        is named in a warning. Their images are never passed over in silence.

    Returns:
      Paths (``root`` joined with the relative path), sorted by their
      relative path so the order is the same on every machine.

    Raises:
      FileNotFoundError: ``root`` does not exist.
      NotADirectoryError: ``root`` is not a folder.
      PermissionError: ``root`` cannot be listed.
    """
    root = pathlib.Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root}: folder not found")
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: not a folder")
    excluded = _as_dir_set(exclude)
    found: list[tuple[str, pathlib.Path]] = []
    top = os.fspath(root)

    def cannot_list(error: OSError) -> None:
        if error.filename is None or error.filename == top:  # os.walk names the root as given
            raise PermissionError(error.errno, f"{root}: cannot list the folder ({error.strerror})") from None
        if unlisted is not None:
            unlisted.append((pathlib.Path(error.filename), error))
        else:
            logging.warning("%s: cannot list the folder (%s); its images are left out", error.filename,
                            error.strerror)

    for dirpath, dirnames, filenames in os.walk(top, onerror=cannot_list):
        if os.path.realpath(dirpath) in excluded or (
                skip_folder is not None and dirpath != top and skip_folder(dirpath, filenames)):
            dirnames[:] = []  # first: nothing under a skipped folder is listed or reported
            continue
        if not recursive:
            dirnames[:] = []
        else:
            dirnames[:] = [
                d
                for d in dirnames
                if not d.startswith(".")
                and os.path.realpath(os.path.join(dirpath, d)) not in excluded
            ]
            if linked_folders is not None:
                linked_folders.extend(
                    pathlib.Path(dirpath, d) for d in dirnames if os.path.islink(os.path.join(dirpath, d))
                )
        for name in filenames:
            if name.startswith("."):
                continue
            if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                full = pathlib.Path(dirpath, name)
                found.append((full.relative_to(root).as_posix(), full))
            elif others is not None:
                others.append(pathlib.Path(dirpath, name))
    found.sort(key=lambda item: item[0])
    return [p for _, p in found]
