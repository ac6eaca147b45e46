"""IKEA product photos (A) -> Monet paintings (B), sized for a 2-core CPU.

    python train.py --config=configs/product2monet.py --workdir=runs/product2monet

A first guess at a model that trains in a few hours on this CPU: ResNet-6
generators with 32 filters, 32-filter PatchGANs, 128 px crops from 143 px
loads (the reference's 286/256 ratio), batch 1, 12 + 12 epochs of 1300 steps.
Reference losses and optimizer otherwise. To be tuned.
"""

from configs import default


def get_config():
    config = default.get_config()
    config.data.train_a = "../shared/data/ikea/train"
    config.data.train_b = "../shared/data/monet"
    config.data.test_a = "../shared/data/ikea/test"
    config.data.test_b = "../shared/data/monet"
    config.data.load_size = 143
    config.data.crop_size = 128
    config.data.eval_size = 128
    config.data.cache = True  # 1600 small images: decode once
    config.model.generator = "resnet_6blocks"
    config.model.generator_filters = 32
    config.model.discriminator_filters = 32
    config.train.epochs = 12
    config.train.epochs_decay = 12
    config.train.sample_every_steps = 500
    config.checkpoint.every_steps = 500
    return config
