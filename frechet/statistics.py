"""FID statistics files: mu, sigma and n in an .npz with a record of what they describe
(provenance), the features of the sample beside them, and the checks that refuse statistics
of something else.

    write_statistics(path, features, provenance)   compute and save both files
    save_statistics / load_statistics              the .npz (or the tutorial's stats.pkl)
    features_path(stats) / load_features           <stem>.features.npy beside the statistics
    check_provenance(path, expected)               refuse statistics of other images or weights
"""
import json
import os
import pickle
import warnings
import zipfile
from pathlib import Path

import numpy as np

from common.errors import UserError
from common.files import write_atomic
from frechet.inception import FEATURE_DIM
from frechet.metrics import compute_statistics
from frechet.weights import PT_SHA1


def write_statistics(path, features, provenance):
    """Compute the statistics of (N, 2048) `features` and write them to `path` with their
    `provenance` (see `save_statistics`), and the features beside them (`features_path`):
    float32, as the network gives them, for KID and precision/recall later. The features
    first, so that a statistics file never lacks the features that belong to it. Returns
    (mu, sigma)."""
    mu, sigma = compute_statistics(features)
    write_atomic(features_path(path), lambda f: np.save(f, features.astype(np.float32)))
    save_statistics(path, mu, sigma, len(features), provenance)
    return mu, sigma


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
                        "`python -m frechet stats`")


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
                        "`python -m frechet stats SOURCE OUT.npz`")
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
                      "compute your images' statistics: `python -m frechet stats "
                      "FOLDER OUT.npz`", stacklevel=2)
    elif path.resolve() not in _UNKNOWN_PROVENANCE:
        _UNKNOWN_PROVENANCE.add(path.resolve())
        warnings.warn(f"statistics '{path}' do not record what they were computed from "
                      "(written before provenance was kept): their images, crop and network "
                      "are unknown; frechet.statistics.add_provenance (for the cached dataset "
                      "statistics: learning.fid.record_dataset_provenance) records them",
                      stacklevel=2)
    return (mu, sigma, n, record) if provenance else (mu, sigma, n)


def check_provenance(path, expected):
    """Refuse statistics that describe something else than `expected` (a provenance record
    as `save_statistics` stores it, with `inception_sha1`; keys set to None or missing are
    not checked): another network, image size, crop, data set or image sample is an error;
    another sample count a warning (FID depends on it, but the data are the same). Files
    from before provenance was kept pass, with load_statistics' warning."""
    record = load_statistics(path, provenance=True)[3]
    if record is None:
        return
    other_count = expected.get("n") is not None and record.get("n") not in (None,
                                                                            expected["n"])
    what = {"inception_sha1": "the FID network's weights", "image_size": "the image size",
            "crop": "the crop", "identity": "the data set", "sample_sha1": "the images",
            "split": "the split"}
    for key, name in what.items():
        want, have = expected.get(key), record.get(key)
        if want is None or have is None or (key == "sample_sha1" and other_count):
            continue
        if isinstance(want, (list, tuple)):
            want, have = list(want), list(have)
        if want != have:
            raise UserError(f"statistics '{path}' do not describe this run: {name} differ "
                            f"({key} {have!r} there, {want!r} here); delete the file to "
                            "recompute it, or set dataset_stats_path to the right one")
    if other_count:
        warnings.warn(f"statistics '{path}' come from {record['n']} images, this run asks "
                      f"for {expected['n']} (stats_sample_size): FID depends on the count",
                      stacklevel=2)
