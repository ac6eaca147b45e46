r"""Makes the sample inputs shipped in ``assets/samples/`` (deterministically).

    python scripts/make_samples.py [--output=assets/samples]

Only images the project may ship: one CC0 photograph from scikit-image's
``skimage.data`` (``coffee``) and product-like images rendered here with
numpy (surfaces of revolution and boxes lit by one light, drawn at 3x and
box-filtered down for smooth edges, with a soft floor shadow). Nothing is
read from ``../shared/data``. See ``assets/samples/README.md`` for the list
and the licences. Running it twice writes the same bytes (no randomness
except a fixed-seed generator; PNG/JPEG encoders are deterministic).

:data:`SAMPLES` is the spec the tests check the files against.
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import sys
from collections.abc import Callable

import numpy as np
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = ROOT / "assets" / "samples"
SUPERSAMPLE = 3
JPEG_QUALITY = 90
#: Light direction (x right, y down, z towards the viewer): from the upper left front.
LIGHT = np.array([-0.45, -0.55, 0.70]) / np.linalg.norm([-0.45, -0.55, 0.70])


# ---------------------------------------------------------------------------
# A tiny renderer: layers of (coverage, colour) composited over white.


class Canvas:
    """An RGB float canvas at ``SUPERSAMPLE`` times the output size, white."""

    def __init__(self, width: int, height: int):
        self.width, self.height = width, height
        self.w, self.h = width * SUPERSAMPLE, height * SUPERSAMPLE
        self.rgb = np.ones((self.h, self.w, 3))
        self.alpha = np.zeros((self.h, self.w))  # object coverage (for cut-outs)
        ys, xs = np.mgrid[0 : self.h, 0 : self.w]
        # Coordinates in output pixels, so shapes are described at output size.
        self.x = (xs + 0.5) / SUPERSAMPLE
        self.y = (ys + 0.5) / SUPERSAMPLE

    def paint(
        self, mask: np.ndarray, colour: np.ndarray, opacity: float | np.ndarray = 1.0
    ):
        """Paints ``colour`` ([H, W, 3] or [3]) where ``mask`` is true."""
        a = mask.astype(float) * opacity
        self.rgb = (
            self.rgb * (1 - a[..., None])
            + np.broadcast_to(colour, self.rgb.shape) * a[..., None]
        )
        self.alpha = np.maximum(self.alpha, mask.astype(float))

    def shadow(
        self, cx: float, cy: float, rx: float, ry: float, darkness: float = 0.25
    ):
        """A soft elliptical floor shadow (smooth falloff, no hard edge)."""
        d = ((self.x - cx) / rx) ** 2 + ((self.y - cy) / ry) ** 2
        shade = darkness * np.clip(1 - d, 0, 1) ** 1.5
        self.rgb = self.rgb * (1 - shade[..., None])

    def image(self, mode: str = "RGB") -> Image.Image:
        """Box-filters down to the output size (anti-aliasing) in ``mode``."""
        rgb = Image.fromarray(np.round(np.clip(self.rgb, 0, 1) * 255).astype(np.uint8))
        small = rgb.resize((self.width, self.height), Image.Resampling.BOX)
        if mode == "RGBA":
            alpha = Image.fromarray(np.round(self.alpha * 255).astype(np.uint8))
            small.putalpha(
                alpha.resize((self.width, self.height), Image.Resampling.BOX)
            )
            return small
        return small.convert(mode)


def _shade(
    normal: np.ndarray, base, ambient=0.35, diffuse=0.65, specular=0.35, shininess=24
):
    """Blinn-Phong shading of unit normals [..., 3] for a base colour [3]."""
    base = np.asarray(base, float)
    lambert = np.clip(normal @ LIGHT, 0, 1)
    half = LIGHT + np.array([0, 0, 1.0])
    half /= np.linalg.norm(half)
    spec = np.clip(normal @ half, 0, 1) ** shininess
    return np.clip(
        base * (ambient + diffuse * lambert)[..., None] + specular * spec[..., None],
        0,
        1,
    )


def revolve(
    canvas: Canvas, cx: float, top: float, bottom: float, radius: Callable, base
):
    """Paints a surface of revolution about the vertical line ``x = cx``.

    ``radius(t)`` gives the radius at ``t`` in [0, 1] from ``top`` to
    ``bottom``. The normal comes from the profile's slope, so a bulge is lit
    like one. Returns the radius at the top (for a rim).
    """
    span = bottom - top
    t = np.clip((canvas.y - top) / span, 0, 1)
    r = radius(t)
    dt = 1e-3
    slope = (
        (radius(np.clip(t + dt, 0, 1)) - radius(np.clip(t - dt, 0, 1)))
        / (2 * dt)
        / span
    )
    inside = (np.abs(canvas.x - cx) < r) & (canvas.y >= top) & (canvas.y <= bottom)
    u = np.clip((canvas.x - cx) / np.maximum(r, 1e-6), -1, 1)
    nz = np.sqrt(1 - u**2)
    # Surface point (r u, y, r nz): the normal tilts up where the radius grows downwards.
    normal = np.stack([u, -slope * nz, nz], axis=-1)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    canvas.paint(inside, _shade(normal, base))
    return float(radius(np.float64(0.0)))


def ellipse(canvas: Canvas, cx, cy, rx, ry) -> np.ndarray:
    return ((canvas.x - cx) / rx) ** 2 + ((canvas.y - cy) / ry) ** 2 <= 1


def polygon(canvas: Canvas, points) -> np.ndarray:
    """Inside of a convex polygon given clockwise (in image coordinates)."""
    inside = np.ones(canvas.x.shape, bool)
    pts = np.asarray(points, float)
    for (x0, y0), (x1, y1) in zip(pts, np.roll(pts, -1, axis=0)):
        inside &= (x1 - x0) * (canvas.y - y0) - (y1 - y0) * (canvas.x - x0) >= 0
    return inside


def _texture(canvas: Canvas, seed: int, amount: float) -> None:
    """Faint fixed-seed grain on the object, so it is not perfectly flat."""
    rng = np.random.default_rng(seed)
    grain = rng.normal(0, amount, (canvas.h, canvas.w, 1))
    canvas.rgb = np.where(
        canvas.alpha[..., None] > 0, np.clip(canvas.rgb + grain, 0, 1), canvas.rgb
    )


# ---------------------------------------------------------------------------
# The products.


def render_mug(width=256, height=256) -> Canvas:
    c = Canvas(width, height)
    cx, top, bottom = 118, 70, 200
    c.shadow(cx + 12, bottom + 2, 92, 16)
    # Handle first (behind the body's right edge): a shaded ring.
    hx, hy = cx + 62, (top + bottom) / 2
    d = np.hypot((c.x - hx) / 1.0, (c.y - hy) / 1.25)
    ring = (d > 24) & (d < 38) & (c.x > cx + 40)
    tube = np.clip(1 - np.abs(d - 31) / 7, 0, 1)  # 1 on the ring's centre line
    ang = np.arctan2(c.y - hy, c.x - hx)
    normal = np.stack(
        [
            np.cos(ang) * (1 - tube),
            np.sin(ang) * (1 - tube),
            np.sqrt(np.clip(2 * tube - tube**2, 0, 1)),
        ],
        -1,
    )
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    colour = np.array([0.16, 0.42, 0.62])
    c.paint(ring, _shade(normal, colour))
    r_top = revolve(c, cx, top, bottom, lambda t: 62 - 4 * t + 0 * t, colour)
    # Rim and the dark inside of the mug.
    c.paint(ellipse(c, cx, top, r_top, 12), np.array([0.85, 0.88, 0.9]))
    c.paint(
        ellipse(c, cx, top + 1, r_top - 5, 9.5), np.array([0.22, 0.16, 0.12])
    )  # coffee
    # A light band near the base, like a glaze line.
    band = (np.abs(c.y - (bottom - 14)) < 2.5) & (np.abs(c.x - cx) < 58)
    c.paint(band, np.array([0.95, 0.95, 0.93]), 0.6)
    _texture(c, seed=1, amount=0.01)
    return c


def render_vase(width=333, height=517) -> Canvas:
    c = Canvas(width, height)
    cx, top, bottom = width / 2, 60, 470

    def radius(t):
        # Narrow neck, flared lip, round belly, narrower foot.
        belly = 105 * np.exp(-(((t - 0.62) / 0.28) ** 2))
        neck = 34 + 22 * np.exp(-((t / 0.06) ** 2))
        return np.maximum(neck, belly) * (1 - 0.25 * np.clip((t - 0.9) / 0.1, 0, 1))

    c.shadow(cx + 20, bottom + 3, 120, 18)
    colour = np.array([0.78, 0.45, 0.22])  # terracotta
    r_top = revolve(c, cx, top, bottom, radius, colour)
    c.paint(ellipse(c, cx, top, r_top, 8), np.array([0.35, 0.18, 0.08]))
    # Two painted stripes that follow the belly.
    for y0 in (300.0, 318.0):
        t = (c.y - top) / (bottom - top)
        stripe = (np.abs(c.y - y0) < 4) & (np.abs(c.x - cx) < radius(np.clip(t, 0, 1)))
        c.paint(stripe, np.array([0.15, 0.12, 0.1]), 0.55)
    _texture(c, seed=2, amount=0.015)
    return c


def _box(c: Canvas, x0, y0, x1, y1, depth, base):
    """An axis-aligned box seen slightly from above and the right: front, top, side faces."""
    dx, dy = depth * 0.6, -depth * 0.45
    base = np.asarray(base, float)
    front = polygon(c, [(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
    top = polygon(c, [(x0 + dx, y0 + dy), (x1 + dx, y0 + dy), (x1, y0), (x0, y0)])
    side = polygon(c, [(x1, y0), (x1 + dx, y0 + dy), (x1 + dx, y1 + dy), (x1, y1)])
    c.paint(top, _shade(np.array([0.0, -1.0, 0.3]) / np.hypot(1, 0.3), base))
    c.paint(side, _shade(np.array([1.0, 0.0, 0.5]) / np.hypot(1, 0.5), base))
    # A vertical gradient on the front so it reads as lit from above.
    grad = np.clip(1.05 - 0.25 * (c.y - y0) / max(y1 - y0, 1), 0, 1)[..., None]
    c.paint(front, _shade(np.array([0.0, 0.0, 1.0]), base) * grad)


def render_chair(width=256, height=320) -> Canvas:
    c = Canvas(width, height)
    wood = [0.62, 0.42, 0.24]
    seat = [0.55, 0.62, 0.50]  # sage upholstery
    c.shadow(140, 288, 100, 16, darkness=0.3)
    # Back legs (behind), then the backrest, seat, front legs.
    _box(c, 76, 150, 84, 282, 8, wood)
    _box(c, 176, 150, 184, 282, 8, wood)
    _box(c, 70, 36, 178, 150, 10, wood)
    _box(c, 82, 48, 166, 136, 4, seat)
    _box(c, 58, 168, 190, 186, 46, seat)
    _box(c, 60, 186, 70, 296, 8, wood)
    _box(c, 178, 186, 188, 296, 8, wood)
    _texture(c, seed=3, amount=0.012)
    return c


def render_lamp(width=240, height=320) -> Canvas:
    """A table lamp cut out on a transparent background (no floor shadow)."""
    c = Canvas(width, height)
    cx = width / 2
    brass = [0.80, 0.62, 0.28]
    revolve(c, cx, 276, 300, lambda t: 44 + 8 * t, brass)  # base
    revolve(c, cx, 120, 280, lambda t: 5 + 0 * t, brass)  # stem
    # Shade: a truncated cone, wider at the bottom.
    shade = np.array([0.93, 0.88, 0.78])
    revolve(c, cx, 30, 130, lambda t: 48 + 46 * t, shade)
    c.paint(ellipse(c, cx, 130, 94, 10) & (c.y > 130), shade * 0.8)
    _texture(c, seed=4, amount=0.01)
    return c


def render_kettle(width=288, height=224) -> Canvas:
    """A kettle, saved in grayscale (mode L)."""
    c = Canvas(width, height)
    cx, top, bottom = 140, 58, 196
    steel = [0.72, 0.74, 0.76]
    c.shadow(cx + 10, bottom + 2, 110, 14)
    # Spout: a slanted tapered quad on the left.
    spout_normal = np.array([-0.5, -0.4, 0.75]) / np.linalg.norm([-0.5, -0.4, 0.75])
    c.paint(
        polygon(c, [(14, 72), (28, 64), (74, 118), (62, 152)]),
        _shade(spout_normal, steel),
    )
    revolve(
        c,
        cx,
        top,
        bottom,
        lambda t: 58 + 34 * np.sin(np.pi * np.clip(t * 0.75 + 0.1, 0, 1)),
        steel,
    )
    revolve(c, cx, top - 14, top + 2, lambda t: 10 + 40 * t, [0.2, 0.2, 0.22])  # lid
    # Handle: an arc above.
    d = np.hypot(c.x - cx, (c.y - top + 6) * 1.4)
    c.paint((d > 56) & (d < 66) & (c.y < top - 4), np.array([0.12, 0.12, 0.13]))
    _texture(c, seed=5, amount=0.01)
    return c


def coffee_photo(width=360, height=240) -> Image.Image:
    """scikit-image's ``coffee`` (CC0, Rachel Michetti), downscaled 600x400 -> 360x240."""
    from skimage import data

    return Image.fromarray(data.coffee()).resize(
        (width, height), Image.Resampling.LANCZOS
    )


#: file name -> (maker, (width, height), PIL mode, what it is). The tests read this.
SAMPLES: dict[str, tuple[Callable[[], Image.Image], tuple[int, int], str, str]] = {
    "coffee.jpg": (
        coffee_photo,
        (360, 240),
        "RGB",
        "photo: skimage.data.coffee (CC0), downscaled",
    ),
    "mug.png": (
        lambda: render_mug().image("RGB"),
        (256, 256),
        "RGB",
        "rendered mug on white",
    ),
    "vase.jpg": (
        lambda: render_vase().image("RGB"),
        (333, 517),
        "RGB",
        "rendered vase on white, odd non-square size",
    ),
    "chair.png": (
        lambda: render_chair().image("RGB"),
        (256, 320),
        "RGB",
        "rendered chair with shading on white",
    ),
    "lamp_cutout.png": (
        lambda: render_lamp().image("RGBA"),
        (240, 320),
        "RGBA",
        "rendered lamp, transparent background",
    ),
    "kettle_gray.png": (
        lambda: render_kettle().image("L"),
        (288, 224),
        "L",
        "rendered kettle, grayscale",
    ),
}


def save(image: Image.Image, path: pathlib.Path) -> None:
    """Writes with fixed encoder settings (no timestamps or metadata), atomically."""
    temporary = path.with_name(f".{path.name}.tmp")
    if path.suffix == ".jpg":
        image.save(temporary, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    else:
        image.save(temporary, format="PNG", optimize=True)
    temporary.replace(path)


def make_samples(output: str | pathlib.Path = DEFAULT_OUTPUT) -> list[pathlib.Path]:
    """Writes every sample of :data:`SAMPLES` into ``output``; returns the paths."""
    output = pathlib.Path(output)
    output.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (maker, size, mode, _) in SAMPLES.items():
        image = maker()
        if (
            image.size != size or image.mode != mode
        ):  # a renderer edit that broke the spec
            raise AssertionError(
                f"{name}: made {image.size} {image.mode}, spec says {size} {mode}"
            )
        save(image, output / name)
        paths.append(output / name)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--output",
        default=str(DEFAULT_OUTPUT),
        help="folder to write (default: assets/samples)",
    )
    args = parser.parse_args(argv)
    if pathlib.Path(args.output).exists() and not pathlib.Path(args.output).is_dir():
        parser.error(f"--output {args.output} is a file; give a folder")
    if importlib.util.find_spec("skimage") is None:  # before any folder is made
        parser.error("the coffee photo comes from scikit-image: pip install scikit-image "
                     "(or pip install -e '.[test]')")
    total = 0
    for path in make_samples(args.output):
        size = path.stat().st_size
        total += size
        print(f"{path}  {size / 1024:.1f} KiB")
    print(f"total {total / 1024:.1f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
