"""Content preservation: PSNR and SSIM between an image and its translation.

Standard definitions, as ``skimage.metrics`` computes them:

* PSNR = 10 log10(data_range^2 / MSE), MSE over all pixels and channels
  (``inf`` for identical images).
* SSIM of Wang et al. (2004): 11x11 Gaussian window with sigma 1.5, K1 = 0.01,
  K2 = 0.03, population (not sample) statistics, mean over the valid region and
  the channels: skimage's ``structural_similarity(gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False, channel_axis=-1)``.

Both take images [H, W, C] or batches [N, H, W, C] in [0, data_range]
(uint8 or float; default 255) and return a float for one image, a float64 array
[N] for a batch.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

SSIM_WINDOW = 11


def _pair(a, b, name: str, min_size: int = 1) -> tuple[np.ndarray, np.ndarray, bool]:
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(
            f"{name}: images must have the same shape, got {a.shape} and {b.shape}"
        )
    if a.ndim not in (3, 4):
        raise ValueError(
            f"{name}: expected [H, W, C] or [N, H, W, C], got shape {a.shape}"
        )
    single = a.ndim == 3
    if single:
        a, b = a[None], b[None]
    if a.shape[1] < min_size or a.shape[2] < min_size:
        raise ValueError(
            f"{name}: images must be at least {min_size}x{min_size}, got {a.shape[1:3]}"
        )
    return a, b, single


def psnr(a, b, data_range: float = 255.0):
    """Peak signal-to-noise ratio in dB (higher is closer; ``inf`` if equal)."""
    a, b, single = _pair(a, b, "psnr")
    diff = a.astype(np.float64) - b.astype(np.float64)
    mse = np.mean(diff * diff, axis=(1, 2, 3))
    with np.errstate(divide="ignore"):
        values = 10.0 * np.log10(float(data_range) ** 2 / mse)
    return float(values[0]) if single else values


def ssim(a, b, data_range: float = 255.0):
    """Structural similarity (1 for identical images). Needs H, W >= 11."""
    a, b, single = _pair(a, b, "ssim", min_size=SSIM_WINDOW)
    # tf.image.ssim is Wang et al.'s definition with a VALID 11x11 Gaussian
    # window, which is exactly skimage's cropped average (tests compare them).
    values = (
        tf.image.ssim(
            tf.convert_to_tensor(a, tf.float32),
            tf.convert_to_tensor(b, tf.float32),
            max_val=float(data_range),
            filter_size=SSIM_WINDOW,
            filter_sigma=1.5,
            k1=0.01,
            k2=0.03,
        )
        .numpy()
        .astype(np.float64)
    )
    return float(values[0]) if single else values
