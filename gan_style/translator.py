"""The reusable Translator: uint8 images of any size in, uint8 images out.

A :class:`Translator` wraps a generator (float [-1, 1] in and out, sizes
restricted) into an ordinary ``keras.Model`` for the people who reuse it:

    images uint8 [B, H, W, 3]
      -> generate(): scale to [-1, 1], mirror-pad (``context`` pixels, then
         to the generator's size rule, gan_style.networks.input_requirements),
         generator, crop back
      -> finish(): strength blend with the source, TonalAdjustment, uint8

It saves to ``.keras`` (loaded back by :func:`load_translator` in safe mode)
and exports a SavedModel for TF Serving or an ONNX model (:meth:`Translator.export`).
The tiled catalog converter and the tone studio call :meth:`generate` and
:meth:`finish` separately; :meth:`call` is exactly ``finish(generate(x))``.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import zipfile
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from gan_style import atomic, tonal
from gan_style.networks import input_requirements, leaf_layers
from gan_style.precision import generator_with_precision

#: Names of the serving signatures written by :meth:`Translator.export`.
SIGNATURE_IMAGES = "serving_default"
SIGNATURE_IMAGES_WITH_TONE = "translate_with_tone"
SIGNATURE_BYTES = "translate_bytes"

DIRECTIONS = ("ab", "ba")


def _padded_size(n, multiple: int, minimum: int):
    """Smallest size >= max(n, minimum) that is a multiple of ``multiple``."""
    rounded = (n + multiple - 1) // multiple * multiple
    return tf.maximum(rounded, tf.constant(-(-minimum // multiple) * multiple, n.dtype))


def _mirror_indices(n, target):
    """Source indices that mirror-pad an axis of length ``n`` to ``target``.

    Centred: ``(target - n) // 2`` before, the rest after. Reflect padding
    (``c b | a b c | b a``, no repeated edge) when each side's pad is at most
    ``n - 1``, which is what reflect can do; otherwise repeated symmetric
    padding (``... c b a | a b c | c b a a b c ...``), which works for any
    ``n >= 1`` (a 1-pixel axis becomes constant). Returns (indices, before).
    """
    before = (target - n) // 2
    after = target - n - before
    period = tf.maximum(2 * n - 2, 1)
    # i runs from -before; shifted by whole periods to start at 0 or more, so
    # the remainders below never see a negative operand: ONNX's converter
    # turns FloorMod into a truncating remainder, which differs there.
    i = tf.range(target) - before
    j = tf.math.floormod(i + period * (before // period + 1), period)
    reflect = tf.where(j >= n, period - j, j)
    k = tf.math.floormod(i + 2 * n * (before // (2 * n) + 1), 2 * n)
    symmetric = tf.where(k >= n, 2 * n - 1 - k, k)
    use_reflect = tf.logical_and(before <= n - 1, after <= n - 1)
    return tf.where(use_reflect, reflect, symmetric), before


def check_context(context) -> int:
    """``context`` as an int >= 0, or a ValueError naming it."""
    if isinstance(context, bool) or not isinstance(context, (int, np.integer)) or context < 0:
        raise ValueError(f"context must be an integer >= 0 (pixels), got {context!r}")
    return int(context)


def _check_rgb_generator(generator: keras.Model) -> None:
    """Rejects models that do not map RGB images to RGB images (e.g. a discriminator)."""
    try:
        in_shape, out_shape = generator.input_shape, generator.output_shape
    except (AttributeError, ValueError):  # a subclassed model not built yet: trust it
        return
    if isinstance(in_shape, list) or isinstance(out_shape, list):
        raise ValueError(
            f"Translator needs a one-input, one-output generator; {generator.name!r} is not"
        )
    if len(in_shape) != 4 or in_shape[-1] != 3 or len(out_shape) != 4 or out_shape[-1] != 3:
        raise ValueError(
            f"Translator needs a generator from [batch, H, W, 3] to [batch, H, W, 3]; "
            f"{generator.name!r} maps {in_shape} to {out_shape}"
        )


def _substr(encoded: tf.Tensor, pos, length) -> tf.Tensor:
    """Up to ``length`` bytes from ``pos``: empty past the end, where tf.strings.substr fails."""
    end = tf.cast(tf.strings.length(encoded), tf.int64)
    return tf.strings.substr(encoded, tf.cast(tf.clip_by_value(tf.cast(pos, tf.int64), 0, end), tf.int32), length)


def _uint(encoded: tf.Tensor, pos, size: int, big_endian: bool) -> tf.Tensor:
    """The unsigned ``size``-byte integer at ``pos`` (int64; missing bytes read as 0)."""
    raw = tf.io.decode_raw(_substr(encoded, pos, size) + b"\0" * size, tf.uint8)[:size]
    order = range(size - 1, -1, -1) if big_endian else range(size)
    return tf.reduce_sum(tf.cast(raw, tf.int64) * tf.constant([256**k for k in order], tf.int64))


def _exif_offset(encoded: tf.Tensor, container: str) -> tf.Tensor:
    """Where the EXIF block's TIFF header starts in a JPEG, PNG or WebP, or -1.

    Walks the container's own segments or chunks, as PIL reads them (text
    that merely mentions "eXIf" in a comment is not a chunk): a JPEG's APP1
    segment that starts "Exif\0\0", a PNG's eXIf chunk, a WebP's EXIF chunk
    (sometimes with JPEG's "Exif\0\0" in front).
    """
    length = tf.cast(tf.strings.length(encoded), tf.int64)
    missing = tf.constant(-1, tf.int64)

    def step(pos):  # -> (the TIFF offset if this is the EXIF block else -1, next position)
        if container == "jpeg":  # FF xx, big-endian size counting itself; no segments past the scan
            marker, data = _substr(encoded, pos, 2), pos + 4
            exif = tf.equal(marker, b"\xff\xe1") & tf.equal(_substr(encoded, data, 6), b"Exif\0\0")
            found = tf.where(exif, data + 6, missing)
            ends = tf.not_equal(_substr(encoded, pos, 1), b"\xff") | tf.equal(marker, b"\xff\xda")
            return found, tf.where(ends, length, pos + 2 + _uint(encoded, pos + 2, 2, True))
        if container == "png":  # big-endian size, type, data, CRC
            size, kind, data = _uint(encoded, pos, 4, True), _substr(encoded, pos + 4, 4), pos + 8
            ends = tf.equal(kind, b"IEND")
            return tf.where(tf.equal(kind, b"eXIf"), data, missing), tf.where(ends, length, data + size + 4)
        kind, size, data = _substr(encoded, pos, 4), _uint(encoded, pos + 4, 4, False), pos + 8  # WebP (RIFF)
        prefixed = tf.equal(_substr(encoded, data, 6), b"Exif\0\0")
        skip = tf.where(prefixed, tf.constant(6, tf.int64), 0)
        return tf.where(tf.equal(kind, b"EXIF"), data + skip, missing), data + size + size % 2

    start = {"jpeg": 2, "png": 8, "webp": 12}[container]
    _, found = tf.while_loop(
        lambda pos, found: (found < 0) & (pos + 8 <= length),
        lambda pos, found: step(pos)[::-1],
        (tf.constant(start, tf.int64), missing),
    )
    return found


def _png_or_webp(encoded: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Whether ``encoded`` is a PNG, and whether a WebP, by their signatures."""
    head = tf.strings.substr(encoded, 0, 12) + b"\0" * 12  # never shorter than 12 bytes
    is_png = tf.equal(tf.strings.substr(head, 0, 8), b"\x89PNG\r\n\x1a\n")
    is_webp = tf.equal(tf.strings.substr(head, 0, 4), b"RIFF") & tf.equal(tf.strings.substr(head, 8, 4), b"WEBP")
    return is_png, is_webp


def exif_orientation(encoded: tf.Tensor) -> tf.Tensor:
    """The EXIF orientation (1-8) of an encoded JPEG, PNG or WebP, in graph
    ops; 1 when there is none or no readable EXIF block.

    ``tf.io.decode_image`` ignores it, while cameras and phones store
    portrait shots sideways with orientation 6 or 8, and editors carry it
    into PNG (an ``eXIf`` chunk) and WebP (an ``EXIF`` chunk); infer.py (PIL)
    applies it, and so does the SavedModel's ``translate_bytes``.
    """
    is_jpeg = tf.equal(tf.strings.substr(encoded, 0, 2), b"\xff\xd8")
    is_png, is_webp = _png_or_webp(encoded)
    none = tf.constant(-1, tf.int64)
    tiff = tf.cond(is_jpeg, lambda: _exif_offset(encoded, "jpeg"), lambda: tf.cond(
        is_png, lambda: _exif_offset(encoded, "png"), lambda: tf.cond(
            is_webp, lambda: _exif_offset(encoded, "webp"), lambda: none)))
    block = _substr(encoded, tiff, 65536)  # EXIF blocks are at most 64 KiB
    data = tf.io.decode_raw(block + b"\0" * 16, tf.uint8)  # never empty
    data = tf.cast(data, tf.int32)
    n = tf.shape(data)[0] - 16

    def at(index):
        return tf.gather(data, tf.clip_by_value(index, 0, n + 15))

    little = tf.logical_and(at(0) == 0x49, at(1) == 0x49)
    byte_order = tf.logical_or(little, tf.logical_and(at(0) == 0x4D, at(1) == 0x4D))

    def read(offset, size):  # an unsigned integer of the TIFF block's byte order
        parts = [at(offset + k) for k in range(size)]
        little_endian = sum(part * 256**k for k, part in enumerate(parts))
        big_endian = sum(part * 256**k for k, part in enumerate(reversed(parts)))
        return tf.where(little, little_endian, big_endian)

    ifd = read(4, 4)
    count = read(ifd, 2)
    entries = ifd + 2 + 12 * tf.range(64)  # IFD0 of a camera JPEG has a dozen tags
    tags = read(entries, 2)
    values = read(entries + 8, 2)
    usable = (tf.range(64) < count) & (entries + 10 < n) & (tags == 0x0112) & (values >= 1) & (values <= 8)
    orientation = tf.reduce_max(tf.where(usable, values, 0))
    return tf.where((tiff >= 0) & byte_order & (orientation > 0), orientation, 1)


def apply_orientation(image: tf.Tensor, orientation: tf.Tensor) -> tf.Tensor:
    """``[H, W, C]`` turned upright for an EXIF ``orientation`` (as PIL's ``exif_transpose``)."""
    transposed = tf.transpose(image, [1, 0, 2])
    branches = [
        lambda: image,                                  # 1
        lambda: image[:, ::-1],                         # 2 mirrored
        lambda: image[::-1, ::-1],                      # 3 upside down
        lambda: image[::-1],                            # 4 mirrored upside down
        lambda: transposed,                             # 5
        lambda: transposed[:, ::-1],                    # 6 turned: rotate clockwise
        lambda: transposed[::-1, ::-1],                 # 7
        lambda: transposed[::-1],                       # 8 rotate counter-clockwise
    ]
    return tf.switch_case(tf.clip_by_value(orientation - 1, 0, 7), branches)


def decode_rgba(encoded: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """``(uint8 [H, W, 4], has_alpha)`` of an encoded image, in graph ops, as image_io reads it.

    A JPEG is decoded with the accurate integer IDCT, as libjpeg in PIL does
    (``tf.io.decode_image`` uses the fast one); grey becomes RGB. Alpha comes
    from a PNG's or WebP's alpha channel only: a 32-bit BMP's fourth byte is
    padding to PIL (often 0), and a grey or RGB PNG's transparent colour key
    (tRNS) is not read by TF. Where there is none the alpha is 255 and
    ``has_alpha`` False. Orientation is not applied.
    """
    may_have_alpha = tf.logical_or(*_png_or_webp(encoded))

    def opaque(rgb):
        return tf.concat([rgb, tf.fill(tf.shape(rgb[..., :1]), tf.constant(255, tf.uint8))], -1), tf.constant(False)

    def jpeg():
        return opaque(tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_ACCURATE"))

    def png_or_webp():  # at their own 1-4 channels
        image = tf.io.decode_image(encoded, expand_animations=False)
        channels = tf.shape(image)[-1]
        rgb = tf.cond(channels < 3, lambda: tf.repeat(image[..., :1], 3, axis=-1), lambda: image[..., :3])
        alpha = tf.cond(
            channels % 2 == 0,  # LA or RGBA
            lambda: image[..., -1:],
            lambda: tf.fill(tf.shape(image[..., :1]), tf.constant(255, tf.uint8)),
        )
        return tf.concat([rgb, alpha], -1), channels % 2 == 0

    def other():  # BMP, GIF
        return opaque(tf.io.decode_image(encoded, channels=3, expand_animations=False))

    return tf.cond(tf.io.is_jpeg(encoded), jpeg, lambda: tf.cond(may_have_alpha, png_or_webp, other))


def _check_static(dtype, shape) -> None:
    """Rejects a dtype or a static shape the Translator cannot take."""
    dtype = keras.backend.standardize_dtype(dtype)
    if dtype != "uint8":
        raise ValueError(
            f"Translator takes uint8 images [batch, H, W, 3]; got dtype {dtype}. In a Keras model, "
            'give it a uint8 input: keras.Input(shape=(None, None, 3), dtype="uint8"); convert float '
            "images in [0, 1] first with tf.image.convert_image_dtype(x, tf.uint8)"
        )
    shape = tuple(shape)
    if len(shape) != 4 or shape[-1] not in (None, 3):
        raise ValueError(f"Translator takes uint8 images [batch, H, W, 3]; got shape {shape}")
    if 0 in shape[1:3]:
        raise ValueError(f"Translator takes images of at least 1x1 pixels; got shape {shape}")


def _check_tone_shape(shape) -> int:
    """The column count (6 or 7) of a ``tone_params`` shape, or a ValueError."""
    shape = tuple(shape)
    if len(shape) != 2 or shape[-1] not in (6, 7):
        raise ValueError(
            f"tone_params must be [batch, 7] (columns {', '.join(tonal.PROFILE_VECTOR_NAMES)}) "
            f"or [batch, 6]; got {shape}"
        )
    return shape[-1]


def composite_on_white(images, alpha):
    """uint8 ``images`` composited on white under uint8 ``alpha``, with
    :func:`gan_style.image_io.composite`'s exact integer formula."""
    rgb, a = tf.cast(images, tf.int32), tf.cast(alpha, tf.int32)
    return tf.cast((rgb * a + 255 * (255 - a) + 127) // 255, tf.uint8)


def uncomposite(colours, alpha):
    """The colours that, composited on white under ``alpha``, give ``colours``.

    ``colours`` float in [0, 1]; ``alpha`` uint8. ``1 - (1 - c) / a``, clipped
    to [0, 1] (a colour darker than the alpha can reach on white has no exact
    answer); opaque pixels pass unchanged, fully transparent ones (no colour
    shows) too.
    """
    a = tf.cast(alpha, tf.float32) / 255.0
    partial = (a > 0.0) & (a < 1.0)
    straight = tf.clip_by_value(1.0 - (1.0 - colours) / tf.where(partial, a, 1.0), 0.0, 1.0)
    return tf.where(partial, straight, colours)


def _check_alpha_dtype(dtype) -> None:
    dtype = keras.backend.standardize_dtype(dtype)
    if dtype != "uint8":
        raise ValueError(
            f"alpha must be uint8 [batch, H, W, 1]; got dtype {dtype}. In a Keras model: "
            'keras.Input(shape=(None, None, 1), dtype="uint8")'
        )


def _check_alpha(alpha, images):
    """``alpha`` as a uint8 tensor ``[B, H, W, 1]`` that fits ``images``, or a ValueError."""
    alpha = tf.convert_to_tensor(alpha)
    _check_alpha_dtype(alpha.dtype)
    if alpha.shape.rank == 3:
        alpha = alpha[..., None]
    if alpha.shape.rank != 4 or alpha.shape[-1] not in (None, 1):
        raise ValueError(f"alpha must be uint8 [batch, H, W, 1]; got shape {alpha.shape}")
    if not alpha.shape[:3].is_compatible_with(images.shape[:3]):
        raise ValueError(f"alpha {alpha.shape} does not fit images {images.shape}")
    return alpha


def _unless_empty(images, translate):
    """``translate()``, or an empty batch for an empty one: the generator's
    reflection padding fails on an empty batch, and a serving client cannot
    drop one itself."""
    return tf.cond(tf.shape(images)[0] > 0, translate, lambda: tf.zeros_like(images))


@keras.saving.register_keras_serializable("gan_style")
class Translator(keras.Model):
    """A generator plus style strength and tone, for uint8 images of any size.

    Call it as ``translator(images)`` with uint8 ``[batch, H, W, 3]`` (any H
    and W >= 1), or ``translator(images, tone_params=t)`` with a float
    ``[batch, 7]`` tensor of per-image profiles (columns
    :data:`gan_style.tonal.PROFILE_VECTOR_NAMES`: six tonal parameters then
    strength) or ``[batch, 6]`` (tonal only; strength from the translator);
    a single row applies to every image. A transparent image's alpha goes in
    as ``translator(images, alpha=a)`` (uint8 ``[batch, H, W, 1]``): see
    :meth:`call`.
    Returns uint8 of the input's shape.

    Attributes:
      generator: the wrapped generator (float [-1, 1] -> float32 [-1, 1]).
      tonal: the :class:`~gan_style.tonal.TonalAdjustment` layer (its weights
        hold the default tone).
      strength: default style strength in [0, 1] (a Python float, fixed into
        any graph traced from the model; per-image strength goes through
        ``tone_params``).
      context: pixels of mirrored context added on every side of an image
        before the generator and cropped from its output (a Python int, fixed
        into traced graphs). A generator draws its own stripes along image
        borders; mirrored context moves them outside the image. It costs
        ``((H + 2c) (W + 2c)) / (H W)`` times the compute. 0 for a plain
        generator; the bundled model ships with 32.
    """

    def __init__(
        self,
        generator: keras.Model,
        tone: Any = None,
        strength: float | None = None,
        context: int = 0,
        **kwargs,
    ):
        """Args:
        generator: a gan_style generator (or its serialised config).
        tone: anything :func:`gan_style.tonal.resolve_tone` takes: None
          (neutral), a preset name, a profile JSON path, a dict, a Profile.
        strength: style strength in [0, 1]; None takes the profile's (1.0 for
          presets).
        context: mirrored context in pixels on each side (see the class docstring).
        """
        super().__init__(**kwargs)
        if isinstance(generator, dict):
            generator = keras.saving.deserialize_keras_object(generator)
        if not isinstance(generator, keras.Model):
            raise ValueError(
                f"Translator needs a Keras generator model, got {type(generator).__name__}"
            )
        _check_rgb_generator(generator)
        self.context = check_context(context)
        profile = tonal.resolve_tone(tone)
        if strength is not None:
            profile = profile.replace(strength=strength)  # validates the range
        self.generator = generator
        self.tonal = tonal.TonalAdjustment(**profile.tonal_params(), dtype="float32", name="tonal")
        self.tonal.build()
        self.strength = float(profile.strength)
        self.multiple, self.minimum = input_requirements(generator)

    # -- the two halves ----------------------------------------------------

    def generate(self, images) -> tf.Tensor:
        """Runs the generator on uint8 images of any size.

        Scales to [-1, 1], mirror-pads H and W by ``context`` on each side
        and on to the generator's multiple and minimum, runs it, crops back.
        Returns float32 ``[B, H, W, 3]`` in [-1, 1].
        """
        images = self._check_images(images)
        x = tf.cast(images, tf.float32) / 127.5 - 1.0
        shape = tf.shape(x)
        height, width = shape[1], shape[2]
        both_sides = 2 * self.context
        rows, top = _mirror_indices(height, _padded_size(height + both_sides, self.multiple, self.minimum))
        cols, left = _mirror_indices(width, _padded_size(width + both_sides, self.multiple, self.minimum))
        x = tf.gather(tf.gather(x, rows, axis=1), cols, axis=2)
        y = self.generator(x, training=False)
        y = y[:, top : top + height, left : left + width, :]
        return tf.cast(y, tf.float32)

    def finish(self, images, generated, tone_params=None, strength: float | None = None, alpha=None):
        """Strength blend, tone and uint8 conversion of a generator output.

        Args:
          images: the uint8 source ``[B, H, W, 3]`` (or a tile of it); with
            ``alpha``, its own (straight, not composited) colours.
          generated: the generator's output for it, float in [-1, 1], same
            size; with ``alpha``, its output for the source composited on white.
          alpha: optional uint8 ``[B, H, W, 1]`` transparency of the source.
            The translation is then un-composited from white under it (see
            :func:`uncomposite`) before the blend, so that the output, given
            the same alpha, shows the translation where the source showed
            the source, and is the source's own colours at strength 0.
          tone_params: optional per-image ``[B, 7]`` (tone + strength) or
            ``[B, 6]`` (tone only) float tensor; see the class docstring.
          strength: overrides the default strength (ignored when
            ``tone_params`` has a strength column).

        Returns:
          uint8 ``[B, H, W, 3]``: ``round(255 * tone(s * (g + 1) / 2 + (1 - s) * x / 255))``.
        """
        source = tf.cast(images, tf.float32) / 255.0
        translated = (tf.cast(generated, tf.float32) + 1.0) * 0.5
        if alpha is not None:
            translated = uncomposite(translated, alpha)
        params = None
        s = tf.constant(self.strength if strength is None else float(strength), tf.float32)
        if tone_params is not None:
            tone_params = tf.cast(tone_params, tf.float32)
            columns = _check_tone_shape(tone_params.shape)
            rows, batch = tone_params.shape[0], images.shape[0]
            if rows is not None and batch is not None:
                if rows not in (1, batch):
                    raise ValueError(
                        f"tone_params has {rows} rows for {batch} images: one per image, or one for all"
                    )
            else:  # a serving signature: checked at run time, not left to a broadcast error
                rows, batch = tf.shape(tone_params)[0], tf.shape(images)[0]
                check = tf.debugging.Assert(
                    (rows == 1) | (rows == batch),
                    ["tone_params needs one row per image, or one for all; rows:", rows, "images:", batch],
                )
                if check is not None:
                    with tf.control_dependencies([check]):
                        tone_params = tf.identity(tone_params)
            params = tone_params[:, :6]
            if columns == 7:
                given = tf.cast(tone_params[:, 6], tf.float32)
                given = tf.where(tf.math.is_nan(given), tf.cast(s, tf.float32), given)  # NaN: the model's own
                s = tf.clip_by_value(given, 0.0, 1.0)[:, None, None, None]
        # s * t + (1 - s) * x rather than x + s * (t - x): exact at s = 0 and 1.
        blended = s * translated + (1.0 - s) * source
        toned = self.tonal(blended, params)
        return tf.cast(tf.round(tf.cast(toned, tf.float32) * 255.0), tf.uint8)

    def call(self, images, tone_params=None, alpha=None):
        """Translates uint8 ``images`` ``[B, H, W, 3]``.

        Args:
          images: uint8 ``[B, H, W, 3]``; with ``alpha``, straight (not
            premultiplied) colours.
          tone_params: optional per-image tone (see the class docstring).
          alpha: optional uint8 ``[B, H, W, 1]`` transparency. The generator
            sees the images composited on white, as infer.py feeds it (and
            as training reads transparent images); the output's colours go
            with the same alpha, which you put back yourself: semi-transparent
            edges and shadows keep their own colour instead of being
            lightened by white twice.

        Returns:
          uint8 ``[B, H, W, 3]``.
        """
        images = self._check_images(images)
        # An empty batch of known size stays empty. Inside a graph whose batch
        # size is unknown it still reaches the generator and fails there (a
        # tf.cond around the generator would cost the conversion graph its
        # fusions): drop empty batches first, e.g. ds.filter(lambda x: tf.shape(x)[0] > 0).
        if images.shape[0] == 0:
            return tf.zeros_like(images)
        if alpha is None:
            return self.finish(images, self.generate(images), tone_params)
        alpha = _check_alpha(alpha, images)
        return self.finish(images, self.generate(composite_on_white(images, alpha)), tone_params, alpha=alpha)

    def _check_images(self, images):
        if isinstance(images, tf.RaggedTensor):
            raise ValueError(
                "Translator takes a dense uint8 batch [batch, H, W, 3]; got a RaggedTensor (images of "
                "different sizes): call it once per image, e.g. ds.map(...) before ds.batch(...)"
            )
        try:
            images = tf.convert_to_tensor(images)
        except (ValueError, TypeError, tf.errors.InvalidArgumentError) as e:
            raise ValueError(
                "Translator takes a uint8 batch [batch, H, W, 3] of one size; this input makes no "
                f"such tensor ({str(e).splitlines()[0]}); images of different sizes go one call each"
            ) from None
        _check_static(images.dtype, images.shape)
        checks = []
        if images.shape[-1] is None:
            # Unknown until run time (tf.io.decode_image without channels=3 in
            # a tf.data map): checked then, not left to the first convolution.
            checks.append(tf.debugging.assert_equal(
                tf.shape(images)[-1], 3,
                message="Translator takes uint8 images [batch, H, W, 3]; decode with channels=3, e.g. "
                "tf.io.decode_image(data, channels=3, expand_animations=False)",
            ))
        if None in images.shape[1:3]:
            # An empty axis would fail deep in the padding with "Integer division by zero".
            checks.append(tf.debugging.assert_greater(
                tf.reduce_min(tf.shape(images)[1:3]), 0,
                message="Translator takes images of at least 1x1 pixels; got an image with no rows or columns",
            ))
        checks = [check for check in checks if check is not None]  # eager asserts return None
        if checks:
            with tf.control_dependencies(checks):
                images = tf.ensure_shape(images, [None, None, None, 3])
        return images

    def compute_output_spec(self, images, tone_params=None, alpha=None):
        # What a Keras model built around the translator sees: wrong inputs
        # fail when the model is built, not at its first call.
        _check_static(images.dtype, images.shape)
        if tone_params is not None:
            _check_tone_shape(tone_params.shape)
        if alpha is not None:
            _check_alpha_dtype(alpha.dtype)
        return keras.KerasTensor(images.shape, dtype="uint8")

    def build(self, input_shape=None):
        self.tonal.build()
        self.built = True

    # -- tone ---------------------------------------------------------------

    @property
    def profile(self) -> tonal.Profile:
        """The default tone and strength as a Profile."""
        return tonal.Profile(**self.tonal.get_params(), strength=self.strength)

    def set_tone(self, tone: Any = None, strength: float | None = None) -> None:
        """Replaces the default tone and strength: ``strength`` when given,
        else the tone's own (a profile's ``strength``, 1.0 for a preset), as
        ``infer.py --tone`` does.

        The tone lives in a weight, so graphs traced earlier see the change;
        the strength is a Python float, so a ``tf.function`` of your own traced
        earlier keeps the old strength (trace it again). ``predict``/
        ``evaluate`` are retraced here.
        """
        profile = tonal.resolve_tone(tone)
        if strength is not None:
            profile = profile.replace(strength=strength)
        self.tonal.set_params(profile)
        if profile.strength != self.strength:
            # Keras keeps the graphs it traced for predict(): drop them.
            self.predict_function = self.test_function = self.train_function = None
        self.strength = profile.strength

    def with_precision(self, precision: str) -> "Translator":
        """This translator computing in ``precision`` (``auto``, ``float32``, ``bfloat16``).

        float32 (or ``auto`` resolving to it) returns ``self``; bfloat16 a new
        Translator around a bfloat16 copy of the generator, with the same tone
        and strength (see :mod:`gan_style.precision`).
        """
        generator = generator_with_precision(self.generator, precision)
        if generator is self.generator:
            return self
        return Translator(generator, tone=self.profile, context=self.context, name=self.name)

    def with_context(self, context: int | None) -> "Translator":
        """This translator with ``context`` pixels of mirrored context (None: unchanged).

        Returns ``self`` when nothing changes, else a new Translator around the
        same generator with the same tone and strength.
        """
        if context is None or check_context(context) == self.context:
            return self
        return Translator(self.generator, tone=self.profile, context=context, name=self.name)

    # -- saving ---------------------------------------------------------------

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "generator": keras.saving.serialize_keras_object(self.generator),
            "tone": self.tonal.get_params(),
            "strength": self.strength,
            "context": self.context,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["generator"] = keras.saving.deserialize_keras_object(config["generator"])
        return cls(**config)

    @property
    def _default_save_signature(self):
        # What tf.saved_model.save(translator, path) serves: uint8 images, as
        # export()'s serving_default (Keras would trace a float signature, and
        # with none at all the SavedModel loads with nothing to call).
        return tf.function(
            lambda images: {"images": _unless_empty(images, lambda: self(images))},
            input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")],
        )

    def export(self, filepath: str | os.PathLike, format: str | None = None, verbose: bool = False):
        """Writes the translator for reuse.

        Args:
          filepath: ``*.keras`` writes a Keras archive (load it with
            :func:`load_translator`), ``*.onnx`` an ONNX model; anything else
            is a SavedModel directory.
          format: ``"keras"``, ``"onnx"`` or ``"tf_saved_model"``; inferred
            from the path.

        The SavedModel's signatures (all batch and image sizes):

        * ``serving_default``: ``images`` uint8 ``[B, H, W, 3]`` ->
          ``{"images": uint8 [B, H, W, 3]}``.
        * ``translate_with_tone``: ``images`` and ``tone`` float32 ``[B, 7]``
          (per-image profiles, columns ``PROFILE_VECTOR_NAMES``) ->
          ``{"images": ...}``.
        * ``translate_bytes``: ``image_bytes`` string ``[B]`` of encoded
          JPEG/PNG/GIF/BMP/WebP -> ``{"png_bytes": string [B]}``, decoded as
          infer.py decodes: a JPEG with libjpeg's accurate integer IDCT
          (TF's default fast one is up to 4 levels off, which the generator
          turned into up to 84); the EXIF orientation of a JPEG, PNG or WebP
          applied, so portrait phone shots come out upright; a transparent
          PNG/WebP translated as ``self(rgb, alpha=a)`` and its alpha put back
          on the output (an RGBA PNG). Not carried: ICC profiles (the output PNG is untagged), a
          BMP's or GIF's transparency and a grey or RGB PNG's transparent
          colour key (tRNS; palette PNGs keep theirs). The ``_bytes``
          suffixes make TF Serving's REST API take and return ``{"b64": ...}``.

        An empty batch returns an empty batch from every endpoint.

        The ONNX model (for ONNX Runtime and the tools that read ONNX; needs
        ``pip install 'gan-style[onnx]'``) is the first signature: input
        ``images`` uint8 ``[B, H, W, 3]`` of any size, output ``translated``
        uint8, in the translator's own tone and strength (:meth:`set_tone`
        before exporting to change them), in float32 whatever this
        translator's precision. A cut-out goes in composited on white, as
        ``self(images)`` takes it.
        """
        filepath = os.fspath(filepath)
        if format is None:
            suffix = os.path.splitext(filepath)[1]
            format = "keras" if suffix == ".keras" else "onnx" if suffix.lower() == ".onnx" else "tf_saved_model"
        if not self.built:
            # Every weight exists already (the generator comes built); saying
            # so spares an export before the first call Keras' warning that
            # the model "might not contain any weights". Not done in __init__:
            # a built layer takes no new sub-layers, and subclasses may add some.
            self.build()
        if format == "keras":
            self.save(filepath)
            return filepath
        if format == "onnx":
            return self._export_onnx(filepath)
        if format != "tf_saved_model":
            raise ValueError(f"unknown export format {format!r}; use 'keras', 'onnx' or 'tf_saved_model'")
        images_spec = tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")
        tone_spec = tf.TensorSpec([None, len(tonal.PROFILE_VECTOR_NAMES)], tf.float32, name="tone")
        bytes_spec = tf.TensorSpec([None], tf.string, name="image_bytes")

        def translate_one(encoded):
            rgba, has_alpha = decode_rgba(encoded)
            rgba = apply_orientation(rgba, exif_orientation(encoded))
            rgba.set_shape([None, None, 4])
            # An opaque image's alpha is all 255: composite and uncomposite leave it as it is.
            translated = self(rgba[None, ..., :3], alpha=rgba[None, ..., 3:])[0]
            return tf.cond(
                has_alpha,
                lambda: tf.io.encode_png(tf.concat([translated, rgba[..., 3:]], -1)),
                lambda: tf.io.encode_png(translated),
            )

        archive = keras.export.ExportArchive()
        archive.track(self)
        archive.add_endpoint(
            SIGNATURE_IMAGES,
            lambda images: {"images": _unless_empty(images, lambda: self(images))},
            input_signature=[images_spec],
        )
        archive.add_endpoint(
            SIGNATURE_IMAGES_WITH_TONE,
            lambda images, tone: {"images": _unless_empty(images, lambda: self(images, tone_params=tone))},
            input_signature=[images_spec, tone_spec],
        )
        archive.add_endpoint(
            SIGNATURE_BYTES,
            lambda image_bytes: {
                "png_bytes": tf.map_fn(
                    translate_one, image_bytes, fn_output_signature=tf.TensorSpec([], tf.string)
                )
            },
            input_signature=[bytes_spec],
        )
        archive.write_out(filepath, verbose=verbose)
        return filepath

    def _export_onnx(self, filepath: str) -> str:
        try:
            import tf2onnx
        except ImportError:
            raise ImportError(
                f"exporting {filepath} as ONNX needs tf2onnx: pip install 'gan-style[onnx]'"
            ) from None
        # float32: ONNX Runtime runs no bfloat16 convolutions.
        exported = self.with_precision("float32")
        spec = tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")
        # ONNX cannot name an output as its input: the output is "translated".
        function = tf.function(lambda images: {"translated": exported(images)}, input_signature=[spec])
        # A failed export leaves no truncated model, and an earlier one as it was.
        with atomic.replacing(filepath) as temporary, _staged_norms(exported.generator):
            tf2onnx.convert.from_function(function, input_signature=[spec], output_path=str(temporary))
        return filepath


class _StagedGroupNormalization(keras.layers.GroupNormalization):
    """GroupNormalization whose means are taken one axis at a time (for export).

    The same statistics as ``tf.nn.moments`` (mean, then the mean squared
    difference from it), as means of means. ONNX Runtime's ReduceMean sums
    in float32 in one pass, which moved the bundled model's outputs up to 3
    levels on 500x500 product photos and 17 on a 1200x900 one; one axis at
    a time sums at most one image side.
    """

    def call(self, inputs):
        rank = len(inputs.shape)
        if self.axis not in (-1, rank - 1):
            return super().call(inputs)
        x = tf.cast(inputs, tf.float32)
        shape = tf.shape(x)
        channels = x.shape[-1]
        grouped = tf.reshape(x, tf.concat([shape[:-1], [self.groups, channels // self.groups]], 0))
        axes = [*range(rank - 2, 0, -1), rank]  # the image axes and the channels within a group

        def mean(t):
            for axis in axes:
                t = tf.reduce_mean(t, axis=axis, keepdims=True)
            return t

        centred = grouped - mean(grouped)
        y = tf.reshape(centred * tf.math.rsqrt(mean(tf.square(centred)) + self.epsilon), shape)
        if self.scale:
            y = y * tf.cast(self.gamma, tf.float32)
        if self.center:
            y = y + tf.cast(self.beta, tf.float32)
        return tf.cast(y, self.compute_dtype)


@contextlib.contextmanager
def _staged_norms(generator: keras.Model):
    """Within the block, ``generator``'s GroupNormalization layers compute as
    :class:`_StagedGroupNormalization` (same weights, same config): a class
    swap rather than a clone, which works for any model around the layers,
    subclassed ones too."""
    swapped = [layer for layer in leaf_layers(generator) if type(layer) is keras.layers.GroupNormalization]
    try:
        for layer in swapped:
            layer.__class__ = _StagedGroupNormalization
        yield
    finally:
        for layer in swapped:
            layer.__class__ = keras.layers.GroupNormalization


def _root_cause(error: BaseException) -> str:
    """The innermost error of a Keras load failure, without the configs
    Keras appends (whole model configs, thousands of characters)."""
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__
    text = " ".join(str(error).split("Full object config")[0].split())
    if len(text) > 600:
        text = text[:600] + " ..."
    return f"{type(error).__name__}: {text}"


def load_translator(
    path: str | os.PathLike,
    tone: Any = None,
    strength: float | None = None,
    context: int | None = None,
) -> Translator:
    """Loads a Translator from ``.keras`` (safe mode).

    A bare generator ``.keras`` (as training exports it) is wrapped in a new
    Translator. ``tone``/``strength``/``context``, when given, replace the
    saved ones; a ``tone`` brings its own strength (1.0 for a preset) unless
    ``strength`` is given too.

    Raises:
      FileNotFoundError: no such file.
      ValueError: a SavedModel directory, a file Keras cannot load (the
        message names it), or one that holds neither a Translator nor a
        generator.
    """
    path = pathlib.Path(path)
    if path.is_dir():
        # A training workdir, or its export/ folder: name the files in it.
        exported = [p for p in (path / "gen_ab.keras", path / "gen_ba.keras",
                                path / "export" / "gen_ab.keras", path / "export" / "gen_ba.keras") if p.is_file()]
        if exported:
            raise ValueError(
                f"{path} is a folder, not a model: pass one of its .keras files, "
                + " or ".join(f"{p} ({'A->B' if p.stem == 'gen_ab' else 'B->A'})" for p in exported[:2])
            )
        raise ValueError(
            f"{path} is a directory (a SavedModel?): load_translator reads .keras files; "
            "serve a SavedModel with TF Serving or tf.saved_model.load"
        )
    if not path.exists():
        raise FileNotFoundError(f"translator model {str(path)!r} not found")
    if path.suffix != ".keras":
        raise ValueError(f"{path}: expected a .keras file")
    if not zipfile.is_zipfile(path):
        # Keras says "File not found" for these, which sends people looking
        # for a path problem.
        raise ValueError(f"{path}: not a .keras archive (a .keras file is a zip): damaged or cut short?")
    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as e:  # noqa: BLE001 - e.g. an unregistered custom layer: a TypeError naming no file
        raise ValueError(f"{path}: cannot load this .keras file: {_root_cause(e)}") from e
    if isinstance(model, Translator):
        if tone is not None or strength is not None:
            model.set_tone(tone if tone is not None else model.profile, strength)
        return model.with_context(context)
    if not isinstance(model, keras.Model):
        raise ValueError(f"{path} holds a {type(model).__name__}, not a Translator or generator")
    try:
        return Translator(model, tone=tone, strength=strength, context=context or 0)
    except ValueError as error:  # e.g. a discriminator: say which file
        raise ValueError(f"{path}: {error}") from None


def from_workdir(workdir: str | os.PathLike, direction: str = "ab", **kwargs) -> Translator:
    """A Translator from a training workdir's ``export/gen_<direction>.keras``.

    Args:
      workdir: the training run's folder.
      direction: ``"ab"`` (A -> B, ``gen_ab``) or ``"ba"``.
      **kwargs: ``tone``, ``strength`` for the Translator.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    path = pathlib.Path(workdir) / "export" / f"gen_{direction}.keras"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: is {str(workdir)!r} a training workdir that finished exporting?"
        )
    generator = keras.saving.load_model(path, safe_mode=True, compile=False)
    return Translator(generator, **kwargs)
