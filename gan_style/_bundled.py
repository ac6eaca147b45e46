"""Files the repository keeps at its top level (``assets/``, ``configs/``) and a
wheel carries inside the package (setup.py maps them to ``gan_style/_assets``
and ``gan_style/_configs``), found wherever gan_style was installed from."""

from __future__ import annotations

import pathlib

_PACKAGE = pathlib.Path(__file__).resolve().parent


def bundled_path(folder: str, name: str) -> pathlib.Path:
    """``folder/name`` of the source tree (a clone, or ``pip install -e``), else
    the installed copy; when neither exists, the source-tree path, for errors."""
    in_tree = _PACKAGE.parent / folder / name
    if in_tree.exists():
        return in_tree
    installed = _PACKAGE / f"_{folder}" / name
    return installed if installed.exists() else in_tree
