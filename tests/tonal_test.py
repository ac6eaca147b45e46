"""Tests of gan_style.tonal (TonalAdjustment, profiles, presets) and fit_profile."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import gan_style
from gan_style import tonal
from gan_style.personalize import fit_profile

NAMES = tonal.PARAM_NAMES


def reference_tone(x, p):
    """The docstring's formulas, written independently in float64 numpy."""
    x = np.asarray(x, np.float64).copy()
    x[..., 0] *= 2.0 ** (p["temperature"] / 2)
    x[..., 1] *= 2.0 ** (-p["tint"] / 2)
    x[..., 2] *= 2.0 ** (-p["temperature"] / 2)
    x = np.maximum(x, 0.0) ** (1.0 / p["gamma"])
    x = 0.5 + p["contrast"] * (x - 0.5)
    x = x + p["brightness"]
    luma = x @ np.array([0.2126, 0.7152, 0.0722])
    x = luma[..., None] + p["saturation"] * (x - luma[..., None])
    return np.clip(x, 0.0, 1.0)


def random_images(seed=0, shape=(2, 9, 11, 3), low=0.0, high=1.0):
    rng = np.random.default_rng(seed)
    return rng.uniform(low, high, shape).astype(np.float32)


def params_vector(**changes):
    return [{**tonal.NEUTRAL, **changes}[n] for n in NAMES]


# -- the layer ---------------------------------------------------------------


def test_neutral_is_bitwise_identity():
    x = random_images()
    x[0, 0, :3] = [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1e-30, 0.5, 1 - 1e-7]]
    layer = tonal.TonalAdjustment()
    assert np.array_equal(layer(x).numpy(), x)
    neutral = np.array([params_vector()] * 2, np.float32)
    assert np.array_equal(layer(x, neutral).numpy(), x)
    # A neutral row next to a non-neutral one in the same batch stays exact.
    mixed = np.array([params_vector(), params_vector(contrast=1.5)], np.float32)
    out = layer(x, mixed).numpy()
    assert np.array_equal(out[0], x[0])
    assert not np.array_equal(out[1], x[1])


def test_matches_documented_formulas():
    x = random_images(1)
    p = dict(brightness=0.07, contrast=1.3, saturation=0.8, gamma=1.4, temperature=0.25, tint=-0.2)
    got = tonal.TonalAdjustment(**p)(x).numpy()
    np.testing.assert_allclose(got, reference_tone(x, p), atol=2e-6)


@pytest.mark.parametrize("brightness", [-0.2, 0.15])
def test_brightness_shifts_mean_by_b(brightness):
    x = random_images(2, low=0.3, high=0.7)  # no clipping for |b| <= 0.3
    out = tonal.TonalAdjustment(brightness=brightness)(x).numpy()
    np.testing.assert_allclose(out - x, brightness, atol=1e-6)
    assert out.mean() - x.mean() == pytest.approx(brightness, abs=1e-6)


@pytest.mark.parametrize("contrast", [0.0, 0.5, 1.8])
def test_contrast_scales_deviation_from_mid_grey(contrast):
    x = random_images(3, low=0.35, high=0.65)
    out = tonal.TonalAdjustment(contrast=contrast)(x).numpy()
    np.testing.assert_allclose(out - 0.5, contrast * (x - 0.5), atol=1e-6)
    assert out.std() == pytest.approx(contrast * x.std(), rel=1e-4, abs=1e-6)
    # The pivot is fixed: a uniformly bright image is not re-centred on its mean.
    bright = np.full((1, 2, 2, 3), 0.6, np.float32)
    assert tonal.TonalAdjustment(contrast=contrast)(bright).numpy() == pytest.approx(
        0.5 + contrast * 0.1, abs=1e-6
    )


@pytest.mark.parametrize("saturation", [0.0, 0.5, 1.5])
def test_saturation_scales_chroma_and_keeps_luma(saturation):
    x = random_images(4, low=0.3, high=0.7)
    out = tonal.TonalAdjustment(saturation=saturation)(x).numpy()
    w = np.array(tonal.LUMA_WEIGHTS)
    luma_in, luma_out = x @ w, out @ w
    np.testing.assert_allclose(luma_out, luma_in, atol=2e-6)
    np.testing.assert_allclose(
        out - luma_out[..., None], saturation * (x - luma_in[..., None]), atol=2e-6
    )
    if saturation == 0.0:  # greyscale
        np.testing.assert_allclose(out, np.repeat(out[..., :1], 3, axis=-1), atol=1e-6)


@pytest.mark.parametrize("gamma", [0.5, 2.0, 4.0])
def test_gamma_is_power_one_over_gamma(gamma):
    x = np.array([[[[0.0, 0.25, 1.0], [0.04, 0.5, 0.81]]]], np.float32)
    out = tonal.TonalAdjustment(gamma=gamma)(x).numpy()
    np.testing.assert_allclose(out, x.astype(np.float64) ** (1 / gamma), rtol=1e-6, atol=1e-7)
    mid = x[0, 0, 0, 1]
    # G > 1 lifts mid-tones, G < 1 darkens them; 0 and 1 stay.
    assert (out[0, 0, 0, 1] > mid) == (gamma > 1)
    assert out[0, 0, 0, 0] == 0.0 and out[0, 0, 0, 2] == 1.0


@pytest.mark.parametrize("temperature, tint", [(0.5, 0.0), (-0.8, 0.0), (0.0, 0.6), (0.3, -0.4)])
def test_colour_balance_gains(temperature, tint):
    x = np.full((1, 3, 3, 3), 0.4, np.float32)
    out = tonal.TonalAdjustment(temperature=temperature, tint=tint)(x).numpy()
    expected = 0.4 * np.array([2 ** (temperature / 2), 2 ** (-tint / 2), 2 ** (-temperature / 2)])
    np.testing.assert_allclose(out[0, 0, 0], expected, rtol=1e-6)
    # Warm: red above blue; positive tint: less green.
    if temperature:
        assert (out[..., 0].mean() > out[..., 2].mean()) == (temperature > 0)
    if tint:
        assert (out[..., 1].mean() < 0.4) == (tint > 0)


def test_integer_images_are_refused_not_read_as_white():
    layer = tonal.TonalAdjustment()
    with pytest.raises(TypeError, match="float images in \\[0, 1\\], got uint8 .*divide uint8 images by 255"):
        layer(np.array([[[[10, 128, 200]]]], np.uint8))
    np.testing.assert_allclose(layer(np.array([[[[10, 128, 200]]]], np.float32) / 255), [[[[10 / 255, 128 / 255, 200 / 255]]]])


def test_output_clipped_to_unit_range():
    x = random_images(5)
    out = tonal.TonalAdjustment(brightness=0.8, contrast=3.0, saturation=3.0)(x).numpy()
    assert out.min() == 0.0 and out.max() == 1.0


def test_pointwise_so_tiles_are_exact():
    x = random_images(6, shape=(1, 16, 20, 3))
    layer = tonal.TonalAdjustment(**{**tonal.PRESETS["vivid"].tonal_params(), "gamma": 1.3})
    whole = layer(x).numpy()
    tiles = [layer(x[:, r : r + 8, c : c + 10]).numpy() for r in (0, 8) for c in (0, 10)]
    stitched = np.concatenate(
        [np.concatenate(tiles[:2], axis=2), np.concatenate(tiles[2:], axis=2)], axis=1
    )
    assert np.array_equal(stitched, whole)
    # Changing one pixel changes no other pixel (no image statistics involved).
    y = x.copy()
    y[0, 3, 4] = [0.9, 0.1, 0.2]
    diff = np.any(layer(y).numpy() != whole, axis=-1)[0]
    assert diff.sum() == 1 and diff[3, 4]


def test_per_image_params_match_separate_layers():
    x = random_images(7)
    warm, muted = tonal.PRESETS["warm"], tonal.PRESETS["muted"]
    params = np.array([warm.to_vector(False), muted.to_vector(False)], np.float32)
    out = tonal.TonalAdjustment()(x, params).numpy()
    for i, profile in enumerate((warm, muted)):
        alone = tonal.TonalAdjustment(**profile.tonal_params())(x[i : i + 1]).numpy()
        np.testing.assert_allclose(out[i : i + 1], alone, atol=1e-7)


def test_per_image_params_clipped_to_ranges():
    x = random_images(8)
    wild = np.array([params_vector(gamma=100.0, brightness=-5.0)] * 2, np.float32)
    edge = np.array([params_vector(gamma=4.0, brightness=-1.0)] * 2, np.float32)
    layer = tonal.TonalAdjustment()
    np.testing.assert_array_equal(layer(x, wild).numpy(), layer(x, edge).numpy())
    # NaN would pass min/max untouched and blacken the image: it counts as neutral.
    unknown = np.array([params_vector(gamma=np.nan, contrast=1.2)] * 2, np.float32)
    np.testing.assert_array_equal(layer(x, unknown).numpy(), layer(x, np.array([params_vector(contrast=1.2)] * 2, np.float32)).numpy())
    with pytest.raises(ValueError, match="batch, 6"):
        layer(x, np.zeros((2, 5), np.float32))


def test_gradients_reach_every_parameter():
    x = tf.constant(random_images(9, low=0.1, high=0.9))
    layer = tonal.TonalAdjustment()
    # At neutral (where the exact identity is selected) and away from it.
    for point in (
        params_vector(),
        params_vector(
            brightness=0.05, contrast=1.2, saturation=1.3, gamma=0.8, temperature=0.2, tint=-0.1
        ),
    ):
        p = tf.Variable([point, point], dtype=tf.float32)
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            out = layer(x, p)
            loss = tf.reduce_sum(out * tf.constant([0.3, 1.0, 2.0]))
        grad_p, grad_x = tape.gradient(loss, [p, x])
        assert np.all(np.abs(grad_p.numpy()) > 1e-3), grad_p.numpy()
        assert np.all(np.isfinite(grad_x.numpy())) and np.abs(grad_x.numpy()).sum() > 0
        # Finite differences agree with the analytic gradient.
        for i in range(len(NAMES)):
            h = 1e-3
            up, down = np.array(point), np.array(point)
            up[i] += h
            down[i] -= h

            def f(v, other=point):
                out = layer(x, np.array([v, other], np.float32))
                return float(tf.reduce_sum(out * tf.constant([0.3, 1.0, 2.0])))

            numeric = (f(up) - f(down)) / (2 * h)
            assert grad_p.numpy()[0, i] == pytest.approx(numeric, rel=0.03, abs=0.05), NAMES[i]
    # The constructor parameters are a weight that gets gradients too.
    layer = tonal.TonalAdjustment(contrast=1.1)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x))
    grad = tape.gradient(loss, layer.params).numpy()
    assert np.all(grad != 0), grad


def test_gamma_gradient_finite_at_black():
    x = tf.constant(np.zeros((1, 2, 2, 3), np.float32))
    p = tf.Variable([params_vector(gamma=2.0)])
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(tonal.TonalAdjustment()(x, p))
    grads = tape.gradient(loss, [p, x])
    assert all(np.all(np.isfinite(g.numpy())) for g in grads)


def test_xla_and_tf_function_match_eager():
    x = random_images(10)
    p = np.array([params_vector(gamma=1.3, contrast=1.2), params_vector()], np.float32)
    layer = tonal.TonalAdjustment(**tonal.PRESETS["warm"].tonal_params())
    eager = layer(x, p).numpy()
    xla = tf.function(lambda a, b: layer(a, b), jit_compile=True)(x, p).numpy()
    graph = tf.function(lambda a: layer(a))(x).numpy()
    np.testing.assert_allclose(xla, eager, atol=2e-6)
    assert np.array_equal(xla[1], x[1])  # neutral stays exact under XLA
    np.testing.assert_allclose(graph, layer(x).numpy(), atol=1e-6)


def test_mixed_precision():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        layer = tonal.TonalAdjustment(saturation=1.4, gamma=1.2)
        neutral = tonal.TonalAdjustment()
        x = random_images(11).astype(np.float16)
        out = layer(x)
        assert out.dtype == tf.float16 and layer.params.dtype == "float32"
        np.testing.assert_allclose(
            out.numpy().astype(np.float32),
            tonal.TonalAdjustment(saturation=1.4, gamma=1.2, dtype="float32")(x.astype(np.float32)),
            atol=2e-3,
        )
        assert np.array_equal(neutral(x).numpy(), x)
        xla = tf.function(lambda a: layer(a), jit_compile=True)(x)
        assert xla.dtype == tf.float16
    finally:
        keras.config.set_dtype_policy(previous)


def test_layer_serialisation_round_trip(tmp_path):
    layer = tonal.TonalAdjustment(**tonal.PRESETS["vivid"].tonal_params(), name="tone")
    config = layer.get_config()
    assert {n: config[n] for n in NAMES} == tonal.PRESETS["vivid"].tonal_params()
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, layer(inputs))
    layer.set_params({"brightness": 0.1})  # after build: goes into the weight
    path = tmp_path / "tone.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    x = random_images(12)
    assert np.array_equal(loaded(x).numpy(), model(x).numpy())
    assert loaded.get_layer("tone").get_params()["brightness"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="'gamma'"):
        tonal.TonalAdjustment(gamma=0.0)
    with pytest.raises(ValueError, match="unknown tonal parameter 'hue'"):
        layer.set_params({"hue": 0.1})


def test_trained_or_assigned_out_of_range_params_save_and_load(tmp_path):
    # Fitting a strong contrast pushes the weight past RANGES; the constraint
    # keeps it in range, so the trained model saves and loads.
    rng = np.random.default_rng(0)
    x = rng.uniform(0.3, 0.7, (8, 16, 16, 3)).astype("float32")
    y = np.clip(0.5 + 5 * (x - 0.5), 0, 1)
    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, tonal.TonalAdjustment(name="tone")(inputs))
    model.compile(keras.optimizers.Adam(0.05), "mse")
    model.fit(x, y, epochs=100, verbose=0)
    contrast = model.get_layer("tone").get_params()["contrast"]
    assert contrast == tonal.RANGES["contrast"][1]
    model.save(tmp_path / "fit.keras")
    loaded = keras.saving.load_model(tmp_path / "fit.keras")
    assert np.array_equal(loaded(x).numpy(), model(x).numpy())

    # assign() skips constraints: the config holds what call() applies.
    layer = model.get_layer("tone")
    layer.params.assign([np.nan, 3.2, 1.0, 1.0, 0.3, -9.0])
    assert layer.get_params() == {**tonal.NEUTRAL, "contrast": 3.0, "temperature": 0.3,
                                  "tint": tonal.RANGES["tint"][0]}
    model.save(tmp_path / "assigned.keras")
    loaded = keras.saving.load_model(tmp_path / "assigned.keras")
    assert np.array_equal(loaded(x).numpy(), model(x).numpy())


# -- profiles and presets ----------------------------------------------------


def test_presets_are_valid_and_distinct():
    required = {"neutral", "warm", "cool", "vivid", "muted", "bright", "high_contrast"}
    assert required <= set(tonal.PRESETS)
    x = random_images(13, low=0.2, high=0.8)
    outputs = {}
    for name, profile in tonal.PRESETS.items():
        assert isinstance(profile, gan_style.Profile) and profile.name == name
        outputs[name] = tonal.TonalAdjustment(**profile.tonal_params())(x).numpy()
    assert np.array_equal(outputs["neutral"], x)
    r, b = 0, 2
    assert outputs["warm"][..., r].mean() > x[..., r].mean() > outputs["cool"][..., r].mean()
    assert outputs["cool"][..., b].mean() > x[..., b].mean()

    def chroma(y):
        return np.abs(y - y.mean(-1, keepdims=True)).mean()

    assert chroma(outputs["vivid"]) > chroma(x) > chroma(outputs["muted"])
    assert outputs["bright"].mean() > x.mean()
    assert outputs["high_contrast"].std() > x.std()


def test_profile_json_round_trip(tmp_path):
    profile = gan_style.Profile(name="brand", brightness=0.05, saturation=1.2, strength=0.7)
    path = tmp_path / "brand.json"
    profile.save(path)
    assert json.loads(path.read_text())["strength"] == 0.7
    assert gan_style.load_profile(path) == profile
    assert tonal.resolve_tone(str(path)) == profile
    assert tonal.resolve_tone(path) == profile
    assert tonal.resolve_tone("warm") is tonal.PRESETS["warm"]
    assert tonal.resolve_tone(None) == tonal.PRESETS["neutral"]
    assert tonal.resolve_tone({"contrast": 1.2}).contrast == 1.2
    assert tonal.resolve_tone(profile) is profile
    assert profile.to_vector() == [0.05, 1.0, 1.2, 1.0, 0.0, 0.0, 0.7]
    assert json.loads(profile.to_json()) == profile.to_dict()


@pytest.mark.parametrize(
    "content, match",
    [
        ({"brightnes": 0.1}, "unknown key 'brightnes'"),
        ({"gamma": 0.1}, r"'gamma' = 0.1 is out of range \[0.25, 4.0\]"),
        ({"strength": 1.5}, r"'strength' = 1.5 is out of range"),
        ({"saturation": -0.1}, "'saturation'"),
        ({"contrast": "high"}, "'contrast' must be a number"),
        ({"tint": True}, "'tint' must be a number"),
        ({"brightness": float("nan")}, "'brightness'"),
        ({"name": 3}, "'name' must be a string"),
        ([0.1, 0.2], "must be a JSON object"),
        ({"brightness": 10**400}, r"'brightness' = inf is out of range"),  # no OverflowError
    ],
)
def test_profile_validation_names_key_and_file(tmp_path, content, match):
    path = tmp_path / "bad_profile.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=match) as error:
        gan_style.load_profile(path)
    assert "bad_profile.json" in str(error.value)
    with pytest.raises(ValueError, match="bad_profile.json"):
        tonal.resolve_tone(str(path))


def test_profile_bad_files(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="broken.json: not valid JSON"):
        gan_style.load_profile(broken)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        gan_style.load_profile(tmp_path / "missing.json")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        tonal.resolve_tone(str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="unknown tone 'sepia'.*warm"):
        tonal.resolve_tone("sepia")
    with pytest.raises(ValueError, match="'contrast'"):
        gan_style.Profile(contrast=4.0)
    with pytest.raises(ValueError, match="is a folder"):
        tonal.resolve_tone(str(tmp_path))
    bom = tmp_path / "windows.json"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps({"contrast": 1.2}).encode())
    assert gan_style.load_profile(bom).contrast == 1.2
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)  # a RecursionError inside json
    with pytest.raises(ValueError, match="deep.json: not valid JSON: nested too deeply"):
        gan_style.load_profile(deep)


def test_profile_save_leaves_nothing_behind_when_it_fails(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(OSError, match="cannot save the tone profile to .*taken"):
        tonal.PRESETS["warm"].save(tmp_path / "taken")
    with pytest.raises(OSError, match="cannot save the tone profile to .*no_such_folder"):
        tonal.PRESETS["warm"].save(tmp_path / "no_such_folder" / "p.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # no temporary file left
    tonal.PRESETS["warm"].save(tmp_path / "warm.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken", "warm.json"]
    assert gan_style.load_profile(tmp_path / "warm.json") == tonal.PRESETS["warm"]


# -- fit_profile ---------------------------------------------------------------

TRUE_PARAMS = dict(
    brightness=0.05, contrast=1.2, saturation=1.3, gamma=0.85, temperature=0.3, tint=-0.15
)


def apply_uint8(images, params):
    out = tonal.TonalAdjustment(**params)(images.astype(np.float32) / 255.0).numpy()
    return np.round(out * 255.0).astype(np.uint8)


def iid_images(seed, n=6, size=48, neutral_cast=False):
    """Pixels drawn independently from one fixed colour distribution."""
    rng = np.random.default_rng(seed)
    grey = rng.beta(2.0, 2.5, (n, size, size, 1)) * 0.8 + 0.05
    colour = rng.normal(0.0, 0.08, (n, size, size, 3))
    if neutral_cast:
        colour -= colour.mean(axis=(0, 1, 2))
    return np.round(np.clip(grey + colour, 0, 1) * 255).astype(np.uint8)


def assert_params_close(profile, expected, tolerance):
    errors = {name: abs(getattr(profile, name) - value) for name, value in expected.items()}
    assert max(errors.values()) < tolerance, (profile, errors)


def test_fit_profile_recovers_parameters_from_same_sources(shared_data):
    from PIL import Image

    files = sorted((shared_data / "horse2zebra" / "testA").glob("*.jpg"))[:6]
    sources = np.stack([np.asarray(Image.open(f).convert("RGB").resize((48, 48))) for f in files])
    references = apply_uint8(sources, TRUE_PARAMS)
    profile = fit_profile(references, sources)
    # Measured error <= 0.001 (only the uint8 rounding of the references).
    assert_params_close(profile, TRUE_PARAMS, 0.01)
    assert profile.strength == 1.0


def test_fit_profile_recovers_parameters_from_other_images():
    # References and sources are different draws from one distribution: the
    # statistics agree up to sampling noise, so the tone comes back.
    references = apply_uint8(iid_images(1), TRUE_PARAMS)
    profile = fit_profile(references, iid_images(2))
    assert_params_close(profile, TRUE_PARAMS, 0.03)  # measured <= 0.01


def test_fit_profile_on_real_product_photos_of_other_content(shared_data):
    # 40 IKEA photos toned as references, 40 others as sources: the sets differ
    # in content (white-background shots, room scenes) by more than the tone.
    # Judged by eye: mean CIELAB dE between the fitted and the true tone on 10
    # held-out photos. Measured 1.96 / 1.88 / 1.80 (moment statistics without
    # the adaptive pull to neutral: 6.39 / 5.66 / 6.96; doing nothing: 4.46 / 0 / 13.46).
    from PIL import Image

    from gan_style import image_io
    from gan_style.personalize import srgb_to_lab

    def small(path):
        image = Image.fromarray(image_io.load_rgb(path))
        image.thumbnail((128, 128))
        return np.asarray(image)

    photos = [small(p) for p in sorted((shared_data / "ikea" / "train").iterdir())[:90]]

    def toned(params, images):
        layer = tonal.TonalAdjustment(**params)
        return [np.round(layer(im[None] / 255.0).numpy()[0] * 255).astype(np.uint8) for im in images]

    def lab(images):
        return srgb_to_lab(np.concatenate([im.reshape(-1, 3) for im in images]) / 255.0).numpy()

    held_out = photos[80:]
    for true in (dict(brightness=0.05, contrast=1.1, saturation=1.2, temperature=0.2), {},
                 tonal.PRESETS["warm"].tonal_params()):
        fitted = fit_profile(toned(true, photos[:40]), photos[40:80]).tonal_params()
        error = np.linalg.norm(lab(toned(fitted, held_out)) - lab(toned(true, held_out)), axis=-1).mean()
        assert error < 3.0, (true, fitted, error)


def test_fit_profile_without_sources_finds_the_colour_cast(tmp_path):
    cast = dict(temperature=0.4, tint=0.2)
    references = apply_uint8(iid_images(3, neutral_cast=True), cast)
    profile = fit_profile(references)
    assert_params_close(profile, {**cast, "saturation": 1.0, "contrast": 1.0}, 0.06)
    # Image files as input give the same result as the arrays.
    from PIL import Image

    paths = []
    for i, image in enumerate(references):
        paths.append(tmp_path / f"ref{i}.png")
        Image.fromarray(image).save(paths[-1])
    assert fit_profile(paths) == profile


def test_fit_profile_bad_input(tmp_path):
    with pytest.raises(ValueError, match=r"reference_images\[0\]: expected an RGB image"):
        fit_profile([np.zeros((4, 4), np.uint8)])
    with pytest.raises(ValueError, match="reference_images: no images"):
        fit_profile([])
    with pytest.raises(ValueError, match=r"source_images\[1\]: an empty image, shape \(0, 5, 3\)"):
        fit_profile(random_images(), [np.zeros((4, 4, 3)), np.zeros((0, 5, 3))])
    bad = tmp_path / "not_an_image.jpg"
    bad.write_text("hello")
    with pytest.raises(ValueError, match="not_an_image.jpg"):
        fit_profile([bad])
    nan = np.full((8, 8, 3), 0.5, np.float32)
    nan[2, 3, 1] = np.nan  # passed every range check and moved the fitted values
    with pytest.raises(ValueError, match=r"reference_images\[0\]: float images must be in \[0, 1\] \(no NaN\)"):
        fit_profile([nan])
    for bad_count in (0, -5, 2.5):
        with pytest.raises(ValueError, match="max_pixels must be an integer >= 1"):
            fit_profile(random_images(), max_pixels=bad_count)


def test_fit_profile_reads_files_as_the_converter_does(tmp_path):
    # 16-bit scaled rather than clipped to white; a cut-out's transparent
    # background left out (it fitted as white, brightening the tone): a path
    # gives the same profile as the visible pixels the studio and infer.py see.
    from PIL import Image

    from gan_style import image_io

    sources = iid_images(3, n=2)
    grey16 = (np.linspace(0, 65535, 48 * 48).reshape(48, 48)).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "grey16.png")
    cutout = np.concatenate([iid_images(4, n=1)[0], np.zeros((48, 48, 1), np.uint8)], axis=-1)
    cutout[:24, :, 3] = 255  # the bottom half transparent over black
    Image.fromarray(cutout).save(tmp_path / "cutout.png")
    for name, visible in (("grey16.png", 48 * 48), ("cutout.png", 24 * 48)):
        decoded = image_io.read_image(tmp_path / name)
        pixels = decoded.rgb if decoded.alpha is None else decoded.rgb[decoded.alpha >= 128]
        assert pixels.size == visible * 3
        from_path = fit_profile([tmp_path / name], sources)
        from_pixels = fit_profile([pixels.reshape(1, -1, 3)], sources)
        assert from_path.to_vector() == from_pixels.to_vector(), name
    on_white = image_io.composite(decoded.rgb, decoded.alpha, (255, 255, 255))
    assert fit_profile([on_white], sources).brightness > from_path.brightness + 0.05
    cutout[..., 3] = 0
    Image.fromarray(cutout).save(tmp_path / "invisible.png")
    with pytest.raises(ValueError, match="invisible.png' has no pixel at least half opaque"):
        fit_profile([tmp_path / "invisible.png"], sources)


def to_adobe_rgb(rgb, icc):
    """``rgb`` (sRGB) converted to Adobe RGB: other values, the same colours."""
    import io

    from PIL import Image, ImageCms

    adobe = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    return np.asarray(ImageCms.profileToProfile(Image.fromarray(rgb), ImageCms.createProfile("sRGB"), adobe))


def test_fit_profile_reads_colours_through_the_icc_profile(shared_data, adobe_rgb_icc, tmp_path):
    # Brand shots in Adobe RGB that show what the sRGB sources show: the fit
    # compares colours, not values, and finds no tone to add.
    from PIL import Image

    sources = [np.asarray(Image.open(p).convert("RGB").resize((128, 128)))
               for p in sorted((shared_data / "ikea" / "test").glob("*.jpg"))[:4]]
    references = []
    for i, rgb in enumerate(sources):
        references.append(tmp_path / f"brand{i}.png")
        Image.fromarray(to_adobe_rgb(rgb, adobe_rgb_icc)).save(references[-1], icc_profile=adobe_rgb_icc)
    fitted = fit_profile(references, sources)
    assert_params_close(fitted, tonal.NEUTRAL, 0.03)


def test_fit_profile_holds_one_decoded_image_at_a_time(tmp_path):
    # Each file is sampled as soon as it is read (20 camera files of 12 MP
    # read first, as float32, took 3.5 GB).
    import tracemalloc

    from PIL import Image

    side = 1000
    paths = []
    for i in range(6):
        paths.append(tmp_path / f"shot{i}.png")
        Image.new("RGB", (side, side), (40 * i, 90, 200)).save(paths[-1], compress_level=1)
    tracemalloc.start()
    try:
        fit_profile(paths, max_iterations=1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    one_image = side * side * 3  # bytes of one decoded uint8 image
    assert peak < 4 * one_image, f"peak {peak / 2**20:.0f} MB for six {side}x{side} files"
