"""train.py and test.py as a user runs them: subprocesses on a tiny folder of images."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {"model": "dcgan", "dataset": "folder", "image_size": [16, 16], "batch_size": 8,
        "z_dim": 8, "G_FC_layer_channel": 16, "G_channel": 8, "D_channel": 8,
        "sample_H": 2, "sample_W": 3, "batch_size_eval": 8, "eval_sample_size": 8,
        "stats_sample_size": 16, "keep_checkpoints": 2}


def run(script, *args, timeout=600):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env=env)


def write_config(tmp_path, **changes):
    path = tmp_path / f"tiny{len(list(tmp_path.glob('tiny*.json')))}.json"
    path.write_text(json.dumps({**TINY, **changes}))
    return str(path)


def test_train_then_test(tmp_path, image_folder):
    cfg = write_config(tmp_path, num_epochs=2, eval_every=1, crop_size=20,
                       dataset_stats_path=str(tmp_path / "stats.npz"),
                       eval_metrics=["fid", "pr", "dc"])
    save = str(tmp_path / "run")
    r = run("train.py", "--config", cfg, "--data-dir", image_folder, "--save-dir", save,
            "--quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "starting fresh" in r.stdout
    for name in ("hyperparam.json", "metrics.jsonl", "losses.jsonl", "learning_curve.png",
                 "learning_curve.svg", "training.gif", "sample_image_6.png",
                 "sample_image_12.png"):
        assert os.path.exists(os.path.join(save, name)), name
    hp = json.load(open(os.path.join(save, "hyperparam.json")))
    assert hp["data_dir"] == image_folder and hp["crop_size"] == 20
    metrics = [json.loads(l) for l in open(os.path.join(save, "metrics.jsonl"))]
    assert [m["epoch"] for m in metrics] == [1, 2] and [m["step"] for m in metrics] == [6, 12]
    assert all(m["fid"] > 0 and m["n_samples"] == 8 for m in metrics)
    # eval_metrics: precision, recall, density, coverage beside FID in every evaluation.
    assert all(0 <= m[k] <= 1 for m in metrics for k in ("precision", "recall", "coverage"))
    assert all(m["density"] >= 0 and "kid" not in m for m in metrics)
    assert os.path.exists(tmp_path / "stats.npz")
    os.listdir(os.path.join(save, "logs"))   # TensorBoard event files
    # The sample grid: 2 x 3 tiles of 16x16 with 2-pixel gaps.
    assert np.asarray(Image.open(os.path.join(save, "sample_image_12.png"))).shape == (34, 52, 3)

    r = run("test.py", "--save-dir", save, "--n-samples", "8")
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.strip().splitlines()
    fid_lines = [l for l in lines if l.startswith("FID:")]
    assert len(fid_lines) == 1 and re.fullmatch(r"FID: \d+\.\d+", fid_lines[0]), lines
    # The real sample's features are cached beside the statistics, so KID, then precision,
    # recall, density and coverage follow FID, one per line.
    after = lines[lines.index(fid_lines[0]) + 1:]
    assert re.fullmatch(r"KID: -?\d+\.\d+ ± \d+\.\d+", after[0])
    assert [l.split(":")[0] for l in after[1:5]] == ["precision", "recall", "density",
                                                      "coverage"], after
    # A generator collapsed on purpose (one sample repeated): every fake ball has radius
    # 0, so no real image is recalled.
    r = run("test.py", "--save-dir", save, "--n-samples", "8", "--collapse", "1",
            "--metrics", "pr")
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout.strip().splitlines()
    assert out[-1] == "recall: 0.0000" and out[-2].startswith("precision: "), out
    assert not any(l.startswith(("KID", "density")) for l in out)
    assert np.asarray(Image.open(os.path.join(save, "interpolate.png"))).shape == (16, 11 * 18 - 2, 3)
    assert np.asarray(Image.open(os.path.join(save, "sample_random.png"))).shape == (34, 52, 3)

    r = run("test.py", "--save-dir", save, "--n-samples", "0", "--walk", "--arithmetic")
    assert r.returncode == 0, r.stderr[-3000:]
    assert os.path.exists(os.path.join(save, "latent_walk.gif"))
    # 4 x 4 tiles: three triples with their means, then the means and the result
    assert np.asarray(Image.open(os.path.join(save, "arithmetic.png"))).shape == (70, 70, 3)

    # Running train.py again on a finished run resumes and has nothing left to do.
    r = run("train.py", "--config", cfg, "--data-dir", image_folder, "--save-dir", save,
            "--quiet")
    assert r.returncode == 0 and "resumed at epoch 2, step 12" in r.stdout


def test_kill_9_then_resume(tmp_path, image_folder):
    """A run killed mid-epoch resumes at its last saved epoch with the same step count,
    and metrics.jsonl ends with each epoch once."""
    cfg = write_config(tmp_path, num_epochs=40, eval_every=0, sample_every=0,
                       steps_per_epoch=6)
    save = tmp_path / "run"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    args = [sys.executable, os.path.join(ROOT, "train.py"), "--config", cfg, "--data-dir",
            image_folder, "--save-dir", str(save), "--quiet"]
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    state = save / "checkpoints" / "checkpoint"
    while time.time() < deadline:
        if state.exists() and "ckpt-3" in state.read_text():
            break
        time.sleep(0.05)
    time.sleep(0.3)  # somewhere inside a later epoch, or inside a write
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    text = state.read_text()
    saved = max(int(n) for n in re.findall(r"ckpt-(\d+)", text))
    assert 3 <= saved < 40

    r = run("train.py", "--config", cfg, "--data-dir", image_folder, "--save-dir", str(save),
            "--quiet", "--set", "num_epochs=" + str(saved + 2))
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resumed at epoch {saved}, step {saved * 6}" in r.stdout
    metrics = [json.loads(l) for l in open(save / "metrics.jsonl")]
    assert [m["epoch"] for m in metrics] == list(range(1, saved + 3))
    assert [m["step"] for m in metrics] == [6 * e for e in range(1, saved + 3)]
    steps = [json.loads(l)["step"] for l in open(save / "losses.jsonl")]
    assert steps == list(range(1, 6 * (saved + 2) + 1))


def test_user_errors_exit_2_with_one_line(tmp_path, image_folder):
    cases = [
        (["train.py", "--config", write_config(tmp_path, batchsize=3)],
         "unknown hyperparameter 'batchsize'; did you mean 'batch_size'"),
        (["train.py", "--config", write_config(tmp_path), "--data-dir", str(tmp_path / "nope")],
         "does not exist"),
        (["train.py", "--config", write_config(tmp_path), "--data-dir", image_folder,
          "--set", "G_channel=-1"], "'G_channel' = -1"),
        (["test.py", "--save-dir", str(tmp_path)], "hyperparam.json"),
    ]
    for args, msg in cases:
        r = run(*args)
        assert r.returncode == 2, (args, r.stderr[-2000:])
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and msg in lines[0], lines


def test_test_py_without_checkpoint(tmp_path):
    save = tmp_path / "run"
    save.mkdir()
    (save / "hyperparam.json").write_text(json.dumps(TINY))
    r = run("test.py", "--save-dir", str(save))
    assert r.returncode == 2 and "no checkpoint" in r.stderr and "Traceback" not in r.stderr


def test_unwritable_save_dir(tmp_path, image_folder):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = run("train.py", "--config", write_config(tmp_path, num_epochs=1, eval_every=0),
            "--data-dir", image_folder, "--save-dir", str(blocker / "run"))
    assert r.returncode == 2 and "cannot be written" in r.stderr


def test_resume_with_other_architecture_refused(tmp_path, image_folder):
    cfg = write_config(tmp_path, num_epochs=1, eval_every=0)
    save = str(tmp_path / "run")
    assert run("train.py", "--config", cfg, "--data-dir", image_folder, "--save-dir", save,
               "--quiet").returncode == 0
    r = run("train.py", "--config", cfg, "--data-dir", image_folder, "--save-dir", save,
            "--set", "G_channel=16")
    assert r.returncode == 2 and "G_channel=8, not 16" in r.stderr
    ckpts = sorted(os.listdir(os.path.join(save, "checkpoints")))
    assert any(c.startswith("ckpt-1") for c in ckpts)
