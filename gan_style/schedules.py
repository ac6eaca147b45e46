"""The reference CycleGAN learning-rate schedule: constant, then linear decay.

The reference (``--lr_policy linear``) keeps the learning rate for
``n_epochs`` epochs, then lowers it linearly over ``n_epochs_decay`` epochs:
``lr * (1 - max(0, epoch - n_epochs) / (n_epochs_decay + 1))`` with the epoch
number counted from 1, changed once per epoch. :class:`LinearDecaySchedule`
reproduces that from the optimizer's step counter, so it needs to know the
number of steps in an epoch; it is a Keras ``LearningRateSchedule``, so it is
saved with the optimizer's config and the learning rate simply continues after
a resume (the step counter is part of the optimizer's checkpointed state).
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable("gan_style")
class LinearDecaySchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Constant for ``epochs`` epochs, then linear decay to zero over ``epochs_decay``.

    Two shapes of decay:

    * ``per_step=False`` (default, the reference): the rate changes at epoch
      boundaries only. In 1-based epoch ``e`` it is
      ``initial * (1 - max(0, e - epochs) / (epochs_decay + 1))``, so the last
      epoch of the decay runs at ``initial / (epochs_decay + 1)`` and the rate
      reaches 0 right after the schedule ends.
    * ``per_step=True``: a smooth ramp, ``initial * (1 - max(0, t - epochs) /
      epochs_decay)`` with ``t = step / steps_per_epoch`` the fractional epoch;
      it reaches exactly 0 at the end of the last epoch.

    Steps past the end of the schedule get 0.

    Args:
      initial_learning_rate: the constant rate of the first phase.
      steps_per_epoch: optimizer steps in one epoch (global batches).
      epochs: epochs at the constant rate.
      epochs_decay: epochs of linear decay after those.
      per_step: decay smoothly per step instead of per epoch.
    """

    def __init__(
        self,
        initial_learning_rate: float,
        steps_per_epoch: int,
        epochs: int,
        epochs_decay: int,
        per_step: bool = False,
        name: str | None = None,
    ):
        if not float(initial_learning_rate) > 0:
            raise ValueError(
                f"initial_learning_rate must be > 0, got {initial_learning_rate!r}"
            )
        for what, value, low in (
            ("steps_per_epoch", steps_per_epoch, 1),
            ("epochs", epochs, 0),
            ("epochs_decay", epochs_decay, 0),
        ):
            if isinstance(value, bool) or int(value) != value or value < low:
                raise ValueError(f"{what} must be an integer >= {low}, got {value!r}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.steps_per_epoch = int(steps_per_epoch)
        self.epochs = int(epochs)
        self.epochs_decay = int(epochs_decay)
        self.per_step = bool(per_step)
        self.name = name

    def __call__(self, step):
        step = ops.cast(step, "float32")
        epochs = float(self.epochs)
        if self.per_step:
            progress = step / float(self.steps_per_epoch)  # fractional epochs done
            if self.epochs_decay == 0:
                factor = ops.where(progress < epochs, 1.0, 0.0)
            else:
                factor = 1.0 - ops.maximum(0.0, progress - epochs) / float(self.epochs_decay)
        else:
            # 1-based number of the epoch this step belongs to, as the reference counts.
            epoch = ops.floor(step / float(self.steps_per_epoch)) + 1.0
            factor = 1.0 - ops.maximum(0.0, epoch - epochs) / float(self.epochs_decay + 1)
            # Past the end of the schedule the reference stops training; we give 0.
            factor = ops.where(epoch > epochs + float(self.epochs_decay), 0.0, factor)
        factor = ops.clip(factor, 0.0, 1.0)
        return self.initial_learning_rate * factor

    def get_config(self) -> dict:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "steps_per_epoch": self.steps_per_epoch,
            "epochs": self.epochs,
            "epochs_decay": self.epochs_decay,
            "per_step": self.per_step,
            "name": self.name,
        }
