"""Files the repository keeps at its top level (``assets/``, ``configs/``) and a
wheel carries inside the package (setup.py maps them to ``gan_style/_assets``
and ``gan_style/_configs``), found wherever gan_style was installed from."""

from __future__ import annotations

import pathlib

_PACKAGE = pathlib.Path(__file__).resolve().parent


def bundled_path(folder: str, name: str) -> pathlib.Path:
    """The installed copy (a wheel's ``gan_style/_folder/name``), else
    ``folder/name`` of the source tree (a clone, or ``pip install -e``, which
    has no ``_folder``). Installed first: beside an installed package, the
    "source tree" is site-packages, where another distribution's ``configs/``
    may be. When neither exists, the source-tree path, for errors."""
    installed = _PACKAGE / f"_{folder}" / name
    return installed if installed.exists() else _PACKAGE.parent / folder / name
