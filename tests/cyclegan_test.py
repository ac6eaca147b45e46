"""CycleGAN: one step on 2 replicas equals one step on one device; losses; mixed precision."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from gan_style import losses
from gan_style.cyclegan import LOSS_NAMES, CycleGAN


def _model(pool_size=1, **kw):
    model = CycleGAN(
        "resnet_6blocks",
        "pixel",
        dict(base_filters=4),
        dict(base_filters=4),
        pool_size=pool_size,
        seed=3,
        **kw,
    )
    model.build((32, 32, 3))
    # Plain SGD: Adam would turn rounding noise in the biases before the
    # (non-affine) instance norms, whose true gradient is zero, into full steps.
    model.compile(keras.optimizers.SGD(0.05), keras.optimizers.SGD(0.05))
    return model


def _one_step(strategy, a, b):
    with strategy.scope():
        model = _model()
    step = model.make_distributed_step(strategy, global_batch_size=2)
    batch = next(iter(strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensors((a, b)))))
    logs = {k: float(v) for k, v in step(batch).items()}
    weights = {v.path: v.numpy() for v in model.generator_variables + model.discriminator_variables}
    state = {
        "pool_a": model.pool_a.images.numpy(),
        "pool_b": model.pool_b.images.numpy(),
        "rng": model.rng.state.numpy(),
    }
    return model, logs, weights, state


@pytest.fixture
def fast_graphs():
    """Skips grappler's graph rewrites: halves the first call of these big step graphs."""
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    yield
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": False})


def test_two_replicas_equal_one_device_with_the_pool_on(fast_graphs):
    rs = np.random.RandomState(0)
    a = tf.constant(rs.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32))
    b = tf.constant(rs.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32))
    model, logs1, weights1, state1 = _one_step(tf.distribute.get_strategy(), a, b)
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert mirrored.num_replicas_in_sync == 2
    _, logs2, weights2, state2 = _one_step(mirrored, a, b)

    for name in LOSS_NAMES:
        assert logs2[name] == pytest.approx(logs1[name], rel=1e-5), name
    assert logs1["gen_ab_loss"] > 0 and logs1["disc_b_loss"] > 0
    # Every weight moved, and moved the same way (relative to the weights' scale;
    # biases in front of instance norm have zero true gradient and stay ~0).
    for path, w1 in weights1.items():
        scale = max(np.abs(w1).max(), 1e-2)
        np.testing.assert_allclose(weights2[path], w1, rtol=0, atol=1e-5 * scale, err_msg=path)
    np.testing.assert_allclose(state2["pool_a"], state1["pool_a"], atol=1e-5)
    np.testing.assert_allclose(state2["pool_b"], state1["pool_b"], atol=1e-5)
    np.testing.assert_array_equal(state2["rng"], state1["rng"])
    # The pool (size 1) now holds one of this step's fakes: non-zero.
    assert np.abs(state1["pool_b"]).max() > 0


def test_the_discriminators_see_what_the_pools_return():
    # Full pools (size 1) and draws that swap (uniform > 0.5): as in the
    # reference's ImagePool, each discriminator judges the pool's older image,
    # and this step's fake takes its place in the pool.
    model = _model(pool_size=1)
    rs = np.random.RandomState(4)
    a, b, old_a, old_b = (tf.constant(rs.uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)) for _ in range(4))
    for pool, old in ((model.pool_a, old_a), (model.pool_b, old_b)):
        pool.images.assign(old)
        pool.count.assign(1)
    adversarial = model._adversarial
    want = {
        "disc_a_loss": float(tf.reduce_sum(adversarial.discriminator(model.disc_a(a), model.disc_a(old_a)))),
        "disc_b_loss": float(tf.reduce_sum(adversarial.discriminator(model.disc_b(b), model.disc_b(old_b)))),
    }
    fake_a, fake_b = model.gen_ba(b).numpy(), model.gen_ab(a).numpy()  # before the update
    swap = {"uniform_a": tf.constant([0.9]), "index_a": tf.constant([0]),
            "uniform_b": tf.constant([0.9]), "index_b": tf.constant([0])}
    out = tf.distribute.get_strategy().run(model.replica_step, args=(a, b, swap))
    for name, value in want.items():
        assert float(out[name]) == pytest.approx(value, rel=1e-5), name
    np.testing.assert_allclose(model.pool_a.images.numpy(), fake_a, atol=1e-6)
    np.testing.assert_allclose(model.pool_b.images.numpy(), fake_b, atol=1e-6)


def test_losses_are_the_reference_batch_means():
    # Three different weights, so that a weight on the wrong term shows. The
    # reference: loss_idt_A = |G_A(B) - B| * lambda_B * lambda_idt (G_A = gen_ab).
    model = CycleGAN("resnet_6blocks", "pixel", dict(base_filters=4), dict(base_filters=4),
                     pool_size=0, lambda_cycle_a=3.0, lambda_cycle_b=7.0, lambda_identity=0.3, seed=1)
    model.build((32, 32, 3))
    model.compile(keras.optimizers.SGD(0.0), keras.optimizers.SGD(0.0))
    rs = np.random.RandomState(1)
    a = tf.constant(rs.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32))
    b = tf.constant(rs.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32))
    _, out, _, _ = model.generator_gradients(a, b, 2)
    fake_b, fake_a = model.gen_ab(a), model.gen_ba(b)

    def l1(x, y):
        return float(np.mean(np.abs(np.asarray(x) - np.asarray(y))))

    want = {
        "gen_ab_loss": float(np.mean(losses.lsgan_generator_loss(model.disc_b(fake_b)))),
        "gen_ba_loss": float(np.mean(losses.lsgan_generator_loss(model.disc_a(fake_a)))),
        "cycle_a_loss": 3.0 * l1(model.gen_ba(fake_b), a),
        "cycle_b_loss": 7.0 * l1(model.gen_ab(fake_a), b),
        "idt_a_loss": 3.0 * 0.3 * l1(model.gen_ba(a), a),
        "idt_b_loss": 7.0 * 0.3 * l1(model.gen_ab(b), b),
    }
    for name, value in want.items():
        assert float(out[name]) == pytest.approx(value, rel=1e-5), name


def test_mixed_float16_wraps_both_optimizers_in_loss_scaling():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = CycleGAN("resnet_6blocks", "pixel", dict(base_filters=4), dict(base_filters=4), pool_size=0)
        model.build((32, 32, 3))
        model.compile()
    finally:
        keras.mixed_precision.set_global_policy(previous)
    for optimizer in (model.gen_optimizer, model.disc_optimizer):
        assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.gen_ab.layers[2].compute_dtype == "float16"
    a = tf.constant(np.random.RandomState(2).uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32))
    grads, out, _, _ = model.generator_gradients(a, a, 1)
    assert all(g.dtype == tf.float32 for g in grads if g is not None)
    # The gradients are of the scaled loss (dynamic scale 2**15 at the start):
    # against float32 gradients of the same weights, 2**15 times as large.
    assert float(model.gen_optimizer.scale_loss(tf.constant(1.0))) == 2.0**15
    plain = CycleGAN("resnet_6blocks", "pixel", dict(base_filters=4), dict(base_filters=4), pool_size=0)
    plain.build((32, 32, 3))
    plain.compile()
    plain.set_weights(model.get_weights())
    plain_grads, _, _, _ = plain.generator_gradients(a, a, 1)
    # Per kernel: a bias in front of an instance norm has a true gradient of 0,
    # so its float16 one is rounding noise. A scaled float16 gradient may
    # overflow to inf (the loss scale then drops, as it should): left out.
    ratios = [float(tf.norm(g) / tf.norm(p))
              for v, g, p in zip(model.generator_variables, grads, plain_grads)
              if v.path.endswith("kernel") and np.all(np.isfinite(g.numpy()))]
    assert len(ratios) > 10
    assert np.median(ratios) == pytest.approx(2.0**15, rel=0.05)  # float16 arithmetic: not exact


def test_replicas_skip_an_overflowed_step_together():
    # Loss scaling checks each replica's own gradients; one replica's overflow
    # must make every replica skip the step, or their weights part ways.
    from gan_style.cyclegan import _agree_on_finite

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1))

    @tf.function
    def step(agree):
        def replica():
            ctx = tf.distribute.get_replica_context()
            value = tf.where(ctx.replica_id_in_sync_group == 1, float("inf"), 1.0)  # replica 1 overflows
            grads = [tf.fill([3], value), None]
            if agree:
                grads = _agree_on_finite(grads, optimizer, ctx)
            return optimizer.check_finite(grads[:1])

        return strategy.run(replica)

    def finite(agree):
        return [bool(r) for r in strategy.experimental_local_results(step(agree))]

    assert finite(agree=False) == [True, False]  # what each replica sees alone
    assert finite(agree=True) == [False, False]


def test_config_round_trip_and_bad_arguments():
    model = CycleGAN("resnet_6blocks", "pixel", dict(base_filters=4), dict(base_filters=4),
                     pool_size=7, lambda_cycle_a=3.0, seed=5)
    config = model.get_config()
    again = CycleGAN.from_config(config)
    assert again.get_config() == config
    assert again.gen_ab.name == "gen_ab" and again.disc_b.name == "disc_b"
    with pytest.raises(ValueError, match="pool_size"):
        CycleGAN(pool_size=-1)
    with pytest.raises(ValueError, match="unknown generator"):
        CycleGAN(generator="resnet_2blocks")


def test_three_steps_match_the_reference_pytorch_steps():
    # The reference's optimize_parameters, from the same weights: generators
    # first (discriminators frozen), then the discriminators on detached
    # fakes (the pools still filling, so the fakes themselves); PyTorch's Adam.
    torch = pytest.importorskip("torch")
    import itertools

    import torch_reference as ref

    from gan_style.import_reference import load_state_dict

    torch.manual_seed(0)
    g_a, g_b = (ref.randomize(ref.ResnetGenerator(3, 3, 4, n_blocks=6), seed=s) for s in (1, 2))
    d_a, d_b = (ref.randomize(ref.NLayerDiscriminator(3, 4), seed=s) for s in (3, 4))

    def gan_style_model():
        model = CycleGAN("resnet_6blocks", "basic", dict(base_filters=4), dict(base_filters=4))
        model.build((32, 32, 3))
        for net, torch_net in ((model.gen_ab, g_a), (model.gen_ba, g_b), (model.disc_b, d_a), (model.disc_a, d_b)):
            load_state_dict(net, {k: v.detach().numpy() for k, v in torch_net.state_dict().items()})
        return model

    model = gan_style_model()
    model.compile()  # the defaults: the reference's Adam
    step = model.make_distributed_step(tf.distribute.get_strategy(), 2)
    opt_g = torch.optim.Adam(itertools.chain(g_a.parameters(), g_b.parameters()), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(itertools.chain(d_a.parameters(), d_b.parameters()), lr=2e-4, betas=(0.5, 0.999))
    l1, mse = torch.nn.L1Loss(), torch.nn.MSELoss()

    def gan(logits, real):
        return mse(logits, torch.full_like(logits, 1.0 if real else 0.0))

    rng = np.random.default_rng(0)
    for _ in range(3):
        a, b = (rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32) for _ in range(2))
        step((tf.constant(a), tf.constant(b)))
        real_a, real_b = (torch.from_numpy(x.transpose(0, 3, 1, 2).copy()) for x in (a, b))
        fake_b, fake_a = g_a(real_a), g_b(real_b)
        for p in itertools.chain(d_a.parameters(), d_b.parameters()):
            p.requires_grad_(False)
        opt_g.zero_grad()
        (gan(d_a(fake_b), True) + gan(d_b(fake_a), True)
         + 10 * l1(g_b(fake_b), real_a) + 10 * l1(g_a(fake_a), real_b)
         + 10 * 0.5 * l1(g_a(real_b), real_b) + 10 * 0.5 * l1(g_b(real_a), real_a)).backward()
        opt_g.step()
        for p in itertools.chain(d_a.parameters(), d_b.parameters()):
            p.requires_grad_(True)
        opt_d.zero_grad()
        (0.5 * (gan(d_a(real_b), True) + gan(d_a(fake_b.detach()), False))
         + 0.5 * (gan(d_b(real_a), True) + gan(d_b(fake_a.detach()), False))).backward()
        opt_d.step()

    expected = gan_style_model()  # the reference's trained weights, through the tested mapping
    checked = []
    for got, want in zip(model.generator_variables + model.discriminator_variables,
                         expected.generator_variables + expected.discriminator_variables):
        # Kernels, and the biases no instance norm follows (the generator's
        # head, the discriminator's first conv and logits). A bias before a
        # non-affine instance norm has a true gradient of zero, and Adam turns
        # each framework's rounding noise there into full steps of its own.
        if "kernel" in got.path or got.path in ("head_conv/bias", "conv0/bias", "logits/bias"):
            diff = np.abs(want.numpy() - got.numpy()).max()
            # Measured: at most 1e-7 (Keras' own Adam: 1.3e-6 and more; a
            # step moves a kernel by up to 2e-4).
            assert diff < 3e-7, (got.path, diff)
            checked.append(got.path)
    # Four networks: 2 x (head_conv) + 2 x (conv0, logits) biases, and every kernel.
    assert sum(path.endswith("/bias") for path in checked) == 6
    assert sum(path.endswith("/kernel") for path in checked) > 40
