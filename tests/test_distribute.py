"""tf.distribute: `mirrored` on logical CPU devices and `multi_worker` over two processes
on 127.0.0.1 train the model one device trains."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from common.errors import UserError
from learning import distribute
from learning.config import Config

from tests.conftest import ROOT, TINY

# The tiny run, two short epochs, batch norm synchronised across replicas.
SHORT_RUN = {**TINY, "num_epochs": 2, "steps_per_epoch": 2, "eval_every": 0,
        "batch_norm_sync": True}
LEARNING_RATE = 2e-4


def python(*args, env=None, timeout=900):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


def mirrored_check(replicas, sync, steps, *extra):
    r = python(os.path.join(ROOT, "tests", "mirrored_check.py"), str(replicas),
               "sync" if sync else "nosync", str(steps), *extra)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_mirrored_on_two_cpu_devices_trains_what_one_device_trains():
    out = mirrored_check(2, sync=True, steps=2)
    assert out["replicas"] == 2
    np.testing.assert_allclose(out["many"], out["one"], rtol=1e-5)
    # Weights, batch-norm statistics and Adam's moments (which would show a gradient
    # summed over replicas instead of averaged) agree to float rounding.
    assert out["max_diff_exact"] < 1e-5
    # Biases in front of batch norm get rounding noise for a gradient, and Adam turns it
    # into steps of at most the learning rate: 3 updates a step, 2 steps.
    assert out["max_diff_noisy"] <= 2 * 3 * 2 * LEARNING_RATE


def test_mirrored_keeps_the_generator_average_one_device_keeps():
    """G_ema_decay under mirrored: the average is updated on every replica alike."""
    out = mirrored_check(2, True, 2, "ema")
    plain = mirrored_check(2, True, 2)
    assert out["num_variables"] > plain["num_variables"]      # the average is compared too
    np.testing.assert_allclose(out["many"], out["one"], rtol=1e-5)
    assert out["max_diff_exact"] < 1e-5
    assert out["max_diff_noisy"] <= 2 * 3 * 2 * LEARNING_RATE


def test_mirrored_without_batch_norm_sync_normalises_each_replica_on_its_own():
    # The check above can fail: with per-replica statistics the losses differ.
    out = mirrored_check(2, sync=False, steps=1)
    assert out["replicas"] == 2
    assert abs(out["many"][0][0] - out["one"][0][0]) > 1e-4


def test_fid_evaluation_sharded_over_replicas_gives_the_one_device_score():
    r = python(os.path.join(ROOT, "tests", "mirrored_check.py"), "2", "eval")
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["replicas"] == 2 and out["n_features"] == [7, 7]  # padding dropped
    assert out["max_feature_diff"] < 1e-4
    assert out["many"] == pytest.approx(out["one"], rel=1e-6)


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def train(config_path, data_dir, save_dir, env=None):
    return subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "train.py"), "--config", config_path,
         "--data-dir", data_dir, "--save-dir", save_dir, "--quiet"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})})


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_two_workers_on_localhost_train_and_the_chief_checkpoint_restores(tmp_path,
                                                                          image_folder):
    config = tmp_path / "multi.json"
    config.write_text(json.dumps({**SHORT_RUN, "strategy": "multi_worker"}))
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    save = str(tmp_path / "run")
    workers = [train(str(config), image_folder, save, env={"TF_CONFIG": json.dumps(
        {"cluster": cluster, "task": {"type": "worker", "index": i}})}) for i in range(2)]
    try:
        outputs = [w.communicate(timeout=900) for w in workers]
    finally:
        for w in workers:
            w.kill()
    for w, (stdout, stderr) in zip(workers, outputs):
        assert w.returncode == 0, stderr[-3000:]
        assert "2 replicas of 4 images" in stdout
    # Only the chief wrote the run folder: one line per epoch, each saying 2 replicas.
    metrics = read_jsonl(os.path.join(save, "metrics.jsonl"))
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert all(m["replicas"] == 2 for m in metrics)
    assert len(read_jsonl(os.path.join(save, "losses.jsonl"))) == 4
    assert os.path.exists(os.path.join(save, "checkpoints", "ckpt-2.index"))
    assert sorted(os.listdir(save)).count("hyperparam.json") == 1

    # One device, the same config otherwise: the same losses (batch norm synchronised).
    single = tmp_path / "single.json"
    single.write_text(json.dumps(SHORT_RUN))
    one = train(str(single), image_folder, str(tmp_path / "one"))
    stdout, stderr = one.communicate(timeout=900)
    assert one.returncode == 0, stderr[-3000:]
    one_losses = read_jsonl(os.path.join(tmp_path, "one", "losses.jsonl"))
    two_losses = read_jsonl(os.path.join(save, "losses.jsonl"))
    np.testing.assert_allclose([[r["d_loss"], r["g_loss"]] for r in two_losses],
                               [[r["d_loss"], r["g_loss"]] for r in one_losses], rtol=1e-4)

    # The chief's checkpoint restores: one process resumes the run at epoch 2, step 4.
    resume = tmp_path / "resume.json"
    resume.write_text(json.dumps({**SHORT_RUN, "num_epochs": 3}))
    r = train(str(resume), image_folder, save)
    stdout, stderr = r.communicate(timeout=900)
    assert r.returncode == 0, stderr[-3000:]
    assert "resumed at epoch 2, step 4" in stdout
    assert [m["replicas"] for m in read_jsonl(os.path.join(save, "metrics.jsonl"))] == \
        [2, 2, 1]


def test_batch_size_must_divide_among_replicas():
    distribute.check_batch_size(8, 2)
    with pytest.raises(UserError, match="batch_size 6 does not divide among 4 replicas"):
        distribute.check_batch_size(6, 4)


def test_strategy_and_tf_config_are_checked(monkeypatch):
    with pytest.raises(UserError, match="'strategy' = 'mirror'.*'mirrored'"):
        Config(strategy="mirror")
    with pytest.raises(UserError, match="logical_cpu_devices"):
        Config(logical_cpu_devices=-1)
    config = Config(strategy="multi_worker")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(UserError, match="TF_CONFIG.*not set"):
        distribute.is_chief_task(config)
    monkeypatch.setenv("TF_CONFIG", "{cluster")
    with pytest.raises(UserError, match="TF_CONFIG is not valid JSON"):
        distribute.is_chief_task(config)
    cluster = {"worker": ["a:1", "b:1"]}
    for task, chief in [({"type": "worker", "index": 0}, True),
                        ({"type": "worker", "index": 1}, False)]:
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
        assert distribute.is_chief_task(config) is chief
    with_chief = {"chief": ["c:1"], **cluster}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": with_chief,
                                                "task": {"type": "worker", "index": 0}}))
    assert distribute.is_chief_task(config) is False
    assert distribute.is_chief_task(Config()) is True  # one process is its own chief
