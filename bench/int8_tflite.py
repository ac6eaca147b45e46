"""Experiment (bench only): issue 7's int8 stretch path, a full-integer TFLite model run by XNNPACK.

:func:`int8_predict` exports a generator at one fixed input size, converts it
with TensorFlow's TFLite converter and integer quantization (int8 weights and
activations, float input and output), calibrated on real images, and returns
it as a function run by LiteRT's interpreter (``pip install ai-edge-litert``;
XNNPACK is its default CPU delegate) on as many threads as TensorFlow uses.
:mod:`convert_throughput` times it in the naive loop's shape (PIL decode ->
one ``invoke`` -> PIL encode) against ``convert_catalog`` in float32 and
measures its output's PSNR against the float32 generator's.

Not used by the library: on this CPU it is about 1.2-1.35x the float32
generator at about 19 dB (README.md of this folder has the measured figures).
Instance norm is what int8 cannot carry: its statistics and the normalised
activations need more than 8 bits, and the dynamic-range variant that keeps
activations in float (31 dB) is slower than float32 TensorFlow.
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


def int8_model(generator, calibration: list[pathlib.Path], size: int = 256) -> bytes:
    """The generator as a full-integer TFLite flatbuffer (float in and out)."""
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
        return converter.convert()


def int8_predict(generator, calibration: list[pathlib.Path], size: int = 256):
    """``predict(x) -> y``: the int8 model on float ``[1, size, size, 3]`` in [-1, 1]."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=int8_model(generator, calibration, size),
                              num_threads=os.cpu_count() or 1)
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]["index"]
    target = interpreter.get_output_details()[0]["index"]

    def predict(x: np.ndarray) -> np.ndarray:
        interpreter.set_tensor(source, x.astype(np.float32))
        interpreter.invoke()
        return interpreter.get_tensor(target)

    return predict
