"""Catalog conversion: every image under a folder, glob or list, translated.

:func:`convert_catalog` is what ``infer.py`` runs. For each source it
decodes (any format and size, EXIF orientation applied, alpha kept), runs the
:class:`~gan_style.Translator` (batched by size; large images in tiles that
share instance-norm statistics, see :mod:`gan_style.tiling`), encodes, writes
atomically, and appends one JSON line to ``DST/manifest.jsonl``:

    {"source": ..., "output": ..., "output_rel": ...,
     "status": "converted" | "skipped" | "failed",
     "reason": ..., "seconds": ..., "rel": ..., "source_size": ...,
     "source_mtime_ns": ..., "output_size": ..., "width": ..., "height": ...,
     "tiled": ..., "settings": ..., "time": ...}

Resuming: a source is skipped when its newest record (over every manifest in
the output folder) says it was converted (or skipped) with the same settings,
its size and mtime are unchanged and its output (``output_rel`` under today's
output folder) still has the recorded size; a source with no record whose output
already exists is skipped too (outputs are written atomically, so an existing
one is complete: this covers a kill between the rename and the manifest
line). ``overwrite=True`` converts everything again.

Decoding and encoding run in a thread pool while the model runs, so the two
CPU-bound halves overlap; the model is one ``tf.function`` with unknown batch
and spatial sizes, traced once for the whole catalog. Small images are decoded
up to ``2 * batch_size + 2`` ahead of the model, big ones (by their headers)
only one ahead, so a folder of 60-megapixel photos holds two of them, not ten.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime
import fnmatch
import glob
import hashlib
import json
import math
import os
import pathlib
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent import futures
from typing import Any

import numpy as np
import tensorflow as tf
from absl import logging

from gan_style import atomic, image_io, image_writer, run_lock, tiling
from gan_style._bundled import bundled_path
from gan_style.precision import resolve_precision
from gan_style.translator import Translator, check_context, load_translator

#: Exit status of ``infer.py`` when some files failed (the rest converted).
EXIT_SOME_FAILED = 3
#: Where infer.py looks for the bundled default model when ``--model`` is not given.
DEFAULT_MODEL_PATH = bundled_path("assets", "default_translator.keras")
MANIFEST_NAME = "manifest.jsonl"
#: The plans Beam runs write into the output folder (``.beam-plan-<run>.jsonl``)
#: and delete when they end: one left behind is a killed run's.
BEAM_PLANS = ".beam-plan-*.jsonl"
#: What marks a folder as a conversion's output: a manifest, or a Beam run's plan.
_RUN_FILES = ("manifest*.jsonl", BEAM_PLANS)


def _is_run_file(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in _RUN_FILES)


def _first_names(names: list[str]) -> str:
    """The first five of ``names`` for a warning, then "..."."""
    return ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")


def _warn_earlier_outputs(source: str, folders: list[str]) -> None:
    logging.warning("--input %s: %d folder(s) left out, they hold an earlier conversion's manifest (%s)",
                    source, len(folders), _first_names(folders))
CONVERTED, SKIPPED, FAILED = "converted", "skipped", "failed"
_WHITE = (255, 255, 255)

# Pixels decoded ahead of the model at most (besides the next image, which is
# always decoded ahead): a window of small images decodes far ahead, a run of
# big ones one at a time (a tiled image keeps the model busy for seconds to
# minutes, its decode takes a second), not ten 64-megapixel buffers at once.
_AHEAD_PIXELS = 1 << 24


#: Failures a run's summary keeps to show on the console.
FAILURES_SHOWN = 3


@dataclasses.dataclass
class ConversionSummary:
    """Counts of one :func:`convert_catalog` run."""

    converted: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    manifest: str = ""
    #: ``(rel, reason)`` of the first few failures, for the console (all are in the manifest).
    failures: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    @property
    def total(self) -> int:
        return self.converted + self.skipped + self.failed

    @property
    def exit_code(self) -> int:
        """0 when nothing failed, :data:`EXIT_SOME_FAILED` otherwise."""
        return EXIT_SOME_FAILED if self.failed else 0

    def __str__(self) -> str:
        rate = self.converted / self.seconds if self.seconds > 0 else 0.0
        return (
            f"converted {self.converted}, skipped {self.skipped}, failed {self.failed} "
            f"in {self.seconds:.1f} s ({rate:.2f} images/s converted); manifest: {self.manifest}"
        )


@dataclasses.dataclass
class Source:
    """One catalog entry: the file to read and its path relative to the input root."""

    path: pathlib.Path
    rel: str
    refused: str | None = None  # why it must not be read (path safety)
    output: pathlib.Path | None = None
    # Where the output goes when it has transparency its planned format cannot
    # hold (a BMP or a misnamed JPEG with alpha, under --format=same): a PNG.
    alpha_output: pathlib.Path | None = None
    stat: os.stat_result | None = None
    # Its output of an earlier run, under a name that another source now
    # shares (so neither has it): removed once the new output is written.
    moved_from: pathlib.Path | None = None


# -- finding the sources ------------------------------------------------------


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _glob_root(pattern: str) -> pathlib.Path:
    """The folder part of a glob before its first wildcard."""
    parts = pathlib.PurePath(pattern).parts
    fixed = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return pathlib.Path(*fixed) if fixed else pathlib.Path(".")


def _exists(path: pathlib.Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name too long to be one, say (a long comment line)
        return False


def _list_file_entries(list_path: pathlib.Path) -> list[Source]:
    root = list_path.parent
    entries, seen = [], set()
    try:
        lines = list_path.read_text(encoding="utf-8-sig").splitlines()  # -sig: Windows editors' BOM
    except UnicodeDecodeError:
        raise ValueError(
            f"--input {list_path}: not a UTF-8 text list of paths (and not an image by its extension)"
        ) from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if line.lstrip().startswith("#") and not _exists(root / line) and not _exists(root / line.strip()):
            continue  # a comment; a file named "#x.jpg" is a path
        # Names are taken as written (" lead space.jpg" is a name); stray
        # spaces around a name that only exists without them are dropped.
        if line != line.strip() and not _exists(root / line) and _exists(root / line.strip()):
            line = line.strip()
        pure = pathlib.PurePath(line)
        if pure.is_absolute() or line.startswith(("/", "\\")):
            entries.append(Source(pathlib.Path(line), line, f"absolute path refused (line {number} of {list_path}); list paths relative to the list file"))
            continue
        if ".." in pure.parts:
            entries.append(Source(pathlib.Path(line), line, f"'..' refused in a listed path (line {number} of {list_path})"))
            continue
        rel = pathlib.PurePosixPath(*pure.parts).as_posix()
        if rel in seen:
            continue
        seen.add(rel)
        entries.append(Source(root / rel, rel))
    return entries


def _linked_folder_entries(links: Iterable[pathlib.Path], root: pathlib.Path) -> list[Source]:
    # Not walked (a link could loop, or lead outside the input), but not
    # passed over in silence either: each gets a failed line saying so.
    return [Source(link, link.relative_to(root).as_posix() + "/",
                   f"a symlinked folder (to {os.path.realpath(link)}): not walked; "
                   "pass it as --input to convert it") for link in links]


def _unlisted_folder_entries(unlisted: Iterable[tuple[pathlib.Path, OSError]], root: pathlib.Path) -> list[Source]:
    # A folder that cannot be listed gets a failed line: its images are not lost in silence.
    return [Source(folder, folder.relative_to(root).as_posix() + "/",
                   f"cannot list this folder ({error.strerror}): its images are not converted")
            for folder, error in unlisted]


class _LinkedFolders:
    """Which glob matches lie below a symlinked folder under ``root``."""

    def __init__(self, root: pathlib.Path):
        self.root = root
        self.found: set[pathlib.Path] = set()
        self._checked: dict[pathlib.Path, bool] = {}

    def passes_through(self, path: pathlib.Path) -> bool:
        folder = self.root
        for part in path.relative_to(self.root).parts[:-1]:
            folder = folder / part
            if folder not in self._checked:
                self._checked[folder] = folder.is_symlink()
            if self._checked[folder]:
                self.found.add(folder)
                return True
        return False


def collect_sources(source: str | os.PathLike, output: str | os.PathLike) -> tuple[pathlib.Path, list[Source]]:
    """Resolves ``--input`` to ``(root, sources)`` with path-safety checks.

    ``source`` is a folder (walked recursively, the output folder excluded),
    a glob (``catalog/**/*.jpg``; root = the part before the first wildcard),
    one image file, or a text file listing paths relative to its own folder.
    Entries that would escape the root (absolute or ``..`` in a list, a
    symlink leading outside) are returned with ``refused`` set.

    Raises:
      FileNotFoundError: nothing at ``source``.
      ValueError: the output folder would overwrite inputs.
    """
    text = os.fspath(source)
    output_real = os.path.realpath(output)
    others: list[pathlib.Path] = []  # files passed over for their extension
    earlier: list[pathlib.Path] = []  # output folders of earlier runs, inside the input

    def earlier_output(folder: str, names: list[str]) -> bool:
        if any(_is_run_file(name) for name in names):
            earlier.append(pathlib.Path(folder))
            return True
        return False

    if os.path.isdir(text):
        root = pathlib.Path(text)
        links: list[pathlib.Path] = []
        unlisted: list[tuple[pathlib.Path, OSError]] = []
        try:
            listed = image_io.list_images(root, exclude=[output], linked_folders=links, others=others,
                                          skip_folder=earlier_output, unlisted=unlisted)
        except PermissionError as e:
            raise ValueError(f"--input {text!r}: {e.strerror}") from None
        entries = [Source(p, p.relative_to(root).as_posix()) for p in listed]
        entries += _linked_folder_entries(links, root)
        entries += _unlisted_folder_entries(unlisted, root)
    elif glob.has_magic(text) and not os.path.exists(text):
        root = _glob_root(text)
        _check_root(root, output)  # before the matches: an output there would hide every one
        pattern = pathlib.PurePath(text).relative_to(root)
        # pathlib's `**` does not enter symlinked folders (glob.glob's does:
        # two links to a parent made the listing grow without end). Hidden
        # names are left out as by glob.glob and the folder walk, unless the
        # pattern asks for them.
        explicit_hidden = image_io.is_hidden(pattern)
        matches = sorted(p for p in root.glob(str(pattern))
                         if explicit_hidden or not image_io.is_hidden(p.relative_to(root)))
        unlisted = _unlisted_under_glob(root, pattern, output_real, explicit_hidden)
        if not matches and not unlisted:
            raise FileNotFoundError(f"--input {text!r}: the glob matches nothing")
        entries = []
        linked = _LinkedFolders(root)
        folders_seen: dict[pathlib.Path, bool] = {}

        def in_earlier_output(p: pathlib.Path) -> bool:
            for parent in list(p.relative_to(root).parents)[:-1]:  # sub-folders of the root only
                folder = root / parent
                if folder not in folders_seen:
                    try:
                        folders_seen[folder] = earlier_output(os.fspath(folder), os.listdir(folder))
                    except OSError:
                        folders_seen[folder] = False
                if folders_seen[folder]:
                    return True
            return False

        folders_in_output: dict[pathlib.Path, bool] = {}  # one realpath a folder, not one a file

        def in_output(folder: pathlib.Path) -> bool:
            if folder not in folders_in_output:
                folders_in_output[folder] = _inside(os.path.realpath(folder), output_real)
            return folders_in_output[folder]

        for p in matches:
            # Earlier outputs under an output folder inside the input, or
            # under an earlier run's output folder, are not inputs (as when
            # walking a folder). Anything but a folder is a source: reading a
            # pipe named .jpg fails it with a reason.
            if p.is_dir() or in_output(p.parent) or in_earlier_output(p):
                continue
            if linked.passes_through(p):  # through a link a `*` matched: not walked, as by the folder walk
                continue
            if p.suffix.lower() in image_io.IMAGE_EXTENSIONS:
                entries.append(Source(p, p.relative_to(root).as_posix()))
            else:
                others.append(p)
        if not entries and not linked.found and not unlisted:
            raise FileNotFoundError(
                f"--input {text!r}: the glob matches {len(matches)} path(s) but no image files "
                f"({' '.join(sorted(image_io.IMAGE_EXTENSIONS))})"
            )
        entries.sort(key=lambda s: s.rel)
        entries += _linked_folder_entries(sorted(linked.found), root)
        entries += _unlisted_folder_entries(unlisted, root)
    elif os.path.isfile(text):
        p = pathlib.Path(text)
        root = p.parent
        if p.suffix.lower() in image_io.IMAGE_EXTENSIONS:
            entries = [Source(p, p.name)]
        else:
            entries = _list_file_entries(p)
    else:
        raise FileNotFoundError(f"--input {text!r}: no such folder, file, or glob match")
    root_real = _check_root(root, output)
    if (_inside(output_real, root_real) and os.path.isdir(output)
            and not any(pathlib.Path(output).glob("manifest*.jsonl"))
            and not any(pathlib.Path(output).glob(BEAM_PLANS))):
        # An output folder inside the input is left out of the input. One
        # that already holds images no run wrote (no manifest, and no plan
        # of a Beam run, whose manifests come only at its end) is an input
        # subfolder given as --output: its images would be skipped, and
        # overwritten by outputs of the same name.
        held = image_io.list_images(output)
        if held:
            raise ValueError(
                f"--output {os.fspath(output)!r} is inside --input and already holds {len(held)} image(s) "
                f"that no conversion wrote (e.g. {held[0].relative_to(output)}): they would be left out "
                "of the input and could be overwritten. Choose an empty output folder, or one outside the input"
            )
    # After the checks above: an --output that is the input hides every input file.
    if earlier:
        _warn_earlier_outputs(text, [str(p.relative_to(root)) for p in sorted(earlier)])
    if others:
        others.sort()
        names = _first_names([str(p.relative_to(root)) for p in others])
        logging.warning("--input %s: %d file(s) not converted, their extensions are not image ones (%s); "
                        "images are %s", text, len(others), names, " ".join(sorted(image_io.IMAGE_EXTENSIONS)))
    if not entries:  # an empty drop folder is a quiet night, not an error; but say so
        logging.warning("--input %s: no image files to convert", text)
    for entry in entries:
        if entry.refused:
            continue
        real = os.path.realpath(entry.path)
        if not _inside(real, root_real):
            entry.refused = f"leads outside the input folder (to {real}); refused"
        elif _inside(real, output_real):
            entry.refused = "lies inside the output folder; refused as input"
    return root, entries


def _check_root(root: pathlib.Path, output: str | os.PathLike) -> str:
    """Raises ValueError when ``output`` is the input root or holds it; returns the root's real path."""
    root_real, output_real = os.path.realpath(root), os.path.realpath(output)
    if output_real == root_real:
        raise ValueError(f"--output {os.fspath(output)!r} is the input folder: outputs would overwrite the inputs")
    if _inside(root_real, output_real):
        raise ValueError(
            f"--input root {os.fspath(root)!r} is inside --output {os.fspath(output)!r}: "
            "outputs could overwrite inputs"
        )
    return root_real


def _unlisted_under_glob(root: pathlib.Path, pattern: pathlib.PurePath, output_real: str,
                         hidden: bool) -> list[tuple[pathlib.Path, OSError]]:
    """The folders under ``root`` that ``pattern`` could match files in but
    that cannot be listed: pathlib's glob passes over them in silence."""
    folders = pattern.parts[:-1]
    deep = "**" in folders

    def could_hold(rel: tuple[str, ...]) -> bool:
        return deep or (len(rel) <= len(folders) and all(map(fnmatch.fnmatchcase, rel, folders)))

    found: list[tuple[pathlib.Path, OSError]] = []

    def cannot_list(error: OSError) -> None:
        folder = pathlib.Path(error.filename)
        if folder != root:  # an unlistable root matched nothing, and says so
            found.append((folder, error))

    for dirpath, dirnames, _ in os.walk(root, onerror=cannot_list):
        rel = pathlib.Path(dirpath).relative_to(root).parts
        dirnames[:] = [d for d in dirnames
                       if (hidden or not d.startswith(".")) and could_hold((*rel, d))
                       and not _inside(os.path.realpath(os.path.join(dirpath, d)), output_real)]
    return sorted(found, key=lambda item: item[0])


def shard_of(rel: str, num_shards: int) -> int:
    """Stable shard of a relative path (sha1, the same on every machine).

    A name that is not valid UTF-8 (Python holds its bytes as surrogates)
    hashes its original bytes.
    """
    return int.from_bytes(hashlib.sha1(rel.encode("utf-8", "surrogateescape")).digest()[:8], "big") % num_shards


def _plan_outputs(entries: list[Source], output: pathlib.Path, fmt: str) -> set[str]:
    """Output paths for every source, mirroring its relative path, all distinct.

    Plan over the whole catalog (before sharding), so every machine and shard
    names each output the same way and no two sources ever share one:

    * a name only one source wants is kept (``a.jpg`` -> ``a.jpg``);
    * sources that would share a name (``a.jpg`` and ``a.png`` with
      ``--format=png``) get their source extension in it (``a_jpg.png``,
      ``a_png.png``), then ``_2``, ``_3``... if even that is taken;
    * under ``--format=same``, a source whose format has no alpha (JPEG, BMP)
      also gets a distinct PNG name (``alpha_output``), used only if it turns
      out to have transparency, so its alpha is kept;
    * a name that a new extension or a tag takes past 255 bytes, which no
      file system takes, keeps the start of its stem and ends in a hash of
      the source's path (``~3f2a...``).

    Names are compared case-insensitively (macOS and Windows file systems).
    Returns the names (relative, case-folded) that more than one source
    wanted, which none of them got.
    """
    entries = [e for e in entries if not e.refused]  # never read, never written

    def key(path: pathlib.PurePosixPath) -> str:
        return str(path).casefold()

    wanted, planned = {}, {}
    for entry in entries:
        rel = pathlib.PurePosixPath(entry.rel)
        planned[entry.rel] = image_writer.guess_output_format(fmt, rel.suffix)
        wanted[entry.rel] = rel.with_suffix(image_writer.output_suffix(planned[entry.rel], rel.suffix))
    counts = collections.Counter(key(p) for p in wanted.values())
    taken = {key(p) for p in wanted.values() if counts[key(p)] == 1}

    def claim(rel: pathlib.PurePosixPath, suffix: str) -> pathlib.PurePosixPath:
        stem = f"{rel.stem}_{rel.suffix.lstrip('.').lower()}"
        target, n = _fitting(rel, stem, suffix), 2
        while key(target) in taken:
            target = _fitting(rel, stem, suffix, keep=f"_{n}")
            n += 1
        taken.add(key(target))
        return target

    targets = {}
    for entry in entries:
        rel = pathlib.PurePosixPath(entry.rel)
        target = wanted[entry.rel]
        if counts[key(target)] > 1:
            target = claim(rel, target.suffix)
        elif (fitted := _fitting(rel, target.stem, target.suffix)) != target:  # too long: unique by its hash
            target = claim(rel, target.suffix) if key(fitted) in taken else fitted
            taken.add(key(target))
        targets[entry.rel] = target
    for entry in entries:
        entry.output = output.joinpath(*targets[entry.rel].parts)
        rel = pathlib.PurePosixPath(entry.rel)
        if fmt == "same" and not image_writer.can_carry_alpha(planned[entry.rel]):
            png = rel.with_suffix(".png")
            if key(png) in taken or _fitting(rel, rel.stem, ".png") != png:
                png = claim(rel, ".png")
            else:
                taken.add(key(png))
            entry.alpha_output = output.joinpath(*png.parts)
    return {name for name, count in counts.items() if count > 1}


def _fitting(source: pathlib.PurePosixPath, stem: str, suffix: str, keep: str = "") -> pathlib.PurePosixPath:
    """``source`` renamed ``stem + keep + suffix``; if that passes
    :data:`image_writer.NAME_MAX` bytes, the start of ``stem`` + ``~`` + 12
    hex digits of a hash of ``source`` + ``keep + suffix``: still one
    source's own name."""
    name = stem + keep + suffix
    if len(os.fsencode(name)) <= image_writer.NAME_MAX:
        return source.with_name(name)
    end = f"~{hashlib.sha1(os.fsencode(str(source))).hexdigest()[:12]}{keep}{suffix}"
    while len(os.fsencode(stem + end)) > image_writer.NAME_MAX:
        stem = stem[:-1]  # by characters: a cut never splits a multi-byte one
    return source.with_name(stem + end)


# -- the manifest -------------------------------------------------------------


class ManifestWriteError(OSError):
    """The manifest cannot be written (a full disk, say): the run stops, as
    nothing it did after this could be recorded. Every earlier line stands."""


class Manifest:
    """``manifest.jsonl``: one JSON line per source, appended and flushed at once.

    Each line goes out in a single ``write`` on an ``O_APPEND`` descriptor,
    so a kill loses at most the line being written and never interleaves two.
    """

    def __init__(self, path: pathlib.Path):
        self.path = path
        self._lock = threading.Lock()
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        size = os.fstat(self._fd).st_size
        if size:
            with open(path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":  # a line cut by a kill: end it
                    os.write(self._fd, b"\n")

    def write(self, record: dict) -> None:
        try:
            line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        except UnicodeEncodeError:
            # A file name that is not valid UTF-8: \udcXX escapes keep the line
            # valid JSON and read back to the same name.
            line = (json.dumps(record) + "\n").encode("ascii")
        with self._lock:
            try:
                while line:  # a nearly full disk can take part of a line
                    line = line[os.write(self._fd, line):]
            except OSError as e:
                raise ManifestWriteError(
                    e.errno, f"cannot write the manifest {self.path} ({e.strerror or e}); the run stopped. "
                    "Every file recorded before this is kept: make room and run the same command to resume"
                ) from e

    def close(self) -> None:
        os.close(self._fd)

    @staticmethod
    def _parse(line: str | bytes) -> dict | None:
        """A manifest line's record, or None for a line cut by a kill (or not a record)."""
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
        return record if isinstance(record, dict) and isinstance(record.get("rel"), str) else None

    @staticmethod
    def newest(files: Iterable[tuple[Any, Iterable[str | bytes]]],
               fields: tuple[str, ...] | None = None) -> dict[str, tuple[dict, Any, int]]:
        """The newest record per source over manifests given as ``(name, lines)``,
        in reading order: ``{rel: (record, name, line number)}``. Newest by the
        records' ``time``; a tie goes to the one read later. Runs with and
        without ``--num_shards`` (and Beam runs) write different manifests, so
        file order alone would let an old shard's record hide a newer run's.
        ``fields``: keep only these keys of each record (a 100,000-record
        manifest's whole dicts are 240 MB); None keeps them whole."""
        newest: dict[str, tuple[dict, Any, int]] = {}
        times: dict[str, str] = {}
        for name, lines in files:
            for number, line in enumerate(lines):
                record = Manifest._parse(line)  # None: a line cut by a kill
                if record is None:
                    continue
                rel, time = record["rel"], str(record.get("time", ""))
                if rel not in times or time >= times[rel]:
                    times[rel] = time
                    if fields is not None:
                        record = {key: record[key] for key in fields if key in record}
                    newest[rel] = (record, name, number)
        return newest

    @staticmethod
    def compact(path: pathlib.Path) -> None:
        """Rewrites ``path`` with only the newest record per source once most
        of its lines are older ones.

        Every run appends a line per file (a nightly run over a 100,000-image
        catalog adds 100,000 "skipped" lines), so without this the manifest
        grows without end. The rewrite is atomic (temporary file, then
        ``os.replace``): a kill leaves the old manifest whole.
        """
        for stale in path.parent.glob(f".{glob.escape(path.name)}.*{image_writer.TEMP_SUFFIX}"):
            stale.unlink(missing_ok=True)  # a compaction that was killed
        # Streamed, twice (which lines to keep, then those lines): a nightly
        # 100,000-image catalog's manifest holds 200,000-300,000 lines.
        try:
            with open(path, "rb") as f:
                lines = sum(1 for _ in f)
                if lines <= 1000:
                    return  # not worth parsing
                f.seek(0)
                newest = Manifest.newest([(path, f)], fields=())  # lines cut by a kill are dropped
        except FileNotFoundError:
            return
        if lines <= 2 * len(newest):
            return
        keep = {number for _, _, number in newest.values()}
        temporary = path.with_name(f".{path.name}.{os.getpid()}{image_writer.TEMP_SUFFIX}")
        with atomic.replacing(path, temporary) as temp, open(path, "rb") as source, open(temp, "wb") as out:
            for number, line in enumerate(source):
                if number in keep:
                    out.write(line if line.endswith(b"\n") else line + b"\n")

    @staticmethod
    def read(output: pathlib.Path, fields: tuple[str, ...] | None = None) -> dict[str, dict]:
        """The newest record per relative source path over all manifests in
        ``output`` (see :meth:`newest`), whole or only ``fields``."""

        def lines(path):
            with open(path, encoding="utf-8", errors="replace") as f:
                yield from f

        paths = sorted(output.glob("manifest*.jsonl"))
        return {rel: record for rel, (record, _, _) in Manifest.newest(((p, lines(p)) for p in paths), fields).items()}


#: What a skipped source's record carries on from its earlier one (infer.py and Beam).
CARRIED_FIELDS = ("output_size", "output_mtime_ns", "width", "height", "tiled", "format", "settings")
#: What a run reads of the earlier records: whether to skip a source, what a
#: skipped one's record carries on, and which outputs are whose.
RESUME_FIELDS = ("status", "source_size", "source_mtime_ns", "output", "output_rel", *CARRIED_FIELDS)


def record_time() -> str:
    """A record's ``time``: UTC ISO 8601 to the millisecond. Resume takes the
    newest record per source across manifests, and a sharded run followed by
    a single one can land in the same second (seconds tied, and the older
    record won about one time in four in the test)."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


def shard_tag(num_shards: int, shard_index: int) -> str:
    """In the temporary file names of one shard, so it cleans up only its own."""
    return "" if num_shards == 1 else f"-s{shard_index}of{num_shards}"


def output_lock(output: str | os.PathLike, num_shards: int, shard_index: int):
    """Holds ``output/.conversion<shard>.lock`` (:func:`gan_style.run_lock.held`):
    one run per local output folder and shard, infer.py's or a Beam
    launcher's. A second would delete the first one's temporary files and
    rewrite its manifest under it; it stops at once, naming the first."""

    def busy(holder: str) -> ValueError:
        shard = f" (shard {shard_index} of {num_shards})" if num_shards > 1 else ""
        return ValueError(f"--output {os.fspath(output)!r} is in use by another conversion{shard} ({holder}); "
                          "wait for it to end, or convert into another folder")

    return run_lock.held(pathlib.Path(output) / f".conversion{shard_tag(num_shards, shard_index)}.lock", busy)


def manifest_name(num_shards: int, shard_index: int) -> str:
    """``manifest.jsonl``, or one file per shard so workers never share a file."""
    if num_shards == 1:
        return MANIFEST_NAME
    return f"manifest.shard-{shard_index:05d}-of-{num_shards:05d}.jsonl"


# -- progress -----------------------------------------------------------------


class _Progress:
    """A one-line progress bar with rate and ETA on stderr."""

    def __init__(self, total: int, enabled: bool, stream=None):
        self.total, self.enabled = total, enabled
        self.stream = stream or sys.stderr
        self.done = 0
        self.start = time.monotonic()
        self._last = 0.0
        self._lock = threading.Lock()
        self._tty = getattr(self.stream, "isatty", lambda: False)()

    def update(self, n: int = 1) -> None:
        with self._lock:
            self.done += n
            now = time.monotonic()
            interval = 0.5 if self._tty else 10.0
            if self.enabled and (now - self._last >= interval or self.done == self.total):
                self._last = now
                self._render(now)

    def _render(self, now: float) -> None:
        elapsed = now - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        eta = "--:--" if math.isnan(left) else str(datetime.timedelta(seconds=int(left)))
        width = 30
        filled = int(width * self.done / self.total) if self.total else width
        bar = "=" * filled + ">" * (filled < width) + " " * (width - filled - 1)
        line = f"[{bar[:width]}] {self.done}/{self.total} {rate:.2f} img/s ETA {eta}"
        self.stream.write(("\r" + line) if self._tty else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self._tty:
            self.stream.write("\n")
            self.stream.flush()


# -- the converter --------------------------------------------------------------


def _settings_fingerprint(translator: Translator, **options) -> str:
    """sha1 of the weights, tone, strength, context and output options."""
    h = hashlib.sha1()
    for weight in translator.weights:
        h.update(np.asarray(weight.numpy()).tobytes())
    # context 0 is left out so that outputs made before it existed stay done.
    given = {"strength": translator.strength, **({"context": translator.context} if translator.context else {})}
    h.update(json.dumps({**given, **options}, sort_keys=True).encode())
    return h.hexdigest()[:16]


_LOSSY = ("JPEG", "WEBP")  # the output formats --quality changes


def run_settings(translator: Translator, *, format: str, quality: int, **options) -> dict[str, str]:
    """A run's settings fingerprints, as recorded in the manifest.

    ``lossy`` covers every option and is recorded for JPEG and WebP outputs;
    ``lossless`` leaves ``quality`` out and is recorded for PNG, TIFF and BMP
    ones, so a new ``--quality`` converts only the outputs it changes.
    ``lossy`` is also what every output was recorded with before the split,
    so those records stay done (:func:`accepted_settings`).
    """
    return {"format": format,
            "lossy": _settings_fingerprint(translator, format=format, quality=int(quality), **options),
            "lossless": _settings_fingerprint(translator, format=format, **options)}


def accepted_settings(settings: dict[str, str], rel: str) -> tuple[str, ...]:
    """The fingerprints under which the source ``rel``'s output is done; the
    first is the one to record. Its output format is the planned one (from
    the name), so a record made and a record checked always agree."""
    planned = image_writer.guess_output_format(settings["format"], pathlib.PurePosixPath(rel).suffix)
    return (settings["lossy"],) if planned in _LOSSY else (settings["lossless"], settings["lossy"])


def _resolve_translator(translator, tone, strength, precision="float32", context=None) -> Translator:
    if isinstance(translator, (str, os.PathLike)):
        translator = load_translator(translator, tone=tone, strength=strength, context=context)
        return translator.with_precision(precision)
    if not isinstance(translator, Translator):
        raise ValueError(
            "translator must be a gan_style.Translator or a path to a .keras file, "
            f"got {type(translator).__name__}"
        )
    if tone is not None or strength is not None:
        # A new wrapper around the same generator: the caller's object stays as it was.
        translator = Translator(translator.generator, tone=tone if tone is not None else translator.profile,
                                strength=strength, context=translator.context if context is None else context)
    return translator.with_context(context).with_precision(precision)


def _check_options(fmt, quality, batch_size, tile, overlap, max_pixels, num_shards, shard_index, context=None,
                   strength=None):
    image_writer.check_format(fmt)
    if context is not None:
        try:
            check_context(context)
        except ValueError as e:
            raise ValueError(f"--{e}") from None
    if strength is not None and not 0.0 <= float(strength) <= 1.0:
        raise ValueError(f"--strength must be in 0..1 (1: full translation), got {strength}")
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"--quality must be in 1..100, got {quality}")
    if int(batch_size) < 1:
        raise ValueError(f"--batch_size must be >= 1, got {batch_size}")
    if tile is not None and int(tile) < 0:
        raise ValueError(f"--tile must be >= 0 (0: never tile), got {tile}")
    if int(overlap) < 0:
        raise ValueError(f"--overlap must be >= 0, got {overlap}")
    if max_pixels is not None and int(max_pixels) < 1:
        raise ValueError(f"--max_pixels must be >= 1, got {max_pixels}")
    if int(num_shards) < 1:
        raise ValueError(f"--num_shards must be >= 1, got {num_shards}")
    if not 0 <= int(shard_index) < int(num_shards):
        raise ValueError(f"--shard_index must be in 0..{int(num_shards) - 1}, got {shard_index}")


# -- per-file steps (shared with gan_style.beam) --------------------------------


def model_input(image: image_io.DecodedImage) -> np.ndarray:
    """The uint8 RGB array the model sees: alpha composited on white."""
    return image_io.composite(image.rgb, image.alpha, _WHITE)


#: An image whose every channel's standard deviation is under this (in levels
#: of 255) is one flat colour: a placeholder, a colour swatch. Instance
#: normalisation, the first thing the generator does after a convolution, has
#: nothing to normalise there: every flat colour comes out the same grey, and
#: JPEG noise on a swatch is blown up into a pattern. Such images are not
#: translated; their tone is still applied. The measure is the whole image's:
#: a mark too small to move it (at full contrast, under about 0.006% of the
#: pixels: a 5x5 square in 1000x1000) leaves the image flat.
FLAT_STD = 2.0
FLAT_NOTE = (f"one flat colour (standard deviation under {FLAT_STD:g} levels in every channel): not translated, "
             "since the model turns any flat image grey; tone applied")
_FLAT_ROWS = 1 << 20  # pixels per chunk when measuring or toning a flat image (bounded memory)


def is_flat(rgb: np.ndarray) -> bool:
    """Whether ``rgb`` (uint8 ``[H, W, 3]``) is one flat colour (:data:`FLAT_STD`).

    A strided sample decides for almost every photo at once; a candidate is
    then measured exactly over every pixel, in chunks of rows, so a big image
    costs no float copy of itself.
    """
    height, width = rgb.shape[:2]
    step = max(1, int(math.sqrt(height * width / 4096)))
    if np.std(rgb[::step, ::step, :3].reshape(-1, 3), axis=0, dtype=np.float64).max() >= 2 * FLAT_STD:
        return False
    rows = max(1, _FLAT_ROWS // max(1, width))
    total = np.zeros(3, np.float64)
    squares = np.zeros(3, np.float64)
    for top in range(0, height, rows):
        chunk = rgb[top:top + rows, :, :3].reshape(-1, 3).astype(np.float64)
        total += chunk.sum(axis=0)
        squares += np.square(chunk).sum(axis=0)
    count = height * width
    variance = np.maximum(squares / count - np.square(total / count), 0.0)
    return bool(np.sqrt(variance).max() < FLAT_STD)


def untranslated(translator: Translator, rgb: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``rgb`` through the translator's tone at strength 0 (no generator), in
    chunks of rows: the tone is pointwise (:mod:`gan_style.tonal`), so this is
    exact for any size. ``out`` (may be ``rgb`` itself: each chunk is read
    before it is written) receives the result, as the tiled path writes into
    a big image's decode buffer."""
    height, width = rgb.shape[:2]
    rows = max(1, _FLAT_ROWS // max(1, width))
    if out is None:
        out = np.empty((height, width, 3), np.uint8)
    for top in range(0, height, rows):
        chunk = np.ascontiguousarray(rgb[top:top + rows, :, :3])[None]
        zeros = tf.zeros(chunk.shape, tf.float32)
        out[top:top + rows] = translator.finish(chunk, zeros, strength=0.0).numpy()[0]
    return out


def translate_function(translator: Translator) -> Any:
    """The translator as ``translate(images, alpha=None)``, a ``tf.function``
    over uint8 ``[B, H, W, 3]`` (and ``[B, H, W, 1]`` alpha, see
    :meth:`Translator.call`).

    Unknown batch and spatial sizes: one trace for every batch and image
    size, so a catalog never retraces per image; images with alpha have a
    trace of their own, so opaque ones pay nothing for it.
    """
    images_spec = tf.TensorSpec([None, None, None, 3], tf.uint8)
    opaque = tf.function(lambda images: translator(images, training=False), input_signature=[images_spec])
    transparent = tf.function(
        lambda images, alpha: translator(images, alpha=alpha, training=False),
        input_signature=[images_spec, tf.TensorSpec([None, None, None, 1], tf.uint8)],
    )

    def translate(images, alpha=None):
        return opaque(images) if alpha is None else transparent(images, alpha)

    return translate


def translate_decoded(translate, images: list[image_io.DecodedImage], model_inputs: list[np.ndarray]) -> np.ndarray:
    """Decoded images of one size through ``translate`` (:func:`translate_function`)
    in one call: ``model_inputs`` (:func:`model_input`) when all are opaque;
    else their own colours and alpha (255 for the opaque ones), which the
    translator composites itself, to blend against their own colours."""
    if all(image.alpha is None for image in images):
        return translate(tf.constant(np.stack(model_inputs))).numpy()
    opaque = np.full(images[0].rgb.shape[:2], 255, np.uint8)
    alpha = np.stack([opaque if image.alpha is None else image.alpha for image in images])
    return translate(tf.constant(np.stack([image.rgb for image in images])),
                     alpha=tf.constant(alpha[..., None])).numpy()


def transparent_parts(image: image_io.DecodedImage) -> tuple[np.ndarray, np.ndarray] | None:
    """``(colours, alpha)`` of an image with alpha (see :meth:`tiling.TiledTranslator.generate`), else None."""
    return None if image.alpha is None else (image.rgb, image.alpha)


def tiled_translator(translator: Translator, tile: int, overlap: int, stats_size: int,
                     batch_size: int) -> tiling.TiledTranslator:
    """The tiled path for images over ``tile``; tiles per call scale with ``batch_size``."""
    tile_batch = max(1, int(batch_size) * 256 * 256 // (int(tile) * int(tile)))
    return tiling.TiledTranslator(translator, tile=int(tile), overlap=int(overlap),
                                  stats_size=int(stats_size), batch_size=tile_batch)


def finish_output(image: image_io.DecodedImage, out: np.ndarray, requested_format: str,
                  source_suffix: str) -> tuple[np.ndarray, np.ndarray | None, str, list[str], bool]:
    """Chooses the output format and handles alpha for one translated image.

    The format follows the plan (:func:`_plan_outputs`: the source's
    extension or ``--format``), never the decoded contents, so a file's
    output name is known before it is read.

    Returns:
      ``(rgb, alpha, fmt, notes, to_alpha_output)``: the pixels to write
      (composited on white when ``fmt`` holds no alpha), the alpha to write or
      None, the PIL format name, the notes for the manifest's ``reason``, and
      whether the output goes to the source's ``alpha_output`` (a PNG that
      keeps the transparency the planned format cannot hold).
    """
    notes = list(image.notes)
    planned = image_writer.guess_output_format(requested_format, source_suffix)
    fmt = image_writer.output_format(requested_format, planned, image.alpha is not None)
    alpha = image.alpha
    if alpha is not None and not image_writer.can_carry_alpha(fmt):
        out = image_io.composite(out, alpha, _WHITE)
        notes.append(f"transparency dropped: {fmt} has none, composited on white")
        alpha = None
    notes += image_writer.metadata_notes(fmt, image.xmp, image.text, dpi=image.dpi, exif=image.exif)
    return out, alpha, fmt, notes, fmt != planned


def without_pixels(image: image_io.DecodedImage) -> image_io.DecodedImage:
    """``image`` with its RGB pixels dropped, metadata and alpha kept.

    Encoding needs only those, so a big image's input is freed before its
    output is encoded (PIL may copy the output while encoding). A zero-strided
    stand-in keeps ``height``/``width`` without the pixels.
    """
    return dataclasses.replace(image, rgb=np.broadcast_to(np.zeros((), np.uint8), image.rgb.shape))


@dataclasses.dataclass
class _Decoded:
    source: Source
    image: image_io.DecodedImage
    model_input: np.ndarray | None  # uint8 RGB the model sees (alpha composited on white)
    seconds: float

    def release_pixels(self) -> None:
        """Drops the source pixels once translated (see :func:`without_pixels`)."""
        self.image = without_pixels(self.image)
        self.model_input = None


class _Converter:
    """One run's state: the pool, the manifest, counters and the model calls."""

    def __init__(self, translator, manifest, progress, *, fmt, quality, batch_size, tile, overlap,
                 stats_size, max_pixels, settings, temp_tag, workers, output_dir):
        self.translator = translator
        self.manifest = manifest
        self.progress = progress
        self.fmt, self.quality, self.batch_size = fmt, int(quality), int(batch_size)
        self.tile, self.overlap, self.stats_size = tile, int(overlap), int(stats_size)
        self.max_pixels = max_pixels
        self.settings = settings
        self.temp_tag = temp_tag
        self.output_dir = output_dir  # as given: outputs are recorded under it
        self.output_root = os.path.realpath(output_dir)  # resolved: nothing is written outside it
        self.summary = ConversionSummary(manifest=str(manifest.path))
        self._lock = threading.Lock()
        self.pool = futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gan_style-io")
        self._encodes: collections.deque = collections.deque()
        self._tiled = None
        self._translate = translate_function(translator)

    # manifest + counters
    def record(self, source: Source, status: str, reason: str = "", seconds: float = 0.0, **extra) -> None:
        record = {
            "source": str(source.path),
            "output": str(source.output) if source.output else None,
            "output_rel": _output_rel(source.output, self.output_dir),
            "status": status,
            "reason": reason,
            "seconds": round(float(seconds), 4),
            "rel": source.rel,
            "time": record_time(),
        }
        if source.stat is not None:
            record["source_size"] = source.stat.st_size
            record["source_mtime_ns"] = source.stat.st_mtime_ns
        record.update(extra)
        self.manifest.write(record)
        with self._lock:
            setattr(self.summary, status, getattr(self.summary, status) + 1)
            if status == FAILED and len(self.summary.failures) < FAILURES_SHOWN:
                self.summary.failures.append((source.rel, reason))
        self.progress.update()

    # decode
    def decode(self, source: Source):
        start = time.perf_counter()
        try:
            image = image_io.read_image(source.path, max_pixels=self.max_pixels, rgbx_over=self.tile or None)
        except image_io.ImageError as e:
            return source, e.reason, time.perf_counter() - start
        except Exception as e:  # noqa: BLE001 - a bad file must not stop the run
            return source, f"could not read: {type(e).__name__}: {e}", time.perf_counter() - start
        problem = image_writer.size_problem(image_writer.guess_output_format(self.fmt, source.path.suffix),
                                            image.height, image.width)
        if problem is not None:
            return source, problem, time.perf_counter() - start
        return _Decoded(source, image, model_input(image), time.perf_counter() - start), None, 0.0

    # translate
    def translate_group(self, group: list[_Decoded]) -> None:
        start = time.perf_counter()
        try:
            outputs = translate_decoded(self._translate, [d.image for d in group], [d.model_input for d in group])
        except Exception as e:  # noqa: BLE001
            if len(group) > 1:  # find the one that fails; the others still convert
                for item in group:
                    self.translate_group([item])
                return
            self.record(group[0].source, FAILED, f"translation failed: {type(e).__name__}: {e}",
                        group[0].seconds + time.perf_counter() - start)
            return
        share = (time.perf_counter() - start) / len(group)
        for item, out in zip(group, outputs):
            item.release_pixels()
            self.submit_encode(item, out, share, tiled=False)

    def pass_flat(self, item: _Decoded) -> None:
        start = time.perf_counter()
        try:
            # Tone only: an image with alpha is toned in its own colours.
            source, colours = item.model_input, item.image.rgb
            out = untranslated(self.translator, colours, out=source if source.flags.writeable else None)
        except Exception as e:  # noqa: BLE001
            self.record(item.source, FAILED, f"tone failed: {type(e).__name__}: {e}",
                        item.seconds + time.perf_counter() - start)
            return
        item.image.notes.append(FLAT_NOTE)
        item.release_pixels()
        self.submit_encode(item, out, time.perf_counter() - start, tiled=False)

    def translate_tiled(self, item: _Decoded) -> None:
        start = time.perf_counter()
        try:
            if self._tiled is None:
                self._tiled = tiled_translator(self.translator, self.tile, self.overlap, self.stats_size,
                                               self.batch_size)
            source = item.model_input
            # Nothing needs the source pixels after this: translate in place
            # when the buffer is ours to write (see read_image's rgbx_over).
            out = self._tiled.generate(source, out=source if source.flags.writeable else None,
                                       transparent=transparent_parts(item.image))
        except Exception as e:  # noqa: BLE001
            self.record(item.source, FAILED, f"tiled translation failed: {type(e).__name__}: {e}",
                        item.seconds + time.perf_counter() - start)
            return
        item.release_pixels()
        self.submit_encode(item, out, time.perf_counter() - start, tiled=True)

    # encode
    def submit_encode(self, item: _Decoded, out: np.ndarray, seconds: float, tiled: bool) -> None:
        while len(self._encodes) >= 2 * self.batch_size + 2:
            self._encodes.popleft().result()
        self._encodes.append(self.pool.submit(self.encode, item, out, item.seconds + seconds, tiled))

    def encode(self, item: _Decoded, out: np.ndarray, seconds: float, tiled: bool) -> None:
        try:
            self._encode(item, out, seconds, tiled)
        except ManifestWriteError:
            raise  # stops the run (see convert_catalog)
        except Exception as e:  # noqa: BLE001 - whatever goes wrong, this file fails, the run goes on
            self.record(item.source, FAILED, f"could not encode: {type(e).__name__}: {e}", seconds)

    def _encode(self, item: _Decoded, out: np.ndarray, seconds: float, tiled: bool) -> None:
        start = time.perf_counter()
        source, image = item.source, item.image
        out, alpha, fmt, notes, to_alpha_output = finish_output(image, out, self.fmt, source.path.suffix)
        target = source.alpha_output if to_alpha_output else source.output
        try:
            _check_output_path(target, self.output_root)
            target.parent.mkdir(parents=True, exist_ok=True)
            written = image_writer.write_image(target, out, alpha, fmt=fmt, quality=self.quality,
                                            icc_profile=image.icc_profile, exif=image.exif,
                                            temp_tag=self.temp_tag, dpi=image.dpi, xmp=image.xmp,
                                            text=image.text)
        except Exception as e:  # noqa: BLE001 - disk full, permissions: this file fails, the run goes on
            source.output = target
            self.record(source, FAILED, f"could not write output: {type(e).__name__}: {e}",
                        seconds + time.perf_counter() - start)
            return
        source.output = target
        if source.moved_from is not None:
            notes.append(remove_moved_output(source.moved_from, _output_rel(source.moved_from, self.output_dir)))
        self.record(source, CONVERTED, "; ".join(notes), seconds + time.perf_counter() - start,
                    # Size and mtime: how a later run knows the file is still the one written here.
                    output_size=written.st_size, output_mtime_ns=written.st_mtime_ns, width=image.width,
                    height=image.height, tiled=tiled,
                    format=fmt, settings=accepted_settings(self.settings, source.rel)[0])

    def drain(self) -> None:
        while self._encodes:
            self._encodes.popleft().result()

    def run(self, todo: list[Source]) -> None:
        window = 2 * self.batch_size + 2  # decoded images held at once, besides the groups
        decodes: collections.deque = collections.deque()  # (pixels, future)
        groups: dict[tuple[int, int], list[_Decoded]] = collections.OrderedDict()
        held = 0
        queue = iter(todo)

        def refill():
            # At most `window` decodes, and past the first none once their
            # pixels (a sum over a few entries) reach the budget.
            while len(decodes) < window and not (decodes and sum(p for p, _ in decodes) >= _AHEAD_PIXELS):
                source = next(queue, None)
                if source is None:
                    return
                decodes.append((image_io.header_pixels(source.path), self.pool.submit(self.decode, source)))

        refill()
        while decodes:
            item, error, seconds = decodes.popleft()[1].result()
            refill()
            if error is not None:
                self.record(item, FAILED, error, seconds)
                continue
            height, width = item.model_input.shape[:2]
            if is_flat(item.model_input):
                self.pass_flat(item)
                continue
            if tiling.needs_tiling(height, width, self.tile):
                self.translate_tiled(item)
                continue
            group = groups.setdefault((height, width), [])
            group.append(item)
            held += 1
            if len(group) >= self.batch_size:
                held -= len(group)
                self.translate_group(groups.pop((height, width)))
            elif held > window:  # many sizes, few of each: run the biggest group
                key = max(groups, key=lambda k: len(groups[k]))
                held -= len(groups[key])
                self.translate_group(groups.pop(key))
        for key in list(groups):
            self.translate_group(groups.pop(key))
        self.drain()


def _check_output_path(target: pathlib.Path, output_root: str) -> None:
    """Refuses to write anywhere but inside the output folder (e.g. through a symlinked subfolder)."""
    parent = target.parent
    existing = parent
    while not existing.exists():
        existing = existing.parent
    if not _inside(os.path.realpath(existing), output_root):
        raise ValueError(f"{parent} leads outside the output folder; refused")


def _remove_stale_temp_files(output: pathlib.Path, temp_tag: str) -> None:
    """Temporary files a killed run of this shard left behind."""
    pattern = re.compile(r"^\..+\.\d+" + re.escape(temp_tag) + re.escape(image_writer.TEMP_SUFFIX) + "$")
    for dirpath, _, filenames in os.walk(output):
        for name in filenames:
            if pattern.match(name):
                try:
                    os.unlink(os.path.join(dirpath, name))
                except OSError:
                    pass


def recorded_output(record: dict, output_root: str | os.PathLike | None,
                    join: Callable[[str, str], str] = os.path.join) -> str | None:
    """Where ``record``'s output is now: its ``output_rel`` under today's
    output folder, so moving the folder (or mounting it elsewhere on another
    worker) keeps the run resumable; records without one give their ``output``.
    ``join``: Beam's ``FileSystems.join`` for object-store folders."""
    rel = record.get("output_rel")
    if rel and output_root is not None:
        return join(os.fspath(output_root), rel)
    return record.get("output")


def _output_rel(target: pathlib.Path | None, output_root: pathlib.Path) -> str | None:
    if target is None:
        return None
    try:
        return target.relative_to(output_root).as_posix()
    except ValueError:
        return None


def output_owners(previous: dict[str, dict]) -> dict[str, str]:
    """Which source each recorded output belongs to: ``output_rel``
    (case-folded, as output names are planned) -> the source's ``rel``."""
    return {record["output_rel"].casefold(): rel for rel, record in previous.items()
            if record.get("output_rel") and record.get("status") in (CONVERTED, SKIPPED)}


def outputs_of_killed_beam_runs(plans: Iterable[Iterable[str | bytes]]) -> set[str]:
    """The ``output_rel`` of every file the given ``.beam-plan-*.jsonl``
    contents planned to write. A Beam run deletes its plan when it ends,
    failed or not, so a plan left behind is a killed run's: its outputs may
    exist with no record of the settings they were made with."""
    outputs = set()
    for lines in plans:
        for line in lines:
            item = Manifest._parse(line)
            if item and not item.get("skip") and not item.get("refused"):
                outputs.update(item.get(key) for key in ("output_rel", "alpha_output_rel") if item.get(key))
    return outputs


def _moved_output(record: dict | None, output_root: pathlib.Path, contested: set[str],
                  planned: set[str]) -> pathlib.Path | None:
    """The output an earlier run wrote for this source under a name that
    several sources want now and none gets (``a.png`` for ``a.jpg`` under
    ``--format=png``, before an ``a.png`` joined the catalog), if it is still
    the file recorded. Left there, it would hold this source's translation
    under the other source's name."""
    rel = (record or {}).get("output_rel")
    if (not rel or record.get("status") not in (CONVERTED, SKIPPED) or rel.casefold() not in contested
            or rel.casefold() in planned):
        return None
    path = output_root / rel
    try:
        stat = path.stat()
    except OSError:
        return None
    # Size and modification time as recorded: a file put there since (a
    # BMP of the same size, say) is not ours to remove.
    ours = (stat.st_size, stat.st_mtime_ns) == (record.get("output_size"), record.get("output_mtime_ns"))
    return path if ours else None


def remove_moved_output(path: str | os.PathLike, rel: str) -> str:
    """Removes an output :func:`_moved_output` found, once its source's new
    one is written; returns the note for the source's record."""
    try:
        os.unlink(path)
    except OSError as e:
        return f"its earlier output {rel} could not be removed ({e.strerror or e})"
    return f"its earlier output {rel} was removed: another source now wants that name too"


def _skip_reason(source: Source, record: dict | None, settings: tuple[str, ...],
                 output_root: str | os.PathLike | None = None, owners: dict[str, str] | None = None,
                 unrecorded: set[str] | None = None) -> str | None:
    """Why ``source`` needs no conversion, or None to convert it.

    ``owners`` (:func:`output_owners` of the previous records): an existing
    output that a record of another source claims is not this source's
    (a replaced ``a.png`` -> ``a.jpg``, or names re-planned when a new
    source arrived), so this source is converted. ``unrecorded``
    (:func:`outputs_of_killed_beam_runs`): outputs a killed run may have
    written with other settings are converted again, not taken over.
    ``settings``: :func:`accepted_settings` for this source.
    """
    root = None if output_root is None else pathlib.Path(output_root)
    planned = {_output_rel(p, root) for p in (source.output, source.alpha_output)} - {None}
    if record is None:
        # Only the planned output itself: the PNG for a source with
        # transparency would have been recorded, had this source written it.
        if source.output is None or not source.output.exists():
            return None
        rel = _output_rel(source.output, root)
        if rel is not None and ((owners or {}).get(rel.casefold(), source.rel) != source.rel
                                or rel in (unrecorded or ())):
            return None
        return "output already exists (no manifest record); --overwrite to convert again"
    if record.get("status") not in (CONVERTED, SKIPPED) or source.stat is None:
        return None
    if record.get("settings") not in settings:
        return None
    if (record.get("source_size"), record.get("source_mtime_ns")) != (source.stat.st_size, source.stat.st_mtime_ns):
        return None
    if root is not None and record.get("output_rel") and record["output_rel"] not in planned:
        return None  # the plan moved its output (another source now shares its old name)
    output = recorded_output(record, output_root)
    if not output or record.get("output_size") is None:
        return None
    try:
        if os.path.getsize(output) != record["output_size"]:
            return None
    except OSError:
        return None
    return "unchanged since the recorded conversion"


def convert_catalog(
    translator: Translator | str | os.PathLike,
    source: str | os.PathLike,
    output: str | os.PathLike,
    *,
    tone: Any = None,
    strength: float | None = None,
    format: str = "same",  # noqa: A002 - the --format flag's name
    quality: int = 95,
    batch_size: int = 4,
    tile: int | None = tiling.DEFAULT_TILE,
    overlap: int = tiling.DEFAULT_OVERLAP,
    stats_size: int = tiling.DEFAULT_STATS_SIZE,
    max_pixels: int | None = None,
    overwrite: bool = False,
    num_shards: int = 1,
    shard_index: int = 0,
    precision: str = "auto",
    context: int | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> ConversionSummary:
    """Converts every image of a catalog and reports on each in a manifest.

    Args:
      translator: a :class:`~gan_style.Translator` or a path to its ``.keras``.
      source: a folder (walked recursively), a glob, one image, or a text
        file listing image paths relative to its own folder.
      output: the output folder; relative structure mirrors ``source``.
      tone: a preset name, profile JSON path, dict or Profile (None keeps the
        translator's).
      strength: style strength 0..1 (None keeps the translator's / profile's).
      format: ``same`` (JPEG, PNG, WebP, TIFF, BMP stay; GIF, and alpha in a
        format without it, become PNG), ``jpg``, ``png`` or ``webp``.
      quality: JPEG/WebP quality 1..100.
      batch_size: images of one size per model call.
      tile: images with a side over ``tile`` are converted in tiles of this
        size (0/None: never tile).
      overlap: tile overlap in pixels.
      stats_size: long side of the thumbnail whose instance-norm statistics
        the tiles share.
      max_pixels: sources with more pixels fail (checked from the header).
      overwrite: convert again even when the manifest says the output is done.
      num_shards, shard_index: convert only the sources whose stable hash of
        the relative path falls in this shard.
      precision: ``auto`` (bfloat16 on CPUs that compute it natively, else
        float32), ``float32`` or ``bfloat16``; see :mod:`gan_style.precision`.
      context: pixels of mirrored context around each image for the
        generator (None keeps the translator's; see
        :class:`~gan_style.Translator`).
      workers: decode/encode threads (default: the CPU count).
      progress: show a progress bar on stderr.

    Returns:
      A :class:`ConversionSummary`; its ``exit_code`` is 0 when nothing
      failed and :data:`EXIT_SOME_FAILED` otherwise.

    Raises:
      FileNotFoundError, ValueError: bad arguments (named), before any work.
      ManifestWriteError: the manifest could not be written mid-run (a full
        disk); the run stops there and a rerun resumes it.
    """
    start = time.monotonic()
    _check_options(format, quality, batch_size, tile, overlap, max_pixels, num_shards, shard_index, context,
                   strength)
    precision = resolve_precision(precision)
    translator = _resolve_translator(translator, tone, strength, precision, context)
    tiling.check_tiling(translator, tile, overlap, stats_size)
    output = pathlib.Path(output)
    _, entries = collect_sources(source, output)
    contested = _plan_outputs(entries, output, format)  # over every shard's entries: the same names everywhere
    planned = {rel.casefold() for e in entries for rel in (_output_rel(e.output, output),
                                                            _output_rel(e.alpha_output, output)) if rel}
    entries = [e for e in entries if shard_of(e.rel, num_shards) == shard_index]
    settings = run_settings(translator, format=format, quality=int(quality), tile=int(tile or 0),
                                     overlap=int(overlap), stats_size=int(stats_size), precision=precision)
    temp_tag = shard_tag(num_shards, shard_index)
    with contextlib.ExitStack() as stack:
        try:
            output.mkdir(parents=True, exist_ok=True)
            stack.enter_context(output_lock(output, num_shards, shard_index))
            recorded_before = Manifest.read(output, RESUME_FIELDS)
            previous = {} if overwrite else recorded_before
            owners = output_owners(previous)
            unrecorded = set() if overwrite else outputs_of_killed_beam_runs(
                path.read_bytes().splitlines() for path in sorted(output.glob(BEAM_PLANS)))
            manifest_path = output / manifest_name(num_shards, shard_index)
            Manifest.compact(manifest_path)
            manifest = Manifest(manifest_path)
        except OSError as e:
            raise ValueError(f"--output {os.fspath(output)!r}: cannot write there ({e.strerror or e})") from None
        _remove_stale_temp_files(output, temp_tag)
        bar = _Progress(len(entries), progress)
        converter = _Converter(
            translator, manifest, bar, fmt=format, quality=quality, batch_size=batch_size,
            tile=int(tile or 0), overlap=overlap, stats_size=stats_size, max_pixels=max_pixels,
            settings=settings, temp_tag=temp_tag, workers=workers or os.cpu_count() or 2,
            output_dir=output,
        )
        try:
            todo = []
            for entry in entries:
                if entry.refused:
                    converter.record(entry, FAILED, entry.refused)
                    continue
                try:
                    entry.stat = os.stat(entry.path)
                except OSError:
                    entry.stat = None  # read_image reports why
                accepted = accepted_settings(settings, entry.rel)
                try:
                    reason = None if overwrite else _skip_reason(entry, previous.get(entry.rel), accepted, output,
                                                                 owners, unrecorded)
                    record = previous.get(entry.rel)
                    if reason is not None and record is None:  # an existing output we take as ours from now on
                        record = {"output_size": entry.output.stat().st_size, "settings": accepted[0]}
                except OSError as e:  # its output folder cannot be looked into, say: this source fails, not the run
                    converter.record(entry, FAILED, f"cannot look at its output {entry.output}: {e.strerror or e}")
                    continue
                if reason is not None:
                    recorded = recorded_output(record, output)
                    if recorded:
                        entry.output = pathlib.Path(recorded)
                    keep = {k: record[k] for k in CARRIED_FIELDS if k in record}
                    converter.record(entry, SKIPPED, reason, **keep)
                    continue
                entry.moved_from = _moved_output(recorded_before.get(entry.rel), output, contested, planned)
                todo.append(entry)
            converter.run(todo)
        finally:
            converter.pool.shutdown(wait=True, cancel_futures=True)
            manifest.close()
            bar.close()
        converter.summary.seconds = time.monotonic() - start
        return converter.summary
