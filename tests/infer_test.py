"""infer.py end to end: flags, exit codes, and a run killed mid-catalog."""

import collections
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from catalog_fixtures import save_tiny_translator
from PIL import Image

from gan_style import convert

ROOT = pathlib.Path(__file__).resolve().parents[1]
INFER = ROOT / "infer.py"


def _command(args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    return [sys.executable, str(INFER), *args], env


def infer(*args, timeout=300):
    command, env = _command(args)
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def _wait_until_converted(process, manifest, count, timeout=240):
    """Until ``manifest`` records ``count`` converted files, or the process ends."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if manifest.exists() and manifest.read_text().count('"converted"') >= count:
            return
        time.sleep(0.02)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return save_tiny_translator(tmp_path_factory.mktemp("model") / "tiny.keras", base_filters=8, seed=3)


def test_usage_errors_exit_1_with_a_clear_message(model_path, tmp_path, tmp_path_factory):
    # `--input catalog/*.png`, unquoted (outside tmp_path, the other runs' input).
    catalog = tmp_path_factory.mktemp("catalog")
    expanded = [catalog / f"{name}.png" for name in "abc"]
    for path in expanded:
        path.write_bytes(b"")
    runs = {
        "shell_glob": ["--input", *map(str, expanded), f"--output={tmp_path / 'out'}", f"--model={model_path}"],
        "no_model": [f"--input={tmp_path}", f"--output={tmp_path / 'out'}"],
        "bad_quality": [f"--input={tmp_path}", f"--output={tmp_path / 'out'}", f"--model={model_path}", "--quality=0"],
        "no_input": [f"--input={tmp_path / 'nowhere'}", f"--output={tmp_path / 'out'}", f"--model={model_path}"],
        "bad_context": [f"--input={tmp_path}", f"--output={tmp_path / 'out'}", f"--model={model_path}", "--context=-4"],
        "output_is_a_file": [f"--input={tmp_path}", f"--output={model_path}", f"--model={model_path}"],
    }
    processes = {}
    for name, args in runs.items():  # side by side: each pays TensorFlow's import
        command, env = _command(args)
        processes[name] = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT
        )
    results = {name: p.communicate(timeout=300) + (p.returncode,) for name, p in processes.items()}
    if convert.DEFAULT_MODEL_PATH.exists():
        # The bundled model is used: an empty catalog converts nothing, fine.
        assert results.pop("no_model")[2] == 0
    else:
        assert "assets/default_translator.keras" in results["no_model"][1]
        assert "--model" in results["no_model"][1]
    for name, (_, stderr, code) in results.items():
        assert code == 1, (name, stderr)
    assert "--quality" in results["bad_quality"][1]
    assert "nowhere" in results["no_input"][1]
    assert "--context" in results["bad_context"][1]
    assert "--output" in results["output_is_a_file"][1]
    assert results["shell_glob"][1].strip().splitlines()[-1] == (
        f"infer.py: error: --input takes one folder, glob or list file; the shell expanded a pattern into 3 paths "
        f"({expanded[0]}, {expanded[1]}, ...): quote it, e.g. --input='{expanded[0].parent}/*'")
    assert all("Traceback" not in stderr for _, stderr, _ in results.values())


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(model_path, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    rng = np.random.default_rng(1)
    # Far more than it converts before the interrupt, so it is still mid-catalog
    # (not shutting down) when the signal lands, however fast the machine.
    for i in range(400):
        Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(src / f"{i:03d}.bmp")
    command, env = _command([f"--input={src}", f"--output={out}", f"--model={model_path}", "--batch_size=1"])
    # A shell that starts the suite in the background (cmd &) hands its
    # children SIGINT ignored, and Python then installs no Ctrl-C handler:
    # give the child the default disposition, as a terminal would.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _wait_until_converted(process, out / "manifest.jsonl", 3)
    assert process.poll() is None, "the run finished before it could be interrupted"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "run the same command again to resume" in stderr
    assert "Traceback" not in stderr
    assert [p for p in out.rglob("*") if p.name.endswith(".gan_style-tmp")] == []


def test_killed_run_resumes_without_loss_or_duplicates(model_path, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    rng = np.random.default_rng(0)
    names = [f"batch{i % 4}/item{i:03d}.jpg" for i in range(48)]
    for name in names:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(src / name, quality=90)
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    manifest = out / "manifest.jsonl"
    args = [f"--input={src}", f"--output={out}", f"--model={model_path}", "--batch_size=1"]

    command, env = _command(args)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
    try:
        _wait_until_converted(process, manifest, 6)
        assert process.poll() is None, "the run finished before it could be killed; make the catalog bigger"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()

    first = [json.loads(line) for line in manifest.read_text().splitlines() if line.endswith("}")]
    converted_before = {r["rel"] for r in first if r["status"] == "converted"}
    assert 6 <= len(converted_before) < len(names)
    # Whatever exists under a final name is a complete image.
    for path in out.rglob("*.jpg"):
        with Image.open(path) as image:
            image.load()
            assert image.size == (96, 96)

    result = infer(*args)
    assert result.returncode == convert.EXIT_SOME_FAILED, result.stderr
    assert "converted" in result.stdout and "failed 1" in result.stdout
    # The reason shows on the console too, not only in the manifest.
    assert f"1 file(s) failed; every reason is in {manifest}\n  broken.jpg: " in result.stderr, result.stderr
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip().endswith("}")]
    converted = collections.Counter(r["rel"] for r in rows if r["status"] == "converted")
    assert set(converted) | {r["rel"] for r in rows if r["status"] == "skipped"} == set(names)
    assert max(converted.values()) == 1, "a source was converted twice"
    for name in names:
        with Image.open(out / name) as image:
            image.load()
            assert image.size == (96, 96)
    leftovers = [p for p in out.rglob("*") if p.name.endswith(".gan_style-tmp")]
    assert leftovers == []


# infer.py with the manifest's disk filling up in the middle of its third line.
FULL_DISK = """
import errno, os, runpy, sys
real_write, calls = os.write, [0]
def write(fd, data):
    try:
        name = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        name = ""
    if name.endswith("manifest.jsonl"):
        calls[0] += 1
        if calls[0] == 3:
            return real_write(fd, data[: len(data) // 2])
        if calls[0] > 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return real_write(fd, data)
os.write = write
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.skipif(sys.platform != "linux", reason="finds the manifest's descriptor in /proc")
def test_a_full_disk_stops_the_run_cleanly_and_the_rerun_resumes(model_path, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    rng = np.random.default_rng(1)
    names = [f"item{i}.png" for i in range(8)]
    src.mkdir()
    for name in names:
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(src / name)
    args = [f"--input={src}", f"--output={out}", f"--model={model_path}", "--batch_size=1"]
    command, env = _command(args)
    full = subprocess.run([sys.executable, "-c", FULL_DISK, *command[1:]], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)
    assert full.returncode == 4, full.stderr[-2000:]
    assert "cannot write the manifest" in full.stderr and "No space left on device" in full.stderr
    assert "make room and run the same command to resume" in full.stderr
    assert "Traceback" not in full.stderr

    result = infer(*args)
    assert result.returncode == 0, result.stderr
    records = convert.Manifest.read(out)
    assert set(records) == set(names)
    assert {r["status"] for r in records.values()} <= {"converted", "skipped"}
    assert sum(r["status"] == "skipped" for r in records.values()) >= 2  # the two recorded lines
