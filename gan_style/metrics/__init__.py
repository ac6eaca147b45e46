"""Evaluation metrics: FID and KID with the TF-FID InceptionV3, PSNR and SSIM.

Typical use::

    from gan_style import metrics

    inception = metrics.load_inception()          # --inception_weights / $GAN_STYLE_INCEPTION_WEIGHTS
    real = metrics.compute_features(inception, real_images)   # uint8/float [0, 255], any size
    fake = metrics.compute_features(inception, fake_images)
    fid = metrics.fid_from_features(real, fake)
    kid_mean, kid_std = metrics.kid_from_features(real, fake)
"""

from gan_style.metrics.features import (
    compute_features,
    compute_statistics,
    iterate_batches,
)
from gan_style.metrics.fid import (
    FeatureStats,
    fid_from_features,
    fid_from_stats,
    frechet_distance,
)
from gan_style.metrics.image_metrics import psnr, ssim
from gan_style.metrics.inception import (
    FEATURE_DIM,
    WEIGHTS_ENV,
    build_inception,
    default_weights_path,
    load_inception,
    resolve_weights_path,
)
from gan_style.metrics.kid import kid_from_features, kid_from_stats

__all__ = [
    "FEATURE_DIM",
    "WEIGHTS_ENV",
    "FeatureStats",
    "build_inception",
    "compute_features",
    "compute_statistics",
    "default_weights_path",
    "fid_from_features",
    "fid_from_stats",
    "frechet_distance",
    "iterate_batches",
    "kid_from_features",
    "kid_from_stats",
    "load_inception",
    "psnr",
    "resolve_weights_path",
    "ssim",
]
