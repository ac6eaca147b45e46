"""Images per second of the CycleGAN train step on this machine.

    python bench/train_throughput.py --size=128 --size=256 --json=bench/train_throughput.json

Reference networks (resnet_9blocks + basic PatchGAN, 64 filters), batch 1, pool
50, identity on. Variants:

* ``plain``: one ``tf.function`` with a ``GradientTape``, float32, no XLA, no
  tf.distribute -- the simplest correct step, as a baseline;
* ``default``: gan_style's distributed step (default strategy), float32;
* ``xla``: the same with each replica's forward/backward XLA-compiled;
* ``bf16``: the ``mixed_bfloat16`` policy; ``bf16_xla``: both.

JSON keys: ``<variant>_img_per_s`` per size, e.g. ``{"128": {"plain_img_per_s": ...}}``.
Not a test: run it on an idle machine.
"""

import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from gan_style import losses  # noqa: E402
from gan_style.cyclegan import CycleGAN  # noqa: E402

flags.DEFINE_multi_integer("size", [128, 256], "Crop sizes to measure.")
flags.DEFINE_integer("steps", 10, "Timed steps per variant (after warm-up).")
flags.DEFINE_integer("warmup", 2, "Untimed steps first (tracing, compilation).")
flags.DEFINE_list("variants", ["plain", "default", "xla", "bf16", "bf16_xla"], "Variants to run.")
flags.DEFINE_string("json", "", "Write the results here as JSON.")
FLAGS = flags.FLAGS


def _model(size):
    model = CycleGAN("resnet_9blocks", "basic", pool_size=50)
    model.build((size, size, 3))
    model.compile()
    return model


def plain_step(model):
    """The baseline: one tf.function, no pools, no distribution, no loss scaling."""
    adversarial = losses.get_adversarial_loss("lsgan")

    @tf.function
    def step(a, b):
        with tf.GradientTape(persistent=True) as tape:
            fake_b = model.gen_ab(a, training=True)
            fake_a = model.gen_ba(b, training=True)
            g = (
                adversarial.generator(model.disc_b(fake_b, training=True))
                + adversarial.generator(model.disc_a(fake_a, training=True))
                + 10 * losses.cycle_loss(a, model.gen_ba(fake_b, training=True))
                + 10 * losses.cycle_loss(b, model.gen_ab(fake_a, training=True))
                + 5 * losses.identity_loss(a, model.gen_ba(a, training=True))
                + 5 * losses.identity_loss(b, model.gen_ab(b, training=True))
            )
            d = adversarial.discriminator(
                model.disc_a(a, training=True), model.disc_a(tf.stop_gradient(fake_a), training=True)
            ) + adversarial.discriminator(
                model.disc_b(b, training=True), model.disc_b(tf.stop_gradient(fake_b), training=True)
            )
            g, d = tf.reduce_mean(g), tf.reduce_mean(d)
        model.gen_optimizer.apply(tape.gradient(g, model.generator_variables), model.generator_variables)
        model.disc_optimizer.apply(
            tape.gradient(d, model.discriminator_variables), model.discriminator_variables
        )
        return g

    return lambda batch: step(*batch)


def measure(variant, size):
    policy = "mixed_bfloat16" if variant.startswith("bf16") else "float32"
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = _model(size) if "xla" not in variant else None
        if model is None:
            model = CycleGAN("resnet_9blocks", "basic", pool_size=50, jit_compile=True)
            model.build((size, size, 3))
            model.compile()
        strategy = tf.distribute.get_strategy()
        step = plain_step(model) if variant == "plain" else model.make_distributed_step(strategy, 1)
        rs = np.random.RandomState(0)
        batch = tuple(tf.constant(rs.uniform(-1, 1, (1, size, size, 3)).astype(np.float32)) for _ in range(2))
        for _ in range(FLAGS.warmup):
            _sync(step(batch))
        start = time.perf_counter()
        for _ in range(FLAGS.steps):
            _sync(step(batch))
        return FLAGS.steps / (time.perf_counter() - start)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _sync(out):
    tf.nest.map_structure(lambda t: t.numpy(), out)


def main(argv):
    del argv
    results = {}
    print(f"{'size':>5} {'variant':>10} {'img/s':>8}")
    for size in FLAGS.size:
        row = results[str(size)] = {}
        for variant in FLAGS.variants:
            row[f"{variant}_img_per_s"] = measure(variant, size)
            print(f"{size:>5} {variant:>10} {row[f'{variant}_img_per_s']:8.3f}", flush=True)
    if FLAGS.json:
        with open(FLAGS.json, "w") as f:
            json.dump(results, f, indent=2, sort_keys=True)


if __name__ == "__main__":
    app.run(main)
