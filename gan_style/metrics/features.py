"""Streaming Inception features: images in, features or statistics out."""

from __future__ import annotations

import weakref
from collections.abc import Iterable

import keras
import numpy as np
import tensorflow as tf

from gan_style.metrics.fid import FeatureStats
from gan_style.metrics.inception import FEATURE_DIM, INPUT_SIZE

# One traced feature function per model, reused across calls (a fresh
# tf.function per call would retrace the whole Inception graph each time).
_FEATURE_FNS: weakref.WeakKeyDictionary[
    keras.Model, tf.types.experimental.GenericFunction
] = weakref.WeakKeyDictionary()


def _feature_fn(model: keras.Model):
    fn = _FEATURE_FNS.get(model)
    if fn is None:
        fn = tf.function(
            lambda x: model(x, training=False),
            input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)],
        )
        _FEATURE_FNS[model] = fn
    return fn


def _resize_single(image) -> np.ndarray:
    """One [H, W, 3] image in [0, 255] -> float32 [299, 299, 3] in [0, 255].

    Same arithmetic as the model's InceptionPreprocess (scale to [0, 1],
    half-pixel bilinear, no antialias), so pre-resizing images of mixed sizes to
    batch them changes nothing but float rounding; the model's own resize is then
    an exact copy.
    """
    x = tf.cast(image, tf.float32)
    if x.shape[0] == INPUT_SIZE and x.shape[1] == INPUT_SIZE:
        return x.numpy()
    x = tf.image.resize(
        x / 255.0, (INPUT_SIZE, INPUT_SIZE), method="bilinear", antialias=False
    )
    return (x * 255.0).numpy()


def _check_images(array: np.ndarray, where: str) -> None:
    if array.ndim not in (3, 4) or array.shape[-1] != 3:
        raise ValueError(
            f"{where}: expected RGB images [H, W, 3] or batches [B, H, W, 3], got shape {array.shape}"
        )


def iterate_batches(images, batch_size: int = 50) -> Iterable[np.ndarray]:
    """Yields float32 batches [B, H, W, 3] in [0, 255] from images in any of the
    accepted forms.

    Args:
        images: a numpy array [N, H, W, 3]; a ``tf.data.Dataset`` or any iterable
            whose elements are single images [H, W, 3] or batches [B, H, W, 3]
            (uint8 or float in [0, 255]). Single images may differ in size: each
            is resized to 299x299 before being grouped into batches of
            ``batch_size``; batches pass through as they are.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(images, (np.ndarray, tf.Tensor)):
        array = np.asarray(images)
        _check_images(array, "images")
        if array.ndim == 3:
            array = array[None]
        for start in range(0, len(array), batch_size):
            yield array[start : start + batch_size].astype(np.float32)
        return
    if isinstance(images, tf.data.Dataset):
        images = images.as_numpy_iterator()
    pending: list[np.ndarray] = []
    for index, element in enumerate(images):
        array = np.asarray(element)
        _check_images(array, f"images element {index}")
        if array.ndim == 4:
            if pending:
                yield np.stack(pending)
                pending = []
            yield array.astype(np.float32)
            continue
        pending.append(_resize_single(array))
        if len(pending) == batch_size:
            yield np.stack(pending)
            pending = []
    if pending:
        yield np.stack(pending)


def _sized(images) -> int | None:
    if isinstance(images, (np.ndarray, tf.Tensor)):
        return int(images.shape[0]) if len(images.shape) == 4 else 1
    try:
        return len(images)  # a list of single images
    except TypeError:
        return None


def _run(model, images, batch_size, progress, on_batch, total):
    fn = _feature_fn(model)
    bar = keras.utils.Progbar(total, unit_name="image") if progress else None
    done = 0
    for batch in iterate_batches(images, batch_size):
        features = fn(tf.convert_to_tensor(batch)).numpy()
        if features.ndim != 2:
            raise ValueError(
                f"feature model returned shape {features.shape}, expected [batch, dim]"
            )
        on_batch(features)
        done += len(batch)
        if bar is not None:
            bar.update(done)
    return done


def compute_features(
    model: keras.Model,
    images,
    batch_size: int = 50,
    progress: bool = False,
    total: int | None = None,
) -> np.ndarray:
    """Features [N, 2048] (float32) of ``images`` (see :func:`iterate_batches`).

    Images are read and run batch by batch, so only the features are kept;
    use :func:`compute_statistics` when even those should not grow with N.

    Args:
        model: usually :func:`~gan_style.metrics.inception.load_inception`;
            any model mapping [B, H, W, 3] in [0, 255] to [B, d] works.
        total: number of images, for the progress bar (guessed for arrays and lists).
    """
    chunks: list[np.ndarray] = []
    _run(model, images, batch_size, progress, chunks.append, total or _sized(images))
    if not chunks:
        raise ValueError("no images to compute features of")
    return np.concatenate(chunks).astype(np.float32)


def compute_statistics(
    model: keras.Model,
    images,
    batch_size: int = 50,
    max_samples: int = 10_000,
    seed: int = 0,
    progress: bool = False,
    total: int | None = None,
) -> FeatureStats:
    """Streaming :class:`~gan_style.metrics.fid.FeatureStats` of ``images``: mean and
    covariance for FID, and a uniform sample of up to ``max_samples`` features for
    KID. Memory does not grow with the number of images."""
    stats = None

    def on_batch(features):
        nonlocal stats
        if stats is None:
            stats = FeatureStats(features.shape[1], max_samples=max_samples, seed=seed)
        stats.update(features)

    _run(model, images, batch_size, progress, on_batch, total or _sized(images))
    if stats is None:
        raise ValueError("no images to compute statistics of")
    return stats


__all__ = ["FEATURE_DIM", "compute_features", "compute_statistics", "iterate_batches"]
