"""What the discriminator's filters learned: the DCGAN paper's last figure.

Guided backpropagation (Springenberg et al. 2015, https://arxiv.org/abs/1412.6806) of the
strongest filters of D's last convolutional layer back to the input image, for a trained D
and for the same D as it was initialised, side by side as in the paper.
"""
import imageio.v2 as imageio
import keras
import numpy as np
import tensorflow as tf

from learning.figures import to_uint8


def guided_leaky_relu(x, alpha):
    """A leaky ReLU whose forward pass is unchanged and whose backward pass is guided
    backprop's: a gradient goes through only where it is positive and the forward input
    was positive, grad_in = grad_out * (x > 0) * (grad_out > 0). The negative side's slope
    passes nothing back, as a ReLU's would: the paper's guided backprop is defined for ReLUs."""
    @tf.custom_gradient
    def guided(x):
        def grad(dy):
            return dy * tf.cast(x > 0, dy.dtype) * tf.cast(dy > 0, dy.dtype)
        return tf.nn.leaky_relu(x, alpha), grad
    return guided(x)


def last_conv_features(discriminator, images, guided=True):
    """D's last convolutional block's output (after its leaky ReLU, before flatten), with
    batch norm in inference mode (so an image's map does not depend on the others in its
    batch) and, if `guided`, every leaky ReLU replaced by `guided_leaky_relu`.

    D is a plain chain (conv, [BN], leaky ReLU per block, then flatten and a dense logit),
    so its layers are re-applied in order up to the flatten."""
    layers = [layer for layer in discriminator.layers
              if not isinstance(layer, keras.layers.InputLayer)]
    x = tf.convert_to_tensor(images, tf.float32)
    n_conv = 0
    for layer in layers:
        if isinstance(layer, keras.layers.Flatten):
            break
        if not isinstance(layer, (keras.layers.Conv2D, keras.layers.BatchNormalization,
                                  keras.layers.LeakyReLU)):
            raise ValueError(f"discriminator layer '{layer.name}' "
                             f"({type(layer).__name__}) is not part of a conv block")
        if isinstance(layer, keras.layers.LeakyReLU) and guided:
            x = guided_leaky_relu(x, layer.negative_slope)
        else:
            x = layer(x, training=False) if isinstance(
                layer, keras.layers.BatchNormalization) else layer(x)
        n_conv += isinstance(layer, keras.layers.Conv2D)
    if n_conv == 0:
        raise ValueError(f"discriminator '{discriminator.name}' has no convolutional layer")
    return tf.cast(x, tf.float32)


def guided_maps(discriminator, images, n_filters):
    """Guided-backprop maps of each image's `n_filters` strongest filters of D's last conv
    layer.

    The filters are chosen per image: the top `n_filters` by the spatial maximum of their
    activation on that image, strongest first. A map is the guided gradient of that
    maximum (one position of the filter's map, as the paper's "maximal axis-aligned
    responses") with respect to the image.

    :param images: (N, H, W, C) float, in [-1, 1] as D sees them.
    :return: maps (N, n_filters, H, W, C) float32, and the filter indices (N, n_filters).
    """
    x = tf.convert_to_tensor(images, tf.float32)
    n = int(x.shape[0])
    peaks = tf.reduce_max(last_conv_features(discriminator, x), axis=(1, 2))  # (N, K)
    if not 0 < n_filters <= peaks.shape[-1]:
        raise ValueError(f"n_filters must be 1..{peaks.shape[-1]} (the last conv layer's "
                         f"filters), got {n_filters}")
    index = tf.math.top_k(peaks, k=n_filters).indices                        # (N, n_filters)
    # One copy of each image per chosen filter, all in one backward pass: with batch norm
    # in inference mode the copies do not interact, so the summed objective's gradient on
    # each copy is that copy's own filter's map.
    x_rep = tf.repeat(x, n_filters, axis=0)                                   # (N*n, H, W, C)
    with tf.GradientTape() as tape:
        tape.watch(x_rep)
        peaks_rep = tf.reduce_max(last_conv_features(discriminator, x_rep), axis=(1, 2))
        chosen = tf.gather(peaks_rep, tf.reshape(index, [-1, 1]), batch_dims=1)
        objective = tf.reduce_sum(chosen)
    maps = tape.gradient(objective, x_rep)
    return (tf.reshape(maps, (n, n_filters) + tuple(x.shape[1:])).numpy(),
            index.numpy())


def normalize_map(m):
    """A map for display, in [0, 1]: (m - mean) / std * 0.1 + 0.5, clipped (the usual
    guided-backprop display: grey is no gradient, the sign shows as lighter or darker).
    A map of zeros stays grey."""
    m = np.asarray(m, np.float64)
    std = m.std()
    out = (m - m.mean()) / std * 0.1 + 0.5 if std > 0 else np.full_like(m, 0.5)
    return np.clip(out, 0.0, 1.0)


def _rows(discriminator, images, n_filters):
    """One uint8 tile list per image: the image, then its maps."""
    maps, _ = guided_maps(discriminator, images, n_filters)
    shown = to_uint8(images)
    return [[shown[i]] + [np.rint(normalize_map(m) * 255).astype(np.uint8) for m in maps[i]]
            for i in range(len(images))]


def d_features_figure(trained, random, images, path, n_filters=8, pad=2, gap=12):
    """Write the paper's figure to `path` (PNG): one row per image, the image and the
    guided-backprop maps of its `n_filters` strongest last-conv filters, for the trained D
    on the left and the freshly initialised D (`random`) on the right, `gap` white pixels
    between the halves and `pad` between tiles. `n_filters` is capped at the last conv
    layer's number of filters.

    :param images: (N, H, W, C) float in [-1, 1].
    :return: path.
    """
    images = np.asarray(images, np.float32)
    n, h, w, c = images.shape
    n_filters = min(n_filters, _n_last_filters(trained))
    halves = [_rows(d, images, n_filters) for d in (trained, random)]
    cols = n_filters + 1
    half_w = cols * (w + pad) - pad
    grid = np.full((n * (h + pad) - pad, 2 * half_w + gap, c), 255, np.uint8)
    for k, rows in enumerate(halves):
        x0 = k * (half_w + gap)
        for r, tiles in enumerate(rows):
            for q, tile in enumerate(tiles):
                grid[r * (h + pad):r * (h + pad) + h,
                     x0 + q * (w + pad):x0 + q * (w + pad) + w] = tile
    imageio.imwrite(path, grid[..., 0] if c == 1 else grid)
    return path


def _n_last_filters(discriminator):
    """How many filters D's last convolutional layer has."""
    convs = [layer for layer in discriminator.layers if isinstance(layer, keras.layers.Conv2D)]
    if not convs:
        raise ValueError(f"discriminator '{discriminator.name}' has no convolutional layer")
    return convs[-1].filters


def random_discriminator(config, input_shape):
    """D as the run started: the same architecture, initialised from the same seed."""
    from models.nn import build_model
    keras.utils.set_random_seed(config.seed)
    return build_model(config, input_shape).discriminator
