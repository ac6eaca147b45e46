"""Files that appear whole or not at all.

Everything gan_style writes for someone else to read (catalog outputs,
manifests, exported models, tone profiles, training configs and sheets) is
written under a temporary name in the target's folder, flushed to disk, then
renamed over the target. A kill, a full disk or an exception part way leaves
the previous file as it was, never a truncated one. An exception removes the
temporary; a kill cannot, so writers whose folders see many writes (catalog
outputs, manifests, the training export) clean up leftovers by their names.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import uuid
from collections.abc import Iterator


def temporary_beside(path: pathlib.Path) -> pathlib.Path:
    """``.<12 hex>.tmp.NAME`` in ``path``'s folder: hidden, unique per call (two
    writers never share one), and ending in the target's own name, whose
    extension Keras and matplotlib choose the format by (``.keras``,
    ``.weights.h5``, ``.png``)."""
    return path.with_name(f".{uuid.uuid4().hex[:12]}.tmp.{path.name}")


@contextlib.contextmanager
def replacing(path: str | os.PathLike, temporary: pathlib.Path | None = None) -> Iterator[pathlib.Path]:
    """Yields the path to write ``path``'s new content to.

    On leaving the block normally the written file is synced to disk and
    renamed over ``path`` (``os.replace``: atomic on POSIX, readers see the
    old file or the new one). On an exception it is removed and ``path`` is
    left as it was. Not ``mkstemp``: its files keep mode 0600 rather than the
    umask's.

    Args:
      path: the file to write.
      temporary: the temporary path to use (in ``path``'s folder, or the
        rename is no longer atomic); default :func:`temporary_beside`.
    """
    path = pathlib.Path(path)
    temporary = temporary_beside(path) if temporary is None else pathlib.Path(temporary)
    try:
        yield temporary
        _sync(temporary)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _sync(path: pathlib.Path) -> None:
    """Its content on disk before the rename: after a power cut the new name
    never points at a file the disk had not been given yet."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
