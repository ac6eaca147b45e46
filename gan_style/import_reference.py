"""Load generators trained by the reference PyTorch CycleGAN into Keras.

The reference implementation (junyanz/pytorch-CycleGAN-and-pix2pix) saves a
network's ``state_dict`` to ``.pth`` files; the published CycleGAN models
(horse2zebra, monet2photo, ...) are such files. Its networks are nested
``nn.Sequential`` modules that run in the order their keys sort in, and ours
are built layer for layer in the same order, so the weights of the k-th
weighted module go into the k-th weighted Keras layer, with PyTorch's
``[out, in, kh, kw]`` kernels transposed to Keras's ``[kh, kw, in, out]``.

Usage::

    python -m gan_style.import_reference latest_net_G_A.pth gen_ab.keras

The architecture (ResNet blocks or U-Net depth, filters, channels, batch or
instance norm) is read from the state dict; ``--generator``, ``--norm`` and
``--dropout`` override it. Reading ``.pth`` files needs PyTorch (any version
that can read the file); the resulting ``.keras`` file does not.
"""

from __future__ import annotations

import os
import pathlib
import re
import sys
from typing import Mapping

import keras
import numpy as np

from gan_style import atomic
from gan_style.networks import build_generator

_WEIGHTED = (keras.layers.Conv2D, keras.layers.Conv2DTranspose, keras.layers.BatchNormalization)


def _natural_key(name: str):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _modules(state_dict: Mapping[str, np.ndarray]) -> list[tuple[str, dict[str, np.ndarray]]]:
    """Weighted modules in forward order: (prefix, {param_name: array})."""
    grouped: dict[str, dict[str, np.ndarray]] = {}
    for key, value in state_dict.items():
        prefix, _, param = key.rpartition(".")
        grouped.setdefault(prefix, {})[param] = np.asarray(value)
    # Non-affine instance norm has no weight; old checkpoints may still hold
    # its running stats, which the reference itself deletes on load.
    modules = [(p, params) for p, params in grouped.items() if "weight" in params]
    return sorted(modules, key=lambda item: _natural_key(item[0]))


def load_state_dict(
    model: keras.Model, state_dict: Mapping[str, np.ndarray], *, missing_bias_is_zero: bool = False
) -> None:
    """Copies a reference PyTorch ``state_dict`` into a gan_style network.

    Works for every generator and discriminator that gan_style builds,
    provided the model was built with the same architecture options.
    ``missing_bias_is_zero``: a layer with a bias whose module has none gets
    zeros (the reference's norm 'none' networks) instead of an error.

    Raises:
      ValueError: naming the first module whose shape or kind does not match.
    """
    modules = _modules(state_dict)
    layers = [layer for layer in model.layers if isinstance(layer, _WEIGHTED)]
    if len(modules) != len(layers):
        raise ValueError(
            f"the state dict has {len(modules)} weighted modules but {model.name} has "
            f"{len(layers)} weighted layers: the architecture options don't match the checkpoint"
        )
    for (prefix, params), layer in zip(modules, layers):
        if isinstance(layer, keras.layers.BatchNormalization):
            if "running_mean" not in params:
                raise ValueError(f"{prefix}: expected batch norm parameters for layer {layer.name}")
            values = [params["weight"], params["bias"], params["running_mean"], params["running_var"]]
        else:
            kernel = params["weight"]
            if kernel.ndim != 4:
                raise ValueError(f"{prefix}.weight: expected a 4-d conv kernel for layer {layer.name}")
            # Conv2d [out, in, kh, kw] -> [kh, kw, in, out]; ConvTranspose2d
            # [in, out, kh, kw] -> [kh, kw, out, in]: the same permutation.
            values = [np.transpose(kernel, (2, 3, 1, 0))]
            if layer.use_bias:
                if "bias" in params:
                    values.append(params["bias"])
                elif missing_bias_is_zero:
                    values.append(np.zeros(layer.bias.shape, np.float32))
                else:
                    raise ValueError(f"{prefix}: the checkpoint has no bias for layer {layer.name}")
            elif "bias" in params:
                raise ValueError(f"{prefix}.bias: layer {layer.name} has no bias")
        expected = [tuple(w.shape) for w in layer.weights]
        got = [tuple(v.shape) for v in values]
        if expected != got:
            raise ValueError(f"{prefix}: shapes {got} don't fit layer {layer.name} {expected}")
        layer.set_weights([v.astype(np.float32) for v in values])


def infer_generator_options(state_dict: Mapping[str, np.ndarray]) -> dict:
    """Reads ``name``, ``base_filters``, channels, ``norm`` and dropout from a state dict."""
    modules = _modules(state_dict)
    if not modules:
        raise ValueError("the state dict holds no weighted modules")
    keys = list(state_dict)
    first, last = modules[0][1]["weight"], modules[-1][1]["weight"]
    if any(k.endswith("running_mean") and k.replace("running_mean", "weight") in state_dict for k in keys):
        norm = "batch"
    else:
        # The reference gives convs a bias only with instance norm (batch norm
        # and norm 'none' go without), so a bias-less first conv means 'none'.
        norm = "instance" if "bias" in modules[0][1] else "none"
    options = {"input_channels": int(first.shape[1]), "norm": norm}
    blocks = {int(m.group(1)) for k in keys if (m := re.match(r"model\.(\d+)\.conv_block\.", k))}
    if blocks:
        options["base_filters"] = int(first.shape[0])
        options["output_channels"] = int(last.shape[0])
        names = {6: "resnet_6blocks", 9: "resnet_9blocks"}
        if len(blocks) not in names:
            raise ValueError(f"a ResNet generator with {len(blocks)} blocks is not supported (6 or 9)")
        options["name"] = names[len(blocks)]
        # With dropout each block's second conv moves from index 5 to 6 (where,
        # without it, batch norm keeps its 1-d weight).
        options["dropout"] = any(
            re.search(r"conv_block\.6\.weight$", k) and np.ndim(v) == 4 for k, v in state_dict.items()
        )
        return options
    depth = max((k.count("model.") for k in keys if k.startswith("model.model.")), default=0)
    if depth:
        num_downs = depth - 1  # "model." once for UnetGenerator, then once per level
        names = {7: "unet_128", 8: "unet_256"}
        if num_downs not in names:
            raise ValueError(f"a U-Net with {num_downs} levels is not supported (7 or 8)")
        options["name"] = names[num_downs]
        options["base_filters"] = int(first.shape[0])
        # The outermost up conv is a ConvTranspose2d [in, out, kh, kw].
        outermost = state_dict["model.model.3.weight"]
        options["output_channels"] = int(np.asarray(outermost).shape[1])
        return options
    raise ValueError("not a reference CycleGAN generator (no ResnetGenerator or UnetGenerator keys)")


def read_pth(path: str) -> dict[str, np.ndarray]:
    """Reads a PyTorch ``state_dict`` file into numpy arrays (needs torch).

    Also takes a training checkpoint that holds the state dict under
    ``"state_dict"`` (or ``"model"``).

    Raises:
      FileNotFoundError, ValueError: naming ``path``.
    """

    try:
        import torch
    except ImportError:
        raise SystemExit(
            f"reading {path} needs PyTorch: pip install torch (the CPU build is enough)"
        ) from None
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - unpickling, zip and torch errors alike
        pickled = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if pickled:  # torch.save(model) rather than its state dict: a pickled object of that class
            raise ValueError(
                f"{path}: holds a whole pickled model ({pickled.group(1)}), not a state dict; save "
                "model.state_dict() instead (loading pickled code is unsafe)"
            ) from None
        # torch's own text is paragraphs of advice about weights_only: its type says enough.
        raise ValueError(f"{path}: not a PyTorch state dict file ({type(error).__name__})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    return {k: v.detach().cpu().numpy() for k, v in state.items() if hasattr(v, "detach")}


def import_generator(pth_path: str, **overrides) -> keras.Model:
    """Builds the gan_style generator for a reference ``.pth`` and loads its weights.

    Raises:
      FileNotFoundError, ValueError: naming ``pth_path``.
    """
    state_dict = read_pth(pth_path)
    try:
        options = infer_generator_options(state_dict)
        options.update({k: v for k, v in overrides.items() if v is not None})
        name = options.pop("name")
        model = build_generator(name, **options)
        # With norm 'none' the reference builds its convs without bias; gan_style's
        # keep theirs (dropped only in front of a norm that cancels them): zero computes the same.
        load_state_dict(model, state_dict, missing_bias_is_zero=options.get("norm") == "none")
    except ValueError as error:
        raise ValueError(f"{pth_path}: {error}") from None
    return model


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m gan_style.import_reference",
        description="Convert a reference PyTorch CycleGAN generator (.pth) to a Keras .keras file.",
    )
    parser.add_argument("pth", help="state dict saved by the reference, e.g. latest_net_G_A.pth")
    parser.add_argument("out", help="output .keras file")
    parser.add_argument("--generator", help="override the detected architecture name")
    parser.add_argument("--norm", choices=["instance", "batch", "none"], help="override the norm")
    parser.add_argument(
        "--dropout",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the generator was trained with dropout (the reference's default without --no_dropout); "
        "read from the state dict for ResNets, not visible in a U-Net's",
    )
    args = parser.parse_args(argv)
    if not args.out.endswith(".keras"):
        parser.error(f"output must end in .keras, got {args.out}")
    overrides = {"norm": args.norm, "dropout": args.dropout}
    if args.generator:
        overrides["name"] = args.generator
    try:
        model = import_generator(args.pth, **overrides)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    out = pathlib.Path(args.out)
    if out.is_dir():
        print(f"error: {out} is a folder; give the .keras file to write", file=sys.stderr)
        return 1
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic.replacing(out) as temporary:  # a save cut short leaves no half-written .keras
        model.save(temporary)
    print(f"wrote {out}: {model.name}, {model.count_params():,} parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
