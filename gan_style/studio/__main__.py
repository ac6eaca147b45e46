"""``python -m gan_style.studio [--model=translator.keras] [--port=8080] [--host=127.0.0.1]``.

Serves the tone studio on this machine. Exit status 0 after Ctrl+C, 1 when the
model cannot be loaded or the port cannot be opened, 2 for bad flags.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from gan_style.precision import PRECISIONS  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from gan_style.studio import engine

    parser = argparse.ArgumentParser(
        prog="python -m gan_style.studio",
        description="A local web page to preview translations and tune a tone profile "
        "for infer.py --tone=profile.json.",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="Translator .keras file, or a generator .keras exported by training "
        "(default: the bundled default model)",
    )
    parser.add_argument(
        "--port", type=int, default=8080, help="port (default 8080; 0 = any free port)"
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; "
        "0.0.0.0 exposes the studio to the network, with no login)",
    )
    parser.add_argument(
        "--images", default=None, help="a folder of images the page offers to pick from"
    )
    parser.add_argument(
        "--max_upload_mb",
        type=float,
        default=engine.DEFAULT_MAX_UPLOAD_BYTES / 2**20,
        help="largest upload per request in MB (default %(default)g)",
    )
    parser.add_argument(
        "--max_pixels",
        type=int,
        default=engine.DEFAULT_MAX_PIXELS,
        help="largest image in pixels, checked before decoding (default %(default)d)",
    )
    parser.add_argument(
        "--preview_size",
        type=int,
        default=engine.DEFAULT_PREVIEW_SIZE,
        help="long side of the studio's working copy; bigger images are reduced "
        "(default %(default)d; infer.py always converts the full image)",
    )
    parser.add_argument(
        "--tile",
        type=int,
        default=None,
        help="as infer.py --tile: images with a side over this are generated in tiles "
        "sharing instance-norm statistics (default: infer.py's default; 0 never tiles). "
        "Pass the value you will give infer.py, so the preview matches it",
    )
    parser.add_argument(
        "--overlap", type=int, default=None, help="as infer.py --overlap (default: infer.py's)"
    )
    parser.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="as infer.py --precision (default %(default)s, like infer.py, so the preview matches it)",
    )
    parser.add_argument(
        "--context",
        type=int,
        default=None,
        help="as infer.py --context: mirrored border in pixels (default: the model's own)",
    )
    args = parser.parse_args(argv)
    if args.context is not None and args.context < 0:
        parser.error(f"--context must be >= 0 (pixels), got {args.context}")
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be in 0..65535, got {args.port}")
    if args.max_upload_mb <= 0 or args.max_pixels <= 0 or args.preview_size <= 0:
        parser.error("--max_upload_mb, --max_pixels and --preview_size must be positive")
    if not math.isfinite(args.max_upload_mb):
        parser.error(f"--max_upload_mb must be a finite number of megabytes, got {args.max_upload_mb}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from gan_style.studio import server

    model = args.model
    if model is None:
        model = server.default_model_path()
        if not model.exists():
            print(
                "gan_style.studio: error: no --model given, and the bundled default model is not "
                f"available (looked for {model}). Pass --model=path/to/translator.keras "
                "(a Translator, or a generator exported by training: workdir/export/gen_ab.keras).",
                file=sys.stderr,
            )
            return 1
    from gan_style.studio import app as studio_app
    from gan_style.translator import load_translator

    try:
        translator = load_translator(model, context=args.context).with_precision(args.precision)
    except Exception as error:  # noqa: BLE001 - any failure to load is reported the same way
        print(f"gan_style.studio: error: cannot load --model {model}: {error}", file=sys.stderr)
        return 1
    try:
        app = studio_app.create_app(
            translator,
            model_name=os.path.basename(os.fspath(model)),
            max_upload_bytes=int(args.max_upload_mb * 2**20),
            max_pixels=args.max_pixels,
            preview_size=args.preview_size,
            image_dir=args.images,
            local_only=server.is_loopback(args.host),
            **{k: v for k, v in (("tile", args.tile), ("overlap", args.overlap)) if v is not None},
        )
        httpd = server.make_server(app, args.host, args.port)
    except (OSError, ValueError) as error:
        print(f"gan_style.studio: error: {error}", file=sys.stderr)
        return 1
    warning = server.host_warning(args.host)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    if args.host in ("0.0.0.0", "::", ""):
        # Listening on every interface: this machine reaches it on loopback.
        where = f"http://127.0.0.1:{httpd.server_port}/ (listening on all interfaces)"
    else:
        shown_host = f"[{args.host}]" if ":" in args.host else args.host
        where = f"http://{shown_host}:{httpd.server_port}/"
    print(f"gan_style studio: {where}  (Ctrl+C to stop)", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
