r"""Catalog conversion throughput and memory, against a naive loop in the same run.

    python bench/convert_throughput.py --json=/tmp/convert.json

What it measures (a benchmark, not a test; the machine's other load shows up
in the numbers, so it prints the load average next to them):

* ``convert_img_per_s``: :func:`gan_style.convert_catalog` converting the
  256x256 JPEGs of ``../shared/data/horse2zebra/testA`` (JPEG in, JPEG out)
  with ``resnet_9blocks`` at 64 filters (random init: speed does not depend on
  the weights), ``precision="float32"``.
* ``bf16_img_per_s``: the same with ``precision="bfloat16"`` (what
  ``--precision=auto`` picks on CPUs with native bfloat16), and
  ``bf16_psnr_db``: its output against float32's on the same images, for the
  random-init reference network and (``bf16_psnr_db_bundled``) for the
  trained bundled model, whose weights are what decides the error.
* ``naive_img_per_s``: the same model and the same images as each round's
  convert_catalog call, one after another: PIL decode ->
  ``Translator.predict`` on one image -> PIL encode -> write.
* ``torch_img_per_s`` (when PyTorch is installed; ``--torch=False`` skips it):
  the reference CycleGAN's own test loop over the same networks in PyTorch
  (``tests/torch_reference.py``) on the same images: one image at a time, no
  loader threads (its ``test.py`` sets ``num_threads=0, batch_size=1``), PIL
  decode -> ``ResnetGenerator`` under ``torch.inference_mode()`` -> PIL encode,
  in a worker process of its own (warmed up once, timed each round between
  the TensorFlow loops). ``convert_over_torch`` is float32 ``convert_catalog``
  over it.
* ``peak_rss_mb_200`` / ``peak_rss_mb_2000``: peak resident memory of a whole
  conversion process for 200 and 2,000 images (the 120 test images copied
  repeatedly into a scratch folder), each in a fresh subprocess; it must not
  grow with the catalog. Uses ``--rss_filters`` (default 8) so that 2,000
  images take about a minute; the pipeline, not the model, decides growth.
* ``tiled_peak_rss_mb_<side>`` for one ``side x side`` JPEG (2000 and 8000 by
  default), converted in tiles in a fresh subprocess, and
  ``tiled_bytes_per_extra_pixel``: the growth of peak RSS from the smallest to
  the largest side per extra pixel (the target: the decoded input and the
  output as uint8, 3 + 3 bytes, plus a constant).
* ``gflop_per_image`` and achieved GFLOP/s for the conversion, next to
  ``peak_gflop_per_s``: a float32 matmul probe run in the same process.
* ``int8_img_per_s`` / ``int8_psnr_db``: issue 7's int8 stretch path, an
  experiment (``bench/int8_tflite.py``, needs ``ai-edge-litert``; ``null``
  with ``int8_note`` when it is not installed or ``--int8=False``): the
  generator as a full-integer TFLite model for 256x256 inputs (the size of
  the default ``--images``) calibrated on ``--int8_calibration``
  run by XNNPACK in the naive loop's shape, one image at a time;
  ``int8_over_float32`` is its rate over float32 ``convert_catalog``'s and
  ``int8_over_naive`` over the naive float32 loop's (the same loop shape),
  and the PSNR is against the float32 generator itself, run the same way on
  the same images as bfloat16's (``int8_psnr_db_bundled`` for the bundled
  model: its generator alone, without the 32 px mirrored context its
  Translator adds, which the int8 model does not).

The loops are interleaved (``--rounds`` times: ``--convert_chunk`` images
through convert_catalog in float32, the same in bfloat16, then the same
images through the naive loop, the PyTorch loop and the int8 loop) so a
shared machine's load changes hit all of them; each rate is the median over
rounds. A convert_catalog rate includes its per-call setup (listing, tracing
the graph, cloning the bfloat16 generator): about 1% of a 120-image call,
but it dominates a chunk of a few images, so keep ``--convert_chunk`` large.
``--rounds=0`` measures memory only.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import common
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("images", str(common.DATA / "horse2zebra" / "testA"), "Folder of JPEGs.")
flags.DEFINE_integer("rounds", 3, "Interleaved rounds (0: memory only).")
flags.DEFINE_integer("convert_chunk", 0, "Images converted by convert_catalog per round (0: the whole folder).")
flags.DEFINE_integer("filters", 64, "Generator base filters for the throughput comparison.")
flags.DEFINE_integer("batch_size", 4, "convert_catalog batch size.")
flags.DEFINE_integer("rss_filters", 8, "Generator base filters for the memory runs.")
flags.DEFINE_list("rss_counts", ["200", "2000"], "Catalog sizes for the peak-RSS runs (empty: skip).")
flags.DEFINE_list("tiled_sides", ["2000", "8000"], "Image sides for the tiled peak-RSS runs (empty: skip).")
flags.DEFINE_string("json", None, "Write the results here as JSON.")
flags.DEFINE_list("precisions", ["float32", "bfloat16"], "convert_catalog precisions to time.")
flags.DEFINE_string("bundled", str(common.ROOT / "assets" / "default_translator.keras"),
                    "A trained translator for the bfloat16-vs-float32 PSNR ('' to skip).")
flags.DEFINE_bool("torch", True, "Also time the reference's PyTorch test loop (if torch is installed).")
flags.DEFINE_bool("int8", True, "Also time the int8 TFLite experiment (if ai-edge-litert is installed).")
flags.DEFINE_string("int8_calibration", str(common.DATA / "horse2zebra" / "trainA"),
                    "Folder of JPEGs calibrating the int8 model's activation ranges.")
flags.DEFINE_integer("int8_calibration_images", 32, "Calibration images for the int8 model.")
flags.DEFINE_integer("rss_child", None, "Internal: convert this many images and report peak RSS.")
flags.DEFINE_string("rss_dir", None, "Internal: the scratch catalog for --rss_child.")
flags.DEFINE_bool("torch_worker", False, "Internal: serve the PyTorch test loop to the parent process.")


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


def _timed_loop(translate, images, output: pathlib.Path) -> float:
    """Images/s of one image at a time: PIL decode -> ``translate`` (uint8 ``[1, H, W, 3]``
    -> uint8, same shape) -> PIL encode -> write. The naive loop, the PyTorch
    test loop and the int8 loop differ only in ``translate``."""
    import numpy as np
    from PIL import Image

    output.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for path in images:
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"))
        Image.fromarray(np.asarray(translate(rgb[None]))[0]).save(output / path.name, quality=95)
    return len(images) / (time.perf_counter() - start)


def _naive(translator):
    """The naive loop's model call: Keras ``predict`` on one image."""
    return lambda rgb: translator.predict(rgb, verbose=0)


def _torch_translate(filters):
    """The reference generator in PyTorch as a uint8 -> uint8 call, or None when torch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    from tests import torch_reference as ref

    torch.set_num_threads(os.cpu_count() or 1)  # as many as TensorFlow uses
    net = ref.randomize(ref.ResnetGenerator(3, 3, filters, n_blocks=9)).eval()

    def predict(x):
        with torch.inference_mode():
            y = net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
        return y.numpy().transpose(0, 2, 3, 1)

    return _uint8_model(predict)


def _torch_worker() -> None:
    """Child process: the PyTorch loop, warmed up once, timed on request.

    Reads one JSON request per line (``{"images": [...], "output": DIR}``)
    and answers ``{"img_per_s": x}``. PyTorch runs in a process of its own,
    as its users run it: in the benchmark's process its OpenMP threads (which
    spin-wait after each parallel region) shared the two cores with the
    TensorFlow loops timed next to them.
    """
    translate = _torch_translate(FLAGS.filters)
    if translate is not None:
        first = sorted(pathlib.Path(FLAGS.images).glob("*.jpg"))[:1]
        with tempfile.TemporaryDirectory() as warm:
            _timed_loop(translate, first, pathlib.Path(warm))
    print(json.dumps({"ready": translate is not None}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        rate = _timed_loop(translate, [pathlib.Path(p) for p in request["images"]],
                           pathlib.Path(request["output"]))
        print(json.dumps({"img_per_s": rate}), flush=True)


class _TorchLoop:
    """The parent's handle on :func:`_torch_worker`; None-like when torch is missing."""

    def __init__(self, filters: int, images: str):
        self.child = subprocess.Popen(
            [sys.executable, __file__, "--torch_worker", f"--filters={filters}", f"--images={images}"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self.ready = self._answer()["ready"]

    def _answer(self) -> dict:
        for line in self.child.stdout:  # skip anything a library printed
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError(f"the PyTorch worker exited with {self.child.wait()}")

    def __call__(self, images, output: pathlib.Path) -> float:
        self.child.stdin.write(json.dumps({"images": [str(p) for p in images], "output": str(output)}) + "\n")
        self.child.stdin.flush()
        return self._answer()["img_per_s"]

    def close(self) -> None:
        self.child.stdin.close()
        self.child.wait()


def _int8(generator, results):
    """The int8 TFLite model (bench/int8_tflite.py) as a uint8 -> uint8 call, or None
    (with the reason in ``results``)."""
    try:
        import ai_edge_litert  # noqa: F401
    except ImportError:
        results["int8_note"] = "ai-edge-litert is not installed (pip install ai-edge-litert)"
        return None
    from int8_tflite import int8_predict

    calibration = sorted(pathlib.Path(FLAGS.int8_calibration).glob("*.jpg"))[:FLAGS.int8_calibration_images]
    if not calibration:
        raise app.UsageError(f"no JPEGs in --int8_calibration={FLAGS.int8_calibration}")
    return _uint8_model(int8_predict(generator, calibration))


def _uint8_model(predict):
    """A uint8 -> uint8 image function around ``predict``, a model on [-1, 1] floats."""
    import numpy as np

    def run(rgb):
        y = predict(rgb.astype(np.float32) / 127.5 - 1)
        return np.clip(np.round((y + 1) * 127.5), 0, 255).astype(np.uint8)

    return run


def _generator_uint8(generator):
    """The float32 generator alone as a uint8 -> uint8 call: the int8 model's reference."""
    return _uint8_model(lambda x: generator(x, training=False).numpy())


def _psnr_to_float32(exact_fn, approx, images) -> float:
    """PSNR of ``approx`` against ``exact_fn`` (each uint8 batch -> uint8 batch) over
    ``images`` (one pooled MSE)."""
    import numpy as np
    from PIL import Image

    exact, approximate = [], []
    for path in images:
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"))[None]
        exact.append(np.asarray(exact_fn(rgb)))
        approximate.append(np.asarray(approx(rgb)))
    return common.psnr_db(np.concatenate(exact), np.concatenate(approximate))


def _precision_psnr(translator, images) -> float:
    """PSNR of bfloat16 against float32 outputs over ``images``."""
    fast = translator.with_precision("bfloat16")
    return _psnr_to_float32(lambda rgb: translator(rgb).numpy(), lambda rgb: fast(rgb).numpy(), images)


def _child_rss(count: int, catalog: pathlib.Path) -> dict:
    """Converts ``catalog`` in a fresh process; its peak RSS and timing."""
    child = subprocess.run(
        [sys.executable, __file__, f"--rss_child={count}", f"--rss_dir={catalog}",
         f"--rss_filters={FLAGS.rss_filters}", f"--batch_size={FLAGS.batch_size}"],
        capture_output=True, text=True, check=True,
    )
    return json.loads(child.stdout.strip().splitlines()[-1])


def _synthetic_jpeg(path: pathlib.Path, side: int) -> None:
    """A side x side JPEG with gradients and texture (the content does not change the memory)."""
    import numpy as np
    from PIL import Image

    ramp = np.linspace(0, 255, side, dtype=np.float32)
    rows = np.random.default_rng(0).integers(0, 32, (side, 1), dtype=np.uint8)
    image = np.empty((side, side, 3), np.uint8)
    image[..., 0] = ramp[None, :]
    image[..., 1] = ramp[:, None]
    image[..., 2] = rows
    Image.fromarray(image).save(path, quality=90)


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


def _throughput(translator, images, scratch: pathlib.Path, results: dict, gflop: float, height: int,
                width: int) -> None:
    """The interleaved throughput rounds and the PSNRs, into ``results``."""
    import numpy as np

    import gan_style

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
    for precision in FLAGS.precisions:
        gan_style.convert_catalog(translator, chunks[0], scratch / f"out0{precision}", format="jpg",
                                  progress=False, batch_size=FLAGS.batch_size, precision=precision)
    translator.predict(np.zeros((1, height, width, 3), np.uint8), verbose=0)
    naive = _naive(translator)
    torch_loop = _TorchLoop(FLAGS.filters, FLAGS.images) if FLAGS.torch else None
    if torch_loop is not None and not torch_loop.ready:
        torch_loop.close()
        torch_loop = None
    int8 = _int8(translator.generator, results) if FLAGS.int8 else None
    if int8:
        _timed_loop(int8, images[:1], scratch / "int80")
    rates = {precision: [] for precision in FLAGS.precisions}
    naive_rates, torch_rates, int8_rates = [], [], []
    for r in range(1, FLAGS.rounds + 1):
        for precision in FLAGS.precisions:
            start = time.perf_counter()
            summary = gan_style.convert_catalog(translator, chunks[r], scratch / f"out{r}{precision}",
                                                format="jpg", batch_size=FLAGS.batch_size, progress=False,
                                                precision=precision)
            seconds = time.perf_counter() - start
            assert summary.converted == FLAGS.convert_chunk, summary
            rates[precision].append(summary.converted / seconds)
        naive_images = sorted(chunks[r].glob("*.jpg"))  # what convert_catalog converted
        naive_rates.append(_timed_loop(naive, naive_images, scratch / f"naive{r}"))
        shown = ", ".join(f"convert_catalog {p} {rates[p][-1]:.3f}" for p in FLAGS.precisions)
        if torch_loop:
            torch_rates.append(torch_loop(naive_images, scratch / f"torch{r}"))
            shown += f", PyTorch loop {torch_rates[-1]:.3f}"
        if int8:
            int8_rates.append(_timed_loop(int8, naive_images, scratch / f"int8{r}"))
            shown += f", int8 TFLite loop {int8_rates[-1]:.3f}"
        print(f"round {r}: {shown}, naive {naive_rates[-1]:.3f} img/s, load {os.getloadavg()[0]:.1f}",
              flush=True)
    if torch_loop:
        torch_loop.close()
    keys = {"float32": "convert", "bfloat16": "bf16"}
    for precision in FLAGS.precisions:
        key = keys[precision]
        results[f"{key}_img_per_s"] = float(np.median(rates[precision]))
        results[f"{key}_rounds_img_per_s"] = [round(x, 4) for x in rates[precision]]
    results["naive_img_per_s"] = float(np.median(naive_rates))
    results["naive_rounds_img_per_s"] = [round(x, 4) for x in naive_rates]
    results["naive_gflop_per_s"] = results["naive_img_per_s"] * gflop
    peak = results["peak_gflop_per_s"]
    print(f"float32 matmul peak measured now: {peak:.0f} GFLOP/s")
    for precision in FLAGS.precisions:
        key = keys[precision]
        rate = results[f"{key}_img_per_s"]
        results[f"{key}_over_naive"] = rate / results["naive_img_per_s"]
        # Rounds are interleaved, so each round's ratio is a paired comparison.
        paired = [c / n for c, n in zip(rates[precision], naive_rates)]
        results[f"{key}_over_naive_rounds"] = [round(x, 3) for x in paired]
        results[f"{key}_over_naive_median_of_rounds"] = float(np.median(paired))
        results[f"{key}_gflop_per_s"] = rate * gflop
        print(f"convert_catalog {precision}: {rate:.2f} img/s ({rate * gflop:.0f} GFLOP/s at {gflop:.1f} "
              f"GFLOP/image, {100 * rate * gflop / peak:.0f}% of the float32 peak), "
              f"{results[f'{key}_over_naive']:.2f}x the naive loop (median of per-round ratios "
              f"{results[f'{key}_over_naive_median_of_rounds']:.2f}x)")
    if "convert_over_naive" in results:
        results["speedup"] = results["convert_over_naive"]
    if torch_rates:
        results["torch_img_per_s"] = float(np.median(torch_rates))
        results["torch_rounds_img_per_s"] = [round(x, 4) for x in torch_rates]
        for precision in FLAGS.precisions:
            key = keys[precision]
            results[f"{key}_over_torch"] = results[f"{key}_img_per_s"] / results["torch_img_per_s"]
            paired = [c / t for c, t in zip(rates[precision], torch_rates)]
            results[f"{key}_over_torch_median_of_rounds"] = float(np.median(paired))
            print(f"convert_catalog {precision} over the PyTorch test loop: {results[f'{key}_over_torch']:.2f}x "
                  f"(median of per-round ratios {results[f'{key}_over_torch_median_of_rounds']:.2f}x)")
    bundled = (gan_style.load_translator(FLAGS.bundled)
               if FLAGS.bundled and pathlib.Path(FLAGS.bundled).exists() else None)
    if "bfloat16" in FLAGS.precisions:
        psnr_images = images[:8]
        results["bf16_psnr_db"] = _precision_psnr(translator, psnr_images)
        if bundled is not None:
            results["bf16_psnr_db_bundled"] = _precision_psnr(bundled, psnr_images)
        if "convert_img_per_s" in results:
            results["bf16_over_float32"] = results["bf16_img_per_s"] / results["convert_img_per_s"]
        print(f"bfloat16 vs float32 output: {results['bf16_psnr_db']:.1f} dB (random-init reference net), "
              f"{results.get('bf16_psnr_db_bundled', float('nan')):.1f} dB (bundled model), "
              f"{len(psnr_images)} images")
    print(f"naive loop:      {results['naive_img_per_s']:.2f} img/s ({results['naive_gflop_per_s']:.0f} GFLOP/s)")
    results["int8_img_per_s"] = results["int8_psnr_db"] = None
    if int8_rates:
        results["int8_img_per_s"] = float(np.median(int8_rates))
        results["int8_rounds_img_per_s"] = [round(x, 4) for x in int8_rates]
        results["int8_psnr_db"] = _psnr_to_float32(_generator_uint8(translator.generator), int8, images[:8])
        if bundled is not None:
            results["int8_psnr_db_bundled"] = _psnr_to_float32(
                _generator_uint8(bundled.generator), _int8(bundled.generator, {}), images[:8])
        results["int8_over_naive"] = results["int8_img_per_s"] / results["naive_img_per_s"]
        paired = [i / n for i, n in zip(int8_rates, naive_rates)]
        results["int8_over_naive_median_of_rounds"] = float(np.median(paired))
        if "convert_img_per_s" in results:
            results["int8_over_float32"] = results["int8_img_per_s"] / results["convert_img_per_s"]
        print(f"int8 TFLite loop: {results['int8_img_per_s']:.2f} img/s "
              f"({results.get('int8_over_float32', float('nan')):.2f}x float32 convert_catalog, "
              f"{results['int8_over_naive']:.2f}x the float32 naive loop of the same shape), "
              f"{results['int8_psnr_db']:.1f} dB vs float32 (random-init reference net), "
              f"{results.get('int8_psnr_db_bundled', float('nan')):.1f} dB (bundled model)")



def main(argv):
    del argv
    if FLAGS.rss_child is not None:
        _rss_child(FLAGS.rss_child, pathlib.Path(FLAGS.rss_dir))
        return
    if FLAGS.torch_worker:
        _torch_worker()
        return
    images = sorted(pathlib.Path(FLAGS.images).glob("*.jpg"))
    if not images:
        raise app.UsageError(f"no JPEGs in --images={FLAGS.images}")
    if not FLAGS.convert_chunk:
        FLAGS.convert_chunk = len(images)
    results = {"load_average_at_start": os.getloadavg()[0], "peak_gflop_per_s": common.matmul_peak_gflop_per_s()}
    translator = _translator(FLAGS.filters)
    from PIL import Image

    with Image.open(images[0]) as first:
        width, height = first.size
    gflop = common.gflop_per_image(translator.generator, height, width)  # the default images are all this size
    results["gflop_per_image"] = round(gflop, 2)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = pathlib.Path(scratch)
        if FLAGS.rounds:
            _throughput(translator, images, scratch, results, gflop, height, width)
        for count in [int(c) for c in FLAGS.rss_counts]:
            big = scratch / f"rss{count}"
            big.mkdir()
            for i in range(count):
                sub = big / f"{i // 500:02d}"
                sub.mkdir(exist_ok=True)
                shutil.copyfile(images[i % len(images)], sub / f"{i:05d}.jpg")
            row = _child_rss(count, big)
            results[f"peak_rss_mb_{count}"] = row["peak_rss_mb"]
            results[f"rss_run_img_per_s_{count}"] = row["converted"] / row["seconds"]
            print(f"peak RSS, {count} images: {row['peak_rss_mb']:.0f} MB "
                  f"({row['converted'] / row['seconds']:.1f} img/s at {FLAGS.rss_filters} filters)")
            shutil.rmtree(big)
        sides = [int(side) for side in FLAGS.tiled_sides]
        for side in sides:
            big = scratch / f"tiled{side}"
            big.mkdir()
            _synthetic_jpeg(big / "big.jpg", side)
            row = _child_rss(side, big)
            results[f"tiled_peak_rss_mb_{side}"] = row["peak_rss_mb"]
            print(f"peak RSS, one {side}x{side} JPEG (tiled): {row['peak_rss_mb']:.0f} MB "
                  f"({row['seconds']:.1f} s at {FLAGS.rss_filters} filters)", flush=True)
            shutil.rmtree(big)
        if len(sides) > 1:
            low, high = min(sides), max(sides)
            growth = (results[f"tiled_peak_rss_mb_{high}"] - results[f"tiled_peak_rss_mb_{low}"]) * 2**20
            results["tiled_bytes_per_extra_pixel"] = growth / (high * high - low * low)
            print(f"tiled: {results['tiled_bytes_per_extra_pixel']:.2f} bytes of peak RSS per extra pixel "
                  f"({low}^2 -> {high}^2; target 6 = input + output as uint8)")
    results["load_average_at_end"] = os.getloadavg()[0]
    common.write_results(results, FLAGS.json)


if __name__ == "__main__":
    app.run(main)
