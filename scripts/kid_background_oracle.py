r"""How far can KID against Monet fall if a product's white background becomes a real Monet?

    python scripts/kid_background_oracle.py OUT [--source=../shared/data/ikea/test]
        [--paintings=../shared/data/monet] [--model=assets/default_translator.keras]

An upper bound for issue 8's quality bar (translated KID at most half the
untranslated one), measured without training anything. The Monet set is split
by file order: the even files are the reference every score is taken against,
the odd files are backgrounds, so no scored image contains a reference painting.
Four image sets are scored with the project's own ``evaluate_folders``:

* ``untranslated``: the source photos as they are (the bar's baseline);
* ``monet_background``: each photo with its white background (near-white pixels
  connected to the image border, opened and feathered) replaced by a whole odd
  Monet painting resized to the photo: the product itself untouched;
* ``translated``: ``--model``'s output for each photo;
* ``translated_monet_background``: that output with the same background swap.

``monet_background`` is what a translator could score if it kept the product
and painted the background as well as Monet himself. Writes the images under
OUT and the scores to ``OUT/scores.json``. Needs the TF-FID Inception weights
(see ``scripts/get_inception_weights.sh``).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Near-white: every channel above this. IKEA's backgrounds are 255 with JPEG noise.
WHITE_LEVEL = 230


def background_mask(rgb: np.ndarray) -> np.ndarray:
    """Float [H, W, 1] in [0, 1]: 1 on near-white pixels reachable from the border."""
    white = np.pad(rgb.min(axis=-1) > WHITE_LEVEL, 1, constant_values=True)
    canvas = Image.fromarray(white.astype(np.uint8) * 255).copy()  # fromarray shares read-only memory
    # The padded frame is white and connected, so one seed reaches every
    # near-white region that touches the border (and nothing enclosed by the product).
    ImageDraw.floodfill(canvas, (0, 0), 128)
    reached = Image.fromarray(((np.asarray(canvas) == 128)[1:-1, 1:-1] * 255).astype(np.uint8))
    # Opening drops specks of white inside textures; the blur feathers the seam.
    opened = reached.filter(ImageFilter.MinFilter(5)).filter(ImageFilter.MaxFilter(5))
    soft = opened.filter(ImageFilter.GaussianBlur(1.5))
    return (np.asarray(soft, np.float32) / 255.0)[..., None]


def composite(image: np.ndarray, mask: np.ndarray, painting: np.ndarray) -> np.ndarray:
    background = np.asarray(
        Image.fromarray(painting).resize((image.shape[1], image.shape[0]), Image.BICUBIC), np.float32
    )
    return (mask * background + (1.0 - mask) * image).round().astype(np.uint8)


def _images(folder: pathlib.Path) -> list[pathlib.Path]:
    from gan_style import image_io

    paths = image_io.list_images(folder, recursive=False)
    if not paths:
        raise SystemExit(f"no images in {folder}")
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("out", type=pathlib.Path)
    parser.add_argument("--source", type=pathlib.Path, default=ROOT.parent / "shared/data/ikea/test")
    parser.add_argument("--paintings", type=pathlib.Path, default=ROOT.parent / "shared/data/monet")
    parser.add_argument("--model", default=str(ROOT / "assets/default_translator.keras"))
    args = parser.parse_args(argv)

    from gan_style import evaluate, image_io, metrics
    from gan_style.translator import load_translator

    sources = _images(args.source)
    paintings = _images(args.paintings)
    reference, backgrounds = paintings[0::2], paintings[1::2]
    dirs = {
        name: args.out / name
        for name in ("reference", "monet_background", "translated", "translated_monet_background")
    }
    for folder in dirs.values():
        folder.mkdir(parents=True, exist_ok=True)
    for path in reference:
        link = dirs["reference"] / path.name
        if not link.exists():
            link.symlink_to(path.resolve())

    translator = load_translator(args.model)
    covered = []
    for i, path in enumerate(sources):
        rgb = image_io.load_rgb(path)
        mask = background_mask(rgb)
        covered.append(float(mask.mean()))
        painting = image_io.load_rgb(backgrounds[i % len(backgrounds)])
        translated = np.asarray(translator(rgb[None])[0])
        name = path.stem + ".png"
        Image.fromarray(composite(rgb, mask, painting)).save(dirs["monet_background"] / name)
        Image.fromarray(translated).save(dirs["translated"] / name)
        Image.fromarray(composite(translated, mask, painting)).save(dirs["translated_monet_background"] / name)

    inception = metrics.load_inception()
    scores = {
        "reference_paintings": len(reference),
        "background_paintings": len(backgrounds),
        "mean_background_fraction": float(np.mean(covered)),
    }
    fakes = {"untranslated": args.source, "monet_background": dirs["monet_background"],
             "translated": dirs["translated"],
             "translated_monet_background": dirs["translated_monet_background"]}
    for name, folder in fakes.items():
        result = evaluate.evaluate_folders(dirs["reference"], folder, inception=inception,
                                           progress=False)
        scores[name] = {key: result[key] for key in ("kid", "kid_std", "fid", "n_fake")}
        print(f"{name:>28}: KID x1e3 {1e3 * result['kid']:7.1f} +- {1e3 * result['kid_std']:.1f}"
              f"   FID {result['fid']:6.1f}   ratio to untranslated "
              f"{result['kid'] / scores['untranslated']['kid']:.3f}", flush=True)
    (args.out / "scores.json").write_text(json.dumps(scores, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
