"""The machine's float32 peak right now: a short matmul probe shared by the benchmarks.

Measured in the same run as the benchmark, so the printed "distance to the
limit" sees the same load as the numbers next to it.
"""

import time


def matmul_peak_gflop_per_s(n: int = 2048, seconds: float = 3.0) -> float:
    """Best GFLOP/s of repeated float32 ``n x n`` matmuls (2 n^3 flops each) over ``seconds``."""
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
