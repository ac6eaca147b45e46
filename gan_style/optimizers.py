"""The reference CycleGAN's optimizer: Adam exactly as PyTorch computes it.

Keras' Adam adds its epsilon to the square root of the *uncorrected* second
moment ("epsilon hat"); PyTorch's, which the reference uses with its default
``eps=1e-8``, adds it to the bias-corrected one. In PyTorch's terms Keras'
default ``epsilon=1e-7`` is ``1e-7 / sqrt(1 - beta_2**t)``: 3.2e-6 at the
first step, 10-300 times the reference's. It damps the updates of weights
whose gradients are tiny, and a three-step run from the same weights moved
some kernels 10-30% less far than the reference did. :class:`ReferenceAdam`
takes PyTorch's form; with it a training step matches the reference's to
float32 round-off (tests/cyclegan_test.py).
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable("gan_style")
class ReferenceAdam(keras.optimizers.Adam):
    """Adam with PyTorch's epsilon placement: ``m_hat / (sqrt(v_hat) + epsilon)``.

    The same variables as ``keras.optimizers.Adam`` (a checkpoint of either
    restores into the other); the defaults are the reference CycleGAN's
    (lr 2e-4, betas 0.5 / 0.999, epsilon 1e-8). ``amsgrad`` is not offered.
    """

    def __init__(self, learning_rate=2e-4, beta_1=0.5, beta_2=0.999, epsilon=1e-8, **kwargs):
        if kwargs.pop("amsgrad", False):
            raise ValueError("ReferenceAdam does not offer amsgrad")
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, **kwargs)

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        step = ops.cast(self.iterations + 1, dtype)
        bias_correction_1 = 1 - ops.power(ops.cast(self.beta_1, dtype), step)
        bias_correction_2 = 1 - ops.power(ops.cast(self.beta_2, dtype), step)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
        denominator = ops.add(ops.divide(ops.sqrt(v), ops.sqrt(bias_correction_2)), self.epsilon)
        self.assign_sub(variable, ops.divide(ops.multiply(m, lr / bias_correction_1), denominator))
