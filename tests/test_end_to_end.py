"""train.py and test.py as a user runs them: subprocesses on a tiny folder of images."""
import json
import os
import re
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest
from PIL import Image

from tests.conftest import (ROOT, TINY_RUN, checkpoint_values, command, our_lines, run,
                            write_config)


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


def train_args(cfg, image_folder, save):
    return ["--config", cfg, "--data-dir", image_folder, "--save-dir", str(save), "--quiet"]


def _default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_and_wait_for(args, state, name, timeout=300):
    """Start `train.py ARGS`; return it once the checkpoint list `state` names `name`."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    # As a user's foreground run: Ctrl-C not ignored, even when these tests run as a
    # background job (whose children a shell starts with SIGINT ignored, which train.py
    # rightly keeps).
    proc = subprocess.Popen(command("train.py", *args), cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if state.exists() and f'"{name}"' in state.read_text():
            return proc
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"{name} never appeared: {proc.communicate()[1][-2000:]}")


def test_kill_9_mid_epoch_then_resume_equals_the_uninterrupted_run(tmp_path, image_folder):
    """A run killed with kill -9 in the middle of an epoch resumes at its last checkpoint
    within the epoch and ends with the weights (and everything else it saves) of a run
    that never stopped, bit for bit; losses.jsonl and metrics.jsonl hold every step and
    epoch once, as that run's do."""
    cfg = write_config(tmp_path, num_epochs=2, eval_every=0, steps_per_epoch=40,
                       checkpoint_every_steps=5, G_ema_decay=0.9)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    r = run("train.py", *train_args(cfg, image_folder, straight))
    assert r.returncode == 0, r.stderr[-3000:]

    state = killed / "checkpoints" / "mid_epoch" / "checkpoint"
    proc = start_and_wait_for(train_args(cfg, image_folder, killed), state, "ckpt-10")
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    saved = int(re.search(r'model_checkpoint_path: "ckpt-(\d+)"', state.read_text())[1])
    assert 10 <= saved < 40

    r = run("train.py", *train_args(cfg, image_folder, killed))
    assert r.returncode == 0, r.stderr[-3000:]
    assert (f"resumed at epoch 0, step {saved} from {state.parent / f'ckpt-{saved}'} "
            f"({saved} of 40 steps into epoch 1)") in r.stdout
    a = checkpoint_values(str(straight / "checkpoints" / "ckpt-2"))
    b = checkpoint_values(str(killed / "checkpoints" / "ckpt-2"))
    assert a.keys() == b.keys() and len(a) > 50
    for name in a:
        assert np.array_equal(a[name], b[name]), name
    for name in ("losses.jsonl", "metrics.jsonl"):
        lines = [{k: v for k, v in json.loads(line).items() if k != "seconds"}
                 for line in open(straight / name)]
        assert lines == [{k: v for k, v in json.loads(line).items() if k != "seconds"}
                         for line in open(killed / name)], name
    assert [json.loads(line)["step"] for line in open(killed / "losses.jsonl")] == \
        list(range(1, 81))


def test_sigint_and_sigterm_save_the_step_and_say_how_to_resume(tmp_path, image_folder):
    """Ctrl-C mid-epoch: status 130, one line (where, what was saved, the command), a
    checkpoint at that step, and the command resumes there; SIGTERM likewise with 143.
    No traceback."""
    cfg = write_config(tmp_path, num_epochs=3, eval_every=0, sample_every=0,
                       steps_per_epoch=40, checkpoint_every_steps=5)
    save = tmp_path / "run"
    args = train_args(cfg, image_folder, save)
    state = save / "checkpoints" / "mid_epoch" / "checkpoint"
    steps = []
    for sig, status, after in ((signal.SIGINT, 130, "ckpt-5"), (signal.SIGTERM, 143, "ckpt-55")):
        proc = start_and_wait_for(args, state, after)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == status, err[-3000:]
        assert "Traceback" not in err
        (line,) = our_lines(err)
        m = re.fullmatch(rf"stopped by {sig.name} at step (\d+), (\d+) of 40 steps into "
                         rf"epoch (\d): saved (\S+); resume with `python train\.py (.+)`", line)
        assert m, line
        step = int(m[1])
        assert int(m[2]) == step - 40 * (int(m[3]) - 1)
        assert m[4] == str(state.parent / f"ckpt-{step}")
        assert f'model_checkpoint_path: "ckpt-{step}"' in state.read_text()
        assert m[5].split() == args
        steps.append(step)
    r = run("train.py", *args)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resumed at epoch {steps[1] // 40}, step {steps[1]} from" in r.stdout
    resumes = [json.loads(line) for line in open(save / "resumes.jsonl")]
    assert [(x["step"], x["checkpoint"]) for x in resumes] == [
        (s, f"ckpt-{s}") for s in steps]
    assert [json.loads(line)["step"] for line in open(save / "losses.jsonl")] == \
        list(range(1, 121))


def test_full_disk_is_one_line_and_keeps_the_previous_checkpoint(tmp_path, image_folder):
    """The run folder on a 600 KB tmpfs: a checkpoint that no longer fits is one line and
    status 2, no part of it is left, and the previous checkpoint resumes (once copied to a
    disk with room). Needs root to mount; test_optimizer's stand-in covers the rest."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(disk)],
                           capture_output=True, text=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.strip()}")
    try:
        cfg = write_config(tmp_path, num_epochs=10, eval_every=0, sample_every=0,
                           steps_per_epoch=40, checkpoint_every_steps=10)
        r = run("train.py", *train_args(cfg, image_folder, disk / "run"))
        assert r.returncode == 2, r.stderr[-3000:]
        (line,) = our_lines(r.stderr)
        m = re.fullmatch(r"error: cannot write '(\S+)' \(No space left on device\): nothing "
                         r"was saved over the newest checkpoint, (\S+) \(step (\d+)\); free "
                         r"space, then run the same command to resume from it", line)
        assert m, line
        failed, newest, step = m[1], m[2], int(m[3])
        assert not [p for p in os.listdir(os.path.dirname(failed))
                    if p.startswith(os.path.basename(failed))]
        shutil.copytree(disk / "run", tmp_path / "copy")
    finally:
        subprocess.run(["umount", str(disk)], check=True)
    r = run("train.py", *train_args(cfg, image_folder, tmp_path / "copy"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"step {step} from {newest.replace(str(disk / 'run'), str(tmp_path / 'copy'))}" \
        in r.stdout


def test_user_errors_exit_2_with_one_line(tmp_path, image_folder):
    cases = [
        (["train.py", "--config", write_config(tmp_path, batchsize=3)],
         "unknown hyperparameter 'batchsize'; did you mean 'batch_size'"),
        (["train.py", "--config", write_config(tmp_path), "--data-dir", str(tmp_path / "nope")],
         "does not exist"),
        (["train.py", "--config", write_config(tmp_path), "--data-dir", image_folder,
          "--set", "G_channel=-1"], "'G_channel' = -1"),
        (["test.py", "--save-dir", str(tmp_path)], "hyperparam.json"),
        # A folder where a file is expected, a file where a folder is, a count below 1.
        (["train.py", "--config", os.path.join(ROOT, "configs")],
         "config '" + os.path.join(ROOT, "configs") + "' is a folder"),
        (["train.py", "--config", write_config(tmp_path), "--data-dir", image_folder,
          "--save-dir", write_config(tmp_path)], "is a file: pass a folder"),
        (["train.py", "--config", write_config(tmp_path), "--data-dir", write_config(tmp_path)],
         "is not a folder"),
        (["train.py", "--config", write_config(tmp_path), "--set", "num_epochs=0"],
         "'num_epochs' = 0: must be >= 1"),
        (["train.py", "--config", write_config(tmp_path), "--set", "checkpoint_every_steps=-1"],
         "'checkpoint_every_steps' = -1: must be >= 0"),
        (["test.py", "--save-dir", write_config(tmp_path)], "is a file"),
        (["test.py", "--save-dir", str(tmp_path), "--n-samples", "-5"],
         "--n-samples: must be 0 or more, got -5"),
        (["test.py", "--save-dir", str(tmp_path), "--seed", "-1"], "--seed: must be 0 or more"),
        (["test.py", "--save-dir", str(tmp_path), "--d-features", "0"],
         "--d-features: must be at least 1"),
        (["-m", "learning.fid", "stats", write_config(tmp_path), str(tmp_path / "s.npz")],
         "is a file: pass a folder of images"),
        (["-m", "learning.fid", "stats", image_folder, str(tmp_path)], "is a folder"),
        (["-m", "learning.fid", "stats", image_folder, str(tmp_path / "s.npz"),
          "--max-images", "0"], "--max-images: must be a positive integer, got 0"),
        (["-m", "learning.fid", "score", str(tmp_path / "nope"), image_folder],
         "does not exist"),
    ]
    for args, msg in cases:
        r = run(*args)
        assert r.returncode == 2, (args, r.stderr[-2000:])
        lines = our_lines(r.stderr)        # learning.fid loads TensorFlow, which says so
        assert len(lines) == 1 and lines[0].startswith("error: ") and msg in lines[0], lines
        assert "Traceback" not in r.stderr


def test_test_py_without_checkpoint(tmp_path):
    save = tmp_path / "run"
    save.mkdir()
    (save / "hyperparam.json").write_text(json.dumps(TINY_RUN))
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
