"""Evaluators: how good is the generator so far. FIDEvaluator is the tutorial's."""
import os
import time
from abc import ABC, abstractmethod

import numpy as np
import tensorflow as tf

from common.errors import UserError
from common.progress import progress_bar, timing_line
from frechet.metrics import feature_metrics
from frechet.preprocess import quantize
from frechet.statistics import features_path, load_features
from learning import distribute
from learning.fid import FID, ensure_dataset_statistics


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
                 strategy=None, metrics=("fid",), real_features=None):
        """:param fid: learning.fid.FID, holding the network and the dataset statistics.
        :param strategy: tf.distribute strategy (default: the current one).
        :param metrics: what `score` also computes, from the same generated features, into
            `last_metrics` (frechet.metrics.METRICS: kid, pr, dc besides fid).
        :param real_features: (N, 2048) features of the real sample behind the statistics,
            or the path of their .npy; needed for any metric but FID."""
        self.fid = fid
        self.strategy = strategy or tf.distribute.get_strategy()
        self.eval_sample_size = eval_sample_size
        self.batch_size_eval = batch_size_eval
        self.score_threshold = score_threshold
        self.metrics = tuple(metrics)
        if isinstance(real_features, (str, os.PathLike)):
            real_features = load_features(real_features)
        if set(self.metrics) - {"fid"} and real_features is None:
            raise UserError(f"metrics {', '.join(m for m in self.metrics if m != 'fid')} need "
                            "the features of the real sample (the .features.npy beside the "
                            "statistics): delete the statistics to recompute both")
        self.real_features = real_features
        self.last_metrics = {}   # the other metrics of the last `score`, by name
        self._features_of = {}  # one traced function per model

    @property
    def worst_score(self):
        # Not 1000: a run whose FID starts above it could never save a best checkpoint.
        return float("inf")

    @property
    def mode(self):
        return "min"

    def _features_fn(self, model, with_pixels=False):
        """A tf.function from (z, labels) to the generated images' features, and with
        `with_pixels` also to their [0, 255] pixels (what --save-samples writes)."""
        ema = model.sample_ema
        key = (id(model), ema, with_pixels)
        if key not in self._features_of:
            extract, strategy = self.fid.inception.extract_pixels, self.strategy

            def replica_features(z, labels):
                z, labels = distribute.replica_slice(z), distribute.replica_slice(labels)
                # Scored as the images a sample PNG would hold, not as floats no file can.
                pixels = quantize(model.G(z, labels, training=False, ema=ema))
                return (extract(pixels), pixels) if with_pixels else extract(pixels)

            @tf.function
            def features(z, labels):
                per_replica = strategy.run(replica_features, args=(z, labels))
                return tf.nest.map_structure(lambda t: strategy.gather(t, axis=0),
                                             per_replica)
            self._features_of[key] = features
        return self._features_of[key]

    def score(self, model, seed=0, verbose=False, distinct=None, on_pixels=None, **kwargs):
        """FID of `eval_sample_size` images from z ~ the model's prior (U(-1, 1) for the
        tutorial's DCGAN); conditional models get labels drawn uniformly. Returns inf when
        the generated images are not finite: such a model is never "better". The other
        `metrics` go to `last_metrics` ({} when not finite).

        `verbose`: a progress bar (when stderr is a terminal) and a closing timing line;
        10,000 samples take 20 minutes on a CPU. Off by default: training and tests stay quiet.
        `distinct`: a generator collapsed on purpose, for the metrics to be seen at work:
        only the first `distinct` samples are drawn, and repeated in turn to the full count
        (their features are computed once: the same z and label give the same image).
        `on_pixels(first, pixels)`: called with each batch of the scored images, uint8
        (B, H, W, C), and the index of its first image (test.py --save-samples).
        """
        rng = tf.random.Generator.from_seed(seed)
        self.fid.reset_FID()
        self.last_metrics = {}
        n_drawn = self.eval_sample_size if distinct is None else min(distinct,
                                                                     self.eval_sample_size)
        start_time = time.perf_counter()
        features = self._generated_features(model, rng, n_drawn, verbose, on_pixels)
        if features is None:
            return float("inf")
        if n_drawn < self.eval_sample_size:
            features = np.resize(features, (self.eval_sample_size, features.shape[1]))
        self.fid.add_features(features)
        value = float(self.fid.calculate_FID())
        if verbose:
            print(timing_line(f"scored {n_drawn} samples", n_drawn,
                              time.perf_counter() - start_time))
        if set(self.metrics) - {"fid"}:
            self.last_metrics = feature_metrics(self.fid.feature_gen, self.real_features,
                                                self.metrics)
        return value

    def _generated_features(self, model, rng, count, verbose, on_pixels=None):
        """Inception features of `count` generated images, batch by batch; None if any is
        not finite."""
        features_of = self._features_fn(model, with_pixels=on_pixels is not None)
        replicas = self.strategy.num_replicas_in_sync
        out, remaining = [], count
        with progress_bar(count, "FID samples", verbose) as bar:
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
                features = features_of(z, labels)
                if on_pixels is not None:
                    features, pixels = features
                features = features.numpy()[:n]
                if not np.all(np.isfinite(features)):
                    return None
                if on_pixels is not None:
                    on_pixels(count - remaining, pixels.numpy()[:n].astype(np.uint8))
                out.append(features)
                remaining -= n
                bar.update(n)
        return np.concatenate(out)

    def is_better(self, curr, best, **kwargs):
        """curr < best * (1 - score_threshold): only a relative improvement counts."""
        threshold = kwargs.get("score_threshold", self.score_threshold)
        return bool(np.isfinite(curr)) and curr < best * (1.0 - threshold)


def training_evaluator(config, images, strategy=None):
    """The trainer's FIDEvaluator: `eval_sample_size` samples against the statistics of
    `images` (computed and cached when missing), and the other `eval_metrics` against the
    real sample's features kept beside them."""
    fid = FID(config.inception_path, None, batch_size=config.batch_size_eval)
    stats = ensure_dataset_statistics(config, images, fid.inception)
    fid.load_dataset_statistics(stats)
    real = features_path(stats) if set(config.eval_metrics) - {"fid"} else None
    return FIDEvaluator(fid, config.eval_sample_size, config.batch_size_eval,
                        config.score_threshold, strategy=strategy,
                        metrics=config.eval_metrics, real_features=real)
