"""Experiment (bench only): instance norm as one fused oneDNN batch-norm kernel.

``keras.layers.GroupNormalization(groups=-1)`` (gan_style's instance norm)
runs as a reshape, a two-pass moments and elementwise ops, forward and
backward. For one image, instance norm *is* training-mode batch norm
(per-channel statistics over H and W), which TensorFlow runs as a single
``FusedBatchNormV3`` kernel with a single fused gradient. :func:`swap_instance_norm`
clones a network with that substitution (all other layers shared, so the
weights are the same objects); :mod:`train_throughput` and
:mod:`torch_reference` time it against the library's layer. Not used by the
library: on a random-init resnet_9blocks its output differs from
GroupNormalization by 1.8e-5 (above the 1e-5 tolerance the project keeps,
inside the 1e-4 PyTorch-parity one), and on a *constant* feature map
(e.g. a 1x1 image mirror-padded to 8x8) it is not robust: the kernel's
variance is not exactly 0, and a Translator built on it was 44 uint8 levels
off GroupNormalization there (13 levels between its eager and graph runs).
"""

import keras
import tensorflow as tf


class FusedInstanceNorm(keras.layers.Layer):
    """Non-affine instance norm via ``fused_batch_norm`` per image."""

    def __init__(self, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, x):
        channels = x.shape[-1]
        one, zero = tf.ones([channels], x.dtype), tf.zeros([channels], x.dtype)

        def norm(image):
            return tf.compat.v1.nn.fused_batch_norm(image, one, zero, epsilon=self.epsilon, is_training=True)[0]

        if x.shape[0] == 1:
            return norm(x)
        if x.shape[0] is None:  # unknown batch: one image at a time
            return tf.map_fn(norm, x[:, None])[:, 0]
        return tf.concat([norm(t) for t in tf.unstack(x[:, None], num=x.shape[0])], 0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


def _is_instance_norm(layer) -> bool:
    return (isinstance(layer, keras.layers.GroupNormalization) and not layer.center and not layer.scale
            and layer.groups in (-1, layer.input.shape[-1]))


def swap_instance_norm(model: keras.Model) -> keras.Model:
    """A clone of ``model`` with every instance norm fused; other layers shared."""
    def clone(layer):
        if _is_instance_norm(layer):
            return FusedInstanceNorm(layer.epsilon, name=layer.name)
        return layer

    return keras.models.clone_model(model, clone_function=clone)
