"""What the latent space learned, shown as the DCGAN paper and post 004 show it.

Two measures a reader sees at once in a digit, from the image alone:
  stroke_weight   ink per unit of stroke length: bold digits high, thin ones low
  slant           the shear of the ink's second moments: right-leaning > 0, left < 0
and, on many samples labelled by the MNIST classifier (learning.classifier):
  attribute_groups   bold A, thin A, thin B: the three groups of vector arithmetic, picked
                     from the samples, not by hand (bold A - thin A + thin B = bold B)
  turn_vector        mean z of right-slanted minus mean z of left-slanted samples
Each group's z is the mean of three samples' z, as in the post: one z carries too much of
its own digit.
"""
import numpy as np
from skimage.morphology import skeletonize


def _ink(images):
    """[-1, 1] images (N, H, W[, 1]) -> ink in [0, 1], (N, H, W), float64."""
    images = np.asarray(images, np.float64)
    if images.ndim == 4:
        images = images[..., 0]
    return np.clip((images + 1.0) / 2.0, 0.0, 1.0)


def stroke_weight(images):
    """Ink per unit of stroke length, (N,): the total ink over the length of the stroke's
    skeleton (the pixels of the digit thinned to one-pixel-wide lines). A stroke twice as
    wide has about twice the ink on the same skeleton."""
    ink = _ink(images)
    out = np.empty(len(ink))
    for i, image in enumerate(ink):
        length = skeletonize(image > 0.5).sum()
        out[i] = image.sum() / max(length, 1)
    return out


def slant(images):
    """The digit's slant, (N,): how far the ink moves right per pixel up, from its central
    second moments (-mu11 / mu02, rows counted downwards). 0 for an upright digit, > 0
    leaning right, < 0 leaning left."""
    ink = _ink(images)
    h, w = ink.shape[1:]
    rows, cols = np.mgrid[:h, :w].astype(np.float64)
    mass = ink.sum(axis=(1, 2)) + 1e-12
    cy = (ink * rows).sum(axis=(1, 2)) / mass
    cx = (ink * cols).sum(axis=(1, 2)) / mass
    dy = rows[None] - cy[:, None, None]
    dx = cols[None] - cx[:, None, None]
    mu11 = (ink * dx * dy).sum(axis=(1, 2))
    mu02 = (ink * dy * dy).sum(axis=(1, 2)) + 1e-12
    return -mu11 / mu02


def attribute_groups(labels, values, digit_a, digit_b, k=3):
    """Indices of three groups of `k` samples for `high A - low A + low B`: the `k` samples
    read as `digit_a` with the highest `values`, the `k` with the lowest, and the `k` read
    as `digit_b` with the lowest (label -1: read by no one, never picked). Raises
    ValueError when a digit has fewer than 2k samples."""
    labels, values = np.asarray(labels), np.asarray(values)
    groups = []
    for digit in (digit_a, digit_b):
        idx = np.flatnonzero(labels == digit)
        if len(idx) < 2 * k:
            raise ValueError(f"only {len(idx)} samples read as {digit}; draw more")
        groups.append(idx[np.argsort(values[idx], kind="stable")])
    a, b = groups
    return [a[-k:][::-1].tolist(), a[:k].tolist(), b[:k].tolist()]


def turn_vector(z, slants, fraction=0.1):
    """Mean z of the `fraction` most right-slanted samples minus that of the most
    left-slanted: the direction that turns a digit (post 004's "turn" vector)."""
    z, slants = np.asarray(z, np.float64), np.asarray(slants)
    k = max(1, int(round(fraction * len(z))))
    order = np.argsort(slants, kind="stable")
    return (z[order[-k:]].mean(axis=0) - z[order[:k]].mean(axis=0)).astype(np.float32)


def turn_strip(z, vector, steps=9, scale=1.0):
    """For each z (N, z_dim), `steps` points z + t * vector, t from -scale to scale:
    (N * steps, z_dim), one row of the figure per z."""
    t = np.linspace(-scale, scale, steps, dtype=np.float32)
    z = np.asarray(z, np.float32)
    return (z[:, None, :] + t[None, :, None] * np.asarray(vector, np.float32)).reshape(
        -1, z.shape[-1])


def read_digits(classifier, images, confidence=0.99):
    """The digit the classifier reads in each image, or -1 where its probability is below
    `confidence`: the groups are built from digits it is sure of, so that an odd sample
    (which also tends to have an extreme stroke weight) does not lead a group."""
    from learning.classifier import probabilities
    p = probabilities(classifier, images)
    return np.where(p.max(axis=1) >= confidence, p.argmax(axis=1), -1)


def attribute_arithmetic(model, classifier, seed=0, digits=(3, 7), n=3000, k=3):
    """Post 004's arithmetic on MNIST, groups found in `n` samples drawn with `seed`: bold
    A - thin A + thin B, each the mean z of `k` samples (`attribute_groups` on
    `stroke_weight`). Returns (z, groups, result z): utils.vector_arithmetic(model, z,
    groups) draws the figure."""
    import tensorflow as tf
    from learning import utils
    z = model.sample_z(tf.random.Generator.from_seed(seed), n).numpy()
    images = model.generate(z)
    groups = attribute_groups(read_digits(classifier, images), stroke_weight(images),
                              digits[0], digits[1], k)
    return z, groups, utils.arithmetic_z(z, groups)


def turn(model, seed=0, n=3000, rows=4, steps=9, scale=1.0):
    """Post 004's turn, on MNIST's slant: the turn vector from `n` samples drawn with
    `seed`, added in `steps` multiples from -scale to scale to `rows` other z. Returns the
    strip's z, (rows * steps, z_dim), row by row."""
    import tensorflow as tf
    rng = tf.random.Generator.from_seed(seed)
    z = model.sample_z(rng, n).numpy()
    vector = turn_vector(z, slant(model.generate(z)))
    return turn_strip(model.sample_z(rng, rows).numpy(), vector, steps, scale)
