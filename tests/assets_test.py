"""The shipped assets and the scripts that make them.

assets/samples (sizes, modes, licences documented, deterministic generator),
scripts/export_default_model.py (a fake workdir with a tiny generator ->
a loadable neutral Translator, atomically), scripts/model_card.py (run facts
from a workdir; scores through gan_style.evaluate), scripts/make_gallery.py
(a PNG of the documented pixel size), and the README quick start
(``infer.py`` with no --model) end to end on a tiny default model.
"""

import importlib.util
import json
import os
import pathlib
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from gan_style import convert, image_io, tonal
from gan_style.networks import build_generator
from gan_style.translator import Translator, load_translator

ROOT = pathlib.Path(__file__).resolve().parents[1]
SAMPLES_DIR = ROOT / "assets" / "samples"


def _load_script(name):
    path = ROOT / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_script_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


make_samples = _load_script("make_samples")
model_card = _load_script("model_card")
export_default_model = _load_script("export_default_model")
make_gallery = _load_script("make_gallery")


# ---------------------------------------------------------------------------
# Samples.


def test_samples_exist_with_the_documented_sizes_and_modes():
    readme = (SAMPLES_DIR / "README.md").read_text()
    shipped = {p.name for p in SAMPLES_DIR.iterdir()} - {"README.md"}
    assert shipped == set(make_samples.SAMPLES)  # nothing unlisted ships
    total = 0
    for name, (_, (width, height), mode, _) in make_samples.SAMPLES.items():
        path = SAMPLES_DIR / name
        with Image.open(path) as image:
            assert (image.size, image.mode) == ((width, height), mode), name
        # The README table documents each file with its size and mode.
        row = next(
            line for line in readme.splitlines() if line.startswith(f"| `{name}`")
        )
        assert f"{width}×{height}" in row and mode in row, row
        total += path.stat().st_size
    assert total < 2 * 2**20
    modes = {spec[2] for spec in make_samples.SAMPLES.values()}
    assert {"RGB", "RGBA", "L"} <= modes
    assert any(
        w != h and w % 4 and h % 4 for _, (w, h), _, _ in make_samples.SAMPLES.values()
    )
    assert "CC0" in readme and "coffee" in readme


def test_the_transparent_sample_has_real_transparency():
    alpha = np.asarray(Image.open(SAMPLES_DIR / "lamp_cutout.png"))[..., 3]
    assert alpha.min() == 0 and alpha.max() == 255
    assert 0.05 < (alpha == 255).mean() < 0.6  # an object, not an empty or full canvas
    assert ((alpha > 0) & (alpha < 255)).any()  # anti-aliased edge


def test_make_samples_is_deterministic_and_reproduces_the_shipped_files(tmp_path):
    first = make_samples.make_samples(tmp_path / "a")
    second = make_samples.make_samples(tmp_path / "b")
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes(), a.name
    for path in first:
        made = np.asarray(Image.open(path), np.int16)
        shipped = np.asarray(Image.open(SAMPLES_DIR / path.name), np.int16)
        assert made.shape == shipped.shape
        # Same pixels; a different numpy/libjpeg build may round a rare pixel
        # (or a JPEG block) one level differently, which is not a different image.
        difference = np.abs(made - shipped)
        assert difference.max() <= 2 and difference.mean() < 0.05, path.name


def test_make_samples_without_scikit_image_says_so_and_makes_no_folder(tmp_path, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "skimage" else real(name, *args))
    with pytest.raises(SystemExit) as exit_info:
        make_samples.main([f"--output={tmp_path / 'out'}"])
    assert exit_info.value.code == 2
    assert "pip install scikit-image" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------
# A fake training workdir with a tiny generator.


def _write_events(path: pathlib.Path, wall_times, rates, first_step):
    """An event file like training's: file_version, then train/* scalars."""
    from tensorflow.core.util import event_pb2

    with tf.io.TFRecordWriter(str(path)) as writer:
        event = event_pb2.Event(wall_time=wall_times[0], file_version="brain.Event:2")
        writer.write(event.SerializeToString())
        for i, (wall, rate) in enumerate(zip(wall_times[1:], rates)):
            event = event_pb2.Event(wall_time=wall, step=first_step + 10 * i)
            value = event.summary.value.add(tag="train/images_per_second")
            value.tensor.CopyFrom(tf.make_tensor_proto(np.float32(rate)))
            writer.write(event.SerializeToString())


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    for domain, count in (("a", 6), ("b", 4)):
        folder = root / "data" / domain
        folder.mkdir(parents=True)
        for i in range(count):
            Image.new("RGB", (16, 16), (i * 40, 100, 50)).save(folder / f"{i}.png")
    config = {
        "data": {
            "train_a": str(root / "data" / "a"),
            "train_b": str(root / "data" / "b"),
            "load_size": 36,
            "crop_size": 32,
            "preprocess": "resize_and_crop",
            "flip": True,
        },
        "model": {
            "generator": "resnet_6blocks",
            "generator_filters": 4,
            "norm": "instance",
            "upsample": "resize_conv",
            "discriminator": "basic",
            "discriminator_layers": 3,
            "discriminator_filters": 4,
            "adversarial_loss": "lsgan",
            "lambda_cycle_a": 10.0,
            "lambda_cycle_b": 10.0,
            "lambda_identity": 0.5,
            "pool_size": 50,
        },
        "optim": {"learning_rate": 0.0002, "beta_1": 0.5},
        "train": {
            "batch_size": 2,
            "epochs": 1,
            "epochs_decay": 1,
            "precision": "float32",
            "max_steps": 0,
        },
    }
    (root / "config.json").write_text(json.dumps(config))
    (root / "checkpoints").mkdir()
    (root / "checkpoints" / "checkpoint").write_text(
        'model_checkpoint_path: "ckpt-9"\nall_model_checkpoint_paths: "ckpt-6"\n'
        'all_model_checkpoint_paths: "ckpt-9"\n'
    )
    (root / "export" / "best").mkdir(parents=True)
    generator = build_generator(
        "resnet_6blocks", base_filters=4, upsample="resize_conv", seed=7
    )
    generator.save(root / "export" / "gen_ab.keras")
    best = build_generator(
        "resnet_6blocks", base_filters=4, upsample="resize_conv", seed=8
    )
    best.save(root / "export" / "best" / "gen_ab.keras")
    (root / "export" / "best" / "scores.json").write_text(
        json.dumps({"fid_ab": 100.0, "step": 6})
    )
    (root / "tensorboard").mkdir()
    # Two sessions (a start and a resume): 100 s and 30 s; the hour between them is not training.
    _write_events(
        root / "tensorboard" / "events.out.tfevents.1.x",
        [1000.0, 1050.0, 1100.0],
        [2.0, 4.0],
        10,
    )
    _write_events(
        root / "tensorboard" / "events.out.tfevents.2.x", [4700.0, 4730.0], [6.0], 30
    )
    return root


def test_read_run_takes_steps_wall_time_and_config_from_the_workdir(workdir):
    run = model_card.read_run(workdir)
    assert run["step"] == 9  # ckpt-9 in the state file
    assert run["sessions"] == 2
    assert run["wall_seconds"] == pytest.approx(130.0)
    assert run["images_per_second"] == pytest.approx(4.0)  # mean of 2, 4, 6
    assert run["last_logged_step"] == 30
    assert run["train_sizes"] == {"train_a": 6, "train_b": 4}
    assert run["steps_per_epoch"] == 3 and run["epochs_done"] == pytest.approx(3.0)
    assert run["config"]["model"]["generator_filters"] == 4
    best = model_card.read_run(workdir, "best")
    assert best["step"] == 6 and best["generator_path"].endswith("best/gen_ab.keras")
    card = model_card.markdown(run, None, {"parameters": 1234, "file_bytes": 1_500_000})
    assert "Steps: 9 (3.00 epochs of 3 steps)" in card
    assert "0 h 02 min (130 s) over 2 session(s)" in card
    assert "1,234 parameters, 1.5 MB" in card
    assert "`resnet_6blocks`, 4 filters" in card and "Not yet measured" in card


def test_read_run_finds_the_training_folders_under_data_root(tmp_path, workdir):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(workdir, copy)
    for domain, split in (("a", "trainA"), ("b", "trainB")):
        shutil.copytree(workdir / "data" / domain, tmp_path / "set" / split)
    config = json.loads((copy / "config.json").read_text())
    config["data"].update(root=str(tmp_path / "set"), train_a="", train_b="")
    config["model"].update(discriminator="pixel")
    (copy / "config.json").write_text(json.dumps(config))
    run = model_card.read_run(copy)
    assert run["train_sizes"] == {"train_a": 6, "train_b": 4}
    card = model_card.markdown(run, None)
    assert f"A = `{tmp_path / 'set' / 'trainA'}` (6 images)" in card
    assert "discriminator `pixel` (4 filters)" in card  # no layers: the pixel one has none to set


def test_workdir_errors_name_the_problem(tmp_path, workdir):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        model_card.generator_path(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="saved a checkpoint"):
        model_card.generator_path(tmp_path)
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "gen_ab.keras").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="--checkpoint=latest"):
        model_card.generator_path(tmp_path, "best")
    with pytest.raises(ValueError, match="--checkpoint"):
        model_card.generator_path(workdir, "newest")


def test_export_default_model_writes_a_loadable_neutral_translator(workdir, tmp_path):
    output = tmp_path / "assets" / "default_translator.keras"
    summary = export_default_model.export_default_model(workdir, output=output)
    assert summary["step"] == 9 and summary["file_bytes"] == output.stat().st_size
    assert list(output.parent.iterdir()) == [output]  # no temporary left behind
    loaded = load_translator(output)
    assert isinstance(loaded, Translator)
    assert loaded.profile.tonal_params() == tonal.PRESETS["neutral"].tonal_params()
    assert loaded.strength == 1.0
    assert summary["parameters"] == loaded.generator.count_params()
    # Same pixels as the workdir's generator wrapped by hand, on a sample at its own odd size.
    generator = keras.saving.load_model(
        workdir / "export" / "gen_ab.keras", safe_mode=True
    )
    image = image_io.load_rgb(SAMPLES_DIR / "vase.jpg")[None]
    assert loaded.context == summary["context"] == export_default_model.DEFAULT_CONTEXT
    expected = np.asarray(Translator(generator, context=loaded.context)(image))
    got = np.asarray(loaded(image))
    assert got.shape == image.shape and got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)
    plain = export_default_model.export_default_model(workdir, output=tmp_path / "plain.keras", context=0)
    assert plain["context"] == 0 and load_translator(tmp_path / "plain.keras").context == 0
    with pytest.raises(ValueError, match=r"--output .*translator.h5: the model file's name must end in .keras"):
        export_default_model.export_default_model(workdir, output=tmp_path / "translator.h5")

    best = export_default_model.export_default_model(
        workdir, "best", output=tmp_path / "best.keras"
    )
    assert best["step"] == 6
    assert not np.array_equal(
        np.asarray(load_translator(tmp_path / "best.keras")(image)), got
    )


def test_export_default_model_makes_a_mixed_precision_export_float32(workdir, tmp_path):
    """A run trained in mixed_bfloat16 before exports were float32 saved its policy."""
    from gan_style.precision import generator_with_precision

    path = workdir / "export" / "gen_ab.keras"
    original = keras.saving.load_model(path, safe_mode=True)
    generator_with_precision(original, "bfloat16").save(path)
    try:
        output = tmp_path / "default_translator.keras"
        export_default_model.export_default_model(workdir, output=output)
        loaded = load_translator(output)
        assert {layer.dtype_policy.name for layer in loaded.generator.layers} == {"float32"}
        image = image_io.load_rgb(SAMPLES_DIR / "vase.jpg")[None]
        expected = Translator(original, context=loaded.context)(image)
        np.testing.assert_array_equal(np.asarray(loaded(image)), np.asarray(expected))
    finally:
        original.save(path)


def test_export_default_model_refuses_a_large_model_and_keeps_the_old_one(
    workdir, tmp_path
):
    output = tmp_path / "default_translator.keras"
    output.write_bytes(b"the previous model")
    with pytest.raises(ValueError, match="over --max_mb"):
        export_default_model.export_default_model(workdir, output=output, max_mb=0.01)
    assert output.read_bytes() == b"the previous model"
    assert [p.name for p in tmp_path.iterdir()] == [output.name]
    code = export_default_model.main([str(tmp_path / "no_run"), f"--output={output}"])
    assert code == 1 and output.read_bytes() == b"the previous model"


# ---------------------------------------------------------------------------
# Scores through gan_style.evaluate, with a tiny stand-in for Inception.


def _tiny_inception():
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(
        8, 5, strides=8, kernel_initializer=keras.initializers.GlorotUniform(seed=1)
    )(inputs)
    outputs = keras.layers.GlobalAveragePooling2D()(keras.layers.Activation("relu")(x))
    return keras.Model(inputs, outputs)


def test_score_compares_translated_and_untranslated_with_evaluate(tmp_path):
    from gan_style import metrics

    rng = np.random.default_rng(0)
    for name, count, shift in (("source", 8, 0), ("target", 10, 60)):
        (tmp_path / name).mkdir()
        for i in range(count):
            pixels = np.clip(rng.normal(120 + shift, 40, (24, 20, 3)), 0, 255).astype(
                np.uint8
            )
            Image.fromarray(pixels).save(tmp_path / name / f"{name}{i}.png")
    inception = _tiny_inception()
    # Strength 0 returns the source itself: translated must score exactly as untranslated.
    identity = Translator(
        build_generator("resnet_6blocks", base_filters=4, seed=1), strength=0.0
    )
    scores = model_card.score(
        identity,
        tmp_path / "source",
        tmp_path / "target",
        inception=inception,
        progress=False,
    )
    t, u = scores["translated"], scores["untranslated"]
    assert t["kid"] == pytest.approx(u["kid"]) and t["fid"] == pytest.approx(
        u["fid"], rel=1e-6
    )
    assert scores["kid_ratio"] == pytest.approx(1.0) and not scores["passes_kid_bar"]
    assert (
        t["ssim"] == pytest.approx(1.0)
        and t["n_pairs"] == 8
        and u["n_fake"] == 8
        and u["n_real"] == 10
    )
    assert "ssim" not in u
    # The untranslated KID is the plain KID of the two folders' features.
    features = {
        name: metrics.compute_features(
            inception,
            [image_io.load_rgb(p) for p in image_io.list_images(tmp_path / name)],
        )
        for name in ("source", "target")
    }
    kid, _ = metrics.kid_from_features(
        features["target"], features["source"], num_subsets=100, subset_size=1000
    )
    assert u["kid"] == pytest.approx(kid, rel=1e-5)
    # --limit scores the first N of each folder.
    limited = model_card.score(
        identity,
        tmp_path / "source",
        tmp_path / "target",
        inception=inception,
        limit=4,
        progress=False,
    )
    assert (
        limited["untranslated"]["n_fake"] == 4
        and limited["untranslated"]["n_real"] == 4
    )
    # A translator that changes the images: "translated" scores its outputs.
    styled = Translator(build_generator("resnet_6blocks", base_filters=4, seed=1))
    real = model_card.score(styled, tmp_path / "source", tmp_path / "target", inception=inception, progress=False)
    fakes = [styled(image_io.load_rgb(p)[None]).numpy()[0] for p in image_io.list_images(tmp_path / "source")]
    want = metrics.fid_from_features(features["target"], metrics.compute_features(inception, fakes))
    assert real["translated"]["fid"] == pytest.approx(want, rel=1e-4)
    assert real["translated"]["ssim"] < 0.9
    assert real["untranslated"]["fid"] == pytest.approx(u["fid"], rel=1e-9)


def test_markdown_reports_kid_times_1000_and_the_bar(workdir):
    run = model_card.read_run(workdir)
    fake = {"fid": 80.0, "kid": 0.012, "kid_std": 0.001, "n_real": 300, "n_fake": 200}
    scores = {
        "translated": {
            **fake,
            "kid": 0.004,
            "ssim": 0.61,
            "psnr": 14.5,
            "n_pairs": 200,
        },
        "untranslated": fake,
        "kid_ratio": 0.004 / 0.012,
        "passes_kid_bar": True,
        "source_arg": "ikea/test",
        "target_arg": "monet",
        "limit": None,
    }
    card = model_card.markdown(
        run, scores, {"path": "m.keras", "parameters": 1, "file_bytes": 1}
    )
    assert (
        "python -m gan_style.evaluate --model=m.keras --source=ikea/test --target=monet"
        in card
    )
    assert "| `ikea/test` untranslated | 200 | 12.00 ± 1.00 | 80.0 |" in card
    assert "| `ikea/test` translated | 200 | 4.00 ± 1.00 | 80.0 |" in card
    assert "0.333 (meets the bar of ≤ 0.5)" in card
    assert "mean SSIM of each translation to its source 0.610" in card
    assert "first" not in card  # full sets: no --limit warning


# ---------------------------------------------------------------------------
# Gallery and quick start, on a tiny model.


@pytest.fixture(scope="module")
def tiny_default_model(workdir, tmp_path_factory):
    output = tmp_path_factory.mktemp("default") / "default_translator.keras"
    export_default_model.export_default_model(workdir, output=output)
    return output


def test_make_gallery_writes_a_png_of_the_documented_size(tiny_default_model, tmp_path):
    output = tmp_path / "gallery.png"
    summary = make_gallery.make_gallery(
        tiny_default_model, output=output, cell=1.0, dpi=40
    )
    aspects = [h / w for _, (w, h), _, _ in make_samples.SAMPLES.values()]
    # LABEL_WIDTH + 4 columns (source + 3 tones) wide; TITLE_HEIGHT + sum of aspects high, in inches.
    width, height = (
        make_gallery.LABEL_WIDTH + 4 * 1.0,
        make_gallery.TITLE_HEIGHT + sum(aspects),
    )
    with Image.open(output) as image:
        assert (
            abs(image.size[0] - 40 * width) <= 1
            and abs(image.size[1] - 40 * height) <= 1
        )
        pixels = np.asarray(image.convert("RGB"))
    assert summary["rows"] == len(make_samples.SAMPLES) and summary["dpi"] == 40
    assert set(summary["checks"]) == set(make_samples.SAMPLES)
    assert (
        summary["checks"]["kettle_gray.png"]["warm_cool_flip"] is None
    )  # a gray source
    assert output.stat().st_size < 1_000_000
    assert (
        len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200
    )  # images, not a blank page


def test_gallery_tones_differ_and_neutral_matches_the_converter(tiny_default_model):
    translator = load_translator(tiny_default_model)
    image = image_io.load_rgb(SAMPLES_DIR / "mug.png")
    neutral, warm, vivid = make_gallery.translate_with_tones(
        translator, image, ["neutral", "warm", "vivid"]
    )
    np.testing.assert_array_equal(neutral, np.asarray(translator(image[None]))[0])
    assert not np.array_equal(neutral, warm) and not np.array_equal(neutral, vivid)
    # Warm shifts colour balance towards red relative to blue.
    assert (warm[..., 0].astype(int) - warm[..., 2]).mean() > (
        neutral[..., 0].astype(int) - neutral[..., 2]
    ).mean()


def test_gallery_diagnostics_catch_inversion_warm_cool_flips_and_checkerboards():
    yy, xx = np.mgrid[0:64, 0:48]
    # A smooth orange object on white: warm pixels, no lattice power to speak of.
    inside = ((yy - 32) / 20.0) ** 2 + ((xx - 24) / 14.0) ** 2 < 1
    source = np.full((64, 48, 3), 255.0)
    source[inside] = [220, 130, 40]
    source = source.astype(np.uint8)
    same = make_gallery.diagnostics(source, source)
    assert same["luma_corr"] == pytest.approx(1.0) and same["warm_cool_flip"] == 0.0
    assert same["flags"] == []
    inverted = make_gallery.diagnostics(source, 255 - source)
    assert (
        inverted["luma_corr"] == pytest.approx(-1.0) and "inverted" in inverted["flags"]
    )
    swapped = make_gallery.diagnostics(source, source[..., ::-1])  # orange -> blue
    assert swapped["warm_cool_flip"] == 1.0 and swapped["flags"] == [
        "warm/cool flipped"
    ]
    assert (
        make_gallery.warm_cool_flip(np.full((8, 8, 3), 128, np.uint8), source[:8, :8])
        is None
    )
    # A period-2 checkerboard puts all its AC power on the lattice; added to the
    # object at +-12 levels it is flagged, while the clean object is not.
    board = np.where((yy + xx) % 2, 12.0, -12.0)[..., None]
    assert make_gallery.lattice_power(128 + board * np.ones(3)) == pytest.approx(1.0)
    assert make_gallery.lattice_power(source) < make_gallery.CHECKERBOARD_LIMIT
    noisy = np.clip(source + board, 0, 255).astype(np.uint8)
    assert make_gallery.diagnostics(source, noisy)["flags"] == ["checkerboard"]


def test_gallery_diagnostics_catch_border_stripes():
    yy, xx = np.mgrid[0:48, 0:40]
    source = np.repeat((100 + yy + xx)[..., None], 3, -1).astype(np.uint8)  # smooth, no edge step
    assert make_gallery.diagnostics(source, source)["border_stripes"] == 0.0
    striped = source.astype(float)
    striped[:, :2] += 40  # a bright 2-px stripe down the left edge
    striped = striped.astype(np.uint8)
    check = make_gallery.diagnostics(source, striped)
    assert check["border_stripes"] > make_gallery.BORDER_STRIPE_LIMIT and "border stripes" in check["flags"]
    # A halo fading over the 40 px width is not a stripe (a 5.6-level step at most).
    halo = (source + np.linspace(40, 0, 40)[None, :, None]).astype(np.uint8)
    assert make_gallery.border_stripes(source, halo) < make_gallery.BORDER_STRIPE_LIMIT
    # The source's own edge content is not the translation's fault.
    assert make_gallery.border_stripes(striped, striped) == 0.0
    # ... but it does not hide a stripe on another side.
    both = striped.copy()
    both[:2] = np.clip(both[:2].astype(int) + 40, 0, 255)  # a stripe along the top too
    assert make_gallery.border_stripes(striped, both) > make_gallery.BORDER_STRIPE_LIMIT


def test_gallery_without_a_model_says_how_to_make_one(tmp_path, monkeypatch):
    monkeypatch.setattr(
        convert, "DEFAULT_MODEL_PATH", tmp_path / "default_translator.keras"
    )
    with pytest.raises(FileNotFoundError, match="export_default_model"):
        make_gallery.make_gallery(output=tmp_path / "g.png")
    with pytest.raises(ValueError, match="unknown preset"):
        make_gallery.make_gallery(tmp_path / "m.keras", tones=["sepia"])


def test_quick_start_converts_the_samples_with_the_default_model(
    tiny_default_model, tmp_path
):
    """`python infer.py --input=assets/samples --output=styled`, the default model swapped for a tiny one."""
    styled = tmp_path / "styled"
    code = (
        "import pathlib, runpy, sys\n"
        "from gan_style import convert\n"
        f"convert.DEFAULT_MODEL_PATH = pathlib.Path({str(tiny_default_model)!r})\n"
        "sys.argv = ['infer.py', '--input=assets/samples', f'--output={sys.argv[1]}']\n"
        "runpy.run_path('infer.py', run_name='__main__')\n"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, "-c", code, str(styled)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(r"converted 6, skipped 0, failed 0", result.stdout), result.stdout
    for name, (_, size, mode, _) in make_samples.SAMPLES.items():
        with Image.open(styled / name) as out:
            assert out.size == size, name
            assert out.mode == ("RGBA" if mode == "RGBA" else "RGB"), (
                name
            )  # alpha kept; gray -> colour
    rows = [
        json.loads(line)
        for line in (styled / "manifest.jsonl").read_text().splitlines()
    ]
    assert sorted(r["status"] for r in rows) == ["converted"] * 6


def test_the_bundled_model_when_present_is_small_neutral_and_loads():
    path = convert.DEFAULT_MODEL_PATH
    if not path.exists():
        pytest.skip(
            f"{path} is not committed yet (made by scripts/export_default_model.py)"
        )
    assert path.stat().st_size < 20_000_000
    translator = load_translator(path)
    assert translator.profile.tonal_params() == tonal.PRESETS["neutral"].tonal_params()
    assert translator.generator.count_params() <= 5_000_000
    assert translator.context == export_default_model.DEFAULT_CONTEXT
    image = image_io.load_rgb(SAMPLES_DIR / "coffee.jpg")[None]
    out = np.asarray(translator(image))
    assert out.shape == image.shape and out.std() > 1.0


def test_make_samples_refuses_a_file_as_output(tmp_path, capsys):
    (tmp_path / "r0.png").write_bytes(b"x")
    with pytest.raises(SystemExit) as stop:
        make_samples.main([f"--output={tmp_path / 'r0.png'}"])
    assert stop.value.code == 2 and "r0.png is a file; give a folder" in capsys.readouterr().err


def test_get_inception_weights_reads_a_relative_destination_from_where_it_runs(tmp_path):
    # It changed into the repo first, so `inc.weights.h5` meant the repo's copy:
    # an existing file was converted again (88 MB) into the checkout.
    (tmp_path / "inc.weights.h5").write_bytes(b"already here")
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "python").write_text("#!/bin/sh\nexit 0\n")  # pip install is not what this checks
    (fake_bin / "python").chmod(0o755)
    result = subprocess.run(["bash", str(ROOT / "scripts" / "get_inception_weights.sh"), "inc.weights.h5"],
                            cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}"})
    assert result.returncode == 0, result.stderr
    assert f"Inception weights already at {tmp_path}/inc.weights.h5" in result.stdout
