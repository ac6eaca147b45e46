"""Tests of gan_style.translator: any-size uint8 translation, saving, export, reuse."""

import io
import pathlib
import re
import zlib

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import gan_style
from gan_style import image_io, tonal
from gan_style.layers import InputCheck
from gan_style.translator import Translator, _mirror_indices, from_workdir, load_translator


def tiny_generator(seed=1):
    return gan_style.build_generator("resnet_6blocks", base_filters=4, seed=seed)


def images(seed, shape):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def level_diff(a, b):
    return np.abs(np.asarray(a).astype(int) - np.asarray(b).astype(int))


def assert_within_one_level(got, expected, max_fraction=0.001):
    diff = level_diff(got, expected)
    assert diff.max() <= 1, diff.max()
    assert (diff > 0).mean() < max_fraction, (diff > 0).mean()


@pytest.fixture(scope="module")
def translator():
    return Translator(tiny_generator(), tone="warm", strength=0.8)


@pytest.fixture(scope="module")
def saved_model_path(translator, tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "translator_savedmodel"
    assert translator.export(path) == str(path)
    return path


@pytest.fixture(scope="module")
def saved_model(saved_model_path):
    return tf.saved_model.load(str(saved_model_path))


def identity_generator(multiple=4, minimum=8):
    """A 'generator' returning its input: shows exactly what generate() crops."""
    inputs = keras.Input((None, None, 3))
    checked = InputCheck("identity", 3, multiple=multiple, minimum=minimum)(inputs)
    return keras.Model(inputs, keras.layers.Identity()(checked))


def blur_generator():
    """3x3 mean filter (valid conv on reflect padding): output sees padded pixels."""
    inputs = keras.Input((None, None, 3))
    x = InputCheck("blur", 3, multiple=4, minimum=8)(inputs)
    x = keras.layers.DepthwiseConv2D(
        3, padding="same", use_bias=False, depthwise_initializer=keras.initializers.Constant(1 / 9)
    )(x)
    return keras.Model(inputs, x)


# -- padding ---------------------------------------------------------------


@pytest.mark.parametrize("n, target", [(5, 8), (8, 8), (7, 12), (255, 256), (6, 11), (40, 110)])
def test_mirror_indices_are_reflect_padding(n, target):
    indices, before = _mirror_indices(tf.constant(n), tf.constant(target))
    before = int(before)
    expected = np.pad(np.arange(n), (before, target - n - before), mode="reflect")
    np.testing.assert_array_equal(indices.numpy(), expected)


@pytest.mark.parametrize("n, target", [(1, 8), (2, 8), (3, 8), (3, 20), (5, 72), (2, 101)])
def test_mirror_indices_tiny_axes_repeat_symmetric_padding(n, target):
    indices, before = _mirror_indices(tf.constant(n), tf.constant(target))
    before, after = int(before), target - n - int(before)
    # Repeated symmetric padding: np.pad "symmetric" one image length at a time.
    expected = np.arange(n)
    left, right = before, after
    while left or right:
        step_l, step_r = min(left, len(expected)), min(right, len(expected))
        expected = np.pad(expected, (step_l, step_r), mode="symmetric")
        left, right = left - step_l, right - step_r
    np.testing.assert_array_equal(indices.numpy(), expected)
    assert indices.numpy().min() >= 0 and indices.numpy().max() < n


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (9, 14), (16, 16)])
def test_generate_crops_back_to_the_source_pixels(shape):
    model = Translator(identity_generator())
    x = images(0, (2, *shape, 3))
    generated = model.generate(x).numpy()
    np.testing.assert_allclose(generated, x / 127.5 - 1.0, atol=1e-6)
    # Neutral tone, full strength, identity generator: the image comes back.
    assert np.array_equal(model(x).numpy(), x)


def test_generate_pads_with_the_mirror_image():
    # A blur sees the padding: compare with blurring np.pad(reflect) by hand.
    model = Translator(blur_generator())
    x = images(1, (1, 6, 7, 3))  # padded to 8x8: rows 1 + 1, columns 0 + 1
    got = model.generate(x).numpy()[0]
    frame = np.pad(x[0] / 127.5 - 1.0, ((1, 1), (0, 1), (0, 0)), mode="reflect")
    zeros = np.pad(frame, ((1, 1), (1, 1), (0, 0)))  # the conv's own "same" zeros
    blurred = sum(zeros[i : i + 8, j : j + 8] for i in range(3) for j in range(3)) / 9
    np.testing.assert_allclose(got, blurred[1:7, 0:7], atol=1e-5)


def test_context_is_mirrored_border_the_generator_sees():
    # 40 + 2 * 4 = 48 is already a valid size: the Translator adds exactly the
    # context, so a blur over it equals blurring np.pad(reflect, 4) by hand.
    model = Translator(blur_generator(), context=4)
    x = images(2, (1, 40, 40, 3))
    got = model.generate(x).numpy()[0]
    frame = np.pad(x[0] / 127.5 - 1.0, ((4, 4), (4, 4), (0, 0)), mode="reflect")
    zeros = np.pad(frame, ((1, 1), (1, 1), (0, 0)))
    blurred = sum(zeros[i : i + 48, j : j + 48] for i in range(3) for j in range(3)) / 9
    np.testing.assert_allclose(got, blurred[4:44, 4:44], atol=1e-5)
    # Without context the border pixels see the conv's zeros instead.
    plain = Translator(blur_generator()).generate(x).numpy()[0]
    assert np.abs(plain[0] - got[0]).max() > 0.01
    np.testing.assert_allclose(plain[2:-2, 2:-2], got[2:-2, 2:-2], atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (33, 18)])
def test_context_keeps_any_size(shape):
    model = Translator(tiny_generator(), context=32)  # more than the image: symmetric padding
    x = images(3, (1, *shape, 3))
    assert model(x).shape == x.shape


@pytest.mark.parametrize("bad", [-1, 1.5, True, "8"])
def test_context_must_be_a_non_negative_int(bad):
    with pytest.raises(ValueError, match="context"):
        Translator(tiny_generator(), context=bad)


def test_context_saves_loads_and_overrides(tmp_path):
    model = Translator(tiny_generator(), tone="warm", context=6)
    assert model.with_context(None) is model and model.with_context(6) is model
    wider = model.with_context(10)
    assert wider.context == 10 and wider.generator is model.generator and wider.profile == model.profile
    assert model.with_precision("bfloat16").context == 6
    path = model.export(tmp_path / "t.keras")
    loaded = load_translator(path)
    assert loaded.context == 6
    x = images(4, (1, 21, 30, 3))
    assert np.array_equal(loaded(x).numpy(), model(x).numpy())
    assert load_translator(path, context=0).context == 0
    generator_file = tmp_path / "g.keras"
    tiny_generator().save(generator_file)
    assert load_translator(generator_file, context=12).context == 12
    # The SavedModel for TF Serving translates with the context too.
    served = tf.saved_model.load(str(model.export(tmp_path / "served")))
    out = served.signatures["serving_default"](images=tf.constant(x))["images"]
    assert_within_one_level(out, model(x))
    assert level_diff(out, Translator(model.generator, tone="warm")(x)).max() > 1


# -- the model ---------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (255, 257), (512, 384)])
def test_any_size_keeps_the_size(translator, shape):
    batch = 2 if shape[0] < 100 else 1
    x = images(2, (batch, *shape, 3))
    y = translator(x)
    assert y.dtype == tf.uint8 and tuple(y.shape) == x.shape


def test_call_is_finish_of_generate(translator):
    x = images(3, (2, 13, 10, 3))
    generated = translator.generate(x)
    assert generated.dtype == tf.float32 and generated.shape == x.shape
    assert np.abs(generated.numpy()).max() <= 1.0
    assert np.array_equal(translator.finish(x, generated).numpy(), translator(x).numpy())


def test_strength_blend_and_tone_formula():
    generator = tiny_generator()
    x = images(4, (2, 12, 12, 3))
    for strength in (0.0, 0.35, 1.0):
        model = Translator(generator, tone="vivid", strength=strength)
        g = (model.generate(x).numpy().astype(np.float64) + 1) / 2
        blended = strength * g + (1 - strength) * x / 255.0
        toned = tonal.TonalAdjustment(**tonal.PRESETS["vivid"].tonal_params())(
            blended.astype(np.float32)
        ).numpy()
        assert level_diff(model(x), np.round(toned * 255)).max() <= 1
    # Strength 0 with a neutral tone gives the source back exactly.
    assert np.array_equal(Translator(generator, strength=0.0)(x).numpy(), x)
    with pytest.raises(ValueError, match="'strength'"):
        Translator(generator, strength=1.5)


def test_per_image_tone_params(translator):
    x = images(5, (2, 9, 11, 3))
    warm = tonal.PRESETS["warm"].replace(strength=0.5)
    muted = tonal.PRESETS["muted"]
    both = translator(x, tone_params=np.array([warm.to_vector(), muted.to_vector()], np.float32))
    for i, profile in enumerate((warm, muted)):
        alone = Translator(translator.generator, tone=profile)(x[i : i + 1])
        assert np.array_equal(both[i : i + 1].numpy(), alone.numpy())
    # Six columns: tone per image, the translator's own strength.
    six = translator(x, tone_params=np.array([muted.to_vector(False)] * 2, np.float32))
    expected = Translator(translator.generator, tone=muted, strength=translator.strength)(x)
    assert np.array_equal(six.numpy(), expected.numpy())
    # A NaN strength is the translator's own (it would otherwise pass the clip).
    nan_strength = np.array([muted.to_vector(False) + [np.nan]] * 2, np.float32)
    assert np.array_equal(translator(x, tone_params=nan_strength).numpy(), expected.numpy())
    with pytest.raises(ValueError, match="tone_params"):
        translator(x, tone_params=np.zeros((2, 3), np.float32))
    # One row is every image's tone; another count is refused by name.
    one = translator(x, tone_params=np.array([muted.to_vector(False)], np.float32))
    assert np.array_equal(one.numpy(), expected.numpy())
    with pytest.raises(ValueError, match="tone_params has 3 rows for 2 images"):
        translator(x, tone_params=np.zeros((3, 7), np.float32))


def test_alpha_keeps_the_colours_of_semi_transparent_pixels():
    # A cut-out's soft edge or shadow: the generator sees it composited on
    # white, but its output must not carry that white (a viewer composites
    # it again). Identity generator: the translation is the composited input.
    translator = Translator(identity_generator())
    rgb = images(21, (1, 12, 40, 3))
    alpha = np.repeat(np.linspace(0, 255, 40).round().astype(np.uint8)[None, None, :, None], 12, axis=1)
    composited = image_io.composite(rgb[0], alpha[0, ..., 0])[None]
    out = translator(rgb, alpha=alpha).numpy()
    # Given the same alpha on white, it shows what the generator made ...
    shown = image_io.composite(out[0], alpha[0, ..., 0])
    assert level_diff(shown, composited[0]).max() <= 1
    # ... in the source's own colours: composite rounding grows as 1 / alpha.
    a = alpha[0, ..., 0].astype(np.float64) / 255
    visible = a >= 0.25
    assert (level_diff(out[0], rgb[0]).max(axis=-1)[visible] <= np.ceil(0.5 / a[visible]) + 1).all()
    assert level_diff(out, composited)[0][visible & (a < 0.9)].max() > 20  # what it did before
    # Strength 0 is the source's own colours exactly, alpha or not.
    plain = Translator(identity_generator(), strength=0.0)
    assert np.array_equal(plain(rgb, alpha=alpha).numpy(), rgb)
    # An opaque alpha changes nothing; a fully transparent pixel shows nothing, any colour will do.
    opaque = np.full_like(alpha, 255)
    assert np.array_equal(translator(rgb, alpha=opaque).numpy(), translator(rgb).numpy())
    with pytest.raises(ValueError, match="alpha must be uint8"):
        translator(rgb, alpha=alpha.astype(np.float32))
    with pytest.raises(ValueError, match="does not fit images"):
        translator(rgb, alpha=alpha[:, :6])


def test_rejects_models_that_are_not_rgb_generators(tmp_path):
    with pytest.raises(ValueError, match="maps"):
        Translator(gan_style.build_discriminator("basic", base_filters=4))
    with pytest.raises(ValueError, match="Keras generator model"):
        Translator("gen_ab.keras")
    gray = gan_style.build_generator("resnet_6blocks", base_filters=4, output_channels=1)
    gray.save(tmp_path / "gray.keras")
    with pytest.raises(ValueError, match="maps"):
        load_translator(tmp_path / "gray.keras")


def test_rejects_non_uint8_and_bad_shapes(translator):
    with pytest.raises(ValueError, match="uint8"):
        translator(np.zeros((1, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[batch, H, W, 3\]"):
        translator(np.zeros((1, 8, 8, 4), np.uint8))
    with pytest.raises(ValueError, match="at least 1x1"):
        translator(np.zeros((1, 0, 8, 3), np.uint8))
    # An empty batch comes back empty (it failed inside the generator's padding).
    assert translator(np.zeros((0, 8, 8, 3), np.uint8)).shape == (0, 8, 8, 3)
    ragged = tf.ragged.stack([tf.zeros((5, 7, 3), tf.uint8), tf.zeros((9, 4, 3), tf.uint8)])
    with pytest.raises(ValueError, match="RaggedTensor .images of different sizes.: call it once per image"):
        translator(ragged)
    with pytest.raises(ValueError, match="of one size; this input makes no such tensor"):
        translator([np.zeros((5, 7, 3), np.uint8), np.zeros((9, 4, 3), np.uint8)])


def test_keras_model_around_it_refuses_wrong_inputs_when_built(translator):
    # keras.Input defaults to float32: a model built on one must fail here,
    # saying how to declare the input, not at its first call on uint8 images.
    for inputs, message in [
        (keras.Input((None, None, 3)), r'dtype float32\. In a Keras model, .*keras\.Input\(shape=\(None, None, 3\), dtype="uint8"\)'),
        (keras.Input((None, None, 4), dtype="uint8"), r"\[batch, H, W, 3\]; got shape \(None, None, None, 4\)"),
        (keras.Input((None, None), dtype="uint8"), r"\[batch, H, W, 3\]; got shape"),
    ]:
        with pytest.raises(ValueError, match=message):
            keras.Model(inputs, translator(inputs))
    inputs = keras.Input((None, None, 3), dtype="uint8")
    with pytest.raises(ValueError, match="tone_params must be"):
        translator(inputs, tone_params=keras.Input((5,)))
    with pytest.raises(ValueError, match=r'alpha must be uint8 .*keras\.Input\(shape=\(None, None, 1\), dtype="uint8"\)'):
        translator(inputs, alpha=keras.Input((None, None, 1)))
    # A cut-out's alpha as a second input: the model works on uint8 data as the translator does.
    alpha_in = keras.Input((None, None, 1), dtype="uint8")
    cutouts = keras.Model([inputs, alpha_in], translator(inputs, alpha=alpha_in))
    x, a = images(17, (1, 12, 16, 3)), images(18, (1, 12, 16, 1))
    assert_within_one_level(cutouts([x, a]), translator(x, alpha=a))


def test_graph_inputs_of_unknown_size_are_checked_at_run_time(translator):
    # A serving client's request has no static shape: an empty image or a
    # tone batch of the wrong size gets the eager message, not a raw op error.
    serve = tf.function(lambda a: translator(a), input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least 1x1 pixels"):
        serve(tf.zeros([1, 0, 8, 3], tf.uint8))
    toned = tf.function(
        lambda a, t: translator(a, tone_params=t),
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8), tf.TensorSpec([None, 7], tf.float32)],
    )
    x = tf.constant(images(16, (2, 8, 8, 3)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="one row per image, or one for all"):
        toned(x, tf.zeros([3, 7]))
    vector = tonal.PRESETS["warm"].to_vector()
    for rows in (1, 2):
        assert_within_one_level(toned(x, tf.constant([vector] * rows)), translator(x, tone_params=np.array([vector], np.float32)))


def test_channels_unknown_until_run_time_are_checked_then(translator):
    # tf.io.decode_image without channels=3 in a tf.data map: the channel
    # count is known only per image; an RGBA PNG failed in the first convolution.
    rgba = io.BytesIO()
    Image.fromarray(images(15, (6, 6, 4))).save(rgba, format="PNG")
    ds = tf.data.Dataset.from_tensors(rgba.getvalue()).map(lambda b: tf.io.decode_image(b, expand_animations=False))
    assert ds.element_spec.shape.as_list() == [None, None, None]
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[batch, H, W, 3\]; decode with channels=3"):
        list(ds.map(lambda image: translator(image[None])[0]))


def test_load_translator_names_the_file_of_a_model_that_is_no_generator(tmp_path):
    gan_style.build_discriminator("basic", base_filters=4).save(tmp_path / "latest_net_D_A.keras")
    with pytest.raises(ValueError, match=r"latest_net_D_A\.keras: .*maps"):
        load_translator(tmp_path / "latest_net_D_A.keras")


def test_profile_and_set_tone(translator):
    model = Translator(translator.generator, tone={"contrast": 1.2}, strength=0.6)
    assert model.profile.contrast == pytest.approx(1.2) and model.profile.strength == 0.6
    x = images(6, (1, 8, 8, 3))
    traced = tf.function(lambda a: model(a))
    before = traced(x).numpy()
    model.set_tone("cool")  # a preset brings its strength, 1.0, as infer.py --tone=cool does
    assert model.profile.temperature == pytest.approx(-0.3) and model.strength == 1.0
    # The tone lives in a weight, so an already traced graph sees the change.
    assert not np.array_equal(traced(x).numpy(), before)
    # predict() keeps Keras' own traced graph: a new strength must reach it.
    model.predict(x, verbose=0)
    model.set_tone("cool", strength=0.0)
    assert np.array_equal(model.predict(x, verbose=0), model(x).numpy())
    assert not np.array_equal(model(x).numpy(), traced(x).numpy())  # strength 0 vs 1


# -- saving and loading --------------------------------------------------------


def test_keras_round_trip_is_bit_identical(translator, tmp_path):
    path = translator.export(tmp_path / "translator.keras")
    loaded = load_translator(path)
    assert isinstance(loaded, Translator)
    assert loaded.profile == translator.profile and loaded.strength == translator.strength
    x = images(7, (2, 21, 30, 3))
    assert np.array_equal(loaded(x).numpy(), translator(x).numpy())
    # Overrides at load time.
    muted = load_translator(path, tone="muted", strength=0.3)
    assert muted.profile.saturation == pytest.approx(0.6) and muted.strength == 0.3


def test_load_translator_errors(tmp_path, saved_model_path):
    with pytest.raises(FileNotFoundError, match="nope.keras"):
        load_translator(tmp_path / "nope.keras")
    with pytest.raises(ValueError, match="translator_savedmodel is a directory"):
        load_translator(saved_model_path)
    # A training workdir, or its export folder: the generators in it are named.
    workdir = tmp_path / "run"
    (workdir / "export").mkdir(parents=True)
    for name in ("gen_ab", "gen_ba"):
        (workdir / "export" / f"{name}.keras").write_bytes(b"")
    for folder in (workdir, workdir / "export"):
        with pytest.raises(ValueError, match=re.escape(
                f"{folder} is a folder, not a model: pass one of its .keras files, {workdir}/export/gen_ab.keras "
                f"(A->B) or {workdir}/export/gen_ba.keras (B->A)")):
            load_translator(folder)
    other = tmp_path / "weights.h5"
    other.write_bytes(b"")
    with pytest.raises(ValueError, match="expected a .keras file"):
        load_translator(other)
    cut = tmp_path / "download.keras"
    cut.write_bytes(b"<html>502 Bad Gateway</html>")
    with pytest.raises(ValueError, match="download.keras: not a .keras archive"):
        load_translator(cut)

    class Unregistered(keras.layers.Layer):  # what a user's own code would define
        def call(self, x):
            return x

    custom = tmp_path / "custom.keras"
    keras.Sequential([keras.Input((4, 4, 3)), Unregistered()]).save(custom)
    with pytest.raises(ValueError, match=r"custom.keras: cannot load this .keras file: TypeError: Could not locate class .Unregistered.\. Make sure"):
        load_translator(custom)
    # Keras's reason on the lines after the first is kept (weights that do not fit the config).
    import json
    import zipfile

    dense = tmp_path / "dense.keras"
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save(dense)
    edited = tmp_path / "edited.keras"
    with zipfile.ZipFile(dense) as original, zipfile.ZipFile(edited, "w") as copy:
        for item in original.infolist():
            data = original.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                config["config"]["layers"][-1]["config"]["units"] = 4
                data = json.dumps(config).encode()
            copy.writestr(item, data)
    with pytest.raises(ValueError, match=r"edited.keras: cannot load this .keras file: ValueError: .*could not be "
                                         r"loaded.*must match. variable.shape=\(3, 4\), Received: value.shape=\(3, 2\)"):
        load_translator(edited)


def test_generator_file_and_workdir_load_into_a_translator(tmp_path):
    generator = tiny_generator(seed=3)
    export = tmp_path / "run" / "export"
    export.mkdir(parents=True)
    generator.save(export / "gen_ab.keras")
    tiny_generator(seed=4).save(export / "gen_ba.keras")
    x = images(8, (1, 10, 14, 3))
    direct = Translator(generator, tone="bright")(x).numpy()
    assert np.array_equal(from_workdir(tmp_path / "run", tone="bright")(x).numpy(), direct)
    assert np.array_equal(
        load_translator(export / "gen_ab.keras", tone="bright")(x).numpy(), direct
    )
    assert not np.array_equal(
        from_workdir(tmp_path / "run", "ba", tone="bright")(x).numpy(), direct
    )
    with pytest.raises(ValueError, match="direction"):
        from_workdir(tmp_path / "run", "ac")
    with pytest.raises(FileNotFoundError, match="gen_ab.keras"):
        from_workdir(tmp_path / "elsewhere")


# -- SavedModel and reuse in other TF code ----------------------------------------


def test_saved_model_signatures(translator, saved_model):
    assert {"serving_default", "translate_with_tone", "translate_bytes"} <= set(
        saved_model.signatures
    )
    serve = saved_model.signatures["serving_default"]
    assert serve.structured_input_signature[1]["images"].dtype == tf.uint8
    bytes_fn = saved_model.signatures["translate_bytes"]
    (input_name,) = bytes_fn.structured_input_signature[1]
    (output_name,) = bytes_fn.structured_outputs
    # TF Serving's REST API base64-codes tensors whose names end in _bytes.
    assert input_name.endswith("_bytes") and output_name.endswith("_bytes")
    for shape in [(1, 1, 1, 3), (2, 3, 5, 3), (1, 37, 50, 3)]:
        x = images(9, shape)
        out = serve(images=tf.constant(x))["images"]
        assert out.dtype == tf.uint8 and out.shape == x.shape
        if shape[1:3] != (1, 1):
            # A 1-pixel image pads to a flat one, where instance norm blows
            # rounding noise up to full scale (convert.FLAT_NOTE): graph and
            # eager kernels then differ by up to 13 levels (seen on a fresh CI machine).
            assert_within_one_level(out, translator(x))
    x = images(10, (2, 12, 16, 3))
    tone = np.array([tonal.PRESETS["vivid"].replace(strength=0.4).to_vector()] * 2, np.float32)
    out = saved_model.signatures["translate_with_tone"](
        images=tf.constant(x), tone=tf.constant(tone)
    )
    assert_within_one_level(out["images"], translator(x, tone_params=tone))


def test_onnx_export_runs_in_onnx_runtime_as_the_translator(tmp_path):
    import onnxruntime

    # Context pads far past the image (symmetric padding of a 3-pixel side
    # too): the mirror indices start well below zero.
    model = Translator(tiny_generator(), tone="warm", strength=0.8, context=6)
    path = tmp_path / "translator.onnx"
    assert model.export(path) == str(path)
    assert [p.name for p in tmp_path.iterdir()] == ["translator.onnx"]
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (given,), (answer,) = session.get_inputs(), session.get_outputs()
    assert (given.name, given.type, answer.name, answer.type) == (
        "images", "tensor(uint8)", "translated", "tensor(uint8)")
    for shape in [(1, 37, 50, 3), (2, 3, 5, 3), (1, 16, 16, 3)]:
        x = images(11, shape)
        (out,) = session.run(None, {"images": x})
        assert out.dtype == np.uint8 and out.shape == shape
        assert_within_one_level(out, model(x), max_fraction=0.01)


def test_a_bilinear_resize_conv_generator_converts_images_of_any_size(tmp_path):
    # model.upsample=resize_conv with resize_interpolation=bilinear trained
    # (fixed crop sizes), then failed in every graph of unknown image size:
    # the SavedModel export, infer.py's conversion, ONNX.
    generator = gan_style.build_generator("resnet_6blocks", base_filters=4, upsample="resize_conv",
                                          resize_interpolation="bilinear")
    model = Translator(generator)
    x = images(13, (1, 19, 30, 3))
    serve = tf.function(model, input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    assert_within_one_level(serve(x), model(x))
    model.export(tmp_path / "saved")
    out = tf.saved_model.load(str(tmp_path / "saved")).signatures["serving_default"](images=tf.constant(x))
    assert_within_one_level(out["images"], model(x))


def test_onnx_export_of_the_bundled_model_on_product_photos(tmp_path, shared_data):
    import onnxruntime

    # A product on white: the instance-norm means over a 500x500 map are
    # where ONNX Runtime's one-pass float32 ReduceMean went 3 levels off.
    from gan_style.convert import DEFAULT_MODEL_PATH

    model = load_translator(DEFAULT_MODEL_PATH)
    session = onnxruntime.InferenceSession(str(model.export(tmp_path / "bundled.onnx")),
                                           providers=["CPUExecutionProvider"])
    for name in ("000.379.80.jpg", "001.165.95.jpg"):
        x = image_io.read_image(shared_data / "ikea" / "test" / name).rgb[None]
        (out,) = session.run(None, {"images": x})
        assert_within_one_level(out, model(x), max_fraction=0.05)  # 2.1% one level apart here


def test_onnx_export_of_a_bfloat16_translator_runs_in_float32(tmp_path):
    import onnxruntime

    model = Translator(tiny_generator(), tone="vivid")
    path = model.with_precision("bfloat16").export(tmp_path / "t.ONNX")  # the suffix in any case
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = images(12, (1, 24, 40, 3))
    (out,) = session.run(None, {"images": x})
    assert_within_one_level(out, model(x), max_fraction=0.01)


def test_onnx_export_of_a_generator_in_a_subclassed_model_of_your_own(tmp_path):
    import onnxruntime

    class Wrapped(keras.Model):
        def __init__(self, inner, **kwargs):
            super().__init__(**kwargs)
            self.inner = inner

        def call(self, x):
            return self.inner(x)

    model = Translator(Wrapped(tiny_generator()))
    session = onnxruntime.InferenceSession(model.export(tmp_path / "t.onnx"), providers=["CPUExecutionProvider"])
    x = images(14, (2, 20, 28, 3))
    (out,) = session.run(None, {"images": x})
    assert_within_one_level(out, model(x), max_fraction=0.01)
    # The norms compute as before once the export is done.
    assert {type(layer).__name__ for layer in model.generator.inner.layers} >= {"GroupNormalization"}


def test_onnx_export_that_fails_leaves_the_file_before_it(tmp_path, monkeypatch):
    import sys

    import tf2onnx

    path = tmp_path / "translator.onnx"
    path.write_bytes(b"an earlier export")

    def cut_short(function, input_signature, output_path):
        pathlib.Path(output_path).write_bytes(b"half a model")
        raise RuntimeError("converter stopped")

    monkeypatch.setattr(tf2onnx.convert, "from_function", cut_short)
    model = Translator(tiny_generator())
    with pytest.raises(RuntimeError, match="converter stopped"):
        model.export(path)
    assert [p.name for p in tmp_path.iterdir()] == ["translator.onnx"]
    assert path.read_bytes() == b"an earlier export"
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # not installed
    with pytest.raises(ImportError, match=r"translator.onnx as ONNX needs tf2onnx: pip install 'gan-style\[onnx\]'"):
        model.export(path)


def _encoded(image, fmt, **options):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def test_saved_model_bytes_signature_decodes_as_infer_py(translator, saved_model):
    rgb = images(11, (17, 23, 3))
    alpha = np.zeros((17, 23), np.uint8)
    alpha[4:13, 3:20], alpha[8] = 255, 90
    rgb[alpha == 0] = 0  # black under the transparent part, as cut-outs often are
    cutout = Image.fromarray(np.dstack([rgb, alpha]))
    encoded = {
        "photo.jpg": _encoded(Image.fromarray(images(12, (24, 32, 3))), "JPEG", quality=90),
        "grey.jpg": _encoded(Image.fromarray(images(12, (9, 8, 3))[..., 0]), "JPEG"),
        "cutout.png": _encoded(cutout, "PNG"),
        "opaque.png": _encoded(Image.fromarray(np.dstack([rgb, np.full_like(alpha, 255)])), "PNG"),
        "grey_alpha.png": _encoded(Image.fromarray(np.dstack([rgb[..., 0], alpha]), "LA"), "PNG"),
        "palette.png": _encoded(cutout.quantize(32), "PNG"),
        "cutout.webp": _encoded(cutout, "WEBP", lossless=True),
        "plain.bmp": _encoded(Image.fromarray(rgb), "BMP"),
        # 32 bits a pixel: the fourth byte is padding to PIL, not alpha (TF reads it as alpha).
        "rgbx.bmp": _encoded(cutout, "BMP"),
    }
    out = saved_model.signatures["translate_bytes"](image_bytes=tf.constant(list(encoded.values())))["png_bytes"]
    assert out.shape == (len(encoded),)
    for (name, data), png in zip(encoded.items(), out.numpy()):
        # What infer.py does: decode (PIL, accurate IDCT), composite on white,
        # translate, put the alpha back.
        decoded = image_io.read_image_bytes(data, name=name)
        if decoded.alpha is None:
            expected = translator(decoded.rgb[None])[0].numpy()
        else:
            expected = translator(decoded.rgb[None], alpha=decoded.alpha[None, ..., None])[0].numpy()
            expected = np.dstack([expected, decoded.alpha])
        result = np.asarray(Image.open(io.BytesIO(png)))
        assert result.shape == expected.shape, name
        assert_within_one_level(result, expected)
    # An empty request is an empty answer on every endpoint.
    assert saved_model.signatures["translate_bytes"](image_bytes=tf.constant([], tf.string))["png_bytes"].shape == (0,)
    empty = tf.zeros([0, 8, 8, 3], tf.uint8)
    assert saved_model.signatures["serving_default"](images=empty)["images"].shape == (0, 8, 8, 3)
    tone = tf.zeros([0, 7], tf.float32)
    assert saved_model.signatures["translate_with_tone"](images=empty, tone=tone)["images"].shape == (0, 8, 8, 3)


def _exif(orientation, big_endian=False, prefix=False):
    from PIL import Image as PILImage

    if big_endian:  # PIL writes "II"; cameras also write "MM"
        exif = (b"Exif\0\0MM\0\x2a\0\0\0\x08\0\x01" + b"\x01\x12\0\x03\0\0\0\x01"
                + bytes([0, orientation, 0, 0]) + b"\0\0\0\0")
    else:
        tags = PILImage.Exif()
        tags[0x0112] = orientation
        exif = tags.tobytes()
    return exif if prefix or not exif.startswith(b"Exif\0\0") else exif[6:]


def _encoded_with_orientation(pixels, orientation, format="JPEG", big_endian=False):
    from PIL import Image as PILImage

    buffer = io.BytesIO()
    options = {"quality": 100} if format == "JPEG" else {"lossless": True} if format == "WEBP" else {}
    # JPEG's APP1 starts "Exif\0\0"; PNG's eXIf chunk does not; WebP's may or may not (both tried).
    exif = _exif(orientation, big_endian, prefix=format == "JPEG" or (format == "WEBP" and not big_endian))
    PILImage.fromarray(pixels).save(buffer, format=format, exif=exif, **options)
    return buffer.getvalue()


def _jpeg_with_orientation(pixels, orientation, big_endian=False):
    return _encoded_with_orientation(pixels, orientation, "JPEG", big_endian)


def test_exif_orientation_in_graph_ops_matches_pil():
    from PIL import ImageOps

    from gan_style.translator import apply_orientation, exif_orientation

    pixels = images(13, (24, 40, 3))
    for format in ("JPEG", "PNG", "WEBP"):
        for orientation in range(1, 9):
            for big_endian in (False, True):
                data = _encoded_with_orientation(pixels, orientation, format, big_endian)
                with Image.open(io.BytesIO(data)) as image:
                    assert image.getexif().get(0x0112) == orientation, (format, orientation, big_endian)
                    upright = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
                    stored = np.asarray(image.convert("RGB"))
                assert int(exif_orientation(tf.constant(data))) == orientation, (format, orientation, big_endian)
                assert np.array_equal(apply_orientation(tf.constant(stored), orientation).numpy(), upright)
    # Text that only mentions the marker comes first: the block is found by
    # walking the segments or chunks, as PIL does, not by searching the bytes.
    fake = _exif(3, big_endian=True)  # "Exif\0\0MM..." with orientation 3
    jpeg = _encoded_with_orientation(pixels, 6, "JPEG")
    comment = b"\xff\xfe" + (len(fake) + 2).to_bytes(2, "big") + fake
    png = _encoded_with_orientation(pixels, 6, "PNG")
    text = b"Comment\0see the eXIf chunk: " + fake
    chunk = len(text).to_bytes(4, "big") + b"tEXt" + text + zlib.crc32(b"tEXt" + text).to_bytes(4, "big")
    for data in (jpeg[:2] + comment + jpeg[2:], png[:33] + chunk + png[33:]):
        with Image.open(io.BytesIO(data)) as image:
            assert image.getexif().get(0x0112) == 6
        assert int(exif_orientation(tf.constant(data))) == 6, data[:40]
    no_exif = []
    for format in ("PNG", "JPEG", "WEBP", "BMP", "GIF"):
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format=format)
        no_exif.append(buffer.getvalue())
    cut_short = [_encoded_with_orientation(pixels, 6, f)[:30] for f in ("JPEG", "PNG")]
    for data in (*no_exif, *cut_short, b"", b"\xff\xd8Exif\0\0MM", b"\x89PNG\r\n\x1a\neXIf", b"RIFF\0\0\0\0WEBPEXIF"):
        assert int(exif_orientation(tf.constant(data))) == 1, data[:16]


def test_saved_model_bytes_signature_turns_phone_shots_upright(translator, saved_model):
    # A portrait shot stored sideways (orientation 6): the PNG comes back upright, as infer.py
    # writes it, also when an editor carried the orientation into a PNG or a WebP.
    for format in ("JPEG", "PNG", "WEBP"):
        data = _encoded_with_orientation(images(14, (20, 36, 3)), 6, format)
        out = saved_model.signatures["translate_bytes"](image_bytes=tf.constant([data]))["png_bytes"]
        result = np.asarray(Image.open(io.BytesIO(out.numpy()[0])))
        decoded = image_io.read_image_bytes(data, name=f"portrait.{format.lower()}")
        assert "EXIF orientation 6 applied" in decoded.notes, format
        assert result.shape == decoded.rgb.shape == (36, 20, 3), format
        assert_within_one_level(result, translator(decoded.rgb[None])[0])


def test_reuse_in_tf_data_tf_function_and_keras_model(translator, tmp_path):
    path = translator.export(tmp_path / "t.keras")
    loaded = load_translator(path)
    x = images(13, (4, 24, 20, 3))
    direct = translator(x).numpy()

    dataset = tf.data.Dataset.from_tensor_slices(x).batch(2).map(loaded)
    via_data = np.concatenate([batch.numpy() for batch in dataset])
    assert_within_one_level(via_data, direct)

    via_function = tf.function(lambda a: loaded(a))(tf.constant(x)).numpy()
    assert_within_one_level(via_function, direct)

    inputs = keras.Input((None, None, 3), dtype="uint8")
    outer = keras.Model(inputs, loaded(inputs))
    assert_within_one_level(outer(x).numpy(), direct)
    assert_within_one_level(outer.predict(x, verbose=0), direct)
    assert_within_one_level(loaded.predict(x, batch_size=2, verbose=0), direct)

    # Per-image tone as a second input of a functional model.
    tones = keras.Input((len(tonal.PROFILE_VECTOR_NAMES),))
    toned_model = keras.Model([inputs, tones], loaded(inputs, tone_params=tones))
    vectors = np.array([p.to_vector() for p in tonal.PRESETS.values()][:4], np.float32)
    assert_within_one_level(toned_model([x, vectors]).numpy(), translator(x, tone_params=vectors))


def test_generator_wrapped_in_a_model_of_your_own_keeps_padding_and_precision(tmp_path):
    generator = tiny_generator(seed=6)
    inputs = keras.Input((None, None, 3))
    wrapped = keras.Model(inputs, generator(inputs))  # e.g. built around it for fine-tuning
    wrapped.save(tmp_path / "fine_tuned.keras")
    translator = load_translator(tmp_path / "fine_tuned.keras")
    assert (translator.multiple, translator.minimum) == (4, 8)
    x = images(12, (1, 30, 30, 3))  # not a multiple of 4: padded, not refused
    plain = Translator(generator)
    assert np.array_equal(translator(x).numpy(), plain(x).numpy())
    # bfloat16 reaches the nested layers (it silently stayed float32).
    bf16 = translator.with_precision("bfloat16")
    assert np.array_equal(bf16(x).numpy(), plain.with_precision("bfloat16")(x).numpy())
    assert not np.array_equal(bf16(x).numpy(), plain(x).numpy())


def test_finish_under_xla_and_translator_in_mixed_precision(translator):
    x = images(14, (2, 15, 9, 3))
    direct = translator(x).numpy()
    generated = translator.generate(x)
    vectors = np.array([translator.profile.to_vector()] * 2, np.float32)
    finish_xla = tf.function(lambda a, g, t: translator.finish(a, g, t), jit_compile=True)
    assert_within_one_level(finish_xla(x, generated, vectors), direct)

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        generator = tiny_generator()  # same seed: same weights, float16 maths
        half = Translator(generator, tone="warm", strength=0.8)
        out = half(x)
    finally:
        keras.config.set_dtype_policy(previous)
    assert out.dtype == tf.uint8 and out.shape == x.shape
    # float16 activations: a level here and there (measured ~4% of values).
    diff = level_diff(out, direct)
    assert diff.max() <= 2 and (diff > 0).mean() < 0.2


def test_plain_tf_saved_model_save_serves_uint8_images(tmp_path):
    # A TF developer's first try is tf.saved_model.save, not export(): it
    # must give a callable serving_default, not an empty SavedModel.
    translator = Translator(gan_style.build_generator("resnet_6blocks", base_filters=4, seed=5))
    images = np.random.default_rng(2).integers(0, 256, (2, 20, 28, 3), dtype=np.uint8)
    tf.saved_model.save(translator, str(tmp_path / "saved"))
    served = tf.saved_model.load(str(tmp_path / "saved")).signatures["serving_default"]
    out = served(images=tf.constant(images))["images"]
    assert out.dtype == tf.uint8
    np.testing.assert_array_equal(out.numpy(), translator(images).numpy())
    # An empty batch is an empty answer here too, as from export()'s serving_default.
    assert served(images=tf.zeros([0, 8, 8, 3], tf.uint8))["images"].shape == (0, 8, 8, 3)
