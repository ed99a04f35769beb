"""GAN, the abstract model, and its subclasses: DCGAN (the tutorial's), FCGAN and CGAN.

A GAN holds two Keras models, `generator` and `discriminator`, and the losses that set
them against each other. The tutorial's TF1 class also built a separate "sampler" graph that
shared the generator's variables with `is_train=False`; in Keras the generator itself is the
sampler when called with `training=False` (see `generate`).
"""
from abc import ABC, abstractmethod

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from common.errors import UserError
from models.layers import (batch_normalization, conv_bn_lrelu, deconv_bn_relu, fc_bn_lrelu,
                           fc_layer)


# ------------------------------------------------------------------ losses
def sigmoid_cross_entropy(logits, label):
    """Mean sigmoid cross-entropy of logits (N, 1) (not probabilities) against one target
    label. Inside `strategy.run` it is this replica's share of the global-batch mean
    (tf.nn.compute_average_loss), so that gradients summed over replicas are the global
    batch's; on one device it is the plain mean."""
    logits = tf.cast(logits, tf.float32)
    per_example = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
        labels=tf.fill(tf.shape(logits), label), logits=logits), axis=-1)
    return tf.nn.compute_average_loss(per_example)


def d_loss_real(real_logits, real_label=1.0):
    """D's loss on real images, labelled `real_label` (1, or 0.9 with label smoothing)."""
    return sigmoid_cross_entropy(real_logits, real_label)


def d_loss_fake(fake_logits, fake_label=0.0):
    """D's loss on generated images, labelled `fake_label` (0, or 0.1 with smoothing)."""
    return sigmoid_cross_entropy(fake_logits, fake_label)


def discriminator_loss(real_logits, fake_logits, real_label=1.0, fake_label=0.0):
    """D's loss: real images are labelled `real_label` (1, or 0.9 with label smoothing),
    generated ones `fake_label` (0)."""
    return d_loss_real(real_logits, real_label) + d_loss_fake(fake_logits, fake_label)


def generator_loss(fake_logits):
    """The non-saturating generator loss: G wants D to call its images real (label 1)."""
    return sigmoid_cross_entropy(fake_logits, 1.0)


# ------------------------------------------------------------------ base
class GAN(ABC):
    """Generative adversarial network: the base class.

    :param input_shape: (H, W, C) of the images.
    :param config: learning.config.Config, the hyperparameters.
    """
    conditional = False

    def __init__(self, input_shape, config):
        self.input_shape = tuple(int(v) for v in input_shape)
        self.c_dim = self.input_shape[-1]
        self.z_dim = config.z_dim
        self.num_classes = config.num_classes if self.conditional else 0
        self.config = config
        self.generator = self._build_generator()
        self.discriminator = self._build_discriminator()
        # The exponential moving average of G's weights (G_ema_decay): a second generator
        # of the same architecture that starts as a copy and trails G's weights. Built
        # after D, so turning it on does not change how G and D are initialised.
        self.generator_ema = None
        if config.G_ema_decay:
            self.generator_ema = self._build_generator()
            for ema_v, v in zip(self.generator_ema.variables, self.generator.variables):
                ema_v.assign(v)
        # Samples, grids and FID use the average when there is one (test.py --no-ema
        # turns this off).
        self.sample_ema = self.generator_ema is not None
        self._samplers = {}

    @abstractmethod
    def _build_generator(self):
        """Return the generator, a keras.Model from z (and labels) to images in [-1, 1]."""

    @abstractmethod
    def _build_discriminator(self):
        """Return the discriminator, a keras.Model from images (and labels) to one logit."""

    def _sampler(self, *args):
        """The generator in inference mode: batch norm uses its moving averages, so an image
        does not depend on the others in its batch. One traced function per generator."""
        ema = self.sample_ema
        if ema and self.generator_ema is None:
            raise ValueError("sample_ema is set but the model has no averaged generator")
        if ema not in self._samplers:
            z_spec = tf.TensorSpec([None, self.z_dim], tf.float32)
            if self.conditional:
                fn = tf.function(lambda z, y: self.G(z, y, training=False, ema=ema),
                                 input_signature=[z_spec, tf.TensorSpec([None], tf.int32)])
            else:
                fn = tf.function(lambda z: self.G(z, training=False, ema=ema),
                                 input_signature=[z_spec])
            self._samplers[ema] = fn
        return self._samplers[ema](*args)

    def update_ema(self, decay):
        """One step of the average: ema <- decay * ema + (1 - decay) * G, for every trained
        weight of G. Batch norm's moving statistics are not averaged but recomputed for the
        averaged weights (`recalibrate_ema`): averaged statistics do not describe the
        averaged network's activations (washed-out samples; docs/departures.md)."""
        for ema_v, v in zip(self.generator_ema.trainable_variables,
                            self.generator.trainable_variables):
            ema_v.assign(decay * ema_v + (1.0 - decay) * tf.cast(v, ema_v.dtype))

    def recalibrate_ema(self, rng, batches=16, batch_size=64):
        """Batch norm's moving mean and variance of the averaged generator, recomputed as the
        mean of its batch statistics over `batches` batches of z (and labels) drawn from
        `rng`: BigGAN's "standing statistics". Each batch normalises on its own statistics,
        as in training, and the moving averages become their exact running mean. A no-op
        for a generator without batch norm or a model without an average."""
        if self.generator_ema is None:
            return
        norms = [layer for layer in _all_layers(self.generator_ema)
                 if isinstance(layer, keras.layers.BatchNormalization)]
        if not norms:
            return
        momenta = [layer.momentum for layer in norms]
        try:
            for k in range(batches):
                for layer in norms:      # moving <- k/(k+1) moving + 1/(k+1) batch statistic
                    layer.momentum = k / (k + 1.0)
                z = self.sample_z(rng, batch_size)
                labels = self.sample_labels(rng, batch_size) if self.conditional else None
                self.G(z, labels, training=True, ema=True)
        finally:
            for layer, momentum in zip(norms, momenta):
                layer.momentum = momentum

    def portable_generator(self, ema=None):
        """The generator (the average by default, when there is one) as a Keras model of
        Keras's own layers, with the same weights: saved as `generator.keras`, it loads with
        `keras.saving.load_model` where this repository is not installed. Its batch norm is
        Keras's (this project's subclass only speeds up training), so it draws the same
        images in inference mode. Inputs as `G`: z, and the one-hot label for a conditional
        model."""
        ema = self.sample_ema if ema is None else ema

        def plain(layer):
            if isinstance(layer, keras.layers.BatchNormalization):
                config = layer.get_config()
                config.pop("synchronized", None)
                return keras.layers.BatchNormalization.from_config(config)
            return layer.__class__.from_config(layer.get_config())
        source = self._generator(ema)
        copy = keras.models.clone_model(source, clone_function=plain)
        copy.set_weights(source.get_weights())
        return copy

    # Calling conventions shared by conditional and unconditional models. `ema`: run the
    # averaged generator instead of the trained one.
    def _generator(self, ema):
        return self.generator_ema if ema else self.generator

    def G(self, z, labels=None, training=False, ema=False):
        return self._generator(ema)(z, training=training)

    def D(self, x, labels=None, training=False):
        return self.discriminator(x, training=training)

    def sample_z(self, rng, n):
        """Draw n latent vectors from `rng` (a tf.random.Generator): U(-1, 1) as in the
        tutorial, or N(0, 1) with z_distribution='normal'."""
        if self.config.z_distribution == "normal":
            return rng.normal([n, self.z_dim], dtype=tf.float32)
        return rng.uniform([n, self.z_dim], -1.0, 1.0, dtype=tf.float32)

    def sample_labels(self, rng, n):
        """Labels drawn uniformly (what FID of a conditional model uses)."""
        return rng.uniform([n], 0, self.num_classes, dtype=tf.int32)

    # The losses the training step uses: the pure functions above with this config's
    # labels, so that each loss has one implementation.
    @property
    def real_label(self):
        return 1.0 - self.config.label_smoothing

    @property
    def fake_label(self):
        return self.config.fake_label_smoothing

    def discriminator_loss(self, real_logits, fake_logits):
        return discriminator_loss(real_logits, fake_logits, self.real_label, self.fake_label)

    def d_loss_real(self, real_logits):
        return d_loss_real(real_logits, self.real_label)

    def d_loss_fake(self, fake_logits):
        return d_loss_fake(fake_logits, self.fake_label)

    def generator_loss(self, fake_logits):
        return generator_loss(fake_logits)

    def generate(self, z, batch_size=64, labels=None, verbose=False):
        """Generate images from z in batches of `batch_size`, batch norm in inference mode.

        :param z: np.ndarray (N, z_dim).
        :param labels: np.ndarray (N,) of class indices, for conditional models.
        :return: np.ndarray (N, H, W, C), float32 in [-1, 1].
        """
        z = np.asarray(z, dtype=np.float32)
        if self.conditional and labels is None:
            raise ValueError(f"{type(self).__name__} is conditional: pass labels")
        out = []
        for start in range(0, len(z), batch_size):
            zb = z[start:start + batch_size]
            if self.conditional:
                yb = np.asarray(labels[start:start + batch_size], dtype=np.int32)
                out.append(self._sampler(zb, yb).numpy())
            else:
                out.append(self._sampler(zb).numpy())
        if not out:
            return np.zeros((0,) + self.input_shape, np.float32)
        return np.concatenate(out, axis=0).astype(np.float32)


def _all_layers(model):
    """The layers of a Keras model, those of nested models included."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def _expect(x, shape, where):
    """Shape check after a block: the networks' table, asserted while they are built."""
    got = tuple(x.shape[1:])
    if got != tuple(shape):
        raise AssertionError(f"{where}: expected (N, {', '.join(map(str, shape))}), got {got}")


def conv_depth(size):
    """How many stride-2 layers lead from the smallest map (4 to 7 pixels) to `size`:
    64 -> 4 (from 4x4), 28 -> 2 (from 7x7), 32 -> 3 (from 4x4)."""
    depth = 0
    while size > 7:
        if size % 2:
            raise UserError(f"image side {size} cannot be halved down to 4..7 pixels; use a "
                            "size like 28, 32, 48, 64 or 128 (image_size)")
        size //= 2
        depth += 1
    if depth == 0:
        raise UserError("image_size must be at least 8 pixels a side for a DCGAN")
    return depth, size


# ------------------------------------------------------------------ DCGAN
class DCGAN(GAN):
    """The tutorial's DCGAN (Radford et al. 2016, https://arxiv.org/abs/1511.06434).

    Generator, for 64x64x3:            Discriminator:
      z (N, 100)                         x (N, 64, 64, 3)
      fc -> (N, 4, 4, 512), BN, ReLU *   conv 5x5/2 -> (N, 32, 32, 64), lReLU (no BN) *
      deconv 5x5/2 -> (N, 8, 8, 256)     conv 5x5/2 -> (N, 16, 16, 128), BN, lReLU
      deconv 5x5/2 -> (N, 16, 16, 128)   conv 5x5/2 -> (N, 8, 8, 256), BN, lReLU
      deconv 5x5/2 -> (N, 32, 32, 64)    conv 5x5/2 -> (N, 4, 4, 512), BN, lReLU
      deconv 5x5/2 -> (N, 64, 64, 3)     flatten, fc -> (N, 1) logit
      tanh (no BN)
    The depth follows the image: 28x28 MNIST starts from 7x7 with two transposed convs.
    * The MNIST slides (configs/dcgan_mnist.json) differ: no BN or ReLU on the projection
      (G_project_bn false) and BN on D's first conv too (D_first_bn true).
    """
    kernel_size = (5, 5)

    def _depths(self):
        H, W, _ = self.input_shape
        (dh, h0), (dw, w0) = conv_depth(H), conv_depth(W)
        if dh != dw:
            raise UserError(f"image_size {W}x{H}: width and height need the same number of "
                            "halvings; use a square size")
        return dh, h0, w0

    def _build_generator(self):
        c = self.config
        depth, h, w = self._depths()
        z = keras.Input((self.z_dim,), name="z")
        x = fc_layer(z, h * w * c.G_FC_layer_channel, name="layer_1")
        x = layers.Reshape((h, w, c.G_FC_layer_channel), name="reshape")(x)
        if c.G_project_bn:          # the tutorial; the MNIST slides leave the projection linear
            x = layers.ReLU(name="reshape_relu")(
                batch_normalization(x, name="reshape_bn", synchronized=c.batch_norm_sync))
        _expect(x, (h, w, c.G_FC_layer_channel), "generator reshape")
        for i in range(depth - 1):
            channels = c.G_channel * 2 ** (depth - 2 - i)     # ..., 4, 2, 1 x G_channel
            x = deconv_bn_relu(x, channels, self.kernel_size, strides=(2, 2),
                               name=f"layer_{i + 2}", sync_bn=c.batch_norm_sync)
            h, w = 2 * h, 2 * w
            _expect(x, (h, w, channels), f"generator layer_{i + 2}")
        x = deconv_bn_relu(x, self.c_dim, self.kernel_size, strides=(2, 2), bn=False,
                           relu=False, name=f"layer_{depth + 1}")
        # tanh in float32 so that mixed precision keeps the images' range exact.
        x = layers.Activation("tanh", dtype="float32", name="tanh")(x)
        _expect(x, self.input_shape, "generator output")
        return keras.Model(z, x, name="generator")

    def _build_discriminator(self):
        c = self.config
        depth, h, w = self._depths()
        x_in = keras.Input(self.input_shape, name="x")
        x = x_in
        for i in range(depth):
            # No batch norm on the first layer, as in the DCGAN paper and the tutorial;
            # the MNIST slides put it on every conv (D_first_bn).
            x = conv_bn_lrelu(x, c.D_channel * 2 ** i, self.kernel_size, strides=(2, 2),
                              bn=i > 0 or c.D_first_bn, alpha=c.leaky_alpha,
                              name=f"layer_{i + 1}",
                              sync_bn=c.batch_norm_sync)
        _expect(x, (h, w, c.D_channel * 2 ** (depth - 1)), "discriminator last conv")
        x = layers.Flatten(name="flatten")(x)
        logits = layers.Dense(1, dtype="float32", name=f"layer_{depth + 1}",
                              kernel_initializer=keras.initializers.RandomNormal(0.0, 0.02))(x)
        return keras.Model(x_in, logits, name="discriminator")


# ------------------------------------------------------------------ FC GAN
class FCGAN(GAN):
    """The fully connected GAN of the MNIST post (001): dense layers with leaky ReLU,
    tanh output; D ends in one logit. Hidden sizes from `G_hidden`, `D_hidden`. Weights
    start as TF1's `tf.layers.dense` started them (Glorot uniform), as in the post: with
    DCGAN's N(0, 0.02) these small dense nets learn much more slowly."""
    init = "glorot_uniform"

    def _build_generator(self):
        c = self.config
        z = keras.Input((self.z_dim,), name="z")
        x = z
        for i, units in enumerate(c.G_hidden):
            x = fc_bn_lrelu(x, units, alpha=c.leaky_alpha, bn=False, name=f"layer_{i + 1}",
                            initializer=self.init)
        x = fc_layer(x, int(np.prod(self.input_shape)), name=f"layer_{len(c.G_hidden) + 1}",
                     initializer=self.init)
        x = layers.Activation("tanh", dtype="float32", name="tanh")(x)
        x = layers.Reshape(self.input_shape, name="image")(x)
        return keras.Model(z, x, name="generator")

    def _build_discriminator(self):
        c = self.config
        x_in = keras.Input(self.input_shape, name="x")
        x = layers.Flatten(name="flatten")(x_in)
        for i, units in enumerate(c.D_hidden):
            x = fc_bn_lrelu(x, units, alpha=c.leaky_alpha, bn=False, name=f"layer_{i + 1}",
                            initializer=self.init)
        logits = layers.Dense(1, dtype="float32", name=f"layer_{len(c.D_hidden) + 1}",
                              kernel_initializer=self.init)(x)
        return keras.Model(x_in, logits, name="discriminator")


# ------------------------------------------------------------------ CGAN
class CGAN(GAN):
    """The conditional GAN of post 002: the one-hot label is concatenated to z, and to
    D's flattened input; four dense layers each side (hidden sizes from `G_hidden`,
    `D_hidden`; the post does not give them), ReLU in G, leaky ReLU 0.2 in D."""
    conditional = True

    @property
    def init(self):
        """D's: PyTorch's nn.Linear default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as in the post.
        A new initializer per layer: one shared unseeded instance would fix its seed once
        and start every layer from the same random stream."""
        return keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform")

    def discriminator_loss(self, real_logits, fake_logits):
        """The mean of the real and fake terms, as post 002 writes it ((fake + real) / 2);
        the DCGAN's is their sum. Adam's steps barely depend on a constant factor."""
        return 0.5 * super().discriminator_loss(real_logits, fake_logits)

    def G(self, z, labels=None, training=False, ema=False):
        return self._generator(ema)([z, self._one_hot(labels)], training=training)

    def D(self, x, labels=None, training=False):
        return self.discriminator([x, self._one_hot(labels)], training=training)

    def _one_hot(self, labels):
        """Labels as one-hot vectors. A label outside [0, num_classes) is an error, here and
        inside a tf.function: tf.one_hot would quietly make it a vector of zeros."""
        labels = tf.convert_to_tensor(labels)
        message = f"{type(self).__name__} labels must be in [0, num_classes={self.num_classes})"
        checks = [tf.debugging.assert_non_negative(labels, message=message),
                  tf.debugging.assert_less(labels, tf.cast(self.num_classes, labels.dtype),
                                           message=message)]
        with tf.control_dependencies(checks):
            return tf.one_hot(labels, self.num_classes)

    @property
    def g_init(self):
        """He's uniform init, U(±sqrt(6 / fan_in)), for G's ReLU layers: a departure from
        the post. With PyTorch's default each ReLU layer shrinks the signal's variance
        sixfold, so G starts with nearly the same image for every z and label, D wins
        from the first epoch and G never recovers (docs/departures.md)."""
        return keras.initializers.VarianceScaling(2.0, "fan_in", "uniform")

    def _build_generator(self):
        c = self.config
        z = keras.Input((self.z_dim,), name="z")
        y = keras.Input((self.num_classes,), name="label_one_hot")
        x = layers.Concatenate(name="z_label")([z, y])
        for i, units in enumerate(c.G_hidden):
            # The post's generator uses plain ReLU (its discriminator the leaky one).
            x = fc_bn_lrelu(x, units, alpha=0.0, bn=False, name=f"layer_{i + 1}",
                            initializer=self.g_init)
        x = fc_layer(x, int(np.prod(self.input_shape)), name=f"layer_{len(c.G_hidden) + 1}",
                     initializer=self.g_init)
        x = layers.Activation("tanh", dtype="float32", name="tanh")(x)
        x = layers.Reshape(self.input_shape, name="image")(x)
        return keras.Model([z, y], x, name="generator")

    def _build_discriminator(self):
        c = self.config
        x_in = keras.Input(self.input_shape, name="x")
        y = keras.Input((self.num_classes,), name="label_one_hot")
        x = layers.Concatenate(name="x_label")([layers.Flatten(name="flatten")(x_in), y])
        for i, units in enumerate(c.D_hidden):
            x = fc_bn_lrelu(x, units, alpha=c.leaky_alpha, bn=False, name=f"layer_{i + 1}",
                            initializer=self.init)
        logits = layers.Dense(1, dtype="float32", name=f"layer_{len(c.D_hidden) + 1}",
                              kernel_initializer=self.init)(x)
        return keras.Model([x_in, y], logits, name="discriminator")


MODEL_CLASSES = {"dcgan": DCGAN, "fc_gan": FCGAN, "cgan": CGAN}


def build_model(config, input_shape):
    """The GAN named by `config.model` for images of `input_shape` (H, W, C)."""
    return MODEL_CLASSES[config.model](input_shape, config)
