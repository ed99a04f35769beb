"""The latent space: drawing z, moving through it, and what it learned, shown as the DCGAN
paper and post 004 show it.

Drawing and moving (any model):
  seeded_generator   a random stream of z per named use of the seed
  interpolate, z0_sweep, latent_walk   strips, sweeps and walks through z
  parse_groups, arithmetic_z, vector_arithmetic   A - B + C on means of three z's
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
import tensorflow as tf
from skimage.morphology import skeletonize

from common.errors import UserError
from learning.classifier import probabilities
from learning.figures import to_uint8


# ------------------------------------------------------------------ drawing and moving through z
def seeded_generator(seed, stream):
    """A tf.random.Generator for one named use of `seed` ("sample grid", "fid", ...): the
    streams are independent, so drawing more from one never shifts another."""
    key = [seed] + list(stream.encode())
    state = np.random.SeedSequence(key).generate_state(1, np.uint64)[0]
    return tf.random.Generator.from_seed(int(state >> np.uint64(1)))


def interpolate(v1, v2, W):
    """W points strictly between v1 and v2, plus both ends: W + 2 rows, v1 first.
    The tutorial's `interpolate(from_z, to_z, 9)` gives the 11 images of its strip."""
    v1, v2 = np.asarray(v1, np.float32).reshape(-1), np.asarray(v2, np.float32).reshape(-1)
    t = np.linspace(0.0, 1.0, W + 2, dtype=np.float32)[:, None]
    return (1.0 - t) * v1 + t * v2


def z0_sweep(z, n=100, low=-1.0, high=1.0):
    """z[0] stepping from `low` to `high` over n images. `z` (n, z_dim): post 001's sweep,
    each image keeps its own other coordinates (the post draws a fresh z per image), so
    the sweep shows z[0] amid changing digits; `z` (z_dim,): one z copied n times, the rest
    fixed, so that z[0] alone changes the image."""
    z = np.asarray(z, np.float32)
    out = np.repeat(z.reshape(1, -1), n, axis=0) if z.ndim == 1 else z[:n].copy()
    if len(out) != n:
        raise ValueError(f"z0_sweep: {len(out)} rows of z for {n} images")
    out[:, 0] = np.linspace(low, high, n, dtype=np.float32)
    return out


def latent_walk(model, points, steps=16):
    """Frames (uint8) of a closed walk through `points` of z, `steps` frames per straight
    leg: the DCGAN paper's "walking in the latent space"."""
    points = np.asarray(points, np.float32)
    legs = [interpolate(points[i], points[(i + 1) % len(points)], steps - 2)[:-1]
            for i in range(len(points))]
    z = np.concatenate(legs, axis=0)
    return list(to_uint8(model.generate(z)))


def parse_groups(text, n_images, rng):
    """Three triples of grid indices for vector arithmetic: 'a,b,c;d,e,f;g,h,i' (1-based
    positions in sample_random.png, row by row), or random ones for 'random'."""
    if text == "random":
        # Distinct images where the grid has nine; repeats allowed on a smaller grid.
        return rng.choice(n_images, size=(3, 3), replace=n_images < 9).tolist()
    try:
        groups = [[int(v) - 1 for v in part.split(",")] for part in text.split(";")]
    except ValueError:
        groups = None
    if (groups is None or len(groups) != 3 or any(len(g) != 3 for g in groups)
            or any(not 0 <= i < n_images for g in groups for i in g)):
        raise UserError(f"--arithmetic '{text}': expected three triples of image numbers "
                        f"1..{n_images} from sample_random.png, e.g. '1,2,3;4,5,6;7,8,9'")
    return groups


def arithmetic_z(z, groups):
    """The DCGAN paper's vector arithmetic on averaged z: mean(A) - mean(B) + mean(C), each
    the mean of a triple (one z alone carries too much of its own face)."""
    a, b, c = (np.asarray(z, np.float32)[g].mean(axis=0) for g in groups)
    return a - b + c


def vector_arithmetic(model, z, groups):
    """Images for a 4 x 4 grid: rows 1 to 3 are the triples A, B, C and the image of each
    triple's mean z; row 4 is mean(A), mean(B), mean(C) and the result mean(A) - mean(B)
    + mean(C)."""
    z = np.asarray(z, np.float32)
    means = [z[g].mean(axis=0) for g in groups]
    rows = [np.concatenate([z[g], m[None]], axis=0) for g, m in zip(groups, means)]
    rows.append(np.stack(means + [arithmetic_z(z, groups)]))
    return model.generate(np.concatenate(rows, axis=0))


# ------------------------------------------------------------------ what it learned
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
    p = probabilities(classifier, images)
    return np.where(p.max(axis=1) >= confidence, p.argmax(axis=1), -1)


def attribute_arithmetic(model, classifier, seed=0, digits=(3, 7), n=3000, k=3):
    """Post 004's arithmetic on MNIST, groups found in `n` samples drawn with `seed`: bold
    A - thin A + thin B, each the mean z of `k` samples (`attribute_groups` on
    `stroke_weight`). Returns (z, groups, result z): vector_arithmetic(model, z,
    groups) draws the figure."""
    z = model.sample_z(tf.random.Generator.from_seed(seed), n).numpy()
    images = model.generate(z)
    groups = attribute_groups(read_digits(classifier, images), stroke_weight(images),
                              digits[0], digits[1], k)
    return z, groups, arithmetic_z(z, groups)


def turn(model, seed=0, n=3000, rows=4, steps=9, scale=1.0):
    """Post 004's turn, on MNIST's slant: the turn vector from `n` samples drawn with
    `seed`, added in `steps` multiples from -scale to scale to `rows` other z. Returns the
    strip's z, (rows * steps, z_dim), row by row."""
    rng = tf.random.Generator.from_seed(seed)
    z = model.sample_z(rng, n).numpy()
    vector = turn_vector(z, slant(model.generate(z)))
    return turn_strip(model.sample_z(rng, rows).numpy(), vector, steps, scale)
