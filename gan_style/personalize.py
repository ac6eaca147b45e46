"""Personalisation by example: fit a tone profile to reference images.

:func:`fit_profile` finds the :class:`~gan_style.tonal.TonalAdjustment`
parameters that make source images look like a set of references (say, a
brand's sample shots) by matching tonal statistics in CIELAB, a perceptual
colour space:

* the **luminance distribution**: 33 quantiles (1 % .. 99 %) of L*;
* the **colour distribution**: 7 quantiles each of a* (green-magenta) and
  b* (blue-yellow);
* the **white balance**: mean a* and b* of the least colourful fifth of the
  pixels (white backgrounds, greys).

It minimises the squared differences (L*, a*, b* scaled by 1/100) over the
six parameters by Levenberg-Marquardt through the layer itself, on a random
sample of pixels. Because the layer is pointwise, a sample of pixels is as
good as the whole images; every image contributes the same number of pixels
whatever its size. What no tone can explain (references that show other
things than the sources) raises a pull towards the neutral tone, so a
content difference does not become an extreme tone.

What it cannot match: anything that is not a global, per-pixel tone curve --
local contrast and sharpness, texture, vignetting, selective colour (only the
sky bluer), hue rotations, curves more complex than gamma + linear, and the
*style* itself (that is the generator's job). It matches statistics of the
whole set, so references and sources of very different content (white
product backgrounds vs. dark scenes) give a tone that corrects the content
difference too; pass sources of similar content for a pure tone.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np
import tensorflow as tf

from gan_style import tonal

#: Quantile levels of L* that are matched.
QUANTILES = np.linspace(0.01, 0.99, 33)
#: Quantile levels of a* and b* that are matched.
CHROMA_QUANTILES = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
#: Share of the least colourful pixels whose mean a*, b* is matched (the white balance).
GREY_FRACTION = 0.2
#: How far from neutral, in the optimiser's units (log for contrast,
#: saturation, gamma), a tone may go when the references differ from the
#: sources by more than any tone explains; see fit_profile.
PRIOR_SCALE = 0.1

# sRGB (D65) -> XYZ, and the D65 white point.
_RGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ],
    np.float32,
)
_WHITE = np.array([0.95047, 1.0, 1.08883], np.float32)


def srgb_to_lab(rgb):
    """CIELAB (D65) of sRGB values in [0, 1], ``[..., 3]`` -> ``[..., 3]``.

    Differentiable everywhere (the cube root and the sRGB power get a safe
    base, so no infinite gradient at 0).
    """
    rgb = tf.clip_by_value(tf.cast(rgb, tf.float32), 0.0, 1.0)
    high = rgb > 0.04045
    safe = tf.where(high, rgb, tf.ones_like(rgb))
    linear = tf.where(high, tf.pow((safe + 0.055) / 1.055, 2.4), rgb / 12.92)
    xyz = tf.linalg.matvec(tf.constant(_RGB_TO_XYZ), linear) / tf.constant(_WHITE)
    delta = 6.0 / 29.0
    high = xyz > delta**3
    safe = tf.where(high, xyz, tf.ones_like(xyz))
    f = tf.where(high, tf.pow(safe, 1.0 / 3.0), xyz / (3.0 * delta**2) + 4.0 / 29.0)
    fx, fy, fz = tf.unstack(f, axis=-1)
    return tf.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def _image_items(images) -> list:
    """``images`` as a list of single images (arrays or file paths), undecoded."""
    if isinstance(images, (str, os.PathLike)):
        return [images]
    if isinstance(images, (np.ndarray, tf.Tensor)) and np.ndim(images) == 4:
        return list(np.asarray(images))
    if isinstance(images, (np.ndarray, tf.Tensor)) and np.ndim(images) == 3:
        return [np.asarray(images)]
    return list(images)


def _read_image(item, what: str, index: int) -> np.ndarray:
    """One image's pixels as a uint8 or float32 [..., 3] array, values in [0, 1] if float."""
    if isinstance(item, (str, os.PathLike)):
        from gan_style import image_io

        # The toolkit's one decoder, as the studio and the converter use:
        # 16-bit scaled (not clipped), EXIF upright; colours through the
        # file's ICC profile into sRGB, so an Adobe RGB reference compares
        # with sRGB sources by what it shows; a cut-out's transparent
        # background left out (it is no colour of the picture).
        try:
            pixels = image_io.visible_srgb(image_io.read_image(item))
        except image_io.ImageError as error:
            raise ValueError(f"{what}: cannot read image {os.fspath(item)!r}: {error.reason}") from None
        if not len(pixels):
            raise ValueError(f"{what}: {os.fspath(item)!r} has no pixel at least half opaque")
        return pixels
    image = np.asarray(item)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"{what}[{index}]: expected an RGB image [H, W, 3], got shape {image.shape}")
    if image.shape[0] * image.shape[1] == 0:
        raise ValueError(f"{what}[{index}]: an empty image, shape {image.shape}")
    if image.dtype == np.uint8:
        return image
    if np.issubdtype(image.dtype, np.floating):
        if not (image.min() >= -1e-3 and image.max() <= 1 + 1e-3):  # NaN fails this too
            raise ValueError(f"{what}[{index}]: float images must be in [0, 1] (no NaN)")
        return image.astype(np.float32, copy=False)
    raise ValueError(f"{what}[{index}]: expected uint8 or float images, got {image.dtype}")


def _sample_pixels(images, what: str, max_pixels: int, seed: int) -> np.ndarray:
    """An equal share of random pixels from each image, ``[N, 3]`` float32 in [0, 1].

    Each file is sampled as soon as it is read, so only one decoded file is
    held at a time (twenty 12-megapixel files read as float32 first took
    3.5 GB); arrays, given in memory, are sampled in place. The same seed
    gives images of the same sizes the same positions.
    """
    items = _image_items(images)
    if not items:
        raise ValueError(f"{what}: no images given")
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels < 1:
        raise ValueError(f"max_pixels must be an integer >= 1, got {max_pixels!r}")
    share = max(1, max_pixels // len(items))
    rng = np.random.default_rng(seed)
    chunks = []
    for index, item in enumerate(items):
        flat = _read_image(item, what, index).reshape(-1, 3)
        if len(flat) > share:
            flat = flat[rng.choice(len(flat), share, replace=False)]
        chunks.append(flat.astype(np.float32) / 255.0 if flat.dtype == np.uint8 else flat.astype(np.float32))
    return np.concatenate(chunks)


def _grey_world(pixels: np.ndarray) -> np.ndarray:
    """The pixels with the colour cast removed: equal channel means."""
    weights = np.asarray(tonal.LUMA_WEIGHTS, np.float32)
    means = pixels.mean(axis=0)
    return np.clip(pixels * (means @ weights) / np.maximum(means, 1e-6), 0.0, 1.0)


def _statistics(lab, pixels: int):
    """``[k, N, 3]`` Lab pixels (``N = pixels``) -> ``[k, 49]``: 33 L* quantiles,
    7 a* and 7 b* quantiles, and the mean a*, b* of the least colourful fifth.

    Scaled by 1/100; the L* quantiles weigh 1/sqrt(33) each, so the luminance
    distribution as a whole counts as much as one chroma statistic, and a*
    and b* count twice each, as their mean and spread did. Quantiles, not
    moments, for the chroma: in a set of product shots one bright product
    decides the a*/b* spread, while the quantiles follow the many pixels. The
    least colourful pixels (white backgrounds, greys) carry the white balance
    whatever the products' colours are.
    """
    lab = lab / 100.0

    def quantiles(values, levels):
        index = np.round(np.asarray(levels) * (pixels - 1)).astype(np.int32)
        return tf.gather(tf.sort(values, axis=-1), index, axis=-1)

    luminance = quantiles(lab[..., 0], QUANTILES) / np.sqrt(len(QUANTILES))
    chroma = lab[..., 1:]
    weight = np.sqrt(2.0 / len(CHROMA_QUANTILES))
    a = quantiles(chroma[..., 0], CHROMA_QUANTILES) * weight
    b = quantiles(chroma[..., 1], CHROMA_QUANTILES) * weight
    colourfulness = tf.reduce_sum(tf.square(chroma), axis=-1)
    least = tf.argsort(colourfulness, axis=-1)[..., : max(1, round(pixels * GREY_FRACTION))]
    balance = tf.reduce_mean(tf.gather(chroma, least, axis=-2, batch_dims=1), axis=-2)
    return tf.concat([luminance, a, b, balance], axis=-1)


# The optimiser works on unconstrained u with neutral at u = 0: contrast,
# saturation and gamma are exp(u) (moved in ratios), the others are u itself.
_LOG_PARAMS = ("contrast", "saturation", "gamma")


def _to_params(u):
    """``[k, 6]`` u -> ``[k, 6]`` parameters."""
    is_log = tf.constant([name in _LOG_PARAMS for name in tonal.PARAM_NAMES])
    return tf.where(is_log, tf.exp(u), u)


def _u_bounds() -> tuple[np.ndarray, np.ndarray]:
    lower, upper = [], []
    for name in tonal.PARAM_NAMES:
        lo, hi = tonal.RANGES[name]
        if name in _LOG_PARAMS:
            lo, hi = np.log(max(lo, 0.02)), np.log(hi)
        lower.append(lo)
        upper.append(hi)
    return np.array(lower), np.array(upper)


def fit_profile(
    reference_images: Iterable,
    source_images: Iterable | None = None,
    *,
    max_pixels: int = 20_000,
    max_iterations: int = 40,
    regularization: float = 1e-6,
    seed: int = 0,
    name: str = "fitted",
) -> tonal.Profile:
    """Fits a tone profile that makes ``source_images`` look like the references.

    Args:
      reference_images: images with the wanted look: a uint8 or float ([0, 1])
        array ``[N, H, W, 3]``, or a list of ``[H, W, 3]`` arrays (any sizes)
        or image file paths.
      source_images: images of the kind the tone will be applied to (e.g.
        translations from the model), same forms. ``None`` fits against a
        neutral version of the references themselves (their colour cast
        removed by grey-world balancing): the profile then captures mainly
        the references' overall colour cast relative to grey.
      max_pixels: pixels sampled from each set (the layer is pointwise, so a
        sample represents the images).
      max_iterations: Levenberg-Marquardt iterations (it usually stops early).
      regularization: the least weight of the pull towards neutral (it
        matters when the statistics cannot tell parameters apart, e.g. flat
        images); raised to ``residual / PRIOR_SCALE**2`` when the references
        differ from the toned sources by more than a tone explains.
      seed: for the pixel sample.
      name: the returned profile's name.

    Returns:
      A :class:`~gan_style.tonal.Profile` (strength 1) whose tone applied to
      the sources best matches the references' L*, a* and b* quantiles and
      white balance. Measured (tests/tonal_test.py): parameters used to
      make the references from the source images themselves come back within
      0.01 (6 horse photos; on smooth synthetic images a review saw gamma off
      by 0.023, a mean CIELAB dE of 0.03: brightness, contrast and gamma
      partly stand in for each other); from other images drawn from one
      synthetic distribution, within 0.03. On real product photos of other
      content (40 IKEA photos toned vs 40 others) the fitted tone is within
      a mean CIELAB dE of 2 of the true one on held-out photos; with 10
      photos a side, 2-10 (the sets' content differs more than the tone).
      Fit on sources that show what the references show.
    """
    # The same seed for both sets: sources of the same sizes as the
    # references get the same pixel positions, so no sampling noise there.
    references = _sample_pixels(reference_images, "reference_images", max_pixels, seed)
    if source_images is None:
        sources = _grey_world(references)
        description = "fit to the colour cast of the references"
    else:
        sources = _sample_pixels(source_images, "source_images", max_pixels, seed)
        description = "fit to reference images"

    target = _statistics(srgb_to_lab(references[None]), len(references))[0]
    pixels = tf.constant(sources[None, :, None, :])  # [1, N, 1, 3]
    layer = tonal.TonalAdjustment(name="fit_tonal")

    @tf.function(input_signature=[tf.TensorSpec([None, 6], tf.float32)])
    def residuals(u):
        # One "image" per candidate u: the layer's per-image parameters
        # evaluate all finite-difference points in a single batched call.
        batch = tf.shape(u)[0]
        toned = layer(tf.repeat(pixels, batch, axis=0), _to_params(u))
        return _statistics(srgb_to_lab(toned[:, :, 0, :]), len(sources)) - target

    def evaluate(points):
        return residuals(tf.constant(points, tf.float32)).numpy().astype(np.float64)

    def fit(weight):
        return _levenberg_marquardt(evaluate, np.zeros(len(tonal.PARAM_NAMES)), *_u_bounds(),
                                    regularization=weight, max_iterations=max_iterations)

    u, residual = fit(regularization)
    # What no tone explains is content: references and sources that differ in
    # what they show (product shots vs room scenes). The residual left measures
    # it; the pull to neutral grows with it, so content differences do not
    # turn into extreme tones, while a tone that explains the references
    # (residual ~0, e.g. hand-edited copies of the sources) comes back whole.
    noise = float(residual @ residual) / max(1, len(residual) - len(u))
    if noise / PRIOR_SCALE**2 > regularization:
        u, _ = fit(noise / PRIOR_SCALE**2)
    values = _to_params(tf.constant(u[None], tf.float32))[0].numpy()
    params = {}
    for key, value in zip(tonal.PARAM_NAMES, values):
        lo, hi = tonal.RANGES[key]
        params[key] = round(float(np.clip(value, lo, hi)), 4)
    return tonal.Profile(**params, name=name, description=description)


def _levenberg_marquardt(
    residuals, u, lower, upper, *, regularization, max_iterations, step=1e-3
) -> tuple[np.ndarray, np.ndarray]:
    """Minimises ``|r(u)|^2 + regularization * |u|^2`` within box bounds;
    returns the minimum ``u`` and ``r(u)`` there.

    ``residuals`` maps ``[k, n]`` points to ``[k, m]`` residuals; the Jacobian
    comes from forward differences evaluated in one batch. Six parameters and
    ~40 residuals make this converge in a few dozen cheap evaluations, where
    Adam needed hundreds of gradient steps.
    """
    n = len(u)
    reg = np.sqrt(regularization)

    def cost(r, point):
        return float(r @ r + regularization * point @ point)

    r = residuals(u[None])[0]
    current = cost(r, u)
    damping = 1e-3
    for _ in range(max_iterations):
        points = u[None] + step * np.eye(n)
        jacobian = ((residuals(points) - r[None]) / step).T  # [m, n]
        jacobian = np.vstack([jacobian, reg * np.eye(n)])
        full_r = np.concatenate([r, reg * u])
        normal = jacobian.T @ jacobian
        gradient = jacobian.T @ full_r
        improved = False
        for _ in range(8):
            matrix = normal + damping * np.diag(np.diag(normal) + 1e-12)
            candidate = np.clip(u - np.linalg.solve(matrix, gradient), lower, upper)
            new_r = residuals(candidate[None])[0]
            new = cost(new_r, candidate)
            if new < current:
                converged = current - new < 1e-12 + 1e-9 * current
                u, r, current = candidate, new_r, new
                damping = max(damping / 3.0, 1e-9)
                improved = True
                break
            damping *= 4.0
        if not improved or converged:
            break
    return u, r
