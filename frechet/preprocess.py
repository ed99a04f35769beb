"""TTUR's preprocessing for the FID network: [-1, 1] images or [0, 255] pixels -> the
network's 299x299 input, exactly as the TF1 graph did it (pytorch-fid and clean-fid reproduce
the same numbers).

    quantize(images)                 [-1, 1] -> the [0, 255] pixel values a PNG would hold
    preprocess(images)               [-1, 1] NHWC -> the network's input
    preprocess_pixels(pixels)        [0, 255] NHWC -> the network's input
"""
import tensorflow as tf

from common.errors import UserError

INPUT_SIZE = 299


def resize_bilinear_tf1(images, size):
    """TF1's bilinear resize (`align_corners=False, half_pixel_centers=False`), as TTUR's graph.

    Output pixel (i, j) samples the input at (i * in_h / out_h, j * in_w / out_w), clamped at the
    last row and column. `tf.image.resize` samples at half-pixel centres and does not match.
    """
    return tf.raw_ops.ResizeBilinear(images=images, size=size, align_corners=False,
                                     half_pixel_centers=False)


def to_rgb(images):
    """Replicate one channel to three; three pass through. C may be known only at run time."""
    channels = images.shape[-1]
    if channels is not None and channels not in (1, 3):
        raise UserError(f"images must have 1 or 3 channels, got shape {tuple(images.shape)}")
    if channels is None:
        channels = tf.shape(images)[-1]
        tf.debugging.assert_equal(tf.logical_or(tf.equal(channels, 1), tf.equal(channels, 3)),
                                  True, message="images must have 1 or 3 channels")
    images = tf.tile(images, [1, 1, 1, 3 // channels])
    return tf.ensure_shape(images, [None, None, None, 3])


def quantize(images):
    """[-1, 1] floats -> the 8-bit pixel values in [0, 255] (as float32) that writing them to
    a PNG gives: round((x + 1) * 127.5), clipped. Generated images are scored this way, as
    StyleGAN2-ADA and clean-fid do: on the images a file can hold. NaN stays NaN, so that a
    broken generator is still seen as one."""
    images = tf.convert_to_tensor(images, tf.float32)
    return tf.clip_by_value(tf.round((images + 1.0) * 127.5), 0.0, 255.0)


def preprocess(images):
    """[-1, 1] NHWC images (1 or 3 channels) -> the network's input, exactly as TTUR:
    (x + 1) * 127.5 gives TTUR's [0, 255] pixels, then `preprocess_pixels`."""
    return preprocess_pixels((tf.convert_to_tensor(images, tf.float32) + 1.0) * 127.5)


def preprocess_pixels(pixels):
    """[0, 255] NHWC pixels (1 or 3 channels) -> the network's input: TF1 bilinear resize to
    299x299, then (x - 128) / 128, so 0 maps to -1 and 255 to 127/128."""
    x = to_rgb(tf.convert_to_tensor(pixels, tf.float32))
    x = resize_bilinear_tf1(x, [INPUT_SIZE, INPUT_SIZE])
    return (x - 128.0) / 128.0

