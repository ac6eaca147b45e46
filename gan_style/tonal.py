"""Tonal adjustment: the layer that gives a translation someone's look.

:class:`TonalAdjustment` is a Keras layer with six parameters (brightness,
contrast, saturation, gamma, and the colour balance pair temperature/tint).
Every operation is **pointwise**: a pixel's output depends only on that
pixel's value and the parameters -- contrast pivots on a fixed mid-grey, not
on the image mean, and saturation uses the pixel's own luma. So applying the
layer tile by tile to a large image is exact, and a preview can re-apply it
to a cached translation cheaply.

A :class:`Profile` is the JSON-serialisable form: the six tonal parameters
plus the style ``strength`` (the blend between source and translation) and an
optional name/description. :data:`PRESETS` holds the named looks;
:func:`load_profile` reads and validates a JSON file; :func:`resolve_tone`
turns whatever a ``--tone`` flag or a ``tone=`` argument holds into a
:class:`Profile`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import keras
from keras import ops

from gan_style import atomic

#: Order of the columns of the optional per-image ``[batch, 6]`` parameter
#: tensor of :class:`TonalAdjustment`.
PARAM_NAMES: tuple[str, ...] = (
    "brightness",
    "contrast",
    "saturation",
    "gamma",
    "temperature",
    "tint",
)

#: Columns of a full per-image profile vector ``[batch, 7]`` (as taken by the
#: Translator): the tonal parameters, then the style strength.
PROFILE_VECTOR_NAMES: tuple[str, ...] = PARAM_NAMES + ("strength",)

#: The parameter values that leave an image unchanged.
NEUTRAL: dict[str, float] = {
    "brightness": 0.0,
    "contrast": 1.0,
    "saturation": 1.0,
    "gamma": 1.0,
    "temperature": 0.0,
    "tint": 0.0,
}

#: Closed range of every parameter (profiles outside it are rejected; the
#: layer clips per-image tensors into it).
RANGES: dict[str, tuple[float, float]] = {
    "brightness": (-1.0, 1.0),
    "contrast": (0.0, 3.0),
    "saturation": (0.0, 3.0),
    "gamma": (0.25, 4.0),
    "temperature": (-1.0, 1.0),
    "tint": (-1.0, 1.0),
    "strength": (0.0, 1.0),
}

#: Rec. 709 luma weights, applied to the (gamma-encoded) RGB values.
LUMA_WEIGHTS: tuple[float, float, float] = (0.2126, 0.7152, 0.0722)

#: Contrast pivots on this fixed value (mid-grey), never on image statistics.
CONTRAST_PIVOT = 0.5


def _stable_where_neutral(neutral, x, y):
    """``x`` where the parameter is neutral, else ``y``; gradients always of ``y``.

    Floating-point maths such as ``0.5 + 1 * (x - 0.5)`` or ``x ** 1`` is not
    exactly ``x``; selecting ``x`` makes neutral parameters the identity bit for
    bit. The ``y - stop_gradient(y)`` term (exactly zero in the forward pass)
    keeps the parameter's gradient alive at the neutral value, so optimising
    a profile can start from neutral.
    """
    exact = ops.stop_gradient(x) + (y - ops.stop_gradient(y))
    return ops.where(neutral, exact, y)


@keras.saving.register_keras_serializable("gan_style")
class TonalAdjustment(keras.layers.Layer):
    """Pointwise tonal adjustment of RGB images in [0, 1].

    Input: float ``[..., 3]`` RGB in [0, 1] (any leading shape; rank 4
    ``[batch, H, W, 3]`` when per-image parameters are given). Output: the
    same shape, clipped to [0, 1], in the layer's compute dtype. The maths runs
    in float32 whatever the dtype policy (so it works under
    ``mixed_float16``), eagerly, in ``tf.function`` and under XLA.

    The operations, applied in this order to each pixel ``x = (r, g, b)``:

    1. **Colour balance** (``temperature`` T in [-1, 1], ``tint`` M in
       [-1, 1]): per-channel gains ``r *= 2 ** (T / 2)``, ``g *= 2 ** (-M / 2)``,
       ``b *= 2 ** (-T / 2)``. T > 0 warms (more red, less blue), T = 1 is
       a factor sqrt(2) on red and 1/sqrt(2) on blue; M > 0 shifts towards
       magenta (less green), M < 0 towards green.
    2. **Gamma** (``gamma`` G in [0.25, 4]): ``x = x ** (1 / G)`` per channel
       (negative values become 0). G > 1 lifts the mid-tones (0.25 becomes
       0.5 at G = 2), G < 1 darkens them; 0 and 1 stay fixed.
    3. **Contrast** (``contrast`` C in [0, 3]): ``x = 0.5 + C * (x - 0.5)``,
       around the fixed mid-grey 0.5: deviations from 0.5 (and so the standard
       deviation of an unclipped image) scale by C; C = 0 gives flat grey.
    4. **Brightness** (``brightness`` B in [-1, 1]): ``x = x + B``, a shift
       of every channel (the mean of an unclipped image moves by exactly B).
    5. **Saturation** (``saturation`` S in [0, 3]): with the pixel's own
       luma ``l = 0.2126 r + 0.7152 g + 0.0722 b``, ``x = l + S * (x - l)``.
       Luma is unchanged; each channel's distance from it scales by S; S = 0
       is greyscale.
    6. **Clip** to [0, 1].

    With neutral parameters (:data:`NEUTRAL`) each step is skipped exactly, so
    the output equals the input bit for bit (for inputs in [0, 1], in
    float32). The layer is differentiable in its inputs and its parameters
    (gradients also flow at the neutral values).

    Parameters come from the constructor (stored in one float32 weight,
    ``params``, and in ``get_config``). A call can override them per image
    with ``params``: a ``[batch, 6]`` tensor whose columns are
    :data:`PARAM_NAMES`, so one batch can carry several users' tones; values
    are clipped into :data:`RANGES` (NaN counts as neutral).
    """

    def __init__(
        self,
        brightness: float = 0.0,
        contrast: float = 1.0,
        saturation: float = 1.0,
        gamma: float = 1.0,
        temperature: float = 0.0,
        tint: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        values = dict(
            brightness=brightness,
            contrast=contrast,
            saturation=saturation,
            gamma=gamma,
            temperature=temperature,
            tint=tint,
        )
        self._initial = _validated(values, source="TonalAdjustment")
        self.params = None

    def build(self, input_shape=None):
        if self.params is None:
            self.params = self.add_weight(
                name="params",
                shape=(len(PARAM_NAMES),),
                initializer=keras.initializers.Constant(
                    [self._initial[name] for name in PARAM_NAMES]
                ),
                dtype="float32",
                trainable=True,
                # Training moves the weight freely; kept in range it is what call() uses.
                constraint=_InRanges(),
            )
        self.built = True

    # -- parameters -------------------------------------------------------

    def get_params(self) -> dict[str, float]:
        """The layer's current parameters, by name: the values ``call`` applies
        (a weight assigned out of range reads clipped into :data:`RANGES`, NaN
        neutral), so ``get_config`` always loads back."""
        if self.params is None:
            return dict(self._initial)
        values = keras.ops.convert_to_numpy(_InRanges()(self.params))
        # str() of a float32 is its shortest round-trip form: 1.05, not 1.0499999523.
        return {name: float(str(v)) for name, v in zip(PARAM_NAMES, values)}

    def set_params(self, values: Mapping[str, float] | Profile) -> None:
        """Replaces the layer's parameters (missing names keep their value).

        Tonal parameters only; a Profile's ``strength`` is ignored here.
        """
        if isinstance(values, Profile):
            values = values.tonal_params()
        merged = {**self.get_params(), **dict(values)}
        merged = _validated(merged, source="TonalAdjustment.set_params")
        self._initial = merged
        if self.params is not None:
            self.params.assign([merged[name] for name in PARAM_NAMES])

    # -- maths ------------------------------------------------------------

    def call(self, inputs, params=None):
        if not keras.backend.is_float_dtype(inputs.dtype):
            # A cast would read uint8 128 as 128.0, and the clip make it white.
            raise TypeError(
                f"TonalAdjustment takes float images in [0, 1], got {keras.backend.standardize_dtype(inputs.dtype)} "
                "(divide uint8 images by 255; gan_style.load_translator's model takes uint8 itself)"
            )
        if self.params is None:
            self.build(inputs.shape)
        x = ops.cast(inputs, "float32")
        rank = len(x.shape)
        if params is None:
            p = ops.reshape(ops.convert_to_tensor(self.params), (1, len(PARAM_NAMES)))
        else:
            p = ops.cast(params, "float32")
            if len(p.shape) != 2 or (p.shape[-1] is not None and p.shape[-1] != len(PARAM_NAMES)):
                raise ValueError(
                    f"TonalAdjustment: per-image params must have shape [batch, "
                    f"{len(PARAM_NAMES)}] with columns {', '.join(PARAM_NAMES)}; got {p.shape}"
                )
        p = _InRanges()(p)

        def column(name):
            # [batch] -> [batch, 1, ..., 1]: broadcast over the pixel axes.
            return ops.reshape(p[:, PARAM_NAMES.index(name)], (-1,) + (1,) * (rank - 1))

        brightness, contrast, saturation, gamma, temperature, tint = map(column, PARAM_NAMES)

        # 1. Colour balance.
        half_log2 = ops.log(2.0) / 2.0
        gains = ops.concatenate(
            [
                ops.exp(temperature * half_log2),
                ops.exp(-tint * half_log2),
                ops.exp(-temperature * half_log2),
            ],
            axis=-1,
        )
        y = x * gains
        x = _stable_where_neutral(ops.logical_and(temperature == 0.0, tint == 0.0), x, y)

        # 2. Gamma. The double where keeps the gradient finite at x <= 0,
        # where log(x) in d(x ** e)/de would be -inf.
        positive = x > 0.0
        base = ops.where(positive, x, ops.ones_like(x))
        y = ops.where(positive, ops.power(base, 1.0 / gamma), ops.zeros_like(x))
        x = _stable_where_neutral(gamma == 1.0, x, y)

        # 3. Contrast around the fixed mid-grey pivot.
        y = CONTRAST_PIVOT + contrast * (x - CONTRAST_PIVOT)
        x = _stable_where_neutral(contrast == 1.0, x, y)

        # 4. Brightness.
        y = x + brightness
        x = _stable_where_neutral(brightness == 0.0, x, y)

        # 5. Saturation around the pixel's own luma.
        weights = ops.convert_to_tensor(LUMA_WEIGHTS, "float32")
        luma = ops.sum(x * weights, axis=-1, keepdims=True)
        y = luma + saturation * (x - luma)
        x = _stable_where_neutral(saturation == 1.0, x, y)

        # 6. Clip.
        x = ops.clip(x, 0.0, 1.0)
        return ops.cast(x, self.compute_dtype)

    def compute_output_shape(self, inputs_shape, params_shape=None):
        return inputs_shape

    def get_config(self):
        return {**super().get_config(), **self.get_params()}


class _InRanges(keras.constraints.Constraint):
    """Parameter vectors (last axis :data:`PARAM_NAMES`) clipped into
    :data:`RANGES`; NaN, which passes min/max untouched and would blacken the
    image, becomes neutral."""

    def __call__(self, p):
        lower = ops.convert_to_tensor([RANGES[n][0] for n in PARAM_NAMES], "float32")
        upper = ops.convert_to_tensor([RANGES[n][1] for n in PARAM_NAMES], "float32")
        neutral = ops.convert_to_tensor([NEUTRAL[n] for n in PARAM_NAMES], "float32")
        p = ops.where(ops.isnan(p), neutral, p)
        return ops.minimum(ops.maximum(p, lower), upper)


# ---------------------------------------------------------------------------
# Profiles


def _check_number(key: str, value: Any, source: str) -> float:
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        value = value.item()  # a numpy scalar
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{source}: {key!r} must be a number, got {value!r}")
    try:
        value = float(value)
    except OverflowError:  # a JSON integer of hundreds of digits
        value = math.inf if value > 0 else -math.inf
    lo, hi = RANGES[key]
    if not (math.isfinite(value) and lo <= value <= hi):
        raise ValueError(f"{source}: {key!r} = {value!r} is out of range [{lo}, {hi}]")
    return value


def _validated(values: Mapping[str, Any], source: str) -> dict[str, float]:
    """All six tonal parameters (missing ones neutral), checked against RANGES."""
    for key in values:
        if key not in NEUTRAL:
            raise ValueError(
                f"{source}: unknown tonal parameter {key!r}; known: {', '.join(PARAM_NAMES)}"
            )
    return {
        name: _check_number(name, values[name], source) if name in values else NEUTRAL[name]
        for name in PARAM_NAMES
    }


#: Keys a profile JSON file may hold.
PROFILE_KEYS: tuple[str, ...] = PROFILE_VECTOR_NAMES + ("name", "description")


@dataclasses.dataclass(frozen=True)
class Profile:
    """A tone: the six tonal parameters, the style strength, a label.

    ``strength`` blends source and translation before the tone is applied:
    ``strength * translation + (1 - strength) * source``, in [0, 1] (1 = the
    full translation, 0 = the source only toned). Ranges are in
    :data:`RANGES`; constructing a profile out of range raises ValueError.

    JSON form (every key optional; missing ones take their neutral value)::

        {"name": "brand", "brightness": 0.05, "contrast": 1.1, "saturation": 1.2,
         "gamma": 1.0, "temperature": 0.2, "tint": 0.0, "strength": 0.8}
    """

    brightness: float = 0.0
    contrast: float = 1.0
    saturation: float = 1.0
    gamma: float = 1.0
    temperature: float = 0.0
    tint: float = 0.0
    strength: float = 1.0
    name: str = ""
    description: str = ""

    def __post_init__(self):
        source = f"profile {self.name!r}" if self.name else "profile"
        for key in PROFILE_VECTOR_NAMES:
            object.__setattr__(self, key, _check_number(key, getattr(self, key), source))
        for key in ("name", "description"):
            if not isinstance(getattr(self, key), str):
                raise ValueError(f"{source}: {key!r} must be a string")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "profile") -> Profile:
        """Builds a validated profile; errors name ``source`` and the key."""
        if not isinstance(data, Mapping):
            raise ValueError(
                f"{source}: a profile must be a JSON object, got {type(data).__name__}"
            )
        for key in data:
            if key not in PROFILE_KEYS:
                raise ValueError(
                    f"{source}: unknown key {key!r}; allowed keys: {', '.join(PROFILE_KEYS)}"
                )
        values = {}
        for key in PROFILE_VECTOR_NAMES:
            if key in data:
                values[key] = _check_number(key, data[key], source)
        for key in ("name", "description"):
            if key in data:
                if not isinstance(data[key], str):
                    raise ValueError(f"{source}: {key!r} must be a string, got {data[key]!r}")
                values[key] = data[key]
        return cls(**values)

    def tonal_params(self) -> dict[str, float]:
        """The six tonal parameters by name (for :class:`TonalAdjustment`)."""
        return {name: getattr(self, name) for name in PARAM_NAMES}

    def to_vector(self, with_strength: bool = True) -> list[float]:
        """Values in :data:`PROFILE_VECTOR_NAMES` order (or :data:`PARAM_NAMES`)."""
        names = PROFILE_VECTOR_NAMES if with_strength else PARAM_NAMES
        return [getattr(self, name) for name in names]

    def replace(self, **changes) -> Profile:
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.name:
            out["name"] = self.name
        if self.description:
            out["description"] = self.description
        out.update({name: getattr(self, name) for name in PROFILE_VECTOR_NAMES})
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def save(self, path: str | os.PathLike) -> None:
        """Writes the JSON form (via a temporary file of its own, so never
        half-written, and nothing left behind when writing fails).

        Raises:
          OSError: naming ``path`` (a folder there, no such folder, no permission).
        """
        try:
            with atomic.replacing(path) as temporary:
                temporary.write_text(self.to_json(), encoding="utf-8")
        except OSError as error:
            raise OSError(error.errno, f"cannot save the tone profile to {str(path)!r}: "
                                       f"{error.strerror or error}") from None


def load_profile(path: str | os.PathLike) -> Profile:
    """Reads a JSON profile, rejecting unknown keys and out-of-range values.

    Raises:
      ValueError: naming the file and the offending key (or the JSON error).
      FileNotFoundError: the file does not exist.
    """
    path = pathlib.Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: the BOM Windows editors write
    except FileNotFoundError:
        raise FileNotFoundError(f"tone profile {str(path)!r} not found") from None
    except IsADirectoryError:
        raise ValueError(f"tone profile {str(path)!r} is a folder, not a JSON file") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not a UTF-8 JSON profile ({error})") from None
    return Profile.from_dict(parse_json(text, str(path)), source=str(path))


def parse_json(text: str, source: str) -> Any:
    """``json.loads(text)``, or a ValueError naming ``source``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{source}: not valid JSON: {error}") from None
    except RecursionError:  # '[[[[...' thousands deep
        raise ValueError(f"{source}: not valid JSON: nested too deeply") from None


#: Named looks. Each is a Profile with strength 1.
PRESETS: dict[str, Profile] = {
    "neutral": Profile(name="neutral", description="no tonal change"),
    "warm": Profile(
        name="warm", description="warmer white balance", temperature=0.3, saturation=1.05
    ),
    "cool": Profile(name="cool", description="cooler white balance", temperature=-0.3),
    "vivid": Profile(
        name="vivid", description="stronger colours and contrast", saturation=1.4, contrast=1.1
    ),
    "muted": Profile(
        name="muted", description="softer colours and contrast", saturation=0.6, contrast=0.9
    ),
    "bright": Profile(
        name="bright", description="lifted mid-tones and exposure", brightness=0.04, gamma=1.25
    ),
    "high_contrast": Profile(name="high_contrast", description="stronger contrast", contrast=1.35),
    "monochrome": Profile(name="monochrome", description="greyscale", saturation=0.0),
}


def resolve_tone(tone: str | os.PathLike | Mapping[str, Any] | Profile | None) -> Profile:
    """Turns a ``--tone`` value into a :class:`Profile`.

    Args:
      tone: ``None`` (neutral), a preset name from :data:`PRESETS`, a path to
        a JSON profile, a dict in the JSON form, or a Profile.

    Raises:
      ValueError: an unknown preset that is not a file either, or an invalid
        profile (the message names the file or key).
    """
    if tone is None:
        return PRESETS["neutral"]
    if isinstance(tone, Profile):
        return tone
    if isinstance(tone, Mapping):
        return Profile.from_dict(tone, source="tone")
    if isinstance(tone, (str, os.PathLike)):
        text = os.fspath(tone)
        if text in PRESETS:
            return PRESETS[text]
        if text.endswith(".json") or os.path.exists(text):
            return load_profile(text)
        raise ValueError(
            f"unknown tone {text!r}: not a preset ({', '.join(PRESETS)}) and not a "
            "profile .json file"
        )
    raise ValueError(
        f"tone must be a preset name, a profile path, a dict or a Profile; got {type(tone).__name__}"
    )
