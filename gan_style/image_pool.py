"""The discriminator's history of generated images (Shrivastava et al. 2017).

The reference CycleGAN shows each discriminator, instead of the generator's
newest fakes only, a mix drawn from a buffer of the last 50: while the buffer
is filling every fake goes in and is returned as is; once it is full each fake
is, with probability one half, swapped with a random stored one (the stored
one is returned and the new one takes its slot), and otherwise returned
unchanged.

Under ``tf.distribute`` there is one *global* pool per discriminator: every
replica gathers all replicas' fakes, applies the same update with the same
random numbers (drawn once per step in cross-replica context and passed to
every replica), and keeps its own slice of the result. The buffer lives in
``tf.Variable`` s, so it is checkpointed and a resumed run continues with the
exact same history; the variables use ``ONLY_FIRST_REPLICA`` aggregation
because all replicas write the same value.
"""

from __future__ import annotations

import tensorflow as tf


def pool_query(pool, count, images, uniform, index):
    """The reference ``ImagePool.query`` as a pure function of tensors.

    Images are processed in batch order, one after another, as the reference's
    Python loop does; the loop runs over slot numbers only, and the images are
    gathered once at the end.

    Args:
      pool: ``[size, H, W, C]`` stored images; slots ``>= count`` are unused.
      count: scalar int32, number of filled slots.
      images: ``[n, H, W, C]`` new fakes (the global batch).
      uniform: ``[>= n]`` float uniform draws in [0, 1).
      index: ``[>= n]`` int32 draws in [0, size).

    Returns:
      ``(returned, new_pool, new_count)``: ``[n, H, W, C]`` images to show the
      discriminator, the updated buffer and count.
    """
    size = pool.shape[0]
    n = tf.shape(images)[0]
    # Sources are numbered 0..size-1 for stored slots, size + i for images[i].
    slot_source = tf.range(size, dtype=tf.int32)
    returned_source = tf.TensorArray(tf.int32, size=n)

    def body(i, count, slot_source, returned_source):
        new = size + i

        def fill():
            return count + 1, tf.tensor_scatter_nd_update(slot_source, [[count]], [new]), new

        def swap():
            j = index[i]
            old = slot_source[j]
            return count, tf.tensor_scatter_nd_update(slot_source, [[j]], [new]), old

        def keep():
            return count, slot_source, new

        count, slot_source, out = tf.cond(
            count < size, fill, lambda: tf.cond(uniform[i] > 0.5, swap, keep)
        )
        return i + 1, count, slot_source, returned_source.write(i, out)

    _, new_count, slot_source, returned_source = tf.while_loop(
        lambda i, *_: i < n,
        body,
        (tf.constant(0), tf.cast(count, tf.int32), slot_source, returned_source),
    )
    everything = tf.concat([pool, tf.cast(images, pool.dtype)], axis=0)
    returned = tf.gather(everything, returned_source.stack())
    return tf.cast(returned, images.dtype), tf.gather(everything, slot_source), new_count


class ImagePool(tf.Module):
    """A history buffer of ``size`` images of shape ``image_shape``, in variables.

    Create it inside the strategy scope. ``size=0`` turns the pool off:
    :meth:`query` then returns its input.
    """

    def __init__(self, size: int, image_shape, name: str | None = None):
        super().__init__(name=name)
        if isinstance(size, bool) or int(size) != size or size < 0:
            raise ValueError(f"pool size must be an integer >= 0, got {size!r}")
        self.size = int(size)
        self.image_shape = tuple(int(d) for d in image_shape)
        with self.name_scope:
            self.images = tf.Variable(
                tf.zeros((self.size, *self.image_shape), tf.float32),
                trainable=False,
                name="images",
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )
            self.count = tf.Variable(
                0,
                dtype=tf.int32,
                trainable=False,
                name="count",
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )

    def query(self, images, uniform, index):
        """Returns the images to show the discriminator and updates the buffer.

        ``images`` is the *global* batch; every replica must pass the same
        images and random draws. Call at the top level of a replica function
        (not inside ``tf.cond``: the variable writes synchronise replicas).
        """
        if self.size == 0:
            return images
        got = tuple(images.shape[1:])
        if len(got) != len(self.image_shape) or any(
            g is not None and g != want for g, want in zip(got, self.image_shape)
        ):
            raise ValueError(
                f"image pool {self.name!r} holds images of shape {self.image_shape}, "
                f"got {tuple(images.shape[1:])}"
            )
        returned, new_pool, new_count = pool_query(
            self.images, self.count, images, uniform, index
        )
        self.images.assign(new_pool)
        self.count.assign(new_count)
        return returned
