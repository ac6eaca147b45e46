"""The tone studio: a local web page to preview translations and tune a tone profile.

Run it with ``python -m gan_style.studio [--model=translator.keras]``; it needs
the optional extra ``pip install 'gan-style[studio]'`` (Flask). From Python::

    from gan_style.studio import create_app, make_server
    app = create_app(gan_style.load_translator("translator.keras"))
    make_server(app, "127.0.0.1", 8080).serve_forever()

Importing ``gan_style`` never imports this package (nor Flask).
"""

from gan_style.studio.app import create_app, get_studio
from gan_style.studio.engine import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_UPLOAD_BYTES,
    DEFAULT_PREVIEW_SIZE,
    Studio,
    StudioError,
)
from gan_style.studio.server import default_model_path, host_warning, make_server

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_UPLOAD_BYTES",
    "DEFAULT_PREVIEW_SIZE",
    "Studio",
    "StudioError",
    "create_app",
    "default_model_path",
    "get_studio",
    "host_warning",
    "make_server",
]
