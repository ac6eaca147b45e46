"""The reference networks: sizes, parameter counts, receptive field, round trips, errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import gan_style
from gan_style import networks

GENERATORS = ["resnet_9blocks", "resnet_6blocks", "unet_128", "unet_256"]
DISCRIMINATORS = ["basic", "n_layers", "pixel"]


def _images(h, w, c=3, batch=1, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (batch, h, w, c)).astype(np.float32)


@pytest.mark.parametrize(
    "name, expected", [("resnet_9blocks", 11_378_179), ("resnet_6blocks", 7_837_699)]
)
def test_reference_generator_parameter_counts(name, expected):
    assert gan_style.build_generator(name).count_params() == expected


def test_basic_discriminator_parameter_count_and_patch_grid():
    disc = gan_style.build_discriminator("basic")
    assert disc.count_params() == 2_764_737
    assert disc(np.zeros((1, 256, 256, 3), np.float32)).shape == (1, 30, 30, 1)


@pytest.mark.parametrize("norm", ["instance", "batch", "none"])
@pytest.mark.parametrize("upsample", ["transpose", "resize_conv"])
@pytest.mark.parametrize("size", [(8, 8), (64, 64), (64, 96), (36, 20)])
def test_resnet_generator_keeps_any_multiple_of_4(size, upsample, norm):
    gen = gan_style.build_generator("resnet_6blocks", base_filters=4, norm=norm, upsample=upsample)
    out = gen(_images(*size, batch=2), training=False)
    assert out.shape == (2, *size, 3)
    assert out.dtype == tf.float32
    assert np.all(np.abs(out.numpy()) <= 1.0)


@pytest.mark.parametrize("name, size", [("unet_128", (128, 256)), ("unet_256", (256, 256))])
def test_unet_generator_shapes(name, size):
    gen = gan_style.build_generator(name, base_filters=2)
    assert gen(_images(*size), training=False).shape == (1, *size, 3)


@pytest.mark.parametrize("name, levels", [("unet_128", [6, 5]), ("unet_256", [7, 6, 5])])
def test_unet_dropout_sits_where_the_references_does(name, levels):
    # The reference: Dropout(0.5) closes each of the num_downs - 5 middle blocks
    # of 8 x ngf filters (not the innermost), after the up path's norm.
    model = gan_style.build_generator(name, base_filters=2, dropout=True)
    dropouts = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert [layer.name for layer in dropouts] == [f"up{level}_dropout" for level in levels]
    for layer in dropouts:
        assert layer.rate == 0.5 and layer.input.shape[-1] == 8 * 2
        (producer,) = [node.operation for node in layer._inbound_nodes[0].parent_nodes]
        assert producer.name == layer.name.replace("dropout", "norm")


def test_channel_options():
    gen = gan_style.build_generator("resnet_6blocks", base_filters=4, input_channels=1, output_channels=4)
    assert gen(_images(16, 24, c=1)).shape == (1, 16, 24, 4)
    disc = gan_style.build_discriminator("basic", base_filters=4, input_channels=4)
    assert disc(_images(64, 96, c=4)).shape == (1, 6, 10, 1)


def test_discriminator_shapes():
    assert gan_style.build_discriminator("pixel", base_filters=4)(_images(5, 7)).shape == (1, 5, 7, 1)
    disc = gan_style.build_discriminator("n_layers", num_layers=2, base_filters=4)
    assert disc(_images(64, 64)).shape == (1, 14, 14, 1)  # 64 -> 32 -> 16 -> 15 -> 14


def test_basic_discriminator_sees_70x70_patches():
    """Gradient of one logit is non-zero exactly inside a 70x70 input window.

    Without normalisation (instance norm would couple every pixel), so what
    is measured is the convolutions' receptive field.
    """
    disc = gan_style.build_discriminator("basic", base_filters=4, norm="none", seed=1)
    x = tf.constant(_images(128, 128))
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = disc(x)
        one = logits[0, 7, 7, 0]
    grad = np.abs(tape.gradient(one, x).numpy()[0]).sum(axis=-1)
    rows, cols = np.nonzero(grad)
    assert rows.max() - rows.min() + 1 == 70
    assert cols.max() - cols.min() + 1 == 70
    # Logit (i, j) covers input rows [8i - 23, 8i + 46] (back through the two
    # stride-1 and three stride-2 4x4 convs with padding 1); no holes inside.
    assert (rows.min(), cols.min()) == (8 * 7 - 23, 8 * 7 - 23)
    assert np.count_nonzero(grad) == 70 * 70


def test_default_init_is_normal_0_02():
    gen = gan_style.build_generator("resnet_6blocks", seed=0)
    kernel = gen.get_layer("block1_conv1").kernel.numpy()
    assert abs(kernel.mean()) < 1e-3
    assert kernel.std() == pytest.approx(0.02, rel=0.02)
    assert np.all(gen.get_layer("block1_conv1").bias.numpy() == 0)


@pytest.mark.parametrize("init", ["xavier", "kaiming", "orthogonal"])
def test_other_inits(init):
    gen = gan_style.build_generator("resnet_6blocks", base_filters=8, init=init, seed=0)
    # 3x3, 8 -> 16: fan in and fan out differ, so a mode taking the wrong one shows.
    kernel = gen.get_layer("down1_conv").kernel.numpy()
    fan_in, fan_out = 9 * 8, 9 * 16
    expected_std = {
        "xavier": 0.02 * np.sqrt(2 / (fan_in + fan_out)),
        "kaiming": np.sqrt(2 / fan_in),  # the reference: kaiming_normal_(a=0, mode="fan_in")
        # 16 orthonormal vectors of length 72 (as torch's orthogonal_), scaled by the gain.
        "orthogonal": 0.02 / np.sqrt(fan_in),
    }[init]
    assert kernel.std() == pytest.approx(expected_std, rel=0.1)


def _round_trip(model, x, tmp_path):
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(model(x, training=False).numpy(), loaded(x, training=False).numpy())
    return loaded


@pytest.mark.parametrize("name", GENERATORS)
def test_generator_keras_round_trip_is_bit_identical(name, tmp_path):
    size = {"unet_128": 128, "unet_256": 256}.get(name, 32)
    options = dict(base_filters=2, dropout=True, upsample="resize_conv") if name == "unet_128" else {}
    gen = gan_style.build_generator(name, base_filters=2 if "unet" in name else 4, **{k: v for k, v in options.items() if k != "base_filters"})
    loaded = _round_trip(gen, _images(size, size), tmp_path)
    assert loaded.count_params() == gen.count_params()


@pytest.mark.parametrize("name", DISCRIMINATORS)
@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_discriminator_keras_round_trip_is_bit_identical(name, norm, tmp_path):
    disc = gan_style.build_discriminator(name, base_filters=4, norm=norm)
    _round_trip(disc, _images(64, 64), tmp_path)


def test_mixed_precision_outputs_float32():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        gen = gan_style.build_generator("resnet_6blocks", base_filters=4)
        disc = gan_style.build_discriminator("basic", base_filters=4)
        assert gen.get_layer("block1_conv1").compute_dtype == "float16"
        assert gen(_images(32, 32)).dtype == tf.float32
        assert disc(_images(32, 32)).dtype == tf.float32
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_input_requirements():
    assert networks.input_requirements(gan_style.build_generator("resnet_6blocks", base_filters=2)) == (4, 8)
    assert networks.input_requirements(gan_style.build_generator("unet_256", base_filters=2)) == (256, 256)
    assert networks.input_requirements(gan_style.build_discriminator("basic", base_filters=2)) == (1, 24)


# --- bad input ---------------------------------------------------------------


def test_unknown_names_list_the_choices():
    with pytest.raises(ValueError, match="unknown generator 'resnet_12blocks'.*'resnet_9blocks'"):
        gan_style.build_generator("resnet_12blocks")
    with pytest.raises(ValueError, match="unknown discriminator 'patch'.*'basic'"):
        gan_style.build_discriminator("patch")
    with pytest.raises(ValueError, match="unknown norm 'layer'.*'instance'"):
        gan_style.build_generator("resnet_6blocks", norm="layer")
    with pytest.raises(ValueError, match="unknown upsample 'deconv'"):
        gan_style.build_generator("resnet_6blocks", upsample="deconv")
    with pytest.raises(ValueError, match="discriminator 'pixel'.*num_layers"):
        gan_style.build_discriminator("pixel", num_layers=4)
    with pytest.raises(ValueError, match="base_filters must be a positive integer"):
        gan_style.build_generator("resnet_6blocks", base_filters=0)


def test_wrong_channel_count():
    gen = gan_style.build_generator("resnet_6blocks", base_filters=2)
    # Keras's own input spec check answers first, naming both shapes.
    with pytest.raises(ValueError, match=r"expected shape=\(None, None, None, 3\), found shape=\(1, 32, 32, 4\)"):
        gen(_images(32, 32, c=4))


@pytest.mark.parametrize(
    "name, size, message",
    [
        ("resnet_9blocks", (30, 30), "multiples of 4 and at least 8; got 30x30"),
        ("resnet_9blocks", (4, 4), "multiples of 4 and at least 8; got 4x4"),
        ("unet_256", (100, 100), "multiples of 256 and at least 256; got 100x100"),
    ],
)
def test_sizes_the_network_cannot_take(name, size, message):
    gen = gan_style.build_generator(name, base_filters=2)
    with pytest.raises(ValueError, match=message):
        gen(_images(*size))
    with pytest.raises(ValueError, match=message):
        gen.predict(_images(*size), verbose=0)


def test_too_small_for_discriminator():
    disc = gan_style.build_discriminator("basic", base_filters=2)
    with pytest.raises(ValueError, match="at least 24; got 16x40"):
        disc(_images(16, 40))


def test_bad_size_inside_a_graph_is_a_tf_assertion_with_the_message():
    gen = gan_style.build_generator("resnet_6blocks", base_filters=2)
    run = tf.function(gen, input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    assert run(_images(32, 32)).shape == (1, 32, 32, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="multiples of 4 and at least 8"):
        run(_images(30, 30))


def test_model_name_option_is_separate_from_the_network_type():
    gen = gan_style.build_generator("resnet_6blocks", base_filters=2, name="gen_ab")
    disc = gan_style.build_discriminator("pixel", base_filters=2, name="disc_b")
    assert (gen.name, disc.name) == ("gen_ab", "disc_b")
    assert gen.get_layer("block6_add") is not None
