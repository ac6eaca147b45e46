"""gan_style: CycleGAN-style unpaired image translation for product catalogs."""

from gan_style import losses
from gan_style.cyclegan import CycleGAN
from gan_style import metrics
from gan_style import image_io, input_pipeline
from gan_style.networks import build_discriminator, build_generator, input_requirements
from gan_style import personalize, tonal, translator
from gan_style.personalize import fit_profile
from gan_style.tonal import Profile, TonalAdjustment, load_profile
from gan_style.translator import Translator, load_translator
from gan_style.convert import convert_catalog

__all__ = ["CycleGAN", "build_generator", "build_discriminator", "input_requirements", "losses", "image_io", "input_pipeline",
           "TonalAdjustment", "Profile", "load_profile", "fit_profile", "Translator", "load_translator",
           "tonal", "translator", "personalize", "convert_catalog", "metrics"]
__version__ = "0.1.0"
