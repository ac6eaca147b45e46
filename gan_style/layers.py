"""Custom Keras layers of the gan_style networks.

Every layer here is registered under the ``gan_style`` package so that models
holding them save to ``.keras`` and load back with ``safe_mode=True``.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops


@keras.saving.register_keras_serializable("gan_style")
class ReflectionPadding2D(keras.layers.Layer):
    """Mirror padding of the spatial axes (PyTorch's ``nn.ReflectionPad2d``).

    The edge row is not repeated: padding ``[a, b, c]`` by 2 gives
    ``[c, b, a, b, c, b, a]``, which needs ``padding < size`` on each axis.
    """

    def __init__(self, padding: int = 1, **kwargs):
        super().__init__(**kwargs)
        if int(padding) < 0:
            raise ValueError(f"ReflectionPadding2D: padding must be >= 0, got {padding}")
        self.padding = int(padding)

    def call(self, inputs):
        p = self.padding
        return ops.pad(inputs, [[0, 0], [p, p], [p, p], [0, 0]], mode="reflect")

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        grow = lambda n: None if n is None else n + 2 * self.padding  # noqa: E731
        return (batch, grow(height), grow(width), channels)

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}


@keras.saving.register_keras_serializable("gan_style")
class BilinearUpSampling2D(keras.layers.Layer):
    """Doubles height and width by bilinear interpolation: the values of
    ``keras.layers.UpSampling2D(2, interpolation="bilinear")`` (half-pixel
    centres, no antialiasing). Keras' own layer fails in any graph whose
    image size is unknown (it takes the symbolic size for a Python bool),
    which is every graph that converts images of any size."""

    def call(self, inputs):
        shape = ops.shape(inputs)
        resized = tf.image.resize(inputs, [shape[1] * 2, shape[2] * 2], method="bilinear")
        return ops.cast(resized, inputs.dtype)  # tf.image.resize answers float32

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        double = lambda n: None if n is None else 2 * n  # noqa: E731
        return (batch, double(height), double(width), channels)


def _size_error(network: str, height, width, multiple: int, minimum: int) -> str:
    return (
        f"{network} needs an input whose height and width are multiples of {multiple} "
        f"and at least {minimum}; got {height}x{width}. Pad or resize the image first "
        "(gan_style.Translator pads any size automatically)."
    )


@keras.saving.register_keras_serializable("gan_style")
class InputCheck(keras.layers.Layer):
    """Identity layer that rejects inputs the network cannot take.

    Fully convolutional networks silently produce a wrongly sized output for
    sizes they cannot represent (30x30 into a ResNet generator comes out
    32x32), so each network starts with this check. With static shapes (eager
    calls, ``predict``) it raises ``ValueError``; inside a graph with unknown
    sizes it adds a ``tf.debugging`` assertion carrying the same message.
    XLA drops assertions: under ``jit_compile=True`` with unknown sizes a
    wrong size passes unchecked, so give such graphs sizes the network takes
    (:class:`gan_style.Translator` pads to them).

    Its config also tells wrappers such as the Translator how much to pad:
    see :func:`gan_style.networks.input_requirements`.
    """

    def __init__(self, network: str, channels: int, multiple: int = 1, minimum: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.network = network
        self.channels = int(channels)
        self.multiple = int(multiple)
        self.minimum = int(minimum)

    def build(self, input_shape):
        self._check_channels(input_shape[-1])

    def _check_channels(self, channels):
        if channels is not None and int(channels) != self.channels:
            raise ValueError(
                f"{self.network} expects {self.channels} input channel(s) in the last axis "
                f"(NHWC); got {channels}."
            )

    def _bad_size(self, n) -> bool:
        return n % self.multiple != 0 or n < self.minimum

    def call(self, inputs):
        shape = inputs.shape
        self._check_channels(shape[-1])
        height, width = shape[1], shape[2]
        if height is not None and width is not None:
            if self._bad_size(height) or self._bad_size(width):
                raise ValueError(
                    _size_error(self.network, height, width, self.multiple, self.minimum)
                )
            return inputs
        if keras.backend.backend() != "tensorflow" or not _is_symbolic_tf(inputs):
            return inputs
        import tensorflow as tf

        dims = tf.shape(inputs)[1:3]
        ok = tf.logical_and(
            tf.reduce_all(tf.math.floormod(dims, self.multiple) == 0),
            tf.reduce_all(dims >= self.minimum),
        )
        message = _size_error(self.network, "H", "W", self.multiple, self.minimum)
        with tf.control_dependencies([tf.debugging.Assert(ok, [message, dims])]):
            return tf.identity(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "network": self.network,
            "channels": self.channels,
            "multiple": self.multiple,
            "minimum": self.minimum,
        }


def _is_symbolic_tf(x) -> bool:
    """True for a tf.Tensor inside a graph (not a KerasTensor, not eager)."""
    import tensorflow as tf

    return isinstance(x, tf.Tensor) and not tf.executing_eagerly()
