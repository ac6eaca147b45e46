"""Inference precision: float32, or bfloat16 where the CPU computes it natively.

On CPUs with AVX512-BF16 or AMX-BF16, oneDNN runs bfloat16 convolutions at
about twice float32's rate; a generator run in ``mixed_bfloat16`` (bfloat16
compute, float32 weights, float32 instance-norm statistics, a float32 output
layer) converts 1.7x faster here and differs from float32 by about 44 dB PSNR
(see bench/README.md). Without native support bfloat16 is emulated and
slower, so ``auto`` picks it only where it pays.
"""

from __future__ import annotations

import functools
import pathlib

import keras

from gan_style.networks import leaf_layers

PRECISIONS = ("auto", "float32", "bfloat16")
#: /proc/cpuinfo flags of CPUs that compute bfloat16 dot products natively.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_flags(cpuinfo: str | pathlib.Path = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU feature flags (Linux); empty where ``cpuinfo`` can't be read."""
    try:
        text = pathlib.Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


@functools.cache
def native_bfloat16() -> bool:
    """True on a CPU-only machine whose CPU has native bfloat16 dot products.

    With a GPU visible this is False: ``auto`` keeps float32 there (whether
    bfloat16 pays depends on the GPU; ask for it with ``bfloat16``).
    """
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return False
    return bool(cpu_flags() & NATIVE_BF16_FLAGS)


def resolve_precision(precision: str, flag: str = "precision") -> str:
    """``auto`` -> ``bfloat16`` or ``float32`` for this machine; others checked and returned."""
    if precision not in PRECISIONS:
        raise ValueError(f"--{flag} must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision == "auto":
        return "bfloat16" if native_bfloat16() else "float32"
    return precision


def generator_with_precision(generator: keras.Model, precision: str) -> keras.Model:
    """``generator`` computing in ``precision`` (``float32`` or ``bfloat16``).

    bfloat16: a clone whose layers run under ``mixed_bfloat16`` (float32
    weights, bfloat16 compute) except its output layer, which stays float32.
    float32: ``generator`` itself when all its layers compute in float32,
    else a float32 clone (a generator trained under a mixed policy carries
    it). Clones get copies of the weights; the original is untouched.
    """
    precision = resolve_precision(precision)
    leaves = leaf_layers(generator)  # a generator wrapped in a model of your own too
    if precision == "float32" and all(layer.dtype_policy.name == "float32" for layer in leaves):
        return generator
    output_layer = leaves[-1]

    def clone(layer):
        config = layer.get_config()
        if precision == "float32" or layer is output_layer:
            config["dtype"] = "float32"
        else:
            config["dtype"] = "mixed_bfloat16"
        return layer.__class__.from_config(config)

    clone_model = keras.models.clone_model(generator, clone_function=clone, recursive=True)
    clone_model.set_weights(generator.get_weights())
    return clone_model
