"""Helpers several test modules share: a tiny saved translator, a catalog's bad files."""

import io
import pathlib

import numpy as np
from PIL import Image

from gan_style.networks import build_generator
from gan_style.translator import Translator

#: The bad files a catalog operator meets, with what their manifest reason says.
BAD_FILES = {"empty.jpg": "empty file", "truncated.jpg": "truncated", "notes.png": "not an image"}


def save_tiny_translator(path: pathlib.Path, *, base_filters: int, seed: int) -> pathlib.Path:
    """A random ``resnet_6blocks`` Translator saved as ``.keras`` at ``path``."""
    translator = Translator(build_generator("resnet_6blocks", base_filters=base_filters, seed=seed))
    translator(np.zeros((1, 8, 8, 3), np.uint8))  # build before saving
    translator.save(path)
    return path


def write_bad_files(folder: pathlib.Path, seed: int) -> None:
    """Writes :data:`BAD_FILES` into ``folder``: zero bytes, half a JPEG, text named .png."""
    (folder / "empty.jpg").write_bytes(b"")
    pixels = np.random.default_rng(seed).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG")
    (folder / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (folder / "notes.png").write_text("this is not a picture")
