"""Tiled generation: shared instance-norm statistics, blending, memory."""

import tracemalloc
import types

import numpy as np
import pytest
import tensorflow as tf

from gan_style import tiling
from gan_style.networks import build_generator
from gan_style.translator import Translator


def psnr(a, b) -> float:
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def gradient(height, width):
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack(
        [xx * 255 / (width - 1), yy * 255 / (height - 1), (xx + yy) * 255 / (height + width - 2)], -1
    )
    return np.round(image).astype(np.uint8)


def smooth_noise(height, width, seed=0):
    """Natural-ish content: random noise blurred a little (no flat areas)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (1, height, width, 3)).astype(np.float32)
    x = tf.nn.avg_pool2d(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], "SYMMETRIC"), 3, 1, "VALID")
    return np.round(x[0].numpy()).astype(np.uint8)


@pytest.fixture(scope="module")
def translator():
    return Translator(build_generator("resnet_6blocks", base_filters=4, seed=1))


class _NaiveTiles(tiling.TiledTranslator):
    """Each tile normalised by its own statistics: what shared statistics fix."""

    def __init__(self, translator, **kwargs):
        super().__init__(translator, **kwargs)
        # A stand-in runner (not the shared, cached one) that ignores statistics.
        self.runner = types.SimpleNamespace(
            frozen=lambda tiles, stats: translator.generator(tiles, training=False)
        )

    def statistics(self, image):
        return None


@pytest.mark.parametrize(
    "name,options,size",
    [
        ("resnet_6blocks", {}, (40, 48)),
        ("unet_128", {}, (128, 256)),
        ("resnet_6blocks", {"norm": "batch"}, (32, 32)),
        ("resnet_6blocks", {"upsample": "resize_conv"}, (32, 44)),
    ],
)
def test_frozen_statistics_of_the_image_itself_reproduce_the_generator(name, options, size):
    generator = build_generator(name, base_filters=4, seed=2, **options)
    runner = tiling.FrozenStatsRunner(generator)
    expected_norms = sum(
        isinstance(layer, tf.keras.layers.GroupNormalization) for layer in generator.layers
    )
    assert len(runner.norm_layers) == expected_norms
    x = tf.constant(tiling.to_float(smooth_noise(*size))[None])
    direct = generator(x, training=False).numpy()
    frozen = runner.frozen(x, runner.statistics(x)).numpy()
    np.testing.assert_allclose(frozen, direct, atol=1e-4)


@pytest.mark.parametrize("length", [65, 96, 130, 201, 257, 1000])
@pytest.mark.parametrize("tile,overlap", [(64, 32), (64, 0), (128, 48)])
def test_plan_axis_weights_sum_to_one_with_at_most_two_tiles(length, tile, overlap):
    windows = tiling.plan_axis(length, tile, overlap, multiple=4, minimum=8)
    total = np.zeros(length)
    count = np.zeros(length, int)
    size = tiling.padded_size(length, 4, 8)
    before = (size - length) // 2
    for w in windows:
        assert len(w.indices) == min(tile, size)
        assert w.indices.min() >= 0 and w.indices.max() < length
        # The tile's first input column sits on the padded axis's 4-pixel grid.
        assert (w.offset - (w.lo + before)) % 4 == 0
        total[w.lo : w.hi] += w.weight
        count[w.lo : w.hi] += w.weight > 0
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    assert count.max() <= 2
    if length > tile:
        assert len(windows) > 1


def test_tiles_match_untiled_output(translator):
    tiled = tiling.TiledTranslator(translator, tile=64, overlap=32)
    naive = _NaiveTiles(translator, tile=64, overlap=32)
    for image in (gradient(96, 128), smooth_noise(96, 128)):
        untiled = translator(image[None]).numpy()[0]
        out = tiled.generate(image)
        assert out.shape == image.shape and out.dtype == np.uint8
        assert psnr(out, untiled) >= 35.0
    # Without shared statistics the gradient is far off: the test can fail.
    image = gradient(96, 128)
    assert psnr(naive.generate(image), translator(image[None]).numpy()[0]) < 30.0


@pytest.mark.parametrize("context", [8, 20])
def test_tiles_match_untiled_output_with_context(translator, context):
    # The tiles are planned on the axis the Translator pads (context + its
    # size rule), so they sample the same grid: as close as without context.
    wide = translator.with_context(context)
    image = smooth_noise(96, 128, seed=4)
    untiled = wide(image[None]).numpy()[0]
    assert psnr(untiled, translator(image[None]).numpy()[0]) < 40.0  # context changes the output
    assert psnr(tiling.TiledTranslator(wide, tile=64, overlap=32).generate(image), untiled) >= 35.0
    # Over stats_size the thumbnail gets the context scaled with it (a
    # gradient, as in the thumbnail test below: noise does not survive downscaling).
    image = gradient(192, 256)
    untiled = wide(image[None]).numpy()[0]
    thumb = tiling.TiledTranslator(wide, tile=64, overlap=32, stats_size=128).generate(image)
    naive = _NaiveTiles(wide, tile=64, overlap=32).generate(image)
    assert psnr(thumb, untiled) > psnr(naive, untiled) + 5.0


def test_plan_axis_with_context_covers_the_mirrored_border():
    windows = tiling.plan_axis(100, 64, 32, multiple=4, minimum=8, context=16)
    size = tiling.padded_size(100 + 32, 4, 8)
    assert sum(len(w.indices) for w in windows) > size  # tiles span the padded axis, overlapping
    first = windows[0]
    # The first tile starts 16 mirrored pixels before the image (reflect: 16, 15, ..., 1, 0, 1, ...).
    np.testing.assert_array_equal(first.indices[:18], [*range(16, 0, -1), 0, 1])


@pytest.mark.parametrize("shape", [(67, 201), (130, 65), (9, 300)])
def test_odd_sizes_keep_their_size_and_match_untiled(translator, shape):
    image = smooth_noise(*shape, seed=3)
    out = tiling.TiledTranslator(translator, tile=64, overlap=32).generate(image)
    assert out.shape == image.shape
    assert psnr(out, translator(image[None]).numpy()[0]) >= 35.0


@pytest.mark.parametrize("kind", ["constant", "gradient"])
def test_no_seam_at_tile_boundaries(translator, kind):
    height, width, tile, overlap = 64, 384, 128, 64
    image = np.full((height, width, 3), 200, np.uint8) if kind == "constant" else gradient(height, width)
    untiled = translator(image[None]).numpy()[0].astype(np.float64)
    out = tiling.TiledTranslator(translator, tile=tile, overlap=overlap).generate(image)
    assert psnr(out, untiled) >= 35.0
    # A seam is a step in the error profile across columns. Measure the
    # largest column-to-column change of the mean error near each cut and
    # away from the cuts.
    profile = (out - untiled).mean(axis=(0, 2))
    steps = np.abs(np.diff(profile))
    windows = tiling.plan_axis(width, tile, overlap, 4, 8)
    assert len(windows) >= 3
    near_cut = np.zeros(width - 1, bool)
    for w in windows[1:]:
        near_cut[w.lo - 4 : w.lo + overlap // 4 + 4] = True
    assert steps[near_cut].max() < 1.0  # under one grey level: invisible
    assert np.abs(out - untiled)[:, :-1][:, near_cut].mean() < 1.0


def test_the_cross_fade_beats_a_hard_cut(translator, monkeypatch):
    # The same plan with the raised-cosine fade replaced by a step in its middle.
    image = gradient(96, 128)
    untiled = translator(image[None]).numpy()[0].astype(np.float64)
    faded = tiling.TiledTranslator(translator, tile=64, overlap=32).generate(image)
    monkeypatch.setattr(tiling, "_ramp", lambda n: (np.arange(n) >= n / 2).astype(np.float32))
    cut = tiling.TiledTranslator(translator, tile=64, overlap=32).generate(image)
    assert not np.array_equal(faded, cut)
    assert psnr(faded, untiled) > psnr(cut, untiled) + 0.3
    assert np.abs(faded - untiled).max() < np.abs(cut - untiled).max()


def test_unet_tiles(tmp_path):
    translator = Translator(build_generator("unet_128", base_filters=4, seed=5))
    image = smooth_noise(128, 384, seed=4)
    out = tiling.TiledTranslator(translator, tile=256, overlap=128).generate(image)
    naive = _NaiveTiles(translator, tile=256, overlap=128).generate(image)
    untiled = translator(image[None]).numpy()[0]
    assert out.shape == image.shape
    assert psnr(out, untiled) >= 35.0
    assert psnr(out, untiled) > psnr(naive, untiled) + 1.0  # the shared statistics do something here too


@pytest.mark.parametrize("in_place", [False, True])
def test_tiling_allocates_no_full_size_copy_of_the_image(translator, in_place):
    tiled = tiling.TiledTranslator(translator, tile=64, overlap=16, stats_size=64, batch_size=2)

    def peak_numpy_bytes(height, width):
        image = smooth_noise(height, width)
        out = image if in_place else np.empty_like(image)
        tracemalloc.start()
        try:
            tiled.generate(image, out=out)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    peak_numpy_bytes(128, 128)  # trace the tf.functions first
    medium = peak_numpy_bytes(256, 384)
    large = peak_numpy_bytes(512, 384)
    # Twice the rows: a float copy of the image would add 3 * 4 bytes for
    # each new pixel, a uint8 one (say, in-place rows held until the end) 3;
    # the scratch (tile batches, overlap carries, a band or two of held rows)
    # stays put. (Python's own garbage from the tile loop grows a little with
    # the tile count, hence the margin.)
    extra_uint8_copy = (512 - 256) * 384 * 3
    assert large - medium < extra_uint8_copy / 2, (medium, large)
    assert large < 512 * 384 * 3 * 4 / 2, large


@pytest.mark.parametrize("overlap,batch_size,context", [(32, 1, 0), (16, 3, 0), (24, 2, 12), (0, 5, 0)])
def test_in_place_equals_a_separate_output(translator, overlap, batch_size, context):
    # Many bands and columns, batches that end mid-band, context: translating
    # into the source itself must give exactly what a separate output gets.
    wide = translator.with_context(context)
    tiled = tiling.TiledTranslator(wide, tile=64, overlap=overlap, batch_size=batch_size)
    for image in (smooth_noise(300, 170, seed=7), gradient(130, 260)):
        expected = tiled.generate(image)
        work = image.copy()
        assert tiled.generate(work, out=work) is work
        np.testing.assert_array_equal(work, expected)


def test_out_overlapping_image_without_being_it_is_refused(translator):
    tiled = tiling.TiledTranslator(translator, tile=64, overlap=32)
    buffer = smooth_noise(160, 90)
    with pytest.raises(ValueError, match="out overlaps image"):
        tiled.generate(buffer[:130], out=buffer[30:])


def test_in_place_in_an_rgbx_buffer(translator):
    # The converter's case: the source is the first three channels of a
    # 4-byte-per-pixel buffer, translated in place; the fourth stays untouched.
    image = smooth_noise(200, 150, seed=3)
    tiled = tiling.TiledTranslator(translator, tile=64, overlap=32, batch_size=2)
    buffer = np.full((200, 150, 4), 7, np.uint8)
    buffer[:, :, :3] = image
    tiled.generate(buffer[:, :, :3], out=buffer[:, :, :3])
    np.testing.assert_array_equal(buffer[:, :, :3], tiled.generate(image))
    assert (buffer[:, :, 3] == 7).all()


def test_in_place_without_held_rows_would_read_translated_pixels(translator, monkeypatch):
    # The test above can fail: writing each finished region straight into
    # the source (no held rows) changes the result.
    image = smooth_noise(300, 170, seed=7)
    tiled = tiling.TiledTranslator(translator, tile=64, overlap=32, batch_size=1)
    expected = tiled.generate(image)
    monkeypatch.setattr(tiling.np, "may_share_memory", lambda a, b: False)
    work = image.copy()
    tiled.generate(work, out=work)
    assert not np.array_equal(work, expected)


def test_bad_overlap_tile_and_stats_size(translator, tmp_path):
    with pytest.raises(ValueError, match="overlap"):
        tiling.TiledTranslator(translator, tile=64, overlap=64).generate(np.zeros((8, 300, 3), np.uint8))
    with pytest.raises(ValueError, match="tile 4 is too small"):
        tiling.TiledTranslator(translator, tile=4)
    # stats_size 0 made a 1x1 thumbnail: a ruined image, marked converted.
    for bad in (0, -1):
        with pytest.raises(ValueError, match=f"stats_size must be >= 1.*got {bad}"):
            tiling.TiledTranslator(translator, tile=64, overlap=16, stats_size=bad)
    import gan_style

    (tmp_path / "in").mkdir()
    with pytest.raises(ValueError, match="stats_size must be >= 1"):
        gan_style.convert_catalog(translator, tmp_path / "in", tmp_path / "out", stats_size=0, progress=False)
    assert not (tmp_path / "out").exists()
    # A generator whose tiles start every 256 pixels says what tile it needs.
    unet = Translator(build_generator("unet_256", base_filters=2, seed=0))
    with pytest.raises(ValueError, match=r"--overlap: overlap 1 is too large for tile 256: this generator's "
                       r"tiles start every 256 pixels, so the tile must be at least 512 \(or the overlap at most 0\)"):
        tiling.check_tiling(unet, 300, 1)
    # A Sequential generator cannot be tiled: refused before any image, unless nothing is tiled.
    import keras

    plain = Translator(keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(3, 3, padding="same")],
                                        name="plain"))
    with pytest.raises(ValueError, match=r"--tile=512: images larger than that are translated in tiles, which needs "
                                         r"a functional Keras generator; 'plain' is a Sequential. Use --tile=0"):
        tiling.check_tiling(plain, 512, 32)
    tiling.check_tiling(plain, 0, 32)


def test_an_rgbx_image_is_tiled_on_its_colour_channels(translator):
    image = smooth_noise(80, 100, seed=2)
    rgbx = np.concatenate([image, np.full((80, 100, 1), 7, np.uint8)], axis=-1)
    tiled = tiling.TiledTranslator(translator, tile=64, overlap=32)
    np.testing.assert_array_equal(tiled.generate(rgbx), tiled.generate(image))


@pytest.mark.parametrize("shape,max_side", [((700, 300), 128), ((300, 1000), 64), ((1100, 90), 256), ((513, 512), 512),
                                            ((3000, 40), 128), ((9, 15000), 100), ((60, 3000), 128)])
def test_thumbnail_in_strips_equals_one_resize(shape, max_side):
    # Random pixels (every rounding shows) and strips that do not divide the
    # height: the strip-wise first pass must give PIL's one-call result.
    from PIL import Image

    image = np.random.default_rng(sum(shape)).integers(0, 256, shape + (3,), dtype=np.uint8)
    small = tiling.thumbnail(image, max_side)
    scale = tiling.thumbnail_scale(*shape, max_side)
    assert scale < 1 and shape[0] <= 100 * shape[1]  # the strip-wise path, not the image itself or one resize
    size = (max(1, round(shape[1] * scale)), max(1, round(shape[0] * scale)))
    np.testing.assert_array_equal(small, np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BOX)))
    # An RGBX view (the converter's decode buffer) gives the same thumbnail.
    rgbx = np.concatenate([image, np.zeros(shape + (1,), np.uint8)], axis=-1)
    np.testing.assert_array_equal(tiling.thumbnail(rgbx[:, :, :3], max_side), small)


@pytest.mark.parametrize("shape,expected", [
    ((8000, 8000), (1024, 1024)),  # the long side to stats_size
    ((8000, 2000), (1024, 256)),
    ((8000, 1000), (2048, 256)),  # a long narrow image keeps a quarter of stats_size across
    ((4000, 20), (4000, 20)),  # or all it has
    ((100000, 100), (45795, 46)),  # about 2 * stats_size**2 pixels at most
])
def test_thumbnail_keeps_a_usable_short_side(shape, expected):
    scale = min(1.0, tiling.thumbnail_scale(*shape, 1024))
    assert (round(shape[0] * scale), round(shape[1] * scale)) == expected


def test_long_narrow_image_tiled_like_untiled(translator):
    # By the long side alone, 1600 x 24 pixels would shrink to a 2-pixel
    # thumbnail with statistics nothing like the image's (measured: 8.7 dB
    # from untiled, against 35.9 with the short side kept).
    image = smooth_noise(24, 1600, seed=5)
    untiled = translator(image[None]).numpy()[0]
    tiled = tiling.TiledTranslator(translator, tile=64, overlap=32, stats_size=128).generate(image)
    assert psnr(tiled, untiled) > 30.0


def test_thumbnail_statistics_for_images_over_stats_size(translator):
    # Statistics from a 2x downscaled thumbnail: approximate (documented),
    # but far closer to the untiled result than per-tile statistics.
    image = gradient(192, 256)
    untiled = translator(image[None]).numpy()[0]
    thumb = tiling.TiledTranslator(translator, tile=64, overlap=32, stats_size=128).generate(image)
    naive = _NaiveTiles(translator, tile=64, overlap=32).generate(image)
    assert psnr(thumb, untiled) > psnr(naive, untiled) + 5.0
