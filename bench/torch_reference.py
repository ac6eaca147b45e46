r"""The same networks in PyTorch and in gan_style, timed side by side in one process.

    python bench/torch_reference.py --json=/tmp/torch_reference.json

PyTorch (CPU) is an optional benchmark dependency only; the networks are the
reference ones in ``tests/torch_reference.py`` (junyanz's module structure).
Two comparisons, each interleaved (TF, torch, TF, torch, ...) so that the
shared machine's load changes hit both sides alike:

* ``inference``: ``resnet_9blocks`` at 64 filters, float32, ``--batch_size``
  images of 256x256: gan_style's generator in one ``tf.function`` with a fixed
  input signature vs the torch module under ``torch.inference_mode()``, and
  the same generator with instance norm fused (``bench/fast_norm.py``,
  ``tf_fastnorm_infer_img_per_s``; its largest output difference from the
  library's generator is ``fastnorm_max_abs_diff``), and in bfloat16
  (``tf_bf16_infer_img_per_s``: what ``--precision=auto`` runs on CPUs with
  native bfloat16).
* ``train``: one CycleGAN step at ``--train_size`` px, batch 1, identity on,
  LSGAN, Adam(2e-4, 0.5): gan_style's ``make_distributed_step`` (the default
  training path, image pool included) vs a plain PyTorch step written the
  way the reference trains (generators forward once, backward, then the
  discriminators on the detached fakes); gan_style's step also in the
  default precision (``train.precision=auto``: ``tf_default_train_img_per_s``,
  ``tf_default_precision`` says which policy that was).

JSON keys: ``tf_infer_img_per_s``, ``torch_infer_img_per_s``,
``tf_train_img_per_s``, ``torch_train_img_per_s``, their ratios, the float32
matmul peak measured here (``peak_gflop_per_s``) and the load average.
"""

import os
import time

import common
import numpy as np
from absl import app, flags

flags.DEFINE_integer("batch_size", 1, "Images per inference call.")
flags.DEFINE_integer("rounds", 4, "Interleaved timed rounds per comparison.")
flags.DEFINE_integer("infer_calls", 2, "Inference calls per round and side.")
flags.DEFINE_integer("train_size", 128, "Training crop size.")
flags.DEFINE_integer("train_steps", 2, "Training steps per round and side.")
flags.DEFINE_integer("torch_threads", 0, "PyTorch intra-op threads (0: one per core, like TF).")
flags.DEFINE_list("parts", ["inference", "train"], "Which comparisons to run.")
flags.DEFINE_string("json", None, "Write the results here as JSON.")
FLAGS = flags.FLAGS


def _median_rate(seconds, items):
    return items / float(np.median(seconds))


def _torch_threads():
    import torch

    # Same core count TensorFlow uses by default, unless told otherwise (on an
    # oversubscribed machine PyTorch's OpenMP barriers degrade badly).
    torch.set_num_threads(FLAGS.torch_threads or os.cpu_count() or 1)
    return torch


def inference(results):
    import tensorflow as tf

    from gan_style.networks import build_generator
    from tests import torch_reference as ref

    torch = _torch_threads()
    n, size = FLAGS.batch_size, 256
    generator = build_generator("resnet_9blocks", base_filters=64, seed=0)
    tf_fn = tf.function(lambda x: generator(x, training=False),
                        input_signature=[tf.TensorSpec([n, size, size, 3], tf.float32)])
    from fast_norm import swap_instance_norm

    fused = swap_instance_norm(generator)
    fused_fn = tf.function(lambda x: fused(x, training=False),
                           input_signature=[tf.TensorSpec([n, size, size, 3], tf.float32)])
    from gan_style.precision import generator_with_precision

    fast = generator_with_precision(generator, "bfloat16")
    bf16_fn = tf.function(lambda x: fast(x, training=False),
                          input_signature=[tf.TensorSpec([n, size, size, 3], tf.float32)])
    net = ref.randomize(ref.ResnetGenerator(3, 3, 64, n_blocks=9)).eval()
    x = np.random.RandomState(0).uniform(-1, 1, (n, size, size, 3)).astype(np.float32)
    x_tf, x_torch = tf.constant(x), torch.from_numpy(x.transpose(0, 3, 1, 2).copy())

    def run_tf():
        tf_fn(x_tf).numpy()

    def run_tf_fused():
        fused_fn(x_tf).numpy()

    def run_tf_bf16():
        bf16_fn(x_tf).numpy()

    def run_torch():
        with torch.inference_mode():
            net(x_torch)

    results["fastnorm_max_abs_diff"] = float(np.abs(fused_fn(x_tf).numpy() - tf_fn(x_tf).numpy()).max())
    times = _interleave({"tf": run_tf, "tf_fastnorm": run_tf_fused, "tf_bf16": run_tf_bf16, "torch": run_torch},
                        FLAGS.infer_calls)
    results["tf_bf16_infer_img_per_s"] = _median_rate(times["tf_bf16"], n * FLAGS.infer_calls)
    results["tf_bf16_over_torch_infer"] = results["tf_bf16_infer_img_per_s"] / _median_rate(
        times["torch"], n * FLAGS.infer_calls)
    results["tf_fastnorm_infer_img_per_s"] = _median_rate(times["tf_fastnorm"], n * FLAGS.infer_calls)
    results["tf_infer_img_per_s"] = _median_rate(times["tf"], n * FLAGS.infer_calls)
    results["torch_infer_img_per_s"] = _median_rate(times["torch"], n * FLAGS.infer_calls)
    results["tf_over_torch_infer"] = results["tf_infer_img_per_s"] / results["torch_infer_img_per_s"]


def train(results):
    import keras
    import tensorflow as tf

    from gan_style.cyclegan import CycleGAN
    from gan_style.training import resolve_train_precision
    from tests import torch_reference as ref

    torch = _torch_threads()
    size = FLAGS.train_size

    def make_step(policy):
        keras.mixed_precision.set_global_policy(policy)
        try:
            model = CycleGAN("resnet_9blocks", "basic", pool_size=50)
            model.build((size, size, 3))
            model.compile()
            return model.make_distributed_step(tf.distribute.get_strategy(), 1)
        finally:
            keras.mixed_precision.set_global_policy("float32")

    tf_step = make_step("float32")
    results["tf_default_precision"] = resolve_train_precision("auto")
    default_step = make_step(results["tf_default_precision"])
    rs = np.random.RandomState(0)
    a, b = (rs.uniform(-1, 1, (1, size, size, 3)).astype(np.float32) for _ in range(2))
    batch = (tf.constant(a), tf.constant(b))

    gen_ab, gen_ba = (ref.randomize(ref.ResnetGenerator(3, 3, 64), seed=s) for s in (0, 1))
    disc_a, disc_b = (ref.randomize(ref.NLayerDiscriminator(3, 64, 3), seed=s) for s in (2, 3))
    for m in (gen_ab, gen_ba, disc_a, disc_b):
        m.train()
    opt_g = torch.optim.Adam(list(gen_ab.parameters()) + list(gen_ba.parameters()), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(list(disc_a.parameters()) + list(disc_b.parameters()), 2e-4, betas=(0.5, 0.999))
    ta, tb = (torch.from_numpy(t.transpose(0, 3, 1, 2).copy()) for t in (a, b))
    mse, l1 = torch.nn.MSELoss(), torch.nn.L1Loss()

    def lsgan(logits, real):
        return mse(logits, torch.full_like(logits, 1.0 if real else 0.0))

    def torch_step():
        for d in (disc_a, disc_b):
            d.requires_grad_(False)
        opt_g.zero_grad(set_to_none=True)
        fake_b, fake_a = gen_ab(ta), gen_ba(tb)
        rec_a, rec_b = gen_ba(fake_b), gen_ab(fake_a)
        loss_g = (lsgan(disc_b(fake_b), True) + lsgan(disc_a(fake_a), True)
                  + 10 * l1(rec_a, ta) + 10 * l1(rec_b, tb)
                  + 5 * l1(gen_ba(ta), ta) + 5 * l1(gen_ab(tb), tb))
        loss_g.backward()
        opt_g.step()
        for d in (disc_a, disc_b):
            d.requires_grad_(True)
        opt_d.zero_grad(set_to_none=True)
        loss_d = 0.5 * (lsgan(disc_a(ta), True) + lsgan(disc_a(fake_a.detach()), False)) + 0.5 * (
            lsgan(disc_b(tb), True) + lsgan(disc_b(fake_b.detach()), False))
        loss_d.backward()
        opt_d.step()
        return float(loss_g.detach())  # the host sync a training loop makes anyway

    def tf_run():
        for _ in range(FLAGS.train_steps):
            float(tf_step(batch)["gen_ab_loss"])

    def tf_default_run():
        for _ in range(FLAGS.train_steps):
            float(default_step(batch)["gen_ab_loss"])

    def torch_run():
        for _ in range(FLAGS.train_steps):
            torch_step()

    times = _interleave({"tf": tf_run, "tf_default": tf_default_run, "torch": torch_run}, 1)
    results["tf_train_img_per_s"] = _median_rate(times["tf"], FLAGS.train_steps)
    results["tf_default_train_img_per_s"] = _median_rate(times["tf_default"], FLAGS.train_steps)
    results["torch_train_img_per_s"] = _median_rate(times["torch"], FLAGS.train_steps)
    results["tf_over_torch_train"] = results["tf_train_img_per_s"] / results["torch_train_img_per_s"]
    results["tf_default_over_torch_train"] = results["tf_default_train_img_per_s"] / results["torch_train_img_per_s"]


def _interleave(runs, calls):
    for run in runs.values():  # warm-up: tracing, kernel selection, allocations
        run()
    times = {name: [] for name in runs}
    for _ in range(FLAGS.rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            for _ in range(calls):
                run()
            times[name].append(time.perf_counter() - start)
    return times


def main(argv):
    del argv

    results = {"load_average_at_start": os.getloadavg()[0], "peak_gflop_per_s": common.matmul_peak_gflop_per_s(),
               "torch_threads": FLAGS.torch_threads or os.cpu_count()}
    print(f"float32 matmul peak measured now: {results['peak_gflop_per_s']:.0f} GFLOP/s")
    peak = results["peak_gflop_per_s"]

    def gflops(rate, per_image):
        return f"{rate * per_image:.0f} GFLOP/s = {100 * rate * per_image / peak:.0f}% of the peak"

    if "inference" in FLAGS.parts:
        inference(results)
        from gan_style.networks import build_generator

        per_image = results["infer_gflop_per_image"] = common.gflop_per_image(build_generator("resnet_9blocks"))
        print(f"inference resnet_9blocks 256px batch {FLAGS.batch_size}: gan_style "
              f"{results['tf_infer_img_per_s']:.3f} img/s, PyTorch {results['torch_infer_img_per_s']:.3f} img/s "
              f"({results['tf_over_torch_infer']:.2f}x); fused instance norm {results['tf_fastnorm_infer_img_per_s']:.3f} img/s "
              f"(max |diff| {results['fastnorm_max_abs_diff']:.1e}); bfloat16 {results['tf_bf16_infer_img_per_s']:.3f} "
              f"img/s ({results['tf_bf16_over_torch_infer']:.2f}x PyTorch)", flush=True)
        print(f"  at {per_image:.1f} GFLOP/image: gan_style float32 {gflops(results['tf_infer_img_per_s'], per_image)}, "
              f"PyTorch {gflops(results['torch_infer_img_per_s'], per_image)}")
    if "train" in FLAGS.parts:
        train(results)
        print(f"train step {FLAGS.train_size}px batch 1: gan_style {results['tf_train_img_per_s']:.3f} img/s, "
              f"PyTorch {results['torch_train_img_per_s']:.3f} img/s ({results['tf_over_torch_train']:.2f}x); "
              f"default precision ({results['tf_default_precision']}) {results['tf_default_train_img_per_s']:.3f} "
              f"img/s ({results['tf_default_over_torch_train']:.2f}x PyTorch)")
        per_image = results["train_gflop_per_image"] = common.train_gflop_per_image(FLAGS.train_size)
        print(f"  at {per_image:.0f} GFLOP/image: gan_style float32 {gflops(results['tf_train_img_per_s'], per_image)}, "
              f"PyTorch {gflops(results['torch_train_img_per_s'], per_image)}")
    results["load_average_at_end"] = os.getloadavg()[0]
    common.write_results(results, FLAGS.json)


if __name__ == "__main__":
    app.run(main)
