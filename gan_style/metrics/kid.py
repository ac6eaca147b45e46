"""Kernel Inception Distance (Bińkowski et al., 2018).

KID is the unbiased estimate of the squared MMD between the two feature
distributions under the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3,
averaged over random subsets. Unlike FID it is unbiased, so it is the score to
trust for sets under ~1,000 images (its expectation does not depend on the
number of images). Same estimator as torch-fidelity and clean-fid.
"""

from __future__ import annotations

import math

import numpy as np

from gan_style.metrics.fid import FeatureStats, feature_pair


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(x y^T / d + 1)^3 for rows of x [n, d] and y [m, d]."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 between samples x [m, d] and y [m, d] (same m)."""
    m = x.shape[0]
    k_xx = polynomial_kernel(x, x)
    k_yy = polynomial_kernel(y, y)
    k_xy = polynomial_kernel(x, y)
    # The diagonal (each sample with itself) is what makes the plain mean biased.
    sum_xx = k_xx.sum() - np.trace(k_xx)
    sum_yy = k_yy.sum() - np.trace(k_yy)
    return float((sum_xx + sum_yy) / (m * (m - 1)) - 2.0 * k_xy.mean())


def kid_from_features(
    features1,
    features2,
    num_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """KID between feature sets [N1, d] and [N2, d].

    Args:
        num_subsets: number of random subset pairs averaged.
        subset_size: images per subset; clipped to min(N1, N2) (each subset is
            drawn without replacement).
        seed: seed of the subset sampling, so a score is reproducible.

    Returns:
        (mean, std) of the per-subset MMD^2 estimates. Multiply by 1000 for the
        "KID x 10^3" that papers usually print. The std is NaN when there is
        only one estimate to take it over: one subset, or two sets of the same
        size no larger than ``subset_size``, where every subset pair is the
        two whole sets (a std of 0 there would claim a certainty nobody measured).
    """
    f1, f2 = feature_pair(features1, features2)
    if num_subsets < 1 or subset_size < 2:
        raise ValueError(
            f"need num_subsets >= 1 and subset_size >= 2, got {num_subsets}, {subset_size}"
        )
    m = min(len(f1), len(f2), int(subset_size))
    if m == len(f1) == len(f2):
        return float(mmd2_unbiased(f1, f2)), math.nan  # every subset pair would be these two sets
    rng = np.random.default_rng(seed)
    scores = np.empty(num_subsets)
    for i in range(num_subsets):
        x = f1[rng.choice(len(f1), m, replace=False)]
        y = f2[rng.choice(len(f2), m, replace=False)]
        scores[i] = mmd2_unbiased(x, y)
    return float(scores.mean()), float(scores.std()) if num_subsets > 1 else math.nan


def kid_from_stats(
    stats1: FeatureStats, stats2: FeatureStats, **kwargs
) -> tuple[float, float]:
    """KID on the feature samples kept by two :class:`FeatureStats` (all features for
    sets up to their ``max_samples``); keyword arguments as :func:`kid_from_features`."""
    return kid_from_features(stats1.samples, stats2.samples, **kwargs)
