"""IKEA product photos (A) -> Monet paintings (B), sized for a 2-core CPU.

    python train.py --config=configs/product2monet.py --workdir=runs/product2monet

This trains the bundled default translator (assets/default_translator.keras,
see assets/MODEL_CARD.md). Against the reference: ResNet-6 generators and
PatchGANs with 32 filters (1.96M generator parameters), 128 px random crops
from images resized to 256 px (the model learns at half the IKEA photos'
500 px scale; inference runs at full size), resize-convolution upsampling
(no checkerboard artifacts), and 4 + 2 epochs of 1300 steps (7,800 steps:
about 0.6-0.8 images/s in float32 on two CPU cores, 1.0-1.1 in bfloat16,
which train.precision=auto picks on CPUs that have it). Reference losses and
optimizer otherwise.
"""

from configs import default


def get_config():
    config = default.get_config()
    config.data.train_a = "../shared/data/ikea/train"
    config.data.train_b = "../shared/data/monet"
    config.data.test_a = "../shared/data/ikea/test"
    config.data.test_b = "../shared/data/monet"
    config.data.load_size = 256
    config.data.crop_size = 128
    config.data.eval_size = 128
    config.data.cache = True  # 1600 small images: decode once
    config.model.generator = "resnet_6blocks"
    config.model.generator_filters = 32
    config.model.discriminator_filters = 32
    config.model.upsample = "resize_conv"
    config.train.epochs = 4
    config.train.epochs_decay = 2  # 4 + 4 did not fit the bundled model's CPU budget
    config.train.sample_every_steps = 500
    config.checkpoint.every_steps = 500
    return config
