"""The tone studio's image engine: no web code, only images and profiles.

The expensive step, the generator, runs once per image (:meth:`Studio.add_image`)
and its float output is cached. Every slider change then re-runs only
:meth:`gan_style.Translator.finish` (strength blend + tonal layer + uint8) on
that cached output (:meth:`Studio.render`): a few pointwise operations, tens of
milliseconds for a 512 px image on a laptop CPU.

What the studio shows is what ``infer.py --tone=<downloaded profile>`` writes:
the studio decodes with the same decoder (:mod:`gan_style.image_io`), feeds
the model the same input (alpha composited on white; the output blended with
the source's own colours and the alpha channel kept), generates the same way (``Translator.generate``, or for an
image with a side over ``tile`` the same shared-statistics tiles as
:class:`gan_style.tiling.TiledTranslator`), and finishes with the same
``Translator.finish``. The one difference is documented on the page: an image
larger than ``preview_size`` on its long side is reduced to it for the
studio, while ``infer.py`` converts the full image.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import itertools
import logging
import os
import pathlib
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from PIL import Image

from gan_style import image_io, tiling, tonal

#: Largest upload the server accepts, in bytes (checked before reading it).
DEFAULT_MAX_UPLOAD_BYTES = 25 * 1024 * 1024
#: Largest decoded image, in pixels (checked from the header, before decoding).
DEFAULT_MAX_PIXELS = 50_000_000
#: Long side, in pixels, of the working copy the studio translates and shows.
DEFAULT_PREVIEW_SIZE = 1024
#: Long side to which reference images are reduced before ``fit_profile``
#: (it matches tonal statistics, which need no detail).
REFERENCE_SIZE = 256
#: Images kept in memory (source + cached generator output); older ones are
#: dropped and have to be uploaded again.
DEFAULT_MAX_IMAGES = 8
#: Most reference images one "match a reference" request may carry.
MAX_REFERENCES = 32


_log = logging.getLogger("gan_style.studio")


def neutral_vector() -> list[float]:
    """The neutral profile (full strength) in PROFILE_VECTOR_NAMES order."""
    return tonal.PRESETS["neutral"].to_vector()


class StudioError(ValueError):
    """A request the studio cannot serve, with a message for the page."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclasses.dataclass
class StudioImage:
    """One image in the studio.

    Attributes:
      id: the key the web page uses for it.
      name: the file name it was uploaded or picked as.
      rgb: uint8 [H, W, 3], the working copy (reduced to ``preview_size``):
        the source's own colours (not composited).
      alpha: uint8 [H, W] or None, kept as the catalog converter keeps it.
      generated: float32 [1, H, W, 3] in [-1, 1]: the generator's output
        (for the image composited on white), computed once.
      original_size: (width, height) of the decoded file.
      notes: what decoding and reducing did (shown on the page).
      generate_seconds: how long the generator pass took.
      icc_profile: the source's ICC profile (None: sRGB). The converter
        writes the output's values with it, so the studio's PNGs carry it
        too: a browser then shows an Adobe RGB photo as infer.py's output
        looks, not duller.
    """

    id: str
    name: str
    rgb: np.ndarray
    alpha: np.ndarray | None
    generated: tf.Tensor
    original_size: tuple[int, int]
    notes: list[str]
    generate_seconds: float
    icc_profile: bytes | None = None

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "width": self.width,
            "height": self.height,
            "original_width": self.original_size[0],
            "original_height": self.original_size[1],
            "has_alpha": self.alpha is not None,
            "notes": list(self.notes),
            "generate_seconds": round(self.generate_seconds, 3),
        }


def _visible_reduced(rgb: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """``rgb`` reduced to ``REFERENCE_SIZE``, as the ``[1, N, 3]`` sRGB colours
    a fit reads of it: its pixels at least half opaque, as fit_profile reads
    files (the layout does not matter to it: the tone is pointwise)."""
    size = reduced_size(rgb.shape[1], rgb.shape[0], REFERENCE_SIZE)
    if size != rgb.shape[1::-1]:
        rgb, alpha = _reduce(rgb, alpha, size)
    return image_io.visible_pixels(rgb, alpha)[None]


def _alpha_batch(image: StudioImage) -> tf.Tensor:
    """``image``'s alpha as uint8 ``[1, H, W, 1]``, all 255 for an opaque image."""
    if image.alpha is None:
        return tf.fill([1, image.height, image.width, 1], tf.constant(255, tf.uint8))
    return tf.constant(image.alpha[None, ..., None])


def _fit_function():
    """``gan_style.fit_profile`` if this version of the library has it, else None."""
    import gan_style

    fit = getattr(gan_style, "fit_profile", None)
    if fit is None:
        try:
            from gan_style.personalize import fit_profile as fit
        except ImportError:
            return None
    return fit


def fit_available() -> bool:
    """Whether "match a reference" can run."""
    return _fit_function() is not None


def parameter_table() -> list[dict[str, Any]]:
    """Every slider the page shows, with the range the library documents.

    The ranges come from :data:`gan_style.tonal.RANGES` and the neutral
    values from :data:`gan_style.tonal.NEUTRAL`: never duplicated here.
    """
    rows = []
    for name in tonal.PROFILE_VECTOR_NAMES:
        low, high = tonal.RANGES[name]
        neutral = tonal.NEUTRAL.get(name, 1.0)  # strength: 1 = full translation
        rows.append(
            {
                "name": name,
                "label": name.replace("_", " "),
                "min": low,
                "max": high,
                "neutral": neutral,
                # Every range's ends and neutral value, and every preset, lie on
                # a 0.01 grid, so the sliders can show them exactly.
                "step": 0.01,
            }
        )
    return rows


def profile_from_values(values: dict[str, Any], source: str = "profile") -> tonal.Profile:
    """A validated Profile from JSON-like values (errors name the key)."""
    try:
        return tonal.Profile.from_dict(values, source=source)
    except ValueError as error:
        raise StudioError(str(error)) from None


def profile_from_query(query: dict[str, str], source: str = "request") -> tonal.Profile:
    """A validated Profile from URL query strings (numbers given as text)."""
    values: dict[str, Any] = {}
    for key, text in query.items():
        if key in tonal.PROFILE_VECTOR_NAMES:
            try:
                values[key] = float(text)
            except ValueError:
                raise StudioError(f"{source}: {key!r} must be a number, got {text!r}") from None
        else:
            values[key] = text  # name/description, or an unknown key Profile names
    return profile_from_values(values, source)


def profile_from_json_bytes(data: bytes, name: str) -> tonal.Profile:
    """Parses an uploaded profile file the way :func:`gan_style.load_profile` does."""
    try:
        text = data.decode("utf-8-sig")  # as load_profile: a BOM is fine
    except UnicodeDecodeError:
        raise StudioError(f"{name}: not a UTF-8 JSON profile") from None
    try:
        parsed = tonal.parse_json(text, name)
    except ValueError as error:
        raise StudioError(str(error)) from None
    return profile_from_values(parsed, source=name)


def encode_png(
    rgb: np.ndarray, alpha: np.ndarray | None = None, fast: bool = False, icc_profile: bytes | None = None
) -> bytes:
    """PNG bytes of uint8 RGB (plus alpha), tagged with ``icc_profile`` if given.
    ``fast``: light compression for previews."""
    image = Image.fromarray(rgb, "RGB")
    if alpha is not None:
        image = Image.merge("RGBA", (*image.split(), Image.fromarray(alpha, "L")))
    buffer = io.BytesIO()
    options = {"icc_profile": icc_profile} if icc_profile else {}
    image.save(buffer, format="PNG", compress_level=1 if fast else 6, **options)
    return buffer.getvalue()


def _reduce(rgb: np.ndarray, alpha: np.ndarray | None, size: tuple[int, int]):
    """``(rgb, alpha)`` resized to ``size`` (Lanczos). A cut-out is resized as
    one RGBA image, which PIL weights by alpha: resized apart, the colour
    hidden under transparent pixels (often black) bled into the edges."""
    if alpha is None:
        return np.asarray(Image.fromarray(rgb, "RGB").resize(size, Image.Resampling.LANCZOS)), None
    rgba = np.asarray(Image.fromarray(np.dstack([rgb, alpha]), "RGBA").resize(size, Image.Resampling.LANCZOS))
    return np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3])


def pixel_bucket(pixels: int) -> int:
    """The smallest of 4096, 2^k and 1.5 * 2^k that holds ``pixels``: at most
    half again as many pixels, two lengths per doubling."""
    size = 4096
    while size < pixels:
        size = size * 3 // 2 if size & (size - 1) == 0 else size * 4 // 3
    return size


def reduced_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    """(width, height) scaled so the long side is at most ``long_side``."""
    scale = long_side / max(width, height)
    if scale >= 1.0:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


class Studio:
    """Images, their cached translations, and the tone applied to them.

    Thread-safe: the web server calls it from several request threads. The
    generator pass is serialised (one at a time; on a small CPU two at once
    would only both be slower), renders run concurrently.
    """

    def __init__(
        self,
        translator,
        *,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        preview_size: int = DEFAULT_PREVIEW_SIZE,
        max_images: int = DEFAULT_MAX_IMAGES,
        image_dir: str | os.PathLike | None = None,
        tile: int | None = tiling.DEFAULT_TILE,
        overlap: int = tiling.DEFAULT_OVERLAP,
        stats_size: int = tiling.DEFAULT_STATS_SIZE,
    ):
        """Args:
        translator: a :class:`gan_style.Translator`.
        max_pixels: refuse uploads with more decoded pixels than this.
        preview_size: long side of the working copy.
        max_images: images kept in memory.
        image_dir: a folder of images the page offers to pick from.
        tile, overlap, stats_size: as ``infer.py``'s flags (same defaults):
          an image with a side over ``tile`` is generated in tiles that share
          its thumbnail's instance-norm statistics, exactly as the catalog
          converter does, so the preview shows what the catalog will get.
          0/None: never tile.
        """
        if preview_size < 1:
            raise ValueError(f"preview_size must be >= 1, got {preview_size}")
        if max_images < 1:
            raise ValueError(f"max_images must be >= 1, got {max_images}")
        self.translator = translator
        self.max_pixels = int(max_pixels)
        self.preview_size = int(preview_size)
        self.max_images = int(max_images)
        self.image_dir = None if image_dir is None else pathlib.Path(image_dir)
        if self.image_dir is not None and not self.image_dir.is_dir():
            raise ValueError(f"--images: {str(self.image_dir)!r} is not a folder")
        self.tile = int(tile) if tile else None
        self.overlap = int(overlap)
        self.stats_size = int(stats_size)
        self._tiled = None
        tiling.check_tiling(translator, self.tile, self.overlap, self.stats_size)  # now, naming the flag
        self._images: collections.OrderedDict[str, StudioImage] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._generate_lock = threading.Lock()
        self._ids = itertools.count(1)
        # finish() compiled with XLA: it fuses the dozen pointwise ops of the
        # blend and the tone into one pass over the pixels, about 6x faster than
        # the plain graph on a CPU (16 ms vs 100 ms for 512 px). XLA compiles
        # once per image size; add_image warms it up so the first slider move
        # is already fast. If XLA cannot compile here, the plain graph is used.
        signature = [
            tf.TensorSpec([None, None, None, 3], tf.uint8),
            tf.TensorSpec([None, None, None, 3], tf.float32),
            tf.TensorSpec([None, len(tonal.PROFILE_VECTOR_NAMES)], tf.float32),
            tf.TensorSpec([None, None, None, 1], tf.uint8),  # alpha, 255 for an opaque image
        ]
        self._finish_graph = tf.function(self._finish_eager, input_signature=signature)
        # The generator as a graph, as infer.py runs it: in bfloat16, eager and
        # graph execution (whose fused kernels round differently) disagree by a
        # level on many pixels; two graphs agree.
        self._generate_graph = tf.function(self.translator.generate, input_signature=signature[:1])
        self._finish_xla = tf.function(
            self._finish_eager, input_signature=signature, jit_compile=True
        )
        self.use_xla = True

    def _finish_eager(self, images, generated, tone_params, alpha):
        return self.translator.finish(images, generated, tone_params=tone_params, alpha=alpha)

    def _finish(self, images, generated, tone_params, alpha):
        if self.use_xla:
            try:
                return self._finish_bucketed(images, generated, tone_params, alpha)
            except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as error:
                _log.warning("XLA cannot compile the preview (%s); using the plain graph", error)
                self.use_xla = False
        return self._finish_graph(images, generated, tone_params, alpha)

    def _finish_bucketed(self, images, generated, tone_params, alpha):
        """The XLA finish on the pixels laid out as one row, padded to a bucket.

        XLA compiles a program per input shape and keeps it (about 1.4 MB
        each): a session over a catalogue of mixed sizes grew without end.
        finish() is pointwise, so any layout of the pixels gives the same
        result; rows of :func:`pixel_bucket` lengths bound the programs to
        about two per doubling of the image size.
        """
        images, generated = tf.convert_to_tensor(images), tf.convert_to_tensor(generated)
        batch, height, width = (int(d) for d in images.shape[:3])
        pixels = height * width
        padding = [[0, 0], [0, 0], [0, pixel_bucket(pixels) - pixels], [0, 0]]

        def as_row(x):
            return tf.pad(tf.reshape(x, (batch, 1, pixels, x.shape[-1])), padding)

        out = self._finish_xla(as_row(images), as_row(generated), tone_params, as_row(tf.convert_to_tensor(alpha)))
        return tf.reshape(out[:, :, :pixels], (batch, height, width, 3))

    # -- images ------------------------------------------------------------

    def pickable_images(self) -> list[str]:
        """Relative paths (posix) of the images in ``image_dir``."""
        if self.image_dir is None:
            return []
        root = self.image_dir
        return [p.relative_to(root).as_posix() for p in image_io.list_images(root)]

    def pick_image(self, relative: str) -> StudioImage:
        """Loads an image from ``image_dir`` by the name :meth:`pickable_images` gave."""
        if relative not in self.pickable_images():
            raise StudioError(f"no image {relative!r} in the studio's image folder", status=404)
        path = self.image_dir / relative
        return self.add_image(path.read_bytes(), name=relative)

    def add_image(self, data: bytes, name: str) -> StudioImage:
        """Decodes an uploaded file, reduces it, runs the generator once.

        Raises:
          StudioError: not an image, corrupt, or more than ``max_pixels``.
        """
        try:
            decoded = image_io.read_image_bytes(data, name=name, max_pixels=self.max_pixels)
        except image_io.ImageError as error:
            raise StudioError(f"{name}: {error.reason}") from None
        return self.add_array(decoded.rgb, decoded.alpha, name=name, notes=decoded.notes,
                              icc_profile=decoded.icc_profile)

    def add_array(
        self,
        rgb: np.ndarray,
        alpha: np.ndarray | None = None,
        name: str = "image",
        notes: Sequence[str] = (),
        icc_profile: bytes | None = None,
    ) -> StudioImage:
        """Adds a decoded uint8 [H, W, 3] image (its own colours, not
        composited), optional alpha, and the ICC profile that describes its
        values (None: sRGB). As the catalog converter does, the model sees it
        composited on white, and the alpha goes back on the output."""
        import time

        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise StudioError(f"{name}: expected an RGB image, got shape {rgb.shape}")
        notes = list(notes)
        height, width = rgb.shape[:2]
        size = reduced_size(width, height, self.preview_size)
        if size != (width, height):
            rgb, alpha = _reduce(rgb, alpha, size)
            notes.append(
                f"reduced from {width}x{height} to {size[0]}x{size[1]} for the studio "
                f"(infer.py converts the full image)"
            )
        with self._generate_lock:
            start = time.perf_counter()
            generated = self._generate(rgb, alpha)
            seconds = time.perf_counter() - start
        image = StudioImage(
            id=f"img{next(self._ids)}",
            name=name,
            rgb=rgb,
            alpha=alpha,
            generated=generated,
            original_size=(width, height),
            notes=notes,
            generate_seconds=seconds,
            icc_profile=icc_profile,
        )
        # Compile the preview for this size now, not on the first slider move.
        self._finish(tf.constant(rgb[None]), generated, tf.constant([neutral_vector()]), _alpha_batch(image))
        with self._lock:
            self._images[image.id] = image
            while len(self._images) > self.max_images:
                self._images.popitem(last=False)
        return image

    def _generate(self, rgb: np.ndarray, alpha: np.ndarray | None) -> tf.Tensor:
        """The generator's float32 [1, H, W, 3] output for the image composited
        on white, tiled as infer.py tiles."""
        height, width = rgb.shape[:2]
        model_input = image_io.composite(rgb, alpha, (255, 255, 255))
        if not tiling.needs_tiling(height, width, self.tile):
            return self._generate_graph(tf.constant(model_input[None]))
        if self._tiled is None:
            self._tiled = tiling.TiledTranslator(
                self.translator, tile=self.tile, overlap=self.overlap, stats_size=self.stats_size
            )
        # TiledTranslator hands each blended region of generator output to a
        # finish callback and stores what it returns in ``out``: returning the
        # region unchanged into a float buffer keeps the blended generator
        # output itself, which render() then finishes in one pointwise pass,
        # the same values the converter finishes region by region.
        generated = np.empty((height, width, 3), np.float32)
        self._tiled.generate(model_input, finish=lambda source, region: region, out=generated)
        return tf.constant(generated[None])

    def get(self, image_id: str) -> StudioImage:
        with self._lock:
            image = self._images.get(image_id)
            if image is not None:
                self._images.move_to_end(image_id)
        if image is None:
            raise StudioError(
                f"unknown image {image_id!r} (the studio keeps the last {self.max_images} "
                "images; upload it again)",
                status=404,
            )
        return image

    # -- rendering -----------------------------------------------------------

    def render(self, image_id: str, profile: tonal.Profile) -> np.ndarray:
        """The translated, toned image as uint8 [H, W, 3] (no generator pass)."""
        image = self.get(image_id)
        params = tf.constant([profile.to_vector()], tf.float32)
        out = self._finish(tf.constant(image.rgb[None]), image.generated, params, _alpha_batch(image))
        return out[0].numpy()

    def blended(self, image_id: str, strength: float) -> np.ndarray:
        """The untoned strength blend, uint8 [H, W, 3]: what a tone is applied to."""
        neutral = tonal.PRESETS["neutral"].replace(strength=strength)
        return self.render(image_id, neutral)

    # -- personalisation by example -------------------------------------------

    def fit(
        self,
        references: Sequence[tuple[str, bytes]],
        image_id: str | None = None,
        strength: float = 1.0,
    ) -> tonal.Profile:
        """A profile whose tone makes the current translation look like ``references``.

        Args:
          references: (file name, encoded bytes) of one or more brand images.
          image_id: the image whose translation the tone will be applied to;
            its untoned blend at ``strength`` is the fit's source. None: the
            fit uses no source (see :func:`gan_style.fit_profile`).
          strength: the style strength kept in the returned profile.
        """
        fit_profile = _fit_function()
        if fit_profile is None:
            raise StudioError("this gan_style has no fit_profile yet", status=501)
        if not references:
            raise StudioError("match a reference: choose one or more reference images")
        if len(references) > MAX_REFERENCES:
            raise StudioError(
                f"match a reference: at most {MAX_REFERENCES} images, got {len(references)}"
            )
        images = []
        for name, data in references:
            try:
                decoded = image_io.read_image_bytes(data, name=name, max_pixels=self.max_pixels)
            except image_io.ImageError as error:
                raise StudioError(f"reference {name}: {error.reason}") from None
            pixels = _visible_reduced(image_io.to_srgb(decoded.rgb, decoded.icc_profile), decoded.alpha)
            if not pixels.size:
                raise StudioError(f"reference {name} has no pixel at least half opaque")
            images.append(pixels)
        sources = None
        if image_id is not None:
            image = self.get(image_id)
            blend = image_io.to_srgb(self.blended(image_id, strength), image.icc_profile)
            sources = [_visible_reduced(blend, image.alpha)]
        try:
            fitted = fit_profile(images, source_images=sources)
        except ValueError as error:
            raise StudioError(f"match a reference: {error}") from None
        return fitted.replace(strength=strength)
