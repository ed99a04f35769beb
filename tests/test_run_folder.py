"""The run folder tells the truth: one writer, damaged checkpoints skipped, resumes recorded,
and the small silent failures made loud."""
import configparser
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from common.errors import UserError
from learning import records
from learning.evaluator import FIDEvaluator
from learning.checkpoints import restore_checkpoint
from models.nn import build_model
from tests.conftest import ROOT, TINY_RUN, fake_evaluator, make_run, run, weights, write_config


def truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def data_file(save_dir, name):
    return os.path.join(save_dir, "checkpoints", f"{name}.data-00000-of-00001")


def one_error_line(r):
    """The one `error:` line a failed run ends with (TensorFlow may log before it)."""
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert r.returncode == 2 and len(errors) == 1 and "Traceback" not in r.stderr, \
        r.stderr[-3000:]
    assert r.stderr.strip().splitlines()[-1] == errors[0]
    return errors[0]


# ------------------------------------------------------------------ 1. one writer
def test_second_train_py_on_a_folder_exits_2_and_a_killed_one_does_not_block(
        tmp_path, image_folder):
    cfg = write_config(tmp_path, num_epochs=200, eval_every=0, sample_every=0)
    save = tmp_path / "run"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    first = subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), "--config", cfg,
                              "--data-dir", image_folder, "--save-dir", str(save), "--quiet"],
                             cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        state = save / "checkpoints" / "checkpoint"
        deadline = time.time() + 300
        while not (state.exists() and "ckpt-1" in state.read_text()):
            assert first.poll() is None and time.time() < deadline
            time.sleep(0.1)
        lock = json.loads((save / ".lock").read_text())
        assert lock["pid"] == first.pid and set(lock) == {"pid", "host", "started"}

        line = one_error_line(run("train.py", "--config", cfg, "--data-dir", image_folder,
                                  "--save-dir", str(save), "--quiet"))
        assert f"is in use by train.py (pid {first.pid} on host {lock['host']}" in line
        assert "choose another --save-dir" in line
        # A dry run writes nothing, so it takes no lock.
        r = run("train.py", "--config", cfg, "--data-dir", image_folder, "--save-dir",
                str(save), "--dry-run")
        assert r.returncode == 0, r.stderr[-3000:]
        assert first.poll() is None
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert (save / ".lock").exists()   # kill -9 leaves the file behind...
    saved = max(int(n) for n in re.findall(r"ckpt-(\d+)", state.read_text()))
    r = run("train.py", "--config", cfg, "--data-dir", image_folder, "--save-dir", str(save),
            "--quiet", "--set", f"num_epochs={saved + 1}")
    assert r.returncode == 0, r.stderr[-3000:]   # ...and it does not block the next run
    assert f"taking over the lock of pid {first.pid}" in r.stdout
    assert f"resumed at epoch {saved}, step {saved * 6}" in r.stdout
    assert not (save / ".lock").exists()          # released at exit


# ------------------------------------------------------------------ 2. damaged checkpoints
def test_damaged_latest_checkpoint_restores_the_one_before(tiny_config, tmp_path):
    c = tiny_config.replace(num_epochs=3, keep_checkpoints=3)
    make_run(c, tmp_path).train(verbose=False)
    ckpt2 = make_run(c, tmp_path / "ref")
    restore_checkpoint(ckpt2.checkpoint, str(tmp_path / "checkpoints" / "ckpt-2"))
    truncate(data_file(str(tmp_path), "ckpt-3"))
    files = sorted(os.listdir(tmp_path / "checkpoints"))

    resumed = make_run(c, tmp_path)
    with pytest.warns(UserWarning,
                      match=r"skipped ckpt-3: cannot be read .*restored .*ckpt-2 instead"):
        path = resumed.restore()
    assert path.endswith("ckpt-2") and int(resumed.curr_epoch.numpy()) == 2
    for a, b in zip(weights(ckpt2), weights(resumed)):
        np.testing.assert_array_equal(a, b)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == files   # nothing deleted

    for name in ("ckpt-1", "ckpt-2"):
        truncate(data_file(str(tmp_path), name))
    with pytest.raises(UserError, match="no checkpoint in .* reads whole: ckpt-3 .*, ckpt-2 "
                                        r"\(Read less bytes than requested\), ckpt-1"):
        make_run(c, tmp_path).restore()
    assert sorted(os.listdir(tmp_path / "checkpoints")) == files


def test_train_and_test_py_skip_a_damaged_checkpoint(tmp_path, image_folder):
    cfg = write_config(tmp_path, num_epochs=3, eval_every=0, keep_checkpoints=3)
    save = str(tmp_path / "run")
    args = ["--config", cfg, "--data-dir", image_folder, "--save-dir", save, "--quiet"]
    r = run("train.py", *args)
    assert r.returncode == 0, r.stderr[-3000:]
    truncate(data_file(save, "ckpt-3"))

    r = run("test.py", "--save-dir", save, "--n-samples", "0")
    assert r.returncode == 0, r.stderr[-3000:]
    assert re.search(r"warning: skipped ckpt-3: .*cannot be read", r.stderr), r.stderr
    assert "restored " + os.path.join(save, "checkpoints", "ckpt-2") in r.stdout

    r = run("train.py", *args)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "warning: skipped ckpt-3" in r.stderr and "Traceback" not in r.stderr
    assert "resumed at epoch 2, step 12" in r.stdout

    for name in ("ckpt-1", "ckpt-2", "ckpt-3"):
        truncate(data_file(save, name))
    for script, extra in (("train.py", args), ("test.py", ["--save-dir", save,
                                                           "--n-samples", "0"])):
        line = one_error_line(run(script, *extra))
        assert re.search(r"no checkpoint in .*checkpoints reads whole: ckpt-3 .*ckpt-1", line)


# ------------------------------------------------------------------ 3. resumes recorded
def test_resume_prints_applies_and_appends_each_change(tiny_config, tmp_path, capsys):
    from learning.checkpoints import saved_config
    make_run(tiny_config.replace(num_epochs=1), tmp_path).train(verbose=False)
    changed = tiny_config.replace(num_epochs=2, label_smoothing=0.1, init_learning_rate=1e-4)
    opt = make_run(changed, tmp_path)
    opt.train(verbose=False)
    out = capsys.readouterr().out
    assert "changed on resume: label_smoothing 0.0 -> 0.1" in out
    assert "changed on resume: num_epochs 1 -> 2" in out
    # The new rate is the one used, not the checkpoint's.
    assert float(opt.optimize_G.learning_rate.numpy()) == pytest.approx(1e-4)
    # Each checkpoint holds the config it was written under.
    assert saved_config(str(tmp_path / "checkpoints" / "ckpt-1")) == tiny_config.replace(
        num_epochs=1)
    assert saved_config(opt.latest.latest_checkpoint) == changed

    make_run(changed.replace(num_epochs=3), tmp_path).train(verbose=False)
    lines = records.read_jsonl(str(tmp_path / "resumes.jsonl"))
    assert [(r["epoch"], r["step"], r["checkpoint"]) for r in lines] == [
        (1, 5, "ckpt-1"), (2, 10, "ckpt-2")]
    assert lines[0]["changes"] == {"init_learning_rate": [2e-4, 1e-4], "num_epochs": [1, 2],
                                   "label_smoothing": [0.0, 0.1]}
    assert lines[1]["changes"] == {"num_epochs": [2, 3]}
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}", r["time"])
               for r in lines)


def test_resume_refuses_turning_the_average_off(tiny_config, tmp_path):
    import train
    averaged = tiny_config.replace(num_epochs=1, G_ema_decay=0.9)
    make_run(averaged, tmp_path).train(verbose=False)
    plain = averaged.replace(G_ema_decay=None, num_epochs=2)
    # The checkpoint would restore without its average, silently: the config it holds says no.
    with pytest.raises(UserError, match="G_ema_decay=0.9, not null.*cannot be turned on or off"):
        make_run(plain, tmp_path).train(verbose=False)
    averaged.save(str(tmp_path / "hyperparam.json"))
    with pytest.raises(UserError, match="holds a run with G_ema_decay=0.9, not null"):
        train.check_save_dir(str(tmp_path), plain)
    with pytest.raises(UserError, match="holds a run with sample_H=2, not 3"):
        train.check_save_dir(str(tmp_path), averaged.replace(sample_H=3))
    train.check_save_dir(str(tmp_path), averaged.replace(G_ema_decay=0.99, num_epochs=5))


# ------------------------------------------------------------------ 4. small silent failures
def test_fid_above_1000_still_saves_a_best(tiny_config, tmp_path):
    assert FIDEvaluator(fid=None).worst_score == float("inf")
    opt = make_run(tiny_config.replace(num_epochs=2, eval_every=1), tmp_path)
    opt.evaluator = fake_evaluator([1500.0, 1200.0])
    opt.best_score.assign(FIDEvaluator(fid=None).worst_score)
    opt.train(verbose=False)
    text = (tmp_path / "best" / "best.json").read_text()
    best = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in best.json"))
    assert best["epoch"] == 2 and best["score"] == 1200.0
    assert tf.train.latest_checkpoint(str(tmp_path / "best")).endswith("best-2")


def test_cgan_label_out_of_range_is_an_error(tiny_config):
    c = tiny_config.replace(model="cgan", num_classes=3, G_hidden=(8,), D_hidden=(8,))
    model = build_model(c, (16, 16, 3))
    z = np.zeros((2, c.z_dim), np.float32)
    assert model.generate(z, labels=np.array([0, 2])).shape == (2, 16, 16, 3)
    for bad in ([0, 3], [-1, 0]):
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"in \[0, num_classes=3\)"):
            model.generate(z, labels=np.array(bad))
    d = tf.function(lambda x, y: model.D(x, y, training=True))
    x = tf.zeros((2, 16, 16, 3))
    assert d(x, tf.constant([1, 2])).shape == (2, 1)
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_classes=3"):
        d(x, tf.constant([1, 3]))


def test_class_grid_has_a_column_per_class(tmp_path):
    """test.py's grid: ten rows of the num_classes classes (it had ten columns whatever
    num_classes was, and labels past it became empty one-hot vectors)."""
    from learning.config import Config
    c = Config.from_dict({**TINY_RUN, "model": "cgan", "num_classes": 3, "G_hidden": [8],
                          "D_hidden": [8]})
    save = tmp_path / "run"
    save.mkdir()
    c.save(str(save / "hyperparam.json"))
    model = build_model(c, (16, 16, 3))
    tf.train.CheckpointManager(tf.train.Checkpoint(generator=model.generator),
                               str(save / "checkpoints"), max_to_keep=1,
                               checkpoint_name="ckpt").save(checkpoint_number=1)
    r = run("test.py", "--save-dir", str(save), "--n-samples", "0")
    assert r.returncode == 0, r.stderr[-3000:]
    grid = np.asarray(Image.open(save / "class_grid.png"))
    assert grid.shape == (10 * 18 - 2, 3 * 18 - 2, 3)


def test_package_floors_match_what_the_code_needs():
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    assert cfg["options"]["python_requires"] == ">=3.11"   # zarr>=3.1 needs 3.11
    requires = [r.strip() for r in cfg["options"]["install_requires"].splitlines()
                if r.strip() and not r.strip().startswith("#")]
    pillow = [r for r in requires if r.lower().startswith("pillow")]
    assert pillow and pillow[0].replace(" ", "").lower() == "pillow>=9.1"   # Image.Resampling
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    assert "Python 3.11+" in readme and "Python 3.9+" not in readme
