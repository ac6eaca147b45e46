"""gan_style: CycleGAN-style unpaired image translation for product catalogs."""

from gan_style import losses
from gan_style import image_io, input_pipeline
from gan_style.networks import build_discriminator, build_generator, input_requirements

__all__ = ["build_generator", "build_discriminator", "input_requirements", "losses", "image_io", "input_pipeline"]
__version__ = "0.1.0"
