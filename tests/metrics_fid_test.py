"""FID and KID on synthetic features against numpy/scipy references written here,
plus the streaming statistics and the Inception feature plumbing (tiny models)."""

import keras
import numpy as np
import pytest
import scipy.linalg
import tensorflow as tf

from gan_style import metrics
from gan_style.metrics import features as features_lib


def reference_fid(f1, f2):
    """pytorch-fid's calculate_frechet_distance on np.mean / np.cov statistics."""
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def reference_mmd2(x, y):
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, written as explicit double sums."""
    d = x.shape[1]
    k = lambda a, b: (a @ b / d + 1.0) ** 3
    m = len(x)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (
        m * (m - 1)
    )
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (
        m * (m - 1)
    )
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def _gaussian(n, d, seed, shift=0.0, scale=1.0):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    return (rng.normal(size=(n, d)) @ mix) * scale + shift


def test_fid_of_a_set_with_itself_is_zero():
    f = _gaussian(300, 16, seed=0)
    assert metrics.fid_from_features(f, f) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("n1, n2, d", [(200, 150, 8), (50, 60, 32), (20, 30, 64)])
def test_fid_matches_scipy_sqrtm_reference(n1, n2, d):
    # The last case has fewer samples than dimensions: singular covariances,
    # the situation of 120 images with 2048-d features.
    f1 = _gaussian(n1, d, seed=1)
    f2 = _gaussian(n2, d, seed=2, shift=0.3, scale=1.5)
    assert metrics.fid_from_features(f1, f2) == pytest.approx(
        reference_fid(f1, f2), rel=1e-6, abs=1e-8
    )


def test_fid_of_known_gaussians():
    # N(0, I) vs N(m, 4I) in d dims: |m|^2 + d (1 + 4 - 2*2) = |m|^2 + d.
    d = 5
    mu = np.arange(d, dtype=np.float64)
    value = metrics.frechet_distance(np.zeros(d), np.eye(d), mu, 4 * np.eye(d))
    assert value == pytest.approx(mu @ mu + d, rel=1e-12)


def test_streaming_statistics_equal_batch_statistics():
    f = _gaussian(103, 12, seed=3, shift=5.0)  # offset mean: checks the stable update
    stats = metrics.FeatureStats(12, max_samples=1000)
    for start in range(0, len(f), 10):
        stats.update(f[start : start + 10])
    assert stats.count == 103
    np.testing.assert_allclose(stats.mean, f.mean(0), rtol=1e-12)
    np.testing.assert_allclose(
        stats.covariance, np.cov(f, rowvar=False), rtol=1e-10, atol=1e-12
    )
    np.testing.assert_array_equal(stats.samples, f.astype(np.float32))
    other = metrics.FeatureStats.from_features(_gaussian(80, 12, seed=4))
    assert metrics.fid_from_stats(stats, other) == pytest.approx(
        metrics.fid_from_features(f, _gaussian(80, 12, seed=4)), rel=1e-10
    )


def test_reservoir_keeps_a_bounded_uniform_sample():
    stats = metrics.FeatureStats(1, max_samples=200, seed=0)
    values = np.arange(5000, dtype=np.float64)[:, None]
    for start in range(0, 5000, 64):
        stats.update(values[start : start + 64])
    sample = stats.samples[:, 0]
    assert sample.shape == (200,) and len(set(sample)) == 200
    assert set(sample) <= set(values[:, 0])
    # Uniform over 0..4999: mean 2499.5, sd of the mean of 200 draws ~ 102.
    assert abs(sample.mean() - 2499.5) < 400


def test_kid_matches_explicit_double_sum_reference():
    f1 = _gaussian(12, 6, seed=5)
    f2 = _gaussian(15, 6, seed=6, shift=0.5)
    # subset_size larger than both sets is clipped to 12; one subset of 12 rows
    # from f1 is all of f1 (in permuted order, which MMD ignores).
    mean, std = metrics.kid_from_features(
        f1, f2, num_subsets=1, subset_size=1000, seed=0
    )
    rng = np.random.default_rng(0)
    x = f1[rng.choice(12, 12, replace=False)]
    y = f2[rng.choice(15, 12, replace=False)]
    assert mean == pytest.approx(reference_mmd2(x, y), rel=1e-10)
    assert np.isnan(std)  # one estimate: no spread to report


def test_kid_of_two_whole_sets_has_no_std():
    # Same sizes, under the subset size: every "subset" pair is the two whole
    # sets, so 100 draws would report a std of exactly 0 that means nothing.
    a, b = _gaussian(20, 4, seed=1), _gaussian(20, 4, seed=2, shift=0.3)
    mean, std = metrics.kid_from_features(a, b, num_subsets=100, subset_size=1000)
    assert mean == pytest.approx(reference_mmd2(a, b), rel=1e-10) and np.isnan(std)
    assert not np.isnan(metrics.kid_from_features(a, b[:15], num_subsets=10, subset_size=1000)[1])


def test_kid_is_unbiased_for_one_distribution_and_positive_for_two():
    # Independent pairs of samples from one distribution: the estimates average
    # to 0 within their standard error. The biased V-statistic (diagonal kept)
    # is positive by about 2 E[k(x,x) - k(x,y)] / m, far outside that band.
    d, m, trials = 4, 40, 200
    rng = np.random.default_rng(11)
    kid, biased = [], []
    for _ in range(trials):
        x, y = rng.normal(size=(m, d)), rng.normal(size=(m, d))
        kid.append(metrics.kid_from_features(x, y, num_subsets=1, subset_size=m)[0])
        k = lambda a, b: (a @ b.T / d + 1.0) ** 3
        biased.append(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())
    kid, biased = np.array(kid), np.array(biased)
    standard_error = kid.std() / np.sqrt(trials)
    assert abs(kid.mean()) < 3 * standard_error
    assert biased.mean() > 10 * standard_error
    # Two distributions: clearly positive.
    shifted = metrics.kid_from_features(
        rng.normal(size=(200, d)),
        rng.normal(size=(200, d)) + 0.5,
        num_subsets=20,
        subset_size=100,
    )[0]
    assert shifted > 10 * standard_error


def test_kid_is_reproducible_and_validates_input():
    a, b = _gaussian(50, 4, seed=9), _gaussian(60, 4, seed=10)
    assert metrics.kid_from_features(a, b, seed=3) == metrics.kid_from_features(
        a, b, seed=3
    )
    with pytest.raises(ValueError, match="dimensions differ"):
        metrics.kid_from_features(a, b[:, :3])
    with pytest.raises(ValueError, match="features1"):
        metrics.fid_from_features(a[:1], b)
    # NaN features: a named ValueError, not numpy's "eigenvalues did not converge"
    # (FID) or a silent (nan, nan) (KID).
    broken = b.copy()
    broken[5, 2] = np.nan
    with pytest.raises(ValueError, match="features2 hold NaN or Inf"):
        metrics.fid_from_features(a, broken)
    with pytest.raises(ValueError, match="features2 hold NaN or Inf"):
        metrics.kid_from_features(a, broken)
    with pytest.raises(ValueError, match="NaN or Inf"):
        metrics.FeatureStats(4).update(broken * np.inf)


class _MeanColour(keras.layers.Layer):
    """Tiny stand-in feature model: per-channel mean and max of [0, 255] images."""

    def call(self, x):
        x = keras.ops.cast(x, "float32")
        return keras.ops.concatenate(
            [keras.ops.mean(x, axis=(1, 2)), keras.ops.max(x, axis=(1, 2))], -1
        )


def _tiny_model():
    inputs = keras.Input((None, None, 3))
    return keras.Model(inputs, _MeanColour()(inputs))


def test_compute_features_accepts_arrays_lists_datasets_and_mixed_sizes():
    model = _tiny_model()
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (7, 20, 24, 3), dtype=np.uint8)
    expected = np.concatenate([batch.mean((1, 2)), batch.max((1, 2))], -1)
    np.testing.assert_allclose(
        metrics.compute_features(model, batch, batch_size=3), expected, rtol=1e-5
    )
    ds = tf.data.Dataset.from_tensor_slices(batch).batch(4)
    np.testing.assert_allclose(metrics.compute_features(model, ds), expected, rtol=1e-5)
    # Single images of different sizes are resized to 299 each: a constant image
    # stays constant, so its features are known exactly.
    images = [
        np.full((h, w, 3), v, np.uint8)
        for h, w, v in [(10, 12, 7), (40, 33, 200), (299, 299, 50)]
    ]
    got = metrics.compute_features(model, iter(images), batch_size=2)
    np.testing.assert_allclose(got[:, 0], [7, 200, 50], rtol=1e-5)
    stats = metrics.compute_statistics(model, images, batch_size=2)
    assert stats.count == 3 and stats.samples.shape == (3, 6)
    with pytest.raises(ValueError, match=r"element 1.*shape \(4, 4\)"):
        metrics.compute_features(model, [images[0], np.zeros((4, 4))])


def test_resize_single_matches_model_preprocess():
    image = np.random.default_rng(1).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    layer = metrics.inception.InceptionPreprocess()
    direct = np.asarray(layer(image[None]))[0]
    via = np.asarray(layer(features_lib._resize_single(image)[None]))[0]
    np.testing.assert_allclose(via, direct, atol=1e-5)
