r"""Renders the before/after gallery of the sample images.

    python scripts/make_gallery.py [--model=assets/default_translator.keras]
        [--samples=assets/samples] [--output=assets/gallery.png]
        [--tones=neutral,warm,vivid] [--cell=2.2] [--dpi=100] [--max_kb=1000]

One row per sample: the source, then its translation finished with each tone
preset (:data:`gan_style.tonal.PRESETS`), all at the sample's own size. Each
row is as tall as the sample's aspect ratio needs, so nothing is letterboxed.
The generator runs once per sample; the tones only change the finish, as in
the catalog converter and the tone studio. Transparent samples are shown
composited on white, as the converter feeds them to the model.

The figure is ``(LABEL_WIDTH + cell * (1 + tones))`` inches wide and
``TITLE_HEIGHT + cell * sum(H / W)`` inches high, at ``--dpi``. If the PNG
would exceed ``--max_kb``, it is stored with a dithered 256-colour palette,
and if even that is too big the dpi steps down until it fits (the dpi used is
printed).

It also prints, per sample, numbers for the issue's check of "no colour
inversion or checkerboard artifacts" (see :func:`diagnostics`): luminance
correlation with the source, the share of warm/cool pixels whose side
flipped, the share of the translation's power on the checkerboard
frequency lattice, and how far its outermost lines jump from the band just
inside (stripes a generator draws along image borders).
"""

from __future__ import annotations

import argparse
import io
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python scripts/make_gallery.py` from anywhere
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

DEFAULT_SAMPLES = ROOT / "assets" / "samples"
DEFAULT_OUTPUT = ROOT / "assets" / "gallery.png"
DEFAULT_TONES = ("neutral", "warm", "vivid")
#: Inches for the row labels on the left and the column titles on top.
LABEL_WIDTH = 0.9
TITLE_HEIGHT = 0.35


def figure_size(aspects: list[float], columns: int, cell: float) -> tuple[float, float]:
    """Figure (width, height) in inches for rows of the given H/W aspects."""
    return LABEL_WIDTH + cell * columns, TITLE_HEIGHT + cell * float(sum(aspects))


#: A translation with more of its AC power than this on the period-2/4 lattice
#: has checkerboard artifacts. Measured on the samples: a 30-step transposed-conv
#: generator 13e-3..32e-3, a 500-step resize-conv one 0.006e-3..0.02e-3, the
#: sources themselves 0.001e-3..0.26e-3.
CHECKERBOARD_LIMIT = 1e-3
#: A translation whose outermost lines differ from the band just inside by
#: this many luma levels more than the source's do has stripes along a border
#: (a generator's own edge artifact). Measured on the six samples with the
#: bundled model's weights: 0-57 levels without mirrored context (five of six
#: over 8), 0-12 with 16 px of it, 0-5 with 32 px (what it ships with).
BORDER_STRIPE_LIMIT = 8.0
_LUMA = np.array([0.299, 0.587, 0.114])


def _correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson correlation of two pixel maps, None if either is (nearly) flat."""
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    if a.std() < 2.0 or b.std() < 2.0:  # under 2 levels: no structure to correlate
        return None
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def lattice_power(image: np.ndarray) -> float:
    """Fraction of the luminance's AC power at frequencies 1/4, 1/2, 3/4 cycles/pixel.

    Stride-2 transposed convolutions (two of them in the generators) leave
    their checkerboard exactly on that lattice; natural images and paintings
    put almost nothing there.
    """
    luma = np.asarray(image, np.float64) @ _LUMA
    h, w = (luma.shape[0] // 4) * 4, (luma.shape[1] // 4) * 4
    luma = luma[:h, :w] - luma[:h, :w].mean()
    power = np.abs(np.fft.fft2(luma)) ** 2
    rows = np.zeros(h, bool)
    rows[[0, h // 4, h // 2, 3 * h // 4]] = True
    cols = np.zeros(w, bool)
    cols[[0, w // 4, w // 2, 3 * w // 4]] = True
    lattice = rows[:, None] & cols[None, :]
    lattice[0, 0] = False  # DC is removed anyway
    total = power.sum()
    return float(power[lattice].sum() / total) if total > 0 else 0.0


def _border_jumps(luma: np.ndarray, depth: int = 3, inner: tuple[int, int] = (4, 8)) -> np.ndarray:
    """Per side (top, left, bottom, right): the largest step between the mean of
    one of the outermost ``depth`` lines and the mean of the band ``inner`` pixels in."""
    steps = []
    for side in (luma, luma.T, luma[::-1], luma.T[::-1]):
        if side.shape[0] < inner[1]:
            steps.append(0.0)
            continue
        lines = side[: inner[1]].mean(axis=1)
        steps.append(float(np.abs(lines[:depth] - lines[inner[0] : inner[1]].mean()).max()))
    return np.array(steps)


def border_stripes(source: np.ndarray, translated: np.ndarray) -> float:
    """How much more the translation jumps at a border than the source does there (luma levels).

    Per side, the step between each of the 3 outermost lines and the band 4-8
    px in (as line means) in the translation minus the same in the source
    (whose own content may change near an edge); the largest over the four
    sides. Thin stripes a generator draws along the image border score well
    over 8; a clean border, or a halo that fades over tens of pixels, near 0.
    """
    src = np.asarray(source, np.float64) @ _LUMA
    out = np.asarray(translated, np.float64) @ _LUMA
    return float(max(0.0, (_border_jumps(out) - _border_jumps(src)).max()))


def warm_cool_flip(source: np.ndarray, translated: np.ndarray) -> float | None:
    """Share of the source's clearly warm or cool pixels that swap side in the translation.

    Warm/cool is the sign of red minus blue; "clearly" is |R - B| > 40 levels
    in the source, and a swap needs |R - B| > 10 on the other side. None when
    under 1% of the source is clearly coloured (a gray or white image).
    An orange vase painted blue scores near 1, a kept palette near 0.
    """
    src, out = np.asarray(source, np.float64), np.asarray(translated, np.float64)
    src_rb, out_rb = src[..., 0] - src[..., 2], out[..., 0] - out[..., 2]
    coloured = np.abs(src_rb) > 40
    if coloured.mean() < 0.01:
        return None
    swapped = coloured & (np.sign(out_rb) == -np.sign(src_rb)) & (np.abs(out_rb) > 10)
    return float(swapped.sum() / coloured.sum())


def diagnostics(source: np.ndarray, translated: np.ndarray) -> dict:
    """Numbers for the issue's "no colour inversion or checkerboard" check.

    Returns:
      ``luma_corr``: correlation of source and translation luminance (an
      inverted image is near -1; None for a flat image); ``warm_cool_flip``
      (see :func:`warm_cool_flip`); ``lattice_power`` of the translation and
      ``source_lattice_power``; ``flags``: "inverted" (luma_corr < 0),
      "warm/cool flipped" (over half flipped), "checkerboard" (lattice power
      over :data:`CHECKERBOARD_LIMIT`), "border stripes" (``border_stripes``,
      see :func:`border_stripes`, over :data:`BORDER_STRIPE_LIMIT`). A flag asks for a look at the
      gallery: a Monet palette may legitimately recolour a product.
    """
    src, out = np.asarray(source, np.float64), np.asarray(translated, np.float64)
    result = {
        "luma_corr": _correlation(src @ _LUMA, out @ _LUMA),
        "warm_cool_flip": warm_cool_flip(source, translated),
        "lattice_power": lattice_power(translated),
        "source_lattice_power": lattice_power(source),
        "border_stripes": border_stripes(source, translated),
    }
    flags = []
    if result["luma_corr"] is not None and result["luma_corr"] < 0:
        flags.append("inverted")
    if result["warm_cool_flip"] is not None and result["warm_cool_flip"] > 0.5:
        flags.append("warm/cool flipped")
    if result["lattice_power"] > CHECKERBOARD_LIMIT:
        flags.append("checkerboard")
    if result["border_stripes"] > BORDER_STRIPE_LIMIT:
        flags.append("border stripes")
    result["flags"] = flags
    return result


def translate_with_tones(
    translator, image: np.ndarray, tones: list[str]
) -> list[np.ndarray]:
    """``image`` (uint8 [H, W, 3]) translated once and finished with each tone preset."""
    from gan_style import tonal

    batch = image[None]
    generated = translator.generate(batch)
    out = []
    for name in tones:
        params = np.asarray(
            [tonal.PRESETS[name].to_vector()], np.float32
        )  # tone + strength
        out.append(
            np.asarray(translator.finish(batch, generated, tone_params=params))[0]
        )
    return out


def render(
    rows: list[tuple[str, np.ndarray, list[np.ndarray]]],
    tones: list[str],
    cell: float,
    dpi: float,
) -> bytes:
    """The grid as PNG bytes: rows of (label, source, translations)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    aspects = [source.shape[0] / source.shape[1] for _, source, _ in rows]
    columns = 1 + len(tones)
    width, height = figure_size(aspects, columns, cell)
    fig = plt.figure(figsize=(width, height), dpi=dpi, facecolor="white")
    grid = fig.add_gridspec(
        len(rows),
        columns,
        height_ratios=aspects,
        left=LABEL_WIDTH / width,
        right=1.0,
        top=1.0 - TITLE_HEIGHT / height,
        bottom=0.0,
        wspace=0.03,
        hspace=0.03,
    )
    titles = ["source"] + [f"translated, {name}" for name in tones]
    for r, (label, source, translated) in enumerate(rows):
        for c, image in enumerate([source] + translated):
            ax = fig.add_subplot(grid[r, c])
            ax.imshow(image, interpolation="antialiased")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if r == 0:
                ax.set_title(titles[c], fontsize=9, pad=4)
            if c == 0:
                ax.set_ylabel(label, fontsize=8, rotation=90, labelpad=4)
    buffer = io.BytesIO()
    # No bbox_inches="tight": the pixel size stays exactly figsize * dpi.
    fig.savefig(
        buffer, format="png", dpi=dpi, facecolor="white", metadata={"Software": None}
    )
    plt.close(fig)
    return buffer.getvalue()


def fit_png(png: bytes, max_bytes: float) -> bytes | None:
    """``png`` if small enough, else a 256-colour dithered version if that fits, else None.

    Translations are textured (paint strokes), so a truecolor PNG of the
    grid can run to a few MB; an adaptive palette with Floyd-Steinberg
    dithering keeps them looking the same at a third of the size, where a
    lower dpi would lose the strokes.
    """
    from PIL import Image

    if len(png) <= max_bytes:
        return png
    with Image.open(io.BytesIO(png)) as image:
        rgb = image.convert("RGB")
    # quantize(colors) alone does not dither; mapping onto its palette does.
    palette = rgb.quantize(256, method=Image.Quantize.MEDIANCUT)
    dithered = rgb.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG)
    buffer = io.BytesIO()
    dithered.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue() if buffer.tell() <= max_bytes else None


def make_gallery(
    model: str | os.PathLike | None = None,
    samples: str | os.PathLike = DEFAULT_SAMPLES,
    output: str | os.PathLike = DEFAULT_OUTPUT,
    tones: tuple[str, ...] | list[str] = DEFAULT_TONES,
    *,
    cell: float = 2.2,
    dpi: float = 100,
    max_kb: float = 1000,
) -> dict:
    """Writes the gallery PNG; returns ``output``, ``size`` (pixels), ``bytes``, ``dpi``.

    Args:
      model: a translator ``.keras`` (default: the bundled
        ``gan_style.convert.DEFAULT_MODEL_PATH``).
      samples: folder of sample images (walked like the converter does).
      tones: preset names from ``gan_style.tonal.PRESETS``.

    Raises:
      FileNotFoundError: no model or no samples.
      ValueError: an unknown tone; the PNG cannot fit ``max_kb`` even at 30 dpi.
    """
    from PIL import Image

    from gan_style import atomic, convert, image_io, tonal
    from gan_style.translator import load_translator

    tones = list(tones)
    unknown = [t for t in tones if t not in tonal.PRESETS]
    if unknown or not tones:
        raise ValueError(
            f"--tones: unknown preset(s) {unknown}; choose from {', '.join(tonal.PRESETS)}"
        )
    model = pathlib.Path(model) if model else convert.DEFAULT_MODEL_PATH
    if not model.exists():
        raise FileNotFoundError(
            f"model {model} not found"
            + (
                " (the bundled default: make it with scripts/export_default_model.py, or pass --model)"
                if model == convert.DEFAULT_MODEL_PATH
                else ""
            )
        )
    paths = image_io.list_images(samples)
    if not paths:
        raise FileNotFoundError(f"--samples={samples}: no images")
    # Strength 1 and neutral tone underneath: the tone columns set the finish themselves.
    translator = load_translator(model, tone="neutral", strength=1.0)
    rows = []
    checks = {}
    for path in paths:
        image = image_io.load_rgb(path)  # RGB, alpha on white, as the converter decodes
        translated = translate_with_tones(translator, image, tones)
        rows.append((path.name, image, translated))
        # On the neutral (or first) tone: the others only change the finish.
        checks[path.name] = diagnostics(
            image, translated[tones.index("neutral") if "neutral" in tones else 0]
        )

    while True:
        png = fit_png(render(rows, tones, cell, dpi), max_kb * 1024)
        if png is not None:
            break
        if dpi <= 30:
            raise ValueError(
                f"gallery does not fit --max_kb={max_kb:g} even at {dpi:g} dpi with 256 colours"
            )
        dpi = max(30, dpi - 10)
    output = pathlib.Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic.replacing(output) as temporary:
        temporary.write_bytes(png)
    with Image.open(output) as written:
        size = written.size
    return {
        "checks": checks,
        "output": str(output),
        "size": size,
        "bytes": len(png),
        "dpi": dpi,
        "rows": len(rows),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python scripts/make_gallery.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--model", default=None, help="translator .keras (default: the bundled model)"
    )
    parser.add_argument("--samples", default=str(DEFAULT_SAMPLES))
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT))
    parser.add_argument(
        "--tones", default=",".join(DEFAULT_TONES), help="comma-separated preset names"
    )
    parser.add_argument(
        "--cell", type=float, default=2.2, help="column width in inches"
    )
    parser.add_argument("--dpi", type=float, default=100)
    parser.add_argument("--max_kb", type=float, default=1000)
    args = parser.parse_args(argv)
    try:
        summary = make_gallery(
            args.model,
            args.samples,
            args.output,
            [t.strip() for t in args.tones.split(",") if t.strip()],
            cell=args.cell,
            dpi=args.dpi,
            max_kb=args.max_kb,
        )
    except (OSError, ValueError) as error:  # OSError: also a --samples that is a file
        print(f"make_gallery.py: error: {error}", file=sys.stderr)
        return 1
    print(
        "sample             luma corr  warm/cool flip  lattice power x1e3 (source)  border  flags"
    )
    for name, check in summary["checks"].items():
        luma, flip = check["luma_corr"], check["warm_cool_flip"]
        corr = [
            "-" if luma is None else f"{luma:+.2f}",
            "-" if flip is None else f"{flip:.2f}",
        ]
        print(
            f"{name:<18} {corr[0]:>9}  {corr[1]:>14}  {1e3 * check['lattice_power']:>10.3f} "
            f"({1e3 * check['source_lattice_power']:.3f})  {check['border_stripes']:>6.1f}  "
            f"{', '.join(check['flags']) or 'ok'}"
        )
    print(
        f"wrote {summary['output']}: {summary['size'][0]}x{summary['size'][1]} px, "
        f"{summary['bytes'] / 1024:.0f} KiB at {summary['dpi']:g} dpi, {summary['rows']} samples"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
