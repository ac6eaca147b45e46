"""Catalog conversion on Apache Beam (DirectRunner): same outputs and records as infer.py's."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from PIL import Image

beam = pytest.importorskip("apache_beam", reason="the optional gan-style[beam] extra is not installed")

from apache_beam.io.filesystem import BeamIOError, FileMetadata  # noqa: E402
from apache_beam.io.localfilesystem import LocalFileSystem  # noqa: E402
from catalog_fixtures import BAD_FILES, save_tiny_translator, write_bad_files  # noqa: E402

from gan_style import beam as beam_conversion  # noqa: E402
from gan_style import convert  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
DIRECT = ["--direct_num_workers=2", "--direct_running_mode=multi_threading"]
OPTIONS = {"tone": "warm", "strength": 0.8, "tile": 64, "overlap": 32}
FAKE = "gsfake://"


def noise(height, width, channels=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)


def save(path, array, **options):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **options)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return save_tiny_translator(tmp_path_factory.mktemp("model") / "tiny.keras", base_filters=4, seed=5)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    src = tmp_path_factory.mktemp("catalog")
    for i in range(6):
        save(src / f"shelf{i % 2}" / f"item{i}.jpg", noise(32 + 4 * (i % 3), 40, seed=i), quality=90)
    cut = noise(30, 41, 4, seed=10)
    cut[:8, :, 3] = 0  # a transparent band: a product cut-out
    save(src / "cutout.png", cut)
    save(src / "wide.png", noise(72, 150, seed=11))  # over --tile=64: tiled
    save(src / "a.bmp", noise(13, 7, seed=12))
    save(src / "swatch.png", np.full((20, 24, 3), (200, 30, 40), np.uint8))  # one flat colour: tone only
    write_bad_files(src, seed=13)
    return src


def manifest_rows(output, pattern):
    rows = []
    for path in sorted(pathlib.Path(output).glob(pattern)):
        rows += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return rows


def images(output):
    return sorted(p.relative_to(output).as_posix() for p in pathlib.Path(output).rglob("*")
                  if p.is_file() and "jsonl" not in p.name and p.name != ".conversion.lock")


def test_beam_outputs_and_records_match_infer_py(model_path, catalog, tmp_path):
    local, on_beam = tmp_path / "local", tmp_path / "beam"
    # batch_size=1: the local run calls the model on one image at a time, as
    # the DoFn does, so the bytes must be identical (batched calls may differ
    # by 1 level on a few pixels, the Translator's documented tolerance).
    stale = on_beam / "shelf0" / ".item0.jpg.0123456789ab.gan_style-tmp"  # left by a killed worker
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half an image")
    expected = convert.convert_catalog(model_path, catalog, local, batch_size=1, progress=False, **OPTIONS)
    summary = beam_conversion.run_pipeline(model_path, str(catalog), str(on_beam), batch_size=1,
                                           pipeline_args=DIRECT, **OPTIONS)
    assert (summary.converted, summary.skipped, summary.failed) == (expected.converted, 0, expected.failed)
    assert (summary.converted, summary.failed) == (10, 3)
    assert summary.exit_code == convert.EXIT_SOME_FAILED

    assert images(on_beam) == images(local) and len(images(local)) == 10
    for rel in images(local):
        assert (on_beam / rel).read_bytes() == (local / rel).read_bytes(), rel
    with Image.open(on_beam / "cutout.png") as image:  # alpha kept
        assert image.mode == "RGBA"
    assert not [p for p in on_beam.rglob("*") if p.name.endswith(".gan_style-tmp") or ".beam-plan" in p.name]

    want = {r["rel"]: r for r in manifest_rows(local, "manifest.jsonl")}
    got = {r["rel"]: r for r in manifest_rows(on_beam, "manifest.beam-*.jsonl")}
    assert set(got) == set(want) and len(got) == 13
    assert "one flat colour" in got["swatch.png"]["reason"]
    for rel, row in want.items():
        for key in ("status", "reason", "output_size", "width", "height", "tiled", "format", "settings",
                    "source_size", "source_mtime_ns"):
            assert got[rel].get(key) == row.get(key), (rel, key)
        assert got[rel]["output"] == (str(on_beam / pathlib.Path(row["output"]).relative_to(local))
                                      if row["output"] else None)
    assert got["wide.png"]["tiled"] is True

    dead = {r["rel"]: r for r in manifest_rows(on_beam, "dead_letter.beam-*.jsonl")}
    assert set(dead) == set(BAD_FILES)
    for rel, words in BAD_FILES.items():
        assert dead[rel]["status"] == "failed" and words in dead[rel]["reason"], dead[rel]
    # The Beam run's manifests resume a local run: nothing converted twice.
    rerun = convert.convert_catalog(model_path, catalog, on_beam, progress=False, **OPTIONS)
    assert (rerun.converted, rerun.skipped, rerun.failed) == (0, 10, 3)


class FakeRemoteFileSystem(LocalFileSystem):
    """``gsfake://<local path>``: a Beam filesystem with a scheme, backed by local disk.

    Exercises the code a ``gs://`` or ``s3://`` catalog takes (listing with
    FileSystems.match, reads and writes through FileSystems, no os.stat).
    """

    @classmethod
    def scheme(cls):
        return "gsfake"

    def join(self, basepath, *paths):
        return FAKE + os.path.join(_local(basepath), *paths)

    def split(self, path):
        head, tail = os.path.split(_local(path))
        return FAKE + head, tail

    def _list(self, dir_or_prefix):
        for dirpath, _, files in os.walk(_local(dir_or_prefix)):
            for name in files:
                path = os.path.join(dirpath, name)
                yield FileMetadata(FAKE + path, os.path.getsize(path), os.path.getmtime(path))

    def rename(self, sources, destinations):
        return super().rename([_local(p) for p in sources], [_local(p) for p in destinations])

    def copy(self, sources, destinations):
        return super().copy([_local(p) for p in sources], [_local(p) for p in destinations])

    def delete(self, paths):
        # Not LocalFileSystem.delete: it finds the paths through match(), which
        # here lists them with the scheme, and then deleted nothing.
        missing = {p: OSError(f"not found: {p}") for p in paths if not os.path.exists(_local(p))}
        for path in map(_local, paths):
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
        if missing:
            raise BeamIOError("Delete operation failed", missing)

    def mkdirs(self, path):
        return super().mkdirs(_local(path))

    def create(self, path, *args, **kwargs):
        return super().create(_local(path), *args, **kwargs)

    def open(self, path, *args, **kwargs):
        return super().open(_local(path), *args, **kwargs)

    def exists(self, path):
        return super().exists(_local(path))

    def size(self, path):
        return super().size(_local(path))

    def last_updated(self, path):
        return super().last_updated(_local(path))

    def checksum(self, path):
        return super().checksum(_local(path))

    def metadata(self, path):
        meta = super().metadata(_local(path))
        return FileMetadata(FAKE + meta.path, meta.size_in_bytes, meta.last_updated_in_seconds)


def _local(path):
    return path.removeprefix(FAKE)


def test_context_reaches_the_workers(model_path, tmp_path):
    from gan_style.translator import load_translator

    image = noise(24, 36, seed=3)
    save(tmp_path / "in" / "a.png", image)
    summary = beam_conversion.run_pipeline(model_path, str(tmp_path / "in"), str(tmp_path / "out"), context=6,
                                           precision="float32", pipeline_args=DIRECT)
    assert summary.converted == 1
    expected = load_translator(model_path, context=6)(image[None]).numpy()[0]
    assert not np.array_equal(load_translator(model_path)(image[None]).numpy()[0], expected)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "a.png")), expected)


def test_an_output_a_new_source_takes_the_name_of_is_removed(model_path, tmp_path):
    # As infer.py's runner: a.jpg -> a.png, then an a.png joins; the old a.png
    # (a.jpg's translation) must not stay under the new source's name, whether
    # the earlier run was Beam's or infer.py's.
    for first in ("beam", "local"):
        src, out = tmp_path / first / "in", tmp_path / first / "out"
        save(src / "a.jpg", noise(8, 8, seed=1))
        if first == "beam":
            beam_conversion.run_pipeline(model_path, str(src), str(out), format="png", pipeline_args=DIRECT)
        else:
            convert.convert_catalog(model_path, src, out, format="png", progress=False)
        assert (out / "a.png").is_file()
        save(src / "a.png", noise(8, 8, seed=2))
        summary = beam_conversion.run_pipeline(model_path, str(src), str(out), format="png", pipeline_args=DIRECT)
        assert summary.converted == 2, first
        assert sorted(p.name for p in out.glob("*.png")) == ["a_jpg.png", "a_png.png"], first
        rows = {r["rel"]: r for r in manifest_rows(out, "manifest.beam-*.jsonl")}
        assert "its earlier output a.png was removed: another source now wants that name too" in rows["a.jpg"]["reason"]
    # Not removed: a file put there since, even of the same size.
    src, out = tmp_path / "bmp" / "in", tmp_path / "bmp" / "out"
    save(src / "a.bmp", noise(8, 8, seed=1))
    beam_conversion.run_pipeline(model_path, str(src), str(out), pipeline_args=DIRECT)
    mine = noise(8, 8, seed=5)
    save(out / "a.bmp", mine)
    os.utime(out / "a.bmp", ns=(1, 1))
    save(src / "a.BMP", noise(8, 8, seed=2))
    beam_conversion.run_pipeline(model_path, str(src), str(out), pipeline_args=DIRECT)
    with Image.open(out / "a.bmp") as kept:
        np.testing.assert_array_equal(np.asarray(kept), mine)


def test_remote_paths_list_file_refusals_and_rerun(model_path, catalog, tmp_path, monkeypatch):
    listing = tmp_path / "lists" / "catalog.txt"
    listing.parent.mkdir()
    for rel in ("shelf0/item0.jpg", "shelf1/item1.jpg", "empty.jpg"):
        target = listing.parent / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((catalog / rel).read_bytes())
    listing.write_text("shelf0/item0.jpg\nshelf1/item1.jpg\n../outside.jpg\nempty.jpg\n")
    out = tmp_path / "out"
    # A private temp folder: other tests (pytest -n) make model copies in the shared one.
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    first = beam_conversion.run_pipeline(FAKE + str(model_path), FAKE + str(listing), FAKE + str(out),
                                         pipeline_args=DIRECT)
    assert (first.converted, first.skipped, first.failed) == (2, 0, 2)
    # The remote model's local copies (launcher, each worker) are gone once loaded.
    assert not list(private_tmp.glob("gan_style-model-*"))
    assert not list(out.glob(".beam-plan-*")), "the finished run's plan file is removed"
    rows = {r["rel"]: r for r in manifest_rows(out, "manifest.beam-*.jsonl")}
    assert rows["shelf1/item1.jpg"]["output"] == FAKE + str(out / "shelf1" / "item1.jpg")
    assert rows["shelf1/item1.jpg"]["source_size"] == (catalog / "shelf1" / "item1.jpg").stat().st_size
    local = convert.convert_catalog(model_path, listing, tmp_path / "local", progress=False)
    for rel in ("shelf0/item0.jpg", "shelf1/item1.jpg"):
        assert (out / rel).read_bytes() == (tmp_path / "local" / rel).read_bytes(), rel
    dead = {r["rel"]: r["reason"] for r in manifest_rows(out, "dead_letter.beam-*.jsonl")}
    assert "'..' refused" in dead["../outside.jpg"] and "empty file" in dead["empty.jpg"]
    assert local.failed == 2 and not (tmp_path / "outside.jpg").exists()
    again = beam_conversion.run_pipeline(FAKE + str(model_path), FAKE + str(listing), FAKE + str(out),
                                         pipeline_args=DIRECT)
    assert (again.converted, again.skipped, again.failed) == (0, 2, 2)


def test_remote_plans_leave_earlier_output_folders_out(tmp_path):
    # As a local walk does: gs://.../cat/styled from last night is not input tonight.
    cat = tmp_path / "cat"
    save(cat / "a.jpg", noise(8, 8))
    save(cat / "styled" / "a.jpg", noise(8, 8, seed=1))
    (cat / "styled" / "manifest.jsonl").write_text("")
    save(cat / "beamed" / "sub" / "b.png", noise(8, 8, seed=2))
    (cat / "beamed" / ".beam-plan-20261129T000000-abcdef.jsonl").write_text("")
    save(cat / "now" / "c.png", noise(8, 8, seed=3))  # this run's output: left out, not "earlier"
    (cat / "now" / "manifest.beam-1.jsonl").write_text("")
    for source in (FAKE + str(cat), FAKE + str(cat) + "/**.*g"):  # the glob lists no manifests
        plan = beam_conversion.plan_catalog(source, FAKE + str(cat / "now"))
        assert [item["rel"] for item in plan] == ["a.jpg"], source
    assert [item["rel"] for item in beam_conversion.plan_catalog(str(cat), str(cat / "now"))] == ["a.jpg"]


def test_infer_py_runner_beam_end_to_end(model_path, catalog, tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    # cutout.png, wide.png (tiled at --tile=64), swatch.png and notes.png (not an image).
    base = [sys.executable, str(ROOT / "infer.py"), f"--input={catalog}/*.png", f"--model={model_path}",
            "--format=webp", "--tile=64", "--overlap=32"]
    beam_run = subprocess.Popen([*base, f"--output={tmp_path / 'b'}", "--runner=beam", "--", *DIRECT],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    misuse = subprocess.Popen([*base, f"--output={tmp_path / 'x'}", "--", "--direct_num_workers=2"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    out, err = beam_run.communicate(timeout=300)
    assert beam_run.returncode == convert.EXIT_SOME_FAILED, err[-3000:]
    assert "converted 3, skipped 0, failed 1" in out
    assert sorted(p.name for p in (tmp_path / "b").rglob("*") if "jsonl" not in p.name) == [
        ".conversion.lock", "cutout.webp", "swatch.webp", "wide.webp"]
    _, err = misuse.communicate(timeout=300)
    assert misuse.returncode == 1 and "--runner=beam" in err


def test_non_utf8_names_shard_temp_files_and_bad_output(model_path, tmp_path):
    src = tmp_path / "in"
    save(src / "plain.png", noise(16, 16, seed=1))
    name = os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes: not valid UTF-8
    save(src / name, noise(16, 16, seed=2))
    out = tmp_path / "out"
    summary = beam_conversion.run_pipeline(model_path, src, out, pipeline_args=DIRECT)
    assert (summary.converted, summary.failed) == (2, 0)
    rows = {r["rel"]: r for r in manifest_rows(out, "manifest.beam-*.jsonl")}
    assert rows[name]["output"] == str(out / name) and (out / name).exists()
    assert not list(out.glob(".beam-plan-*"))

    def run_ids():
        return {p.name[len("manifest.beam-"):].rsplit("-", 3)[0] for p in out.glob("manifest.beam-*.jsonl")}

    first = run_ids()
    assert beam_conversion.run_pipeline(model_path, src, out, pipeline_args=DIRECT).skipped == 2
    assert len(run_ids()) == 2
    # A third run: the first run's records are all superseded by the second's, so its manifests go.
    assert beam_conversion.run_pipeline(model_path, src, out, pipeline_args=DIRECT).skipped == 2
    assert len(run_ids()) == 2 and not run_ids() & first
    assert len(manifest_rows(out, "manifest.beam-*.jsonl")) == 4

    # A shard's launcher leaves another shard's in-flight temporary files alone.
    mine = beam_conversion._temp_name(str(out / "x.png"), "-s0of2")
    theirs = beam_conversion._temp_name(str(out / "y.png"), "-s1of2")
    for temp in (mine, theirs):
        pathlib.Path(temp).write_bytes(b"half")
    beam_conversion._remove_stale_temp_files(str(out), "-s0of2")
    assert not os.path.exists(mine) and os.path.exists(theirs)

    (tmp_path / "a_file").write_text("")
    with pytest.raises(ValueError, match="--output"):
        beam_conversion.run_pipeline(model_path, src, tmp_path / "a_file", pipeline_args=DIRECT)

    # A local output folder in use by another conversion (infer.py's local
    # runner, say): the launcher stops before it plans or cleans anything.
    import fcntl

    leftover = out / ".plain.png.123.gan_style-tmp"
    leftover.write_bytes(b"half")
    with open(out / ".conversion.lock", "a+") as other_run:
        fcntl.flock(other_run, fcntl.LOCK_EX | fcntl.LOCK_NB)
        other_run.truncate(0)  # the launchers before left their own pid there
        other_run.write("pid 12345 on elsewhere")
        other_run.flush()
        with pytest.raises(ValueError, match=r"is in use by another conversion \(pid 12345 on elsewhere\)"):
            beam_conversion.run_pipeline(model_path, src, out, pipeline_args=DIRECT)
    assert leftover.exists()


def test_earlier_beam_manifests_lose_superseded_records(tmp_path):
    def write(name, records, tail=b""):
        lines = b"".join(json.dumps(r).encode() + b"\n" for r in records)
        (tmp_path / name).write_bytes(lines + tail)

    def rec(rel, time, status="converted"):
        return {"rel": rel, "time": time, "status": status}

    old = [rec(r, "2026-01-01T00:00:00.000+00:00") for r in "abcd"]
    newer = [rec(r, "2026-01-02T00:00:00.000+00:00", "skipped") for r in "abc"]
    write("manifest.jsonl", [rec("a", "2025-12-31T00:00:00.000+00:00")] * 3)  # infer.py's own: never touched
    write("manifest.beam-r1-00000-of-00001.jsonl", old, tail=b'{"rel": "x", "ti')  # and a line cut by a kill
    write("manifest.beam-r2-00000-of-00001.jsonl", newer)
    local_before = (tmp_path / "manifest.jsonl").read_bytes()
    expected = convert.Manifest.read(tmp_path)
    assert beam_conversion._previous_records(str(tmp_path)) == expected
    assert expected["d"]["time"].startswith("2026-01-01") and expected["a"]["status"] == "skipped"
    # r1 keeps only d, its newest record; r2 and the local manifest are whole.
    assert [json.loads(line)["rel"] for line in
            (tmp_path / "manifest.beam-r1-00000-of-00001.jsonl").read_text().splitlines()] == ["d"]
    assert len(manifest_rows(tmp_path, "manifest.beam-r2-*.jsonl")) == 3
    assert (tmp_path / "manifest.jsonl").read_bytes() == local_before
    assert beam_conversion._previous_records(str(tmp_path)) == expected  # pruning changed no answer

    write("manifest.beam-r3-00000-of-00001.jsonl", [rec("d", "2026-01-03T00:00:00.000+00:00")])
    beam_conversion._previous_records(str(tmp_path))
    assert not (tmp_path / "manifest.beam-r1-00000-of-00001.jsonl").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "manifest.beam-r2-00000-of-00001.jsonl", "manifest.beam-r3-00000-of-00001.jsonl", "manifest.jsonl"]


def test_two_launchers_pruning_at_once_keep_every_newest_record(tmp_path, monkeypatch):
    # Both read the manifests, then both prune (shards of one catalog into one --output).
    def rec(rel, time):
        return json.dumps({"rel": rel, "time": time, "status": "converted"}).encode() + b"\n"

    rels = [f"img{i}.jpg" for i in range(10)]
    (tmp_path / "manifest.beam-r1-00000-of-00001.jsonl").write_bytes(
        b"".join(rec(r, "2026-01-01T00:00:00.000+00:00") for r in rels))
    (tmp_path / "manifest.beam-r2-00000-of-00001.jsonl").write_bytes(
        b"".join(rec(r, "2026-01-02T00:00:00.000+00:00") for r in rels[:6]))
    expected = convert.Manifest.read(tmp_path)

    reads = []
    real_read = beam_conversion._read_lines

    def read_then_let_the_other_prune(path):
        lines = real_read(path)
        reads.append(path)
        if len(reads) == 2:  # the first launcher has read both files: the second one runs now
            monkeypatch.setattr(beam_conversion, "_read_lines", real_read)
            assert beam_conversion._previous_records(str(tmp_path)) == expected
        return lines

    monkeypatch.setattr(beam_conversion, "_read_lines", read_then_let_the_other_prune)
    assert beam_conversion._previous_records(str(tmp_path)) == expected
    assert convert.Manifest.read(tmp_path) == expected  # img6..img9's only records survive

    # A file another launcher deleted between listing and reading is skipped, not a crash.
    (tmp_path / "manifest.beam-r3-00000-of-00001.jsonl").write_bytes(
        b"".join(rec(r, "2026-01-03T00:00:00.000+00:00") for r in rels))
    listed = beam_conversion._manifest_files(str(tmp_path))
    (tmp_path / "manifest.beam-r2-00000-of-00001.jsonl").unlink()
    real_files = beam_conversion._manifest_files
    monkeypatch.setattr(beam_conversion, "_manifest_files",
                        lambda output, pattern="manifest*.jsonl": listed if pattern == "manifest*.jsonl"
                        else real_files(output, pattern))
    assert {r["time"][:10] for r in beam_conversion._previous_records(str(tmp_path)).values()} == {"2026-01-03"}


def test_remote_inputs_get_the_local_path_checks(tmp_path):
    # A remote --input skipped collect_sources' checks: the same folder as
    # --output overwrote the sources, an output folder inside the input was
    # converted again as input, and hidden files were sources.
    catalog = tmp_path / "catalog"
    for rel in ("i0.jpg", "._i0.jpg", ".thumbs/t.jpg", "styled/i0.jpg"):
        (catalog / rel).parent.mkdir(parents=True, exist_ok=True)
        (catalog / rel).write_bytes(b"x")
    remote = FAKE + str(catalog)
    with pytest.raises(ValueError, match="is the input folder"):
        beam_conversion.plan_catalog(remote + "/", remote, "same")
    with pytest.raises(ValueError, match="is inside --output"):
        beam_conversion.plan_catalog(remote + "/styled/", remote, "same")
    assert [p["rel"] for p in beam_conversion.plan_catalog(remote + "/", remote + "/styled", "same")] == ["i0.jpg"]


def test_beam_options_it_does_not_know_are_refused(model_path, tmp_path):
    # Beam only warned and ran without them: no tone, one worker.
    with pytest.raises(ValueError, match=r"Beam options not recognised after `--`: --direct_num_worker, --tone "
                                         r"\(gan_style's own flags, such as --tone, go before `--`\)"):
        beam_conversion.run_pipeline(model_path, str(tmp_path), str(tmp_path / "out"),
                                     pipeline_args=[*DIRECT, "--tone=warm", "--direct_num_worker=2"])
    beam_conversion._check_pipeline_args([*DIRECT, "--direct_num_workers=2", "--project=p"])  # known ones pass


def test_a_pipeline_that_fails_once_started_says_so_and_cleans_up(model_path, catalog, tmp_path, monkeypatch):
    def fail(self, *args, **kwargs):
        raise RuntimeError("Traceback (most recent call last): ...\nOSError: [Errno 28] No space left on device "
                           "[while running 'WriteDeadLetter']")

    monkeypatch.setattr(beam_conversion.beam.Pipeline, "run", fail)
    out = tmp_path / "out"
    with pytest.raises(beam_conversion.PipelineFailed,
                       match=r"the Beam pipeline failed: OSError: \[Errno 28\] No space left on device .*"
                             r"the next run converts them again"):
        beam_conversion.run_pipeline(model_path, str(catalog), str(out), pipeline_args=DIRECT)
    assert not list(out.glob(".beam-plan-*"))  # the plan goes, failed or not


def test_empty_manifests_and_dead_letters_of_earlier_runs_are_removed(tmp_path):
    # Three runs over an empty catalog left three empty pairs, kept for good.
    for run in ("a", "b"):
        (tmp_path / f"manifest.beam-{run}-00000-of-00001.jsonl").write_bytes(b"")
        (tmp_path / f"dead_letter.beam-{run}-00000-of-00001.jsonl").write_bytes(b"")
    (tmp_path / "dead_letter.beam-c-00000-of-00001.jsonl").write_text('{"rel": "x.jpg", "status": "failed"}\n')
    (tmp_path / "manifest.jsonl").write_bytes(b"")  # infer.py's own: left to its compaction
    assert beam_conversion._previous_records(str(tmp_path)) == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dead_letter.beam-c-00000-of-00001.jsonl", "manifest.jsonl"]
