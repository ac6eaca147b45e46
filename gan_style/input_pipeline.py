"""tf.data input for training and evaluation.

Sources (``config.data``): the reference layout ``data.root/{trainA,trainB,
testA,testB}``, explicit folders (``data.train_a`` ... override the root), or
a TensorFlow Datasets name (``data.tfds_name``, e.g. ``cycle_gan/horse2zebra``,
which wins when set). Every image, from a folder or from tfds, is decoded by
the one PIL decoder in :mod:`gan_style.image_io` (alpha composited on white)
inside a parallel ``tf.data`` map; tfds records are read undecoded
(``SkipDecoding``) for that reason.

Training stream (reference "unaligned" data): an epoch is ``max(|A|, |B|)``
samples of independently shuffled A and B; the smaller domain cycles through
fresh permutations. Every random choice (the permutations, crops, flips) is
drawn with stateless ops keyed by ``(seed, epoch, domain, index)`` (and
the input pipeline's id when several hosts read shards), so
``train_dataset(data, batch_size=b, seed=s, epoch=e).skip(k)`` is exactly
where a run that had consumed ``k`` batches of epoch ``e`` stood.

Unreadable files are skipped with one warning each and recorded in
:func:`skipped_files`. Each domain stream is endless (permutation after
permutation), and the epoch is cut to :func:`steps_per_epoch` batches after the
bad files are filtered out, so an epoch always has exactly that many batches:
a skipped file's place is taken by the next image of the stream (the epoch
then reaches a little into the next permutation of that domain). Skipping is
deterministic, so resume-by-``skip(k)`` stays exact.
"""

from __future__ import annotations

import os
import pathlib
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf
from absl import logging
from PIL import Image

from gan_style import image_io

SPLITS = ("trainA", "trainB", "testA", "testB")
PREPROCESS_MODES = (
    "resize_and_crop",
    "crop",
    "scale_width",
    "scale_width_and_crop",
    "none",
)
_SPLIT_KEYS = {"trainA": "train_a", "trainB": "train_b", "testA": "test_a", "testB": "test_b"}
_DOMAIN_ID = {"a": 0, "b": 1}

# ---------------------------------------------------------------------------
# Skipped-file registry (process wide: every pipeline reports here).

_skip_lock = threading.Lock()
_skipped: dict[str, str] = {}


def _record_skip(name: str, reason: str) -> bool:
    """Records a bad file; logs one warning the first time. True if new."""
    with _skip_lock:
        if name in _skipped:
            return False
        _skipped[name] = reason
    logging.warning("Skipping image %s: %s", name, reason)
    return True


def skipped_files() -> frozenset[str]:
    """Files (or tfds records) skipped as undecodable in this process so far."""
    with _skip_lock:
        return frozenset(_skipped)


def skipped_file_reasons() -> dict[str, str]:
    """``{file: reason}`` for every skipped file, as logged."""
    with _skip_lock:
        return dict(_skipped)


def reset_skipped_files() -> None:
    """Forgets the skipped files and the folder warnings given (tests; a new
    run in the same process)."""
    with _skip_lock:
        _skipped.clear()
    _warned.clear()


# ---------------------------------------------------------------------------
# Config access and validation.


def _get(data: Any, key: str, default: Any = None) -> Any:
    try:
        value = getattr(data, key)
    except (AttributeError, KeyError):
        return default
    return default if value is None else value


def _validate(data: Any, *, training: bool) -> None:
    mode = _get(data, "preprocess", "resize_and_crop")
    if mode not in PREPROCESS_MODES:
        raise ValueError(
            f"data.preprocess={mode!r} is not one of {', '.join(PREPROCESS_MODES)}"
        )
    load_size = int(_get(data, "load_size", 286))
    crop_size = int(_get(data, "crop_size", 256))
    if training:
        if crop_size <= 0:
            raise ValueError(f"data.crop_size must be positive, got {crop_size}")
        if mode in ("resize_and_crop", "scale_width", "scale_width_and_crop"):
            if load_size <= 0:
                raise ValueError(f"data.load_size must be positive, got {load_size}")
        if mode in ("resize_and_crop", "scale_width_and_crop") and load_size < crop_size:
            raise ValueError(
                f"data.load_size ({load_size}) must be >= data.crop_size "
                f"({crop_size}) for data.preprocess={mode!r}"
            )
    eval_size = int(_get(data, "eval_size", 256))
    if eval_size < 0:
        raise ValueError(f"data.eval_size must be >= 0, got {eval_size}")
    if int(_get(data, "max_images", 0)) < 0:
        raise ValueError("data.max_images must be >= 0 (0 = all images)")
    calls = int(_get(data, "num_parallel_calls", -1))
    if calls == 0 or calls < -1:
        raise ValueError(
            f"data.num_parallel_calls must be -1 (AUTOTUNE) or positive, got {calls}"
        )


def _parallel_calls(data: Any) -> int:
    calls = int(_get(data, "num_parallel_calls", -1))
    return tf.data.AUTOTUNE if calls == -1 else calls


# ---------------------------------------------------------------------------
# Sources: a split is a list of item names plus a way to load each one.


class _Source:
    """One split: ``names`` (paths or tfds record names) and ``load(i)``."""

    def __init__(self, names: list[str], load: Callable[[int], np.ndarray], key: str):
        self.names = names
        self.load = load  # index -> uint8 [H, W, 3]; raises image_io.ImageError
        self.key = key  # config key named in errors ("data.train_a", ...)

    def __len__(self) -> int:
        return len(self.names)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def split_folder(data: Any, split: str) -> tuple[pathlib.Path, str] | None:
    """``(folder, config key naming it)`` of a split (``data.train_a``, else
    ``data.root/trainA``, ...), or None when none is set."""
    key = _SPLIT_KEYS[split]
    explicit = _get(data, key, "")
    root = _get(data, "root", "")
    if explicit:
        return pathlib.Path(os.path.expanduser(explicit)), f"data.{key}"
    if root:
        return (pathlib.Path(os.path.expanduser(root)) / split,
                f"data.root (its {split}/ folder; or set data.{key})")
    return None


def _nested_splits(data: Any, split: str, folder: pathlib.Path) -> list[tuple[pathlib.Path, str]]:
    """The other splits' folders that lie inside ``folder`` (not ``folder`` itself)."""
    inside = []
    here = os.path.realpath(folder)
    for other in SPLITS:
        found = split_folder(data, other) if other != split else None
        if found is None:
            continue
        there = os.path.realpath(found[0])
        if there != here and there.startswith(here.rstrip(os.sep) + os.sep):
            inside.append((found[0], other))
    return inside


_warned: set[tuple] = set()


def _warn_once(marker: tuple, message: str, *args) -> None:
    """Logs a warning once per process for ``marker`` (a listing is made many times)."""
    if marker not in _warned:
        _warned.add(marker)
        logging.warning(message, *args)


def _examples(paths: list[pathlib.Path], folder: pathlib.Path) -> str:
    names = [str(p.relative_to(folder)) for p in sorted(paths)[:5]]
    return ", ".join(names) + (", ..." if len(paths) > 5 else "")


def domain_files(data: Any, split: str) -> list[pathlib.Path]:
    """The image files of one split, for folder sources.

    ``data.train_a`` (``train_b``, ``test_a``, ``test_b``) names the folder
    when set, else ``data.root/<split>``. Folders are walked recursively and
    sorted (:func:`image_io.list_images`); ``data.max_images`` keeps the first
    N when positive. Another split's folder inside this one (``photos/`` with
    ``photos/test/`` as the test split) is left out, so test images are never
    trained on. Files passed over for their extension (``.heic``) and
    symlinked sub-folders (not followed) are named in a warning.

    Raises:
      ValueError: naming the config key, when the folder is missing, holds no
        images, or no source is configured (or ``data.tfds_name`` is set).
    """
    _check_split(split)
    if _get(data, "tfds_name", ""):
        raise ValueError(
            f"domain_files: data.tfds_name={_get(data, 'tfds_name')!r} is set, so "
            f"{split} comes from TensorFlow Datasets, not a folder"
        )
    found = split_folder(data, split)
    if found is None:
        key = _SPLIT_KEYS[split]
        raise ValueError(
            f"no source for {split}: set data.root (a folder holding {split}/), "
            f"data.{key}, or data.tfds_name"
        )
    folder, where = found
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise ValueError(f"{where}: {folder} {what}")
    nested = _nested_splits(data, split, folder)
    linked: list[pathlib.Path] = []
    others: list[pathlib.Path] = []
    files = image_io.list_images(folder, exclude=[f for f, _ in nested], linked_folders=linked, others=others)
    for inner, other in nested:
        _warn_once(("nested", split, str(inner)), "%s: %s is the %s split; its images are left out of %s",
                   where, inner, other, split)
    if others:
        _warn_once(("others", str(folder)), "%s: %d file(s) in %s left out, their extensions are not image ones "
                   "(%s); images are %s", where, len(others), folder, _examples(others, folder),
                   " ".join(sorted(image_io.IMAGE_EXTENSIONS)))
    if linked:
        _warn_once(("linked", str(folder)), "%s: %d symlinked folder(s) in %s not followed (%s); point the "
                   "config key at the real folder to use its images", where, len(linked), folder,
                   _examples(linked, folder))
    if not files:
        exts = " ".join(sorted(image_io.IMAGE_EXTENSIONS))
        raise ValueError(f"{where}: no images ({exts}) found in {folder}")
    max_images = int(_get(data, "max_images", 0))
    return files[:max_images] if max_images > 0 else files


_tfds_cache: dict[tuple[str, str, str], list[bytes]] = {}
_tfds_lock = threading.Lock()


def _tfds_encoded(data: Any, split: str) -> list[bytes]:
    """Encoded images of a tfds split, read once per process and kept.

    Records stay encoded (JPEG/PNG bytes, about the download's size) so they
    are decoded by the same PIL decoder as folder images, and so a permuted
    epoch can index them directly.
    """
    import tensorflow_datasets as tfds  # optional heavy import

    name = str(_get(data, "tfds_name"))
    data_dir = str(_get(data, "tfds_data_dir", "")) or None
    cache_key = (name, split, data_dir or "")
    with _tfds_lock:
        if cache_key in _tfds_cache:
            return _tfds_cache[cache_key]
    try:
        builder = tfds.builder(name, data_dir=data_dir)
        prepared, where = builder.is_prepared(), builder.data_dir
    except Exception:  # noqa: BLE001 - an unknown name: tfds.load below says so
        prepared, where = True, data_dir
    if not prepared:  # said before the download's retries, which take minutes offline
        logging.warning("data.tfds_name=%r is not prepared in %s: downloading and preparing it now. This needs "
                        "the network; without it, it fails after a few minutes of retries (prepare it where "
                        "there is one with `tfds build %s`, then set data.tfds_data_dir)", name, where, name)
    try:
        ds = tfds.load(
            name,
            split=split,
            data_dir=data_dir,
            shuffle_files=False,
            decoders={"image": tfds.decode.SkipDecoding()},
        )
    except Exception as e:  # noqa: BLE001 - tfds raises many types; re-raise with the key
        offline = "ConnectionError" in type(e).__name__ or "Failed to resolve" in str(e)
        hint = ("; the download failed (no network?): prepare the dataset where there is one "
                "(tfds build NAME) and point data.tfds_data_dir at it, or use data.root" if offline else "")
        raise ValueError(
            f"data.tfds_name={name!r}: cannot load split {split!r} "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}){hint}"
        ) from e
    encoded = [bytes(ex["image"]) for ex in tfds.as_numpy(ds)]
    if not encoded:
        raise ValueError(f"data.tfds_name={name!r}: split {split!r} is empty")
    with _tfds_lock:
        _tfds_cache[cache_key] = encoded
    return encoded


def _source(data: Any, split: str) -> _Source:
    name = _get(data, "tfds_name", "")
    if name:
        encoded = _tfds_encoded(data, split)
        max_images = int(_get(data, "max_images", 0))
        if max_images > 0:
            encoded = encoded[:max_images]
        names = [f"{name}[{split}]#{i}" for i in range(len(encoded))]

        def load(i: int) -> np.ndarray:
            decoded = image_io.read_image_bytes(encoded[i], name=names[i])
            return image_io.composite(decoded.rgb, decoded.alpha)

        return _Source(names, load, f"data.tfds_name={name!r}")
    files = domain_files(data, split)
    names = [str(p) for p in files]
    return _Source(names, lambda i: image_io.load_rgb(names[i]), split_folder(data, split)[1])


def has_split(data: Any, split: str) -> bool:
    """Whether ``split`` is configured: its folder exists (``data.test_a`` or
    ``data.root/testA``), or the tfds dataset has it. A tfds dataset whose
    splits are unknown (not prepared yet) counts as having it; loading will say."""
    _check_split(split)
    name = _get(data, "tfds_name", "")
    if name:
        import tensorflow_datasets as tfds  # optional heavy import

        try:
            splits = tfds.builder(str(name), data_dir=str(_get(data, "tfds_data_dir", "")) or None).info.splits
        except Exception:  # noqa: BLE001 - loading the split gives the clear error
            return True
        return split in splits or not splits
    found = split_folder(data, split)
    return found is not None and found[0].is_dir()


def _domain_size(data: Any, split: str) -> int:
    if _get(data, "tfds_name", ""):
        return len(_source(data, split))
    return len(domain_files(data, split))


def steps_per_epoch(data: Any, batch_size: int) -> int:
    """Batches per training epoch: ``max(|A|, |B|) // batch_size``.

    Counts files (or tfds records), not successfully decoded images; see the
    module docstring for how skipped files are replaced.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    samples = max(_domain_size(data, "trainA"), _domain_size(data, "trainB"))
    steps = samples // batch_size
    if steps == 0:
        raise ValueError(
            f"train.batch_size={batch_size} is larger than the epoch ({samples} images "
            "in the larger training domain; data.max_images caps them)"
        )
    return steps


def check_decodable(data: Any) -> None:
    """Decodes each training domain's images in order until one decodes.

    Raises:
      ValueError: a domain none of whose images decodes, naming its key and
        the first file's reason (the training stream would find that out
        only after the model was built, deep in tf.data).
    """
    for split in ("trainA", "trainB"):
        source = _source(data, split)
        reasons = []
        for i in range(len(source)):
            try:
                source.load(i)
                break
            except image_io.ImageError as e:
                _record_skip(source.names[i], e.reason)
                reasons.append(f"{source.names[i]}: {e.reason}")
        else:
            raise ValueError(
                f"{source.key}: none of its {len(source)} images could be decoded"
                + (f" ({reasons[0]})" if reasons else "")
            )


# ---------------------------------------------------------------------------
# Deterministic geometry (PIL, in the decode worker) and random (TF, stateless).


def _resize(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    if rgb.shape[1] == width and rgb.shape[0] == height:
        return rgb
    # PIL bicubic (antialiased when shrinking), as the reference's
    # torchvision Resize on PIL images.
    img = Image.fromarray(rgb).resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(img)


def _crop_to_multiple(rgb: np.ndarray, multiple: int = 4) -> np.ndarray:
    """Centre-crops each side down to a multiple of ``multiple`` (at least one)."""
    h, w = rgb.shape[:2]
    nh, nw = max(multiple, h - h % multiple), max(multiple, w - w % multiple)
    if nh > h or nw > w:  # smaller than one multiple: upscale instead
        return _resize(rgb, nw, nh)
    top, left = (h - nh) // 2, (w - nw) // 2
    return rgb[top : top + nh, left : left + nw]


def _scale_width(rgb: np.ndarray, load_size: int, crop_size: int) -> np.ndarray:
    # The reference's __scale_width: width -> load_size, height keeps the
    # aspect ratio but never falls below crop_size.
    h, w = rgb.shape[:2]
    if w == load_size and h >= crop_size:
        return rgb
    return _resize(rgb, load_size, int(max(load_size * h / w, crop_size)))


def train_geometry(
    rgb: np.ndarray, mode: str, load_size: int, crop_size: int
) -> np.ndarray:
    """The deterministic part of training preprocessing (before crop/flip).

    * ``resize_and_crop``: resize to ``load_size`` x ``load_size``.
    * ``crop``: unchanged (an image smaller than ``crop_size`` is scaled up,
      keeping its aspect, until the crop fits; the reference would fail).
    * ``scale_width``: width to ``load_size``, height by aspect (at least
      ``crop_size``), then centre-cropped to multiples of 4 for the networks.
    * ``scale_width_and_crop``: as ``scale_width`` without the rounding.
    * ``none``: centre-cropped to multiples of 4 (the reference resizes by
      up to 2 px instead; cropping keeps pixels untouched).
    """
    if mode == "resize_and_crop":
        return _resize(rgb, load_size, load_size)
    if mode == "crop":
        h, w = rgb.shape[:2]
        short = min(h, w)
        if short < crop_size:
            # Ceiling division in integers: float scaling could give 65 for 64.
            return _resize(rgb, -(-w * crop_size // short), -(-h * crop_size // short))
        return rgb
    if mode == "scale_width":
        return _crop_to_multiple(_scale_width(rgb, load_size, crop_size))
    if mode == "scale_width_and_crop":
        return _scale_width(rgb, load_size, crop_size)
    if mode == "none":
        return _crop_to_multiple(rgb)
    raise ValueError(f"data.preprocess={mode!r} is not one of {PREPROCESS_MODES}")


def eval_geometry(rgb: np.ndarray, eval_size: int) -> np.ndarray:
    """Evaluation size: ``eval_size`` square (bicubic), or native rounded to 4."""
    if eval_size > 0:
        return _resize(rgb, eval_size, eval_size)
    return _crop_to_multiple(rgb)


def to_float(image: tf.Tensor) -> tf.Tensor:
    """uint8 -> float32 in [-1, 1] (``x / 127.5 - 1``)."""
    return tf.cast(image, tf.float32) / 127.5 - 1.0


_EMPTY = np.zeros((0, 0, 3), np.uint8)
_image_cache: dict[tuple, np.ndarray] = {}


def clear_cache() -> None:
    """Drops the images kept in memory by ``data.cache`` (and tfds records)."""
    _image_cache.clear()
    with _tfds_lock:
        _tfds_cache.clear()


class _Loader:
    """The numpy side of a decode map: item index -> (uint8 image, ok)."""

    def __init__(
        self,
        source: _Source,
        geometry: Callable[[np.ndarray], np.ndarray],
        cache_tag: tuple | None,
    ):
        self.source = source
        self.geometry = geometry
        # With data.cache, decoded+resized images live in a process-wide dict
        # keyed by (name, geometry), so later epochs (new datasets) reuse them.
        self.cache_tag = cache_tag
        self.bad: set[int] = set()
        self.lock = threading.Lock()

    def __call__(self, index) -> tuple[np.ndarray, np.bool_]:
        i = int(index)
        cache_key = None
        if self.cache_tag is not None:
            cache_key = (self.source.names[i], self.cache_tag)
            cached = _image_cache.get(cache_key)
            if cached is not None:
                return cached, np.bool_(True)
        if i not in self.bad:
            try:
                image = np.ascontiguousarray(self.geometry(self.source.load(i)))
            except image_io.ImageError as e:
                _record_skip(self.source.names[i], e.reason)
                with self.lock:
                    self.bad.add(i)
            else:
                if cache_key is not None:
                    _image_cache[cache_key] = image
                return image, np.bool_(True)
        if len(self.bad) >= len(self.source):
            # Otherwise the endless stream would filter forever. Every call
            # raises from here on, so none is left running at shutdown.
            raise ValueError(
                f"{self.source.key}: none of its {len(self.source)} images "
                "could be decoded (see the warnings above)"
            )
        return _EMPTY, np.bool_(False)

    def map_fn(self, index: tf.Tensor):
        image, ok = tf.numpy_function(self, [index], (tf.uint8, tf.bool), stateful=True)
        image.set_shape([None, None, 3])
        ok.set_shape([])
        return image, ok


def _base_key(seed: int, epoch: int, domain: str, purpose: int) -> tf.Tensor:
    """A well-mixed stateless-RNG key for (seed, epoch, domain, purpose)."""
    state = np.random.SeedSequence(
        [int(seed) % 2**64, int(epoch) % 2**64, _DOMAIN_ID[domain], purpose]
    ).generate_state(2, dtype=np.uint32)
    return tf.constant(state.astype(np.int64), dtype=tf.int64)


def _permuted_indices(n: int, key: tf.Tensor) -> tf.data.Dataset:
    """Endless stream: a fresh permutation of range(n) per cycle c, keyed by (key, c)."""

    def cycle(c):
        cycle_key = tf.random.experimental.stateless_fold_in(key, c)
        order = tf.argsort(
            tf.random.stateless_uniform([n], seed=cycle_key), stable=True
        )
        return tf.data.Dataset.from_tensor_slices(tf.cast(order, tf.int64))

    return tf.data.Dataset.counter().flat_map(cycle)


def _augment_fn(key: tf.Tensor, crop: int | None, flip: bool):
    def augment(position, image):
        sample_key = tf.random.experimental.stateless_fold_in(key, position)
        if crop is not None:
            image = tf.image.stateless_random_crop(
                image,
                [crop, crop, 3],
                seed=tf.random.experimental.stateless_fold_in(sample_key, 0),
            )
        if flip:
            image = tf.image.stateless_random_flip_left_right(
                image, seed=tf.random.experimental.stateless_fold_in(sample_key, 1)
            )
        return to_float(image)

    return augment


def _domain_stream(
    data: Any,
    split: str,
    domain: str,
    *,
    seed: int,
    epoch: int,
    shard: tuple[int, int] | None,
) -> tf.data.Dataset:
    mode = _get(data, "preprocess", "resize_and_crop")
    load_size = int(_get(data, "load_size", 286))
    crop_size = int(_get(data, "crop_size", 256))
    source = _source(data, split)
    if _get(data, "cache", False) and mode in ("crop", "none"):
        _warn_once(("cache", split, mode), "data.cache=True with data.preprocess=%r keeps every "
                   "%s image in memory at its full decoded size (3 bytes a pixel: about 36 MB for a 12 MP "
                   "photo); a resizing mode keeps %d px ones", mode, split, load_size)
    loader = _Loader(
        source,
        lambda rgb: train_geometry(rgb, mode, load_size, crop_size),
        ("train", mode, load_size, crop_size) if _get(data, "cache", False) else None,
    )
    calls = _parallel_calls(data)
    indices = _permuted_indices(len(source), _base_key(seed, epoch, domain, 0))
    if shard is not None:
        indices = indices.shard(*shard)
    images = (
        indices.map(loader.map_fn, num_parallel_calls=calls, deterministic=True)
        .filter(lambda image, ok: ok)
        .map(lambda image, ok: image)
    )
    crop = crop_size if mode in ("resize_and_crop", "crop", "scale_width_and_crop") else None
    augment_key = _base_key(seed, epoch, domain, 1)
    if shard is not None:
        # Each input pipeline counts its own samples from 0: without its id in
        # the key, the k-th sample of every host got the same crop and flip.
        augment_key = tf.random.experimental.stateless_fold_in(augment_key, shard[1])
    augment = _augment_fn(augment_key, crop, bool(_get(data, "flip", True)))
    return images.enumerate().map(augment, num_parallel_calls=calls, deterministic=True)


def train_dataset(
    data: Any,
    *,
    batch_size: int,
    seed: int,
    epoch: int,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """One training epoch of unpaired ``(a, b)`` batches.

    Args:
      data: ``config.data`` (a ConfigDict or any object with its attributes).
      batch_size: the global batch size.
      seed: the run's seed.
      epoch: the epoch number; with ``seed`` it fixes the order, crops and
        flips, so ``train_dataset(...).skip(k)`` resumes exactly after ``k``
        batches.
      input_context: from ``strategy.distribute_datasets_from_function``.
        When given, this input pipeline reads every
        ``num_input_pipelines``-th sample and yields per-replica batches,
        ``steps_per_epoch * num_replicas_in_sync / num_input_pipelines`` of
        them.

    Returns:
      A dataset of exactly ``steps_per_epoch(data, batch_size)`` batches
      (drop remainder) of ``(a, b)``, each float32 ``[batch, crop, crop, 3]``
      in [-1, 1] (for ``scale_width``/``none`` the spatial size is the
      images' own, and a batch larger than 1 needs images of equal size).
    """
    _validate(data, training=True)
    steps = steps_per_epoch(data, batch_size)
    shard = None
    local_batch, local_steps = batch_size, steps
    if input_context is not None:
        pipelines = input_context.num_input_pipelines
        if pipelines > 1:
            shard = (pipelines, input_context.input_pipeline_id)
        local_batch = input_context.get_per_replica_batch_size(batch_size)
        local_steps = steps * input_context.num_replicas_in_sync // pipelines
    mode = _get(data, "preprocess", "resize_and_crop")
    if mode in ("scale_width", "none") and local_batch > 1:
        logging.log_first_n(
            logging.WARNING,
            "data.preprocess=%r keeps each image's own size; a batch of %d "
            "works only if all training images share one size",
            1,
            mode,
            local_batch,
        )
    a = _domain_stream(data, "trainA", "a", seed=seed, epoch=epoch, shard=shard)
    b = _domain_stream(data, "trainB", "b", seed=seed, epoch=epoch, shard=shard)
    ds = (
        tf.data.Dataset.zip((a, b))
        .batch(local_batch, drop_remainder=True)
        .take(local_steps)
        # The streams are endless, so take() always delivers local_steps
        # batches; saying so gives len(ds) and Keras progress bars a length.
        .apply(tf.data.experimental.assert_cardinality(local_steps))
    )
    options = tf.data.Options()
    options.deterministic = True
    if input_context is not None:
        # Sharded above, by sample; tf.distribute must not shard again. Without
        # an input context (experimental_distribute_dataset) its default AUTO
        # policy shards by element, which is right for this file-less source.
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.OFF
        )
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def eval_dataset(
    data: Any, domain: str, *, batch_size: int, with_names: bool = False
) -> tf.data.Dataset:
    """Test images of one domain, in file order, for evaluation and samples.

    Args:
      data: ``config.data``.
      domain: ``'a'`` (testA) or ``'b'`` (testB).
      batch_size: images per batch (the last batch may be smaller). With
        ``data.eval_size == 0`` images keep their native size (centre-cropped
        to multiples of 4) and the batch size is 1.
      with_names: also yield the source names (file paths) as a string tensor
        of the file system's bytes (``os.fsdecode`` gives the path back).

    Returns:
      float32 ``[batch, size, size, 3]`` in [-1, 1] (or ``(images, names)``).
      Undecodable files are skipped with a warning, as in training.
    """
    if domain not in _DOMAIN_ID:
        raise ValueError(f"domain must be 'a' or 'b', got {domain!r}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    _validate(data, training=False)
    split = "testA" if domain == "a" else "testB"
    eval_size = int(_get(data, "eval_size", 256))
    if eval_size == 0:
        batch_size = 1
    source = _source(data, split)
    loader = _Loader(
        source,
        lambda rgb: eval_geometry(rgb, eval_size),
        ("eval", eval_size) if _get(data, "cache", False) else None,
    )
    # Bytes, as the file system has them: a name that is not UTF-8 (unzipped
    # from a Windows archive) is still a path, and os.fsdecode gives it back.
    names = tf.constant([os.fsencode(name) for name in source.names], tf.string)
    calls = _parallel_calls(data)

    def load(i):
        image, ok = loader.map_fn(i)
        if eval_size > 0:
            image = tf.reshape(
                tf.cond(ok, lambda: image, lambda: tf.zeros([eval_size, eval_size, 3], tf.uint8)),
                [eval_size, eval_size, 3],
            )
        return image, ok, tf.gather(names, i)

    ds = (
        tf.data.Dataset.range(len(source))
        .map(load, num_parallel_calls=calls, deterministic=True)
        .filter(lambda image, ok, name: ok)
    )
    if with_names:
        ds = ds.map(lambda image, ok, name: (to_float(image), name))
    else:
        ds = ds.map(lambda image, ok, name: to_float(image))
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


__all__ = [
    "PREPROCESS_MODES",
    "SPLITS",
    "clear_cache",
    "domain_files",
    "eval_dataset",
    "eval_geometry",
    "has_split",
    "reset_skipped_files",
    "skipped_file_reasons",
    "skipped_files",
    "steps_per_epoch",
    "to_float",
    "train_dataset",
    "train_geometry",
]

