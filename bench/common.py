"""What every benchmark script shares: the import path, quiet TF logs, the
float32 peak probe and the JSON output.

The scripts run as ``python bench/NAME.py``, so this folder is already on
``sys.path``; importing this module first puts the repository root there too
(for ``gan_style`` and ``tests.torch_reference``) and silences TF's C++ INFO
logs before TensorFlow is imported.
"""

import json
import os
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def matmul_peak_gflop_per_s(n: int = 2048, seconds: float = 3.0) -> float:
    """The machine's float32 peak right now: best GFLOP/s of repeated ``n x n``
    matmuls (2 n^3 flops each) over ``seconds``.

    Measured in the same run as the benchmark, so the printed distance to the
    limit sees the same load as the numbers next to it.
    """
    import tensorflow as tf

    a = tf.random.stateless_normal([n, n], seed=[1, 2])
    b = tf.random.stateless_normal([n, n], seed=[3, 4])
    matmul = tf.function(lambda x, y: tf.reduce_sum(tf.matmul(x, y)))
    matmul(a, b).numpy()
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        matmul(a, b).numpy()
        best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


def _forward_gflop(model, height: int, width: int, training: bool) -> float:
    """GFLOPs of one forward call on a ``[1, height, width, 3]`` image (2 per
    multiply-add, counted from the traced graph)."""
    import tensorflow as tf

    function = tf.function(lambda x: model(x, training=training))
    graph = function.get_concrete_function(tf.TensorSpec([1, height, width, 3], tf.float32)).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return tf.compat.v1.profiler.profile(graph, options=options).total_float_ops / 1e9


def gflop_per_image(generator, height: int = 256, width: int = 256) -> float:
    """GFLOPs of translating one ``height x width`` image with ``generator``."""
    return _forward_gflop(generator, height, width, training=False)


def train_gflop_per_image(size: int) -> float:
    """GFLOPs of one CycleGAN step on a ``size`` crop, reference networks (64 filters).

    A layer's backward pass costs about its forward for the gradient of its
    input and as much again for that of its weights. The six generator calls
    need both (3x their forward). The two discriminator calls of the
    generator pass need input gradients only (2x). The four of the
    discriminators' own pass need weight gradients, which take the input
    gradients of every layer but the first as well (3x, less the first
    layer's input gradient, left in).
    """
    from gan_style.networks import build_discriminator, build_generator

    gen, disc = build_generator("resnet_9blocks"), build_discriminator("basic")
    return 3 * 6 * _forward_gflop(gen, size, size, True) + (2 * 2 + 3 * 4) * _forward_gflop(disc, size, size, True)


def psnr_db(a, b) -> float:
    """PSNR in dB of uint8-range images, over all of them pooled (one MSE)."""
    import numpy as np

    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def write_results(results: dict, path: str | None) -> None:
    """Prints ``results`` as one JSON line and, given a ``path``, writes it there indented."""
    if path:
        pathlib.Path(path).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(json.dumps(results))
