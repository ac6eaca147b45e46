"""Experiment (bench only): issue 7's int8 stretch path, a full-integer TFLite model run by XNNPACK.

:func:`int8_predict` exports a generator at one fixed input size, converts it
with TensorFlow's TFLite converter and integer quantization (int8 weights and
activations, float input and output), calibrated on real images, and returns
it as a function run by LiteRT's interpreter (``pip install ai-edge-litert``;
XNNPACK is its default CPU delegate) on as many threads as TensorFlow uses.
:mod:`convert_throughput` times it in the naive loop's shape (PIL decode ->
one ``invoke`` -> PIL encode) against ``convert_catalog`` in float32 and
measures its output's PSNR against the float32 generator's.

``float_ops`` keeps some TFLite op types in float (selective quantization,
TensorFlow's ``QuantizationDebugger`` with ``denylisted_ops``): with every op
of instance norm kept in float, the int8 error is still about 23 dB, so the
int8 convolutions themselves lose most of the precision.
``python bench/int8_tflite.py`` times the variants side by side against the
float32 generator (README.md of this folder has the figures).

Not used by the library: on this CPU it is about 1.2-1.5x the float32
generator at 19-23 dB, far from issue 7's 2x at 30 dB; the dynamic-range
variant that keeps activations in float (31 dB) is slower than float32
TensorFlow.
"""

import os
import pathlib
import tempfile

import numpy as np
from PIL import Image


def _to_input(path: pathlib.Path, size: int) -> np.ndarray:
    with Image.open(path) as image:
        image = image.convert("RGB")
        if image.size != (size, size):
            image = image.resize((size, size))
        rgb = np.asarray(image, np.float32)
    return (rgb / 127.5 - 1)[None]


#: Every TFLite op instance norm becomes (mean, variance, rsqrt, scale and shift).
NORM_OPS = ("MEAN", "NEG", "SUB", "SQUARE", "RSQRT", "MUL", "ADD", "RESHAPE")


def int8_model(generator, calibration: list[pathlib.Path], size: int = 256,
               float_ops: tuple[str, ...] = ()) -> bytes:
    """The generator as an integer-quantized TFLite flatbuffer (float in and
    out); ops of the types in ``float_ops`` stay float."""
    import keras
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as saved:
        archive = keras.export.ExportArchive()
        archive.track(generator)
        archive.add_endpoint("serve", lambda x: generator(x, training=False),
                             input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32)])
        archive.write_out(saved, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([_to_input(p, size)] for p in calibration)
        if not float_ops:
            return converter.convert()
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=converter.representative_dataset,
            debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=list(float_ops)))
        return debugger.get_nondebug_quantized_model()


def int8_predict(generator, calibration: list[pathlib.Path], size: int = 256, float_ops: tuple[str, ...] = ()):
    """``predict(x) -> y``: the int8 model on float ``[1, size, size, 3]`` in [-1, 1]."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=int8_model(generator, calibration, size, float_ops),
                              num_threads=os.cpu_count() or 1)
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]["index"]
    target = interpreter.get_output_details()[0]["index"]

    def predict(x: np.ndarray) -> np.ndarray:
        interpreter.set_tensor(source, x.astype(np.float32))
        interpreter.invoke()
        return interpreter.get_tensor(target)

    return predict


def main(argv) -> None:
    """Full int8 and two selective variants against the float32 generator, side by side."""
    del argv
    import time

    import common
    import tensorflow as tf
    from absl import flags

    from gan_style.networks import build_generator

    flags_ = flags.FLAGS
    generator = build_generator("resnet_9blocks", base_filters=64, seed=0)
    data = pathlib.Path(flags_.data)
    calibration = sorted((data / "trainA").glob("*.jpg"))[:32]
    images = [_to_input(p, 256) for p in sorted((data / "testA").glob("*.jpg"))[:flags_.images]]
    exact = tf.function(lambda x: generator(x, training=False))
    variants = {"float32 (TensorFlow)": lambda x: exact(x).numpy()}
    for name, float_ops in (("int8", ()), ("int8, norm in float", NORM_OPS),
                            ("int8, norm + transposed convs in float", (*NORM_OPS, "TRANSPOSE_CONV", "TANH"))):
        variants[name] = int8_predict(generator, calibration, float_ops=float_ops)

    def to_uint8(y):
        return np.clip(np.round((y + 1) * 127.5), 0, 255).astype(np.uint8)

    reference = np.concatenate([to_uint8(variants["float32 (TensorFlow)"](x)) for x in images])
    seconds = {name: [] for name in variants}
    for _ in range(flags_.rounds):  # interleaved, so drift hits every variant alike
        for name, predict in variants.items():
            predict(images[0])
            start = time.perf_counter()
            for x in images:
                predict(x)
            seconds[name].append(time.perf_counter() - start)
    base = len(images) / float(np.median(seconds["float32 (TensorFlow)"]))
    results = {}
    for name, predict in variants.items():
        rate = len(images) / float(np.median(seconds[name]))
        psnr = None if name.startswith("float32") else common.psnr_db(
            reference, np.concatenate([to_uint8(predict(x)) for x in images]))
        results[name] = {"img_per_s": rate, "over_float32": rate / base, "psnr_db": psnr}
        print(f"{name:42s} {rate:5.2f} img/s  {rate / base:4.2f}x float32  "
              + ("reference" if psnr is None else f"{psnr:5.1f} dB"))
    results["peak_gflop_per_s"] = common.matmul_peak_gflop_per_s()
    common.write_results(results, flags_.json)


if __name__ == "__main__":
    import common  # noqa: F401 - the import path and quiet logs, before TensorFlow
    from absl import app, flags

    flags.DEFINE_string("data", str(common.DATA / "horse2zebra"), "Folder with trainA/ (calibration) and testA/.")
    flags.DEFINE_integer("images", 8, "Test images per round.")
    flags.DEFINE_integer("rounds", 3, "Timed rounds (medians reported).")
    flags.DEFINE_string("json", None, "Write the results here.")
    app.run(main)
