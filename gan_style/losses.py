"""CycleGAN losses, per example and in float32.

Every function returns one value per example (shape ``[batch]``): the mean
over that example's pixels. A training step sums them and divides by the
*global* batch size, so that N replicas compute exactly what one device with
the whole batch would; ``keras.ops.mean`` of the result gives the reference's
loss value on one device.

Inputs are cast to float32 first, so the losses stay accurate when the
networks run under a mixed-precision policy.

Discriminator forms average the real and the fake term, as the reference's
``(loss_D_real + loss_D_fake) * 0.5``.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from keras import ops


def _per_example_mean(x):
    x = ops.cast(x, "float32")
    return ops.mean(ops.reshape(x, (ops.shape(x)[0], -1)), axis=1)


def _f32(x):
    return ops.cast(x, "float32")


# Least squares GAN (the reference default): D pushes real to 1 and fake to 0.
def lsgan_generator_loss(fake_logits):
    return _per_example_mean(ops.square(_f32(fake_logits) - 1.0))


def lsgan_discriminator_loss(real_logits, fake_logits):
    real = _per_example_mean(ops.square(_f32(real_logits) - 1.0))
    fake = _per_example_mean(ops.square(_f32(fake_logits)))
    return 0.5 * (real + fake)


# Vanilla GAN: sigmoid cross-entropy on logits, -log(sigmoid(x)) = softplus(-x).
def vanilla_generator_loss(fake_logits):
    return _per_example_mean(ops.softplus(-_f32(fake_logits)))


def vanilla_discriminator_loss(real_logits, fake_logits):
    real = _per_example_mean(ops.softplus(-_f32(real_logits)))
    fake = _per_example_mean(ops.softplus(_f32(fake_logits)))
    return 0.5 * (real + fake)


# Hinge GAN (SAGAN / BigGAN form).
def hinge_generator_loss(fake_logits):
    return _per_example_mean(-_f32(fake_logits))


def hinge_discriminator_loss(real_logits, fake_logits):
    real = _per_example_mean(ops.relu(1.0 - _f32(real_logits)))
    fake = _per_example_mean(ops.relu(1.0 + _f32(fake_logits)))
    return 0.5 * (real + fake)


def cycle_loss(real, reconstructed):
    """L1 between an image and its round trip A -> B -> A (unweighted)."""
    return _per_example_mean(ops.abs(_f32(real) - _f32(reconstructed)))


def identity_loss(real, same):
    """L1 between an image and its own translation by the generator into its
    domain, gen_ab(b) or gen_ba(a) (unweighted)."""
    return _per_example_mean(ops.abs(_f32(real) - _f32(same)))


@dataclasses.dataclass(frozen=True)
class AdversarialLoss:
    """A generator form and a discriminator form of one GAN objective."""

    name: str
    generator: Callable
    discriminator: Callable


ADVERSARIAL_LOSSES = {
    "lsgan": AdversarialLoss("lsgan", lsgan_generator_loss, lsgan_discriminator_loss),
    "vanilla": AdversarialLoss("vanilla", vanilla_generator_loss, vanilla_discriminator_loss),
    "hinge": AdversarialLoss("hinge", hinge_generator_loss, hinge_discriminator_loss),
}


def get_adversarial_loss(name: str) -> AdversarialLoss:
    """``lsgan``, ``vanilla`` or ``hinge``."""
    if name not in ADVERSARIAL_LOSSES:
        raise ValueError(
            f"unknown adversarial loss {name!r}; choose one of "
            f"{', '.join(map(repr, ADVERSARIAL_LOSSES))}"
        )
    return ADVERSARIAL_LOSSES[name]
