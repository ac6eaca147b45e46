"""Trains a CycleGAN: ``python train.py --config=configs/x.py --workdir=runs/x``.

Any config field can be overridden: ``--config.train.epochs=5``. Running the
same command again resumes the run in ``--workdir``. See configs/default.py
for every key and gan_style/training.py for what the run writes.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, exports, samples and logs.")
config_flags.DEFINE_config_file("config", None, "Training config file.", lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from gan_style import training  # after flag parsing: TF starts only for a valid command line

    try:
        training.train_and_evaluate(FLAGS.config, FLAGS.workdir)
    except (training.ConfigError, FloatingPointError) as error:
        logging.error("%s", error)
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
