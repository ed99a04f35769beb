"""Evaluators: how good is the generator so far. FIDEvaluator is the tutorial's.

Also here: the dataset statistics FID compares against, computed from the training images
with the same crop and resize as training, and cached.
"""
import hashlib
import os
from abc import ABC, abstractmethod

import numpy as np
import tensorflow as tf

from learning import distribute
from learning import fid as fid_lib


class Evaluator(ABC):
    """Scores a model; knows whether higher or lower is better."""

    @property
    @abstractmethod
    def worst_score(self):
        """The worst possible score, where the best score starts."""

    @property
    @abstractmethod
    def mode(self):
        """'max' if higher is better, 'min' if lower is better."""

    @abstractmethod
    def score(self, model, **kwargs):
        """The model's score."""

    @abstractmethod
    def is_better(self, curr, best, **kwargs):
        """Whether `curr` is better than `best`, by a margin."""


class FIDEvaluator(Evaluator):
    """FID of `eval_sample_size` generated images against the dataset's statistics.

    Generation and Inception features run in one tf.function per batch of
    `batch_size_eval`: the images never come back to NumPy, only their 2048 features.
    Under a tf.distribute strategy each replica generates and scores its slice of the
    batch, and the features are gathered: the score does not depend on the replicas.
    """

    def __init__(self, fid, eval_sample_size=10000, batch_size_eval=50, score_threshold=1e-4,
                 strategy=None):
        """:param fid: learning.fid.FID, holding the network and the dataset statistics.
        :param strategy: tf.distribute strategy (default: the current one)."""
        self.fid = fid
        self.strategy = strategy or tf.distribute.get_strategy()
        self.eval_sample_size = eval_sample_size
        self.batch_size_eval = batch_size_eval
        self.score_threshold = score_threshold
        self._features_of = {}  # one traced function per model

    @property
    def worst_score(self):
        return 1000.0

    @property
    def mode(self):
        return "min"

    def _features_fn(self, model):
        ema = model.sample_ema
        key = (id(model), ema)
        if key not in self._features_of:
            extract, strategy = self.fid.inception.extract_pixels, self.strategy

            def replica_features(z, labels):
                z, labels = distribute.replica_slice(z), distribute.replica_slice(labels)
                images = model.G(z, labels, training=False, ema=ema)
                # Scored as the images a sample PNG would hold, not as floats no file can.
                return extract(fid_lib.quantize(images))

            @tf.function
            def features(z, labels):
                per_replica = strategy.run(replica_features, args=(z, labels))
                return strategy.gather(per_replica, axis=0)
            self._features_of[key] = features
        return self._features_of[key]

    def score(self, model, seed=0, **kwargs):
        """FID of `eval_sample_size` images from z ~ the model's prior (U(-1, 1) for the
        tutorial's DCGAN); conditional models get labels drawn uniformly. Returns inf when
        the generated images are not finite: such a model is never "better"."""
        rng = tf.random.Generator.from_seed(seed)
        features_of = self._features_fn(model)
        self.fid.reset_FID()
        remaining = self.eval_sample_size
        replicas = self.strategy.num_replicas_in_sync
        while remaining > 0:
            n = min(self.batch_size_eval, remaining)
            z = model.sample_z(rng, n)
            labels = model.sample_labels(rng, n) if model.conditional else None
            # Pad the batch to a multiple of the replicas; the padding's features are
            # dropped, so the score is the same on any number of replicas.
            pad = -n % replicas
            if pad:
                z = tf.pad(z, [[0, pad], [0, 0]])
                labels = None if labels is None else tf.pad(labels, [[0, pad]])
            features = features_of(z, labels).numpy()[:n]
            if not np.all(np.isfinite(features)):
                return float("inf")
            self.fid.add_features(features)
            remaining -= n
        return float(self.fid.calculate_FID())

    def is_better(self, curr, best, **kwargs):
        """curr < best * (1 - score_threshold): only a relative improvement counts."""
        threshold = kwargs.get("score_threshold", self.score_threshold)
        return bool(np.isfinite(curr)) and curr < best * (1.0 - threshold)


# ------------------------------------------------------------------ dataset statistics
def dataset_key(config, num_images):
    """Names the statistics of one (dataset, crop, size, sample count)."""
    if config.dataset == "mnist":
        source = "mnist-train"
    else:
        path = os.path.abspath(config.data_dir or "")
        digest = hashlib.sha1(f"{path}:{num_images}".encode()).hexdigest()[:10]
        source = f"{os.path.basename(path.rstrip(os.sep)) or 'folder'}-{digest}"
    size = "x".join(map(str, config.image_size)) if config.image_size else "orig"
    crop = config.crop_size or "none"
    n = min(config.stats_sample_size, num_images)
    return f"{source}_crop{crop}_{size}_n{n}"


def dataset_stats_path(config, num_images):
    """The statistics file: `dataset_stats_path` if set, else one in the cache."""
    if config.dataset_stats_path:
        return config.dataset_stats_path
    return os.path.join(fid_lib.cache_dir(), "stats", dataset_key(config, num_images) + ".npz")


def ensure_dataset_statistics(config, images, inception, verbose=True):
    """Return the path of the statistics for `images` (uint8, (N, H, W, C), as training sees
    them), computing them from `stats_sample_size` images drawn with `seed` if the file
    does not exist yet."""
    path = dataset_stats_path(config, len(images))
    if os.path.exists(path):
        return path
    n = min(config.stats_sample_size, len(images))
    idx = np.sort(np.random.default_rng(config.seed).permutation(len(images))[:n])
    if verbose:
        print(f"computing dataset statistics from {n} images -> {path}")
    features = inception.features(images[idx], batch_size=config.batch_size_eval)
    mu, sigma = fid_lib.compute_statistics(features)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    # The features too (float32, as the network gives them): KID needs them, not only
    # mu and sigma. First, so that a statistics file always has its features beside it.
    fid_lib._atomic_write(features_path(path),
                          lambda f: np.save(f, features.astype(np.float32)))
    fid_lib.save_statistics(path, mu, sigma, n)
    return path


def features_path(stats_path):
    """Where the features of the real sample behind `stats_path` are kept."""
    root, _ = os.path.splitext(stats_path)
    return root + ".features.npy"
