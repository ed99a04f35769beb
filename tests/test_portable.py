"""GAN.portable_generator: a generator.keras that opens where this repository cannot be
imported, and draws the images the checkpoint draws."""
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import tensorflow as tf

from learning.checkpoints import read_exported, write_keras
from learning.config import Config
from learning.latent import seeded_generator
from models.nn import build_model
from tests.conftest import ROOT

# Run in a fresh Python that refuses to import this repository's packages.
LOADER = """
import sys, json, importlib.abc
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('models', 'learning', 'datasets'):
            raise ImportError('this repository is not importable here: ' + name)
sys.meta_path.insert(0, Refuse())
import numpy as np, keras
args = json.loads(sys.argv[1])
g = keras.saving.load_model(args['path'])
inputs = [np.load(p) for p in args['inputs']]
np.save(args['out'], g.predict(inputs if len(inputs) > 1 else inputs[0], verbose=0))
"""


def restored(name):
    folder = os.path.join(ROOT, "pretrained", name)
    config = Config.from_json(os.path.join(folder, "hyperparam.json"))
    model = build_model(config, (28, 28, 1))
    read_exported(folder, generator_ema=model.generator_ema)
    # As test.py restores it: batch norm's statistics recomputed for the averaged weights.
    model.recalibrate_ema(seeded_generator(config.seed, "ema batch norm"),
                          batch_size=config.batch_size)
    return model


def draws_the_same(model, path, tmp_path):
    """Load `path` in a fresh Python that cannot import this repository; its images for 16
    z (and labels) must equal the model's."""
    z = model.sample_z(tf.random.Generator.from_seed(1), 16).numpy()
    inputs = [str(tmp_path / "z.npy")]
    np.save(inputs[0], z)
    labels = None
    if model.conditional:
        labels = np.arange(16) % 10
        inputs.append(str(tmp_path / "y.npy"))
        np.save(inputs[1], np.eye(10, dtype=np.float32)[labels])
    out = str(tmp_path / "out.npy")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    r = subprocess.run([sys.executable, "-c", LOADER,
                        json.dumps({"path": path, "inputs": inputs, "out": out})],
                       cwd=str(tmp_path), capture_output=True, text=True, env=env,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    np.testing.assert_allclose(np.load(out), model.generate(z, labels=labels), atol=1e-5)


def test_generator_keras_loads_without_this_repository_and_draws_the_same(tmp_path):
    for name in ("dcgan_mnist", "cgan_mnist"):
        model = restored(name)
        path = str(tmp_path / f"{name}.keras")
        write_keras(model.portable_generator(), path)
        with zipfile.ZipFile(path) as f:   # deflated, as write_keras promises
            assert {i.compress_type for i in f.infolist()} == {zipfile.ZIP_DEFLATED}
        draws_the_same(model, path, tmp_path)


def test_the_shipped_generator_keras_draws_what_the_shipped_checkpoint_draws(tmp_path):
    path = os.path.join(ROOT, "pretrained", "dcgan_mnist", "generator.keras")
    draws_the_same(restored("dcgan_mnist"), path, tmp_path)


def test_the_loader_really_cannot_import_this_repository(tmp_path):
    r = subprocess.run([sys.executable, "-c", LOADER.split("import numpy")[0]
                        + "import models.nn"], cwd=str(tmp_path), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode != 0 and "not importable here" in r.stderr
