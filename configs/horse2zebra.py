"""horse2zebra with the reference CycleGAN hyperparameters.

    python train.py --config=configs/horse2zebra.py --workdir=runs/horse2zebra

ResNet-9 generators (64 filters), 70x70 PatchGAN discriminators, LSGAN,
cycle 10, identity 0.5, pool 50, Adam 2e-4 (beta_1 0.5), batch 1, 286 -> 256
crops, 100 + 100 epochs -- all defaults. The data path resolves against the
current directory; override it with --config.data.root=...
"""

from configs import default


def get_config():
    config = default.get_config()
    config.data.root = "../shared/data/horse2zebra"
    config.checkpoint.every_steps = 500  # an epoch is 1334 steps: lose little on a crash
    return config
