"""Experiment (bench only): is OpenVINO (float32, bfloat16, NNCF int8) a faster engine here?

    pip install openvino nncf   # optional; never a gan_style dependency
    python bench/openvino_probe.py --json=/tmp/openvino.json

Times, interleaved in one process, the reference generator (``resnet_9blocks``,
64 filters, random init, batch 1, 256 px) as a TensorFlow ``tf.function`` in
float32 against the same network converted with ``openvino.convert_model``
(from a SavedModel) and compiled for the CPU in float32, in bfloat16, and after
NNCF's post-training int8 quantization (calibrated on 32 horse2zebra trainA
images). Prints images/s per round and each variant's PSNR (uint8 outputs)
against TensorFlow's float32 output on 8 testA images: issue 7's int8 target
is 2x float32 at >= 30 dB.
"""

import glob
import os
import tempfile
import time

import common
import numpy as np
from absl import app, flags
from PIL import Image

FLAGS = flags.FLAGS
flags.DEFINE_integer("rounds", 3, "Interleaved rounds.")
flags.DEFINE_integer("calls", 6, "Generator calls timed per variant and round.")
flags.DEFINE_string("json", None, "Also write the results here.")


def _load(paths) -> np.ndarray:
    images = [np.asarray(Image.open(p).convert("RGB").resize((256, 256))) for p in paths]
    return np.stack(images).astype(np.float32) / 127.5 - 1


def _to_uint8_range(y: np.ndarray) -> np.ndarray:
    """Generator output in [-1, 1] as the uint8 levels a Translator would write."""
    return np.round((np.clip(y, -1, 1) + 1) * 127.5)


def _per_second(run, calls: int) -> float:
    run()
    start = time.perf_counter()
    for _ in range(calls):
        run()
    return calls / (time.perf_counter() - start)


def main(argv):
    del argv
    import nncf
    import openvino as ov
    import tensorflow as tf

    from gan_style.networks import build_generator

    generator = build_generator("resnet_9blocks", base_filters=64, seed=0)
    forward = tf.function(lambda x: generator(x, training=False))
    calibration = _load(sorted(glob.glob(str(common.DATA / "horse2zebra/trainA/*.jpg")))[:32])
    test = _load(sorted(glob.glob(str(common.DATA / "horse2zebra/testA/*.jpg")))[:8])
    reference = np.concatenate([forward(x[None]).numpy() for x in test])

    with tempfile.TemporaryDirectory() as saved:
        generator.export(saved, verbose=False)
        model = ov.convert_model(saved, input=[1, 256, 256, 3])
    int8 = nncf.quantize(model, nncf.Dataset([x[None] for x in calibration]), subset_size=len(calibration))
    core = ov.Core()
    requests = {}
    for name, network, precision in (("openvino_f32", model, "f32"), ("openvino_bf16", model, "bf16"),
                                     ("openvino_int8", int8, "f32")):
        compiled = core.compile_model(network, "CPU", {"INFERENCE_PRECISION_HINT": precision,
                                                       "PERFORMANCE_HINT": "LATENCY",
                                                       "INFERENCE_NUM_THREADS": 2})
        requests[name] = compiled.create_infer_request()

    results = {"load_average_at_start": os.getloadavg()[0], "peak_gflop_per_s": common.matmul_peak_gflop_per_s(),
               "gflop_per_image": common.gflop_per_image(generator)}
    print(f"float32 matmul peak measured now: {results['peak_gflop_per_s']:.0f} GFLOP/s")
    for name, request in requests.items():
        outputs = np.concatenate([request.infer({0: x[None]})[0] for x in test])
        results[f"{name}_psnr_db"] = common.psnr_db(_to_uint8_range(outputs), _to_uint8_range(reference))
    x = test[:1]
    runs = {"tf_f32": lambda: forward(x).numpy()}
    runs.update({name: (lambda r=request: r.infer({0: x})) for name, request in requests.items()})
    rounds = {name: [] for name in runs}
    for _ in range(FLAGS.rounds):
        for name, run in runs.items():
            rounds[name].append(_per_second(run, FLAGS.calls))
    for name, values in rounds.items():
        results[f"{name}_rounds_img_per_s"] = values
        results[f"{name}_img_per_s"] = float(np.median(values))
        gflop_per_s = results[f"{name}_gflop_per_s"] = float(np.median(values)) * results["gflop_per_image"]
        print(f"{name}: {np.median(values):.2f} img/s (rounds {', '.join(f'{v:.2f}' for v in values)}), "
              f"{gflop_per_s:.0f} GFLOP/s (float32-equivalent)"
              + (f", {results[name + '_psnr_db']:.1f} dB" if name + "_psnr_db" in results else ""))
    for name in requests:
        results[f"{name}_over_tf_f32"] = results[f"{name}_img_per_s"] / results["tf_f32_img_per_s"]
    results["load_average_at_end"] = os.getloadavg()[0]
    results["versions"] = {"openvino": ov.__version__, "nncf": nncf.__version__, "tensorflow": tf.__version__}
    common.write_results(results, FLAGS.json)


if __name__ == "__main__":
    app.run(main)
