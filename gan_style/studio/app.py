"""The tone studio's web app (Flask): a static page plus a small JSON/PNG API.

Endpoints (all under ``/api`` answer errors as ``{"error": message}`` with a
4xx status, so the page can show the message and the server keeps running):

* ``GET  /api/config``: sliders (names, ranges, neutral values, from
  :mod:`gan_style.tonal`), presets, the model's own tone, limits, pickable
  images, whether "match a reference" is available.
* ``POST /api/images``: multipart ``image`` file -> decode, reduce to the
  preview size, run the generator once -> image description (``id``, size,
  notes).
* ``POST /api/images/pick``: JSON ``{"name": ...}`` from ``--images``.
* ``GET  /api/images/<id>/source.png``: the working copy of the source.
* ``GET  /api/images/<id>/preview.png?<profile>``: strength blend + tone on the
  cached translation (no generator pass). ``<profile>`` is the profile's keys
  as query parameters (``brightness=0.2&strength=0.8``); missing ones neutral.
* ``GET  /api/images/<id>/converted.png?<profile>``: the same pixels as a
  download (``Content-Disposition: attachment``).
* ``GET  /api/profile.json?<profile>``: the validated profile as a JSON
  download, the file ``infer.py --tone=`` reads.
* ``POST /api/profile``: multipart ``profile`` JSON file -> the validated
  profile (unknown keys and out-of-range values are named in the error).
* ``POST /api/fit``: multipart ``references`` (one or more images), optional
  ``image_id`` and ``strength`` form fields -> the fitted profile.
"""

from __future__ import annotations

import logging
import pathlib
import re
import time
import urllib.parse

try:
    import flask
    from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the tone studio needs Flask: pip install 'gan-style[studio]' (or pip install flask)"
    ) from error

from gan_style import tiling, tonal
from gan_style.studio import engine
from gan_style.studio.engine import StudioError
from gan_style.studio.server import is_loopback

STATIC_DIR = pathlib.Path(__file__).resolve().parent / "static"

_log = logging.getLogger("gan_style.studio")


def _hostname(host: str) -> str:
    """The name in a Host header, without the port: ``[::1]:80`` -> ``::1``."""
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host[1:]
    return host.split(":", 1)[0].lower()


def _download_name(name: str, suffix: str, *, is_file: bool = True) -> str:
    """A safe file name for Content-Disposition: ``name`` + ``suffix``.

    ``is_file``: ``name`` is an upload's file name, whose own extension goes
    (photo.jpg -> photo_converted.png). A profile's name keeps its dots:
    "brand v1.2" and "brand v1.3" must not both become brand_v1.json.
    """
    stem = pathlib.PurePosixPath(name.replace("\\", "/")).stem if is_file else name.removesuffix(suffix)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem or "image")[:80] or "image"
    return f"{stem}{suffix}"


def _size_text(n: int) -> str:
    return f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n / 2**10:.0f} KB"


def _same_origin(origin: str, host: str) -> bool:
    return urllib.parse.urlsplit(origin).netloc.lower() == host.lower()


def create_app(
    translator,
    *,
    model_name: str = "",
    max_upload_bytes: int = engine.DEFAULT_MAX_UPLOAD_BYTES,
    max_pixels: int = engine.DEFAULT_MAX_PIXELS,
    preview_size: int = engine.DEFAULT_PREVIEW_SIZE,
    max_images: int = engine.DEFAULT_MAX_IMAGES,
    image_dir: str | None = None,
    local_only: bool = True,
    tile: int | None = tiling.DEFAULT_TILE,
    overlap: int = tiling.DEFAULT_OVERLAP,
) -> flask.Flask:
    """Builds the studio's Flask app around a loaded Translator.

    Args:
      translator: a :class:`gan_style.Translator`; its saved tone is where
        the sliders start.
      model_name: shown on the page (the model file's name).
      max_upload_bytes: largest request body (an image or a set of
        references); larger ones get HTTP 413 and a message.
      max_pixels: largest decoded image (width x height), checked before
        decoding.
      preview_size: long side of the working copy (bigger images are
        reduced for the studio; ``infer.py`` converts them in full).
      max_images: images (with cached translations) kept in memory.
      image_dir: optional folder of images the page offers to pick from.
      local_only: answer only requests addressed to this machine by name
        (``Host: 127.0.0.1``, ``localhost`` or ``[::1]``), which stops web pages
        elsewhere from reaching the studio through DNS rebinding. The command
        line turns it off with ``--host``.
      tile, overlap: as ``infer.py --tile --overlap``: images with a side over
        ``tile`` are generated in the same shared-statistics tiles.
    """
    studio = engine.Studio(
        translator,
        max_pixels=max_pixels,
        preview_size=preview_size,
        max_images=max_images,
        image_dir=image_dir,
        tile=tile,
        overlap=overlap,
    )
    app = flask.Flask(__name__, static_folder=str(STATIC_DIR), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = int(max_upload_bytes)
    app.extensions["gan_style_studio"] = studio

    def error(message: str, status: int = 400):
        return flask.jsonify(error=message), status

    @app.errorhandler(StudioError)
    def _studio_error(exc: StudioError):
        return error(str(exc), exc.status)

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(exc):
        return error(
            f"upload too large: the limit is {_size_text(max_upload_bytes)} per request "
            "(start the studio with --max_upload_mb to change it)",
            413,
        )

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        if flask.request.path.startswith("/api/"):
            return error(f"{exc.code} {exc.name}: {exc.description}", exc.code or 500)
        return exc

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        # A bug must not take the server down or leave the page without a
        # message; the traceback goes to the terminal.
        _log.exception("studio request failed: %s %s", flask.request.method, flask.request.path)
        return error(
            f"internal error ({type(exc).__name__}: {exc}); see the studio's terminal", 500
        )

    @app.before_request
    def _refuse_foreign_requests():
        host = _hostname(flask.request.host)
        if local_only and not is_loopback(host):
            return error(
                f"this studio only answers requests to 127.0.0.1 or localhost, not {host!r} "
                "(start it with --host to serve other addresses)",
                403,
            )
        # A page on another site may post to the studio from the user's
        # browser (it cannot read the answer, but it could make the studio
        # work). Browsers name the page's origin on such requests; refuse any
        # that is not the studio's own. Clients that send no Origin (curl,
        # scripts) are not browsers acting for another site.
        origin = flask.request.headers.get("Origin")
        unsafe = flask.request.method not in ("GET", "HEAD", "OPTIONS")
        if unsafe and origin is not None and not _same_origin(origin, flask.request.host):
            return error(f"cross-site request from {origin} refused", 403)
        return None

    @app.after_request
    def _no_store(response):
        # Previews change with every slider move; never let a cache answer.
        if flask.request.path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    # -- page ---------------------------------------------------------------

    @app.get("/")
    def index():
        return flask.send_from_directory(STATIC_DIR, "index.html")

    # -- api ----------------------------------------------------------------

    @app.get("/api/config")
    def config():
        model_profile = translator.profile
        return flask.jsonify(
            model=model_name,
            parameters=engine.parameter_table(),
            presets={name: p.to_dict() for name, p in tonal.PRESETS.items()},
            model_profile=model_profile.to_dict(),
            limits={
                "max_upload_bytes": int(max_upload_bytes),
                "max_pixels": int(max_pixels),
                "preview_size": int(preview_size),
                "max_references": engine.MAX_REFERENCES,
            },
            images=studio.pickable_images(),
            fit_available=engine.fit_available(),
        )

    def image_response(image: engine.StudioImage):
        return flask.jsonify(image.describe())

    @app.post("/api/images")
    def upload_image():
        upload = flask.request.files.get("image")
        if upload is None:
            raise StudioError("no file: send the image as the multipart field 'image'")
        data = upload.read()
        name = upload.filename or "upload"
        return image_response(studio.add_image(data, name=name))

    @app.post("/api/images/pick")
    def pick_image():
        body = flask.request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            raise StudioError('pick an image: send JSON {"name": "<file from the list>"}')
        return image_response(studio.pick_image(body["name"]))

    @app.get("/api/images/<image_id>/source.png")
    def source_png(image_id: str):
        image = studio.get(image_id)
        return flask.Response(engine.encode_png(image.rgb, image.alpha, icc_profile=image.icc_profile), mimetype="image/png")

    def rendered(image_id: str, fast: bool):
        image = studio.get(image_id)
        profile = engine.profile_from_query(flask.request.args.to_dict(), source="profile")
        start = time.perf_counter()
        pixels = studio.render(image_id, profile)
        render_ms = (time.perf_counter() - start) * 1000
        png = engine.encode_png(pixels, image.alpha, fast=fast, icc_profile=image.icc_profile)
        response = flask.Response(png, mimetype="image/png")
        response.headers["X-Render-Ms"] = f"{render_ms:.1f}"
        response.headers["X-Total-Ms"] = f"{(time.perf_counter() - start) * 1000:.1f}"
        return image, response

    @app.get("/api/images/<image_id>/preview.png")
    def preview_png(image_id: str):
        return rendered(image_id, fast=True)[1]

    @app.get("/api/images/<image_id>/converted.png")
    def converted_png(image_id: str):
        image, response = rendered(image_id, fast=False)
        name = _download_name(image.name, "_converted.png")
        response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
        return response

    @app.get("/api/profile.json")
    def profile_json():
        profile = engine.profile_from_query(flask.request.args.to_dict(), source="profile")
        filename = _download_name(profile.name or "profile", ".json", is_file=False)
        response = flask.Response(profile.to_json(), mimetype="application/json")
        response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response

    @app.post("/api/profile")
    def upload_profile():
        upload = flask.request.files.get("profile")
        if upload is None:
            raise StudioError("no file: send the profile as the multipart field 'profile'")
        profile = engine.profile_from_json_bytes(upload.read(), upload.filename or "profile")
        return flask.jsonify(profile=profile.to_dict())

    @app.post("/api/fit")
    def fit():
        uploads = flask.request.files.getlist("references")
        references = [(u.filename or f"reference {i + 1}", u.read()) for i, u in enumerate(uploads)]
        image_id = flask.request.form.get("image_id") or None
        strength_text = flask.request.form.get("strength", "1")
        strength = engine.profile_from_query({"strength": strength_text}).strength
        profile = studio.fit(references, image_id=image_id, strength=strength)
        return flask.jsonify(profile=profile.to_dict())

    return app


def get_studio(app: flask.Flask) -> engine.Studio:
    """The :class:`~gan_style.studio.engine.Studio` behind an app (for tests and tools)."""
    return app.extensions["gan_style_studio"]
