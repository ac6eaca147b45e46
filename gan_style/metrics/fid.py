"""Fréchet Inception Distance from features or from streamed statistics.

FID = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)) (Heusel et al., 2017).
pytorch-fid evaluates the matrix square root with ``scipy.linalg.sqrtm``; only
its trace is needed, and for symmetric positive semi-definite S1, S2 the
eigenvalues of S1 S2 equal those of the symmetric S1^(1/2) S2 S1^(1/2), whose
square roots ``numpy.linalg.eigvalsh`` gives stably even when the covariances
are singular (fewer images than 2048 dimensions, the usual case here). That
keeps scipy out of the runtime dependencies; the tests check the result
against the scipy formula.
"""

from __future__ import annotations

import numpy as np


class FeatureStats:
    """Streaming mean and covariance of features, plus a bounded random sample.

    Memory is O(dim^2) whatever the number of images: the mean and the scatter
    matrix are updated batch by batch (Chan et al.'s parallel update, float64,
    which avoids the cancellation of E[xx^T] - mu mu^T). KID needs raw
    features, so a uniform reservoir sample of at most ``max_samples`` rows is
    kept; for sets up to that size it holds every feature, in order.

    Args:
        dim: feature dimension.
        max_samples: reservoir size for KID (0 keeps none).
        seed: seed of the reservoir sampling.
    """

    def __init__(self, dim: int = 2048, max_samples: int = 10_000, seed: int = 0):
        self.dim = int(dim)
        self.max_samples = int(max_samples)
        self.count = 0
        self._mean = np.zeros(self.dim, np.float64)
        self._scatter = np.zeros((self.dim, self.dim), np.float64)
        self._samples = np.zeros((min(self.max_samples, 1024), self.dim), np.float32)
        self._rng = np.random.default_rng(seed)

    def update(self, features) -> None:
        """Adds a batch of features [B, dim]."""
        batch = np.asarray(features, np.float64)
        if batch.ndim != 2 or batch.shape[1] != self.dim:
            raise ValueError(
                f"features must have shape [batch, {self.dim}], got {batch.shape}"
            )
        n_b = batch.shape[0]
        if n_b == 0:
            return
        if not np.all(np.isfinite(batch)):
            raise ValueError("features hold NaN or Inf (images with NaN or Inf pixels?)")
        self._add_samples(batch.astype(np.float32))
        mean_b = batch.mean(axis=0)
        centred = batch - mean_b
        n_a = self.count
        total = n_a + n_b
        delta = mean_b - self._mean
        self._scatter += centred.T @ centred + np.outer(delta, delta) * (
            n_a * n_b / total
        )
        self._mean += delta * (n_b / total)
        self.count = total

    def _add_samples(self, batch: np.ndarray) -> None:
        # Called before self.count is advanced past this batch.
        for i, row in enumerate(batch):
            seen = self.count + i + 1
            if seen <= self.max_samples:
                if seen > self._samples.shape[0]:
                    grown = np.zeros(
                        (min(self.max_samples, 2 * self._samples.shape[0]), self.dim),
                        np.float32,
                    )
                    grown[: seen - 1] = self._samples[: seen - 1]
                    self._samples = grown
                self._samples[seen - 1] = row
            else:
                # Algorithm R: keep the new row with probability max_samples / seen.
                slot = self._rng.integers(0, seen)
                if slot < self.max_samples:
                    self._samples[slot] = row

    @property
    def mean(self) -> np.ndarray:
        return self._mean.copy()

    @property
    def covariance(self) -> np.ndarray:
        """Unbiased sample covariance (``np.cov(features, rowvar=False)``)."""
        if self.count < 2:
            raise ValueError(f"covariance needs at least 2 features, have {self.count}")
        return self._scatter / (self.count - 1)

    @property
    def samples(self) -> np.ndarray:
        """The kept features [min(count, max_samples), dim] (all of them, in order, when
        ``count <= max_samples``)."""
        return self._samples[: min(self.count, self.max_samples)].copy()

    @classmethod
    def from_features(cls, features, max_samples: int | None = None) -> FeatureStats:
        features = np.asarray(features)
        if features.ndim != 2:
            raise ValueError(f"features must have shape [N, dim], got {features.shape}")
        stats = cls(
            features.shape[1], len(features) if max_samples is None else max_samples
        )
        stats.update(features)
        return stats


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """FID between two Gaussians given by means [d] and covariances [d, d]."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if (
        mu1.shape != mu2.shape
        or sigma1.shape != sigma2.shape
        or sigma1.shape != mu1.shape * 2
    ):
        raise ValueError(
            f"shape mismatch: mu {mu1.shape} / {mu2.shape}, sigma {sigma1.shape} / {sigma2.shape}"
        )
    eigval1, eigvec1 = np.linalg.eigh((sigma1 + sigma1.T) / 2)
    sqrt1 = (eigvec1 * np.sqrt(np.clip(eigval1, 0, None))) @ eigvec1.T
    inner = sqrt1 @ sigma2 @ sqrt1
    eig = np.linalg.eigvalsh((inner + inner.T) / 2)
    tr_covmean = float(np.sum(np.sqrt(np.clip(eig, 0, None))))
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)


def fid_from_stats(stats1: FeatureStats, stats2: FeatureStats) -> float:
    """FID between two :class:`FeatureStats`."""
    return frechet_distance(
        stats1.mean, stats1.covariance, stats2.mean, stats2.covariance
    )


def feature_pair(features1, features2) -> tuple[np.ndarray, np.ndarray]:
    """Two feature sets as float64 ``[N >= 2, dim]`` arrays of one dimension, or ValueError."""
    f1 = np.asarray(features1, np.float64)
    f2 = np.asarray(features2, np.float64)
    for name, f in (("features1", f1), ("features2", f2)):
        if f.ndim != 2 or f.shape[0] < 2:
            raise ValueError(f"{name} must have shape [N >= 2, dim], got {f.shape}")
        if not np.all(np.isfinite(f)):
            raise ValueError(f"{name} hold NaN or Inf (images with NaN or Inf pixels?)")
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"feature dimensions differ: {f1.shape[1]} vs {f2.shape[1]}")
    return f1, f2


def fid_from_features(features1, features2) -> float:
    """FID between two feature sets [N1, d] and [N2, d] (N1, N2 >= 2).

    Same statistics as pytorch-fid: ``np.mean(axis=0)`` and ``np.cov(rowvar=False)``
    in float64.
    """
    f1, f2 = feature_pair(features1, features2)
    return frechet_distance(
        f1.mean(axis=0),
        np.cov(f1, rowvar=False),
        f2.mean(axis=0),
        np.cov(f2, rowvar=False),
    )
