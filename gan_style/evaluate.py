"""Score translations: FID and KID (TF-FID Inception), PSNR/SSIM content preservation.

Two ways to call it::

    # Images already translated: FID/KID of --fake against --real; PSNR/SSIM
    # between each fake and the file of the same name in --source (default:
    # --real, for paired data) when such files exist.
    python -m gan_style.evaluate --real=testB/ --fake=fakes_ab/ [--source=testA/] [--json=out.json]

    # Translate --source with a saved translator, then score against --target.
    # With --reverse_model also the cycle-reconstruction PSNR (source -> fake -> back).
    python -m gan_style.evaluate --model=WORKDIR/export/gen_ab.keras --source=testA/ --target=testB/ \
        [--reverse_model=WORKDIR/export/gen_ba.keras] [--json=out.json]

Every run needs the TF-FID Inception weights: ``--inception_weights=PATH``, else
``$GAN_STYLE_INCEPTION_WEIGHTS``, else the cache path (see
``gan_style.metrics.inception``). Images stream through one batch at a time, so
memory does not grow with the number of images.

Images are read as pytorch-fid reads them, with two differences that matter
only for unusual files: transparent images are composited on white (as they are
shown and converted; pytorch-fid drops the alpha and scores what is under it),
and the EXIF orientation is applied. Scores over fewer than 100 images in a set
get a warning: FID's bias grows as the sets shrink, so compare only scores over
equal numbers of images (KID is unbiased).

An unreadable image stops the run with its path; ``--skip_unreadable`` leaves it
out instead, names it on stderr and in ``skipped``, and scores the rest.

JSON keys: ``fid``, ``kid`` (mean MMD^2 over subsets), ``kid_std``, ``n_real``,
``n_fake``, and when computed ``psnr``, ``ssim``, ``n_pairs``, ``cycle_psnr``,
``cycle_ssim``; with ``--skip_unreadable``, ``skipped`` (``{"path", "error"}`` per
file left out) when any were.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import sys
from collections.abc import Iterator

import keras
import numpy as np

from gan_style import metrics

SMALL_SET = 100  # images per set below which the CLI warns that FID is mostly bias


class _Mean:
    """Running mean of per-image scores (an identical pair has PSNR inf; so has the mean)."""

    def __init__(self):
        self.total = 0.0
        self.count = 0

    def add(self, value: float) -> None:
        self.total += value
        self.count += 1

    @property
    def value(self) -> float:
        return self.total / self.count if self.count else float("nan")


class _Reader:
    """Decodes images; with ``skip_unreadable`` an undecodable file is recorded and
    answered with None instead of ending a run that may be minutes in."""

    def __init__(self, skip_unreadable: bool):
        self.skip_unreadable = skip_unreadable
        self.skipped: list[dict] = []
        self._known_bad: set[pathlib.Path] = set()

    def __call__(self, path: pathlib.Path) -> np.ndarray | None:
        from gan_style.image_io import ImageError, load_rgb

        if path in self._known_bad:  # a real image that is also a fake's partner: once
            return None
        try:
            return load_rgb(path)
        except (ImageError, OSError) as error:
            if not self.skip_unreadable:
                raise ValueError(
                    f"{error} (--skip_unreadable scores the other images)"
                ) from None
            print(f"skipped, unreadable: {error}", file=sys.stderr)
            self._known_bad.add(path)
            self.skipped.append({"path": str(path), "error": str(error)})
            return None

    def images(self, paths) -> Iterator[np.ndarray]:
        for path in paths:
            image = self(path)
            if image is not None:
                yield image


def _list(folder, flag: str, others=()) -> list[pathlib.Path]:
    """The images under ``folder``, leaving out ``others`` (the run's other
    folders) where they sit inside it: fakes in ``real/fakes/`` are no real images."""
    from gan_style.image_io import list_images

    if not folder:
        raise ValueError(f"--{flag} is required")
    exclude = [o for o in others if o and os.path.realpath(o) != os.path.realpath(folder)]
    try:
        paths = list_images(folder, exclude=exclude)
    except (FileNotFoundError, NotADirectoryError) as error:
        raise ValueError(f"--{flag}: {error}") from None
    if len(paths) < 2:
        raise ValueError(
            f"--{flag}={folder}: needs at least 2 images, found {len(paths)}"
        )
    return paths


def _key(path: pathlib.Path, root) -> str:
    """Relative path without extension: 'sub/img_001' pairs img_001.jpg with img_001.png."""
    return str(path.relative_to(root).with_suffix(""))


def _score_stats(real, fake, kid_subsets, kid_subset_size) -> dict:
    for stats, label in ((real, "real"), (fake, "translated")):
        if stats.count < 2:
            raise ValueError(f"only {stats.count} readable {label} image(s); FID/KID need at least 2")
    kid_mean, kid_std = metrics.kid_from_stats(
        real, fake, num_subsets=kid_subsets, subset_size=kid_subset_size
    )
    return {
        "fid": metrics.fid_from_stats(real, fake),
        "kid": kid_mean,
        "kid_std": kid_std,
        "n_real": real.count,
        "n_fake": fake.count,
    }


def _statistics(inception, images, total, batch_size, progress, label):
    if progress:
        print(f"Inception features of {label} ({total} images)", file=sys.stderr)
    return metrics.compute_statistics(
        inception, _at_least_one(images, label), batch_size=batch_size, progress=progress, total=total
    )


def _at_least_one(images, label):
    """``images``, or a ValueError naming the set when none of them was readable."""
    empty = True
    for image in images:
        empty = False
        yield image
    if empty:
        raise ValueError(f"no readable images in {label}; FID/KID need at least 2")


def _real_vs_fake(inception, read, real_paths, real_label, fakes, fake_total, fake_label, *,
                  batch_size, progress, kid_subsets, kid_subset_size) -> dict:
    """FID/KID of the ``fakes`` iterator against the images at ``real_paths``."""
    real = _statistics(inception, read.images(real_paths), len(real_paths), batch_size,
                       progress, real_label)
    fake = _statistics(inception, fakes, fake_total, batch_size, progress, fake_label)
    results = _score_stats(real, fake, kid_subsets, kid_subset_size)
    if read.skipped:
        results["skipped"] = read.skipped
    return results


def _add_pair(psnr_mean: _Mean, ssim_mean: _Mean, reference: np.ndarray, image: np.ndarray) -> None:
    """PSNR and (for images of at least 11 px, SSIM's window) SSIM of one pair."""
    psnr_mean.add(metrics.psnr(reference, image))
    if min(image.shape[:2]) >= 11:
        ssim_mean.add(metrics.ssim(reference, image))


def evaluate_folders(
    real_dir: str | os.PathLike,
    fake_dir: str | os.PathLike,
    source_dir: str | os.PathLike | None = None,
    *,
    inception: keras.Model | None = None,
    inception_weights: str | os.PathLike | None = None,
    batch_size: int = 50,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    progress: bool = True,
    skip_unreadable: bool = False,
) -> dict:
    """FID/KID of the images in ``fake_dir`` against ``real_dir``, plus PSNR/SSIM of
    each fake against the same-named file in ``source_dir`` (default ``real_dir``).

    Pairs are matched by relative path without extension; pairs whose sizes
    differ are left out (and counted in ``n_pairs_size_mismatch``). PSNR/SSIM are
    reported only when at least one pair exists.

    Args:
        inception: a feature model (default :func:`gan_style.metrics.load_inception`
            with ``inception_weights``).
        skip_unreadable: leave undecodable files out (listed in ``skipped``)
            instead of raising ValueError naming the first one.

    Returns:
        A dict with the JSON keys listed in the module docstring.
    """
    folders = (real_dir, fake_dir, source_dir)
    real_paths = _list(real_dir, "real", folders)
    fake_paths = _list(fake_dir, "fake", folders)
    pair_root = pathlib.Path(source_dir) if source_dir else pathlib.Path(real_dir)
    partners = (
        {_key(p, pair_root): p for p in _list(pair_root, "source", folders)}
        if source_dir
        else {_key(p, pair_root): p for p in real_paths}
    )
    inception = inception or metrics.load_inception(inception_weights)
    read = _Reader(skip_unreadable)
    psnr_mean, ssim_mean = _Mean(), _Mean()
    mismatched = 0

    def fakes() -> Iterator[np.ndarray]:
        nonlocal mismatched
        for path in fake_paths:
            fake = read(path)
            if fake is None:
                continue
            partner = partners.get(_key(path, pathlib.Path(fake_dir)))
            source = read(partner) if partner is not None else None
            if source is not None:
                if source.shape != fake.shape:
                    mismatched += 1
                else:
                    _add_pair(psnr_mean, ssim_mean, source, fake)
            yield fake

    results = _real_vs_fake(inception, read, real_paths, real_dir, fakes(), len(fake_paths), fake_dir,
                            batch_size=batch_size, progress=progress, kid_subsets=kid_subsets,
                            kid_subset_size=kid_subset_size)
    if psnr_mean.count:
        results.update(
            psnr=psnr_mean.value, ssim=ssim_mean.value, n_pairs=psnr_mean.count
        )
    if mismatched:
        results["n_pairs_size_mismatch"] = mismatched
    return results


def _translate(translator, image: np.ndarray) -> np.ndarray:
    return np.asarray(translator(image[None]))[0]


def evaluate_translator(
    model,
    source_dir: str | os.PathLike,
    target_dir: str | os.PathLike,
    *,
    reverse_model=None,
    inception: keras.Model | None = None,
    inception_weights: str | os.PathLike | None = None,
    batch_size: int = 50,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    progress: bool = True,
    skip_unreadable: bool = False,
) -> dict:
    """Translates every image of ``source_dir`` and scores the results.

    FID/KID of the translations against ``target_dir``; PSNR/SSIM between each
    source and its translation (content preservation, as the CycleGAN-family
    papers report it); with ``reverse_model``, ``cycle_psnr``/``cycle_ssim``
    between each source and its reconstruction.

    Args:
        model: a translator (uint8 in, uint8 out: ``gan_style.load_translator``)
            or a path to one.
        reverse_model: the opposite direction's translator or path, optional.
        skip_unreadable: as for :func:`evaluate_folders`.
    """
    from gan_style.translator import load_translator

    translator = (
        load_translator(model) if isinstance(model, (str, os.PathLike)) else model
    )
    reverse = (
        load_translator(reverse_model)
        if isinstance(reverse_model, (str, os.PathLike))
        else reverse_model
    )
    source_paths = _list(source_dir, "source", (target_dir,))
    target_paths = _list(target_dir, "target", (source_dir,))
    inception = inception or metrics.load_inception(inception_weights)
    read = _Reader(skip_unreadable)
    means = {name: _Mean() for name in ("psnr", "ssim", "cycle_psnr", "cycle_ssim")}

    def fakes() -> Iterator[np.ndarray]:
        for path in source_paths:
            source = read(path)
            if source is None:
                continue
            fake = _translate(translator, source)
            if fake.shape != source.shape:
                raise ValueError(
                    f"{path}: translator returned shape {fake.shape} for {source.shape}"
                )
            _add_pair(means["psnr"], means["ssim"], source, fake)
            if reverse is not None:
                _add_pair(means["cycle_psnr"], means["cycle_ssim"], source, _translate(reverse, fake))
            yield fake

    results = _real_vs_fake(inception, read, target_paths, target_dir, fakes(), len(source_paths),
                            f"translated {source_dir}", batch_size=batch_size, progress=progress,
                            kid_subsets=kid_subsets, kid_subset_size=kid_subset_size)
    results.update({name: mean.value for name, mean in means.items() if mean.count})
    results["n_pairs"] = means["psnr"].count
    return results


def format_table(results: dict) -> str:
    """The results as an aligned two-column table."""

    def fmt(value):
        if isinstance(value, float) and math.isinf(value):
            return "inf"
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    rows = [
        ("FID", fmt(results["fid"])),
        ("KID", f"{results['kid']:.5f} ± {results['kid_std']:.5f}" if math.isfinite(results["kid_std"])
         else f"{results['kid']:.5f} (both sets whole in one subset: no ± to give)"),
    ]
    labels = {
        "psnr": "PSNR (dB)",
        "ssim": "SSIM",
        "cycle_psnr": "cycle PSNR (dB)",
        "cycle_ssim": "cycle SSIM",
        "n_real": "real images",
        "n_fake": "fake images",
        "n_pairs": "pairs",
        "n_pairs_size_mismatch": "pairs skipped (size differs)",
    }
    rows += [
        (label, fmt(results[key])) for key, label in labels.items() if key in results
    ]
    if results.get("skipped"):
        rows.append(("unreadable, skipped", str(len(results["skipped"]))))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _json_ready(results: dict) -> dict:
    # JSON has no inf: PSNR of identical images becomes null rather than invalid JSON.
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v)
        for k, v in results.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gan_style.evaluate",
        description="FID/KID (TF-FID InceptionV3) and PSNR/SSIM for image translations.",
    )
    parser.add_argument(
        "--real", help="folder of real target-domain images (with --fake)"
    )
    parser.add_argument("--fake", help="folder of translated images (with --real)")
    parser.add_argument("--model", help="translator .keras to translate --source with")
    parser.add_argument(
        "--reverse_model", help="opposite translator .keras: adds cycle PSNR/SSIM"
    )
    parser.add_argument(
        "--source",
        help="source images: translated with --model, or paired by "
        "file name with --fake for PSNR/SSIM",
    )
    parser.add_argument("--target", help="real target-domain images (with --model)")
    parser.add_argument("--json", help="also write the results as a JSON object here")
    parser.add_argument(
        "--inception_weights",
        default=None,
        help=f"Keras weights of the TF-FID InceptionV3 (default ${metrics.WEIGHTS_ENV}, "
        "then the cache path)",
    )
    parser.add_argument("--batch_size", type=int, default=50)
    parser.add_argument("--kid_subsets", type=int, default=100)
    parser.add_argument("--kid_subset_size", type=int, default=1000)
    parser.add_argument("--no_progress", dest="progress", action="store_false")
    parser.add_argument(
        "--skip_unreadable",
        action="store_true",
        help="leave out images that cannot be decoded (named on stderr and in the JSON's "
        "'skipped') instead of stopping at the first",
    )
    args = parser.parse_args(argv)
    # Checked before minutes of Inception features, not after.
    for flag, value, low in (("--batch_size", args.batch_size, 1), ("--kid_subsets", args.kid_subsets, 1),
                             ("--kid_subset_size", args.kid_subset_size, 2)):
        if value < low:
            parser.error(f"{flag} must be >= {low}, got {value}")
    json_path = pathlib.Path(args.json) if args.json else None
    if json_path is not None:
        try:
            json_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            parser.error(f"--json {args.json}: cannot write there ({error.strerror or error})")
        if json_path.is_dir():
            parser.error(f"--json {args.json} is a folder; give a file name")

    common = {
        "inception_weights": args.inception_weights,
        "batch_size": args.batch_size,
        "kid_subsets": args.kid_subsets,
        "kid_subset_size": args.kid_subset_size,
        "progress": args.progress,
        "skip_unreadable": args.skip_unreadable,
    }
    try:
        if args.model:
            if args.real or args.fake:
                parser.error(
                    "--model scores --source against --target; --real/--fake are for "
                    "images that are already translated"
                )
            if not args.source or not args.target:
                parser.error("--model needs --source and --target")
            results = evaluate_translator(
                args.model,
                args.source,
                args.target,
                reverse_model=args.reverse_model,
                **common,
            )
        else:
            if not args.real or not args.fake:
                parser.error(
                    "give --real and --fake, or --model with --source and --target"
                )
            if args.target or args.reverse_model:
                parser.error("--target and --reverse_model go with --model")
            if os.path.realpath(args.real) == os.path.realpath(args.fake):
                print(f"warning: --real and --fake are the same folder ({args.fake}): its images are scored "
                      "against themselves", file=sys.stderr)
            results = evaluate_folders(args.real, args.fake, args.source, **common)
            if args.source and "n_pairs" not in results and "n_pairs_size_mismatch" not in results:
                print(f"warning: --source={args.source}: none of the {results['n_fake']} --fake images has a "
                      "source image of the same name (paired by relative path without extension); PSNR/SSIM "
                      "not computed", file=sys.stderr)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    small = min(results["n_real"], results["n_fake"])
    if small < SMALL_SET:
        print(f"warning: a set of only {small} images: FID is strongly biased upwards at this size; "
              "compare only scores over the same numbers of images (KID is unbiased)", file=sys.stderr)
    print(format_table(results))
    if json_path is not None:
        try:
            json_path.write_text(json.dumps(_json_ready(results), indent=2) + "\n")
        except OSError as error:
            print(f"error: --json {args.json}: {error.strerror or error} (the scores are above)", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
