"""test.py --scores: both splits of an MNIST-style data set from one pass of the network,
written as a score record that equals what each split's own scoring prints."""
import gzip
import json
import re
import struct

import numpy as np
import pytest

from tests.conftest import TINY, our_lines, run

# A tiny DCGAN on 28x28 digits read from IDX files, as Fashion-MNIST is read.
TINY_MNIST = {**TINY, "dataset": "mnist", "image_size": [28, 28], "num_epochs": 1,
              "steps_per_epoch": 2, "eval_every": 0, "stats_sample_size": 24,
              "eval_sample_size": 16}


def write_idx(folder, split, images):
    prefix = "train" if split == "train" else "t10k"
    with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">4B3I", 0, 0, 8, 3, len(images), 28, 28) + images.tobytes())
    with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">4BI", 0, 0, 8, 1, len(images))
                + (np.arange(len(images)) % 10).astype(np.uint8).tobytes())


def script(name, *args, cache):
    return run(name, *args, timeout=900, env={"GAN_TF2_CACHE": cache})


def printed(stdout, tag=""):
    return {m[1]: float(m[2]) for m in re.finditer(
        r"^(FID|precision|recall|density|coverage)" + re.escape(tag) + r": ([0-9.]+)$",
        stdout, re.M)}


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory):
    """A tiny run on IDX digits (a training and a test split that differ), trained one
    epoch, and a cache holding only the network's weights (not the data's statistics)."""
    from frechet.weights import find_inception_weights
    tmp = tmp_path_factory.mktemp("scores")
    data = tmp / "digits"
    data.mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:28, :28]
    strokes = lambda n, w: np.stack([((np.abs(xx - 14 - rng.integers(-6, 7)) < w) * 255)  # noqa
                                     .astype(np.uint8) for _ in range(n)])
    write_idx(data, "train", strokes(48, 2))
    write_idx(data, "test", strokes(24, 5))     # bolder: another set of statistics
    config = tmp / "tiny.json"
    config.write_text(json.dumps({**TINY_MNIST, "data_dir": str(data)}))
    weights = str(find_inception_weights())
    cache = str(tmp / "cache")
    r = script("train.py", "--config", str(config), "--save-dir", str(tmp / "run"),
               "--quiet", cache=cache)
    assert r.returncode == 0, r.stderr[-3000:]
    return tmp / "run", weights, cache


def test_scores_record_equals_each_split_scored_alone(mnist_run, tmp_path):
    """The record's test-split numbers are those test.py prints with stats_split "test",
    its training-split numbers those it prints by default, to every printed digit; the
    record names the command, the sample seed, the checkpoint and the CPU."""
    run, weights, cache = mnist_run
    common = ["--save-dir", str(run), "--out", str(tmp_path / "f"), "--n-samples", "16",
              "--seed", "3", "--weights", weights, "--metrics", "fid,pr,dc"]
    record_path = tmp_path / "scores.json"
    both = script("test.py", *common, "--set", 'stats_split="test"', "--scores",
                  str(record_path), cache=cache)
    assert both.returncode == 0, both.stderr[-3000:]
    alone = {split: script("test.py", *common, "--set", f'stats_split="{split}"', cache=cache)
             for split in ("test", "train")}
    for r in alone.values():
        assert r.returncode == 0, r.stderr[-3000:]
    record = json.loads(record_path.read_text())
    assert list(record["splits"]) == ["test", "train"]
    assert printed(both.stdout) == printed(alone["test"].stdout)
    assert printed(both.stdout, " (train split)") == printed(alone["train"].stdout)
    for split, r in alone.items():
        values = record["splits"][split]
        assert set(values) == {"fid", "precision", "recall", "density", "coverage"}
        assert printed(r.stdout) == {("FID" if k == "fid" else k): round(v, 4)
                                     for k, v in values.items()}
    assert record["splits"]["test"]["fid"] != record["splits"]["train"]["fid"]
    assert record["n_samples"] == 16 and record["sample_seed"] == 3
    assert record["command"].startswith("python test.py --save-dir ")
    assert "--scores" in record["command"] and record["model"] == "run"
    assert record["checkpoint"]["step"] == 2 and record["cpu"]

    # A second --scores to the same file: refused before anything is scored.
    before = record_path.read_bytes()
    r = script("test.py", *common, "--scores", str(record_path), cache=cache)
    assert r.returncode == 2 and "never overwritten" in r.stderr
    assert len(our_lines(r.stderr)) == 1 and "restored" not in r.stdout
    assert record_path.read_bytes() == before
