"""The pool against a line-by-line Python version of the reference ImagePool.query."""

import numpy as np
import pytest
import tensorflow as tf

from gan_style.image_pool import ImagePool, pool_query


def reference_query(state, images, uniform, index, size):
    """pytorch-CycleGAN-and-pix2pix util/image_pool.py, with given random draws."""
    returned = []
    for i, image in enumerate(images):
        if len(state) < size:
            state.append(image)
            returned.append(image)
        elif uniform[i] > 0.5:
            j = index[i]
            returned.append(state[j])
            state[j] = image
        else:
            returned.append(image)
    return np.stack(returned)


def test_matches_reference_over_many_batches():
    size, rs = 5, np.random.RandomState(0)
    pool = ImagePool(size, (2, 2, 3))
    state = []
    for step in range(12):
        n = 1 + step % 3  # batch sizes 1, 2, 3 ...
        images = rs.randn(n, 2, 2, 3).astype(np.float32)
        uniform = rs.uniform(size=4).astype(np.float32)
        index = rs.randint(0, size, size=4).astype(np.int32)
        got = pool.query(tf.constant(images), tf.constant(uniform), tf.constant(index)).numpy()
        want = reference_query(state, images, uniform, index, size)
        np.testing.assert_array_equal(got, want)
        assert int(pool.count.numpy()) == len(state)
        np.testing.assert_array_equal(pool.images.numpy()[: len(state)], np.stack(state))


def test_swap_within_one_batch_returns_the_earlier_image():
    # Full pool of 1: image 0 swaps in (returns the stored one), image 1 swaps
    # out image 0, so image 1's answer is image 0 itself.
    pool = np.full((1, 1, 1, 1), 9.0, np.float32)
    images = np.array([1.0, 2.0], np.float32).reshape(2, 1, 1, 1)
    returned, new_pool, count = pool_query(
        tf.constant(pool), tf.constant(1), tf.constant(images), tf.constant([0.9, 0.9]), tf.constant([0, 0])
    )
    np.testing.assert_array_equal(returned.numpy().ravel(), [9.0, 1.0])
    np.testing.assert_array_equal(new_pool.numpy().ravel(), [2.0])
    assert int(count) == 1


def test_size_zero_is_identity_and_bad_shapes_fail():
    images = tf.random.normal((2, 4, 4, 3))
    assert ImagePool(0, (4, 4, 3)).query(images, None, None) is images
    with pytest.raises(ValueError, match="holds images of shape"):
        ImagePool(2, (8, 8, 3)).query(images, tf.zeros(2), tf.zeros(2, tf.int32))
    with pytest.raises(ValueError, match="pool size"):
        ImagePool(-1, (4, 4, 3))


def test_checkpoint_round_trip(tmp_path):
    pool = ImagePool(3, (2, 2, 1))
    pool.query(tf.ones((2, 2, 2, 1)), tf.zeros(2), tf.zeros(2, tf.int32))
    path = tf.train.Checkpoint(pool=pool).write(str(tmp_path / "ckpt"))
    fresh = ImagePool(3, (2, 2, 1))
    tf.train.Checkpoint(pool=fresh).read(path).assert_consumed()
    assert int(fresh.count.numpy()) == 2
    np.testing.assert_array_equal(fresh.images.numpy(), pool.images.numpy())
