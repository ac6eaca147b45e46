"""Known values of every loss on hand-made inputs."""

import numpy as np
import pytest
import tensorflow as tf

from gan_style import losses

# Two examples of 2x2 logits.
REAL = np.array([[[1.0, 0.0], [2.0, 1.0]], [[0.5, 0.5], [0.5, 0.5]]], np.float32)[..., None]
FAKE = np.array([[[0.0, 0.0], [1.0, -1.0]], [[-2.0, 0.0], [0.0, 2.0]]], np.float32)[..., None]


def _np(x):
    return np.asarray(x)


def test_lsgan():
    # (f - 1)^2 per example: [1 + 1 + 0 + 4] / 4, [9 + 1 + 1 + 1] / 4
    np.testing.assert_allclose(_np(losses.lsgan_generator_loss(FAKE)), [1.5, 3.0])
    # real: (r - 1)^2 -> [0+1+1+0]/4 = 0.5, [4 * 0.25]/4 = 0.25; fake: f^2 -> [0+0+1+1]/4, [4+0+0+4]/4
    np.testing.assert_allclose(
        _np(losses.lsgan_discriminator_loss(REAL, FAKE)), [0.5 * (0.5 + 0.5), 0.5 * (0.25 + 2.0)]
    )


def test_vanilla_is_sigmoid_cross_entropy():
    log2 = np.log(2.0)
    sp = lambda x: np.log1p(np.exp(x))  # noqa: E731  softplus
    # generator: -log sigmoid(f) = softplus(-f)
    expected_gen = [(2 * log2 + sp(-1) + sp(1)) / 4, (sp(2) + 2 * log2 + sp(-2)) / 4]
    np.testing.assert_allclose(_np(losses.vanilla_generator_loss(FAKE)), expected_gen, rtol=1e-6)
    real = [(sp(-1) + log2 + sp(-2) + sp(-1)) / 4, sp(-0.5)]
    fake = [(2 * log2 + sp(1) + sp(-1)) / 4, (sp(-2) + 2 * log2 + sp(2)) / 4]
    np.testing.assert_allclose(
        _np(losses.vanilla_discriminator_loss(REAL, FAKE)), 0.5 * (np.array(real) + fake), rtol=1e-6
    )
    # Same as Keras's binary cross-entropy on logits.
    bce = tf.keras.losses.BinaryCrossentropy(from_logits=True)
    assert float(np.mean(losses.vanilla_generator_loss(FAKE))) == pytest.approx(
        float(bce(np.ones_like(FAKE), FAKE)), rel=1e-6
    )


def test_hinge():
    np.testing.assert_allclose(_np(losses.hinge_generator_loss(FAKE)), [0.0, 0.0])
    # -mean(f): FAKE's rows sum to 0, so a sign error needs other logits to show.
    np.testing.assert_allclose(_np(losses.hinge_generator_loss(np.array([[1.0, 2.0], [3.0, 5.0]]))),
                               [-1.5, -4.0])
    # real relu(1 - r): [0 + 1 + 0 + 0]/4, [0.5]; fake relu(1 + f): [1 + 1 + 2 + 0]/4, [0 + 1 + 1 + 3]/4
    np.testing.assert_allclose(
        _np(losses.hinge_discriminator_loss(REAL, FAKE)), [0.5 * (0.25 + 1.0), 0.5 * (0.5 + 1.25)]
    )


def test_l1_cycle_and_identity():
    a = np.zeros((2, 2, 2, 3), np.float32)
    b = a.copy()
    b[0] = 0.5
    b[1, 0, 0, 0] = -1.2
    np.testing.assert_allclose(_np(losses.cycle_loss(a, b)), [0.5, 1.2 / 12])
    np.testing.assert_allclose(_np(losses.identity_loss(a, b)), [0.5, 1.2 / 12])


def test_float16_inputs_are_computed_in_float32():
    big = np.full((1, 4, 4, 1), 300.0, np.float16)  # 299^2 overflows float16 (max 65504)
    out = losses.lsgan_generator_loss(tf.constant(big))
    assert out.dtype == tf.float32
    np.testing.assert_allclose(_np(out), [299.0**2])


def test_get_adversarial_loss():
    assert losses.get_adversarial_loss("lsgan").generator is losses.lsgan_generator_loss
    with pytest.raises(ValueError, match="unknown adversarial loss 'wgan'.*'lsgan'"):
        losses.get_adversarial_loss("wgan")
