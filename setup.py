"""gan_style: CycleGAN-style unpaired image translation for product catalogs."""

import pathlib
import re

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent
VERSION = re.search(
    r'^__version__ = "([^"]+)"', (HERE / "gan_style" / "__init__.py").read_text(), re.M
).group(1)

setup(
    name="gan-style",
    version=VERSION,
    description="CycleGAN-style unpaired image translation with TensorFlow and Keras 3, "
    "for converting product catalogs",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    # The repository keeps the bundled model and the configs at its top level;
    # a wheel carries them inside the package (gan_style/_bundled.py finds
    # either), so an install from PyPI or `pip install .` has its default
    # model and gan_style.training.default_config().
    packages=find_packages(include=["gan_style", "gan_style.*"]) + ["gan_style._assets", "gan_style._configs"],
    package_dir={"gan_style._assets": "assets", "gan_style._configs": "configs"},
    package_data={
        "gan_style.studio": ["static/*"],  # the studio's page (static/ is not a package)
        "gan_style._assets": ["default_translator.keras", "MODEL_CARD.md"],
        "gan_style._configs": ["*.py"],
    },
    # datetime.UTC (the manifests' times) and keras>=3.15 need 3.11.
    python_requires=">=3.11",
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.15,<4",
        "tensorflow-datasets>=4.9",
        # tensorflow-datasets' download path imports etils.epath, which needs
        # this but does not declare it: without it every data.tfds_name
        # failed with "No module named 'importlib_resources'".
        "importlib_resources>=6",
        "numpy>=1.26",
        "pillow>=10",
        # JPEG decoding into a buffer we own (PIL allocates its own): see
        # gan_style/image_io.py, read_image(rgbx_over=...).
        "simplejpeg>=1.8",
        "matplotlib>=3.8",
        "absl-py>=2",
        "ml-collections>=1.0",
    ],
    extras_require={
        # torch is only for the tests that compare against the PyTorch reference;
        # .ci/run installs the CPU build (torch==2.13.0) itself.
        # python -m gan_style.studio: a small local web app (see README, "Tone studio").
        "studio": ["flask>=3.0,<4"],
        # infer.py --runner=beam. Beam 2.77 pins pillow<13, protobuf<7 and
        # pyarrow<26, so this extra moves those back a major version.
        "beam": ["apache-beam>=2.77,<3"],
        # Translator.export("model.onnx"); ONNX Runtime runs the file.
        "onnx": ["tf2onnx>=1.17", "onnx>=1.16"],
        "test": [
            "pytest>=8",
            "pytest-timeout>=2.3",
            "pytest-xdist>=3.5",
            "scikit-image>=0.24",
            "flask>=3.0,<4",
            "selenium>=4.20",
            "tf2onnx>=1.17",
            "onnx>=1.16",
            "onnxruntime>=1.20",
        ],
    },
)
