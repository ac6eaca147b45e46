"""LinearDecaySchedule against the reference's lambda rule, and serialisation."""

import keras
import pytest

from gan_style.schedules import LinearDecaySchedule


def reference_rate(lr, epoch_1based, n_epochs, n_epochs_decay):
    # pytorch-CycleGAN-and-pix2pix models/networks.py, lr_policy 'linear':
    # lr_l = 1.0 - max(0, epoch + epoch_count - n_epochs) / float(n_epochs_decay + 1),
    # with epoch_count = 1 and the scheduler's epoch counting from 0.
    return lr * (1.0 - max(0, epoch_1based - n_epochs) / float(n_epochs_decay + 1))


def test_per_epoch_matches_reference_rule():
    steps, n, nd, lr = 3, 4, 5, 2e-4
    schedule = LinearDecaySchedule(lr, steps, n, nd)
    for step in range(steps * (n + nd)):
        epoch = step // steps + 1
        want = reference_rate(lr, epoch, n, nd)
        assert float(schedule(step)) == pytest.approx(want, rel=1e-6), step
    # constant through epoch n, first decayed epoch, last epoch at lr / (nd + 1), then 0
    assert float(schedule(steps * n - 1)) == pytest.approx(lr)
    assert float(schedule(steps * n)) == pytest.approx(lr * (1 - 1 / (nd + 1)))
    assert float(schedule(steps * (n + nd) - 1)) == pytest.approx(lr / (nd + 1))
    assert float(schedule(steps * (n + nd))) == 0.0


def test_per_step_is_linear_to_zero():
    schedule = LinearDecaySchedule(1.0, 10, 2, 4, per_step=True)
    assert float(schedule(20)) == pytest.approx(1.0)
    assert float(schedule(40)) == pytest.approx(0.5)  # half way through the decay
    assert float(schedule(41)) == pytest.approx(1 - 2.1 / 4)
    assert float(schedule(60)) == pytest.approx(0.0, abs=1e-7)
    assert float(schedule(70)) == 0.0


def test_serialises_and_drives_an_optimizer():
    schedule = LinearDecaySchedule(1e-3, 7, 2, 3, per_step=True)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert isinstance(restored, LinearDecaySchedule)
    assert restored.get_config() == schedule.get_config()
    optimizer = keras.optimizers.Adam(schedule)
    config = optimizer.get_config()
    again = keras.optimizers.Adam.from_config(config)
    for step in (0, 14, 20, 35):
        assert float(again.learning_rate.numpy() if step == 0 else again._learning_rate(step)) == (
            pytest.approx(float(schedule(step)))
        )


@pytest.mark.parametrize(
    "kwargs", [dict(steps_per_epoch=0), dict(epochs=-1), dict(epochs_decay=1.5), dict(initial_learning_rate=0.0)]
)
def test_rejects_bad_arguments(kwargs):
    args = dict(initial_learning_rate=1e-3, steps_per_epoch=5, epochs=1, epochs_decay=1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        LinearDecaySchedule(**args)
