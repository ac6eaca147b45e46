"""Every config key, with its default and meaning. Other configs import this.

Run (reference hyperparameters on a dataset in the reference layout):

    python train.py --config=configs/default.py --workdir=runs/x \
        --config.data.root=path/to/dataset

Override any field from the command line: ``--config.train.epochs=5``. The
returned config is locked: setting a key that doesn't exist (here, in an
experiment config or on the command line) is an error naming the key.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0  # seeds network init, data order/crops/flips and the image pools

    # -- data (gan_style.input_pipeline) ------------------------------------
    data = config.data = ml_collections.ConfigDict()
    data.root = ""  # folder with trainA/, trainB/, testA/, testB/ (reference layout)
    data.train_a = ""  # folder of domain-A training images (overrides root/trainA)
    data.train_b = ""  # folder of domain-B training images (overrides root/trainB)
    data.test_a = ""  # folder of domain-A test images (overrides root/testA)
    data.test_b = ""  # folder of domain-B test images (overrides root/testB)
    data.tfds_name = ""  # a TFDS dataset such as 'cycle_gan/horse2zebra' (wins when set: the folders are not read)
    data.tfds_data_dir = ""  # TFDS data_dir ('' = the TFDS default)
    # resize_and_crop | crop | scale_width | scale_width_and_crop | none (reference --preprocess)
    data.preprocess = "resize_and_crop"
    data.load_size = 286  # resize (or scale width) to this before cropping
    data.crop_size = 256  # random training crop; the image pools store crops of this size
    data.flip = True  # random horizontal flips in training
    data.eval_size = 256  # test images resized to this square (0 = native size, batch 1)
    data.cache = False  # keep decoded, resized images in memory after the first epoch
    data.num_parallel_calls = -1  # decode workers (-1 = tf.data AUTOTUNE)
    data.max_images = 0  # use at most this many images per domain in every split, test too (0 = all)

    # -- networks and losses (gan_style.networks, gan_style.losses) --------
    model = config.model = ml_collections.ConfigDict()
    model.generator = "resnet_9blocks"  # resnet_9blocks | resnet_6blocks | unet_128 | unet_256
    model.generator_filters = 64  # filters of the generators' first layer (reference ngf)
    model.discriminator = "basic"  # basic (70x70 PatchGAN) | n_layers | pixel
    model.discriminator_filters = 64  # filters of the discriminators' first layer (ndf)
    model.discriminator_layers = 3  # strided layers of the n_layers discriminator
    model.norm = "instance"  # instance | batch | none
    model.dropout = 0.0  # generators' dropout rate: resnet residual blocks, unet inner levels (reference: off)
    model.upsample = "transpose"  # transpose (reference) | resize_conv (no checkerboard)
    model.init = "normal"  # normal | xavier | kaiming | orthogonal
    model.init_gain = 0.02  # scale of the normal/xavier/orthogonal initialisation (kaiming has none, as the reference)
    model.adversarial_loss = "lsgan"  # lsgan (reference) | vanilla | hinge
    model.lambda_cycle_a = 10.0  # weight of |gen_ba(gen_ab(a)) - a|
    model.lambda_cycle_b = 10.0  # weight of |gen_ab(gen_ba(b)) - b|
    model.lambda_identity = 0.5  # identity weight relative to the cycle weight (0 = off)
    model.pool_size = 50  # fakes in each discriminator's history pool (0 = off)

    # -- optimizers: one Adam for both generators, one for both discriminators
    optim = config.optim = ml_collections.ConfigDict()
    optim.learning_rate = 2e-4  # constant for train.epochs, then linear decay to 0
    optim.beta_1 = 0.5
    optim.beta_2 = 0.999
    optim.epsilon = 1e-8  # added to the bias-corrected sqrt(v), as PyTorch (the reference) does
    optim.decay_per_step = False  # False: lower the rate once per epoch (reference)

    # -- training loop -------------------------------------------------------
    train = config.train = ml_collections.ConfigDict()
    train.batch_size = 1  # GLOBAL batch size, split over all replicas
    train.epochs = 100  # epochs at the initial learning rate (reference n_epochs)
    train.epochs_decay = 100  # epochs of linear decay to 0 (reference n_epochs_decay)
    train.max_steps = 0  # stop after this many steps in total (0 = the whole schedule)
    # auto: mixed_bfloat16 on CPUs with native bfloat16 (AVX512-BF16/AMX), float32
    # elsewhere | float32 | mixed_float16 (loss scaled) | mixed_bfloat16
    train.precision = "auto"
    train.jit_compile = False  # XLA-compile each replica's forward/backward passes
    train.deterministic = False  # deterministic TF ops (exact resume; turns XLA off)
    train.log_every_steps = 100  # TensorBoard scalars every this many steps (0 = off)
    train.sample_every_steps = 1000  # sample sheets (TensorBoard + PNG) every this many steps (0 = off)
    train.num_samples = 4  # fixed test images per direction in the sample sheets
    train.progress = True  # Keras progress bar on stdout

    # -- checkpoints (workdir/checkpoints) and exports (workdir/export) ----
    checkpoint = config.checkpoint = ml_collections.ConfigDict()
    checkpoint.every_steps = 0  # also checkpoint every this many steps (0 = epoch ends only)
    checkpoint.keep = 3  # keep the last this many checkpoints

    # -- tf.distribute --------------------------------------------------------
    distribute = config.distribute = ml_collections.ConfigDict()
    # auto: TPU if configured/local, multi_worker if TF_CONFIG lists several
    # workers, mirrored if several GPUs, else default | default | mirrored |
    # multi_worker | tpu
    distribute.strategy = "auto"
    distribute.devices = ""  # mirrored: comma-separated devices ('' = all GPUs)
    distribute.tpu = ""  # TPU name or grpc:// address ('' = TPU_NAME or the local TPU VM)

    # -- evaluation during training (gan_style.metrics) ---------------------
    # To follow the run and pick its best checkpoint: the test images at
    # data.eval_size, translated in float without rounding to 8 bits. Scores
    # of files written by infer.py (python -m gan_style.evaluate) are the ones
    # to report; they differ somewhat.
    evaluation = config.eval = ml_collections.ConfigDict()
    evaluation.every_epochs = 0  # FID/KID every this many epochs (0 = off)
    evaluation.num_images = 0  # test images per domain to score (0 = all, at most data.max_images)
    # TF-FID InceptionV3 weights ('' = $GAN_STYLE_INCEPTION_WEIGHTS or the default path)
    evaluation.inception_weights = ""
    evaluation.best_metric = "fid_ab"  # fid_ab | fid_ba | fid_mean: keeps the best checkpoint

    config.lock()
    return config
