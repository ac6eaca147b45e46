"""``train_and_evaluate(config, workdir)``: the CycleGAN training loop.

Read top to bottom, one run is:

1. validate the config (a wrong key or value stops here, naming the key) and
   resolve data paths against the current directory;
2. pick the ``tf.distribute`` strategy, the precision policy and determinism;
3. inside the strategy scope build :class:`~gan_style.cyclegan.CycleGAN`, its
   pools and both optimizers (so that a checkpoint restores into them);
4. restore the latest checkpoint of ``workdir/checkpoints`` if there is one
   (step, epoch, position in the epoch, weights, optimizer slots, pools, RNG),
   after checking the config against the run's ``config.json``: a change the
   checkpoint cannot follow (networks, crop size, pool, batch size) stops
   here, naming the key; other changes are logged in ``config_history.jsonl``;
5. for each remaining epoch, rebuild that epoch's input (its order depends only
   on the seed and the epoch), skip what was already trained, and run the
   distributed step batch by batch, with a Keras progress bar and callbacks
   (TensorBoard scalars, sample sheets, FID/KID evaluation);
6. checkpoint every ``checkpoint.every_steps`` steps and at every epoch end,
   exporting ``workdir/export/gen_ab.keras`` and ``gen_ba.keras`` each time.

A NaN or Inf loss stops the run before anything more is saved, so the latest
checkpoint stays the last good one. SIGINT (Ctrl-C) or SIGTERM (a scheduler or
a preempted VM) stops it after the current step with a checkpoint of that
step, so nothing trained is lost: :class:`TrainingStopped` says where, and the
same command resumes. A second signal acts at once, as without this. Under ``MultiWorkerMirroredStrategy`` every
worker runs the same loop; only the chief writes the workdir (the others save
their checkpoints in throw-away directories, as the TF docs recommend, since
saving may involve collectives).

Workdir layout::

    config.json            the resolved config (of the latest resume)
    config_history.jsonl   keys changed on resume: {"step", "changed": {key: [old, new]}, "time"}
    .lock                  held by the training run (pid, host), so a second one cannot race it
    checkpoints/           ckpt-<step>.* and the `checkpoint` state file (last K)
    checkpoints/best/      the best checkpoint by FID (with eval.every_epochs)
    export/                gen_ab.keras, gen_ba.keras (best/ beside them)
    samples/               step_<step>_a2b.png, step_<step>_b2a.png
    tensorboard/           TensorBoard event files
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import pathlib
import shutil
import signal
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import keras
import ml_collections
import numpy as np
import tensorflow as tf
from absl import logging

from gan_style import atomic, input_pipeline, networks, run_lock
from gan_style._bundled import bundled_path
from gan_style.cyclegan import LOSS_NAMES, CycleGAN
from gan_style.optimizers import ReferenceAdam
from gan_style.precision import generator_with_precision, native_bfloat16
from gan_style.schedules import LinearDecaySchedule

STRATEGIES = ("auto", "default", "mirrored", "multi_worker", "tpu")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
BEST_METRICS = ("fid_ab", "fid_ba", "fid_mean")
_DATA_PATH_KEYS = ("root", "train_a", "train_b", "test_a", "test_b", "tfds_data_dir")


class ConfigError(ValueError):
    """A config key is unknown or has a bad value; the message names the key."""


class TrainingStopped(Exception):
    """Training stopped on SIGINT or SIGTERM after saving a checkpoint of the last
    step; the same call (or command) resumes it. ``signum`` is the signal."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


# ---------------------------------------------------------------------------
# Config validation.


def _flatten(config, prefix="") -> dict[str, Any]:
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, (ml_collections.ConfigDict, dict)):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _check_type(key: str, value, reference) -> None:
    if isinstance(reference, bool):
        ok = isinstance(value, bool)
    elif isinstance(reference, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(reference, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(reference, str):
        ok = isinstance(value, str)
    else:
        ok = True
    if not ok:
        raise ConfigError(
            f"config key {key} must be {type(reference).__name__}, got {value!r} "
            f"({type(value).__name__})"
        )


def default_config() -> ml_collections.ConfigDict:
    """``configs/default.py``'s ``get_config()``: the one list of config keys."""
    path = bundled_path("configs", "default.py")  # a wheel carries it as gan_style/_configs
    spec = importlib.util.spec_from_file_location("gan_style_default_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Raises :class:`ConfigError` naming the first unknown key or bad value.

    Every key must exist in ``configs/default.py`` with a value of the same
    type; then ranges and choices are checked.
    """
    reference = _flatten(default_config())
    given = _flatten(config)
    for key in given:
        if key not in reference:
            close = [k for k in reference if k.rsplit(".", 1)[-1] == key.rsplit(".", 1)[-1]]
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"unknown config key {key}{hint}")
    for key, value in reference.items():
        if key not in given:
            raise ConfigError(f"config key {key} is missing (see configs/default.py)")
        _check_type(key, given[key], value)

    def choose(key, allowed):
        if given[key] not in allowed:
            raise ConfigError(
                f"config key {key}={given[key]!r} is not one of {', '.join(map(repr, allowed))}"
            )

    def at_least(key, low):
        if not given[key] >= low:
            raise ConfigError(f"config key {key} must be >= {low}, got {given[key]!r}")

    choose("data.preprocess", input_pipeline.PREPROCESS_MODES)
    for key in ("data.load_size", "data.crop_size", "train.batch_size", "model.generator_filters",
                "model.discriminator_filters", "model.discriminator_layers",
                "checkpoint.keep", "train.num_samples"):
        at_least(key, 1)
    for key in ("data.eval_size", "data.max_images", "train.epochs", "train.epochs_decay",
                "train.max_steps", "train.log_every_steps", "train.sample_every_steps",
                "checkpoint.every_steps", "model.pool_size", "model.lambda_cycle_a",
                "model.lambda_cycle_b", "model.lambda_identity", "model.dropout",
                "eval.every_epochs", "eval.num_images", "optim.beta_1", "optim.beta_2"):
        at_least(key, 0)
    if not 0 <= given["seed"] < 2**32:  # keras.utils.set_random_seed's range
        raise ConfigError(f"config key seed must be in 0..{2**32 - 1}, got {given['seed']!r}")
    if given["data.num_parallel_calls"] == 0 or given["data.num_parallel_calls"] < -1:
        raise ConfigError("config key data.num_parallel_calls must be -1 (AUTOTUNE) or >= 1")
    for key in ("optim.learning_rate", "optim.epsilon"):
        if not given[key] > 0:  # epsilon 0: 0/0 for a weight whose gradient is always 0
            raise ConfigError(f"config key {key} must be > 0, got {given[key]!r}")
    for key in ("optim.beta_1", "optim.beta_2", "model.dropout"):
        if not given[key] < 1:
            raise ConfigError(f"config key {key} must be < 1, got {given[key]!r}")
    if given["train.epochs"] + given["train.epochs_decay"] < 1:
        raise ConfigError("config keys train.epochs + train.epochs_decay must be >= 1")
    # Both scale the width to load_size, then cut crop_size squares from it.
    if given["data.preprocess"] in ("resize_and_crop", "scale_width_and_crop") and (
            given["data.load_size"] < given["data.crop_size"]):
        raise ConfigError(
            f"config key data.load_size ({given['data.load_size']}) must be >= data.crop_size "
            f"({given['data.crop_size']}) with data.preprocess={given['data.preprocess']!r}"
        )
    if given["model.pool_size"] > 0 and given["data.preprocess"] in ("none", "scale_width"):
        raise ConfigError(
            f"config key model.pool_size > 0 needs fixed-size training crops, but "
            f"data.preprocess={given['data.preprocess']!r} keeps each image's size; "
            "set model.pool_size=0 or a cropping mode"
        )
    choose("model.generator", tuple(networks.GENERATORS))
    choose("model.discriminator", tuple(networks.DISCRIMINATORS))
    choose("model.norm", networks.NORMS)
    choose("model.upsample", networks.UPSAMPLES)
    choose("model.init", networks.INITS)
    choose("model.adversarial_loss", ("lsgan", "vanilla", "hinge"))
    choose("train.precision", PRECISIONS)
    choose("distribute.strategy", STRATEGIES)
    choose("eval.best_metric", BEST_METRICS)
    if given["eval.every_epochs"] and given["eval.num_images"] == 1:
        raise ConfigError("config key eval.num_images must be 0 (all) or >= 2 for FID/KID")


def resolve_data_paths(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy of ``config`` with data paths made absolute (relative to the cwd).

    Raises:
      ConfigError: naming the key of a path that doesn't exist, or when no
        training source is configured.
    """
    config = ml_collections.ConfigDict(config.to_dict())
    data = config.data
    for key in _DATA_PATH_KEYS:
        value = data[key]
        if not value:
            continue
        if data.tfds_name and key != "tfds_data_dir":
            # tfds wins: the folders are not read, so one that is missing here
            # (a bundled config's ../shared/data) is no error, and not recorded.
            logging.info("data.tfds_name=%r is set: data.%s=%r is not read", data.tfds_name, key, value)
            data[key] = ""
            continue
        path = os.path.abspath(os.path.expanduser(value))
        # tfds creates its data_dir for a first download; any other path must exist.
        if not os.path.exists(path) and key != "tfds_data_dir":
            raise ConfigError(
                f"config key data.{key}={value!r}: {path} does not exist (relative paths "
                f"resolve against the current directory, {os.getcwd()})"
            )
        data[key] = path
    if data.tfds_name:
        return config
    for key, split in (("train_a", "trainA"), ("train_b", "trainB")):
        if data[key]:
            continue
        if not data.root:
            raise ConfigError(
                f"no training data: set config key data.root (a folder with trainA/, "
                f"trainB/), data.{key}, or data.tfds_name"
            )
        if not os.path.isdir(os.path.join(data.root, split)):
            raise ConfigError(
                f"config key data.root={data.root!r} has no {split}/ folder; set data.{key}"
            )
    return config


def _has_test_split(data, domain: str) -> bool:
    return input_pipeline.has_split(data, f"test{domain.upper()}")


def _sample_images(data, domain: str, count: int, batch_size: int, seed: int):
    """The sample sheets' fixed images of one domain: the first ``count`` test
    images, or the first training batch when the domain has no test images
    (none configured, an empty folder, none decodable: only evaluation needs them)."""
    if _has_test_split(data, domain):
        unreadable = "none of its images could be read"
        try:
            images = _first_images(input_pipeline.eval_dataset(data, domain, batch_size=count), count)
            if len(images):
                return images
            reason = unreadable
        except ValueError as error:  # e.g. an empty folder, named by its config key
            reason = str(error)
        except tf.errors.InvalidArgumentError:  # raised in tf.data when no image decodes
            reason = unreadable
        logging.warning("Sample sheets show training images for domain %s: its test split has none (%s)",
                        domain.upper(), reason)
    ds = input_pipeline.train_dataset(data, batch_size=batch_size, seed=seed, epoch=0)
    return _first_images(ds.map(lambda a, b: a if domain == "a" else b), count)


# ---------------------------------------------------------------------------
# Strategy.


def _tpu_address(explicit: str) -> str | None:
    """Where a TPU is, from the config, environment or local devices only.

    Never asks the cloud metadata server (it hangs or fails off GCP).
    """
    if explicit:
        return explicit
    if os.environ.get("TPU_NAME"):
        return os.environ["TPU_NAME"]
    if os.environ.get("COLAB_TPU_ADDR"):
        return "grpc://" + os.environ["COLAB_TPU_ADDR"]
    # TPU VMs expose the chips as local devices.
    if os.path.exists("/dev/accel0") or any(
        name.isdigit() for name in (os.listdir("/dev/vfio") if os.path.isdir("/dev/vfio") else [])
    ):
        return "local"
    return None


_TF_CONFIG_FORM = '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}'


def _tf_config_cluster() -> dict:
    """``TF_CONFIG``'s cluster (empty when unset), checked where TensorFlow
    would fail with a traceback or a message that does not name it."""
    raw = os.environ.get("TF_CONFIG", "")
    if not raw.strip():
        return {}
    try:
        tf_config = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ConfigError(f"environment variable TF_CONFIG is not valid JSON: {error}") from None

    def bad(what: str) -> ConfigError:
        return ConfigError(f"environment variable TF_CONFIG: {what}; the form is {_TF_CONFIG_FORM}")

    if not isinstance(tf_config, dict):
        raise bad(f"a JSON object is expected, not a {type(tf_config).__name__}")
    cluster = tf_config.get("cluster", {})
    if not isinstance(cluster, dict):
        raise bad(f"'cluster' must be an object of jobs, not a {type(cluster).__name__}")
    for job, tasks in cluster.items():
        # TensorFlow takes a list of addresses, or an object of index -> address.
        if not isinstance(tasks, (list, dict)) or not all(isinstance(t, str) for t in
                                                          (tasks.values() if isinstance(tasks, dict) else tasks)):
            raise bad(f"cluster job {job!r} must be a list of 'host:port' strings, got {tasks!r}")
    if len(cluster.get("worker", [])) + len(cluster.get("chief", [])) < 2:
        # No multi-worker training (a platform may set TF_CONFIG on a single
        # VM too, with a 'master' task): its task is not ours to check.
        return cluster
    task = tf_config.get("task")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise bad("with a 'cluster', 'task' must say which of its tasks this process is ('type' and 'index')")
    if task["type"] not in ("chief", "worker"):
        raise bad(f"task type {task['type']!r}: train.py runs 'chief' and 'worker' tasks (MultiWorkerMirrored"
                  "Strategy); no evaluator or parameter server (evaluate checkpoints with a separate command)")
    count = len(cluster.get(task["type"], []))
    try:
        index = int(task["index"])  # as TensorFlow reads it: "1" is 1
    except (TypeError, ValueError):
        index = -1
    if not 0 <= index < count:
        raise bad(f"task index {task['index']!r} is not one of the {count} {task['type']} task(s) of 'cluster'")
    return cluster


def _tf_config_workers() -> int:
    cluster = _tf_config_cluster()
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def resolve_train_precision(precision: str) -> str:
    """``auto`` -> ``mixed_bfloat16`` on a CPU-only machine whose CPU computes
    bfloat16 natively (1.5-1.8x faster steps there, losses within noise of
    float32: bench/README.md), else ``float32``; other values unchanged."""
    if precision != "auto":
        return precision
    chosen = "mixed_bfloat16" if native_bfloat16() else "float32"
    logging.info("train.precision=auto chose %r", chosen)
    return chosen


def _check_devices(devices: list[str]) -> None:
    """``distribute.devices`` must name devices this process has: MirroredStrategy
    waits forever on one that does not exist."""
    have = {(d.device_type.upper(), int(tf.DeviceSpec.from_string(d.name).device_index or 0))
            for d in tf.config.list_logical_devices()}
    for name in devices:
        try:
            spec = tf.DeviceSpec.from_string(name)
        except ValueError as e:
            raise ConfigError(f"config key distribute.devices: {name!r} is not a device name ({e})") from None
        if spec.job is not None:
            continue  # another host's device: that host checks it
        if (str(spec.device_type or "").upper(), int(spec.device_index or 0)) not in have:
            listed = ", ".join(sorted(f"/{kind.lower()}:{index}" for kind, index in have))
            raise ConfigError(
                f"config key distribute.devices: no device {name!r} here (this process has {listed})"
            )


def make_strategy(distribute: ml_collections.ConfigDict) -> tf.distribute.Strategy:
    """The strategy named by ``distribute.strategy``.

    ``auto`` picks, in order: TPU if one is configured or local, a
    ``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` lists several workers
    (it also covers the GPUs of each worker), a ``MirroredStrategy`` when more
    than one GPU is visible, else the default strategy.
    """
    name = distribute.strategy
    devices = [d.strip() for d in distribute.devices.split(",") if d.strip()] or None
    if name == "auto":
        if _tpu_address(distribute.tpu):
            name = "tpu"
        elif _tf_config_workers() > 1:
            name = "multi_worker"
        elif len(tf.config.list_physical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
        logging.info("distribute.strategy=auto chose %r", name)
    if devices and name != "mirrored":
        raise ConfigError(
            f"config key distribute.devices={distribute.devices!r} applies only to distribute.strategy="
            f"'mirrored' (the strategy here is {name!r}{' by auto' if distribute.strategy == 'auto' else ''}): "
            "set distribute.strategy=mirrored, or leave distribute.devices empty"
        )
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if devices:
            _check_devices(devices)
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        tasks = _tf_config_workers()
        if tasks < 2:
            # It would train alone without a word: a mistyped or unset TF_CONFIG.
            raise ConfigError(
                f"config key distribute.strategy='multi_worker' but TF_CONFIG lists {tasks} chief/worker "
                "task(s) (it needs 2 or more: {\"cluster\": {\"worker\": [...]}, \"task\": {...}}); for one "
                "host use distribute.strategy=mirrored or auto"
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    address = _tpu_address(distribute.tpu)
    if address is None:
        raise ConfigError(
            "config key distribute.strategy='tpu' but no TPU found: set distribute.tpu "
            "(or TPU_NAME)"
        )
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=address)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the one process that writes the workdir."""
    return bool(strategy.extended.should_checkpoint)


def num_workers(strategy: tf.distribute.Strategy) -> int:
    """How many hosts (chief + workers) the strategy spans; 1 without a cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return 1
    spec = resolver.cluster_spec()
    return max(1, sum(spec.num_tasks(job) for job in spec.jobs if job in ("chief", "worker")))


def distributed_train_dataset(strategy, data, *, batch_size: int, seed: int, epoch: int, skip: int):
    """One epoch of training batches fed to ``strategy``, after ``skip`` global steps.

    On one host the whole pipeline is split by tf.distribute. On several, each
    host's pipeline reads only its shard of the samples
    (``distribute_datasets_from_function``), so no host decodes the images
    the others train on.
    """
    workers = num_workers(strategy)
    if workers == 1:
        dataset = input_pipeline.train_dataset(data, batch_size=batch_size, seed=seed, epoch=epoch)
        return strategy.experimental_distribute_dataset(dataset.skip(skip))
    logging.info("input: each of %d hosts reads 1 sample in %d (its own shard)", workers, workers)

    def per_host(context: tf.distribute.InputContext) -> tf.data.Dataset:
        local = input_pipeline.train_dataset(data, batch_size=batch_size, seed=seed, epoch=epoch,
                                             input_context=context)
        # Each global step takes one per-replica batch per local replica.
        return local.skip(skip * context.num_replicas_in_sync // context.num_input_pipelines)

    return strategy.distribute_datasets_from_function(per_host)


def _worker_id(strategy) -> str:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return "0"
    return f"{resolver.task_type}_{resolver.task_id}"


# ---------------------------------------------------------------------------
# Model and optimizers.


def build_model(config: ml_collections.ConfigDict) -> CycleGAN:
    """The CycleGAN of ``config.model`` (call inside the strategy scope)."""
    m = config.model
    common = dict(norm=m.norm, init=m.init, init_gain=m.init_gain)
    generator_options = dict(
        common,
        base_filters=m.generator_filters,
        dropout=m.dropout,
        upsample=m.upsample,
    )
    discriminator_options = dict(common, base_filters=m.discriminator_filters)
    if m.discriminator == "n_layers":
        discriminator_options["num_layers"] = m.discriminator_layers
    jit = config.train.jit_compile
    if jit and config.train.deterministic:
        logging.warning("train.jit_compile is off: train.deterministic=True (XLA has no deterministic mode)")
        jit = False
    return CycleGAN(
        generator=m.generator,
        discriminator=m.discriminator,
        generator_options=generator_options,
        discriminator_options=discriminator_options,
        adversarial_loss=m.adversarial_loss,
        lambda_cycle_a=m.lambda_cycle_a,
        lambda_cycle_b=m.lambda_cycle_b,
        lambda_identity=m.lambda_identity,
        pool_size=m.pool_size,
        seed=config.seed,
        jit_compile=jit,
    )


def make_optimizers(config: ml_collections.ConfigDict, steps_per_epoch: int):
    """One Adam for both generators, one for both discriminators, same schedule."""
    o, t = config.optim, config.train

    def adam(name):
        schedule = LinearDecaySchedule(
            o.learning_rate, steps_per_epoch, t.epochs, t.epochs_decay, per_step=o.decay_per_step
        )
        return ReferenceAdam(schedule, beta_1=o.beta_1, beta_2=o.beta_2, epsilon=o.epsilon, name=name)

    return adam("gen_optimizer"), adam("disc_optimizer")


def _check_sizes(model: CycleGAN, config) -> None:
    """Crop and eval sizes the networks can take, named by config key."""
    fixed_crops = config.data.preprocess not in ("none", "scale_width")
    for network in (model.gen_ab, model.disc_a):
        multiple, minimum = networks.input_requirements(network)
        checks = [("data.crop_size", config.data.crop_size)] if fixed_crops else []
        if config.data.eval_size and network is model.gen_ab:
            checks.append(("data.eval_size", config.data.eval_size))
        for key, size in checks:
            if size % multiple or size < minimum:
                raise ConfigError(
                    f"config key {key}={size} does not suit {network.name} "
                    f"({config.model.generator if network is model.gen_ab else config.model.discriminator}): "
                    f"needs a multiple of {multiple} and at least {minimum}"
                )


# ---------------------------------------------------------------------------
# Export and sample sheets.


def export_generators(model: CycleGAN, directory: str | os.PathLike) -> None:
    """Writes ``gen_ab.keras`` and ``gen_ba.keras``; each file appears whole or not at all.

    The files hold float32 generators whatever the training precision: the
    precision to run them in is the user's choice (``infer.py --precision``).
    """
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # Left by a kill during an export (the second name: before gan_style.atomic).
    for stale in [*directory.glob(".*.tmp.gen_*.keras"), *directory.glob(".gen_*.tmp*.keras")]:
        stale.unlink(missing_ok=True)
    # Both files are complete before either replaces its old one, so a kill
    # leaves at most a moment in which the pair is from two steps.
    with atomic.replacing(directory / "gen_ab.keras") as gen_ab, atomic.replacing(directory / "gen_ba.keras") as gen_ba:
        generator_with_precision(model.gen_ab, "float32").save(gen_ab)
        generator_with_precision(model.gen_ba, "float32").save(gen_ba)


def export_checkpoint(workdir: str | os.PathLike, step: int) -> pathlib.Path:
    """Exports the generators of ``workdir/checkpoints/ckpt-<step>`` (float32).

    For picking a checkpoint other than the last (training keeps the last
    ``checkpoint.keep``). Writes ``workdir/export/ckpt-<step>/gen_ab.keras``
    and ``gen_ba.keras`` and returns that folder.

    Raises:
      FileNotFoundError: no config.json or no such checkpoint (names it).
    """
    workdir = pathlib.Path(workdir)
    config_file = workdir / "config.json"
    if not config_file.exists():
        raise FileNotFoundError(f"{config_file} not found: is {str(workdir)!r} a training workdir?")
    prefix = workdir / "checkpoints" / f"ckpt-{int(step)}"
    if not pathlib.Path(f"{prefix}.index").exists():
        kept = sorted(path.stem for path in (workdir / "checkpoints").glob("ckpt-*.index"))
        raise FileNotFoundError(f"checkpoint {prefix} not found; the workdir keeps {', '.join(kept) or 'none'}")
    config = ml_collections.ConfigDict(json.loads(config_file.read_text()))
    model = build_model(config)  # under any policy: export_generators writes float32
    model.build((config.data.crop_size, config.data.crop_size, 3))
    status = tf.train.Checkpoint(gen_ab=model.gen_ab, gen_ba=model.gen_ba).restore(str(prefix))
    status.expect_partial().assert_existing_objects_matched()
    directory = workdir / "export" / f"ckpt-{int(step)}"
    export_generators(model, directory)
    return directory


def _summary_metadata(plugin: str):
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = plugin  # empty content = plugin data version 0
    return metadata


def summary_scalar(name: str, value: float, step: int) -> None:
    """A TensorBoard scalar through ``tf.summary.write`` (works without the
    ``tensorboard`` package, which TF 2.21 no longer installs)."""
    tf.summary.write(
        name, tf.constant(value, tf.float32), step=step, metadata=_summary_metadata("scalars")
    )


def summary_image(name: str, image: np.ndarray, step: int) -> None:
    """A TensorBoard image (float [H, W, 3] in [0, 1]) in the images plugin's format."""
    pixels = tf.convert_to_tensor(np.round(np.asarray(image) * 255).astype(np.uint8))
    png = tf.io.encode_png(pixels)
    tensor = tf.stack([tf.as_string(tf.shape(pixels)[1]), tf.as_string(tf.shape(pixels)[0]), png])
    tf.summary.write(name, tensor, step=step, metadata=_summary_metadata("images"))


def _to_unit(images) -> np.ndarray:
    return np.clip((np.asarray(images, np.float32) + 1.0) / 2.0, 0.0, 1.0)


def sample_sheet(source, translated, reconstructed, gap: int = 2) -> np.ndarray:
    """Rows of ``input | translated | reconstructed`` as one float [H, W, 3] image in [0, 1].

    Each argument is a batch ``[N, H, W, 3]`` or a list of images of any
    sizes; narrower rows are padded with white.
    """
    rows = []
    for images in zip(*([_to_unit(image) for image in group] for group in (source, translated, reconstructed))):
        h = images[0].shape[0]
        spacer = np.ones((h, gap, 3), np.float32)
        rows.append(np.concatenate([images[0], spacer, images[1], spacer, images[2]], axis=1))
    width = max(row.shape[1] for row in rows)
    padded = []
    for row in rows:
        padded.append(np.pad(row, ((0, 0), (0, width - row.shape[1]), (0, 0)), constant_values=1.0))
        padded.append(np.ones((gap, width, 3), np.float32))
    return np.concatenate(padded[:-1], axis=0)


def save_sheet_png(sheet: np.ndarray, path: str | os.PathLike, title: str) -> None:
    """Saves a sheet with a title as PNG through matplotlib's Agg canvas (no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    h, w = sheet.shape[:2]
    dpi = 100
    fig = Figure(figsize=(max(w, 240) / dpi, (h + 30) / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes([0, 0, 1, h / (h + 30)])
    ax.imshow(sheet, interpolation="nearest")
    ax.set_axis_off()
    fig.text(0.5, 1 - 12 / (h + 30), title, ha="center", va="center", fontsize=8)
    with atomic.replacing(path) as temporary:
        fig.savefig(temporary, dpi=dpi)


class SampleSheets(keras.callbacks.Callback):
    """Every ``every_steps`` steps, translation sheets of fixed samples.

    Two sheets (A -> B and B -> A), rows ``input | translated | reconstructed``,
    to TensorBoard (``samples/a2b``, ``samples/b2a``) and as PNG in
    ``samples_dir``. Also made at the end of training. (``train.sample_every_steps=0``
    leaves the callback out: no sheets at all.)
    """

    def __init__(self, samples_a, samples_b, *, every_steps: int, writer, samples_dir, write: bool):
        super().__init__()
        # Batches, or lists of images of different sizes (see _first_images).
        self.samples_a = samples_a if isinstance(samples_a, list) else np.asarray(samples_a)
        self.samples_b = samples_b if isinstance(samples_b, list) else np.asarray(samples_b)
        self.every_steps = every_steps
        self.writer = writer
        self.samples_dir = pathlib.Path(samples_dir)
        self.write = write
        self.last_step = -1
        self.trained = False  # in this session
        self._translate = None

    def _make(self, step: int) -> None:
        if not self.write or step == self.last_step:
            return
        if self._translate is None:
            gen_ab, gen_ba = self.model.gen_ab, self.model.gen_ba

            def round_trip(forward, backward):
                @tf.function(reduce_retracing=True)  # one trace per size, for lists of sizes
                def fn(x):
                    fake = forward(x, training=False)
                    return fake, backward(fake, training=False)

                return fn

            self._translate = round_trip(gen_ab, gen_ba), round_trip(gen_ba, gen_ab)
        (fake_b, rec_a), (fake_a, rec_b) = (
            _there_and_back(fn, images) for fn, images in zip(self._translate, (self.samples_a, self.samples_b))
        )
        self.samples_dir.mkdir(parents=True, exist_ok=True)
        for direction, sheet, title in (
            ("a2b", sample_sheet(self.samples_a, fake_b, rec_a), "A | gen_ab(A) | gen_ba(gen_ab(A))"),
            ("b2a", sample_sheet(self.samples_b, fake_a, rec_b), "B | gen_ba(B) | gen_ab(gen_ba(B))"),
        ):
            with self.writer.as_default():
                summary_image(f"samples/{direction}", sheet, step)
            save_sheet_png(
                sheet, self.samples_dir / f"step_{step:08d}_{direction}.png", f"step {step}: {title}"
            )
        self.last_step = step

    def on_train_begin(self, logs=None):
        self.trained = False

    def on_train_batch_end(self, batch, logs=None):
        self.trained = True
        step = int(logs["step"])
        if self.every_steps and step % self.every_steps == 0:
            self._make(step)

    def on_train_end(self, logs=None):
        # Not after a rerun of a finished run: its sheets are there already.
        if self.trained and logs and "step" in logs:
            self._make(int(logs["step"]))


class ScalarLogger(keras.callbacks.Callback):
    """TensorBoard scalars every ``every_steps`` steps: losses (averaged since the
    last write), ``lr`` and ``images_per_second``.

    The rate counts the time from each step's end to the next one's (input,
    step, saves and sheets within the epoch), not the gap between epochs,
    where the FID/KID evaluation may take minutes: after every evaluation it
    would fall to near zero."""

    def __init__(self, writer, *, every_steps: int, global_batch_size: int):
        super().__init__()
        self.writer = writer
        self.every_steps = every_steps  # 0: off, as for samples and checkpoints
        self.global_batch_size = global_batch_size
        self._sums: dict[str, float] = {}
        self._count = 0
        self._seconds = 0.0
        self._last = None

    def on_epoch_begin(self, epoch, logs=None):
        self._last = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        for name in LOSS_NAMES:
            self._sums[name] = self._sums.get(name, 0.0) + float(logs[name])
        self._count += 1
        now = time.perf_counter()
        self._seconds += now - self._last
        self._last = now
        step = int(logs["step"])
        if not self.every_steps or step % self.every_steps:
            return
        with self.writer.as_default():
            for name, total in self._sums.items():
                summary_scalar(f"train/{name}", total / self._count, step)
            summary_scalar("train/lr", float(logs["lr"]), step)
            summary_scalar(
                "train/images_per_second",
                self._count * self.global_batch_size / max(self._seconds, 1e-9),
                step,
            )
        self.writer.flush()
        self._sums, self._count, self._seconds = {}, 0, 0.0

    def on_epoch_end(self, epoch, logs=None):
        self.writer.flush()


# ---------------------------------------------------------------------------
# Evaluation during training.


def inception_feature_fn(weights_path: str = "", batch_size: int = 25) -> Callable:
    """``images in [-1, 1] -> [N, 2048]`` TF-FID InceptionV3 pool3 features."""
    from gan_style import metrics

    inception = metrics.load_inception(weights_path or None)

    def features(images):
        if isinstance(images, list):  # images of different sizes: each is resized to 299
            pixels = [(np.asarray(image, np.float32) + 1.0) * 127.5 for image in images]
        else:
            pixels = (np.asarray(images, np.float32) + 1.0) * 127.5
        return metrics.compute_features(inception, pixels, batch_size=batch_size)

    return features


class Evaluation(keras.callbacks.Callback):
    """FID/KID of ``gen_ab(testA)`` vs testB and ``gen_ba(testB)`` vs testA.

    Every ``every_epochs`` epochs: translates the test images, scores them
    with ``feature_fn`` (images in [-1, 1] -> ``[N, d]`` features; the
    TF-FID InceptionV3 by default, see :func:`inception_feature_fn`), logs
    ``eval/fid_ab``, ``eval/fid_ba``, ``eval/kid_ab``, ``eval/kid_ba`` to
    TensorBoard and the epoch logs, and when ``best_metric`` improves saves
    ``on_best(scores)`` (the training loop keeps a best checkpoint and export).

    Args:
      feature_fn: features of a batch of images in [-1, 1] (or of a list of
        images of different sizes, when the test sets are lists).
      test_a, test_b: arrays ``[N, H, W, 3]`` in [-1, 1], or lists of
        ``[H, W, 3]`` images of different sizes (``data.eval_size=0``).
      every_epochs: evaluate after every this many epochs.
      writer: a ``tf.summary`` writer.
      best_metric: ``fid_ab``, ``fid_ba`` or ``fid_mean`` (lower is better).
      best_score: the best score so far (from a resumed run), or None.
      on_best: called with the scores dict when ``best_metric`` improves.
      batch_size: translation batch size.
      kid_subset_size: images per KID subset (clipped to the set sizes).
    """

    def __init__(
        self,
        feature_fn: Callable,
        test_a,
        test_b,
        *,
        every_epochs: int,
        writer,
        best_metric: str = "fid_ab",
        best_score: float | None = None,
        on_best: Callable[[dict], None] | None = None,
        batch_size: int = 8,
        kid_subset_size: int = 1000,
    ):
        super().__init__()
        if best_metric not in BEST_METRICS:
            raise ValueError(f"best_metric must be one of {BEST_METRICS}, got {best_metric!r}")
        self.feature_fn = feature_fn
        # Arrays, or lists of images of different sizes (data.eval_size=0).
        self.test_a = test_a if isinstance(test_a, list) else np.asarray(test_a, np.float32)
        self.test_b = test_b if isinstance(test_b, list) else np.asarray(test_b, np.float32)
        self.every_epochs = every_epochs
        self.writer = writer
        self.best_metric = best_metric
        self.best_score = best_score
        self.on_best = on_best
        self.batch_size = batch_size
        self.kid_subset_size = kid_subset_size
        self._real = None
        self._translate = {}

    def _translated(self, name: str, images) -> np.ndarray | list[np.ndarray]:
        if name not in self._translate:
            generator = getattr(self.model, name)
            self._translate[name] = tf.function(lambda x: generator(x, training=False), reduce_retracing=True)
        if isinstance(images, list):  # sizes differ: one by one
            return [self._translate[name](tf.convert_to_tensor(image[None])).numpy()[0] for image in images]
        out = [
            self._translate[name](tf.convert_to_tensor(images[i : i + self.batch_size])).numpy()
            for i in range(0, len(images), self.batch_size)
        ]
        return np.concatenate(out)

    def evaluate(self) -> dict[str, float]:
        """Scores of the current generators (no logging)."""
        from gan_style import metrics

        if self._real is None:  # the real sets never change
            self._real = self.feature_fn(self.test_a), self.feature_fn(self.test_b)
        real_a, real_b = self._real
        scores = {}
        for direction, name, real, test in (("ab", "gen_ab", real_b, self.test_a),
                                             ("ba", "gen_ba", real_a, self.test_b)):
            translated = self._translated(name, test)
            # A diverged generator: scored NaN, not a crash. The images are
            # checked, not the features: Inception turns NaN pixels into finite ones.
            if not all(np.all(np.isfinite(image)) for image in translated):
                logging.warning("%s translates to NaN or Inf: its FID and KID are NaN", name)
                scores[f"fid_{direction}"] = scores[f"kid_{direction}"] = math.nan
                continue
            fake = self.feature_fn(translated)
            scores[f"fid_{direction}"] = metrics.fid_from_features(real, fake)
            scores[f"kid_{direction}"] = metrics.kid_from_features(
                real, fake, subset_size=self.kid_subset_size)[0]
        scores = {key: scores[key] for key in ("fid_ab", "fid_ba", "kid_ab", "kid_ba")}
        scores["fid_mean"] = (scores["fid_ab"] + scores["fid_ba"]) / 2
        return scores

    def on_epoch_end(self, epoch, logs=None):
        if not self.every_epochs or (epoch + 1) % self.every_epochs:
            return
        scores = self.evaluate()
        step = int(logs["step"]) if logs and "step" in logs else epoch + 1
        with self.writer.as_default():
            for name, value in scores.items():
                summary_scalar(f"eval/{name}", value, step)
        self.writer.flush()
        logging.info(
            "epoch %d: %s", epoch + 1, ", ".join(f"{k} {v:.4g}" for k, v in scores.items())
        )
        if logs is not None:
            logs.update({f"eval_{k}": v for k, v in scores.items()})
        score = scores[self.best_metric]
        if not math.isfinite(score):
            logging.warning("%s is %s at epoch %d: not a best model", self.best_metric, score, epoch + 1)
        elif self.best_score is None or score < self.best_score:
            self.best_score = score
            if self.on_best is not None:
                self.on_best({**scores, "epoch": epoch + 1, "step": step})


def _first_images(dataset, count: int) -> np.ndarray | list[np.ndarray]:
    """The first ``count`` images (0: all): one array, or a list of ``[H, W, 3]``
    arrays when their sizes differ (``data.eval_size=0`` keeps native sizes)."""
    chunks, total = [], 0
    for batch in dataset:
        images = batch[0] if isinstance(batch, tuple) else batch
        chunks.append(images.numpy())
        total += len(chunks[-1])
        if count and total >= count:
            break
    if not chunks:
        return np.zeros((0, 1, 1, 3), np.float32)
    if len({chunk.shape[1:] for chunk in chunks}) > 1:
        images = [image for chunk in chunks for image in chunk]
    else:
        images = np.concatenate(chunks)
    return images[:count] if count else images


def _there_and_back(fn: Callable, images):
    """``(translated, reconstructed)`` from ``fn`` (a batch -> both), over a
    batch array, or image by image over a list of images of different sizes."""
    if isinstance(images, list):
        pairs = [fn(tf.convert_to_tensor(image[None])) for image in images]
        return [fake[0].numpy() for fake, _ in pairs], [rec[0].numpy() for _, rec in pairs]
    fake, rec = fn(tf.convert_to_tensor(images))
    return fake.numpy(), rec.numpy()


# ---------------------------------------------------------------------------
# The loop.


class _Counters(tf.Module):
    """Where the run stands: global step, epoch, batches done in that epoch."""

    def __init__(self):
        super().__init__(name="counters")
        kw = dict(trainable=False, dtype=tf.int64, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.step = tf.Variable(0, name="step", **kw)
        self.epoch = tf.Variable(0, name="epoch", **kw)
        self.step_in_epoch = tf.Variable(0, name="step_in_epoch", **kw)


# Keys a checkpoint cannot follow when they change: they shape its variables
# (networks; the image pools hold crops) or give its counters another meaning
# (the batch size: batches done in the epoch, the learning-rate schedule's steps).
RESUME_FIXED_KEYS = (
    "model.generator", "model.generator_filters", "model.discriminator", "model.discriminator_filters",
    "model.discriminator_layers", "model.norm", "model.upsample", "model.pool_size",
    "data.crop_size", "train.batch_size",
)


def check_resume(previous: dict, config: ml_collections.ConfigDict) -> dict[str, list]:
    """The keys that differ from the run's ``config.json``, as ``{key: [old, new]}``.

    Raises:
      ConfigError: a change the checkpoint cannot follow (:data:`RESUME_FIXED_KEYS`,
        or a switch into or out of ``mixed_float16``, whose loss-scale optimizer
        holds other variables), naming the key and both values.
    """
    old, new = _flatten(previous), _flatten(config)
    # A key the run's config.json lacks is new since it started (optim.epsilon,
    # say): logged with None as its old value; the checkpoint followed its default.
    changed = {key: [old.get(key), new[key]] for key in sorted(new) if key not in old or old[key] != new[key]}
    for key in RESUME_FIXED_KEYS:
        if key in changed and key in old:
            before, after = changed[key]
            raise ConfigError(
                f"config key {key}={after!r} differs from the run being resumed ({before!r} in "
                "config.json): its checkpoint cannot take that change. Keep the old value, "
                "or start a new --workdir"
            )
    before, after = changed.get("train.precision", [None, None])
    if (before == "mixed_float16") != (after == "mixed_float16") and before is not None:
        raise ConfigError(
            f"config key train.precision={after!r} differs from the run being resumed ({before!r}): "
            "mixed_float16 checkpoints hold loss-scale variables the others do not. Keep the old "
            "value, or start a new --workdir"
        )
    return changed


def _damage(path: str) -> str | None:
    """Why the checkpoint at ``path`` cannot be restored (missing files, a
    truncated or corrupt index or data file), or None when every tensor reads.

    Reads the whole checkpoint once: a file cut short by a full disk or a
    partial copy shows only when the tensors past the cut are read.
    """
    if not (tf.io.gfile.exists(path + ".index") and tf.io.gfile.glob(path + ".data-*")):
        return "its files are gone"
    try:
        reader = tf.train.load_checkpoint(path)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except (tf.errors.OpError, ValueError, IndexError, OSError) as error:
        return f"it does not read: {str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__}"
    return None


def _set_aside_unreadable_state(checkpoint_dir: pathlib.Path) -> None:
    """Moves a ``checkpoint`` state file that does not parse to
    ``checkpoint.unreadable``: tf.train.CheckpointManager would stop on it,
    and :func:`resume_checkpoint` has already passed over it."""
    state = checkpoint_dir / "checkpoint"
    try:
        tf.train.get_checkpoint_state(str(checkpoint_dir))
    except (ValueError, tf.errors.OpError):
        os.replace(state, state.with_name("checkpoint.unreadable"))
        logging.warning("moved the unreadable %s aside to checkpoint.unreadable", state)


def resume_checkpoint(checkpoint_dir: pathlib.Path) -> str | None:
    """The checkpoint a run in ``checkpoint_dir`` resumes from, None for a new run.

    The ``checkpoint`` state file is rewritten (atomically) only after a
    checkpoint's files are complete, so a save killed half way leaves the one
    before as the latest. When the newest one it lists has lost its files or
    does not read (a file cut short by a full disk or a partial copy), the
    newest one before it that reads is taken, with a warning.

    Without a usable state file (a first save cut short, the file deleted or
    emptied), the newest checkpoint that reads is taken.

    Raises:
      ConfigError: the state file lists checkpoints none of which reads:
        starting afresh would pass for a resume.
    """
    try:
        state = tf.train.get_checkpoint_state(str(checkpoint_dir))
    except (ValueError, tf.errors.OpError) as error:  # an empty or garbled state file
        logging.warning("%s: its 'checkpoint' state file does not read (%s); looking for the newest "
                        "checkpoint that does", checkpoint_dir, str(error).splitlines()[0] if str(error) else error)
        state = None
    if state is None:
        # No state file: the first save was cut short before it wrote one, or
        # it was deleted. The newest checkpoint that reads is taken.
        numbered = []
        for index in checkpoint_dir.glob("ckpt-*.index"):
            number = index.name.removesuffix(".index").removeprefix("ckpt-")
            if number.isdigit():
                numbered.append((int(number), str(index.with_suffix(""))))
        for _, path in sorted(numbered, reverse=True):
            if _damage(path) is not None:
                continue
            logging.warning("%s has no usable 'checkpoint' state file: resuming from %s, the newest checkpoint "
                            "that reads", checkpoint_dir, path)
            return path
        if numbered:
            logging.warning("%s holds no checkpoint that reads: starting afresh", checkpoint_dir)
        return None
    listed = list(state.all_model_checkpoint_paths) or [state.model_checkpoint_path]
    problems = []
    for path in reversed(listed):
        problem = _damage(path)
        if problem is None:
            if problems:
                logging.warning("%s: resuming from %s", "; ".join(problems), path)
            return path
        problems.append(f"{os.path.basename(path)} is unusable ({problem})")
    raise ConfigError(
        f"{checkpoint_dir / 'checkpoint'} lists {', '.join(os.path.basename(p) for p in listed)}, but none of "
        f"them can be restored: {'; '.join(problems)}. Restore their files, or start a new --workdir"
    )


def _check_epoch_size(counters, recorded: int, steps_per_epoch: int, latest: str) -> None:
    """Refuses a resume whose epoch has another number of steps than before:
    the learning-rate schedule counts epochs in steps, the loop in epochs.

    ``recorded`` is the epoch size the checkpoint was saved with; 0 for a
    checkpoint from before it was saved, whose size is then worked out from
    its counters (possible only past the first epoch).
    """
    step, epoch, into = (int(v.numpy()) for v in (counters.step, counters.epoch, counters.step_in_epoch))
    before = recorded or ((step - into) // epoch if epoch else steps_per_epoch)
    if before != steps_per_epoch:
        raise ConfigError(
            f"the training set changed size since {latest}: it trained with epochs of {before} "
            f"steps, and now an epoch is {steps_per_epoch} steps (the larger training domain's images over "
            "train.batch_size). The learning-rate schedule would no longer match the epochs. Restore the "
            f"training data, or set data.max_images so the larger domain has {before} x train.batch_size "
            "images, or start a new --workdir"
        )


def _batches(dataset, data, batch_size: int):
    """``dataset``'s batches; a batch of images of different sizes (which
    ``scale_width``/``none`` keep) is a ConfigError naming the keys, not a
    tf.data shape error."""
    iterator = iter(dataset)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except tf.errors.InvalidArgumentError as e:
            if "Cannot batch tensors with different shapes" not in str(e):
                raise
            raise ConfigError(
                f"data.preprocess={data.preprocess!r} keeps each training image's own size, and "
                f"train.batch_size={batch_size} put images of different sizes in one batch: use "
                "train.batch_size=1, or a preprocess that crops to data.crop_size (resize_and_crop, crop, "
                "scale_width_and_crop)"
            ) from None
        yield batch


def _atomic_write_text(path: pathlib.Path, text: str) -> None:
    with atomic.replacing(path) as temporary:
        temporary.write_text(text)


class _StopOnSignal:
    """While training, SIGINT and SIGTERM only ask the loop to stop after the
    current step (with a checkpoint); the handlers that were there before come
    back at once, so a second signal interrupts or terminates as usual. A
    signal ignored on purpose (a background job's SIGINT) stays ignored.

    Python runs a handler only once the main thread is back in Python, so a
    step blocked inside TensorFlow (a collective waiting for a dead peer) would
    never see the first signal nor let a second one through. A watcher thread
    reads the signal numbers that Python's C-level handler writes to a wakeup
    pipe: it reports the first at once and ends the process on the second.
    Handlers can only be set from the main thread: elsewhere this does nothing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}
        self._pipe: tuple[int, int] | None = None
        self._previous_wakeup = -1
        self._watcher: threading.Thread | None = None
        self._closing = False

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self
        for signum in self.SIGNALS:
            if signal.getsignal(signum) is not signal.SIG_IGN:
                self._previous[signum] = signal.signal(signum, self._request)
        if self._previous:
            try:
                read_fd, write_fd = os.pipe()
                os.set_blocking(write_fd, False)
                self._previous_wakeup = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
            except (OSError, ValueError):  # no wakeup pipe here (Windows): handlers only
                return self
            self._pipe = (read_fd, write_fd)
            self._watcher = threading.Thread(target=self._watch, args=(read_fd,), daemon=True,
                                             name="gan_style-signal-watcher")
            self._watcher.start()
        return self

    def _watch(self, read_fd: int) -> None:
        seen = 0
        while True:
            data = os.read(read_fd, 64)
            for signum in (byte for byte in data if byte in self.SIGNALS):
                seen += 1
                name = signal.Signals(signum).name
                if seen == 1:
                    logging.warning("%s: stopping after this step with a checkpoint; send it again "
                                    "to stop at once", name)
                else:  # the main thread has not let the first one through: stop here
                    os.write(2, f"{name} again: stopping at once, without a checkpoint\n".encode())
                    os._exit(128 + signum)
            if not data or self._closing:
                return

    def _request(self, signum, frame):
        self.signum = signum
        self._restore()  # in the main thread, as signal.signal requires

    def _restore(self):
        previous, self._previous = self._previous, {}  # a signal during this loop finds it empty
        for signum, handler in previous.items():
            # None: a handler not set from Python (the default one, for our purposes).
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        if self._pipe is not None and not self._closing:
            signal.set_wakeup_fd(self._previous_wakeup)
            self._closing = True
            with contextlib.suppress(OSError):
                os.write(self._pipe[1], b"\0")  # wakes the watcher to end

    def __exit__(self, *exc):
        self._restore()
        if self._pipe is not None:
            self._watcher.join(timeout=5)
            for fd in self._pipe:
                os.close(fd)
            self._pipe = None
        return False


def _any_worker_stopping(strategy) -> Callable[[bool], bool]:
    """Whether any worker was asked to stop. Saving takes every worker (its
    collectives), so all must stop at the same step: with several workers
    this is an all-reduce of one number per step. (A TPU pod has one client
    process, which gets the signal: no agreement needed.)"""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or num_workers(strategy) <= 1:
        return bool

    @tf.function
    def agree(flag):
        per_replica = strategy.run(lambda: tf.identity(flag))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None) > 0

    return lambda requested: bool(agree(tf.constant(1.0 if requested else 0.0)))


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    *,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    feature_fn: Callable | None = None,
) -> dict[str, float]:
    """Trains (or resumes training) a CycleGAN as ``config`` says, in ``workdir``.

    Args:
      config: a config like ``configs/default.py``'s.
      workdir: output directory; an existing run there is resumed.
      callbacks: extra Keras callbacks; ``logs`` carry every loss, ``lr`` and
        ``step`` (the global step after the update).
      feature_fn: for evaluation (``config.eval.every_epochs > 0``): images in
        [-1, 1] -> features; defaults to the TF-FID InceptionV3 with
        ``config.eval.inception_weights``.

    Returns:
      The last step's logs (losses, lr, step).

    Raises:
      ConfigError: a bad config key or value, before any work.
      FloatingPointError: a loss became NaN/Inf (names the step).
      TrainingStopped: SIGINT or SIGTERM arrived; the last step is checkpointed.
    """
    if not os.fspath(workdir).strip():  # an unset $WORKDIR: pathlib would make it the current directory
        raise ConfigError("--workdir is empty: give the run's directory (an unset shell variable?)")
    validate_config(config)
    config = resolve_data_paths(config)
    # Before the workdir exists: data that cannot make one batch, or a domain
    # none of whose images decodes.
    steps_per_epoch = input_pipeline.steps_per_epoch(config.data, config.train.batch_size)
    input_pipeline.check_decodable(config.data)
    # config.json records what ran: auto resolved to a policy.
    config.train.precision = resolve_train_precision(config.train.precision)
    workdir = pathlib.Path(workdir).absolute()
    if workdir.exists() and not workdir.is_dir():
        raise ConfigError(f"--workdir {workdir} is a file, not a folder")

    strategy = make_strategy(config.distribute)
    chief = is_chief(strategy)
    if config.train.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(config.seed)
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(config.train.precision)
    try:
        with _workdir_lock(workdir, chief), _StopOnSignal() as stop_signal:
            return _train(config, workdir, strategy, chief, callbacks, feature_fn, steps_per_epoch,
                          stop_signal)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


@contextlib.contextmanager
def _workdir_lock(workdir: pathlib.Path, chief: bool):
    """Holds ``workdir/.lock`` while training: a second run started into the same
    workdir (same checkpoint numbers, same exports) stops at once instead of
    racing the first."""
    if not chief:  # other workers write elsewhere
        yield
        return
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--workdir {workdir}: cannot create it ({e.strerror or e})") from None

    def busy(holder):
        return ConfigError(f"--workdir {workdir} is in use by another training run ({holder}); "
                           "wait for it or use another workdir")

    with run_lock.held(workdir / ".lock", busy):
        yield


def _train(config, workdir, strategy, chief, extra_callbacks, feature_fn, steps_per_epoch, stop_signal):
    data, train = config.data, config.train
    batch_size = train.batch_size
    if batch_size % strategy.num_replicas_in_sync:
        raise ConfigError(
            f"config key train.batch_size={batch_size} must be a multiple of the "
            f"{strategy.num_replicas_in_sync} replicas (it is the global batch size)"
        )
    total_epochs = train.epochs + train.epochs_decay
    image_shape = (data.crop_size, data.crop_size, 3)

    changed = {}
    checkpoint_dir = workdir / "checkpoints"
    latest = resume_checkpoint(checkpoint_dir)
    recorded_config = workdir / "config.json"
    if latest and recorded_config.exists():
        try:
            trained_with = json.loads(recorded_config.read_text(encoding="utf-8"))
        except (ValueError, OSError) as e:  # a hand edit: the run writes it whole
            raise ConfigError(
                f"{recorded_config} cannot be read ({e}): it records the config {latest} was trained "
                "with, checked at every resume; restore it, or remove it to resume unchecked"
            ) from None
        changed = check_resume(trained_with, config)
    with strategy.scope():
        model = build_model(config)
        _check_sizes(model, config)
        model.build(image_shape)
        model.compile(*make_optimizers(config, steps_per_epoch))
        counters = _Counters()
        # The epoch size the checkpoint was trained with: a resume on a training
        # set of another size is refused even in the first epoch, where the
        # counters cannot tell (restored apart: older checkpoints lack it).
        epoch_size = tf.Variable(steps_per_epoch, trainable=False, dtype=tf.int64, name="epoch_size",
                                 aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

    items = model.checkpoint_items()
    checkpoint = tf.train.Checkpoint(**items, counters=counters, epoch_size=epoch_size)
    # Other workers save their copies (collective saves need every worker)
    # into a folder of their own, removed when training ends.
    worker_dir = workdir / f"tmp_{_worker_id(strategy)}"
    own_dir = checkpoint_dir if chief else worker_dir / "checkpoints"
    if chief and checkpoint_dir.is_dir():
        _set_aside_unreadable_state(checkpoint_dir)
    manager = tf.train.CheckpointManager(
        checkpoint, str(own_dir), max_to_keep=config.checkpoint.keep, step_counter=counters.step
    )
    # Every worker restores the chief's latest checkpoint.
    if latest:
        try:
            # Dropout's seed states and the epoch size are restored apart: a
            # checkpoint written without them (dropout switched on at resume,
            # or an older run) still fits; the masks then start afresh.
            seeds = items.pop("dropout_seeds", None)
            restorer = tf.train.Checkpoint(**items, counters=counters)
            # expect_partial: TF would warn that those were left out.
            restorer.restore(latest).assert_existing_objects_matched().expect_partial()
            checkpoint.save_counter.assign(restorer.save_counter)  # the saving object's own count
            saved = {name.split("/", 1)[0] for name, _ in tf.train.list_variables(latest)}

            def restore_if_saved(name, value) -> bool:
                if name in saved:
                    tf.train.Checkpoint(**{name: value}).restore(latest).expect_partial()
                return name in saved

            if seeds is not None and not restore_if_saved("dropout_seeds", seeds):
                logging.warning("%s holds no dropout seed states: dropout masks start afresh", latest)
            recorded = int(epoch_size.numpy()) if restore_if_saved("epoch_size", epoch_size) else 0
        except (ValueError, AssertionError, tf.errors.OpError) as e:
            first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            where = (f"{recorded_config} holds the config it was trained with" if recorded_config.exists()
                     else f"the config it was trained with is not recorded (no {recorded_config})")
            raise ConfigError(f"the checkpoint {latest} does not fit this config ({first_line}); {where}") from e
        logging.info(
            "Resumed from %s: step %d, epoch %d (+%d steps)", latest,
            int(counters.step.numpy()), int(counters.epoch.numpy()),
            int(counters.step_in_epoch.numpy()),
        )
        _check_epoch_size(counters, recorded, steps_per_epoch, latest)
        epoch_size.assign(steps_per_epoch)

    if chief:
        workdir.mkdir(parents=True, exist_ok=True)
        if changed:  # what a resumed run changed, and from which step on
            record = {"step": int(counters.step.numpy()), "changed": changed,
                      "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            with open(workdir / "config_history.jsonl", "a") as f:
                f.write(json.dumps(record, default=str) + "\n")
            logging.info("Config changed on resume: %s", changed)
        _atomic_write_text(workdir / "config.json", config.to_json_best_effort(indent=2, sort_keys=True))
        writer = tf.summary.create_file_writer(str(workdir / "tensorboard"))
    else:
        writer = tf.summary.create_noop_writer()

    def save_checkpoint():
        manager.save(checkpoint_number=int(counters.step.numpy()))
        if chief:
            export_generators(model, workdir / "export")

    stopping = _any_worker_stopping(strategy)

    callback_list = [ScalarLogger(writer, every_steps=train.log_every_steps, global_batch_size=batch_size)]
    if train.sample_every_steps:  # 0 = off: no sheets, not even at the end
        # Fixed samples: the first test images (the first training batch without a test split).
        num = train.num_samples
        samples = [_sample_images(data, domain, num, batch_size, config.seed) for domain in ("a", "b")]
        callback_list.append(SampleSheets(
            samples[0], samples[1], every_steps=train.sample_every_steps, writer=writer,
            samples_dir=workdir / "samples", write=chief,
        ))
    if config.eval.every_epochs:
        callback_list.append(
            _make_evaluation(config, workdir, model, checkpoint, writer, chief, feature_fn, worker_dir)
        )
    callback_list.extend(extra_callbacks)
    callbacks = keras.callbacks.CallbackList(
        callback_list, add_history=False, add_progbar=False, model=model,
        epochs=total_epochs, steps=steps_per_epoch, verbose=0,
    )

    distributed_step = model.make_distributed_step(strategy, batch_size)
    step = int(counters.step.numpy())
    max_steps = train.max_steps or total_epochs * steps_per_epoch
    logs: dict[str, float] = {"step": step}
    callbacks.on_train_begin(logs)
    stop = step >= max_steps
    if stop or int(counters.epoch.numpy()) >= total_epochs:  # a finished run, or a schedule shrunk below it
        logging.warning("Nothing to train: the run is at step %d (%d epoch(s) done), and the config ends at step %d "
                        "(train.max_steps, or train.epochs + train.epochs_decay = %d epochs of %d steps)",
                        step, int(counters.epoch.numpy()), max_steps, total_epochs, steps_per_epoch)
    signalled = False
    while not stop and int(counters.epoch.numpy()) < total_epochs:
        epoch = int(counters.epoch.numpy())
        done = int(counters.step_in_epoch.numpy())
        dataset = distributed_train_dataset(strategy, data, batch_size=batch_size, seed=config.seed,
                                            epoch=epoch, skip=done)
        progbar = keras.utils.Progbar(
            steps_per_epoch, verbose=1 if (chief and train.progress) else 0,
            stateful_metrics=["lr"], unit_name="step",
        )
        if chief and train.progress:
            print(f"Epoch {epoch + 1}/{total_epochs}", flush=True)
        callbacks.on_epoch_begin(epoch)
        epoch_sums = {name: 0.0 for name in LOSS_NAMES}
        epoch_count = 0
        for batch in _batches(dataset, data, batch_size):
            callbacks.on_train_batch_begin(done)
            # The rate this step uses (the schedule reads the optimizer's step count).
            lr = float(keras.ops.convert_to_numpy(model.gen_optimizer.learning_rate))
            losses = {name: float(value) for name, value in distributed_step(batch).items()}
            step += 1
            done += 1
            bad = [name for name, value in losses.items() if not math.isfinite(value)]
            if bad:
                raise FloatingPointError(
                    f"{bad[0]} is {losses[bad[0]]} at step {step} (epoch {epoch + 1}, batch "
                    f"{done}); stopped without saving. The last good checkpoint is "
                    f"{manager.latest_checkpoint or 'none (no checkpoint was saved yet)'}"
                )
            counters.step.assign(step)
            counters.step_in_epoch.assign(done)
            logs = {**losses, "lr": lr, "step": step}
            progbar.update(done, [(k, v) for k, v in logs.items() if k != "step"])
            for name in LOSS_NAMES:
                epoch_sums[name] += losses[name]
            epoch_count += 1
            callbacks.on_train_batch_end(done - 1, logs)
            if step >= max_steps:
                stop = True
            # Every worker calls stopping() each step: with several it is a collective.
            if stopping(stop_signal.signum is not None) and not stop and done < steps_per_epoch:
                signalled = stop = True  # saved below (an epoch's last step: by the epoch end)
            if (
                config.checkpoint.every_steps
                and step % config.checkpoint.every_steps == 0
                and not stop
                and done < steps_per_epoch  # the epoch-end save follows
            ):
                save_checkpoint()
            if stop:
                break
        if done >= steps_per_epoch:
            counters.epoch.assign(epoch + 1)
            counters.step_in_epoch.assign(0)
            epoch_logs = {name: total / max(epoch_count, 1) for name, total in epoch_sums.items()}
            epoch_logs.update(lr=logs.get("lr", 0.0), step=step)
            save_checkpoint()  # first: an evaluation that fails loses no training
            callbacks.on_epoch_end(epoch, epoch_logs)
        else:
            save_checkpoint()
        # (Not after the last epoch: that run is finished, not stopped.)
        if not stop and int(counters.epoch.numpy()) < total_epochs and stopping(stop_signal.signum is not None):
            signalled = stop = True  # during the epoch's last step or its evaluation
    if not signalled:  # a stopped run is not over: the same command resumes it
        callbacks.on_train_end(logs)
    writer.flush()
    if not chief:
        shutil.rmtree(worker_dir, ignore_errors=True)
    if signalled:
        name = signal.Signals(stop_signal.signum).name if stop_signal.signum else "another worker's signal"
        saved = manager.latest_checkpoint if chief else f"{checkpoint_dir / f'ckpt-{step}'} (the chief's)"
        raise TrainingStopped(
            f"stopped by {name} at step {step} (epoch {int(counters.epoch.numpy()) + 1}, "
            f"{int(counters.step_in_epoch.numpy())} steps in); checkpoint {saved}; "
            "run the same command again to resume",
            stop_signal.signum or signal.SIGTERM,
        )
    return logs


def _make_evaluation(config, workdir, model, checkpoint, writer, chief, feature_fn, worker_dir):
    """The FID/KID callback with a best checkpoint in checkpoints/best and export/best."""
    data = config.data
    for domain in ("a", "b"):
        if not _has_test_split(data, domain):
            raise ConfigError(
                f"config key eval.every_epochs > 0 needs test images: set data.test_{domain} "
                "(or data.root with testA/, testB/)"
            )
    count = config.eval.num_images
    test_a = _first_images(input_pipeline.eval_dataset(data, "a", batch_size=8), count)
    test_b = _first_images(input_pipeline.eval_dataset(data, "b", batch_size=8), count)
    for domain, images in (("a", test_a), ("b", test_b)):
        if len(images) < 2:  # found now, not at the first epoch's end
            raise ConfigError(
                f"config key eval.every_epochs > 0 needs at least 2 test images in domain "
                f"{domain.upper()} for FID/KID; {len(images)} could be read from data.test_{domain} "
                f"(or data.root's test{domain.upper()}/)"
            )
    if feature_fn is None:
        try:
            feature_fn = inception_feature_fn(config.eval.inception_weights)
        except (FileNotFoundError, ValueError) as error:
            raise ConfigError(f"config key eval.every_epochs > 0 scores with Inception "
                              f"(eval.inception_weights={config.eval.inception_weights!r}): {error}") from None
    best_dir = workdir / "export" / "best"
    scores_file = best_dir / "scores.json"
    best_score = None
    if scores_file.exists():
        best_score = json.loads(scores_file.read_text())[config.eval.best_metric]
    best_manager = tf.train.CheckpointManager(
        checkpoint,
        str(workdir / "checkpoints" / "best" if chief else worker_dir / "best"),
        max_to_keep=1,
    )

    def on_best(scores):
        best_manager.save(checkpoint_number=scores["step"])
        if chief:
            export_generators(model, best_dir)
            _atomic_write_text(scores_file, json.dumps(scores, indent=2, sort_keys=True))

    return Evaluation(
        feature_fn, test_a, test_b, every_epochs=config.eval.every_epochs, writer=writer,
        best_metric=config.eval.best_metric, best_score=best_score, on_best=on_best,
    )
