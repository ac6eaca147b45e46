r"""Computes the numbers of ``assets/MODEL_CARD.md`` from a training workdir.

    python scripts/model_card.py WORKDIR [--checkpoint=latest|best|ckpt-STEP] [--model=PATH]
        [--source=../shared/data/ikea/test] [--target=../shared/data/monet]
        [--limit=N] [--json=card.json] [--no_scores]

Reads the run from WORKDIR (``config.json``; the step from the checkpoint
state, or from ``export/best/scores.json`` with ``--checkpoint=best``; wall
time and throughput from the TensorBoard event files) and scores its
``gen_ab`` translator (neutral tone, strength 1) with the project's own
evaluation code, the same functions ``python -m gan_style.evaluate`` runs:

* translated ``--source`` against ``--target``: FID, KID, and the mean SSIM
  and PSNR of each translation to its source
  (``gan_style.evaluate.evaluate_translator``);
* untranslated ``--source`` against ``--target``: FID, KID
  (``gan_style.evaluate.evaluate_folders``), the baseline the issue's quality
  bar compares with (translated KID at most half the untranslated one).

Prints a markdown block for the card's "Training run" and "Evaluation"
sections (and, with ``--json``, writes every number). ``--model`` scores
another translator (e.g. the bundled ``assets/default_translator.keras``)
while the run facts still come from WORKDIR. ``--limit=N`` scores only the
first N images of each folder, for a quick check (the card needs the full
sets). Needs the TF-FID Inception weights (see ``scripts/get_inception_weights.sh``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import re
import sys
import tempfile
import time
from typing import Any

import ml_collections

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python scripts/model_card.py` from anywhere
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "ikea" / "test"
DEFAULT_TARGET = ROOT.parent / "shared" / "data" / "monet"
CHECKPOINTS = ("latest", "best")
#: The issue's quality bar: translated KID at most this fraction of untranslated KID.
KID_RATIO_BAR = 0.5


# ---------------------------------------------------------------------------
# Facts about the run, from the workdir alone (no TensorFlow graph needed).


def generator_path(
    workdir: str | os.PathLike, checkpoint: str = "latest"
) -> pathlib.Path:
    """``export/gen_ab.keras`` (latest), ``export/best/gen_ab.keras`` (best by
    FID) or, for ``ckpt-<step>``, ``export/ckpt-<step>/gen_ab.keras`` (exported
    from that kept checkpoint first if needed).

    Raises:
      ValueError: unknown ``checkpoint``.
      FileNotFoundError: the workdir has no such export; the message says why.
    """
    step = checkpoint_step(checkpoint)
    workdir = pathlib.Path(workdir)
    if not workdir.is_dir():
        raise FileNotFoundError(f"workdir {str(workdir)!r} is not a directory")
    export = workdir / "export"
    if step is not None:
        path = export / checkpoint / "gen_ab.keras"
        if not path.exists():
            from gan_style import training

            training.export_checkpoint(workdir, step)
        return path
    path = (
        export / "gen_ab.keras"
        if checkpoint == "latest"
        else export / "best" / "gen_ab.keras"
    )
    if not path.exists():
        if checkpoint == "best":
            raise FileNotFoundError(
                f"{path} not found: the run keeps a best export only with eval.every_epochs > 0 "
                "(and after its first evaluation); use --checkpoint=latest"
            )
        raise FileNotFoundError(
            f"{path} not found: is {str(workdir)!r} a training workdir that saved a checkpoint yet?"
        )
    return path


def checkpoint_step(checkpoint: str) -> int | None:
    """``ckpt-<step>`` -> step; ``latest``/``best`` -> None; anything else: ValueError."""
    if checkpoint in CHECKPOINTS:
        return None
    match = re.fullmatch(r"ckpt-(\d+)", checkpoint)
    if not match:
        raise ValueError(
            f"--checkpoint must be one of {', '.join(CHECKPOINTS)} or ckpt-<step>, got {checkpoint!r}"
        )
    return int(match.group(1))


def _checkpoint_step(workdir: pathlib.Path) -> int | None:
    """The step of the latest checkpoint (``ckpt-<step>`` in ``checkpoints/checkpoint``)."""
    state = workdir / "checkpoints" / "checkpoint"
    if not state.exists():
        return None
    for line in state.read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model_checkpoint_path":
            name = value.strip().strip('"')
            try:
                return int(name.rsplit("-", 1)[1])
            except (IndexError, ValueError):
                return None
    return None


def read_events(workdir: str | os.PathLike) -> dict[str, Any]:
    """Wall time and throughput from ``workdir/tensorboard/events.out.tfevents.*``.

    Each training session (a start or a resume) writes its own event file, so
    the wall time is the sum over files of (last event - first event): the
    gaps between sessions do not count, startup and evaluation inside a
    session do.

    Returns:
      ``wall_seconds``, ``sessions``, ``last_logged_step``,
      ``images_per_second`` (mean of the logged ``train/images_per_second``,
      None if none was logged).
    """
    import tensorflow as tf
    from tensorflow.core.util import event_pb2

    files = sorted(
        (pathlib.Path(workdir) / "tensorboard").glob("events.out.tfevents.*")
    )
    wall = 0.0
    sessions = 0
    last_step = None
    rates = []
    for path in files:
        first = last = None
        try:
            for record in tf.data.TFRecordDataset(str(path)):
                event = event_pb2.Event.FromString(record.numpy())
                first = event.wall_time if first is None else first
                last = event.wall_time
                for value in event.summary.value:
                    if value.tag.startswith("train/"):
                        last_step = max(last_step or 0, int(event.step))
                    if value.tag == "train/images_per_second":
                        rates.append(float(tf.make_ndarray(value.tensor)))
        except tf.errors.DataLossError:  # a file still being written ends mid-record
            pass
        if first is not None:
            sessions += 1
            wall += last - first
    return {
        "wall_seconds": wall,
        "sessions": sessions,
        "last_logged_step": last_step,
        "images_per_second": sum(rates) / len(rates) if rates else None,
    }


def read_run(workdir: str | os.PathLike, checkpoint: str = "latest") -> dict[str, Any]:
    """Everything about the run that does not need the model evaluated.

    Returns:
      ``workdir``, ``checkpoint``, ``generator_path``, ``step`` (the export's
      step: latest checkpoint, or the best export's ``scores.json``),
      ``config`` (the resolved config.json as a dict), ``epochs_done``
      (``step / steps_per_epoch`` when the data sizes are known), the
      :func:`read_events` keys, and ``best_scores`` for ``best``.
    """
    workdir = pathlib.Path(workdir)
    path = generator_path(workdir, checkpoint)
    config_file = workdir / "config.json"
    if not config_file.exists():
        raise FileNotFoundError(
            f"{config_file} not found: training writes it when it starts"
        )
    try:
        config = json.loads(config_file.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{config_file}: not valid JSON: {error}") from None
    run: dict[str, Any] = {
        "workdir": str(workdir),
        "checkpoint": checkpoint,
        "generator_path": str(path),
        "config": config,
    }
    if checkpoint == "best":
        scores = json.loads((path.parent / "scores.json").read_text())
        run["best_scores"] = scores
        run["step"] = int(scores["step"])
    elif checkpoint_step(checkpoint) is not None:
        run["step"] = checkpoint_step(checkpoint)
    else:
        run["step"] = _checkpoint_step(workdir)
    run.update(read_events(workdir))
    data = config.get("data", {})
    try:
        from gan_style import input_pipeline

        # The files training read: data.max_images and nested test folders applied.
        sizes = {
            key: len(input_pipeline.domain_files(ml_collections.ConfigDict(data), split))
            for key, split in (("train_a", "trainA"), ("train_b", "trainB"))
        } if not data.get("tfds_name") else {}
    except ValueError:  # a folder gone or empty since (named by domain_files)
        sizes = {}
    run["train_sizes"] = sizes
    batch = config.get("train", {}).get("batch_size")
    if len(sizes) == 2 and batch and run["step"] is not None:
        steps_per_epoch = max(sizes.values()) // batch
        run["steps_per_epoch"] = steps_per_epoch
        run["epochs_done"] = run["step"] / steps_per_epoch
    return run


# ---------------------------------------------------------------------------
# Scores, with gan_style.evaluate.


def _first_images(
    folder: pathlib.Path, limit: int | None, into: pathlib.Path
) -> pathlib.Path:
    """``folder`` itself, or a folder of symlinks to its first ``limit`` images."""
    if not limit:
        return folder
    from gan_style.image_io import list_images

    into.mkdir(parents=True)
    for path in list_images(folder)[:limit]:
        (into / path.relative_to(folder)).parent.mkdir(parents=True, exist_ok=True)
        (into / path.relative_to(folder)).symlink_to(path.resolve())
    return into


def score(
    translator,
    source: str | os.PathLike = DEFAULT_SOURCE,
    target: str | os.PathLike = DEFAULT_TARGET,
    *,
    inception=None,
    inception_weights: str | os.PathLike | None = None,
    limit: int | None = None,
    batch_size: int = 50,
    progress: bool = True,
) -> dict[str, Any]:
    """KID/FID of translated and untranslated ``source`` against ``target``, and SSIM.

    Args:
      translator: a Translator or a path to its ``.keras`` (or a bare generator's).
      inception: a feature model (default ``gan_style.metrics.load_inception``).
      limit: score only the first ``limit`` images of each folder.

    Returns:
      ``translated`` and ``untranslated`` (the dicts ``gan_style.evaluate``
      returns: ``fid``, ``kid``, ``kid_std``, ..., and for ``translated``
      ``ssim``, ``psnr``), ``kid_ratio`` (translated / untranslated),
      ``passes_kid_bar`` (ratio <= 0.5) and ``seconds`` for each half.
    """
    from gan_style import evaluate, metrics

    source_arg, target_arg = str(source), str(target)
    source, target = pathlib.Path(source), pathlib.Path(target)
    for flag, folder in (("--source", source), ("--target", target)):
        if not folder.is_dir():
            raise FileNotFoundError(f"{flag}={folder}: not a directory")
    inception = inception or metrics.load_inception(inception_weights)
    with tempfile.TemporaryDirectory() as tmp:
        source = _first_images(source, limit, pathlib.Path(tmp) / "source")
        target = _first_images(target, limit, pathlib.Path(tmp) / "target")
        common = {
            "inception": inception,
            "batch_size": batch_size,
            "progress": progress,
        }
        start = time.perf_counter()
        untranslated = evaluate.evaluate_folders(target, source, **common)
        untranslated_seconds = time.perf_counter() - start
        start = time.perf_counter()
        translated = evaluate.evaluate_translator(translator, source, target, **common)
        translated_seconds = time.perf_counter() - start
    # evaluate_folders pairs fakes with same-named reals for PSNR/SSIM; source and
    # target share no names, but drop such keys if they ever do (they'd be meaningless).
    for key in ("psnr", "ssim", "n_pairs", "n_pairs_size_mismatch"):
        untranslated.pop(key, None)
    ratio = (
        translated["kid"] / untranslated["kid"]
        if untranslated["kid"] > 0
        else float("nan")
    )
    return {
        "source_arg": source_arg,
        "target_arg": target_arg,
        "limit": limit,
        "translated": translated,
        "untranslated": untranslated,
        "kid_ratio": ratio,
        "passes_kid_bar": bool(ratio <= KID_RATIO_BAR),
        "seconds_untranslated": untranslated_seconds,
        "seconds_translated": translated_seconds,
    }


# ---------------------------------------------------------------------------
# The card's markdown.


def _hours(seconds: float) -> str:
    hours, rest = divmod(round(seconds), 3600)
    return f"{hours} h {rest // 60:02d} min ({seconds:.0f} s)"


def training_folders(data: dict) -> dict[str, str]:
    """``train_a``/``train_b`` -> the folder a folder-sourced run read, as
    training resolves it ('' where none is set)."""
    from gan_style import input_pipeline

    found = {key: input_pipeline.split_folder(ml_collections.ConfigDict(data), split)
             for key, split in (("train_a", "trainA"), ("train_b", "trainB"))}
    return {key: str(folder[0]) if folder else "" for key, folder in found.items()}


def _discriminator_summary(model: dict) -> str:
    name = model.get("discriminator")
    layers = {"basic": "3 layers, ", "n_layers": f"{model.get('discriminator_layers')} layers, "}.get(name, "")
    return f"`{name}` ({layers}{model.get('discriminator_filters')} filters)"


def _config_summary(config: dict) -> list[str]:
    model, data, train, optim = (
        config.get(k, {}) for k in ("model", "data", "train", "optim")
    )
    return [
        (
            f"generator `{model.get('generator')}`, {model.get('generator_filters')} filters, "
            f"norm `{model.get('norm')}`, upsample `{model.get('upsample')}`; discriminator "
            f"{_discriminator_summary(model)}"
        ),
        (
            f"{model.get('adversarial_loss')} loss, λ_cycle {model.get('lambda_cycle_a')}/"
            f"{model.get('lambda_cycle_b')}, λ_identity {model.get('lambda_identity')}, pool "
            f"{model.get('pool_size')}"
        ),
        (
            f"images loaded at {data.get('load_size')} px, random {data.get('crop_size')} px crops "
            f"(`{data.get('preprocess')}`, flip {data.get('flip')}); batch {train.get('batch_size')}; "
            f"precision `{train.get('precision')}`"
        ),
        f"Adam lr {optim.get('learning_rate')} (β1 {optim.get('beta_1')}), {train.get('epochs')} "
        f"epochs constant + {train.get('epochs_decay')} linear decay"
        + (
            f", stopped at max_steps {train['max_steps']}"
            if train.get("max_steps")
            else ""
        ),
    ]


def markdown(
    run: dict[str, Any], scores: dict[str, Any] | None, model_info: dict | None = None
) -> str:
    """The card's "Training run" and "Evaluation" sections as markdown."""
    config = run["config"]
    data = config.get("data", {})
    sizes = run.get("train_sizes", {})
    lines = ["## Training run", ""]
    if data.get("tfds_name"):
        lines.append(f"- Data: TFDS `{data['tfds_name']}`")
    else:
        folders = training_folders(data)
        lines.append(
            f"- Data: A = `{folders['train_a']}` ({sizes.get('train_a', '?')} images), "
            f"B = `{folders['train_b']}` ({sizes.get('train_b', '?')} images)"
        )
    lines += [f"- Config: {item}" for item in _config_summary(config)]
    step = run.get("step")
    epochs = (
        f" ({run['epochs_done']:.2f} epochs of {run['steps_per_epoch']} steps)"
        if "epochs_done" in run
        else ""
    )
    lines.append(
        f"- Steps: {step if step is not None else 'unknown'}{epochs}, `{run['checkpoint']}` export"
    )
    rate = run.get("images_per_second")
    lines.append(
        f"- Wall time: {_hours(run['wall_seconds'])} over {run['sessions']} session(s) "
        "(from the TensorBoard event files; gaps between sessions not counted)"
        + (f"; {rate:.2f} training images/s (the unweighted mean of the logged per-interval rates)"
           if rate else "")
    )
    if model_info:
        lines.append(
            f"- Model: {model_info['parameters']:,} parameters, "
            f"{model_info['file_bytes'] / 1e6:.1f} MB `.keras`"
            + (f", {model_info['context']} px of mirrored context" if model_info.get("context") else "")
        )
    lines.append("")
    lines.append("## Evaluation")
    lines.append("")
    if scores is None:
        lines.append("Not yet measured.")
        return "\n".join(lines) + "\n"
    t, u = scores["translated"], scores["untranslated"]
    if scores.get("limit"):
        lines += [
            f"**Only the first {scores['limit']} images of each folder (--limit): not the card's numbers.**",
            "",
        ]
    lines += [
        (
            f"Against `{scores.get('target_arg') or data.get('test_b') or 'the target folder'}` "
            f"({t['n_real']} images), "
            f"TF-FID InceptionV3 features; KID is the mean over {100} subsets of min(N) images "
            "(± its standard deviation), ×10³ as papers print it."
        ),
        "",
        "| images scored | n | KID ×10³ | FID |",
        "|---|---|---|---|",
        f"| `ikea/test` untranslated | {u['n_fake']} | {1e3 * u['kid']:.2f} ± {1e3 * u['kid_std']:.2f} | {u['fid']:.1f} |",
        f"| `ikea/test` translated | {t['n_fake']} | {1e3 * t['kid']:.2f} ± {1e3 * t['kid_std']:.2f} | {t['fid']:.1f} |",
        "",
        (
            f"- KID translated / untranslated: {scores['kid_ratio']:.3f} "
            f"({'meets' if scores['passes_kid_bar'] else 'does NOT meet'} the bar of ≤ {KID_RATIO_BAR})"
        ),
        (
            f"- Content kept: mean SSIM of each translation to its source {t['ssim']:.3f}, "
            f"mean PSNR {t['psnr']:.2f} dB ({t['n_pairs']} images, full size, neutral tone, strength 1)"
        ),
        "",
        "Reproduce with the evaluate command:",
        "",
        "```bash",
        (
            f"python -m gan_style.evaluate --model={(model_info or {}).get('path', 'MODEL.keras')} --source={scores.get('source_arg', 'ikea/test')} "
            f"--target={scores.get('target_arg', 'monet')}"
        ),
        (
            f"python -m gan_style.evaluate --real={scores.get('target_arg', 'monet')} "
            f"--fake={scores.get('source_arg', 'ikea/test')}"
        ),
        "```",
    ]
    return "\n".join(lines) + "\n"


def _json_ready(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python scripts/model_card.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("workdir", help="the training run's folder")
    parser.add_argument("--checkpoint", default="latest", help="latest, best or ckpt-<step> (a kept checkpoint)")
    parser.add_argument(
        "--model", help="score this translator .keras instead of the workdir's export"
    )
    parser.add_argument(
        "--source",
        default=str(DEFAULT_SOURCE),
        help="source-domain test images (ikea/test)",
    )
    parser.add_argument(
        "--target", default=str(DEFAULT_TARGET), help="target-domain images (monet)"
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=0,
        help="score only the first N images of each folder",
    )
    parser.add_argument("--inception_weights", default=None)
    parser.add_argument("--batch_size", type=int, default=50)
    parser.add_argument("--json", help="also write every number here")
    parser.add_argument(
        "--no_scores", action="store_true", help="only the run facts (no evaluation)"
    )
    parser.add_argument("--no_progress", dest="progress", action="store_false")
    args = parser.parse_args(argv)
    if args.limit < 0:
        parser.error("--limit must be >= 0")
    try:
        run = read_run(args.workdir, args.checkpoint)
        model_path = pathlib.Path(args.model or run["generator_path"])
        if not model_path.exists():
            raise FileNotFoundError(f"--model={model_path}: not found")
        from gan_style.translator import load_translator

        translator = load_translator(
            model_path
        )  # neutral tone unless a Translator saved one
        model_info = {
            "path": str(model_path),
            "parameters": int(translator.generator.count_params()),
            "file_bytes": model_path.stat().st_size,
            "profile": translator.profile.to_dict(),
            "context": translator.context,
        }
        scores = None
        if not args.no_scores:
            scores = score(
                translator,
                args.source,
                args.target,
                inception_weights=args.inception_weights,
                limit=args.limit or None,
                batch_size=args.batch_size,
                progress=args.progress,
            )
    except (FileNotFoundError, ValueError) as error:
        print(f"model_card.py: error: {error}", file=sys.stderr)
        return 1
    print(markdown(run, scores, model_info))
    if args.json:
        path = pathlib.Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"run": run, "model": model_info, "scores": scores}
        path.write_text(json.dumps(_json_ready(payload), indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
