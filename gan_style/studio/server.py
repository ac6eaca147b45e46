"""Serving the studio: the HTTP server, the default model, the --host warning."""

from __future__ import annotations

import ipaddress
import pathlib

from werkzeug.serving import BaseWSGIServer
from werkzeug.serving import make_server as _werkzeug_make_server


def default_model_path() -> pathlib.Path:
    """The bundled default model's path: the catalog converter's
    (``gan_style.convert.DEFAULT_MODEL_PATH``), imported when asked for."""
    from gan_style import convert

    return pathlib.Path(convert.DEFAULT_MODEL_PATH)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: may resolve to anything


def host_warning(host: str) -> str | None:
    """The warning printed when ``--host`` exposes the studio beyond this machine."""
    if is_loopback(host):
        return None
    return (
        f"WARNING: the studio is listening on {host}, not only on this machine. It has no "
        "login and no encryption: anyone who can reach this port can upload images, use "
        "this computer's CPU and see the images loaded here. Use --host only on a network "
        "you trust."
    )


def make_server(app, host: str = "127.0.0.1", port: int = 8080) -> BaseWSGIServer:
    """A threaded HTTP server for ``app`` (call ``serve_forever()``; ``shutdown()`` stops it).

    ``port=0`` picks a free port; read it back from ``server.server_port``.
    Werkzeug's server is the right size for a one-person local tool (it is
    not meant to face the internet; see :func:`host_warning`).
    """
    return _werkzeug_make_server(host, port, app, threaded=True)
