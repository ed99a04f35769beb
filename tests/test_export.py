"""test.py --export: a folder test.py can read, its weights stored as float16 on request
(pretrained/ is stored so), and never written to by test.py afterwards."""
import json
import os

import numpy as np
import tensorflow as tf

from learning.checkpoints import is_float16, read_exported
from learning.config import Config
from models.nn import build_model
from tests.conftest import trained_run


def exported_images(folder, z):
    config = Config.from_json(os.path.join(folder, "hyperparam.json"))
    model = build_model(config, (16, 16, 3))
    read_exported(folder, generator_ema=model.generator_ema)
    return model.generate(z)


def data_bytes(folder):
    best = os.path.join(folder, "best")
    return sum(os.path.getsize(os.path.join(best, f)) for f in os.listdir(best)
               if ".data-" in f)


def test_float16_export_is_half_the_bytes_and_draws_the_same_images(tiny_config,
                                                                    image_folder, tmp_path):
    import test as test_script
    run = trained_run(tiny_config.replace(num_epochs=1, data_dir=image_folder,
                                          G_ema_decay=0.9), tmp_path / "run")
    full, half = tmp_path / "full", tmp_path / "half"
    for out, extra in ((full, []), (half, ["--float16"])):
        assert test_script.main(["--save-dir", str(run), "--export", str(out),
                                 "--ema-only", *extra]) == 0
    assert not is_float16(tf.train.latest_checkpoint(str(full / "best")))
    assert is_float16(tf.train.latest_checkpoint(str(half / "best")))
    assert json.load(open(half / "best" / "best.json"))["dtype"] == "float16"
    # The weights are nearly all the bytes: half of them, give or take the names and graph.
    assert 0.45 < data_bytes(half) / data_bytes(full) < 0.6
    z = np.random.default_rng(0).uniform(-1, 1, (16, 8)).astype(np.float32)
    a, b = exported_images(str(full), z), exported_images(str(half), z)
    # Rounded weights: the images move, by far less than one grey level of 255 (2/255).
    assert 0 < np.abs(a - b).max() < 2 / 255, np.abs(a - b).max()


def test_test_py_never_writes_into_an_exported_folder(tiny_config, image_folder, tmp_path,
                                                      monkeypatch):
    import test as test_script
    run = trained_run(tiny_config.replace(num_epochs=1, data_dir=image_folder),
                      tmp_path / "run")
    shipped = tmp_path / "shipped"
    assert test_script.main(["--save-dir", str(run), "--export", str(shipped)]) == 0
    before = sorted(p for p in shipped.rglob("*"))
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert test_script.main(["--save-dir", str(shipped), "--n-samples", "0"]) == 0
    assert sorted(p for p in shipped.rglob("*")) == before
    # Each run gets a new folder under runs/ (nothing is written over).
    assert (tmp_path / "runs" / "shipped" / "sample_random.png").exists()
    assert (tmp_path / "runs" / "shipped-2" / "sample_random.png").exists()
    assert test_script.main(["--save-dir", str(shipped), "--n-samples", "0",
                             "--out", str(tmp_path / "figs")]) == 0
    assert (tmp_path / "figs" / "interpolate.png").exists()
    # A training run's figures still go into the run folder.
    assert test_script.main(["--save-dir", str(run), "--n-samples", "0"]) == 0
    assert (run / "sample_random.png").exists()


def test_float16_keras_export_draws_what_the_exported_folder_draws(tiny_config, image_folder,
                                                                  tmp_path):
    """--float16 --keras: generator.keras holds the rounded weights the folder holds (and the
    batch-norm statistics test.py recomputes for them), not the run's float32 ones."""
    import keras
    import test as test_script
    from learning.latent import seeded_generator
    config = tiny_config.replace(num_epochs=1, data_dir=image_folder, G_ema_decay=0.9)
    run = trained_run(config, tmp_path / "run")
    out = tmp_path / "half"
    assert test_script.main(["--save-dir", str(run), "--export", str(out), "--ema-only",
                             "--float16", "--keras", "--n-samples", "0"]) == 0
    model = build_model(Config.from_json(str(out / "hyperparam.json")), (16, 16, 3))
    read_exported(str(out), generator_ema=model.generator_ema)
    model.recalibrate_ema(seeded_generator(config.seed, "ema batch norm"),
                          batch_size=config.batch_size)
    z = np.random.default_rng(0).uniform(-1, 1, (16, 8)).astype(np.float32)
    portable = keras.saving.load_model(str(out / "generator.keras"))
    np.testing.assert_allclose(portable.predict(z, verbose=0), model.generate(z), atol=1e-5)
    # Every kernel in the file is a float16 value (what makes the file deflate to ~58%).
    kernels = [v.numpy() for v in portable.weights if v.path.endswith("kernel")]
    assert kernels
    for w in kernels:
        np.testing.assert_array_equal(w.astype(np.float16).astype(np.float32), w)
