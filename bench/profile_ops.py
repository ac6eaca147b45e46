r"""Where a generator's inference time goes, by TensorFlow op type: float32 vs bfloat16.

    python bench/profile_ops.py [--generator=resnet_9blocks --filters=64 --size=256 --calls=3]

Runs the generator in one ``tf.function`` (as ``infer.py`` does) under the
TensorFlow profiler, once per precision, reads the trace's XPlane (the
host's op events) and prints per op type the milliseconds per image and the
share of the total op time. Op events only: time the threads spend between
ops is not in the table.
"""

import collections
import glob
import os
import pathlib
import tempfile

import common  # noqa: F401 (first: the repository on sys.path, TF's C++ logs quiet)
from absl import app, flags

flags.DEFINE_string("generator", "resnet_9blocks", "Generator network.")
flags.DEFINE_integer("filters", 64, "Generator base filters.")
flags.DEFINE_integer("size", 256, "Image side.")
flags.DEFINE_integer("calls", 3, "Profiled calls (after one warm-up call).")
flags.DEFINE_integer("top", 12, "Op types to list.")
FLAGS = flags.FLAGS


def op_times(logdir: str) -> dict[str, float]:
    """Total microseconds per op type over the host's TensorFlow op events."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    totals: dict[str, float] = collections.defaultdict(float)
    for path in glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True):
        space = xplane_pb2.XSpace()
        space.ParseFromString(pathlib.Path(path).read_bytes())
        for plane in space.planes:
            if not plane.name.startswith("/host:CPU"):
                continue
            names = {i: m.name for i, m in plane.event_metadata.items()}
            for line in plane.lines:
                if not line.name.startswith(("tf_Compute", "tf_numa")):
                    continue  # the Python thread's events are the calls, not ops
                for event in line.events:
                    name = names.get(event.metadata_id, "?")
                    # Op events are named "scope/op_name:OpType"; the
                    # executor's own bookkeeping ("Class::Method") is not an op.
                    if ":" not in name or "::" in name:
                        continue
                    totals[name.rsplit(":", 1)[-1]] += event.duration_ps / 1e6
    return totals


def main(argv):
    del argv
    import numpy as np
    import tensorflow as tf

    from gan_style.networks import build_generator
    from gan_style.precision import generator_with_precision

    generator = build_generator(FLAGS.generator, base_filters=FLAGS.filters, seed=0)
    x = tf.constant(np.random.RandomState(0).uniform(-1, 1, (1, FLAGS.size, FLAGS.size, 3)).astype(np.float32))
    for precision in ("float32", "bfloat16"):
        model = generator_with_precision(generator, precision)
        fn = tf.function(model.__call__)
        fn(x, training=False).numpy()
        with tempfile.TemporaryDirectory() as logdir:
            tf.profiler.experimental.start(logdir)
            for _ in range(FLAGS.calls):
                fn(x, training=False).numpy()
            tf.profiler.experimental.stop()
            totals = op_times(logdir)
        total = sum(totals.values())
        print(f"\n{precision}: {total / 1e3 / FLAGS.calls:.0f} ms of op time per image "
              f"({FLAGS.generator}, {FLAGS.filters} filters, {FLAGS.size} px)")
        for op_type, us in sorted(totals.items(), key=lambda kv: -kv[1])[: FLAGS.top]:
            print(f"  {op_type:<28} {us / 1e3 / FLAGS.calls:8.1f} ms  {100 * us / total:5.1f}%")


if __name__ == "__main__":
    app.run(main)
