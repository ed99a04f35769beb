"""Shared test setup: quiet TensorFlow, the repository on sys.path (ROOT), the tiny run (its
config, a trainer for it, a trained run folder, its hyperparam.json for train.py), the scripts
run as a user runs them, an evaluator with scores from a list, an image folder.

Test files import the helpers one way: `from tests.conftest import make_run`. This file is
loaded for every test, so TensorFlow and the project's modules are imported inside the
helpers that need them, not here.
"""
import json
import os
import re
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import pytest  # noqa: E402


# The tiny run: a DCGAN small enough to train in seconds on 16x16 images, as the keys of a
# hyperparam.json (the tests that run train.py write it; the others take `tiny_config`).
TINY = {"model": "dcgan", "dataset": "folder", "image_size": [16, 16], "batch_size": 8,
        "z_dim": 8, "G_FC_layer_channel": 16, "G_channel": 8, "D_channel": 8,
        "sample_H": 2, "sample_W": 3, "batch_size_eval": 8, "eval_sample_size": 8,
        "keep_checkpoints": 2}
# The tiny run as train.py reads it (write_config), with statistics of 16 images for its
# evaluations.
TINY_RUN = {**TINY, "stats_sample_size": 16}


def tiny(**changes):
    """The tiny run's Config, with `changes`."""
    from learning.config import Config
    return Config.from_dict({**TINY, **changes})


@pytest.fixture
def tiny_config():
    """The tiny run's Config: two epochs, no evaluation."""
    return tiny(num_epochs=2, eval_every=0)


def make_run(config, save_dir, n=40, seed=0):
    """A trainer for `config` on `n` random 16x16 images, writing into `save_dir`."""
    import keras
    from datasets.data import Dataset
    from learning.optimizer import MomentumOptimizer
    from models.nn import build_model
    keras.utils.set_random_seed(config.seed)
    images = np.random.default_rng(seed).integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)
    model = build_model(config, (16, 16, 3))
    return MomentumOptimizer(model, Dataset(images, seed=config.seed), None, config,
                             str(save_dir))


def weights(opt):
    """Copies of the trainer's G and D variables."""
    return [v.numpy().copy() for v in
            opt.model.generator.variables + opt.model.discriminator.variables]


def fake_evaluator(scores):
    """An FIDEvaluator whose scores come from the list `scores`, one per evaluation: the
    best-checkpoint rules without Inception."""
    from learning.evaluator import FIDEvaluator

    class FakeEvaluator(FIDEvaluator):
        def __init__(self):
            super().__init__(fid=None)
            self.scores = list(scores)

        def score(self, model, **kwargs):
            return self.scores.pop(0)
    return FakeEvaluator()


def trained_run(config, path):
    """A run folder trained with make_run, with its hyperparam.json: what test.py reads."""
    opt = make_run(config, path)
    opt.train(verbose=False)
    config.save(str(path / "hyperparam.json"))
    return path


def command(script, *args):
    """`python SCRIPT ARGS` (train.py, test.py; or "-m", "learning.fid")."""
    return [sys.executable, script if script == "-m" else os.path.join(ROOT, script), *args]


def run(script, *args, timeout=600, env=None):
    """`command(script, *args)` run from the repository, as a user runs it; its output kept.
    `env`: variables to set besides the environment's."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return subprocess.run(command(script, *args), cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


def our_lines(stderr):
    """stderr without TensorFlow's own start-up lines and the data-reading bar."""
    return [line for line in stderr.strip().splitlines()
            if not re.match(r"[IWE]\d{4} |WARNING: All log messages|To enable the following|"
                            r"reading images", line.strip())]


def checkpoint_values(path):
    """Every value a checkpoint holds but its save counter (one more save for a run that
    was stopped), by name."""
    import tensorflow as tf
    reader = tf.train.load_checkpoint(path)
    return {name: reader.get_tensor(name) for name, _ in tf.train.list_variables(path)
            if not name.startswith(("save_counter", "_CHECKPOINTABLE"))}


def write_config(tmp_path, **changes):
    """TINY_RUN with `changes` as tmp_path/tinyN.json, for train.py --config."""
    path = tmp_path / f"tiny{len(list(tmp_path.glob('tiny*.json')))}.json"
    path.write_text(json.dumps({**TINY_RUN, **changes}))
    return str(path)


@pytest.fixture
def image_folder(tmp_path):
    """48 small RGB images in two subfolders, FFHQ-style."""
    from PIL import Image
    rng = np.random.default_rng(0)
    for i in range(48):
        sub = tmp_path / "images" / f"{i // 24 * 1000:05d}"
        sub.mkdir(parents=True, exist_ok=True)
        yy, xx = np.mgrid[:24, :24]
        img = np.stack([(xx * 10 + i) % 256, (yy * 10) % 256,
                        np.full((24, 24), rng.integers(256))], -1).astype(np.uint8)
        Image.fromarray(img).save(sub / f"{i:05d}.png")
    return str(tmp_path / "images")
