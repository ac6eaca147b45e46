"""training: config validation, data paths, NaN stop, the evaluation callback, sheets."""

import json
import logging
import os
import pathlib
import re
import signal

import keras
import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from configs import default, smoke
from gan_style import training


def test_defaults_and_experiment_configs_validate():
    from configs import horse2zebra, product2monet

    for module in (default, smoke, horse2zebra, product2monet):
        training.validate_config(module.get_config())
    config = default.get_config()
    for key in ("root", "train_a", "train_b", "test_a", "test_b", "tfds_name", "tfds_data_dir"):
        assert config.data[key] == ""
    assert config.data.preprocess == "resize_and_crop" and config.data.load_size == 286
    assert config.data.crop_size == 256 and config.data.flip is True and config.data.eval_size == 256
    assert config.data.cache is False and config.data.num_parallel_calls == -1
    assert config.data.max_images == 0


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("train.epochz", 3, "unknown config key train.epochz"),
        ("data.preprocess", "zoom", "data.preprocess='zoom' is not one of"),
        ("train.batch_size", "2", "train.batch_size must be int"),
        ("train.batch_size", 0, "train.batch_size must be >= 1"),
        ("model.generator", "resnet_2blocks", "model.generator"),
        ("train.precision", "float16", "train.precision"),
        ("optim.beta_1", 1.0, "optim.beta_1 must be < 1"),
        ("optim.epsilon", 0.0, "optim.epsilon must be > 0, got 0.0"),
        ("data.load_size", 20, "data.load_size \\(20\\) must be >= data.crop_size"),
        ("distribute.strategy", "horovod", "distribute.strategy"),
    ],
)
def test_bad_keys_and_values_name_the_key(key, value, message):
    as_dict = smoke.get_config().to_dict()
    section, name = key.split(".")
    as_dict[section][name] = value
    config = ml_collections.ConfigDict(as_dict)
    with pytest.raises(training.ConfigError, match=message):
        training.validate_config(config)


def test_scale_width_and_crop_needs_load_size_of_at_least_the_crop():
    # It crashed mid-pipeline ("Need value.shape >= size") after building the models.
    config = smoke.get_config()
    config.data.preprocess = "scale_width_and_crop"
    config.data.load_size = 24
    with pytest.raises(training.ConfigError, match="data.load_size \\(24\\) must be >= data.crop_size"):
        training.validate_config(config)


def test_locked_configs_reject_unknown_keys_at_assignment():
    config = smoke.get_config()
    with pytest.raises(AttributeError, match="epochz"):
        config.train.epochz = 3


def test_data_paths_resolve_against_cwd_and_missing_ones_are_named(tmp_path, monkeypatch):
    for split in ("trainA", "trainB"):
        (tmp_path / "set" / split).mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    config = default.get_config()
    config.data.root = "set"
    resolved = training.resolve_data_paths(config)
    assert resolved.data.root == str(tmp_path / "set")
    config.data.test_a = "nowhere"
    with pytest.raises(training.ConfigError, match="data.test_a='nowhere'"):
        training.resolve_data_paths(config)
    config = default.get_config()
    with pytest.raises(training.ConfigError, match="data.root"):
        training.resolve_data_paths(config)
    # tfds makes its data_dir on a first download: it need not exist yet.
    config.data.tfds_name, config.data.tfds_data_dir = "cycle_gan/horse2zebra", "fresh/tfds"
    assert training.resolve_data_paths(config).data.tfds_data_dir == str(tmp_path / "fresh" / "tfds")
    # tfds wins over folders: a bundled config's root that is not on this machine is not read.
    config.data.root, config.data.train_a = "../shared/data/horse2zebra", "nowhere"
    resolved = training.resolve_data_paths(config)
    assert resolved.data.root == "" and resolved.data.train_a == "" and resolved.data.tfds_name


def test_strategy_auto_picks_default_without_tpu_gpus_or_cluster(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.delenv("TPU_NAME", raising=False)
    monkeypatch.delenv("COLAB_TPU_ADDR", raising=False)
    strategy = training.make_strategy(default.get_config().distribute)
    assert strategy is tf.distribute.get_strategy()
    assert training.is_chief(strategy)
    monkeypatch.setenv("TPU_NAME", "my-tpu")
    assert training._tpu_address("") == "my-tpu"
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:2"]},
                                                "task": {"type": "worker", "index": 1}}))
    assert training._tf_config_workers() == 2
    # An index as a string is TensorFlow's too; a single VM's TF_CONFIG (a
    # 'master' task, as some platforms set) is no multi-worker cluster to check.
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:2"]},
                                                "task": {"type": "worker", "index": "1"}}))
    assert training._tf_config_workers() == 2
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"master": ["a:1"]}, "task": {"type": "master", "index": 0}}))
    assert training._tf_config_workers() == 0
    monkeypatch.delenv("TPU_NAME")
    assert training.make_strategy(default.get_config().distribute) is tf.distribute.get_strategy()


@pytest.mark.parametrize("tf_config, says", [
    ("[1, 2]", "a JSON object is expected, not a list"),
    ('{"cluster": {"worker": "a:1,b:2"}, "task": {"type": "worker", "index": 0}}',
     "cluster job 'worker' must be a list of 'host:port' strings, got 'a:1,b:2'"),
    ('{"cluster": ["a:1"]}', "'cluster' must be an object of jobs, not a list"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}}', "with a 'cluster', 'task' must say which of its tasks this process is"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 5}}',
     "task index 5 is not one of the 2 worker task"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": "first"}}',
     "task index 'first' is not one of the 2 worker task"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "wrker", "index": 0}}',
     "task type 'wrker': train.py runs 'chief' and 'worker' tasks"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "evaluator", "index": 0}}',
     "task type 'evaluator'"),
])
def test_a_malformed_tf_config_is_named(monkeypatch, tf_config, says):
    monkeypatch.delenv("TPU_NAME", raising=False)
    monkeypatch.setenv("TF_CONFIG", tf_config)
    for strategy in ("auto", "multi_worker"):
        distribute = smoke.get_config().distribute
        distribute.strategy = strategy
        with pytest.raises(training.ConfigError, match="environment variable TF_CONFIG: " + re.escape(says)):
            training.make_strategy(distribute)


def test_precision_auto_follows_native_bfloat16_and_is_recorded(tmp_path, monkeypatch):
    for native, chosen in [(False, "float32"), (True, "mixed_bfloat16")]:
        monkeypatch.setattr(training, "native_bfloat16", lambda native=native: native)
        assert training.resolve_train_precision("auto") == chosen
        assert training.resolve_train_precision("mixed_float16") == "mixed_float16"
    # A run under auto (float32 training is what every other run here does):
    # trains in the policy chosen, records it, and restores the caller's.
    config = smoke.get_config()
    assert default.get_config().train.precision == "auto"
    config.data.root = str(_tiny_folders(tmp_path / "data", count=2, size=32))
    config.data.max_images = 0
    config.train.precision = "auto"
    config.train.max_steps = 1
    config.train.progress = False
    seen = {}

    class Policy(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen["policy"] = keras.mixed_precision.global_policy().name

    training.train_and_evaluate(config, tmp_path / "run", callbacks=[Policy()])
    assert seen["policy"] == "mixed_bfloat16"
    assert keras.mixed_precision.global_policy().name == "float32"  # restored afterwards
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    assert recorded["train"]["precision"] == "mixed_bfloat16"
    # Exports are float32 whatever the training precision.
    exported = keras.saving.load_model(tmp_path / "run" / "export" / "gen_ab.keras", compile=False)
    assert {layer.dtype_policy.name for layer in exported.layers} == {"float32"}


def test_export_checkpoint_restores_a_kept_checkpoint_as_float32(tmp_path):
    import importlib.util

    config = smoke.get_config()
    config.data.root = str(_tiny_folders(tmp_path / "data", count=2, size=32))
    config.data.max_images = 0
    config.train.max_steps = 2
    config.train.progress = False
    config.checkpoint.every_steps = 1
    config.train.sample_every_steps = 0  # off: no sheets, not even at the end of training
    workdir = tmp_path / "run"
    training.train_and_evaluate(config, workdir)
    assert not (workdir / "samples").exists()
    tags = {v.tag for f in (workdir / "tensorboard").iterdir()
            for e in tf.compat.v1.train.summary_iterator(str(f)) for v in e.summary.value}
    assert "train/gen_ab_loss" in tags and not {t for t in tags if t.startswith("samples/")}
    folder = training.export_checkpoint(workdir, 1)
    assert folder == workdir / "export" / "ckpt-1"
    generator = keras.saving.load_model(folder / "gen_ab.keras", compile=False)
    assert {layer.dtype_policy.name for layer in generator.layers} == {"float32"}
    kernel = next(v for v in generator.weights if "stem_conv" in v.path and "kernel" in v.path).numpy()

    def saved_in(name):
        path = str(workdir / "checkpoints" / name)
        reader = tf.train.load_checkpoint(path)
        return any(np.array_equal(reader.get_tensor(key), kernel)
                   for key, shape in tf.train.list_variables(path) if tuple(shape) == kernel.shape)

    assert saved_in("ckpt-1") and not saved_in("ckpt-2")
    latest = keras.saving.load_model(workdir / "export" / "gen_ab.keras", compile=False)
    assert not np.array_equal(latest.get_weights()[1], generator.get_weights()[1])  # step 1, not 2
    with pytest.raises(FileNotFoundError, match=r"ckpt-7 not found; the workdir keeps ckpt-1, ckpt-2"):
        training.export_checkpoint(workdir, 7)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:  # a caller's mixed policy does not leak into the export
        training.export_checkpoint(workdir, 2)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    again = keras.saving.load_model(workdir / "export" / "ckpt-2" / "gen_ab.keras", compile=False)
    assert {layer.dtype_policy.name for layer in again.layers} == {"float32"}
    np.testing.assert_array_equal(again.get_weights()[1], latest.get_weights()[1])

    spec = importlib.util.spec_from_file_location("model_card", "scripts/model_card.py")
    model_card = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(model_card)
    assert model_card.generator_path(workdir, "ckpt-2") == workdir / "export" / "ckpt-2" / "gen_ab.keras"
    assert model_card.read_run(workdir, "ckpt-1")["step"] == 1
    with pytest.raises(ValueError, match="latest, best or ckpt-<step>"):
        model_card.generator_path(workdir, "ckpt-x")


def test_optimizers_follow_the_configs_schedule_and_adam_settings():
    # The wiring from config keys to both optimizers, against the reference's
    # LambdaLR: in 1-based epoch e, lr * (1 - max(0, e - epochs) / (epochs_decay + 1)).
    config = smoke.get_config()
    config.optim.learning_rate, config.optim.beta_1, config.optim.beta_2 = 1e-3, 0.3, 0.9
    config.optim.epsilon = 1e-6
    config.train.epochs, config.train.epochs_decay = 2, 3
    for optimizer in training.make_optimizers(config, steps_per_epoch=10):
        assert (optimizer.beta_1, optimizer.beta_2, optimizer.epsilon) == (0.3, 0.9, 1e-6)
        for step in (0, 9, 19, 20, 29, 30, 49):
            optimizer.iterations.assign(step)
            epoch = step // 10 + 1
            want = 1e-3 * (1 - max(0, epoch - 2) / 4)
            assert float(optimizer.learning_rate) == pytest.approx(want, rel=1e-6), step


def test_num_workers_counts_chief_and_workers():
    import types

    assert training.num_workers(tf.distribute.get_strategy()) == 1
    spec = tf.train.ClusterSpec({"chief": ["a:1"], "worker": ["b:2", "c:3"], "ps": ["d:4"]})
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(spec)
    assert training.num_workers(types.SimpleNamespace(cluster_resolver=resolver)) == 3


def _tiny_folders(root, count=4, size=40):
    rs = np.random.RandomState(0)
    from PIL import Image

    for split in ("trainA", "trainB", "testA", "testB"):
        (root / split).mkdir(parents=True)
        for i in range(count):
            pixels = rs.randint(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / split / f"{i}.png")
    return root


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    config = smoke.get_config()
    config.data.root = str(_tiny_folders(tmp_path / "data"))
    config.data.max_images = 0
    config.optim.learning_rate = 1e30  # the first update blows the weights up to inf
    config.train.progress = False
    config.model.lambda_identity = 0.0
    workdir = tmp_path / "run"
    with pytest.raises(FloatingPointError, match=r"is (nan|inf|-inf) at step 2 .*ckpt-1"):
        training.train_and_evaluate(config, workdir)
    latest = tf.train.latest_checkpoint(str(workdir / "checkpoints"))
    assert latest.endswith("ckpt-1")
    reader = tf.train.load_checkpoint(latest)
    for name, _ in tf.train.list_variables(latest):
        if "gen_ab" in name and "VARIABLE_VALUE" in name:
            assert np.all(np.isfinite(reader.get_tensor(name))), name
    assert reader.get_tensor("counters/step/.ATTRIBUTES/VARIABLE_VALUE") == 1


@pytest.fixture
def interactive_sigint():
    """SIGINT as a terminal has it. A job started in the background (CI under
    nohup, say) inherits it ignored, and training leaves an ignored SIGINT so."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


class _SigintBefore(keras.callbacks.Callback):
    """Sends this process SIGINT as training step ``step`` (1-based) begins;
    records the steps trained and on_train_end's step."""

    def __init__(self, step: int):
        super().__init__()
        self.step, self.steps, self.ended = step, [], []

    def on_train_batch_begin(self, batch, logs=None):
        if len(self.steps) == self.step - 1:
            # Only where training has taken SIGINT over; pytest's own would end the session.
            assert isinstance(getattr(signal.getsignal(signal.SIGINT), "__self__", None), training._StopOnSignal)
            signal.raise_signal(signal.SIGINT)

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append(logs["step"])

    def on_train_end(self, logs=None):
        self.ended.append(logs["step"])


def test_a_signal_in_an_epochs_last_step_stops_after_the_epoch_end_save(tmp_path, interactive_sigint):
    # Mid-epoch stops are tested in subprocesses (tests/train_test.py). Here the
    # signal arrives during the epoch's last step: the epoch ends as usual (its
    # save is the stop's checkpoint) and the next epoch never starts.
    config = _epoch_saves_config(tmp_path)
    interrupt = _SigintBefore(step=2)  # step 2 of 2 in epoch 1
    previous = signal.getsignal(signal.SIGINT)
    with pytest.raises(training.TrainingStopped, match=r"SIGINT at step 2 \(epoch 2, 0 steps in\)"):
        training.train_and_evaluate(config, tmp_path / "run", callbacks=[interrupt])
    assert interrupt.steps == [1, 2] and not interrupt.ended
    assert signal.getsignal(signal.SIGINT) is previous  # given back
    saved = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("ckpt-*.index"))
    assert saved == ["ckpt-2.index"]


def test_a_signal_in_the_last_step_of_a_finished_run_is_not_a_stop(tmp_path, interactive_sigint):
    # train.max_steps beyond the schedule: the schedule's last step ends the
    # run, so a signal there changes nothing (no "stopped", on_train_end runs).
    config = _epoch_saves_config(tmp_path)
    config.train.max_steps = 100
    interrupt = _SigintBefore(step=4)  # step 4 of 4
    logs = training.train_and_evaluate(config, tmp_path / "run", callbacks=[interrupt])
    assert logs["step"] == 4 and interrupt.ended == [4]


def test_signals_ignored_on_purpose_stay_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a background job inherits it
    try:
        with training._StopOnSignal():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL  # taken over
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_second_signal_ends_a_step_blocked_inside_tensorflow(tmp_path):
    # Python handlers run only when the main thread is back in Python; a step
    # blocked in TF (a collective waiting for a dead peer) must still end on
    # the second signal, as it did before training took the signals over.
    import subprocess
    import sys
    import time

    script = (
        "import tensorflow as tf\n"
        "from gan_style.training import _StopOnSignal\n"
        "with _StopOnSignal():\n"
        "    print('blocked', flush=True)\n"
        "    tf.queue.FIFOQueue(1, tf.float32).dequeue()  # never returns\n"
    )
    root = pathlib.Path(__file__).resolve().parents[1]
    child = subprocess.Popen([sys.executable, "-c", script], cwd=root, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "2"})
    try:
        assert child.stdout.readline().strip() == "blocked"
        time.sleep(0.5)  # into the dequeue
        child.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert child.poll() is None  # the first one only asks for a stop
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=30) == 128 + signal.SIGTERM
        err = child.stderr.read()
        assert "SIGTERM: stopping after this step" in err and "SIGTERM again: stopping at once" in err
    finally:
        if child.poll() is None:
            child.kill()


def test_too_few_test_images_for_evaluation_are_named_before_training(tmp_path):
    root = _tiny_folders(tmp_path / "data")
    for path in sorted((root / "testB").iterdir())[1:]:
        path.unlink()
    config = smoke.get_config()
    config.data.root = str(root)
    config.data.max_images = 0
    config.eval.every_epochs = 1
    config.train.progress = False
    with pytest.raises(training.ConfigError, match=r"at least 2 test images in domain B.*1 could be read"):
        training.train_and_evaluate(config, tmp_path / "run", feature_fn=lambda x: np.zeros((len(x), 4)))
    assert not list((tmp_path / "run").glob("checkpoints/ckpt-*"))
    # Weights that are not there: the key is named, before training too.
    config.data.root = str(_tiny_folders(tmp_path / "data2"))
    config.eval.inception_weights = str(tmp_path / "nope.weights.h5")
    with pytest.raises(training.ConfigError, match=r"config key eval.every_epochs > 0 scores with Inception "
                                                   r"\(eval.inception_weights='.*nope.weights.h5'\): Inception "
                                                   r"weights file not found"):
        training.train_and_evaluate(config, tmp_path / "run")
    assert not list((tmp_path / "run").glob("checkpoints/ckpt-*"))


def test_sample_sheets_use_training_images_when_a_test_split_has_none(tmp_path, caplog):
    # Only evaluation needs test images: an empty testA/ and a testB/ of
    # unreadable files must not stop a run that does not evaluate.
    config = _tiny_run_config(tmp_path)
    config.train.sample_every_steps = 2
    root = pathlib.Path(config.data.root)
    for path in (root / "testA").iterdir():
        path.unlink()
    for path in (root / "testB").iterdir():
        path.write_bytes(b"not an image")
    with caplog.at_level(logging.WARNING):
        training.train_and_evaluate(config, tmp_path / "run")
    warnings = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Sample sheets")]
    assert len(warnings) == 2 and "domain A" in warnings[0] and "no images" in warnings[0], warnings
    assert "domain B" in warnings[1] and "none of its images could be read" in warnings[1]
    assert sorted(p.name for p in (tmp_path / "run" / "samples").glob("*.png"))


def test_an_epoch_end_callback_that_fails_loses_no_training(tmp_path):
    # The epoch-end checkpoint comes before the callbacks (the FID/KID
    # evaluation among them), so an error there keeps the epoch.
    config = _epoch_saves_config(tmp_path)

    class Fails(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise RuntimeError("evaluation failed")

    with pytest.raises(RuntimeError, match="evaluation failed"):
        training.train_and_evaluate(config, tmp_path / "run", callbacks=[Fails()])
    assert tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints")).endswith("ckpt-2")


def test_evaluation_callback_scores_logs_and_keeps_the_best(tmp_path):
    def conv(seed, gain=1.0):
        init = keras.initializers.GlorotUniform(seed=seed)
        return keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(3, 1, kernel_initializer=init),
                                 keras.layers.Rescaling(gain)])

    gen, other = conv(1, gain=5.0), conv(2)  # gen: far off, so that a better one can follow
    model = keras.Model()
    model.gen_ab, model.gen_ba = gen, other  # different, so that a swap shows
    projection = np.random.RandomState(0).randn(8 * 8 * 3, 5).astype(np.float32)

    def feature_fn(images):  # a tiny random "network": a fixed linear projection
        return np.asarray(images).reshape(len(images), -1) @ projection

    rs = np.random.RandomState(1)
    test_a = rs.uniform(-1, 1, (12, 8, 8, 3)).astype(np.float32)
    test_b = rs.uniform(-1, 1, (12, 8, 8, 3)).astype(np.float32)
    best = []
    writer = tf.summary.create_file_writer(str(tmp_path / "tb"))
    callback = training.Evaluation(
        feature_fn, test_a, test_b, every_epochs=2, writer=writer, on_best=best.append,
        kid_subset_size=6,
    )
    callback.set_model(model)
    logs = {"step": 10}
    callback.on_epoch_end(0, logs)  # epoch 1: not an evaluation epoch
    assert not best and "eval_fid_ab" not in logs
    callback.on_epoch_end(1, logs)
    from gan_style import metrics

    want = metrics.fid_from_features(feature_fn(test_b), feature_fn(gen(test_a).numpy()))
    assert logs["eval_fid_ab"] == pytest.approx(want, rel=1e-6)
    want_ba = metrics.fid_from_features(feature_fn(test_a), feature_fn(other(test_b).numpy()))
    assert logs["eval_fid_ba"] == pytest.approx(want_ba, rel=1e-6)
    assert len(best) == 1 and best[0]["epoch"] == 2 and best[0]["fid_ab"] == logs["eval_fid_ab"]
    callback.on_epoch_end(3, logs)  # same generator: same score, not better
    assert len(best) == 1
    # A better one (the identity: test_a and test_b are drawn alike) is the new best.
    model.gen_ab = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Identity()])
    callback._translate.clear()
    callback.on_epoch_end(5, logs)
    assert logs["eval_fid_ab"] < best[0]["fid_ab"]
    assert len(best) == 2 and best[1]["epoch"] == 6
    # A generator gone to NaN is scored NaN and logged, not a crash, and not best,
    # even where the features come out finite (Inception turns NaN pixels into
    # finite features; nan_to_num stands in for that here).
    nan_gen = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Lambda(lambda x: x * np.nan)])
    model.gen_ab = nan_gen
    callback._translate.clear()
    callback.feature_fn = lambda images: np.nan_to_num(feature_fn(images))
    callback.best_score = None  # even with no best yet, NaN is not one
    callback.on_epoch_end(7, logs)
    assert np.isnan(logs["eval_fid_ab"]) and np.isnan(logs["eval_kid_ab"])
    assert logs["eval_fid_ba"] == pytest.approx(want_ba, rel=1e-6)
    assert len(best) == 2
    writer.flush()
    tags = {
        v.tag
        for f in os.listdir(tmp_path / "tb")
        for e in tf.compat.v1.train.summary_iterator(str(tmp_path / "tb" / f))
        for v in e.summary.value
    }
    assert {"eval/fid_ab", "eval/fid_ba", "eval/kid_ab", "eval/kid_ba"} <= tags


def test_sample_sheet_layout():
    a = np.full((2, 4, 4, 3), -1.0)
    sheet = training.sample_sheet(a, a * 0, a * 0 + 1, gap=2)
    assert sheet.shape == (4 + 2 + 4, 3 * 4 + 2 * 2, 3)
    assert sheet[0, 0, 0] == 0.0 and sheet[0, 6, 0] == 0.5 and sheet[0, 12, 0] == 1.0


def _tiny_run_config(tmp_path, **data_kwargs):
    """The smoke run on tiny random images, one step. Without sample sheets
    and identity losses, whose traces take a third of a tiny run's time:
    the tests that need them switch them on."""
    config = smoke.get_config()
    config.data.root = str(_tiny_folders(tmp_path / "data", **data_kwargs))
    config.data.max_images = 0
    config.train.max_steps = 1
    config.train.progress = False
    config.train.sample_every_steps = 0
    config.model.lambda_identity = 0.0
    return config


def _epoch_saves_config(tmp_path):
    """Both epochs of the tiny run (2 steps each), checkpoints at epoch ends only."""
    config = _tiny_run_config(tmp_path)
    config.train.max_steps = 0
    config.checkpoint.every_steps = 0
    return config


@pytest.fixture(scope="module")
def one_step_run(tmp_path_factory):
    """A tiny run trained for one step, trained once for the tests that resume it."""
    root = tmp_path_factory.mktemp("one_step")
    config = _tiny_run_config(root, count=2, size=32)
    training.train_and_evaluate(config, root / "run")
    return config, root / "run"


def _copy_of(run, tmp_path):
    import shutil

    config, workdir = run
    shutil.copytree(workdir, tmp_path / "run")
    return ml_collections.ConfigDict(config.to_dict()), tmp_path / "run"


def test_resume_refuses_changes_its_checkpoint_cannot_follow(one_step_run, tmp_path):
    config, workdir = _copy_of(one_step_run, tmp_path)
    assert config.train.batch_size == 2
    for key, value in [("model.generator_filters", config.model.generator_filters * 2),
                       ("train.batch_size", 1), ("data.crop_size", 24),  # smoke's batch is 2
                       ("train.precision", "mixed_float16")]:
        changed = smoke.get_config()
        changed.update_from_flattened_dict({**training._flatten(config.to_dict()), key: value})
        with pytest.raises(training.ConfigError, match=rf"config key {key}=.*differs from the run being resumed"):
            training.train_and_evaluate(changed, workdir)
    # A change it can follow resumes, and the history says what changed when;
    # keys the run's config.json predates are logged as new (even fixed ones).
    saved = json.loads((workdir / "config.json").read_text())
    del saved["optim"]["epsilon"], saved["model"]["discriminator_layers"]
    (workdir / "config.json").write_text(json.dumps(saved))
    config.train.max_steps = 2
    config.optim.learning_rate = 1e-4
    training.train_and_evaluate(config, workdir)
    history = [json.loads(line) for line in (workdir / "config_history.jsonl").read_text().splitlines()]
    assert history == [{"step": 1, "changed": {"model.discriminator_layers": [None, 3],
                                                "optim.epsilon": [None, 1e-8],
                                                "optim.learning_rate": [0.0002, 0.0001],
                                                "train.max_steps": [1, 2]}, "time": history[0]["time"]}]
    assert json.loads((workdir / "config.json").read_text())["optim"]["learning_rate"] == 1e-4


def test_a_checkpoint_that_does_not_fit_is_a_config_error(one_step_run, tmp_path):
    config, workdir = _copy_of(one_step_run, tmp_path)
    (workdir / "config.json").unlink()  # no record to compare with: restore itself must say so
    config.model.generator_filters *= 2
    with pytest.raises(training.ConfigError, match=r"checkpoint .*ckpt-1 does not fit this config .*; "
                                                   r"the config it was trained with is not recorded \(no .*config.json\)"):
        training.train_and_evaluate(config, workdir)
    # A config.json broken by hand is named, and the checkpoints are left alone.
    (workdir / "config.json").write_text('{"data": ')
    before = sorted((p.name, p.stat().st_size) for p in (workdir / "checkpoints").iterdir())
    with pytest.raises(training.ConfigError, match=r"config.json cannot be read \(Expecting value: line 1.*\): it "
                                                   r"records the config .*ckpt-1 was trained with"):
        training.train_and_evaluate(config, workdir)
    assert sorted((p.name, p.stat().st_size) for p in (workdir / "checkpoints").iterdir()) == before


def test_an_empty_workdir_is_refused_before_any_work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(training.ConfigError, match="--workdir is empty"):
        training.train_and_evaluate(smoke.get_config(), "")
    assert not list(tmp_path.iterdir())
    # Data that cannot make one batch, or that does not decode: before the workdir exists.
    config = _tiny_run_config(tmp_path / "x", count=2, size=32)
    config.train.batch_size = 4
    with pytest.raises(ValueError, match=r"train.batch_size=4 is larger than the epoch"):
        training.train_and_evaluate(config, tmp_path / "run")
    config.train.batch_size = 1
    for path in (pathlib.Path(config.data.root) / "trainB").iterdir():
        path.write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"data.root \(its trainB/ folder; or set data.train_b\): none of its 2 images could be decoded"):
        training.train_and_evaluate(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_mirrored_devices_that_do_not_exist_are_named():
    distribute = smoke.get_config().distribute
    distribute.strategy = "mirrored"
    distribute.devices = "/cpu:0,/gpu:3"
    with pytest.raises(training.ConfigError, match=r"distribute.devices: no device '/gpu:3' here \(this process has /cpu:0"):
        training.make_strategy(distribute)
    distribute.devices = "/cpu:0"
    assert training.make_strategy(distribute).num_replicas_in_sync == 1
    # Devices with a strategy that does not take them (auto picks "default"
    # here: no GPUs) were ignored; training ran on the CPU.
    for strategy in ("auto", "default"):
        distribute.strategy = strategy
        distribute.devices = "/gpu:7"
        with pytest.raises(training.ConfigError, match=r"distribute.devices='/gpu:7' applies only to "
                                                       r"distribute.strategy='mirrored' \(the strategy here is 'default"):
            training.make_strategy(distribute)


def test_multi_worker_without_a_cluster_is_refused(monkeypatch):
    distribute = smoke.get_config().distribute
    distribute.strategy = "multi_worker"
    for tf_config in (None, '{"clustr": {"worker": ["a:1", "b:2"]}}',
                      '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}'):
        if tf_config is None:
            monkeypatch.delenv("TF_CONFIG", raising=False)
        else:
            monkeypatch.setenv("TF_CONFIG", tf_config)
        with pytest.raises(training.ConfigError, match=r"multi_worker' but TF_CONFIG lists [01] chief/worker"):
            training.make_strategy(distribute)


def test_log_every_steps_zero_logs_no_scalars(tmp_path):
    writer = tf.summary.create_file_writer(str(tmp_path))
    logger = training.ScalarLogger(writer, every_steps=0, global_batch_size=1)
    logger.on_train_begin()
    logger.on_epoch_begin(0)
    for step in (1, 2):
        logger.on_train_batch_end(step - 1, {**{name: 1.0 for name in training.LOSS_NAMES}, "lr": 1e-4, "step": step})
    writer.flush()
    events = [e for f in os.listdir(tmp_path) for e in tf.compat.v1.train.summary_iterator(str(tmp_path / f))]
    assert not [v for e in events for v in e.summary.value]


def test_images_per_second_leaves_out_the_evaluation_between_epochs(tmp_path, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(training.time, "perf_counter", lambda: clock[0])
    writer = tf.summary.create_file_writer(str(tmp_path))
    logger = training.ScalarLogger(writer, every_steps=2, global_batch_size=4)
    logger.on_train_begin()
    losses = {name: 1.0 for name in training.LOSS_NAMES}
    step = 0
    for epoch in range(2):  # steps of 2 s each (4 images: 2 img/s), 300 s of evaluation after epoch 0
        logger.on_epoch_begin(epoch)
        for _ in range(3):
            clock[0] += 2.0
            step += 1
            logger.on_train_batch_end(step - 1, {**losses, "lr": 1e-4, "step": step})
        logger.on_epoch_end(epoch)
        clock[0] += 300.0
    writer.flush()
    events = [e for f in os.listdir(tmp_path) for e in tf.compat.v1.train.summary_iterator(str(tmp_path / f))]
    rates = {e.step: tf.make_ndarray(v.tensor) for e in events for v in e.summary.value
             if v.tag == "train/images_per_second"}
    assert rates == {2: pytest.approx(2.0), 4: pytest.approx(2.0), 6: pytest.approx(2.0)}


def test_native_size_evaluation_with_test_images_of_different_sizes(tmp_path):
    from PIL import Image

    config = _tiny_run_config(tmp_path, count=2, size=32)
    for i, size in enumerate([(40, 48), (64, 32)]):  # height, width
        for split in ("testA", "testB"):
            pixels = np.random.default_rng(i).integers(0, 256, size + (3,), dtype=np.uint8)
            Image.fromarray(pixels).save(pathlib.Path(config.data.root) / split / f"{i}.png")
    config.data.eval_size = 0
    config.eval.every_epochs = 1
    config.train.max_steps = 0
    config.train.epochs_decay = 0  # one epoch, one evaluation
    config.data.max_images = 2
    config.train.num_samples = 4
    config.train.sample_every_steps = 2
    seen = []

    def feature_fn(images):
        seen.append([np.shape(image) for image in images])
        return np.stack([np.asarray(image).mean(axis=(0, 1)) for image in images]).astype(np.float64)

    training.train_and_evaluate(config, tmp_path / "run", feature_fn=feature_fn)
    assert {(40, 48, 3), (64, 32, 3)} <= {shape for shapes in seen for shape in shapes}
    sheets = sorted((tmp_path / "run" / "samples").glob("*_a2b.png"))
    assert sheets


def test_a_second_run_into_a_busy_workdir_stops_at_once(one_step_run, tmp_path):
    import fcntl

    config, workdir = _copy_of(one_step_run, tmp_path)
    with open(workdir / ".lock", "a+") as other_run:
        fcntl.flock(other_run, fcntl.LOCK_EX | fcntl.LOCK_NB)
        other_run.truncate(0)
        other_run.write("pid 12345 on elsewhere")
        other_run.flush()
        with pytest.raises(training.ConfigError, match=r"in use by another training run \(pid 12345 on elsewhere\)"):
            training.train_and_evaluate(config, workdir)
    # Free again: the run resumes (its one step is done already, so it stops there).
    assert training.train_and_evaluate(config, workdir)["step"] == 1


def test_dropout_switched_on_at_resume_still_resumes(one_step_run, tmp_path, caplog):
    # A checkpoint without dropout seed states (dropout 0 before) must still fit.
    # (That a resume continues the dropout masks exactly is checked by
    # train_test's resume after SIGKILL.)
    config, workdir = _copy_of(one_step_run, tmp_path)
    assert config.model.dropout == 0
    config.model.dropout = 0.5
    config.train.max_steps = 2
    training.train_and_evaluate(config, workdir)
    latest = tf.train.latest_checkpoint(str(workdir / "checkpoints"))
    assert latest.endswith("ckpt-2")
    assert any(name.startswith("dropout_seeds/") for name, _ in tf.train.list_variables(latest))
    assert "holds no dropout seed states: dropout masks start afresh" in caplog.text


def _run_with_two_checkpoints(one_step_run, tmp_path):
    """A copy of the one-step run trained on to step 2: ckpt-1 and ckpt-2."""
    config, workdir = _copy_of(one_step_run, tmp_path)
    config.train.max_steps = 2
    training.train_and_evaluate(config, workdir)
    return config, workdir, workdir / "checkpoints"


def test_resume_takes_the_newest_checkpoint_whose_files_are_there(one_step_run, tmp_path, caplog):
    import logging as std_logging

    config, workdir, checkpoints = _run_with_two_checkpoints(one_step_run, tmp_path)
    for path in checkpoints.glob("ckpt-2.*"):
        path.unlink()  # lost: the run must neither start afresh nor overwrite ckpt-1
    with caplog.at_level(std_logging.INFO):
        assert training.train_and_evaluate(config, workdir)["step"] == 2  # (the smoke run ends at 2)
    assert "ckpt-2 is unusable (its files are gone): resuming from" in caplog.text
    assert re.search(r"Resumed from \S*ckpt-1: step 1", caplog.text)
    # No state file (a first save cut short): the newest checkpoint that reads.
    (checkpoints / "checkpoint").unlink()
    (checkpoints / "ckpt-3.index").write_bytes(b"cut short")
    caplog.clear()
    with caplog.at_level(std_logging.INFO):
        assert training.train_and_evaluate(config, workdir)["step"] == 2
    assert "no usable 'checkpoint' state file: resuming from" in caplog.text
    assert re.search(r"Resumed from \S*ckpt-2: step 2", caplog.text)
    # The state file lists checkpoints whose files are all gone: refused.
    (checkpoints / "checkpoint").write_text('model_checkpoint_path: "ckpt-3"\nall_model_checkpoint_paths: "ckpt-3"\n')
    for path in checkpoints.glob("ckpt-*"):
        path.unlink()
    with pytest.raises(training.ConfigError, match=r"checkpoint lists ckpt-3, but none of them can be restored: "
                       r"ckpt-3 is unusable \(its files are gone\)"):
        training.train_and_evaluate(config, workdir)


def test_a_resume_with_nothing_left_to_train_says_so(one_step_run, tmp_path, caplog):
    config, workdir = _copy_of(one_step_run, tmp_path)  # at step 1; max_steps is 1
    config.train.sample_every_steps = 2
    with caplog.at_level(logging.WARNING):
        assert training.train_and_evaluate(config, workdir)["step"] == 1
    assert "Nothing to train: the run is at step 1 (1 epoch(s) done), and the config ends at step 1" in caplog.text
    assert not (workdir / "samples").exists()  # no end-of-training sheets for a step trained before


def test_resume_passes_over_a_newest_checkpoint_that_does_not_read(one_step_run, tmp_path, caplog):
    # A full disk or a partial copy: the files are there but cut short.
    import shutil

    config, workdir, checkpoints = _run_with_two_checkpoints(one_step_run, tmp_path)
    for damage in ("data cut in half", "data cut by 2 KB", "index cut in half"):
        copy = tmp_path / damage.replace(" ", "_")
        shutil.copytree(checkpoints, copy)
        kind, cut = damage.split(" cut ")
        path = next(copy.glob("ckpt-2.data-*")) if kind == "data" else copy / "ckpt-2.index"
        size = path.stat().st_size
        os.truncate(path, size // 2 if cut == "in half" else size - 2048)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert training.resume_checkpoint(copy).endswith("ckpt-1"), damage
        assert "ckpt-2 is unusable (it does not read: " in caplog.text, damage
    # The whole run, with an emptied state file too (tf.train.CheckpointManager
    # stops on one): it resumes from ckpt-1 and writes the state file anew.
    (checkpoints / "checkpoint").write_text("")
    data = next(checkpoints.glob("ckpt-2.data-*"))
    os.truncate(data, data.stat().st_size // 2)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert training.train_and_evaluate(config, workdir)["step"] == 2
    assert "state file does not read" in caplog.text
    assert re.search(r"Resumed from \S*ckpt-1: step 1", caplog.text)
    assert (checkpoints / "checkpoint.unreadable").read_text() == ""  # kept, out of the way
    assert training.resume_checkpoint(checkpoints).endswith("ckpt-2")


def test_a_resume_with_another_epoch_size_is_refused(one_step_run, tmp_path):
    # One step of 2 images at batch 2 is one whole epoch. With 4 images an
    # epoch is 2 steps, and the schedule (steps // 2) would say epoch 0.
    config, workdir = _copy_of(one_step_run, tmp_path)
    assert training.resume_checkpoint(workdir / "checkpoints").endswith("ckpt-1")
    config.data.root = str(_tiny_folders(tmp_path / "more", count=4, size=32))
    config.train.max_steps = 2
    with pytest.raises(training.ConfigError, match=r"the training set changed size since \S*ckpt-1: it trained "
                                                   r"with epochs of 1 steps, and now an epoch is 2 steps.*"
                                                   r"data.max_images so the larger domain has 1 x train.batch_size"):
        training.train_and_evaluate(config, workdir)
    config.data.max_images = 2  # capped to the old count: resumes
    assert training.train_and_evaluate(config, workdir)["step"] == 2


def test_a_resume_with_another_epoch_size_is_refused_in_the_first_epoch_too(tmp_path, caplog):
    # Stopped one step into a 2-step epoch: the counters alone cannot tell
    # the epoch's size, so a smaller training set was accepted, and then the
    # run refused every later resume, even with its own config.
    config = _tiny_run_config(tmp_path, count=4, size=32)
    workdir = tmp_path / "run"
    training.train_and_evaluate(config, workdir)
    config.data.max_images = 2
    config.train.max_steps = 2
    with pytest.raises(training.ConfigError, match=r"it trained with epochs of 2 steps, and now an epoch is 1 steps"):
        training.train_and_evaluate(config, workdir)
    config.data.max_images = 0
    with caplog.at_level(logging.WARNING):
        assert training.train_and_evaluate(config, workdir)["step"] == 2
    # epoch_size is restored apart: TF must not warn that the checkpoint holds more than was restored.
    assert "could not be found in the restored object" not in caplog.text


def test_epoch_size_of_a_checkpoint_that_does_not_record_it():
    # Checkpoints from before the epoch size was saved: worked out from the
    # counters past the first epoch, taken on trust within it.
    counters = training._Counters()
    counters.step.assign(9), counters.epoch.assign(2), counters.step_in_epoch.assign(1)
    training._check_epoch_size(counters, 0, 4, "ckpt-9")
    with pytest.raises(training.ConfigError, match="epochs of 4 steps, and now an epoch is 3 steps"):
        training._check_epoch_size(counters, 0, 3, "ckpt-9")
    counters.step.assign(3), counters.epoch.assign(0), counters.step_in_epoch.assign(3)
    training._check_epoch_size(counters, 0, 2, "ckpt-3")
    with pytest.raises(training.ConfigError, match="epochs of 5 steps, and now an epoch is 2 steps"):
        training._check_epoch_size(counters, 5, 2, "ckpt-3")


def test_a_batch_of_images_of_different_sizes_names_the_keys(tmp_path):
    from PIL import Image

    config = _tiny_run_config(tmp_path, count=2, size=32)
    Image.fromarray(np.zeros((40, 36, 3), np.uint8)).save(pathlib.Path(config.data.root) / "trainA" / "0.png")
    config.data.preprocess = "none"
    config.model.pool_size = 0
    with pytest.raises(training.ConfigError, match=r"data.preprocess='none' keeps each training image's own "
                                                   r"size, and train.batch_size=2 put images of different sizes"):
        training.train_and_evaluate(config, tmp_path / "run")
