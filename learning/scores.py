"""A generator's score record: FID and the other metrics of its samples against each split
of its data set, from one pass of the Inception network, with what makes the number
reproducible (the command, the sample seed, the checkpoint, the CPU), as a JSON file.

`python test.py --save-dir RUN --n-samples 10000 --scores FILE` writes one; the shipped
models' are pretrained/<name>/scores.json, and the docs' numbers are checked against them.
"""
import json
import os
import time

from common.errors import UserError
from common.files import write_json_atomic
from common.machine import cpu_summary
from frechet.metrics import feature_metrics
from frechet.statistics import features_path, load_features
from learning.checkpoints import read_best, saved_step


def splits_of(config):
    """The splits a score is given against: the config's own (`stats_split`) first, then,
    for MNIST-style data with a test split, the other one (Lucic et al.'s protocol scores
    against the test split; the trainer's FID, against training images)."""
    if config.dataset != "mnist":
        return [config.stats_split]
    return [config.stats_split] + [s for s in ("test", "train") if s != config.stats_split]


def score_features(fid, stats_path, metrics, real_features=None):
    """{metric: value} of the generated features `fid` holds against the statistics in
    `stats_path` (FID) and the real features beside them (`real_features` or the
    statistics' .features.npy: KID, precision/recall, density/coverage)."""
    fid.load_dataset_statistics(stats_path)
    values = {"fid": float(fid.calculate_FID())}
    others = tuple(m for m in metrics if m != "fid")
    if others:
        real = real_features if real_features is not None else load_features(
            features_path(stats_path))
        values.update(feature_metrics(fid.feature_gen, real, others))
    return values


def checkpoint_of(save_dir, ckpt_path):
    """{"path", "epoch", "step"} of the checkpoint scored: best.json's epoch and step for the
    best (what an exported folder holds too), else the step written in the checkpoint."""
    best = read_best(save_dir)
    if best and os.path.dirname(os.path.abspath(ckpt_path)) == os.path.abspath(
            os.path.join(save_dir, "best")):
        epoch, step = best.get("epoch"), best.get("step")
    else:
        epoch, step = None, saved_step(ckpt_path)
    return {"path": os.path.relpath(ckpt_path, save_dir), "epoch": epoch, "step": step}


def make_record(name, checkpoint, n, seed, command, splits, ema=True, **extra):
    """The record as scores.json holds it (splits: {split: {metric: value}})."""
    return {"model": name, "checkpoint": checkpoint, "n_samples": n, "sample_seed": seed,
            "generator": "moving average" if ema else "trained",
            "command": command, "cpu": cpu_summary(), "date": time.strftime("%Y-%m-%d"),
            "splits": splits, **extra}


def write_record(path, record):
    """Write `record` to `path`; an existing file is never replaced."""
    if os.path.exists(path):
        raise UserError(f"--scores '{path}' exists: choose a new file (a score record is "
                        "never overwritten)")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_json_atomic(path, record)


def read_record(path):
    try:
        with open(path) as f:
            record = json.load(f)
        if not all("fid" in values for values in record["splits"].values()):
            raise KeyError("fid")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"score record '{path}' cannot be read ({type(e).__name__}: {e}): "
                        "move it away to score again") from None
    return record
