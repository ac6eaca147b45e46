"""Custom layers: behaviour and serialisation round trips."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from gan_style.layers import BilinearUpSampling2D, InputCheck, ReflectionPadding2D


def test_reflection_padding_matches_numpy_reflect():
    x = np.arange(2 * 3 * 4 * 2, dtype=np.float32).reshape(2, 3, 4, 2)
    out = ReflectionPadding2D(2)(x).numpy()
    np.testing.assert_array_equal(out, np.pad(x, [(0, 0), (2, 2), (2, 2), (0, 0)], mode="reflect"))
    assert ReflectionPadding2D(2).compute_output_shape((None, None, 5, 2)) == (None, None, 9, 2)


def test_bilinear_upsampling_is_keras_bilinear_and_works_at_unknown_sizes():
    x = np.random.default_rng(0).uniform(-1, 1, (2, 5, 7, 3)).astype(np.float32)
    want = keras.layers.UpSampling2D(2, interpolation="bilinear")(x).numpy()
    layer = BilinearUpSampling2D()
    np.testing.assert_array_equal(layer(x).numpy(), want)
    # Keras' own layer raises OperatorNotAllowedInGraphError here.
    graph = tf.function(layer, input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    np.testing.assert_array_equal(graph(x).numpy(), want)
    assert layer.compute_output_shape((None, None, 5, 3)) == (None, None, 10, 3)
    assert BilinearUpSampling2D(dtype="mixed_bfloat16")(x).dtype == tf.bfloat16  # computes in its policy


def test_reflection_padding_rejects_negative():
    with pytest.raises(ValueError, match="padding must be >= 0"):
        ReflectionPadding2D(-1)


@pytest.mark.parametrize(
    "layer",
    [ReflectionPadding2D(3, name="pad"), InputCheck("net", 3, multiple=4, minimum=8, name="check"),
     BilinearUpSampling2D(name="up")],
)
def test_layer_config_round_trip(layer):
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(restored) is type(layer)
    assert restored.get_config() == layer.get_config()


def test_input_check_is_identity_on_good_input():
    x = np.ones((1, 8, 12, 3), np.float32)
    np.testing.assert_array_equal(InputCheck("net", 3, multiple=4, minimum=8)(x), x)


def test_input_check_in_graph_with_static_shape_raises_at_trace_time():
    check = InputCheck("net", 3, multiple=4, minimum=8)
    run = tf.function(check)
    with pytest.raises(ValueError, match="got 10x12"):
        run(tf.zeros((1, 10, 12, 3)))
