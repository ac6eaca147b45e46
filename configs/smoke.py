"""A tiny end-to-end run (seconds): every code path, no quality.

    python train.py --config=configs/smoke.py --workdir=/tmp/smoke

Four training images per domain at 32 px from horse2zebra (override the
folders with --config.data.root=... or data.train_a/...), 4-filter networks,
2 epochs of 2 steps with checkpoints, samples and exports.
"""

from configs import default


def get_config():
    config = default.get_config()
    config.data.root = "../shared/data/horse2zebra"
    config.data.max_images = 4
    config.data.load_size = 36
    config.data.crop_size = 32
    config.data.eval_size = 32
    config.model.generator = "resnet_6blocks"
    config.model.generator_filters = 4
    config.model.discriminator = "pixel"
    config.model.discriminator_filters = 4
    config.model.pool_size = 3
    config.train.batch_size = 2
    config.train.epochs = 1
    config.train.epochs_decay = 1
    config.train.log_every_steps = 1
    config.train.sample_every_steps = 2
    config.train.num_samples = 2
    config.checkpoint.every_steps = 1
    config.checkpoint.keep = 2
    return config
