"""Tests for gan_style.input_pipeline: unpaired epochs, determinism, resume,
preprocessing modes, bad files, tfds, config errors."""

import logging
import os

import ml_collections
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from gan_style import input_pipeline as ip

N_A, N_B = 5, 3
# Distinct grey levels identify which source image a sample came from.
A_LEVELS = [10, 40, 70, 100, 130]
B_LEVELS = [160, 190, 220]


def _config(**overrides):
    data = ml_collections.ConfigDict(
        dict(
            root="",
            train_a="",
            train_b="",
            test_a="",
            test_b="",
            tfds_name="",
            tfds_data_dir="",
            preprocess="resize_and_crop",
            load_size=36,
            crop_size=32,
            flip=True,
            eval_size=24,
            cache=False,
            num_parallel_calls=-1,
            max_images=0,
        )
    )
    data.update(overrides)
    return data


def _write_constant(path, level, size=(32, 32)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (level, level, level)).save(path)


@pytest.fixture(autouse=True)
def _fresh_state():
    ip.reset_skipped_files()
    ip.clear_cache()
    yield
    ip.reset_skipped_files()
    ip.clear_cache()


@pytest.fixture
def constant_root(tmp_path):
    """root/{trainA,trainB,testA,testB} of constant 32x32 PNGs (|A|=5, |B|=3)."""
    for i, level in enumerate(A_LEVELS):
        _write_constant(tmp_path / "trainA" / f"a{i}.png", level)
    for i, level in enumerate(B_LEVELS):
        _write_constant(tmp_path / "trainB" / f"sub/b{i}.png", level)  # nested
    for i, level in enumerate([20, 50, 80]):
        _write_constant(tmp_path / "testA" / f"t{i}.png", level)
    for i, level in enumerate([200, 230]):
        _write_constant(tmp_path / "testB" / f"t{i}.png", level)
    return tmp_path


@pytest.fixture
def textured_root(tmp_path):
    """Random-noise images (48 high x 40 wide) so crops and flips are visible."""
    rng = np.random.default_rng(0)
    for split, n in (("trainA", 4), ("trainB", 6), ("testA", 2), ("testB", 2)):
        (tmp_path / split).mkdir()
        for i in range(n):
            noise = rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)
            Image.fromarray(noise).save(tmp_path / split / f"{i}.png")
    return tmp_path


def _levels(batch):
    """Grey level (0..255) of each constant image in a [-1, 1] batch."""
    return [int(round((float(x) + 1.0) * 127.5)) for x in tf.reduce_mean(batch, [1, 2, 3])]


def _collect(ds):
    return [(a.numpy(), b.numpy()) for a, b in ds]


def test_shapes_range_length(textured_root):
    data = _config(root=str(textured_root))
    assert ip.steps_per_epoch(data, 2) == 3  # max(4, 6) // 2
    ds = ip.train_dataset(data, batch_size=2, seed=0, epoch=0)
    assert len(ds) == 3
    batches = _collect(ds)
    assert len(batches) == 3
    for a, b in batches:
        assert a.shape == b.shape == (2, 32, 32, 3)
        assert a.dtype == np.float32
        assert a.min() >= -1.0 and a.max() <= 1.0
        assert a.min() < -0.9 and a.max() > 0.9  # noise spans the range
    assert ip.steps_per_epoch(data, 4) == 1  # 6 // 4, remainder dropped
    assert len(_collect(ip.train_dataset(data, batch_size=4, seed=0, epoch=0))) == 1
    with pytest.raises(ValueError, match=r"train.batch_size=7 is larger than the epoch .*data.max_images"):
        ip.steps_per_epoch(data, 7)


def test_pixel_scaling_is_exact(constant_root):
    data = _config(root=str(constant_root), preprocess="none", flip=False)
    a, b = next(iter(ip.train_dataset(data, batch_size=1, seed=0, epoch=0)))
    level = _levels(a)[0]
    assert level in A_LEVELS
    np.testing.assert_array_equal(a.numpy(), np.float32(level) / np.float32(127.5) - 1)
    assert ip.to_float(tf.constant([0, 255], tf.uint8)).numpy().tolist() == [-1.0, 1.0]


def test_unpaired_epoch_covers_larger_domain_and_cycles_smaller(constant_root):
    data = _config(root=str(constant_root), preprocess="none", flip=False)
    assert ip.steps_per_epoch(data, 1) == max(N_A, N_B)
    samples = _collect(ip.train_dataset(data, batch_size=1, seed=3, epoch=0))
    a_seen = [_levels(a)[0] for a, _ in samples]
    b_seen = [_levels(b)[0] for _, b in samples]
    assert len(samples) == 5
    assert sorted(a_seen) == A_LEVELS  # every A exactly once
    assert sorted(b_seen[:3]) == B_LEVELS  # B: one full permutation ...
    assert len(set(b_seen[3:])) == 2 and set(b_seen[3:]) <= set(B_LEVELS)  # ... then more


def test_order_depends_only_on_seed_and_epoch(textured_root):
    data = _config(root=str(textured_root))

    def run(seed, epoch, config=data):
        ds = ip.train_dataset(config, batch_size=1, seed=seed, epoch=epoch)
        return np.stack([a for a, _ in _collect(ds)])

    first, again = run(7, 0), run(7, 0)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, run(7, 1))
    assert not np.array_equal(first, run(8, 0))
    # Different parallelism, same stream.
    serial = run(7, 0, _config(root=str(textured_root), num_parallel_calls=1))
    np.testing.assert_array_equal(first, serial)


def test_skip_k_equals_resumed_iteration(textured_root):
    data = _config(root=str(textured_root))
    full = _collect(ip.train_dataset(data, batch_size=1, seed=11, epoch=2))
    for k in (1, 4):
        resumed = _collect(ip.train_dataset(data, batch_size=1, seed=11, epoch=2).skip(k))
        assert len(resumed) == len(full) - k
        for (a1, b1), (a2, b2) in zip(full[k:], resumed):
            np.testing.assert_array_equal(a1, a2)
            np.testing.assert_array_equal(b1, b2)


def test_random_crop_is_a_window_of_the_resized_image_and_flips_happen(textured_root):
    data = _config(root=str(textured_root), train_b=str(textured_root / "trainA"))
    sources = {}
    for path in sorted((textured_root / "trainA").iterdir()):
        rgb = np.asarray(Image.open(path).convert("RGB"))
        resized = ip.train_geometry(rgb, "resize_and_crop", 36, 32)
        assert resized.shape == (36, 36, 3)
        sources[path.name] = resized
    offsets, flips = set(), 0
    for epoch in range(3):
        for a, _ in _collect(ip.train_dataset(data, batch_size=1, seed=0, epoch=epoch)):
            crop = np.rint((a[0] + 1.0) * 127.5).astype(np.uint8)
            matches = [
                (y, x, flipped)
                for src in sources.values()
                for flipped, img in ((False, src), (True, src[:, ::-1]))
                for y in range(5)
                for x in range(5)
                if np.array_equal(img[y : y + 32, x : x + 32], crop)
            ]
            assert len(matches) == 1, "each sample is exactly one window of one source"
            y, x, flipped = matches[0]
            offsets.add((y, x))
            flips += flipped
    assert len(offsets) > 1  # crops move
    assert 0 < flips < 12  # some, not all, flipped


@pytest.mark.parametrize(
    "mode,expected",
    [
        ("resize_and_crop", (32, 32)),
        ("crop", (32, 32)),
        ("scale_width_and_crop", (32, 32)),
        # width 40 -> 36, height 48 * 36/40 = 43.2 -> 43, rounded down to 40
        ("scale_width", (40, 36)),
        ("none", (48, 40)),
    ],
)
def test_preprocess_mode_output_size(textured_root, mode, expected):
    data = _config(root=str(textured_root), preprocess=mode, flip=False)
    a, b = next(iter(ip.train_dataset(data, batch_size=2, seed=0, epoch=0)))
    assert a.shape == b.shape == (2, *expected, 3)


def test_train_geometry_sizes():
    rgb = np.zeros((42, 62, 3), np.uint8)  # h=42, w=62
    assert ip.train_geometry(rgb, "resize_and_crop", 36, 32).shape == (36, 36, 3)
    assert ip.train_geometry(rgb, "none", 36, 32).shape == (40, 60, 3)
    assert ip.train_geometry(rgb, "crop", 36, 32).shape == (42, 62, 3)
    # Too small for the crop: scaled up keeping the aspect (42 -> 64, 62 -> 95).
    assert ip.train_geometry(rgb, "crop", 36, 64).shape == (64, 95, 3)
    # scale_width: height 42*36/62 = 24.4 < crop 32, so the crop size wins.
    assert ip.train_geometry(rgb, "scale_width_and_crop", 36, 32).shape == (32, 36, 3)
    assert ip.train_geometry(rgb, "scale_width", 36, 30).shape == (28, 36, 3)  # 30 -> 28
    assert ip.eval_geometry(rgb, 24).shape == (24, 24, 3)
    assert ip.eval_geometry(rgb, 0).shape == (40, 60, 3)
    # Native mode keeps the pixels (centre crop, no resampling).
    ramp = np.arange(42 * 62 * 3, dtype=np.uint32).reshape(42, 62, 3).astype(np.uint8)
    np.testing.assert_array_equal(ip.eval_geometry(ramp, 0), ramp[1:41, 1:61])


def _bad_files(folder):
    (folder / "zero.jpg").touch()
    (folder / "notes.png").write_text("not an image at all")
    good = folder / "a0.png"
    (folder / "trunc.png").write_bytes(good.read_bytes()[:60])
    return {str(folder / n) for n in ("zero.jpg", "notes.png", "trunc.png")}


def test_bad_files_skipped_with_one_warning_each(constant_root, caplog):
    bad = _bad_files(constant_root / "trainA")
    data = _config(root=str(constant_root), preprocess="none", flip=False)
    # Epoch length counts files: 5 good + 3 bad in A.
    assert ip.steps_per_epoch(data, 1) == 8
    with caplog.at_level(logging.WARNING):
        samples = _collect(ip.train_dataset(data, batch_size=1, seed=0, epoch=0))
        samples += _collect(ip.train_dataset(data, batch_size=1, seed=0, epoch=1))
    assert len(samples) == 16  # the stream refills: still 8 batches per epoch
    assert {_levels(a)[0] for a, _ in samples} == set(A_LEVELS)
    assert ip.skipped_files() == bad
    reasons = ip.skipped_file_reasons()
    assert reasons[str(constant_root / "trainA" / "zero.jpg")] == "empty file (0 bytes)"
    assert reasons[str(constant_root / "trainA" / "notes.png")].startswith("not an image")
    assert "truncated" in reasons[str(constant_root / "trainA" / "trunc.png")]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for path in bad:
        assert sum(path in m for m in warnings) == 1, (path, warnings)


def test_every_file_bad_is_an_error_not_a_hang(tmp_path):
    (tmp_path / "trainA").mkdir()
    (tmp_path / "trainA" / "x.jpg").write_text("nope")
    _write_constant(tmp_path / "trainB" / "b.png", 5)
    data = _config(root=str(tmp_path))
    with pytest.raises(tf.errors.OpError, match="none of its 1 images could be decoded"):
        _collect(ip.train_dataset(data, batch_size=1, seed=0, epoch=0))
    # Found before training, naming the key and the first file's reason.
    # The key is the one the user set: data.root, not data.train_a.
    with pytest.raises(ValueError, match=r"data.root \(its trainA/ folder; or set data.train_a\): none of its 1 "
                       r"images could be decoded \(.*x.jpg: not an image"):
        ip.check_decodable(data)
    with pytest.raises(ValueError, match=r"^data.train_a: none of its 1 images"):
        ip.check_decodable(_config(train_a=str(tmp_path / "trainA"), train_b=str(tmp_path / "trainB")))


def test_once_every_file_is_bad_every_decode_call_raises(tmp_path):
    # Calls that returned "skip this one" kept the endless stream's parallel
    # decodes running while the error unwound: the process hung at exit.
    for name in ("x.jpg", "y.jpg"):
        (tmp_path / name).write_text("nope")
    source = ip._Source([str(tmp_path / "x.jpg"), str(tmp_path / "y.jpg")],
                        lambda i: ip.image_io.load_rgb(source.names[i]), "data.train_a")
    loader = ip._Loader(source, lambda rgb: rgb, None)
    assert not loader(0)[1]
    for index in (1, 0, 1):
        with pytest.raises(ValueError, match="data.train_a: none of its 2 images"):
            loader(index)


def test_eval_dataset(constant_root):
    (constant_root / "testA" / "zz_broken.jpg").write_text("not a jpeg")
    data = _config(root=str(constant_root), eval_size=24)
    batches = list(ip.eval_dataset(data, "a", batch_size=2))
    assert [tuple(b.shape) for b in batches] == [(2, 24, 24, 3), (1, 24, 24, 3)]
    levels = _levels(batches[0]) + _levels(batches[1])
    assert levels == [20, 50, 80]  # file order, the broken file skipped
    assert str(constant_root / "testA" / "zz_broken.jpg") in ip.skipped_files()
    assert [tuple(b.shape) for b in ip.eval_dataset(data, "b", batch_size=8)] == [(2, 24, 24, 3)]
    named = list(ip.eval_dataset(data, "b", batch_size=1, with_names=True))
    assert [n.numpy()[0].decode() for _, n in named] == [
        str(constant_root / "testB" / "t0.png"),
        str(constant_root / "testB" / "t1.png"),
    ]
    # eval_size 0: native size rounded down to a multiple of 4, batch 1.
    _write_constant(constant_root / "testB" / "t2.png", 240, size=(30, 26))
    native = list(ip.eval_dataset(_config(root=str(constant_root), eval_size=0), "b", batch_size=4))
    assert [tuple(b.shape) for b in native] == [(1, 32, 32, 3), (1, 32, 32, 3), (1, 24, 28, 3)]
    with pytest.raises(ValueError, match="domain"):
        ip.eval_dataset(data, "c", batch_size=1)


def test_cache_gives_identical_batches(textured_root):
    plain_cfg = _config(root=str(textured_root))
    plain = _collect(ip.train_dataset(plain_cfg, batch_size=2, seed=1, epoch=0))
    cached_cfg = _config(root=str(textured_root), cache=True)
    for _ in range(2):  # second pass is served from the cache
        cached = _collect(ip.train_dataset(cached_cfg, batch_size=2, seed=1, epoch=0))
        for (a1, b1), (a2, b2) in zip(plain, cached):
            np.testing.assert_array_equal(a1, a2)
            np.testing.assert_array_equal(b1, b2)
    assert len(ip._image_cache) == 10


def test_max_images_and_explicit_folders(constant_root, tmp_path):
    data = _config(
        train_a=str(constant_root / "trainA"),
        train_b=str(constant_root / "trainB"),
        max_images=2,
    )
    assert [p.name for p in ip.domain_files(data, "trainA")] == ["a0.png", "a1.png"]
    assert ip.steps_per_epoch(data, 1) == 2
    levels = {_levels(a)[0] for a, _ in ip.train_dataset(data, batch_size=1, seed=0, epoch=0)}
    assert levels <= {10, 40}


def test_missing_or_empty_folders_name_the_config_key(constant_root, tmp_path):
    with pytest.raises(ValueError, match=r"data\.train_a: .*nowhere does not exist"):
        ip.domain_files(_config(train_a=str(tmp_path / "nowhere")), "trainA")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"data\.train_b: no images"):
        ip.domain_files(_config(train_b=str(tmp_path / "empty")), "trainB")
    (constant_root / "testB" / "t0.png").unlink()
    (constant_root / "testB" / "t1.png").unlink()
    with pytest.raises(ValueError, match=r"data\.root .*testB.* no images"):
        ip.eval_dataset(_config(root=str(constant_root)), "b", batch_size=1)
    half = tmp_path / "half"  # has trainA/ but no trainB/
    _write_constant(half / "trainA" / "a.png", 1)
    with pytest.raises(ValueError, match=r"data\.root .*trainB.*does not exist"):
        ip.train_dataset(_config(root=str(half)), batch_size=1, seed=0, epoch=0)
    with pytest.raises(ValueError, match=r"set data\.root.*data\.train_a.*data\.tfds_name"):
        ip.steps_per_epoch(_config(), 1)
    with pytest.raises(ValueError, match="data.tfds_name"):
        ip.domain_files(_config(tfds_name="cycle_gan/horse2zebra"), "trainA")


def test_another_splits_folder_inside_a_training_folder_is_left_out(tmp_path, caplog):
    # photos/ with photos/test/ as the test split: test images are never trained on.
    photos = tmp_path / "photos"
    _write_constant(photos / "p0.png", 10)
    _write_constant(photos / "more" / "p1.png", 40)
    _write_constant(photos / "test" / "t0.png", 70)
    _write_constant(tmp_path / "paintings" / "b.png", 200)
    data = _config(train_a=str(photos), test_a=str(photos / "test"), train_b=str(tmp_path / "paintings"))
    with caplog.at_level(logging.WARNING):
        assert [p.relative_to(photos).as_posix() for p in ip.domain_files(data, "trainA")] == ["more/p1.png", "p0.png"]
        ip.domain_files(data, "trainA")
    assert [p.name for p in ip.domain_files(data, "testA")] == ["t0.png"]
    levels = {_levels(a)[0] for a, _ in _collect(ip.train_dataset(data, batch_size=1, seed=0, epoch=0))}
    assert levels == {10, 40}
    warnings = [r.getMessage() for r in caplog.records if "testA split" in r.getMessage()]
    assert len(warnings) == 1 and "left out of trainA" in warnings[0], warnings
    # The same folder for training and test is the user's choice, not nesting.
    same = _config(train_a=str(photos), test_a=str(photos), train_b=str(tmp_path / "paintings"))
    assert len(ip.domain_files(same, "trainA")) == 3


def test_files_and_folders_passed_over_are_named_in_one_warning(tmp_path, caplog):
    _write_constant(tmp_path / "trainA" / "a.png", 10)
    for i in range(7):
        (tmp_path / "trainA" / f"IMG_{i}.HEIC").write_bytes(b"not read")
    _write_constant(tmp_path / "elsewhere" / "x.png", 20)
    (tmp_path / "trainA" / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    _write_constant(tmp_path / "trainB" / "b.png", 200)
    data = _config(root=str(tmp_path))
    with caplog.at_level(logging.WARNING):
        for _ in range(3):  # listed again and again while a run starts: warned once
            assert [p.name for p in ip.domain_files(data, "trainA")] == ["a.png"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings
    assert "7 file(s)" in warnings[0] and "IMG_0.HEIC, IMG_1.HEIC" in warnings[0] and ", ..." in warnings[0]
    assert "1 symlinked folder(s)" in warnings[1] and "(linked)" in warnings[1]


def test_a_test_file_name_that_is_not_utf8(tmp_path):
    name = b"caf\xe9.png"  # Latin-1, as unzipped from a Windows archive
    _write_constant(tmp_path / "trainA" / "a.png", 10)
    _write_constant(tmp_path / "trainB" / "b.png", 200)
    _write_constant(tmp_path / "testA" / "ok.png", 20)
    (tmp_path / "testA").mkdir(exist_ok=True)
    Image.new("RGB", (32, 32), (90, 90, 90)).save(tmp_path.joinpath("testA").as_posix().encode() + b"/" + name, "PNG")
    named = list(ip.eval_dataset(_config(root=str(tmp_path)), "a", batch_size=1, with_names=True))
    assert [n.numpy()[0] for _, n in named] == [
        tmp_path.joinpath("testA").as_posix().encode() + b"/" + name,
        os.fsencode(tmp_path / "testA" / "ok.png"),
    ]
    assert [_levels(images)[0] for images, _ in named] == [90, 20]


def test_cache_of_full_size_images_is_warned_about(textured_root, caplog):
    with caplog.at_level(logging.WARNING):
        ip.train_dataset(_config(root=str(textured_root), preprocess="crop", cache=True),
                         batch_size=1, seed=0, epoch=0)
        ip.train_dataset(_config(root=str(textured_root), cache=True), batch_size=1, seed=0, epoch=0)
    warnings = [r.getMessage() for r in caplog.records if "data.cache" in r.getMessage()]
    assert len(warnings) == 2 and all("'crop'" in w for w in warnings), warnings  # trainA, trainB


def test_has_split(constant_root, tmp_path, monkeypatch):
    data = _config(root=str(constant_root))
    assert all(ip.has_split(data, split) for split in ip.SPLITS)
    (constant_root / "testB").rename(tmp_path / "elsewhere")
    assert not ip.has_split(data, "testB")
    assert ip.has_split(_config(root=str(constant_root), test_b=str(tmp_path / "elsewhere")), "testB")
    tfds = pytest.importorskip("tensorflow_datasets")

    class Builder:  # a dataset prepared with training splits only
        class info:
            splits = {"trainA": object(), "trainB": object()}

    monkeypatch.setattr(tfds, "builder", lambda name, data_dir=None: Builder)
    assert ip.has_split(_config(tfds_name="mine"), "trainA")
    assert not ip.has_split(_config(tfds_name="mine"), "testA")
    Builder.info.splits = {}  # not prepared: loading will tell
    assert ip.has_split(_config(tfds_name="mine"), "testA")


def test_bad_config_values_are_named(constant_root):
    root = str(constant_root)
    with pytest.raises(ValueError, match="data.preprocess='zoom'"):
        ip.train_dataset(_config(root=root, preprocess="zoom"), batch_size=1, seed=0, epoch=0)
    with pytest.raises(ValueError, match=r"data\.load_size \(20\) must be >= data\.crop_size"):
        ip.train_dataset(_config(root=root, load_size=20), batch_size=1, seed=0, epoch=0)
    with pytest.raises(ValueError, match="data.num_parallel_calls"):
        ip.train_dataset(_config(root=root, num_parallel_calls=0), batch_size=1, seed=0, epoch=0)
    with pytest.raises(ValueError, match="data.eval_size"):
        ip.eval_dataset(_config(root=root, eval_size=-1), "a", batch_size=1)


def test_input_context_shards_by_sample(constant_root):
    data = _config(root=str(constant_root), preprocess="none", flip=False)
    per_worker = []
    for pipeline_id in range(2):
        ctx = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=pipeline_id, num_replicas_in_sync=2
        )
        ds = ip.train_dataset(data, batch_size=2, seed=5, epoch=0, input_context=ctx)
        batches = _collect(ds)
        assert len(batches) == ip.steps_per_epoch(data, 2) == 2
        assert all(a.shape == (1, 32, 32, 3) for a, _ in batches)  # per-replica batch
        per_worker.append([_levels(a)[0] for a, _ in batches])
    # The two workers read alternate places of one permutation of A.
    single = [_levels(a)[0] for a, _ in ip.train_dataset(data, batch_size=1, seed=5, epoch=0)]
    assert per_worker[0] == single[0:4:2] and per_worker[1] == single[1:4:2]


def test_hosts_draw_their_own_crops_and_flips(tmp_path):
    # One image repeated: what differs between two hosts' k-th samples is
    # their crop and flip alone. Each pipeline numbers its samples from 0,
    # so with one key for all hosts they were the same on every host.
    noise = np.random.default_rng(3).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    for split in ("trainA", "trainB"):
        (tmp_path / split).mkdir()
        for i in range(8):
            Image.fromarray(noise).save(tmp_path / split / f"{i}.png")
    data = _config(root=str(tmp_path), load_size=44)
    hosts = []
    for pipeline_id in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline_id, num_replicas_in_sync=2)
        hosts.append(_collect(ip.train_dataset(data, batch_size=2, seed=1, epoch=0, input_context=ctx)))
    same = [np.array_equal(x[0], y[0]) for x, y in zip(*hosts)]
    assert len(same) == 4 and not any(same)
    # Within one host the draws differ too (the test would be empty otherwise).
    assert not np.array_equal(hosts[0][0][0], hosts[0][1][0])


def test_tfds_source_with_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    data = _config(tfds_name="cycle_gan/horse2zebra")
    with tfds.testing.mock_data(num_examples=5):
        assert ip.steps_per_epoch(data, 2) == 2
        ds = ip.train_dataset(data, batch_size=2, seed=0, epoch=0)
        batches = _collect(ds)
        assert len(batches) == 2
        assert all(a.shape == b.shape == (2, 32, 32, 3) for a, b in batches)
        again = _collect(ip.train_dataset(data, batch_size=2, seed=0, epoch=0))
        np.testing.assert_array_equal(batches[1][0], again[1][0])
        evals = list(ip.eval_dataset(data, "b", batch_size=4))
        assert [tuple(e.shape) for e in evals] == [(4, 24, 24, 3), (1, 24, 24, 3)]
    with pytest.raises(ValueError, match="data.tfds_name='no_such_dataset'"):
        ip.steps_per_epoch(_config(tfds_name="no_such_dataset"), 1)


def test_tfds_download_failing_offline_says_so(monkeypatch, caplog):
    tfds = pytest.importorskip("tensorflow_datasets")

    class ConnectionError(OSError):  # what requests raises, by name
        pass

    def load(*args, **kwargs):
        raise ConnectionError("HTTPSConnectionPool(host='efrosgans.eecs.berkeley.edu'): Failed to resolve\nmore")

    class Builder:  # not downloaded yet
        data_dir = "/data/tfds/cycle_gan/x/1.0.0"

        @staticmethod
        def is_prepared():
            return False

    monkeypatch.setattr(tfds, "load", load)
    monkeypatch.setattr(tfds, "builder", lambda name, data_dir=None: Builder)
    with caplog.at_level(logging.WARNING):
        with pytest.raises(ValueError, match=r"data.tfds_name='cycle_gan/x'.*Failed to resolve\).*no network\?"):
            ip.steps_per_epoch(_config(tfds_name="cycle_gan/x"), 1)
    # Said before the download starts retrying (minutes offline).
    warnings = [r.getMessage() for r in caplog.records if "not prepared" in r.getMessage()]
    assert len(warnings) == 1 and "/data/tfds/cycle_gan/x/1.0.0" in warnings[0] and "tfds build" in warnings[0]


def test_real_horse2zebra(shared_data):
    root = shared_data / "horse2zebra"
    data = _config(root=str(root), load_size=72, crop_size=64, max_images=4, eval_size=64)
    assert ip.steps_per_epoch(data, 2) == 2
    a, b = next(iter(ip.train_dataset(data, batch_size=2, seed=0, epoch=0)))
    assert a.shape == b.shape == (2, 64, 64, 3)
    assert float(tf.math.reduce_std(a)) > 0.1  # a real photo, not a constant
    full = _config(root=str(root))
    assert ip.steps_per_epoch(full, 1) == 1334  # max(1067, 1334)
    test = list(ip.eval_dataset(data, "a", batch_size=3))
    assert [tuple(t.shape) for t in test] == [(3, 64, 64, 3), (1, 64, 64, 3)]


def test_works_under_mirrored_strategy(textured_root):
    """Both ways of feeding tf.distribute: whole dataset, or one per pipeline."""
    data = _config(root=str(textured_root))
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    dist = strategy.experimental_distribute_dataset(
        ip.train_dataset(data, batch_size=2, seed=0, epoch=0)
    )
    per_replica = [strategy.experimental_local_results(a) for a, _ in dist]
    assert len(per_replica) == ip.steps_per_epoch(data, 2) == 3
    assert all(len(r) == 2 and r[0].shape == (1, 32, 32, 3) for r in per_replica)
    single = _collect(ip.train_dataset(data, batch_size=2, seed=0, epoch=0))
    for replicas, (a, _) in zip(per_replica, single):  # same samples, split by replica
        np.testing.assert_array_equal(np.concatenate([r.numpy() for r in replicas]), a)

    from_fn = strategy.distribute_datasets_from_function(
        lambda ctx: ip.train_dataset(data, batch_size=2, seed=0, epoch=0, input_context=ctx)
    )
    shapes = [
        [r.shape for r in strategy.experimental_local_results(a)] for a, _ in from_fn
    ]
    assert len(shapes) == 3 and all(s == [(1, 32, 32, 3)] * 2 for s in shapes)
