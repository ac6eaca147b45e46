r"""Catalog conversion on Apache Beam (the optional ``gan-style[beam]`` extra).

``python infer.py --runner=beam --input=SRC --output=DST [infer.py flags] -- [Beam options]``
runs :func:`run_pipeline`: the same per-file work as :func:`gan_style.convert_catalog`
(decode -> translate, tiled when large -> format/alpha -> encode -> atomic write
-> one manifest record), spread over Beam workers, so one catalog can be
converted by a DirectRunner on this machine or by Dataflow, Flink or Spark
without a change.

The pipeline::

    plan (launcher)  ->  ReadFromText(plan)  ->  Reshuffle  ->  ParDo(ConvertFn)
                                                                  |-- main: converted / skipped records
                                                                  '-- dead_letter: failed records
    manifest  = main + dead_letter  -> DST/manifest.beam-<run>-SSSSS-of-NNNNN.jsonl
    dead letters                    -> DST/dead_letter.beam-<run>-SSSSS-of-NNNNN.jsonl

* The launcher lists the sources and plans the output names with the same
  rules as ``infer.py`` (path safety, mirrored folders, clashing names), works
  out which sources a previous run already converted, and writes that plan to
  ``DST/.beam-plan-<run>.jsonl``; the workers read it in parallel, so the
  pipeline graph stays small for a catalog of millions of files.
* :class:`ConvertFn` loads the Translator once per worker in ``setup()``,
  importing :mod:`gan_style` there so its registered Keras classes exist on
  the worker.
* All reads and writes go through ``apache_beam.io.filesystems``: local paths
  here, ``gs://`` / ``s3://`` where the Beam installation has those
  filesystems. Outputs are written to a temporary name next to the final one
  and renamed (atomic on a local disk; object stores publish whole objects).
* Every failed file is a record with its reason on the ``dead_letter`` output;
  nothing is dropped, and a failing file never fails the bundle.
* Manifest records have the keys of ``infer.py``'s, and the manifests are
  named ``manifest*.jsonl``, so a later local run (or Beam run) resumes from
  them. Each launcher drops the records that newer ones supersede from
  earlier Beam runs' manifests, so nightly runs do not pile up copies.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import glob
import io
import json
import logging
import os
import pathlib
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

#: Tag of the failed-records output.
DEAD_LETTER = "dead_letter"
_COUNTERS = ("converted", "skipped", "failed")
_NAMESPACE = "gan_style"


def _is_remote(path: str) -> bool:
    """A path with a scheme (gs://, s3://, ...), handled by a Beam filesystem."""
    return "://" in str(path)


# -- planning (on the launcher) --------------------------------------------------


def _remote_entries(source: str, output: str = ""):
    """Sources of a remote ``--input``: a glob, a folder, one image, or a list file.
    (``output``: this run's output folder, which an earlier run's is not.)"""
    from gan_style import convert, image_io

    if glob.has_magic(source):
        first = min(i for i, c in enumerate(source) if c in "*?[")
        root, pattern = source[:first].rsplit("/", 1)[0], source
    elif source.endswith("/") or pathlib.PurePosixPath(source).suffix.lower() not in image_io.IMAGE_EXTENSIONS | {
        ".txt", ".lst", ".list", ".csv"
    }:
        root, pattern = source.rstrip("/"), source.rstrip("/") + "/**"
    elif pathlib.PurePosixPath(source).suffix.lower() in image_io.IMAGE_EXTENSIONS:
        root, pattern = source.rsplit("/", 1)[0], source
    else:  # a text file listing paths relative to its folder
        root = source.rsplit("/", 1)[0]
        with FileSystems.open(source) as f:
            lines = f.read().decode("utf-8").splitlines()
        entries, seen = [], set()
        for number, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            pure = pathlib.PurePosixPath(line)
            if pure.is_absolute() or _is_remote(line):
                entries.append(convert.Source(pathlib.Path(line), line, f"absolute path refused (line {number} of {source})"))
            elif ".." in pure.parts:
                entries.append(convert.Source(pathlib.Path(line), line, f"'..' refused in a listed path (line {number} of {source})"))
            elif pure.as_posix() not in seen:
                seen.add(pure.as_posix())
                entries.append(convert.Source(pathlib.Path(pure), pure.as_posix()))
        return root, entries
    matches = FileSystems.match([pattern])[0].metadata_list
    this_run = output.rstrip("/")[len(root):].strip("/") if output.startswith(root.rstrip("/") + "/") else None
    earlier = [folder for folder in _earlier_outputs(root, [m.path for m in matches], not glob.has_magic(source))
               if folder != this_run]
    entries = []
    for meta in sorted(matches, key=lambda m: m.path):
        rel = meta.path[len(root):].lstrip("/")
        if image_io.is_hidden(pathlib.PurePosixPath(rel)):
            continue  # hidden, as the local walk leaves them: ._x.jpg resource forks, .thumbs/
        if any(rel.startswith(folder + "/") for folder in earlier):
            continue  # under an earlier conversion's output folder, as the local walk leaves them
        if pathlib.PurePosixPath(rel).suffix.lower() in image_io.IMAGE_EXTENSIONS and rel:
            entries.append(convert.Source(pathlib.Path(rel), rel))
    if not entries and not matches:
        raise FileNotFoundError(f"--input {source!r}: nothing matched")
    if earlier:
        convert._warn_earlier_outputs(source, earlier)
    return root, entries


def _earlier_outputs(root: str, paths: list[str], listed_all: bool) -> list[str]:
    """Sub-folders of ``root`` (relative) that hold an earlier conversion's
    manifest or plan, from the listed ``paths``, or (when a glob listed only
    some files, ``listed_all`` False) from a listing of just those files."""
    from gan_style import convert

    if not listed_all:
        paths = []
        for marker in convert._RUN_FILES:
            with contextlib.suppress(Exception):  # nothing matched
                paths += [m.path for m in FileSystems.match([f"{root}/**/{marker}"])[0].metadata_list]
    folders = set()
    for path in paths:
        folder, _, name = path[len(root):].lstrip("/").rpartition("/")
        if folder and convert._is_run_file(name):
            folders.add(folder)
    return sorted(folders)


def plan_catalog(source: str, output: str, fmt: str = "same") -> list[dict]:
    """Lists a catalog and plans each source's output, as ``infer.py`` does.

    Local inputs go through :func:`gan_style.convert.collect_sources` (same
    path-safety rules and relative names); remote ones (``gs://...``) are
    listed with Beam's filesystems. Output names come from the same planner,
    so ``a.jpg`` + ``a.png`` with ``--format=png`` become ``a_jpg.png`` and
    ``a_png.png`` here too.

    Returns:
      One dict per source: ``source``, ``rel``, ``output`` (None when
      refused) and ``refused`` (the reason, or None).

    Raises:
      FileNotFoundError, ValueError: as :func:`~gan_style.convert.collect_sources`.
    """
    return _plan(source, output, fmt)[0]


def _plan(source: str, output: str, fmt: str) -> tuple[list[dict], set[str]]:
    """:func:`plan_catalog`'s plan, and the output names (relative,
    case-folded) that several sources wanted and none got."""
    from gan_style import convert

    if _is_remote(source):
        root, entries = _remote_entries(source, output)
        # The local checks of collect_sources, on object-store paths.
        root_key, output_key = root.rstrip("/") + "/", output.rstrip("/") + "/"
        if output_key == root_key:
            raise ValueError(f"--output {output!r} is the input folder: outputs would overwrite the inputs")
        if root_key.startswith(output_key):
            raise ValueError(f"--input root {root!r} is inside --output {output!r}: outputs could overwrite inputs")
        inside = output_key[len(root_key):] if output_key.startswith(root_key) else None
        if inside:  # earlier outputs under an output folder inside the input are not inputs
            entries = [e for e in entries if e.refused or not (e.rel + "/").startswith(inside)]
        for entry in entries:
            if not entry.refused:
                entry.path = FileSystems.join(root, entry.rel)
    else:
        if _is_remote(output):
            output_local = os.path.join(tempfile.gettempdir(), "gan_style-remote-output-" + uuid.uuid4().hex)
        else:
            output_local = output
        _, entries = convert.collect_sources(source, output_local)
    # Plan relative targets against a dummy root, then join with the real one
    # (pathlib would collapse the "//" of gs://).
    dummy = pathlib.PurePosixPath("/")
    contested = convert._plan_outputs(entries, dummy, fmt)  # type: ignore[arg-type]
    def planned(path):
        if path is None:
            return None, None
        rel = pathlib.PurePosixPath(path).relative_to(dummy).as_posix()
        return FileSystems.join(output, rel), rel

    plan = []
    for entry in entries:
        target, target_rel = planned(entry.output)
        alpha_target, alpha_rel = planned(entry.alpha_output)
        plan.append({"source": str(entry.path), "rel": entry.rel, "output": target, "output_rel": target_rel,
                     "alpha_output": alpha_target, "alpha_output_rel": alpha_rel, "refused": entry.refused})
    return plan, contested


def _manifest_files(output: str, pattern: str = "manifest*.jsonl") -> list[str]:
    """Every ``manifest*.jsonl`` (or ``pattern``) in ``output``, sorted (none when it does not exist yet)."""
    if not _is_remote(output):
        # pathlib, not FileSystems.match: a folder name with [ or * is no pattern.
        return [str(p) for p in sorted(pathlib.Path(output).glob(pattern))] if os.path.isdir(output) else []
    try:
        matches = FileSystems.match([FileSystems.join(output, pattern)])[0].metadata_list
    except Exception:  # noqa: BLE001 - no output folder yet
        return []
    return sorted(m.path for m in matches)


def _plan_files(output: str) -> list[str]:
    """Plans that killed Beam runs left in ``output`` (a finished run deletes its own)."""
    from gan_style import convert

    return _manifest_files(output, convert.BEAM_PLANS)


def _read_lines(path: str) -> list[bytes]:
    with FileSystems.open(path, compression_type="uncompressed") as f:
        return f.read().splitlines(keepends=True)


def _previous_records(output: str) -> dict[str, dict]:
    """Newest manifest record per relative path over every ``manifest*.jsonl`` in
    ``output`` (:meth:`gan_style.convert.Manifest.newest`, as a local run reads them).

    Every Beam run writes a record for each file of its plan into new
    ``manifest.beam-<run>-*`` files, so a nightly run over a catalog would pile
    up a full copy of the catalog's records per night, all read by every later
    run. So earlier Beam runs' manifests lose the records that
    newer ones supersede: a file left with none is deleted, one left mostly
    superseded is rewritten (temporary name, then rename). ``infer.py``'s own
    ``manifest*.jsonl`` are left to its compaction (a local run may be
    appending to them right now); a Beam run's files appear only once whole.
    """
    from gan_style import convert

    contents: dict[str, list[bytes]] = {}
    for path in _manifest_files(output):
        try:
            contents[path] = _read_lines(path)
        except Exception:
            # Gone: pruned away by a launcher running beside this one (superseded records only).
            if FileSystems.exists(path):
                raise
    newest = convert.Manifest.newest(
        (path, (line.decode("utf-8", "replace") for line in lines)) for path, lines in contents.items())
    kept: dict[str, set[int]] = {path: set() for path in contents}
    for _, path, number in newest.values():
        kept[path].add(number)
    for path, numbers in kept.items():
        if FileSystems.split(path)[1].startswith("manifest.beam-") and (
                2 * len(numbers) < len(contents[path]) or not contents[path]):  # empty: a run with nothing to do
            _prune_manifest(path, contents[path], numbers)
    # A run with no failures leaves empty dead-letter files: one a night would pile up.
    for path in _manifest_files(output, "dead_letter.beam-*.jsonl"):
        with contextlib.suppress(Exception):
            if not _read_lines(path):
                FileSystems.delete([path])
    return {rel: record for rel, (record, _, _) in newest.items()}


def _prune_manifest(path: str, lines: list[bytes], keep: set[int]) -> None:
    """Rewrites a finished Beam run's manifest with only the lines numbered
    ``keep`` of ``lines``, its content as read. From that content, not a new
    read: a launcher beside this one may have pruned the file meanwhile, and
    the numbers would point at other lines. Two launchers pruning one file
    write what each read minus what each saw superseded; neither drops a
    record that is the newest for its source."""
    head, name = FileSystems.split(path)
    temp = FileSystems.join(head, f".{name}.{uuid.uuid4().hex[:12]}.prune")
    try:
        if not keep:
            FileSystems.delete([path])
            return
        with FileSystems.create(temp) as f:
            f.write(b"".join(line if line.endswith(b"\n") else line + b"\n"
                             for number, line in enumerate(lines) if number in keep))
        FileSystems.rename([temp], [path])
    except Exception as e:  # noqa: BLE001 - pruning saves space; the run goes on without it
        logging.getLogger(__name__).warning("could not prune the superseded records of %s: %s", path, e)
        with contextlib.suppress(Exception):
            FileSystems.delete([temp])


def _skip(item: dict, record: dict | None, settings: dict[str, str], output: str,
          owners: dict[str, str] | None = None, unrecorded: set[str] | None = None) -> tuple[str, dict] | None:
    """(reason, kept record fields) when ``item`` needs no conversion, else None."""
    from gan_style import convert

    accepted = convert.accepted_settings(settings, item["rel"])

    def kept(record: dict, out: str, out_rel: str | None) -> dict:
        return {**{k: record[k] for k in convert.CARRIED_FIELDS if k in record}, "output": out, "output_rel": out_rel}

    if _is_remote(item["source"]) or _is_remote(item["output"]):
        # No mtimes to trust across object stores: same settings and the recorded output still there.
        if (record and record.get("status") in (convert.CONVERTED, convert.SKIPPED) and record.get("settings") in accepted
                and record.get("output_rel") in (None, item["output_rel"], item.get("alpha_output_rel"))):
            out = convert.recorded_output(record, output, join=FileSystems.join)
            if out and FileSystems.exists(out):
                return "recorded as converted with these settings; output present", kept(
                    record, out, record.get("output_rel"))
        return None
    alpha = item.get("alpha_output")
    source = convert.Source(pathlib.Path(item["source"]), item["rel"], output=pathlib.Path(item["output"]),
                            alpha_output=pathlib.Path(alpha) if alpha else None)
    try:
        source.stat = os.stat(source.path)
    except OSError:
        return None
    reason = convert._skip_reason(source, record, accepted, output, owners, unrecorded)
    if reason is None:
        return None
    if record is None:  # an existing output we take as ours from now on
        out, out_rel = item["output"], item["output_rel"]
        return reason, kept({"output_size": os.path.getsize(out), "settings": accepted[0]}, out, out_rel)
    return reason, kept(record, convert.recorded_output(record, output), record.get("output_rel"))


# -- the DoFn -----------------------------------------------------------------------


def _encode(rgb, alpha, fmt: str, quality: int, decoded) -> bytes:
    """The bytes :func:`gan_style.image_writer.write_image` would write, with
    ``decoded``'s metadata (an :class:`gan_style.image_io.DecodedImage`)."""
    from gan_style import image_writer

    image = image_writer.pil_image(rgb, alpha, fmt)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **image_writer._save_options(
        fmt, quality, decoded.icc_profile, decoded.exif, decoded.dpi, decoded.xmp, decoded.text))
    return buffer.getvalue()


def _temp_name(target: str, tag: str = "") -> str:
    from gan_style import image_writer

    head, _, name = target.rpartition("/")
    temp = image_writer.temp_file_name(name, f"{uuid.uuid4().hex[:12]}{tag}")
    return f"{head}/{temp}" if head else temp


def _remove_stale_temp_files(output: str, tag: str = "") -> None:
    """Temporary files a killed Beam run of this shard left (local output folders;
    object stores have none to fear). The shard's tag is in the name, so shards
    running at the same time into one folder never delete each other's writes."""
    from gan_style import image_writer

    pattern = re.compile(r"^\..+\.[0-9a-f]{12}" + re.escape(tag + image_writer.TEMP_SUFFIX) + "$")
    for dirpath, _, filenames in os.walk(output):
        for name in filenames:
            if pattern.match(name):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(dirpath, name))


def _write_atomically(target: str, data: bytes, tag: str = "") -> None:
    """Temporary name in the same folder, then rename: never a truncated file under ``target``."""
    temp = _temp_name(target, tag)
    try:
        with FileSystems.create(temp) as f:
            f.write(data)
        FileSystems.rename([temp], [target])
    except BaseException:
        try:
            FileSystems.delete([temp])
        except Exception as cleanup:  # noqa: BLE001 - nothing was written, or already gone
            logging.getLogger(__name__).debug("no temporary %s to remove: %s", temp, cleanup)
        raise


class ConvertFn(beam.DoFn):
    """Converts one planned source; records go to the main or ``dead_letter`` output.

    Args:
      model: the Translator ``.keras`` (local path or any Beam filesystem path).
      tone: None (keep the model's) or the fields of a
        :class:`gan_style.tonal.Profile` resolved on the launcher, as a plain
        dict (a profile file need not exist on workers, and unpickling the
        DoFn needs no gan_style).
      strength, fmt, quality, batch_size, tile, overlap, stats_size,
      max_pixels: as :func:`gan_style.convert_catalog`.
      precision: ``float32`` or ``bfloat16`` (``auto`` is resolved on the
        launcher, so that every worker computes what the fingerprint says).
      context: mirrored context in pixels (None keeps the model's).
      settings: the run's settings fingerprints (:func:`gan_style.convert.run_settings`).
      output_root: the output folder (local paths: writes are kept inside it).
      temp_tag: in every temporary file's name (the shard), so that a run
        cleans up only its own shard's leftovers.
    """

    def __init__(self, model: str, *, tone: Any, strength: float | None, fmt: str, quality: int,
                 batch_size: int, tile: int, overlap: int, stats_size: int, max_pixels: int | None,
                 settings: dict[str, str], output_root: str, precision: str = "float32", context: int | None = None,
                 temp_tag: str = ""):
        self.model, self.tone, self.strength = str(model), tone, strength
        self.precision, self.context = precision, context
        self.fmt, self.quality, self.batch_size = fmt, int(quality), int(batch_size)
        self.tile, self.overlap, self.stats_size = int(tile or 0), int(overlap), int(stats_size)
        self.max_pixels, self.settings, self.output_root = max_pixels, settings, output_root
        self.temp_tag = temp_tag
        self.counters = {name: beam.metrics.Metrics.counter(_NAMESPACE, name) for name in _COUNTERS}

    def setup(self):
        # Imported here: the worker needs gan_style's registered Keras classes
        # before the model is deserialised.
        import gan_style  # noqa: F401
        from gan_style import convert, tonal
        from gan_style.translator import load_translator

        tone = None if self.tone is None else tonal.Profile(**self.tone)
        with _local_model(self.model) as model:
            self._translator = load_translator(model, tone=tone, strength=self.strength,
                                               context=self.context).with_precision(self.precision)
        self._translate = convert.translate_function(self._translator)
        self._tiled = None

    def _record(self, item: dict, status: str, reason: str, seconds: float, **extra) -> dict:
        from gan_style import convert

        record = {
            "source": item["source"],
            "output": item.get("output"),
            "output_rel": item.get("output_rel"),
            "status": status,
            "reason": reason,
            "seconds": round(float(seconds), 4),
            "rel": item["rel"],
            "time": convert.record_time(),
        }
        record.update(extra)
        self.counters[status].inc()
        return record

    def process(self, line: str) -> Iterable[str]:
        """One plan line in, one manifest line out (JSON, ASCII escapes).

        Records travel as ASCII JSON rather than dicts: a file name that is
        not valid UTF-8 holds surrogates, which Beam's coders (UTF-8) refuse.
        """
        record = self._process(json.loads(line) if isinstance(line, str) else line)
        text = json.dumps(record)
        if record["status"] == "failed":
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, text)
        else:
            yield text

    def _process(self, item: dict) -> dict:
        if item.get("refused"):
            return self._record(dict(item, output=None), "failed", item["refused"], 0.0)
        if item.get("skip"):
            reason, keep = item["skip"]
            item = dict(item, output=keep.pop("output", item["output"]), output_rel=keep.pop("output_rel", None))
            return self._record(item, "skipped", reason, 0.0, **item.get("stat", {}), **keep)
        start = time.perf_counter()
        try:
            return self._convert(item, start)
        except Exception as e:  # noqa: BLE001 - whatever goes wrong, this file fails, the run goes on
            logging.getLogger(__name__).warning("%s: %s", item["source"], e)
            return self._record(item, "failed", f"{type(e).__name__}: {e}", time.perf_counter() - start)

    def _read(self, item: dict, stat: dict):
        from gan_style import image_io

        source = item["source"]
        if not _is_remote(source):
            try:
                st = os.stat(source)
                stat.update(source_size=st.st_size, source_mtime_ns=st.st_mtime_ns)
            except OSError:
                pass  # read_image says why
            return image_io.read_image(source, max_pixels=self.max_pixels, rgbx_over=self.tile or None)
        try:
            with FileSystems.open(source) as f:
                data = f.read()
        except Exception as e:  # noqa: BLE001
            raise image_io.ImageError(source, f"could not read: {type(e).__name__}: {e}") from None
        stat.update(source_size=len(data))
        return image_io.read_image_bytes(data, name=source, max_pixels=self.max_pixels,
                                        rgbx_over=self.tile or None)

    def _convert(self, item: dict, start: float) -> dict:
        import numpy as np

        from gan_style import convert, image_io, image_writer, tiling

        stat: dict = {}
        try:
            image = self._read(item, stat)
        except image_io.ImageError as e:
            return self._record(item, "failed", e.reason, time.perf_counter() - start, **stat)
        except Exception as e:  # noqa: BLE001
            return self._record(item, "failed", f"could not read: {type(e).__name__}: {e}",
                                time.perf_counter() - start, **stat)
        problem = image_writer.size_problem(
            image_writer.guess_output_format(self.fmt, pathlib.PurePosixPath(item["rel"]).suffix),
            image.height, image.width)
        if problem is not None:
            return self._record(item, "failed", problem, time.perf_counter() - start, **stat)
        x = convert.model_input(image)
        flat = convert.is_flat(x)
        tiled = not flat and tiling.needs_tiling(x.shape[0], x.shape[1], self.tile)
        try:
            if flat:  # tone only: an image with alpha is toned in its own colours
                out = convert.untranslated(self._translator, image.rgb, out=x if x.flags.writeable else None)
                image.notes.append(convert.FLAT_NOTE)
            elif tiled:
                if self._tiled is None:
                    self._tiled = convert.tiled_translator(self._translator, self.tile, self.overlap,
                                                           self.stats_size, self.batch_size)
                # In place when the decode buffer is ours (see read_image's rgbx_over).
                out = self._tiled.generate(x, out=x if x.flags.writeable else None,
                                           transparent=convert.transparent_parts(image))
            else:
                out = convert.translate_decoded(self._translate, [image], [x])[0]
        except Exception as e:  # noqa: BLE001
            what = "tiled translation" if tiled else "translation"
            return self._record(item, "failed", f"{what} failed: {type(e).__name__}: {e}",
                                time.perf_counter() - start, **stat)
        del x
        image = convert.without_pixels(image)
        out, alpha, fmt, notes, to_alpha_output = convert.finish_output(
            image, np.asarray(out), self.fmt, pathlib.PurePosixPath(item["rel"]).suffix)
        if to_alpha_output:
            item = dict(item, output=item["alpha_output"], output_rel=item["alpha_output_rel"])
        target = item["output"]
        try:
            if not _is_remote(target):
                convert._check_output_path(pathlib.Path(target), self.output_root)
            data = _encode(out, alpha, fmt, self.quality, image)
            _write_atomically(target, data, self.temp_tag)
            # Its mtime tells a later run that the file is still the one recorded.
            written = {} if _is_remote(target) else {"output_mtime_ns": os.stat(target).st_mtime_ns}
        except Exception as e:  # noqa: BLE001 - disk full, permissions: this file fails
            return self._record(item, "failed", f"could not write output: {type(e).__name__}: {e}",
                                time.perf_counter() - start, **stat)
        if item.get("moved_from"):
            notes.append(convert.remove_moved_output(item["moved_from"], item["moved_from_rel"]))
        return self._record(item, "converted", "; ".join(notes), time.perf_counter() - start, **stat,
                            output_size=len(data), **written, width=image.width, height=image.height, tiled=tiled,
                            format=fmt, settings=convert.accepted_settings(self.settings, item["rel"])[0])


# -- the pipeline -------------------------------------------------------------------


def build_pipeline(pipeline: beam.Pipeline, plan_path: str, output: str, run_id: str,
                   convert_fn: ConvertFn) -> None:
    """Adds the conversion to ``pipeline``: plan file -> records -> manifest + dead-letter files."""
    results = (
        pipeline
        | "ReadPlan" >> beam.io.ReadFromText(plan_path)
        # Spreads the files over workers: a small plan file is one split otherwise.
        | "Spread" >> beam.Reshuffle()
        | "Convert" >> beam.ParDo(convert_fn).with_outputs(DEAD_LETTER, main="done")
    )
    dead = results[DEAD_LETTER]  # records arrive as JSON lines already
    (
        (results.done, dead)
        | "AllRecords" >> beam.Flatten()
        | "WriteManifest" >> beam.io.WriteToText(
            FileSystems.join(output, f"manifest.beam-{run_id}"), file_name_suffix=".jsonl")
    )
    (
        dead
        | "WriteDeadLetter" >> beam.io.WriteToText(
            FileSystems.join(output, f"dead_letter.beam-{run_id}"), file_name_suffix=".jsonl")
    )


@contextlib.contextmanager
def _local_model(model: str):
    """A local path to ``model``: a remote one is copied into a temporary
    folder, removed once loaded (the model is in memory by then), so runs on
    long-lived workers do not fill /tmp with copies."""
    if not _is_remote(model):
        yield model
        return
    folder = tempfile.mkdtemp(prefix="gan_style-model-")
    try:
        local = os.path.join(folder, os.path.basename(model))
        with FileSystems.open(model) as src, open(local, "wb") as dst:
            dst.write(src.read())
        yield local
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class PipelineFailed(RuntimeError):
    """The pipeline stopped on an error after it started (infer.py: exit status 4)."""


def _check_pipeline_args(pipeline_args: Sequence[str]) -> None:
    """Beam only warns about options it does not know and runs without them
    (a mistyped ``--direct_num_worker=2`` ran on one worker): refuse them."""
    options = PipelineOptions(list(pipeline_args))
    unknown = sorted(set(options.get_all_options(retain_unknown_options=True))
                     - set(options.get_all_options(retain_unknown_options=False)))
    if unknown:
        raise ValueError(
            f"Beam options not recognised after `--`: {', '.join('--' + name for name in unknown)} "
            "(gan_style's own flags, such as --tone, go before `--`)"
        )


def run_pipeline(
    model: str | os.PathLike,
    source: str,
    output: str,
    *,
    tone: Any = None,
    strength: float | None = None,
    format: str = "same",  # noqa: A002 - the --format flag's name
    quality: int = 95,
    batch_size: int = 4,
    tile: int | None = None,
    overlap: int | None = None,
    stats_size: int | None = None,
    max_pixels: int | None = None,
    overwrite: bool = False,
    num_shards: int = 1,
    shard_index: int = 0,
    precision: str = "auto",
    context: int | None = None,
    pipeline_args: Sequence[str] = (),
):
    """Converts a catalog on Beam; the counterpart of :func:`gan_style.convert_catalog`.

    Arguments are those of ``convert_catalog`` (``num_shards``/``shard_index``
    still select a shard of the catalog, though a Beam runner needs none);
    ``pipeline_args`` are Beam's own options (``--runner=DataflowRunner``,
    ``--direct_num_workers=2``, ...; default: the DirectRunner).

    Returns:
      A :class:`gan_style.convert.ConversionSummary` (counts from the
      pipeline's metrics; ``manifest`` names the manifest file pattern).

    Raises:
      FileNotFoundError, ValueError: bad arguments (named), before the pipeline starts.
      PipelineFailed: the pipeline stopped on an error once started.
    """
    from gan_style import convert, tiling, tonal

    start = time.monotonic()
    tile = tiling.DEFAULT_TILE if tile is None else tile
    overlap = tiling.DEFAULT_OVERLAP if overlap is None else overlap
    stats_size = tiling.DEFAULT_STATS_SIZE if stats_size is None else stats_size
    convert._check_options(format, quality, batch_size, tile, overlap, max_pixels, num_shards, shard_index,
                           context, strength)
    _check_pipeline_args(pipeline_args)
    precision = convert.resolve_precision(precision)
    model, output, source = str(model), str(output), str(source)
    if not _is_remote(model) and not os.path.exists(model):
        raise FileNotFoundError(f"--model {model!r}: not found")
    profile = None if tone is None else tonal.resolve_tone(tone)
    # The launcher loads the model once too: validates it and --tile early, and
    # fingerprints the settings exactly as the local run does (so either resumes the other).
    with _local_model(model) as local_model:
        translator = convert._resolve_translator(local_model, profile, strength, precision, context)
    tiling.check_tiling(translator, tile, overlap, stats_size)
    settings = convert.run_settings(translator, format=format, quality=int(quality), tile=int(tile or 0),
                                             overlap=int(overlap), stats_size=int(stats_size),
                                             precision=precision)
    del translator

    plan, contested = _plan(source, output, format)
    # Over every shard's plan, as contested: names any shard will write.
    planned = {rel.casefold() for p in plan for rel in (p["output_rel"], p["alpha_output_rel"]) if rel}
    plan = [p for p in plan if convert.shard_of(p["rel"], num_shards) == shard_index]
    temp_tag = convert.shard_tag(num_shards, shard_index)
    lock = contextlib.ExitStack()
    if not _is_remote(output):
        try:
            os.makedirs(output, exist_ok=True)
            lock.enter_context(convert.output_lock(output, num_shards, shard_index))
        except OSError as e:
            raise ValueError(f"--output {output!r}: cannot write there ({e.strerror or e})") from None
    with lock:  # from here on the output folder's records are this run's to read and prune
        if not _is_remote(output):
            _remove_stale_temp_files(output, temp_tag)
        recorded_before = _previous_records(output)
        previous = {} if overwrite else recorded_before
        owners = convert.output_owners(previous)
        unrecorded = set() if overwrite else convert.outputs_of_killed_beam_runs(
            _read_lines(path) for path in _plan_files(output))
        for item in plan:
            if item["refused"]:
                continue
            skip = None if overwrite else _skip(item, previous.get(item["rel"]), settings, output, owners, unrecorded)
            if skip is not None:
                item["skip"] = skip
                if not _is_remote(item["source"]):
                    st = os.stat(item["source"])
                    item["stat"] = {"source_size": st.st_size, "source_mtime_ns": st.st_mtime_ns}
            elif not _is_remote(output):  # object stores keep no mtimes to tell our file from another
                moved = convert._moved_output(recorded_before.get(item["rel"]), pathlib.Path(output),
                                              contested, planned)
                if moved is not None:
                    item["moved_from"] = str(moved)
                    item["moved_from_rel"] = recorded_before[item["rel"]]["output_rel"]
        run_id = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        plan_path = FileSystems.join(output, f".beam-plan-{run_id}.jsonl")
        try:
            with FileSystems.create(plan_path) as f:
                # ASCII escapes: a name that is not UTF-8 (surrogates) round-trips.
                f.write("".join(json.dumps(p) + "\n" for p in plan).encode("ascii"))
        except OSError as e:  # a read-only mount, say
            raise ValueError(f"--output {output!r}: cannot write there ({e.strerror or e})") from None

        convert_fn = ConvertFn(model, tone=None if profile is None else dataclasses.asdict(profile), strength=strength, fmt=format, quality=quality,
                               batch_size=batch_size, tile=tile, overlap=overlap, stats_size=stats_size,
                               max_pixels=max_pixels, settings=settings, precision=precision, context=context,
                               output_root=output if _is_remote(output) else os.path.realpath(output),
                               temp_tag=temp_tag)
        options = PipelineOptions(list(pipeline_args))
        pipeline = beam.Pipeline(options=options)
        build_pipeline(pipeline, plan_path, output, run_id, convert_fn)
        try:
            result = pipeline.run()
            result.wait_until_finish()
        except Exception as e:  # a worker's error (a full disk, say), re-raised by the runner
            lines = [line.strip() for line in str(e).splitlines() if line.strip()]
            cause = (lines[-1] if lines else type(e).__name__)[:400]
            raise PipelineFailed(
                f"the Beam pipeline failed: {cause}. The outputs it wrote are kept; this run recorded none "
                "of them, so the next run converts them again"
            ) from e
        finally:  # the plan is this run's alone, finished or failed
            try:
                FileSystems.delete([plan_path])
            except Exception as e:  # noqa: BLE001 - a leftover plan file is harmless
                logging.getLogger(__name__).warning("could not remove the plan file %s: %s", plan_path, e)
        summary = convert.ConversionSummary(manifest=FileSystems.join(output, f"manifest.beam-{run_id}-*.jsonl"))
        counts = {}
        for name in _COUNTERS:
            query = result.metrics().query(beam.metrics.MetricsFilter().with_namespace(_NAMESPACE).with_name(name))
            counts[name] = sum(c.committed or 0 for c in query["counters"]) if plan else 0
            setattr(summary, name, counts[name])
        summary.seconds = time.monotonic() - start
        return summary
