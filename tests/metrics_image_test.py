"""PSNR and SSIM against scikit-image's implementations of the standard definitions."""

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from gan_style import metrics


def _pair(shape, seed, noise=25):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, shape).astype(np.uint8)
    # Smooth structure plus noise, so SSIM is neither ~0 nor ~1.
    a = ((a.astype(float) + np.roll(a, 1, 0) + np.roll(a, 1, 1)) / 3).astype(np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-noise, noise + 1, shape), 0, 255).astype(
        np.uint8
    )
    return a, b


def _sk_ssim(a, b, data_range=255):
    return structural_similarity(
        a,
        b,
        channel_axis=-1,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=data_range,
    )


@pytest.mark.parametrize("shape", [(32, 40, 3), (64, 64, 3), (11, 15, 1)])
def test_psnr_and_ssim_match_skimage(shape):
    a, b = _pair(shape, seed=sum(shape))
    assert metrics.psnr(a, b) == pytest.approx(
        peak_signal_noise_ratio(a, b, data_range=255), rel=1e-12
    )
    assert metrics.ssim(a, b) == pytest.approx(_sk_ssim(a, b), abs=1e-5)


def test_batches_give_per_image_values_and_float_range():
    pairs = [_pair((24, 24, 3), seed=s, noise=10 * (s + 1)) for s in range(3)]
    a = np.stack([p[0] for p in pairs])
    b = np.stack([p[1] for p in pairs])
    psnr, ssim = metrics.psnr(a, b), metrics.ssim(a, b)
    assert psnr.shape == ssim.shape == (3,)
    np.testing.assert_allclose(
        psnr, [peak_signal_noise_ratio(x, y, data_range=255) for x, y in pairs]
    )
    np.testing.assert_allclose(ssim, [_sk_ssim(x, y) for x, y in pairs], atol=1e-5)
    assert psnr[0] > psnr[1] > psnr[2]  # more noise, lower PSNR
    # Float images in [0, 1] with data_range=1 give the same numbers.
    assert metrics.psnr(a[0] / 255.0, b[0] / 255.0, data_range=1.0) == pytest.approx(
        psnr[0]
    )
    assert metrics.ssim(a[0] / 255.0, b[0] / 255.0, data_range=1.0) == pytest.approx(
        ssim[0], abs=1e-5
    )


def test_identical_images_and_errors():
    a, _ = _pair((16, 16, 3), seed=0)
    assert metrics.psnr(a, a) == float("inf")
    assert metrics.ssim(a, a) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        metrics.psnr(a, a[:8])
    with pytest.raises(ValueError, match="at least 11x11"):
        metrics.ssim(a[:8, :8], a[:8, :8])
