"""Serving the studio: the HTTP server, the default model, the --host warning."""

from __future__ import annotations

import errno
import ipaddress
import pathlib
import socket

from werkzeug.serving import BaseWSGIServer, select_address_family
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
    _check_can_listen(host, port)
    return _werkzeug_make_server(host, port, app, threaded=True)


def _check_can_listen(host: str, port: int) -> None:
    """Raises OSError naming ``--host``/``--port`` when the server could not
    listen there. Werkzeug prints the bare socket error ("Name or service
    not known") and exits the process; found first, it is our message."""
    # The address Werkzeug binds: IPv4 unless the host has a ':' (its rule,
    # not the resolver's order); a unix:// socket is left to it.
    family = select_address_family(host, port)
    if family == getattr(socket, "AF_UNIX", None):
        return
    try:
        address = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM, socket.IPPROTO_TCP)[0][4]
    except socket.gaierror as e:
        raise OSError(f"--host={host}: no such address or host name ({e.strerror})") from None
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            probe.bind(address)
        except OSError as e:
            hint = "; another program uses that port: pick another with --port" if e.errno == errno.EADDRINUSE else ""
            raise OSError(f"--host={host} --port={port}: cannot listen there ({e.strerror or e}){hint}") from None
