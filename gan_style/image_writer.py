"""Encoding converted images and writing them atomically.

The counterpart of :mod:`gan_style.image_io` for the catalog converter:
choose the output format from the source's, carry alpha, ICC profile and EXIF
where the format can hold them, and write so that a crash or a kill never
leaves a truncated file under the final name (temporary file in the same
folder, ``fsync``, ``os.replace``).
"""

from __future__ import annotations

import hashlib
import os
import pathlib

import numpy as np
from PIL import Image, PngImagePlugin

from gan_style import atomic, image_io

#: ``--format`` choices.
OUTPUT_FORMATS = ("same", "jpg", "png", "webp")

#: PIL format name -> what it can carry.
_CAPS = {
    "JPEG": {"alpha": False, "icc": True, "exif": True},
    "PNG": {"alpha": True, "icc": True, "exif": True},
    "WEBP": {"alpha": True, "icc": True, "exif": True},
    "TIFF": {"alpha": True, "icc": True, "exif": True},
    "BMP": {"alpha": False, "icc": False, "exif": False},
}
_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "TIFF": ".tif", "BMP": ".bmp"}
_REQUESTED = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}
# Source extensions that belong to each format we keep under --format=same.
_SAME_EXTENSIONS = {
    "JPEG": (".jpg", ".jpeg", ".jpe", ".jfif"),
    "PNG": (".png",),
    "WEBP": (".webp",),
    "TIFF": (".tif", ".tiff"),
    "BMP": (".bmp",),
}

TEMP_SUFFIX = ".gan_style-tmp"
NAME_MAX = 255  # bytes in one file name (ext4, APFS, NTFS in UTF-16 units: never more)


def temp_file_name(name: str, unique: str) -> str:
    """The temporary name beside a file ``name``: ``.NAME.UNIQUE.gan_style-tmp``.

    NAME becomes a hash of itself when the whole would pass 255 bytes: a long
    UTF-8 product name (78 CJK characters are 234 bytes) is a legal file name
    that the additions would make too long to create.
    """
    if len(os.fsencode(f".{name}.{unique}{TEMP_SUFFIX}")) > NAME_MAX:
        name = hashlib.sha1(os.fsencode(name)).hexdigest()[:16]
    return f".{name}.{unique}{TEMP_SUFFIX}"


def check_format(requested: str) -> str:
    """Validates a ``--format`` value."""
    if requested not in OUTPUT_FORMATS:
        raise ValueError(
            f"--format must be one of {', '.join(OUTPUT_FORMATS)}; got {requested!r}"
        )
    return requested


def output_format(requested: str, planned_format: str | None, has_alpha: bool) -> str:
    """The PIL format to write, once the image is decoded.

    ``planned_format`` is :func:`guess_output_format` of the source's name:
    the output format follows the name, not the decoded contents (a JPEG
    named ``.png`` becomes a PNG), so outputs can be named before decoding.
    Under ``same`` a source with transparency whose planned format has none
    (BMP, JPEG) becomes PNG so the alpha is kept. An explicit ``jpg`` drops
    alpha (the caller composites first).
    """
    check_format(requested)
    if requested != "same":
        return _REQUESTED[requested]
    fmt = (planned_format or "").upper()
    if fmt not in _CAPS:
        return "PNG"
    if has_alpha and not _CAPS[fmt]["alpha"]:
        return "PNG"
    return fmt


def guess_output_format(requested: str, source_suffix: str) -> str:
    """The output format a source's name plans: ``same`` keeps JPEG, PNG,
    WebP, TIFF and BMP; anything else (GIF: a 256-colour palette cannot hold
    a translated photo; AVIF) becomes PNG."""
    if requested != "same":
        return _REQUESTED[check_format(requested)]
    suffix = source_suffix.lower()
    for fmt, extensions in _SAME_EXTENSIONS.items():
        if suffix in extensions:
            return fmt
    return "PNG"


def output_suffix(fmt: str, source_suffix: str) -> str:
    """Keeps the source's own spelling (``.JPEG``) when the format is unchanged."""
    if source_suffix.lower() in _SAME_EXTENSIONS.get(fmt, ()):
        return source_suffix
    return _EXTENSIONS[fmt]


#: The largest side each format can store: WebP's header holds 14 bits; libjpeg refuses
#: sides over 65500 (JPEG_MAX_DIMENSION), though the header could hold 65535.
_MAX_SIDE = {"WEBP": 16383, "JPEG": 65500}


def size_problem(fmt: str, height: int, width: int) -> str | None:
    """Why an image of this size cannot be written as ``fmt``, or None.

    Checked before translating, so a too-large image fails in a second
    rather than after minutes of tiled translation.
    """
    limit = _MAX_SIDE.get(fmt)
    if limit is not None and max(height, width) > limit:
        return (f"{width}x{height} is too large for {fmt} output (at most {limit} pixels a side); "
                "use --format=png")
    return None


def can_carry_alpha(fmt: str) -> bool:
    return _CAPS[fmt]["alpha"]


#: Pillow writes XMP in one JPEG APP1 segment: 65,533 bytes less its 29-byte namespace.
_JPEG_MAX_XMP = 65504


#: Resolutions every format stores: JPEG's density is 16 bits, PNG's and BMP's
#: a 32-bit count per metre. A source's out of this range is junk (or a
#: pixel-per-cm value in the wrong field) and is dropped, never failing a write.
_DPI_RANGE = (1.0, 65535.0)
_EXIF_SUB_IFDS = (0x8769, 0x8825)  # Exif and GPS


def _usable_dpi(dpi) -> bool:
    return bool(dpi) and all(_DPI_RANGE[0] <= d <= _DPI_RANGE[1] for d in dpi)


def _exif_tags(exif) -> Image.Exif:
    tags = Image.Exif()
    if exif:
        tags.load(exif)
    return tags


def metadata_notes(fmt: str, xmp: bytes | None, text: dict[str, str] | None, *,
                   dpi: tuple[float, float] | None = None, exif: bytes | None = None) -> list[str]:
    """What of the source's metadata an output of ``fmt`` cannot keep, as manifest notes."""
    notes = []
    if dpi and not _usable_dpi(dpi) and fmt != "WEBP":
        notes.append(f"resolution {dpi[0]:g}x{dpi[1]:g} dpi dropped: out of {_DPI_RANGE[0]:g}-{_DPI_RANGE[1]:g}")
    if fmt == "TIFF" and exif and any(ifd in _exif_tags(exif) for ifd in _EXIF_SUB_IFDS):
        notes.append("EXIF camera and GPS details dropped: libtiff cannot write them in a compressed TIFF")
    if xmp and (fmt == "BMP" or (fmt == "JPEG" and len(xmp) > _JPEG_MAX_XMP)):
        why = "BMP has no place for it" if fmt == "BMP" else f"over JPEG's {_JPEG_MAX_XMP:,} bytes"
        notes.append(f"XMP metadata ({len(xmp):,} bytes) dropped: {why}")
    if text and fmt != "PNG":
        notes.append(f"PNG text ({', '.join(sorted(text))}) dropped: {fmt} output")
    return notes


def _save_options(fmt, quality, icc_profile, exif, dpi=None, xmp=None, text=None) -> dict:
    options: dict = {}
    caps = _CAPS[fmt]
    if icc_profile and caps["icc"]:
        options["icc_profile"] = icc_profile
    if exif and caps["exif"]:
        options["exif"] = exif
    if _usable_dpi(dpi) and fmt != "WEBP":  # WebP has no resolution field
        options["dpi"] = dpi
    if xmp and fmt in ("JPEG", "WEBP") and not (fmt == "JPEG" and len(xmp) > _JPEG_MAX_XMP):
        options["xmp"] = xmp
    if fmt == "TIFF" and (xmp or exif):
        tags = _exif_tags(exif)
        for ifd in _EXIF_SUB_IFDS:  # libtiff fails the whole write on these ("Error setting from dictionary")
            tags.pop(ifd, None)
        if xmp:
            tags[700] = xmp  # tag 700 of IFD0; Pillow takes it with the EXIF tags
        options["exif"] = tags
    if fmt == "PNG" and (xmp or text):
        chunks = PngImagePlugin.PngInfo()
        for key, value in (text or {}).items():
            chunks.add_itxt(key, value)
        if xmp:
            chunks.add_itxt(image_io.XMP_PNG_KEY, xmp.decode("utf-8", "replace"))
        options["pnginfo"] = chunks
    if fmt in ("JPEG", "WEBP"):
        options["quality"] = int(quality)
    if fmt == "TIFF":
        options["compression"] = "tiff_deflate"
    return options


def _rgbx_buffer(rgb: np.ndarray) -> np.ndarray | None:
    """The C-contiguous uint8 ``[H, W, 4]`` array that ``rgb`` is the first
    three channels of (as ``image_io.read_image(rgbx_over=...)`` returns), or None."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        return None
    base = rgb.base
    while isinstance(base, np.ndarray):
        if (base.dtype == np.uint8 and base.shape == rgb.shape[:2] + (4,) and base.flags.c_contiguous
                and base.strides == rgb.strides and base.ctypes.data == rgb.ctypes.data):
            return base
        base = base.base
    return None


def pil_image(rgb: np.ndarray, alpha: np.ndarray | None, fmt: str) -> Image.Image:
    """The PIL image that encodes as ``fmt``: ``alpha`` attached when ``fmt``
    can hold it; an RGBX view (see :func:`_rgbx_buffer`) shared, not copied,
    for JPEG."""
    if alpha is not None and _CAPS[fmt]["alpha"]:
        image = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
        image.putalpha(Image.fromarray(np.ascontiguousarray(alpha), "L"))
        return image
    size = (rgb.shape[1], rgb.shape[0])
    rgbx = _rgbx_buffer(rgb)
    if rgbx is not None:
        # PIL keeps RGB as 4 bytes a pixel, so it can share an RGBX buffer
        # (JPEG encodes it as it is) where it would copy a 3-byte one.
        image = Image.frombuffer("RGBX", size, rgbx, "raw", "RGBX", 0, 1)
        return image if fmt == "JPEG" else image.convert("RGB")
    # A copy into PIL's own 4-byte-a-pixel layout.
    return Image.frombuffer("RGB", size, np.ascontiguousarray(rgb), "raw", "RGB", 0, 1)


def write_image(
    path: str | os.PathLike,
    rgb: np.ndarray,
    alpha: np.ndarray | None = None,
    *,
    fmt: str = "PNG",
    quality: int = 95,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
    temp_tag: str = "",
    dpi: tuple[float, float] | None = None,
    xmp: bytes | None = None,
    text: dict[str, str] | None = None,
) -> os.stat_result:
    """Encodes and writes one image atomically.

    The encoded bytes go to a temporary file in the destination folder,
    which is flushed to disk and then renamed over ``path``: a reader (or a
    rerun after a kill) sees either no file or the complete one.

    Args:
      path: final file name.
      rgb: uint8 ``[H, W, 3]``; when it is the first three channels of an
        RGBX buffer, JPEG is encoded from that buffer without a copy.
      alpha: uint8 ``[H, W]`` or None; written only when ``fmt`` can hold it.
      fmt: PIL format name (``JPEG``, ``PNG``, ``WEBP``, ``TIFF``, ``BMP``).
      quality: JPEG/WebP quality, 1..100.
      icc_profile, exif: carried when the format allows.
      dpi, xmp, text: the resolution, XMP packet and PNG text chunks
        (:class:`gan_style.image_io.DecodedImage`), carried where the format
        has a place for them (:func:`metadata_notes` says what is not).
      temp_tag: extra text in the temporary name (e.g. the shard), so
        concurrent writers never share one.

    Returns:
      The written file's ``os.stat`` (its size and modification time go into
      the manifest).
    """
    path = pathlib.Path(path)
    if fmt not in _CAPS:
        raise ValueError(f"cannot write format {fmt!r}")
    image = pil_image(rgb, alpha, fmt)
    # Its own temporary name: a catalog run cleans up a killed run's by it.
    with atomic.replacing(path, path.with_name(temp_file_name(path.name, f"{os.getpid()}{temp_tag}"))) as temp:
        image.save(temp, format=fmt, **_save_options(fmt, quality, icc_profile, exif, dpi, xmp, text))
    return path.stat()
