"""Inference precision: resolution of ``auto``, the bfloat16 generator, conversion with it."""

import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from gan_style import convert, precision
from gan_style.networks import build_generator
from gan_style.translator import Translator


@pytest.fixture(scope="module")
def generator():
    return build_generator("resnet_6blocks", base_filters=8, seed=3)


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    intel = tmp_path / "intel"
    intel.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16\n")
    assert {"avx512f", "avx512_bf16"} <= precision.cpu_flags(intel)
    assert "asimd" in precision.cpu_flags(arm)
    assert precision.cpu_flags(tmp_path / "missing") == frozenset()


@pytest.mark.parametrize("flags, native", [
    ({"avx512f", "avx512_bf16"}, True),  # Cooper Lake, Sapphire Rapids...
    ({"amx_bf16", "amx_tile"}, True),
    ({"avx512f", "avx512_vnni"}, False),  # bfloat16 emulated: slower than float32
    (set(), False),  # cpuinfo unreadable
])
def test_native_bfloat16_needs_the_cpus_bf16_instructions(monkeypatch, flags, native):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])  # CPU-only
    try:
        precision.native_bfloat16.cache_clear()  # the machine's answer is cached
        assert precision.native_bfloat16() is native
        # With a GPU, auto keeps float32 whatever the CPU does.
        monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["gpu"] if kind == "GPU" else [])
        precision.native_bfloat16.cache_clear()
        assert precision.native_bfloat16() is False
    finally:
        precision.native_bfloat16.cache_clear()  # not these answers for the tests after


@pytest.mark.parametrize("native, expected", [(True, "bfloat16"), (False, "float32")])
def test_auto_follows_native_support(monkeypatch, native, expected):
    monkeypatch.setattr(precision, "native_bfloat16", lambda: native)
    assert precision.resolve_precision("auto") == expected
    assert precision.resolve_precision("float32") == "float32"
    assert precision.resolve_precision("bfloat16") == "bfloat16"


def test_unknown_precision_names_the_flag():
    with pytest.raises(ValueError, match=r"--precision must be one of auto, float32, bfloat16; got 'fp8'"):
        precision.resolve_precision("fp8")


def test_float32_is_the_same_model(generator):
    assert precision.generator_with_precision(generator, "float32") is generator
    translator = Translator(generator)
    assert translator.with_precision("float32") is translator


def test_bfloat16_generator_is_close_and_leaves_the_original_alone(generator):
    before = [w.copy() for w in generator.get_weights()]
    fast = precision.generator_with_precision(generator, "bfloat16")
    assert fast is not generator
    assert {layer.dtype_policy.name for layer in fast.layers[1:-1]} == {"mixed_bfloat16"}
    assert fast.layers[-1].dtype_policy.name == "float32"
    assert generator.layers[1].dtype_policy.name == "float32"
    for a, b in zip(before, generator.get_weights()):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(generator.get_weights(), fast.get_weights()):
        np.testing.assert_array_equal(a, b)  # float32 weights, copied exactly

    x = np.random.default_rng(0).uniform(-1, 1, (2, 64, 48, 3)).astype(np.float32)
    exact, approx = np.asarray(generator(x)), np.asarray(fast(x))
    assert approx.dtype == np.float32 and approx.shape == exact.shape
    error = np.abs(exact - approx)
    # bfloat16 keeps 8 significant bits: errors of a few 1e-3, not noise.
    assert 0 < error.max() < 0.1
    assert error.mean() < 0.01


def test_a_mixed_policy_generator_comes_back_to_float32_exactly(generator):
    fast = precision.generator_with_precision(generator, "bfloat16")
    exact = precision.generator_with_precision(fast, "float32")
    assert exact is not fast
    assert {layer.dtype_policy.name for layer in exact.layers} == {"float32"}
    x = np.random.default_rng(4).uniform(-1, 1, (1, 40, 40, 3)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(exact(x)), np.asarray(generator(x)))
    assert Translator(fast).with_precision("float32").generator is not fast


def test_bfloat16_translator_keeps_tone_strength_and_sizes(generator):
    translator = Translator(generator, tone="warm", strength=0.7)
    fast = translator.with_precision("bfloat16")
    assert fast.profile == translator.profile and fast.strength == translator.strength
    images = np.random.default_rng(1).integers(0, 256, (1, 37, 53, 3), dtype=np.uint8)
    exact, approx = translator(images).numpy(), fast(images).numpy()
    assert approx.shape == exact.shape and approx.dtype == np.uint8
    assert psnr(exact, approx) > 35


def test_convert_catalog_precision_changes_the_fingerprint(generator, tmp_path):
    rng = np.random.default_rng(2)
    source = tmp_path / "in"
    source.mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)).save(source / f"{i}.png")
    translator = Translator(generator)
    out = tmp_path / "out"
    first = convert.convert_catalog(translator, source, out, precision="float32", progress=False)
    assert first.converted == 3
    exact = {p.name: np.asarray(Image.open(p)) for p in out.glob("*.png")}
    again = convert.convert_catalog(translator, source, out, precision="float32", progress=False)
    assert again.skipped == 3
    # Other arithmetic, other pixels: a rerun in bfloat16 converts again.
    fast = convert.convert_catalog(translator, source, out, precision="bfloat16", progress=False)
    assert fast.converted == 3 and fast.skipped == 0
    differs = []
    for name, image in exact.items():
        approx = np.asarray(Image.open(out / name))
        assert approx.shape == image.shape
        assert psnr(image, approx) > 35
        differs.append(not np.array_equal(image, approx))
    assert any(differs)  # bfloat16 really ran (35 dB alone would pass float32 again)
    with open(out / "manifest.jsonl", encoding="utf-8") as f:
        settings = {json.loads(line)["settings"] for line in f}
    assert len(settings) == 2


def test_bfloat16_tiles_share_statistics_without_seams(generator, tmp_path):
    ramp = np.linspace(0, 255, 160, dtype=np.float64)
    image = np.stack([np.tile(ramp, (96, 1)), np.tile(ramp[::-1], (96, 1)), np.full((96, 160), 128.0)], -1)
    # Tiles of 128 overlapping by 64: float32 gives 72 dB here (tiles of 64 by
    # 32 are too small for this ResNet's receptive field in either precision).
    source = tmp_path / "in"
    source.mkdir()
    Image.fromarray(image.astype(np.uint8)).save(source / "ramp.png")
    translator = Translator(generator)
    whole = convert.convert_catalog(translator, source, tmp_path / "whole", tile=0, precision="bfloat16",
                                    progress=False)
    tiled = convert.convert_catalog(translator, source, tmp_path / "tiled", tile=128, overlap=64,
                                    precision="bfloat16", progress=False)
    assert whole.converted == tiled.converted == 1
    a = np.asarray(Image.open(tmp_path / "whole" / "ramp.png"))
    b = np.asarray(Image.open(tmp_path / "tiled" / "ramp.png"))
    assert psnr(a, b) > 45


def test_bad_precision_fails_before_any_work(generator, tmp_path):
    (tmp_path / "in").mkdir()
    with pytest.raises(ValueError, match="--precision"):
        convert.convert_catalog(Translator(generator), tmp_path / "in", tmp_path / "out", precision="half",
                                progress=False)
    assert not (tmp_path / "out").exists()
