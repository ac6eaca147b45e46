"""Images per second of the CycleGAN train step on this machine.

    python bench/train_throughput.py --size=128 --json=/tmp/train.json

Reference networks (resnet_9blocks + basic PatchGAN, 64 filters), batch 1, pool
50, identity on. Variants:

* ``plain``: one ``tf.function`` with a ``GradientTape``, float32, no XLA, no
  tf.distribute -- the simplest correct step, as a baseline;
* ``default``: gan_style's distributed step (default strategy, image pool)
  in the default precision, ``train.precision=auto``: ``mixed_bfloat16`` on
  CPUs with native bfloat16 (as here), float32 elsewhere
  (``default_precision`` in the JSON says which);
* ``fp32``: the same step in float32;
* ``xla``: the float32 step with each replica's forward/backward XLA-compiled;
* ``bf16``: the ``mixed_bfloat16`` policy; ``bf16_xla``: both;
* ``fastnorm``: the default step with instance norm as one fused batch-norm
  kernel per image (``bench/fast_norm.py``; an experiment, not the library's).

The variants are built first and then timed interleaved (plain, default,
fp32, plain, default, fp32, ...; ``--rounds`` times ``--steps`` steps each), so
load changes on a shared machine hit every variant alike; the median round
counts. Every timed step fetches its losses to the host, as the training loop
does. The batches are fixed tensors: the input pipeline (tf.data decoding and
cropping in parallel with the step) is not timed here.

JSON: ``{"default_img_per_s": x, "plain_img_per_s": y, ..., "default_over_plain":
r, "peak_gflop_per_s": p, "train_gflop_per_image": f, "load_average_at_start":
l, ...}`` for the first ``--size``, and ``"by_size": {"128": {...}, ...}``
for all of them.
"""

import json
import os
import time

import common
import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

from gan_style import losses
from gan_style.cyclegan import CycleGAN
from gan_style.training import resolve_train_precision

flags.DEFINE_multi_integer("size", [128], "Crop sizes to measure.")
flags.DEFINE_integer("steps", 2, "Timed steps per variant and round (after warm-up).")
flags.DEFINE_integer("rounds", 4, "Interleaved rounds; the median round counts.")
flags.DEFINE_integer("warmup", 2, "Untimed steps first (tracing, compilation).")
flags.DEFINE_list("variants", ["plain", "default", "fp32"],
                  "Variants to run (also: xla, bf16, bf16_xla, fastnorm).")
flags.DEFINE_string("json", "", "Write the results here as JSON.")
FLAGS = flags.FLAGS


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


def prepare(variant, size):
    """Builds the variant's model and step, warmed up; returns ``run()`` doing ``--steps`` steps."""
    if variant == "default":
        policy = resolve_train_precision("auto")
    else:
        policy = "mixed_bfloat16" if variant.startswith("bf16") else "float32"
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = CycleGAN("resnet_9blocks", "basic", pool_size=50, jit_compile="xla" in variant)
        if "fastnorm" in variant:  # experiment: fused instance norm (bench/fast_norm.py)
            from fast_norm import swap_instance_norm

            for name in ("gen_ab", "gen_ba", "disc_a", "disc_b"):
                setattr(model, name, swap_instance_norm(getattr(model, name)))
        model.build((size, size, 3))
        model.compile()
        strategy = tf.distribute.get_strategy()
        step = plain_step(model) if variant == "plain" else model.make_distributed_step(strategy, 1)
        rs = np.random.RandomState(0)
        batch = tuple(tf.constant(rs.uniform(-1, 1, (1, size, size, 3)).astype(np.float32)) for _ in range(2))
        for _ in range(FLAGS.warmup):
            _sync(step(batch))
    finally:
        keras.mixed_precision.set_global_policy("float32")

    def run():
        for _ in range(FLAGS.steps):
            _sync(step(batch))

    return run


def _sync(out):
    tf.nest.map_structure(lambda t: t.numpy(), out)


def main(argv):
    del argv

    by_size = {}
    peak = common.matmul_peak_gflop_per_s()
    print(f"float32 matmul peak measured now: {peak:.0f} GFLOP/s; load average {os.getloadavg()[0]:.1f}")
    for size in FLAGS.size:
        row = by_size[str(size)] = {"load_average_at_start": os.getloadavg()[0], "peak_gflop_per_s": peak,
                                    "default_precision": resolve_train_precision("auto")}
        runs = {variant: prepare(variant, size) for variant in FLAGS.variants}
        times = {variant: [] for variant in runs}
        for _ in range(FLAGS.rounds):
            for variant, run in runs.items():
                start = time.perf_counter()
                run()
                times[variant].append(time.perf_counter() - start)
        gflop = row["train_gflop_per_image"] = common.train_gflop_per_image(size)
        for variant, seconds in times.items():
            rate = row[f"{variant}_img_per_s"] = FLAGS.steps / float(np.median(seconds))
            row[f"{variant}_rounds_img_per_s"] = [round(FLAGS.steps / t, 4) for t in seconds]
            row[f"{variant}_gflop_per_s"] = rate * gflop
            print(f"{size:>5} {variant:>10} {rate:8.3f} img/s  {rate * gflop:6.0f} GFLOP/s "
                  f"(peak {peak:.0f})", flush=True)
        if "plain" in runs:
            for variant in runs:
                if variant != "plain":
                    row[f"{variant}_over_plain"] = row[f"{variant}_img_per_s"] / row["plain_img_per_s"]
        row["load_average_at_end"] = os.getloadavg()[0]
        print(json.dumps(row))
        del runs
    results = {**by_size[str(FLAGS.size[0])], "size": FLAGS.size[0], "by_size": by_size}
    common.write_results(results, FLAGS.json)


if __name__ == "__main__":
    app.run(main)
