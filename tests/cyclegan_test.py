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


def test_losses_are_the_reference_batch_means():
    model = CycleGAN("resnet_6blocks", "pixel", dict(base_filters=4), dict(base_filters=4),
                     pool_size=0, lambda_identity=0.5, seed=1)
    model.build((32, 32, 3))
    model.compile(keras.optimizers.SGD(0.0), keras.optimizers.SGD(0.0))
    rs = np.random.RandomState(1)
    a = tf.constant(rs.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32))
    b = tf.constant(rs.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32))
    _, out, _, _ = model.generator_gradients(a, b, 2)
    fake_b = model.gen_ab(a)
    want_adv = float(np.mean(losses.lsgan_generator_loss(model.disc_b(fake_b))))
    want_cycle = 10.0 * float(np.mean(np.abs(model.gen_ba(fake_b).numpy() - a.numpy())))
    want_idt = 5.0 * float(np.mean(np.abs(model.gen_ab(b).numpy() - b.numpy())))
    assert float(out["gen_ab_loss"]) == pytest.approx(want_adv, rel=1e-5)
    assert float(out["cycle_a_loss"]) == pytest.approx(want_cycle, rel=1e-5)
    assert float(out["idt_b_loss"]) == pytest.approx(want_idt, rel=1e-5)


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
    a = tf.zeros((1, 32, 32, 3))
    grads, out, _, _ = model.generator_gradients(a, a, 1)
    # The gradients are of the scaled loss: dynamic scale 2**15 at the start.
    assert float(model.gen_optimizer.scale_loss(tf.constant(1.0))) == 2.0**15
    assert all(g.dtype == tf.float32 for g in grads if g is not None)


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
