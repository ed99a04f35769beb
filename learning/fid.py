"""The tutorial's FID class, and the dataset statistics a run's FID compares against, on the
FID package `frechet` (the network, the statistics files, the distances and the command line).

    FID                          the tutorial's class: accumulate features, calculate_FID()
    ensure_dataset_statistics    a run's dataset statistics: computed from the training images
                                 (same crop and resize as training) once, then cached
    main                         `python -m learning.fid stats|score ...`: frechet's command
                                 line, with mnist and fashion_mnist as named sources

    python -m learning.fid stats SOURCE OUT.npz [--weights PATH] [--batch-size N] [--max-images N]
        SOURCE: an image folder, or mnist, mnist:test, fashion_mnist, fashion_mnist:test
    python -m learning.fid score A B [--metrics fid,kid,pr,dc] [--kid] [--weights PATH]
                                     [--batch-size N]
"""
import hashlib
import os

import numpy as np

from common.errors import UserError
from datasets.data import read_mnist
from frechet import cli
from frechet.inception import FEATURE_DIM, InceptionFeatures
from frechet.metrics import compute_statistics, frechet_distance
from frechet.statistics import (add_provenance, check_provenance, load_statistics,
                                write_statistics)
from frechet.weights import PT_SHA1, cache_dir


class FID:
    """Frechet Inception Distance against precomputed dataset statistics, as in the tutorial.

    Features of generated images are accumulated batch by batch (`extract_inception_features`
    or, when they were computed elsewhere, `add_features`); `calculate_FID` turns them into the
    distance. The tutorial's `calculate_FID` returned the square root of the Fréchet distance;
    this one returns the distance itself (squared), the number papers report as FID.
    """

    def __init__(self, model_path=None, dataset_stats_path=None, batch_size=50):
        self.model_path = model_path
        self.batch_size = batch_size
        self._inception = None
        if dataset_stats_path is not None:
            self.load_dataset_statistics(dataset_stats_path)
        else:
            self.mu_data = self.sigma_data = self.n_data = self.provenance_data = None
        self.reset_FID()

    @property
    def inception(self):
        """The `InceptionFeatures`, built on first use (callers of add_features never pay it)."""
        if self._inception is None:
            self._inception = InceptionFeatures(self.model_path)
        return self._inception

    @property
    def feature_gen(self):
        """All accumulated features, (N, 2048) float64 (the tutorial's attribute)."""
        return np.concatenate(self._features) if self._features else np.empty((0, FEATURE_DIM))

    def load_dataset_statistics(self, path):
        """Use the statistics in `path` (.npz or the tutorial's stats.pkl) as the data's."""
        (self.mu_data, self.sigma_data, self.n_data,
         self.provenance_data) = load_statistics(path, provenance=True)

    def reset_FID(self):
        self._features = []

    def extract_inception_features(self, images):
        """Add the features of float images in [-1, 1] (NumPy or tensor); returns them."""
        if hasattr(images, "numpy"):
            images = images.numpy()
        features = self.inception.features(np.asarray(images, np.float32), self.batch_size)
        self._features.append(features)
        return features

    def add_features(self, features):
        """Add precomputed (N, 2048) features, e.g. from `InceptionFeatures.extract`."""
        features = np.asarray(features, np.float64)
        assert features.ndim == 2 and features.shape[1] == FEATURE_DIM, (
            f"features must be (N, {FEATURE_DIM}), got {features.shape}")
        self._features.append(features)

    def calculate_FID(self):
        """FID (squared Fréchet distance) of the accumulated features against the dataset's."""
        if self.mu_data is None:
            raise UserError("no dataset statistics: pass dataset_stats_path (make them with "
                            "`python -m learning.fid stats SOURCE OUT.npz`)")
        mu, sigma = compute_statistics(self.feature_gen)
        return frechet_distance(mu, sigma, self.mu_data, self.sigma_data)


# ---------------------------------------------------------------------------------------------
# The run's dataset statistics, cached by what they describe
# ---------------------------------------------------------------------------------------------

def dataset_key(config, num_images):
    """Names the statistics of one (dataset, crop, size, sample count)."""
    if config.dataset == "mnist" and not config.data_dir:
        source = f"mnist-{config.stats_split}"  # the copy that installs with the package
    elif config.dataset == "mnist":             # IDX files or an .npz: Fashion-MNIST, ...
        path = os.path.abspath(config.data_dir)
        digest = hashlib.sha1(path.encode()).hexdigest()[:10]
        source = f"mnist-{os.path.basename(path.rstrip(os.sep)) or 'data'}-{digest}"
        if config.stats_split == "test":        # the training split keeps its old names
            source += "-test"
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
    return os.path.join(cache_dir(), "stats", dataset_key(config, num_images) + ".npz")


# The real sample behind the statistics is the data set's, not a run's: the same for every
# training seed, so that the seeds of one config are scored against one reference (a
# reference drawn with each run's seed would add its own sampling spread to theirs).
STATS_SEED = 0


def _stats_sample(config, images):
    """The indices of the `stats_sample_size` images the statistics are computed from."""
    n = min(config.stats_sample_size, len(images))
    return np.sort(np.random.default_rng(STATS_SEED).permutation(len(images))[:n])


def dataset_provenance(config, images):
    """What the dataset statistics for `config` are computed from, as `save_statistics`
    records it: the data set, a SHA1 of the exact uint8 sample, crop, size, seed and n."""
    idx = _stats_sample(config, images)
    sample = np.ascontiguousarray(images[idx])
    digest = hashlib.sha1(f"{sample.shape}".encode())
    digest.update(sample.tobytes())
    split = config.stats_split if config.dataset == "mnist" else None
    if config.dataset == "mnist" and not config.data_dir:
        identity = f"mnist-{split}"
    else:
        identity = os.path.abspath(config.data_dir or "")
    return {"source": config.dataset, "identity": identity, "split": split,
            "sample_sha1": digest.hexdigest(), "crop": config.crop_size,
            "image_size": list(config.image_size) if config.image_size else None,
            "seed": STATS_SEED, "selection": "seeded permutation, sorted", "n": len(idx)}


def statistics_images(config, images):
    """The images the statistics describe: the training `images`, or with `stats_split`
    "test" the test split of the same MNIST-style data set (Lucic et al.'s protocol)."""
    if config.stats_split != "test":
        return images
    return read_mnist(config.data_dir, split="test")[0]


def ensure_dataset_statistics(config, images, inception, verbose=True):
    """Return the path of the statistics for `images` (uint8, (N, H, W, C), as training sees
    them; replaced by the test split with `stats_split` "test"), computing them from
    `stats_sample_size` images drawn with STATS_SEED (whatever the run's seed) if the file
    does not exist yet."""
    images = statistics_images(config, images)
    path = dataset_stats_path(config, len(images))
    if os.path.exists(path):
        check_provenance(path, {**dataset_provenance(config, images),
                                "inception_sha1": getattr(inception, "weights_sha1", None)})
        return path
    idx = _stats_sample(config, images)
    if verbose:
        print(f"computing dataset statistics from {len(idx)} images -> {path}")
    # A bar, then how long it took: 10,000 images take about 20 minutes on a CPU.
    features = inception.features(images[idx], batch_size=config.batch_size_eval,
                                  verbose=verbose)
    # The features too, beside the statistics: KID needs them, not only mu and sigma.
    write_statistics(path, features, {**dataset_provenance(config, images),
                                      "inception_sha1": getattr(inception, "weights_sha1",
                                                                PT_SHA1)})
    return path


def record_dataset_provenance(config, images):
    """Add provenance to the cached statistics of `config` written before it was kept (the
    file name, `dataset_key`, is unchanged): no recomputing. The caller vouches that the
    file was made from this config's sample with the default Inception weights. Returns
    the record. For configs/dcgan_mnist.json:

        python -c "from learning.config import Config; from datasets.data import load_images;
        from learning.fid import record_dataset_provenance as r;
        c = Config.from_json('configs/dcgan_mnist.json'); print(r(c, load_images(c)[0]))"
    """
    return add_provenance(dataset_stats_path(config, len(images)),
                          dataset_provenance(config, images))


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

# Data sets named on the command line, NAME or NAME:SPLIT (train, the default, or test):
# MNIST from the package that installs with this one, Fashion-MNIST from Debian's
# dataset-fashion-mnist (or any folder of its IDX files, passed as a folder of images is not).
NAMED_DATASETS = {"mnist": None, "fashion_mnist": "/usr/share/datasets/fashion-mnist"}


def _reader(name, folder):
    """read(split) -> the uint8 images of one named data set, for frechet's command line."""
    def read(split):
        if folder is not None and not os.path.isdir(folder):
            raise UserError(f"'{name}' reads {folder}, which does not exist: `apt-get "
                            "install dataset-fashion-mnist`, or pass a folder of images")
        return read_mnist(folder, split=split)[0]
    return read


def main(argv=None):
    cli.main(argv, prog="python -m learning.fid",
             datasets={name: _reader(name, folder) for name, folder in NAMED_DATASETS.items()})


if __name__ == "__main__":
    main()
