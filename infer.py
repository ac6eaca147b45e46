r"""Converts a product catalog with a gan_style translator.

    python infer.py --input=catalog/ --output=styled/ --model=translator.keras \
        [--tone=warm|profile.json] [--strength=0.8] [--format=same|jpg|png|webp] \
        [--quality=95] [--batch_size=4] [--tile=512 --overlap=96] [--max_pixels=N] \
        [--overwrite] [--num_shards=N --shard_index=I] [--precision=auto|float32|bfloat16] \
        [--context=PIXELS] \
        [--runner=local|beam [-- BEAM_OPTIONS]]

Every source gets one line in OUTPUT/manifest.jsonl (converted, skipped or
failed, with the reason). Exit status: 0 when nothing failed, 3 when some
files failed (the others are converted), 1 for a usage error (bad flag,
missing model or input), 4 when the run stopped because the manifest could
not be written (a full disk; the same command resumes) or the Beam pipeline
failed once started, 130 after Ctrl-C.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

from gan_style import convert, tiling  # noqa: E402
from gan_style.precision import PRECISIONS  # noqa: E402

FLAGS = flags.FLAGS
EXIT_STOPPED = 4  # the run stopped: the manifest could not be written, or the Beam pipeline failed
flags.DEFINE_string("input", None, "A folder (walked recursively), a glob, or a text file listing image paths.")
flags.DEFINE_string("output", None, "Output folder; mirrors the input's relative structure.")
flags.DEFINE_string(
    "model", None, f"Translator .keras file (default: the bundled {convert.DEFAULT_MODEL_PATH.name})."
)
flags.DEFINE_string("tone", None, "Tonal preset name (warm, cool, vivid, ...) or a profile JSON file.")
flags.DEFINE_float("strength", None, "Style strength 0..1 (default: the profile's, 1.0 for presets).")
flags.DEFINE_enum("format", "same", ["same", "jpg", "png", "webp"], "Output format; same keeps the source's.")
flags.DEFINE_integer("quality", 95, "JPEG/WebP quality 1..100.")
flags.DEFINE_integer("batch_size", 4, "Images of one size per model call.")
flags.DEFINE_integer("tile", tiling.DEFAULT_TILE, "Images with a side over this are converted in tiles; 0 never tiles.")
flags.DEFINE_integer("overlap", tiling.DEFAULT_OVERLAP, "Overlap of neighbouring tiles in pixels.")
flags.DEFINE_integer("max_pixels", None, "Sources with more pixels than this fail (checked from the header). "
                     "Without it PIL refuses images over 178,956,970 pixels as decompression bombs; "
                     "a larger value allows them.")
flags.DEFINE_bool("overwrite", False, "Convert again even sources the manifest records as done.")
flags.DEFINE_integer("num_shards", 1, "Split the catalog into this many shards (by a stable hash of the path).")
flags.DEFINE_integer("shard_index", 0, "Which shard this worker converts, 0..num_shards-1.")
flags.DEFINE_enum(
    "precision", "auto", list(PRECISIONS),
    "Generator arithmetic: auto = bfloat16 on CPUs that compute it natively (AVX512-BF16/AMX; about 1.7x "
    "faster, ~44 dB from float32), float32 elsewhere; or force float32 / bfloat16.",
)
flags.DEFINE_integer(
    "context", None,
    "Pixels of mirrored context around each image for the generator, cropped afterwards: moves the stripes "
    "a generator draws along image borders out of the picture (default: the model's own; the bundled model's "
    "is 32).",
)
flags.DEFINE_enum(
    "runner", "local", ["local", "beam"],
    "local: this process (convert_catalog); beam: an Apache Beam pipeline (pip install gan-style[beam]), "
    "Beam's own options after `--`.",
)
flags.mark_flags_as_required(["input", "output"])


def _conversion_options() -> dict:
    """The per-file options, the same for the local and the Beam runner."""
    return dict(
        tone=FLAGS.tone,
        strength=FLAGS.strength,
        format=FLAGS.format,
        quality=FLAGS.quality,
        batch_size=FLAGS.batch_size,
        tile=FLAGS.tile,
        overlap=FLAGS.overlap,
        max_pixels=FLAGS.max_pixels,
        overwrite=FLAGS.overwrite,
        num_shards=FLAGS.num_shards,
        shard_index=FLAGS.shard_index,
        precision=FLAGS.precision,
        context=FLAGS.context,
    )


def _fail(message: str) -> int:
    print(f"infer.py: error: {message}", file=sys.stderr, flush=True)
    return 1


def main(argv):
    extra = [a for a in argv[1:] if a != "--"]
    if extra and FLAGS.runner != "beam" and FLAGS.input and all(os.path.exists(a) for a in [FLAGS.input, *extra]):
        # `--input dir/*.jpg`, unquoted: the shell passed the first match as
        # --input and the rest as arguments.
        return _fail(
            f"--input takes one folder, glob or list file; the shell expanded a pattern into {len(extra) + 1} "
            f"paths ({FLAGS.input}, {extra[0]}, ...): quote it, e.g. --input='{os.path.dirname(FLAGS.input) or '.'}/*'"
        )
    if extra and FLAGS.runner != "beam":
        raise app.UsageError(f"unexpected arguments: {' '.join(extra)} (Beam options need --runner=beam)")
    model = FLAGS.model
    if model is None:
        if not convert.DEFAULT_MODEL_PATH.exists():
            return _fail(
                "no --model given, and the bundled default model is not available yet "
                f"(looked for {convert.DEFAULT_MODEL_PATH}). Pass --model=path/to/translator.keras."
            )
        model = convert.DEFAULT_MODEL_PATH
    if FLAGS.runner == "beam":
        return _run_beam(model, extra)
    try:
        summary = convert.convert_catalog(model, FLAGS.input, FLAGS.output, **_conversion_options())
    except (FileNotFoundError, ValueError) as e:  # bad flags, found before any work
        return _fail(str(e))
    except convert.ManifestWriteError as e:
        print(f"infer.py: {e.strerror}", file=sys.stderr, flush=True)
        return EXIT_STOPPED
    except KeyboardInterrupt:
        # Every finished file is written and recorded; the manifest lets the
        # same command pick up where this one stopped.
        print(f"\ninfer.py: interrupted; run the same command again to resume "
              f"(done files are in {FLAGS.output}/manifest*.jsonl)", file=sys.stderr, flush=True)
        return 130
    print(summary, flush=True)
    if summary.failed:
        # A few reasons here: when every file fails alike (a list of
        # absolute paths, say), the first one says why.
        examples = "".join(f"\n  {rel}: {reason}" for rel, reason in summary.failures)
        more = f" (the first {len(summary.failures)} below)" if summary.failed > len(summary.failures) else ""
        logging.warning("%d file(s) failed%s; every reason is in %s%s", summary.failed, more, summary.manifest,
                        examples)
    return summary.exit_code


def _run_beam(model, pipeline_args) -> int:
    """The same flags, run as an Apache Beam pipeline (gan_style.beam)."""
    try:
        from gan_style import beam as beam_conversion
    except ImportError as e:
        return _fail(f"--runner=beam needs Apache Beam: pip install 'gan-style[beam]' ({e})")
    try:
        summary = beam_conversion.run_pipeline(
            model, FLAGS.input, FLAGS.output, pipeline_args=pipeline_args, **_conversion_options()
        )
    except (FileNotFoundError, ValueError) as e:
        return _fail(str(e))
    except beam_conversion.PipelineFailed as e:
        print(f"infer.py: {e}", file=sys.stderr, flush=True)
        return EXIT_STOPPED
    print(summary, flush=True)
    if summary.failed:
        logging.warning("%d file(s) failed; see the dead_letter.beam-*.jsonl files in %s", summary.failed, FLAGS.output)
    return summary.exit_code


if __name__ == "__main__":
    app.run(main)
