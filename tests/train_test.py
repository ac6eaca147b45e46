"""train.py and train_and_evaluate in subprocesses: end to end, exact resume after
SIGKILL, and two MultiWorkerMirroredStrategy workers on loopback ports."""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import textwrap

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

import gan_style  # noqa: F401  (registers the custom layers for load_model)

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
# Smoke config overrides shared by the runs compared here.
OVERRIDES = {
    "train.deterministic": True,  # exact resume needs deterministic kernels (and no XLA)
    "train.progress": False,
    "model.lambda_identity": 0.0,  # fewer passes: faster tracing, same code paths
}

# A child that trains with the smoke config and sends itself a signal (SIGKILL
# unless argv[5] names another) at the start of a chosen step, after the
# previous step's checkpoint, if any, was written. It dumps the weights after
# every step, so the file holds the last trained ones however the run ends.
CHILD = textwrap.dedent(
    """
    import json, os, signal, sys
    import keras, numpy as np
    from absl import logging
    from configs import smoke
    from gan_style import training

    logging.set_verbosity(logging.INFO)
    # SIGINT as a terminal has it (a background job inherits it ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)

    workdir, overrides, kill_at, dump = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    signum = getattr(signal, sys.argv[5]) if len(sys.argv) > 5 else signal.SIGKILL
    config = smoke.get_config()
    for key, value in overrides.items():
        section, name = key.split(".")
        config[section][name] = value

    class Kill(keras.callbacks.Callback):
        step = 0
        def on_train_batch_end(self, batch, logs=None):
            self.step = logs["step"]
        def on_train_batch_begin(self, batch, logs=None):
            if self.step + 1 == kill_at:
                os.kill(os.getpid(), signum)

    class Dump(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if dump:
                m = self.model
                np.savez(dump, *[v.numpy() for v in m.generator_variables + m.discriminator_variables])

    try:
        # Channel means for "Inception" features: scores without the weights.
        training.train_and_evaluate(config, workdir, callbacks=[Kill(), Dump()],
                                    feature_fn=lambda images: np.asarray(images, np.float32).mean(axis=(1, 2)))
    except training.TrainingStopped as stopped:
        print(stopped, flush=True)
        sys.exit(128 + stopped.signum)
    """
)


def _flags(overrides):
    return [f"--config.{key}={value}" for key, value in overrides.items()]


def _checkpoint_tensors(workdir):
    path = tf.train.latest_checkpoint(str(workdir / "checkpoints"))
    reader = tf.train.load_checkpoint(path)
    return path, {
        name: reader.get_tensor(name)
        for name, _ in tf.train.list_variables(path)
        if name.endswith("VARIABLE_VALUE")
    }


def _events(workdir):
    tags = set()
    for f in (workdir / "tensorboard").iterdir():
        for event in tf.compat.v1.train.summary_iterator(str(f)):
            tags.update(v.tag for v in event.summary.value)
    return tags


def test_train_py_end_to_end_and_exact_resume_after_sigkill(tmp_path, shared_data):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    command = [sys.executable, str(ROOT / "train.py"), "--config=configs/smoke.py"]
    # With dropout on: Keras leaves Dropout's seed states out of a model's
    # checkpoint, so a resume drew the masks of step 1 again unless the run
    # checkpoints them itself.
    overrides = {**OVERRIDES, "model.dropout": 0.5}
    # 2 epochs x 2 steps, a checkpoint after every step. Run 1 trains straight
    # through with train.py; run 2 is SIGKILLed as step 4 begins, mid epoch 2.
    # Run 3 checkpoints only at epoch ends and gets SIGINT (Ctrl-C) as step 3
    # begins: it finishes that step, checkpoints it and stops.
    interrupted = tmp_path / "interrupted"
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    epoch_saves = {**overrides, "checkpoint.every_steps": 0}
    runs = [
        subprocess.Popen(command + [f"--workdir={straight}"] + _flags(overrides), cwd=ROOT,
                         env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
        subprocess.Popen([sys.executable, str(child), str(killed), json.dumps(overrides), "4", ""],
                         cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
        subprocess.Popen([sys.executable, str(child), str(interrupted), json.dumps(epoch_saves), "3", "",
                          "SIGINT"],
                         cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
    ]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert runs[0].returncode == 0, outputs[0][-3000:]
    assert runs[1].returncode == -signal.SIGKILL, outputs[1][-3000:]
    assert tf.train.latest_checkpoint(str(killed / "checkpoints")).endswith("ckpt-3")
    assert runs[2].returncode == 128 + signal.SIGINT, outputs[2][-3000:]
    assert "stopped by SIGINT at step 3 (epoch 2, 1 steps in)" in outputs[2], outputs[2][-3000:]
    saved = sorted(p.name for p in (interrupted / "checkpoints").glob("ckpt-*.index"))
    assert saved == ["ckpt-2.index", "ckpt-3.index"]  # the epoch end, then the stop
    resumed_after_sigint = subprocess.run(
        command + [f"--workdir={interrupted}"] + _flags(epoch_saves), cwd=ROOT, env=ENV,
        capture_output=True, text=True, timeout=240)
    assert resumed_after_sigint.returncode == 0, resumed_after_sigint.stderr[-3000:]
    assert "ckpt-3" in resumed_after_sigint.stderr
    # What a kill during the next save leaves: files of ckpt-4 but no updated
    # `checkpoint` state file. The resume must ignore them.
    (killed / "checkpoints" / "ckpt-4.index").write_bytes(b"partial")
    (killed / "checkpoints" / "ckpt-4.data-00000-of-00001").write_bytes(b"")

    resumed = subprocess.run(command + [f"--workdir={killed}"] + _flags(overrides), cwd=ROOT,
                             env=ENV, capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resumed from" in resumed.stderr and "ckpt-3" in resumed.stderr

    # Exact resume: weights, optimizer slots and step counts, pools, RNG, counters.
    path1, want = _checkpoint_tensors(straight)
    path2, got = _checkpoint_tensors(killed)
    assert path1.endswith("ckpt-4") and path2.endswith("ckpt-4")
    assert set(got) == set(want)
    assert any("pool_b/images" in k for k in want) and any("rng" in k for k in want)
    assert any(k.startswith("dropout_seeds/") for k in want)
    assert any(k.startswith("gen_optimizer/_variables/") for k in want)  # Adam moments
    assert want["gen_optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"] == 4
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    # Stopped by SIGINT and resumed: the same state (it saved twice less often).
    path3, after_sigint = _checkpoint_tensors(interrupted)
    assert path3.endswith("ckpt-4") and set(after_sigint) == set(want)
    for name in want:
        if not name.startswith("save_counter"):
            np.testing.assert_array_equal(after_sigint[name], want[name], err_msg=name)
    assert want["counters/step/.ATTRIBUTES/VARIABLE_VALUE"] == 4
    assert want["counters/epoch/.ATTRIBUTES/VARIABLE_VALUE"] == 2

    # What the end-to-end run left in its workdir.
    config = json.loads((straight / "config.json").read_text())
    assert config["train"]["deterministic"] is True
    # Stored absolute (resolved against the working directory); compare as real paths.
    assert pathlib.Path(config["data"]["root"]).resolve() == (ROOT / "../shared/data/horse2zebra").resolve()
    assert len(list((straight / "checkpoints").glob("ckpt-*.index"))) == 2  # keep = 2
    tags = _events(straight)
    assert {"train/gen_ab_loss", "train/disc_b_loss", "train/cycle_a_loss", "train/lr",
            "train/images_per_second", "samples/a2b", "samples/b2a"} <= tags
    pngs = sorted(p.name for p in (straight / "samples").glob("*.png"))
    assert pngs == ["step_00000002_a2b.png", "step_00000002_b2a.png",
                    "step_00000004_a2b.png", "step_00000004_b2a.png"]
    for name in ("gen_ab", "gen_ba"):
        model = keras.saving.load_model(straight / "export" / f"{name}.keras", safe_mode=True)
        out = model(np.zeros((1, 32, 32, 3), np.float32))
        assert out.shape == (1, 32, 32, 3)
    # The export is the final generator: its weights are in the last checkpoint
    # (stored once each, under whichever path the checkpoint reached them first).
    exported = keras.saving.load_model(straight / "export" / "gen_ab.keras", safe_mode=True)
    kernel = exported.get_layer("stem_conv").kernel.numpy()
    assert any(v.shape == kernel.shape and np.array_equal(kernel, v) for v in want.values())


def test_train_py_rejects_a_bad_override_before_training(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "--config=configs/smoke.py",
         f"--workdir={tmp_path / 'run'}", "--config.data.preprocess=zoom"],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert "data.preprocess='zoom'" in result.stderr
    assert not (tmp_path / "run").exists()


def test_train_py_exits_with_the_signal_status_after_a_stop(tmp_path):
    # train.py's side of a SIGTERM stop (the stop itself is tested above): the
    # message on stderr and the status a shell gives that signal, not 0 or 1.
    script = textwrap.dedent(
        f"""
        import runpy, sys
        from gan_style import training
        def stopped(config, workdir):
            raise training.TrainingStopped("stopped by SIGTERM at step 7; checkpoint X", 15)
        training.train_and_evaluate = stopped
        sys.argv = ["train.py", "--config=configs/smoke.py", "--workdir={tmp_path / 'run'}"]
        runpy.run_path("train.py", run_name="__main__")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=ENV,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 128 + signal.SIGTERM, result.stderr[-3000:]
    assert "stopped by SIGTERM at step 7; checkpoint X" in result.stderr


def test_train_py_says_what_failed_inside_a_training_step(tmp_path):
    # An error inside a step reads "Graph execution error:", the op's Python
    # stack, then what went wrong: train.py prints the last, and for a lost
    # peer worker what to do.
    script = textwrap.dedent(
        f"""
        import os, runpy, sys
        import tensorflow as tf
        from gan_style import training
        def failing(config, workdir):
            if kind in ("lost", "unavailable"):
                if kind == "lost":
                    os.environ["TF_CONFIG"] = '{{"cluster": {{"worker": ["a:1", "b:2"]}}, "task": {{"type": "worker", "index": 0}}}}'
                else:  # one VM of a platform that sets TF_CONFIG everywhere: no peers to lose
                    os.environ["TF_CONFIG"] = '{{"cluster": {{"master": ["a:1"]}}, "task": {{"type": "master", "index": 0}}}}'
                raise tf.errors.UnavailableError(None, None, "Collective ops is aborted by: failed to connect to "
                                                 "all addresses /job:worker/replica:0/task:1")
            if kind == "roots":
                raise tf.errors.InvalidArgumentError(None, None, "2 root error(s) found.\\n  (0) INVALID_ARGUMENT: "
                                                     "bad pixel\\n  (1) CANCELLED: the other one\\n0 successful operations.")
            step = tf.function(lambda x: tf.reshape(x, [3, 5]) * 2, input_signature=[tf.TensorSpec([None], tf.int32)])
            step(tf.range(7))
        training.train_and_evaluate = failing
        kind = sys.argv[1]
        sys.argv = ["train.py", "--config=configs/smoke.py", "--workdir={tmp_path / 'run'}"]
        runpy.run_path("train.py", run_name="__main__")
        """
    )
    runs = {kind: subprocess.Popen([sys.executable, "-c", script, kind], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True) for kind in ("graph", "lost", "unavailable", "roots")}
    said = {}
    for kind, run in runs.items():
        said[kind] = run.communicate(timeout=120)[1].strip().splitlines()[-1]
        assert run.returncode == 1, said[kind]
    assert said["graph"] == ("error: Input to reshape is a tensor with 7 values, but the requested shape has 15 "
                             "(--verbosity=1 shows where)")
    assert said["lost"] == ("error: lost contact with another worker (Collective ops is aborted by: failed to connect "
                            "to all addresses /job:worker/replica:0/task:1); restart every worker with the same "
                            "command: training resumes from the last checkpoint (--verbosity=1 shows where)")
    assert said["unavailable"] == ("error: Collective ops is aborted by: failed to connect to all addresses "
                                   "/job:worker/replica:0/task:1 (--verbosity=1 shows where)")
    assert said["roots"] == "error: INVALID_ARGUMENT: bad pixel (--verbosity=1 shows where)"


def test_train_py_names_bad_keys_files_and_data_in_one_line(tmp_path):
    (tmp_path / "empty" / "trainA").mkdir(parents=True)
    (tmp_path / "empty" / "trainB").mkdir()
    (tmp_path / "a_file").write_text("")
    for split in ("trainA", "trainB"):
        (tmp_path / "tiny" / split).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((40, 40, 3), 60 * i, np.uint8)).save(tmp_path / "tiny" / split / f"{i}.png")
    smoke = ["--config=configs/smoke.py"]
    typo_file = tmp_path / "typo_config.py"  # a wrong key inside a config file of one's own
    typo_file.write_text("from configs import smoke\n\ndef get_config():\n    c = smoke.get_config()\n"
                         "    c.train.epoch = 3\n    return c\n")
    runs = {
        "typo_in_file": ([f"--config={typo_file}", f"--workdir={tmp_path / 'r0'}"],
                         f'--config={typo_file}, line 5 (c.train.epoch = 3): Key "epoch" does not exist and '
                         'cannot be added since the config is locked. Did you mean "epochs" instead of "epoch"?'),
        "typo": (smoke + [f"--workdir={tmp_path / 'r1'}", "--config.optim.lerning_rate=1e-3"],
                 "--config.optim.lerning_rate: no such config key (see configs/default.py); "
                 "did you mean --config.optim.learning_rate?"),
        "bad_value": (smoke + [f"--workdir={tmp_path / 'r5'}", "--config.train.precision=bogus"],
                      "config key train.precision='bogus' is not one of"),
        "no_config": (["--config=configs/nope.py", f"--workdir={tmp_path / 'r2'}"],
                      "--config=configs/nope.py: no such file"),
        "empty_data": (smoke + [f"--workdir={tmp_path / 'r3'}", f"--config.data.root={tmp_path / 'empty'}"],
                       "no images"),
        "workdir_is_a_file": (smoke + [f"--workdir={tmp_path / 'a_file'}",
                                       f"--config.data.root={tmp_path / 'tiny'}"],
                              f"--workdir {tmp_path / 'a_file'} is a file, not a folder"),
        "workdir_in_a_file": (smoke + [f"--workdir={tmp_path / 'a_file' / 'run'}",
                                       f"--config.data.root={tmp_path / 'tiny'}"],
                              f"--workdir {tmp_path / 'a_file' / 'run'}: cannot create it (Not a directory)"),
        "seed": (smoke + [f"--workdir={tmp_path / 'r6'}", "--config.seed=-1"],
                 "config key seed must be in 0..4294967295, got -1"),
    }
    processes = {
        name: subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, (args, _) in runs.items()
    }
    for name, process in processes.items():
        _, stderr = process.communicate(timeout=180)
        assert process.returncode == 1, (name, stderr)
        assert stderr.count(runs[name][1]) == 1, (name, stderr)  # once, not logged and printed
        assert "Traceback" not in stderr, (name, stderr)


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_train_to_identical_weights_and_stop_together(tmp_path, shared_data):
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    workers = [f"localhost:{port}" for port in _free_ports(2)]
    # Checkpoints at epoch ends only (2 steps). Worker 1 alone gets SIGTERM (a
    # preempted VM) as step 3 begins: both must finish step 3, save it together
    # (saving is collective) and stop. The evaluation at the first epoch's end
    # saves a best checkpoint (collective too).
    overrides = {**OVERRIDES, "train.deterministic": False, "distribute.strategy": "multi_worker",
                 "train.max_steps": 4, "checkpoint.every_steps": 0, "eval.every_epochs": 1,
                 "eval.num_images": 4}
    runs = []
    for index in range(2):
        env = {**ENV, "TF_CONFIG": json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})}
        runs.append(subprocess.Popen(
            [sys.executable, str(child), str(tmp_path / "run"), json.dumps(overrides),
             "3" if index == 1 else "0", str(tmp_path / f"weights{index}.npz"), "SIGTERM"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    try:
        outputs = [run.communicate(timeout=240)[0] for run in runs]
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
    for run, output in zip(runs, outputs):
        assert run.returncode == 128 + signal.SIGTERM, output[-3000:]
        # Each host's pipeline reads its own half of the samples.
        assert "input: each of 2 hosts reads 1 sample in 2 (its own shard)" in output, output[-3000:]
    assert "stopped by another worker's signal at step 3" in outputs[0], outputs[0][-3000:]
    assert "stopped by SIGTERM at step 3" in outputs[1], outputs[1][-3000:]
    first, second = np.load(tmp_path / "weights0.npz"), np.load(tmp_path / "weights1.npz")
    assert len(first.files) > 10
    for name in first.files:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)
    # Only the chief wrote the workdir; the other worker's temporary dir is gone.
    assert tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints")).endswith("ckpt-3")
    assert (tmp_path / "run" / "export" / "gen_ab.keras").exists()
    assert tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints" / "best")).endswith("ckpt-2")
    assert not list((tmp_path / "run").glob("tmp_*"))
