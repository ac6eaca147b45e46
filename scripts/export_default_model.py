r"""Turns a training run's export into the bundled default translator.

    python scripts/export_default_model.py WORKDIR [--checkpoint=latest|best|ckpt-STEP]
        [--output=assets/default_translator.keras] [--max_mb=20] [--context=32]

Wraps ``WORKDIR/export/gen_ab.keras`` (``latest``: the last checkpoint's
export) or ``WORKDIR/export/best/gen_ab.keras`` (``best``: lowest FID, when
the run evaluated) in a :class:`gan_style.Translator` with the neutral tone
and strength 1 and ``--context`` pixels of mirrored context around every
image (default 32: it moves the stripes the generator draws along image
borders out of the picture), and writes it to ``--output`` (default
``gan_style.convert.DEFAULT_MODEL_PATH``, which ``infer.py`` uses when no
``--model`` is given).

Before the file takes the output's place it must pass: size under
``--max_mb``; ``gan_style.load_translator`` reads it back in safe mode as a
Translator with the neutral tone; the loaded model converts a shipped sample
(``assets/samples/mug.png``) to the same uint8 pixels as the model in memory,
at the sample's own size. The write is atomic: a failed check or a kill leaves
any previous default model untouched.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
if (
    str(ROOT) not in sys.path
):  # run as `python scripts/export_default_model.py` from anywhere
    sys.path.insert(0, str(ROOT))
sys.path.insert(
    0, str(pathlib.Path(__file__).resolve().parent)
)  # model_card beside this file

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import model_card

DEFAULT_MAX_MB = 20.0
#: Mirrored context of the bundled model. Measured on its gallery samples: the
#: mean jump between the outermost 8 columns and columns 20-28 of chair.png is
#: 31 levels without context, 5 with 16 and 1.2 with 32 (64: 1.1).
DEFAULT_CONTEXT = 32
CHECK_SAMPLE = ROOT / "assets" / "samples" / "mug.png"


def export_default_model(
    workdir: str | os.PathLike,
    checkpoint: str = "latest",
    output: str | os.PathLike | None = None,
    *,
    max_mb: float = DEFAULT_MAX_MB,
    sample: str | os.PathLike = CHECK_SAMPLE,
    context: int = DEFAULT_CONTEXT,
) -> dict[str, Any]:
    """Writes the neutral-tone Translator of a run's ``gen_ab`` export to ``output``.

    Args:
      workdir: the training run's folder.
      checkpoint: ``latest`` (``export/gen_ab.keras``), ``best``
        (``export/best/gen_ab.keras``) or ``ckpt-<step>`` (that kept checkpoint).
      output: where to write (default ``gan_style.convert.DEFAULT_MODEL_PATH``).
      max_mb: refuse a file larger than this many MB (10^6 bytes; the issue's 20 MB cap).
      sample: an image the written model must convert (checked after loading).

    Returns:
      A summary: ``output``, ``source``, ``step``, ``parameters``,
      ``file_bytes``, ``sample``, ``sample_shape``, ``seconds``.

    Raises:
      FileNotFoundError: no such workdir/export or sample.
      ValueError: bad ``checkpoint``; the file is too large; a check failed.
    """
    import keras
    import numpy as np

    from gan_style import atomic, convert, image_io, tonal
    from gan_style.precision import generator_with_precision
    from gan_style.translator import Translator, load_translator

    start = time.perf_counter()
    source = model_card.generator_path(workdir, checkpoint)
    output = pathlib.Path(output) if output is not None else convert.DEFAULT_MODEL_PATH
    if output.suffix != ".keras":  # Keras saves only to that name (and infer.py loads only that)
        raise ValueError(f"--output {output}: the model file's name must end in .keras")
    sample = pathlib.Path(sample)
    if not sample.exists():
        raise FileNotFoundError(
            f"check sample {sample} not found (run scripts/make_samples.py)"
        )
    run = model_card.read_run(workdir, checkpoint)

    generator = keras.saving.load_model(source, safe_mode=True, compile=False)
    # Runs exported before training saved float32 generators may carry the
    # training's mixed policy; the bundled model is float32 (infer.py picks
    # the precision to run it in).
    generator = generator_with_precision(generator, "float32")
    translator = Translator(
        generator, tone=None, strength=1.0, context=context, name="default_translator"
    )

    image = image_io.load_rgb(sample)[None]
    expected = np.asarray(translator(image))  # also builds it before saving
    output.parent.mkdir(parents=True, exist_ok=True)
    # Checked before it replaces the shipped model: a failed check leaves that as it was.
    with atomic.replacing(output) as temporary:
        translator.save(temporary)
        size = temporary.stat().st_size
        if size > max_mb * 1e6:
            raise ValueError(
                f"{source} makes a {size / 1e6:.1f} MB translator, over --max_mb={max_mb:g}: "
                "train a smaller generator (fewer filters or blocks)"
            )
        loaded = load_translator(temporary)  # safe mode
        if not isinstance(loaded, Translator):
            raise ValueError(
                f"{temporary} loaded as {type(loaded).__name__}, not a Translator"
            )
        neutral = tonal.PRESETS["neutral"]
        if (
            loaded.profile.tonal_params() != neutral.tonal_params()
            or loaded.strength != 1.0
        ):
            raise ValueError(
                f"{temporary}: saved tone {loaded.profile.tonal_params()} strength "
                f"{loaded.strength} is not neutral at strength 1"
            )
        got = np.asarray(loaded(image))
        if got.shape != image.shape or got.dtype != np.uint8:
            raise ValueError(
                f"{sample}: converted to {got.shape} {got.dtype}, expected {image.shape} uint8"
            )
        if not np.array_equal(got, expected):
            raise ValueError(
                f"{temporary}: the loaded model converts {sample.name} differently from the saved one "
                f"(max difference {np.abs(got.astype(int) - expected.astype(int)).max()})"
            )
    return {
        "output": str(output),
        "source": str(source),
        "checkpoint": checkpoint,
        "step": run.get("step"),
        "parameters": int(generator.count_params()),
        "context": translator.context,
        "file_bytes": output.stat().st_size,
        "sample": str(sample),
        "sample_shape": list(image.shape[1:]),
        "seconds": round(time.perf_counter() - start, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python scripts/export_default_model.py",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("workdir", help="the training run's folder")
    parser.add_argument(
        "--checkpoint", default="latest", help="latest, best or ckpt-<step> (a kept checkpoint)"
    )
    parser.add_argument(
        "--output", default=None, help="default: assets/default_translator.keras"
    )
    parser.add_argument("--max_mb", type=float, default=DEFAULT_MAX_MB)
    parser.add_argument(
        "--context", type=int, default=DEFAULT_CONTEXT,
        help="pixels of mirrored context around each image (0: none)",
    )
    args = parser.parse_args(argv)
    try:
        summary = export_default_model(
            args.workdir, args.checkpoint, args.output, max_mb=args.max_mb, context=args.context
        )
    except (FileNotFoundError, ValueError) as error:
        print(f"export_default_model.py: error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
