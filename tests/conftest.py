"""Test-wide setup: quiet TF logs and two logical CPU devices.

The devices must be configured before TensorFlow initialises its runtime, so
it happens here, once, for the whole session: the default strategy still uses
/CPU:0 alone, and distribution tests get a second replica to compare against.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pathlib  # noqa: E402

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
)

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """``../shared/data`` beside the project; tests that need it skip without it,
    unless ``GAN_STYLE_REQUIRE_SHARED_DATA=1`` (.ci/run sets it): there, a
    missing folder fails them, so CI cannot pass by skipping its real-data tests."""
    if not SHARED_DATA.is_dir():
        message = f"shared data not found at {SHARED_DATA}"
        if os.environ.get("GAN_STYLE_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(message + " (GAN_STYLE_REQUIRE_SHARED_DATA=1)")
        pytest.skip(message)
    return SHARED_DATA


@pytest.fixture(scope="session")
def adobe_rgb_icc(shared_data) -> bytes:
    """The Adobe RGB (1998) ICC profile embedded in a shared horse2zebra photo."""
    import io

    from PIL import Image, ImageCms

    with Image.open(shared_data / "horse2zebra" / "testB" / "n02391049_2200.jpg") as image:
        icc = image.info["icc_profile"]
    assert "Adobe RGB" in ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc)))
    return icc
