"""Exactness against the reference PyTorch networks (needs torch; skips without it)."""

import numpy as np
import pytest

import gan_style
from gan_style import import_reference

torch = pytest.importorskip("torch", reason="torch is the test-only reference (pip install torch==2.13.0)")
reference = pytest.importorskip("torch_reference")


def _run_torch(module, x_nhwc):
    module.eval()
    with torch.no_grad():
        y = module(torch.from_numpy(np.transpose(x_nhwc, (0, 3, 1, 2))))
    return np.transpose(y.numpy(), (0, 2, 3, 1))


def _state_dict(module):
    return {k: v.numpy() for k, v in module.state_dict().items()}


def _inputs(h, w, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (1, h, w, 3)).astype(np.float32)


@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_resnet_6blocks_matches_pytorch(norm):
    torch_net = reference.randomize(reference.ResnetGenerator(3, 3, ngf=8, norm=norm, n_blocks=6))
    keras_net = gan_style.build_generator("resnet_6blocks", base_filters=8, norm=norm)
    import_reference.load_state_dict(keras_net, _state_dict(torch_net))
    x = _inputs(64, 96)
    expected = _run_torch(torch_net, x)
    got = keras_net(x, training=False).numpy()
    assert got.shape == (1, 64, 96, 3)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_unet_128_matches_pytorch():
    torch_net = reference.randomize(reference.UnetGenerator(3, 3, 7, ngf=8))
    keras_net = gan_style.build_generator("unet_128", base_filters=8)
    import_reference.load_state_dict(keras_net, _state_dict(torch_net))
    x = _inputs(128, 256, seed=1)
    expected = _run_torch(torch_net, x)
    got = keras_net(x, training=False).numpy()
    assert got.shape == (1, 128, 256, 3)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("norm", ["instance", "batch"])
@pytest.mark.parametrize("name, shape", [("basic", (1, 6, 10, 1)), ("pixel", (1, 64, 96, 1))])
def test_discriminators_match_pytorch(name, shape, norm):
    torch_net = reference.randomize(
        reference.NLayerDiscriminator(3, ndf=8, norm=norm) if name == "basic"
        else reference.PixelDiscriminator(3, ndf=8, norm=norm))
    keras_net = gan_style.build_discriminator(name, base_filters=8, norm=norm)
    import_reference.load_state_dict(keras_net, _state_dict(torch_net))
    x = _inputs(64, 96, seed=2)
    expected = _run_torch(torch_net, x)
    got = keras_net(x, training=False).numpy()
    assert got.shape == expected.shape == shape
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_batch_norm_trains_as_pytorchs():
    # Training mode: normalised by the batch's statistics, running averages
    # moved by momentum 0.1 (Keras 0.9). Keras moves the running variance by
    # the batch's biased variance, torch by the unbiased one: they differ by
    # n / (n - 1) (n = 2 * 16 * 16 here; 1.001 at a 32 x 32 batch of 1).
    torch_net = reference.randomize(reference.PixelDiscriminator(3, ndf=8, norm="batch"))
    keras_net = gan_style.build_discriminator("pixel", base_filters=8, norm="batch")
    with torch.no_grad():  # running variance 0: after one step it is 0.1 x the batch's
        torch_net.net[3].running_var.zero_()
    import_reference.load_state_dict(keras_net, _state_dict(torch_net))
    x = np.concatenate([_inputs(16, 16, seed=3), _inputs(16, 16, seed=4)])
    torch_net.train()
    with torch.no_grad():
        expected = torch_net(torch.from_numpy(np.transpose(x, (0, 3, 1, 2)))).numpy().transpose(0, 2, 3, 1)
    got = keras_net(x, training=True).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    bn = next(layer for layer in keras_net.layers if "norm" in layer.name)
    torch_bn = torch_net.net[3]
    np.testing.assert_allclose(bn.moving_mean.numpy(), torch_bn.running_mean.numpy(), rtol=1e-5, atol=1e-6)
    n = x.shape[0] * x.shape[1] * x.shape[2]
    np.testing.assert_allclose(bn.moving_variance.numpy() * n / (n - 1), torch_bn.running_var.numpy(), rtol=1e-4)


def test_full_size_resnet_9blocks_state_dict_fits():
    """The published checkpoints' layout: 64 filters, 9 blocks, instance norm."""
    state = _state_dict(reference.ResnetGenerator(3, 3, ngf=64, n_blocks=9))
    options = import_reference.infer_generator_options(state)
    assert options == {
        "input_channels": 3, "output_channels": 3, "norm": "instance",
        "base_filters": 64, "name": "resnet_9blocks", "dropout": False,
    }
    model = gan_style.build_generator(options.pop("name"), **options)
    import_reference.load_state_dict(model, state)
    assert model.count_params() == 11_378_179


def test_command_line_converts_a_pth_file(tmp_path):
    torch_net = reference.randomize(reference.UnetGenerator(1, 3, 7, ngf=4), seed=3)
    pth = tmp_path / "latest_net_G_A.pth"
    torch.save(torch_net.state_dict(), pth)
    out = tmp_path / "new" / "folder" / "gen_ab.keras"  # made for it (it was a traceback)
    assert import_reference.main([str(pth), str(out)]) == 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["gen_ab.keras"]  # no temporary file left
    loaded = __import__("keras").saving.load_model(out, safe_mode=True)
    x = np.random.default_rng(4).uniform(-1, 1, (1, 128, 128, 1)).astype(np.float32)
    np.testing.assert_allclose(loaded(x).numpy(), _run_torch(torch_net, x), atol=1e-4, rtol=0)


def test_mismatched_architecture_is_named():
    state = _state_dict(reference.ResnetGenerator(3, 3, ngf=8, n_blocks=6))
    model = gan_style.build_generator("resnet_9blocks", base_filters=8)
    with pytest.raises(ValueError, match="weighted modules"):
        import_reference.load_state_dict(model, state)
    model = gan_style.build_generator("resnet_6blocks", base_filters=16)
    with pytest.raises(ValueError, match=r"model\.1: shapes"):
        import_reference.load_state_dict(model, state)


@pytest.mark.parametrize("norm, dropout", [("batch", False), ("batch", True), ("instance", True), ("none", False)])
def test_options_read_from_the_state_dict_and_pytorch_outputs_kept(tmp_path, norm, dropout):
    # Batch norm without dropout has a 1-d conv_block.6.weight (the norm), not a conv there;
    # norm 'none' convs have no bias in the reference.
    torch_net = reference.randomize(
        reference.ResnetGenerator(3, 3, ngf=4, norm=norm, use_dropout=dropout, n_blocks=6), seed=5)
    pth = tmp_path / "net.pth"
    torch.save(torch_net.state_dict(), pth)
    model = import_reference.import_generator(str(pth))
    options = import_reference.infer_generator_options(_state_dict(torch_net))
    assert (options["norm"], options["dropout"]) == (norm, dropout)
    dropouts = [layer for layer in model.layers if "dropout" in type(layer).__name__.lower()]
    assert len(dropouts) == (6 if dropout else 0)
    x = _inputs(32, 40, seed=6)
    np.testing.assert_allclose(model(x, training=False).numpy(), _run_torch(torch_net, x), atol=1e-4, rtol=0)


def test_command_line_errors_name_the_file(tmp_path, capsys):
    out = str(tmp_path / "g.keras")
    assert import_reference.main([str(tmp_path / "missing.pth"), out]) == 1
    assert "missing.pth: no such file" in capsys.readouterr().err
    (tmp_path / "notes.pth").write_text("not a checkpoint")
    assert import_reference.main([str(tmp_path / "notes.pth"), out]) == 1
    assert "notes.pth: not a PyTorch state dict file" in capsys.readouterr().err
    whole = tmp_path / "whole_model.pth"  # torch.save(model): a pickled module, not a state dict
    torch.save(reference.ResnetGenerator(3, 3, ngf=4, n_blocks=6), whole)
    assert import_reference.main([str(whole), out]) == 1
    err = capsys.readouterr().err
    assert "whole_model.pth: holds a whole pickled model (torch_reference.ResnetGenerator), not a state dict; " \
           "save model.state_dict()" in err
    assert len(err.strip().splitlines()) == 1
    disc = tmp_path / "latest_net_D_A.pth"
    torch.save(reference.NLayerDiscriminator(3, ndf=4).state_dict(), disc)
    assert import_reference.main([str(disc), out]) == 1
    assert "latest_net_D_A.pth: not a reference CycleGAN generator" in capsys.readouterr().err
    # A training checkpoint with the weights under "state_dict" imports, and --no-dropout overrides.
    torch_net = reference.randomize(reference.ResnetGenerator(3, 3, ngf=4, use_dropout=True, n_blocks=6))
    wrapped = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 7, "state_dict": torch_net.state_dict()}, wrapped)
    def dropout_layers():
        model = __import__("keras").saving.load_model(out)
        return sum("dropout" in type(layer).__name__.lower() for layer in model.layers)

    assert import_reference.main([str(wrapped), out]) == 0 and dropout_layers() == 6
    assert import_reference.main([str(wrapped), out, "--no-dropout"]) == 0 and dropout_layers() == 0
