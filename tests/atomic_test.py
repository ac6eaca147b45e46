"""Files that appear whole or not at all (gan_style.atomic)."""

import os
import subprocess
import sys

import pytest

from gan_style import atomic


def test_a_clean_block_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "model.weights.h5"
    target.write_bytes(b"old")
    with atomic.replacing(target) as temporary:
        assert temporary.parent == tmp_path and temporary.name.startswith(".")
        assert temporary.name.endswith(".model.weights.h5")  # Keras picks the format by the ending
        temporary.write_bytes(b"new")
        assert target.read_bytes() == b"old"  # nothing replaced until the block ends
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.weights.h5"]


def test_an_error_in_the_block_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "profile.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="check failed"):
        with atomic.replacing(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError("check failed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["profile.json"]


def test_two_writers_never_share_a_temporary(tmp_path):
    target = tmp_path / "config.json"
    with atomic.replacing(target) as first, atomic.replacing(target) as second:
        assert first != second
        first.write_text("first")
        second.write_text("second")
    assert target.read_text() == "first"  # the outer block ends last


def test_a_killed_writer_leaves_the_old_file(tmp_path):
    target = tmp_path / "sheet.png"
    target.write_bytes(b"old")
    code = (
        "import os, signal, sys\n"
        "from gan_style import atomic\n"
        "with atomic.replacing(sys.argv[1]) as t:\n"
        "    t.write_bytes(b'half')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(target)], env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == -9
    assert target.read_bytes() == b"old"
