"""The tutorial's layer helpers, as Keras building blocks.

Same names and arguments as the TF1 post, less `is_train`: a Keras layer is told whether it
is training when the model is called (`model(x, training=True)`), so batch norm uses batch
statistics while training and its moving averages when sampling.

Each helper takes a Keras tensor and returns one, so networks read as in the post:
`x = conv_bn_lrelu(x, 128, (5, 5), strides=(2, 2))`.
"""
import keras
import tensorflow as tf
from keras import layers

# DCGAN's initialisation: weights N(0, 0.02), biases 0.
WEIGHT_STDDEV = 0.02


def _kernel_init():
    return keras.initializers.RandomNormal(mean=0.0, stddev=WEIGHT_STDDEV)


def conv_layer(x, filters, kernel_size, strides, padding="same", use_bias=True, name=None):
    return layers.Conv2D(filters, kernel_size, strides, padding, use_bias=use_bias,
                         kernel_initializer=_kernel_init(), bias_initializer="zeros",
                         name=name)(x)


def deconv_layer(x, filters, kernel_size, strides, padding="same", use_bias=True, name=None):
    return layers.Conv2DTranspose(filters, kernel_size, strides, padding, use_bias=use_bias,
                                  kernel_initializer=_kernel_init(),
                                  bias_initializer="zeros", name=name)(x)


class BatchNormalization(layers.BatchNormalization):
    """Keras's batch norm, with its training-mode pass computed by TensorFlow's fused kernel.

    Keras 3 computes a training step's batch norm from separate ops (two reductions for the
    mean and variance, then the normalisation, each again for the gradient); TensorFlow's
    FusedBatchNormV3 does the statistics and normalisation in one kernel and the gradient
    in one more, which is faster on the CPUs measured (`python bench/layers.py`, its last
    lines; docs/performance.md has the figures). Same variables and the same
    numbers as Keras's layer (tests/test_models.py checks outputs, gradients and moving
    averages against it): the moving variance is updated with the biased batch variance as
    Keras does, not the Bessel-corrected one the fused kernel returns. Inference mode,
    synchronized statistics (`batch_norm_sync`), masks and other axes are Keras's own path.
    """

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or self.synchronized or mask is not None \
                or self.renorm or self.axis not in (-1, len(inputs.shape) - 1) \
                or len(inputs.shape) not in (2, 4):
            return super().call(inputs, training=training, mask=mask)
        x = tf.cast(inputs, "float32")           # as Keras: statistics in float32
        flat = len(x.shape) == 2
        if flat:                                  # (N, C) -> (N, 1, 1, C): the kernel is 4-d
            x = x[:, None, None, :]
        channels = x.shape[-1]
        gamma = tf.cast(self.gamma, "float32") if self.scale else tf.ones([channels])
        beta = tf.cast(self.beta, "float32") if self.center else tf.zeros([channels])
        y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            x, gamma, beta, epsilon=self.epsilon, is_training=True)
        n = tf.cast(tf.size(x) // channels, "float32")
        variance = variance * (n - 1.0) / n       # the kernel returns n / (n - 1) x biased
        self.moving_mean.assign(self.moving_mean * self.momentum
                                + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum
                                    + variance * (1.0 - self.momentum))
        if flat:
            y = y[:, 0, 0, :]
        return tf.cast(y, self.compute_dtype)


def batch_normalization(x, name=None, synchronized=False):
    """Batch norm with the tutorial's momentum 0.9 and epsilon 1e-5 (TF1's meaning of
    momentum: moving = 0.9 * moving + 0.1 * batch, which Keras shares). `synchronized`:
    under a tf.distribute strategy, the statistics of the global batch rather than of each
    replica's slice (config `batch_norm_sync`)."""
    return BatchNormalization(momentum=0.9, epsilon=1e-5, center=True, scale=True,
                              synchronized=synchronized, name=name)(x)


def conv_bn_lrelu(x, filters, kernel_size, strides=(1, 1), padding="same", bn=True,
                  alpha=0.2, name=None, sync_bn=False):
    """conv + bn + leaky ReLU. alpha=0 gives a ReLU, alpha=1 no activation."""
    x = conv_layer(x, filters, kernel_size, strides, padding, name=_sub(name, "conv"))
    if bn:
        x = batch_normalization(x, name=_sub(name, "bn"), synchronized=sync_bn)
    return layers.LeakyReLU(negative_slope=alpha, name=_sub(name, "lrelu"))(x)


def deconv_bn_relu(x, filters, kernel_size, strides=(1, 1), padding="same", bn=True,
                   relu=True, name=None, sync_bn=False):
    """transposed conv + bn + ReLU; the generator's last layer has neither bn nor ReLU."""
    x = deconv_layer(x, filters, kernel_size, strides, padding, name=_sub(name, "deconv"))
    if bn:
        x = batch_normalization(x, name=_sub(name, "bn"), synchronized=sync_bn)
    if relu:
        x = layers.ReLU(name=_sub(name, "relu"))(x)
    return x


def fc_layer(x, out_dim, weights_stddev=WEIGHT_STDDEV, biases_value=0.0, name=None,
             initializer=None):
    """A dense layer; weights N(0, weights_stddev) unless `initializer` is given (the MNIST
    posts' dense layers keep their frameworks' defaults: see models.nn)."""
    init = initializer or keras.initializers.RandomNormal(0.0, weights_stddev)
    return layers.Dense(out_dim, kernel_initializer=init,
                        bias_initializer=keras.initializers.Constant(biases_value),
                        name=name)(x)


def fc_bn_lrelu(x, out_dim, alpha=0.2, bn=True, name=None, initializer=None,
                sync_bn=False):
    """fc + bn + leaky ReLU."""
    x = fc_layer(x, out_dim, name=_sub(name, "fc"), initializer=initializer)
    if bn:
        x = batch_normalization(x, name=_sub(name, "bn"), synchronized=sync_bn)
    return layers.LeakyReLU(negative_slope=alpha, name=_sub(name, "lrelu"))(x)


def _sub(name, part):
    return f"{name}_{part}" if name else None
