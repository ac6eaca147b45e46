"""CycleGAN as a Keras model: four networks, two optimizers, two image pools.

One training step, on every replica (the reference's
``optimize_parameters``, with our direction names):

1. Generators: ``fake_b = gen_ab(a)``, ``rec_a = gen_ba(fake_b)``,
   ``fake_a = gen_ba(b)``, ``rec_b = gen_ab(fake_a)`` (each computed once and
   reused), optional identity images ``gen_ba(a)`` and ``gen_ab(b)``; the
   adversarial, cycle and identity losses; one update of both generators.
2. Pools: the fakes of all replicas are gathered and pass through one global
   history pool per discriminator (:mod:`gan_style.image_pool`).
3. Discriminators: ``disc_a`` judges real ``a`` against pooled ``fake_a``,
   ``disc_b`` real ``b`` against pooled ``fake_b``; one update of both.

Losses are per-example sums divided by the *global* batch size, and the
optimizers sum gradients over replicas, so N replicas compute what one device
with the whole batch would (with instance norm, the reference's CycleGAN
setting). Two settings differ: ``norm="batch"`` normalises with each
replica's own batch statistics (as the reference's DataParallel does), and
dropout draws the same masks on every replica (its seed state is one
mirrored variable). Loss names say direction:

=============  ===========================================================
gen_ab_loss    adversarial loss of ``gen_ab`` (``disc_b`` on ``fake_b``)
gen_ba_loss    adversarial loss of ``gen_ba`` (``disc_a`` on ``fake_a``)
cycle_a_loss   ``lambda_cycle_a * |gen_ba(gen_ab(a)) - a|``
cycle_b_loss   ``lambda_cycle_b * |gen_ab(gen_ba(b)) - b|``
idt_a_loss     ``lambda_cycle_a * lambda_identity * |gen_ba(a) - a|``
idt_b_loss     ``lambda_cycle_b * lambda_identity * |gen_ab(b) - b|``
disc_a_loss    ``disc_a`` loss (real and fake terms averaged)
disc_b_loss    ``disc_b`` loss
=============  ===========================================================
"""

from __future__ import annotations

import keras
import tensorflow as tf

from gan_style import losses
from gan_style.image_pool import ImagePool
from gan_style.networks import build_discriminator, build_generator, leaf_layers
from gan_style.optimizers import ReferenceAdam

LOSS_NAMES = (
    "gen_ab_loss",
    "gen_ba_loss",
    "cycle_a_loss",
    "cycle_b_loss",
    "idt_a_loss",
    "idt_b_loss",
    "disc_a_loss",
    "disc_b_loss",
)


@keras.saving.register_keras_serializable("gan_style")
class CycleGAN(keras.Model):
    """The two translators ``gen_ab``, ``gen_ba`` and their critics ``disc_a``, ``disc_b``.

    Build it inside the strategy scope, then call :meth:`build` with the
    training image shape (creates the pools and the random generator) and
    :meth:`compile` with the optimizers; :meth:`make_distributed_step` returns
    the compiled distributed train step.

    Args:
      generator: ``gan_style.build_generator`` name.
      discriminator: ``gan_style.build_discriminator`` name.
      generator_options: keyword options for both generators.
      discriminator_options: keyword options for both discriminators.
      adversarial_loss: ``lsgan`` (reference), ``vanilla`` or ``hinge``.
      lambda_cycle_a: weight of the A -> B -> A cycle loss (reference 10).
      lambda_cycle_b: weight of the B -> A -> B cycle loss (reference 10).
      lambda_identity: identity weight relative to the cycle weight (0.5; 0
        skips the identity passes).
      pool_size: images in each discriminator's history pool (50; 0 = off).
      seed: seeds the four networks' initialisers and the pool's random draws.
      jit_compile: XLA-compile each replica's forward/backward passes (not
        the optimizer updates).
    """

    def __init__(
        self,
        generator: str = "resnet_9blocks",
        discriminator: str = "basic",
        generator_options: dict | None = None,
        discriminator_options: dict | None = None,
        adversarial_loss: str = "lsgan",
        lambda_cycle_a: float = 10.0,
        lambda_cycle_b: float = 10.0,
        lambda_identity: float = 0.5,
        pool_size: int = 50,
        seed: int = 0,
        jit_compile: bool = False,
        **kwargs,
    ):
        kwargs.setdefault("name", "cyclegan")
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.generator_options = dict(generator_options or {})
        self.discriminator_options = dict(discriminator_options or {})
        self.adversarial_loss = adversarial_loss
        self._adversarial = losses.get_adversarial_loss(adversarial_loss)
        for what, value in (
            ("lambda_cycle_a", lambda_cycle_a),
            ("lambda_cycle_b", lambda_cycle_b),
            ("lambda_identity", lambda_identity),
        ):
            if not float(value) >= 0:
                raise ValueError(f"{what} must be >= 0, got {value!r}")
        self.lambda_cycle_a = float(lambda_cycle_a)
        self.lambda_cycle_b = float(lambda_cycle_b)
        self.lambda_identity = float(lambda_identity)
        if isinstance(pool_size, bool) or int(pool_size) != pool_size or pool_size < 0:
            raise ValueError(f"pool_size must be an integer >= 0, got {pool_size!r}")
        self.pool_size = int(pool_size)
        self.seed = int(seed)
        self.jit_compile = bool(jit_compile)

        g, d = self.generator_options, self.discriminator_options
        # Distinct initialiser seeds per network, reproducible from one seed.
        self.gen_ab = _build(build_generator, generator, "gen_ab", {"seed": self.seed, **g})
        self.gen_ba = _build(build_generator, generator, "gen_ba", {"seed": self.seed + 1, **g})
        self.disc_a = _build(
            build_discriminator, discriminator, "disc_a", {"seed": self.seed + 2, **d}
        )
        self.disc_b = _build(
            build_discriminator, discriminator, "disc_b", {"seed": self.seed + 3, **d}
        )
        self.pool_a = None  # history of fake_a = gen_ba(b), shown to disc_a
        self.pool_b = None  # history of fake_b = gen_ab(a), shown to disc_b
        self.rng = None
        self.gen_optimizer = None
        self.disc_optimizer = None
        if self.jit_compile:
            self._generator_pass = tf.function(self.generator_gradients, jit_compile=True)
            self._discriminator_pass = tf.function(
                self.discriminator_gradients, jit_compile=True
            )
        else:
            self._generator_pass = self.generator_gradients
            self._discriminator_pass = self.discriminator_gradients

    # -- setup -------------------------------------------------------------

    def build(self, input_shape):
        """Creates the pools and the random generator (inside the strategy scope).

        Args:
          input_shape: a training image's ``(H, W, C)`` (or ``(batch, H, W, C)``).
        """
        shape = tuple(input_shape)[-3:]
        if any(d is None for d in shape):
            raise ValueError(f"CycleGAN.build needs a fully known image shape, got {input_shape}")
        self.pool_a = ImagePool(self.pool_size, shape, name="pool_a")
        self.pool_b = ImagePool(self.pool_size, shape, name="pool_b")
        # Draws for the pools are made in cross-replica context and broadcast,
        # so every replica updates the global pools identically.
        self.rng = tf.random.Generator.from_seed(self.seed + 4)
        self.built = True

    def compile(self, gen_optimizer=None, disc_optimizer=None):
        """Sets one optimizer for both generators and one for both discriminators.

        Defaults to the reference's Adam(2e-4, beta_1=0.5), computed as
        PyTorch computes it (:class:`~gan_style.optimizers.ReferenceAdam`). Under the
        ``mixed_float16`` policy each optimizer is wrapped in a
        ``LossScaleOptimizer`` (losses are scaled in the train step). Both are
        built here, so their variables exist before the first step and a
        checkpoint can restore into them.
        """
        if not self.built:
            raise ValueError("call CycleGAN.build(image_shape) before compile()")
        gen_optimizer = gen_optimizer or ReferenceAdam()
        disc_optimizer = disc_optimizer or ReferenceAdam()
        if keras.mixed_precision.global_policy().name == "mixed_float16":
            gen_optimizer = _loss_scaled(gen_optimizer)
            disc_optimizer = _loss_scaled(disc_optimizer)
        self.gen_optimizer = gen_optimizer
        self.disc_optimizer = disc_optimizer
        self.gen_optimizer.build(self.generator_variables)
        self.disc_optimizer.build(self.discriminator_variables)

    @property
    def generator_variables(self) -> list:
        return self.gen_ab.trainable_variables + self.gen_ba.trainable_variables

    @property
    def discriminator_variables(self) -> list:
        return self.disc_a.trainable_variables + self.disc_b.trainable_variables

    def checkpoint_items(self) -> dict:
        """Everything a resumed run needs, for ``tf.train.Checkpoint(**items)``.

        With dropout, also each Dropout layer's seed state: Keras keeps it out
        of a model's checkpoint, and without it a resumed run draws the masks
        of step 1 again instead of continuing.
        """
        items = dict(
            gen_ab=self.gen_ab,
            gen_ba=self.gen_ba,
            disc_a=self.disc_a,
            disc_b=self.disc_b,
            gen_optimizer=self.gen_optimizer,
            disc_optimizer=self.disc_optimizer,
            pool_a=self.pool_a,
            pool_b=self.pool_b,
            rng=self.rng,
        )
        seeds = {
            f"{name}_{layer.name}": layer.seed_generator.state
            for name in ("gen_ab", "gen_ba", "disc_a", "disc_b")
            for layer in leaf_layers(getattr(self, name))
            if getattr(layer, "seed_generator", None) is not None
        }
        if seeds:  # only then: checkpoints of runs without dropout stay as they were
            items["dropout_seeds"] = seeds
        return items

    def call(self, inputs, training=False):
        """``(a, b) -> (gen_ab(a), gen_ba(b))``."""
        a, b = inputs
        return self.gen_ab(a, training=training), self.gen_ba(b, training=training)

    # -- one replica's computation ----------------------------------------

    def generator_gradients(self, a, b, global_batch_size):
        """Forward and backward pass of both generators.

        Returns:
          ``(gradients, losses, fake_a, fake_b)``; the losses are this
          replica's share (per-example sums over ``global_batch_size``), the
          gradients are of the loss-scaled total.
        """
        adversarial = self._adversarial
        n = tf.cast(global_batch_size, tf.float32)

        def share(per_example, weight=1.0):
            return weight * tf.reduce_sum(per_example) / n

        with tf.GradientTape() as tape:
            fake_b = self.gen_ab(a, training=True)
            rec_a = self.gen_ba(fake_b, training=True)
            fake_a = self.gen_ba(b, training=True)
            rec_b = self.gen_ab(fake_a, training=True)
            out = {
                "gen_ab_loss": share(adversarial.generator(self.disc_b(fake_b, training=True))),
                "gen_ba_loss": share(adversarial.generator(self.disc_a(fake_a, training=True))),
                "cycle_a_loss": share(losses.cycle_loss(a, rec_a), self.lambda_cycle_a),
                "cycle_b_loss": share(losses.cycle_loss(b, rec_b), self.lambda_cycle_b),
            }
            if self.lambda_identity > 0:
                same_a = self.gen_ba(a, training=True)
                same_b = self.gen_ab(b, training=True)
                out["idt_a_loss"] = share(
                    losses.identity_loss(a, same_a), self.lambda_cycle_a * self.lambda_identity
                )
                out["idt_b_loss"] = share(
                    losses.identity_loss(b, same_b), self.lambda_cycle_b * self.lambda_identity
                )
            else:
                out["idt_a_loss"] = out["idt_b_loss"] = tf.constant(0.0)
            total = tf.add_n(list(out.values()))
            scaled = self.gen_optimizer.scale_loss(total)
        grads = tape.gradient(scaled, self.generator_variables)
        return grads, out, fake_a, fake_b

    def discriminator_gradients(self, a, b, fake_a, fake_b, global_batch_size):
        """Forward and backward pass of both discriminators on (pooled) fakes."""
        adversarial = self._adversarial
        n = tf.cast(global_batch_size, tf.float32)
        fake_a = tf.stop_gradient(fake_a)
        fake_b = tf.stop_gradient(fake_b)
        with tf.GradientTape() as tape:
            out = {
                "disc_a_loss": tf.reduce_sum(
                    adversarial.discriminator(
                        self.disc_a(a, training=True), self.disc_a(fake_a, training=True)
                    )
                )
                / n,
                "disc_b_loss": tf.reduce_sum(
                    adversarial.discriminator(
                        self.disc_b(b, training=True), self.disc_b(fake_b, training=True)
                    )
                )
                / n,
            }
            scaled = self.disc_optimizer.scale_loss(out["disc_a_loss"] + out["disc_b_loss"])
        grads = tape.gradient(scaled, self.discriminator_variables)
        return grads, out

    def replica_step(self, a, b, draws):
        """One training step on one replica; call through ``strategy.run``.

        Args:
          a, b: this replica's images of each domain, ``[n, H, W, C]`` in [-1, 1].
          draws: the step's pool random numbers (same on every replica), from
            :meth:`draw_pool_randoms`.

        Returns:
          This replica's share of every loss (sum over replicas = global mean).
        """
        ctx = tf.distribute.get_replica_context()
        local_n = tf.shape(a)[0]
        global_n = ctx.all_reduce(tf.distribute.ReduceOp.SUM, tf.cast(local_n, tf.float32))

        grads, gen_losses, fake_a, fake_b = self._generator_pass(a, b, global_n)
        grads = _agree_on_finite(grads, self.gen_optimizer, ctx)
        self.gen_optimizer.apply(grads, self.generator_variables)

        pooled_a = self._through_pool(self.pool_a, fake_a, draws["uniform_a"], draws["index_a"], ctx)
        pooled_b = self._through_pool(self.pool_b, fake_b, draws["uniform_b"], draws["index_b"], ctx)

        grads, disc_losses = self._discriminator_pass(a, b, pooled_a, pooled_b, global_n)
        grads = _agree_on_finite(grads, self.disc_optimizer, ctx)
        self.disc_optimizer.apply(grads, self.discriminator_variables)
        return {**gen_losses, **disc_losses}

    def _through_pool(self, pool, fakes, uniform, index, ctx):
        """Gathers all replicas' fakes, updates the global pool, returns this replica's slice."""
        if pool.size == 0:
            return fakes
        if ctx.num_replicas_in_sync == 1:
            return pool.query(fakes, uniform, index)
        local_n = tf.shape(fakes)[0]
        everyone = ctx.all_gather(fakes, axis=0)  # replica order = global batch order
        everyone = tf.ensure_shape(everyone, [None, *fakes.shape[1:]])
        sizes = ctx.all_gather(tf.reshape(local_n, [1]), axis=0)
        offset = tf.reduce_sum(sizes[: ctx.replica_id_in_sync_group])
        pooled = pool.query(everyone, uniform, index)
        return pooled[offset : offset + local_n]

    def draw_pool_randoms(self, global_batch_size: int) -> dict:
        """The step's random draws for both pools (call in cross-replica context).

        A fixed number of draws per step (the configured global batch size),
        so the generator's state advances identically on every step.
        """
        size = max(self.pool_size, 1)
        return {
            "uniform_a": self.rng.uniform([global_batch_size]),
            "index_a": self.rng.uniform([global_batch_size], 0, size, dtype=tf.int32),
            "uniform_b": self.rng.uniform([global_batch_size]),
            "index_b": self.rng.uniform([global_batch_size], 0, size, dtype=tf.int32),
        }

    def make_distributed_step(self, strategy: tf.distribute.Strategy, global_batch_size: int):
        """A ``tf.function`` running one step on a distributed ``(a, b)`` batch.

        Returns:
          ``step(batch) -> {loss name: global mean}`` (scalar float32 tensors).
        """
        if self.gen_optimizer is None:
            raise ValueError("call CycleGAN.compile() before make_distributed_step()")

        @tf.function(reduce_retracing=True, autograph=False)
        def step(batch):
            a, b = batch
            draws = self.draw_pool_randoms(global_batch_size)
            shares = strategy.run(self.replica_step, args=(a, b, draws))
            return {
                name: strategy.reduce(tf.distribute.ReduceOp.SUM, shares[name], axis=None)
                for name in LOSS_NAMES
            }

        return step

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            generator=self.generator,
            discriminator=self.discriminator,
            generator_options=self.generator_options,
            discriminator_options=self.discriminator_options,
            adversarial_loss=self.adversarial_loss,
            lambda_cycle_a=self.lambda_cycle_a,
            lambda_cycle_b=self.lambda_cycle_b,
            lambda_identity=self.lambda_identity,
            pool_size=self.pool_size,
            seed=self.seed,
            jit_compile=self.jit_compile,
        )
        return config


def _build(builder, network: str, model_name: str, options: dict) -> keras.Model:
    """``builder(network, **options)`` with the Keras model named ``model_name``."""
    return builder(network, name=model_name, **options)


def _loss_scaled(optimizer):
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer
    return keras.optimizers.LossScaleOptimizer(optimizer)


def _agree_on_finite(grads, optimizer, ctx):
    """Makes every replica see non-finite gradients if any replica has them.

    Keras 3.15's ``LossScaleOptimizer`` tests the *local* gradients (before its
    inner optimizer all-reduces them) and then either skips the step or
    applies it; replicas that disagree would diverge (or, without merge_call,
    wait forever in the all-reduce). Poisoning every replica's gradients with
    NaN when any replica overflowed makes them all skip together.
    """
    if not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return grads
    if ctx.num_replicas_in_sync == 1:
        return grads
    local_bad = 1.0 - tf.cast(optimizer.check_finite(grads), tf.float32)
    any_bad = ctx.all_reduce(tf.distribute.ReduceOp.SUM, local_bad) > 0
    poison = tf.where(any_bad, float("nan"), 0.0)
    return [None if g is None else g + tf.cast(poison, g.dtype) for g in grads]
