"""What a wheel carries: `pip install gan-style` (not a clone) must still find
the bundled default model and the default config, which the repository keeps
at its top level (assets/, configs/)."""

import pathlib
import shutil
import subprocess
import sys
import textwrap
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.timeout(300)
def test_a_wheel_installed_elsewhere_has_the_default_model_and_config(tmp_path):
    source = tmp_path / "source"  # a copy, so the build leaves nothing in the repository
    source.mkdir()
    for name in ("setup.py", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for name in ("gan_style", "assets", "configs"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "samples"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(source),
                    "-w", str(tmp_path / "dist")], check=True, capture_output=True, timeout=240)
    (wheel,) = (tmp_path / "dist").glob("gan_style-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"gan_style/_assets/default_translator.keras", "gan_style/_configs/default.py",
            "gan_style/studio/static/index.html"} <= names
    assert not any(name.startswith(("assets/", "configs/")) for name in names)  # no top-level clutter

    # "Installed": the wheel unpacked into a site folder, used from elsewhere.
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = textwrap.dedent(
        """
        import pathlib
        from gan_style import convert, training
        from gan_style.studio import server
        path = convert.DEFAULT_MODEL_PATH
        assert path.is_file() and path.parent.name == "_assets", path
        assert server.default_model_path() == path
        assert pathlib.Path(convert.__file__).is_relative_to(pathlib.Path.cwd() / "site")
        config = training.default_config()
        training.validate_config(config)
        print("ok", config.model.generator)
        """
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                            env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "2"},
                            timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "ok resnet_9blocks"
