"""Trains a CycleGAN: ``python train.py --config=configs/x.py --workdir=runs/x``.

Any config field can be overridden: ``--config.train.epochs=5``. Running the
same command again resumes the run in ``--workdir``. See configs/default.py
for every key and gan_style/training.py for what the run writes.
"""

import difflib
import os
import pathlib
import re
import sys
import traceback

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, exports, samples and logs.")
config_flags.DEFINE_config_file("config", None, "Training config file.", lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def _unknown_override(argv: list[str]) -> str | None:
    """What is wrong with the first ``--config.KEY=...`` naming no config key, or None."""
    from configs import default

    known = _keys(default.get_config())
    for arg in argv[1:]:
        if not arg.startswith("--config."):
            continue
        key = arg[len("--config."):].split("=", 1)[0]
        if key in known or any(k.startswith(key + ".") for k in known):
            continue
        leaf = key.rsplit(".", 1)[-1]
        guesses = difflib.get_close_matches(key, known, n=2) or [
            k for k in known if difflib.get_close_matches(leaf, [k.rsplit(".", 1)[-1]], cutoff=0.75)]
        hint = f"; did you mean {' or '.join(f'--config.{g}' for g in guesses[:2])}?" if guesses else ""
        return f"--config.{key}: no such config key (see configs/default.py){hint}"
    return None


def _keys(config, prefix: str = "") -> set[str]:
    keys = set()
    for name, value in config.items():
        keys.add(prefix + name)
        if hasattr(value, "items"):
            keys |= _keys(value, f"{prefix}{name}.")
    return keys


def parse_flags(argv: list[str]) -> list[str]:
    """absl's parsing, with a one-line error for a config file or override that
    fails to load (ml_collections raises AttributeError with only the key's last part)."""
    try:
        return FLAGS(argv)
    except flags.Error as error:
        print(f"FATAL Flags parsing error: {error}\nPass --helpshort or --helpfull to see help on flags.",
              file=sys.stderr)
        sys.exit(1)
    except Exception as error:  # noqa: BLE001 - whatever loading --config raised
        _fail(_unknown_override(argv) or _config_file_error(error))


def _config_file_error(error: Exception) -> str:
    """One line for an error raised while loading the config file: the file,
    line and statement where it happened, and ml_collections' message
    without the dump of every field it appends (and not a KeyError's repr)."""
    cause = error
    while cause.args and isinstance(cause.args[0], BaseException):  # AttributeError(KeyError(...))
        cause = cause.args[0]
    text = cause.args[0] if isinstance(cause, KeyError) and cause.args else str(cause)
    text = re.sub(r'\s*Other fields present: "\{.*\}"', "", str(text), flags=re.S)
    text = " ".join(text.split())
    if isinstance(cause, (KeyError, AttributeError)) and " " not in text:  # only the key's last part
        text = f"no such config key {text}"
    where = "--config"
    libraries = tuple(os.path.dirname(os.path.dirname(m.__file__)) + os.sep for m in (flags, config_flags))
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        path = os.path.abspath(frame.filename)
        if not path.startswith(libraries) and path != os.path.abspath(__file__) and "importlib" not in path:
            where = f"--config={frame.filename}, line {frame.lineno}" + (f" ({frame.line})" if frame.line else "")
            break
    return f"{where}: {text}"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    config_file = config_flags.get_config_filename(FLAGS["config"]).split(":", 1)[0]
    if not pathlib.Path(config_file).is_file():
        _fail(f"--config={config_file}: no such file (the configs are in configs/)")
    import tensorflow as tf

    from gan_style import training  # after flag parsing: TF starts only for a valid command line

    try:
        training.train_and_evaluate(FLAGS.config, FLAGS.workdir)
    except training.TrainingStopped as stopped:
        # Saved and resumable, but not finished: the shell's status for the signal.
        logging.warning("%s", stopped)
        print(str(stopped), file=sys.stderr, flush=True)
        sys.exit(128 + stopped.signum)
    except (training.ConfigError, FloatingPointError) as error:
        _fail(str(error))  # once: absl's log would print it to stderr a second time
    except (ValueError, OSError, tf.errors.OpError) as error:
        # Bad data (an empty or undecodable folder, a download that failed
        # offline) or an unusable --workdir: the message names it; the
        # traceback is for --verbosity=1.
        logging.debug("training stopped", exc_info=True)
        _fail(f"{_error_text(error, tf, training)} (--verbosity=1 shows where)")


def _error_text(error: Exception, tf, training) -> str:
    """The line of ``error``'s message that says what went wrong. An error
    inside a training step starts "Graph execution error:", then the Python
    stack of the op (indented); the op's own message comes after it, or
    "N root error(s) found." and the first of them as "(0) ..."."""
    message = (getattr(error, "message", None) or str(error)).strip()
    said = [line for line in message.splitlines() if line.strip() and not line[0].isspace()
            and not line.startswith(("Graph execution error", "Detected at node"))]
    text = said[0] if said else (message.splitlines() or [type(error).__name__])[0]
    if re.match(r"\d+ root error", text):
        first = re.search(r"^\s*\(0\) (.+)$", message, re.MULTILINE)
        text = first.group(1) if first else text
    text = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", text)  # which traced function: the stack says
    lost = (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.DeadlineExceededError,
            tf.errors.CancelledError)
    try:
        several_workers = training._tf_config_workers() > 1
    except training.ConfigError:
        several_workers = False
    if isinstance(error, lost) and several_workers:
        # A worker died or cannot be reached: the collective ops of every
        # other worker fail with it, and only a restart of all of them recovers.
        text = (f"lost contact with another worker ({text}); restart every worker with the same command: "
                "training resumes from the last checkpoint")
    return text


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
