r"""Training losses of two runs side by side: does a faster setting keep quality?

    python bench/precision_curves.py --runs=float32:/root/runs/a,mixed_bfloat16:/root/runs/b \
        --first_step=2600 --out=bench/precision_curves.png --json=/tmp/curves.json

Reads each run's TensorBoard scalars (``train/*_loss``, written by
gan_style's ScalarLogger as means over ``train.log_every_steps`` steps),
plots every loss for every run on one figure, and prints per loss the mean
over the common steps for each run, the difference of the means, and that
difference in units of its standard error (the logged windows' spread /
sqrt(n)), so "within noise" is a number.
"""

import glob
import math
import pathlib

import common
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_list("runs", None, "label:workdir pairs; the first is the baseline.")
flags.DEFINE_integer("first_step", 0, "Ignore scalars logged at or before this step.")
flags.DEFINE_integer("last_step", 0, "Ignore scalars logged after this step (0: no limit).")
flags.DEFINE_string("out", None, "Write the figure here (PNG).")
flags.DEFINE_string("json", None, "Write the numbers here.")
flags.mark_flag_as_required("runs")


def read_losses(workdir: str, first: int, last: int) -> dict[str, dict[int, float]]:
    """``{tag: {step: value}}`` for the ``train/*_loss`` scalars of one workdir."""
    import tensorflow as tf

    losses: dict[str, dict[int, float]] = {}
    files = sorted(glob.glob(str(pathlib.Path(workdir) / "tensorboard" / "**" / "events.out.tfevents.*"),
                   recursive=True))
    if not files:
        raise app.UsageError(f"--runs: no TensorBoard event files under {workdir}/tensorboard")
    for path in files:
        for event in tf.compat.v1.train.summary_iterator(path):
            if event.step <= first or (last and event.step > last):
                continue
            for value in event.summary.value:
                if value.tag.startswith("train/") and value.tag.endswith("_loss"):
                    number = float(tf.make_ndarray(value.tensor)) if value.HasField("tensor") else value.simple_value
                    losses.setdefault(value.tag[len("train/"):], {})[event.step] = number
    return losses


def compare(base: dict[int, float], other: dict[int, float]) -> dict:
    steps = sorted(set(base) & set(other))
    n = len(steps)
    a = [base[s] for s in steps]
    b = [other[s] for s in steps]

    def mean(xs):
        return sum(xs) / len(xs)

    def var(xs):
        m = mean(xs)
        return sum((x - m) ** 2 for x in xs) / max(1, len(xs) - 1)

    diff = mean(b) - mean(a)
    stderr = math.sqrt(var(a) / n + var(b) / n) if n > 1 else float("nan")
    return {"windows": n, "first": steps[0], "last": steps[-1], "base_mean": mean(a), "mean": mean(b),
            "diff": diff, "diff_in_stderr": diff / stderr if stderr else float("nan")}


def main(argv):
    del argv
    runs = []
    for item in FLAGS.runs:
        label, sep, workdir = item.partition(":")
        if not sep:
            raise app.UsageError(f"--runs: expected label:workdir, got {item!r}")
        runs.append((label, read_losses(workdir, FLAGS.first_step, FLAGS.last_step)))
    base_label, base = runs[0]
    results = {}
    for label, losses in runs[1:]:
        for tag in sorted(base):
            if tag in losses and set(base[tag]) & set(losses[tag]):
                row = compare(base[tag], losses[tag])
                results[f"{label}/{tag}"] = row
                print(f"{tag:>14}: {base_label} {row['base_mean']:.4f}  {label} {row['mean']:.4f}  "
                      f"diff {row['diff']:+.4f} = {row['diff_in_stderr']:+.2f} standard errors "
                      f"({row['windows']} windows, steps {row['first']}-{row['last']})")
    if FLAGS.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        tags = sorted(base)
        cols = 4
        rows = math.ceil(len(tags) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
        for ax, tag in zip(axes.flat, tags):
            for label, losses in runs:
                points = sorted(losses.get(tag, {}).items())
                if points:
                    ax.plot([p[0] for p in points], [p[1] for p in points], marker=".", label=label)
            ax.set_title(tag)
            ax.set_xlabel("step")
        for ax in list(axes.flat)[len(tags):]:
            ax.axis("off")
        axes.flat[0].legend()
        fig.tight_layout()
        fig.savefig(FLAGS.out, dpi=80)
        print(f"wrote {FLAGS.out}")
    common.write_results(results, FLAGS.json)


if __name__ == "__main__":
    app.run(main)
