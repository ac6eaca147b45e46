r"""Catalog conversion throughput and memory, against a naive loop in the same run.

    python bench/convert_throughput.py --json=/tmp/convert.json

What it measures (a benchmark, not a test; the machine's other load shows up
in the numbers, so it prints the load average next to them):

* ``convert_img_per_s``: :func:`gan_style.convert_catalog` converting the
  256x256 JPEGs of ``../shared/data/horse2zebra/testA`` (JPEG in, JPEG out)
  with ``resnet_9blocks`` at 64 filters (random init: speed does not depend on
  the weights).
* ``naive_img_per_s``: the same model and images, one after another: PIL
  decode -> ``Translator.predict`` on one image -> PIL encode -> write.
* ``peak_rss_mb_200`` / ``peak_rss_mb_2000``: peak resident memory of a whole
  conversion process for 200 and 2,000 images (the 120 test images copied
  repeatedly into a scratch folder), each in a fresh subprocess; it must not
  grow with the catalog. Uses ``--rss_filters`` (default 8) so that 2,000
  images take about a minute; the pipeline, not the model, decides growth.
* ``gflop_per_image`` and achieved GFLOP/s for the conversion, next to
  ``peak_gflop_per_s``: a float32 matmul probe run in the same process.
* ``int8_img_per_s`` / ``int8_psnr_db``: the optional int8 path (issue 7's
  stretch goal); ``null`` with ``int8_note`` saying why while it does not exist.

The two loops are interleaved (``--rounds`` times: ``--convert_chunk`` images
through convert_catalog, then ``--naive_chunk`` through the naive loop) so a
shared machine's load changes hit both; each rate is the median over rounds.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("images", str(ROOT.parent / "shared" / "data" / "horse2zebra" / "testA"), "Folder of JPEGs.")
flags.DEFINE_integer("rounds", 3, "Interleaved rounds (convert chunk, naive chunk).")
flags.DEFINE_integer("convert_chunk", 16, "Images converted by convert_catalog per round.")
flags.DEFINE_integer("naive_chunk", 6, "Images converted by the naive loop per round.")
flags.DEFINE_integer("filters", 64, "Generator base filters for the throughput comparison.")
flags.DEFINE_integer("batch_size", 4, "convert_catalog batch size.")
flags.DEFINE_integer("rss_filters", 8, "Generator base filters for the memory runs.")
flags.DEFINE_list("rss_counts", ["200", "2000"], "Catalog sizes for the peak-RSS runs (empty: skip).")
flags.DEFINE_string("json", None, "Write the results here as JSON.")
flags.DEFINE_integer("rss_child", None, "Internal: convert this many images and report peak RSS.")
flags.DEFINE_string("rss_dir", None, "Internal: the scratch catalog for --rss_child.")


def _translator(filters):
    from gan_style.networks import build_generator
    from gan_style.translator import Translator

    return Translator(build_generator("resnet_9blocks", base_filters=filters, seed=0))


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _gflop_per_image(generator, size=256) -> float:
    """FLOPs of one size x size image (2 per multiply-add, from the graph)."""
    import tensorflow as tf

    function = tf.function(lambda x: generator(x, training=False))
    concrete = function.get_concrete_function(tf.TensorSpec([1, size, size, 3], tf.float32))
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(concrete.graph, options=options)
    return profile.total_float_ops / 1e9


def _naive(translator, images, output: pathlib.Path) -> float:
    import numpy as np
    from PIL import Image

    output.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for path in images:
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"))
        out = translator.predict(rgb[None], verbose=0)[0]
        Image.fromarray(out).save(output / path.name, quality=95)
    return len(images) / (time.perf_counter() - start)


def _rss_child(count: int, catalog: pathlib.Path) -> None:
    import gan_style

    translator = _translator(FLAGS.rss_filters)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        summary = gan_style.convert_catalog(translator, catalog, out, format="jpg", progress=False,
                                            batch_size=FLAGS.batch_size)
        seconds = time.perf_counter() - start
    print(json.dumps({"count": count, "converted": summary.converted, "seconds": seconds,
                      "peak_rss_mb": _peak_rss_mb()}))


def main(argv):
    del argv
    if FLAGS.rss_child is not None:
        _rss_child(FLAGS.rss_child, pathlib.Path(FLAGS.rss_dir))
        return
    import numpy as np
    from peak import matmul_peak_gflop_per_s

    import gan_style

    images = sorted(pathlib.Path(FLAGS.images).glob("*.jpg"))
    if not images:
        raise app.UsageError(f"no JPEGs in --images={FLAGS.images}")
    results = {"load_average_at_start": os.getloadavg()[0], "peak_gflop_per_s": matmul_peak_gflop_per_s()}
    translator = _translator(FLAGS.filters)
    gflop = _gflop_per_image(translator.generator)
    results["gflop_per_image"] = round(gflop, 2)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = pathlib.Path(scratch)
        chunks = []
        for r in range(FLAGS.rounds + 1):  # chunk 0 warms up
            chunk = scratch / f"catalog{r}"
            chunk.mkdir()
            for i in range(FLAGS.convert_chunk if r else FLAGS.batch_size):
                shutil.copyfile(images[(r * FLAGS.convert_chunk + i) % len(images)], chunk / f"{i:05d}.jpg")
            chunks.append(chunk)
        # Warm-up for both: trace the graph and create the batch shape's
        # kernels once (as any long run amortises them); Keras predict builds
        # its predict function on the first call.
        gan_style.convert_catalog(translator, chunks[0], scratch / "out0", format="jpg", progress=False,
                                  batch_size=FLAGS.batch_size)
        translator.predict(np.zeros((1, 256, 256, 3), np.uint8), verbose=0)
        convert_rates, naive_rates = [], []
        for r in range(1, FLAGS.rounds + 1):
            start = time.perf_counter()
            summary = gan_style.convert_catalog(translator, chunks[r], scratch / f"out{r}", format="jpg",
                                                batch_size=FLAGS.batch_size, progress=False)
            seconds = time.perf_counter() - start
            assert summary.converted == FLAGS.convert_chunk, summary
            convert_rates.append(summary.converted / seconds)
            naive_images = [images[(r * FLAGS.naive_chunk + i) % len(images)] for i in range(FLAGS.naive_chunk)]
            naive_rates.append(_naive(translator, naive_images, scratch / f"naive{r}"))
            print(f"round {r}: convert_catalog {convert_rates[-1]:.3f} img/s, naive {naive_rates[-1]:.3f} img/s, "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
        results["convert_img_per_s"] = float(np.median(convert_rates))
        results["naive_img_per_s"] = float(np.median(naive_rates))
        results["convert_rounds_img_per_s"] = [round(x, 4) for x in convert_rates]
        results["naive_rounds_img_per_s"] = [round(x, 4) for x in naive_rates]
        results["speedup"] = results["convert_img_per_s"] / results["naive_img_per_s"]
        results["convert_gflop_per_s"] = results["convert_img_per_s"] * gflop
        results["naive_gflop_per_s"] = results["naive_img_per_s"] * gflop
        results["int8_img_per_s"] = None
        results["int8_psnr_db"] = None
        results["int8_note"] = "no int8 path yet (issue 7 stretch goal not attempted)"
        peak = results["peak_gflop_per_s"]
        print(f"float32 matmul peak measured now: {peak:.0f} GFLOP/s")
        print(f"convert_catalog: {results['convert_img_per_s']:.2f} img/s "
              f"({results['convert_gflop_per_s']:.0f} GFLOP/s at {gflop:.1f} GFLOP/image, "
              f"{100 * results['convert_gflop_per_s'] / peak:.0f}% of peak)")
        print(f"naive loop:      {results['naive_img_per_s']:.2f} img/s ({results['naive_gflop_per_s']:.0f} GFLOP/s)")
        print(f"speedup:         {results['speedup']:.2f}x")

        for count in [int(c) for c in FLAGS.rss_counts]:
            big = scratch / f"rss{count}"
            big.mkdir()
            for i in range(count):
                sub = big / f"{i // 500:02d}"
                sub.mkdir(exist_ok=True)
                shutil.copyfile(images[i % len(images)], sub / f"{i:05d}.jpg")
            child = subprocess.run(
                [sys.executable, __file__, f"--rss_child={count}", f"--rss_dir={big}",
                 f"--rss_filters={FLAGS.rss_filters}", f"--batch_size={FLAGS.batch_size}"],
                capture_output=True, text=True, check=True,
            )
            row = json.loads(child.stdout.strip().splitlines()[-1])
            results[f"peak_rss_mb_{count}"] = row["peak_rss_mb"]
            results[f"rss_run_img_per_s_{count}"] = row["converted"] / row["seconds"]
            print(f"peak RSS, {count} images: {row['peak_rss_mb']:.0f} MB "
                  f"({row['converted'] / row['seconds']:.1f} img/s at {FLAGS.rss_filters} filters)")
            shutil.rmtree(big)
    results["load_average_at_end"] = os.getloadavg()[0]
    if FLAGS.json:
        pathlib.Path(FLAGS.json).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results))


if __name__ == "__main__":
    app.run(main)
