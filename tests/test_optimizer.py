"""The trainer: one step, checkpoints, resume, determinism, non-finite losses."""
import json
import os
import signal

import numpy as np
import pytest
import tensorflow as tf

from common.errors import UserError
from common.files import WriteError
from datasets.data import Dataset
from learning import records
from learning.checkpoints import checkpoint_candidates, restore_checkpoint, save_checkpoint
from learning.evaluator import FIDEvaluator
from learning.interrupt import StopRequest, stop_on_signal
from learning.optimizer import MomentumOptimizer, TrainingDiverged
from models.nn import build_model
from tests.conftest import fake_evaluator, make_run, weights


def optimizer_slots(opt):
    return [v.numpy().copy() for v in opt.optimize_G.variables + opt.optimize_D.variables]


def test_step_updates_d_once_and_g_twice(tiny_config, tmp_path):
    opt = make_run(tiny_config, tmp_path)
    X = tf.constant(opt.train_set.next_batch(8))
    out = opt.train_step(X, None)
    assert np.isfinite(float(out["d_loss"])) and np.isfinite(float(out["g_loss"]))
    assert int(opt.optimize_D.iterations.numpy()) == 1
    assert int(opt.optimize_G.iterations.numpy()) == 2
    c1 = tiny_config.replace(g_updates_per_step=1)
    opt1 = make_run(c1, tmp_path / "one")
    opt1.train_step(X, None)
    assert int(opt1.optimize_G.iterations.numpy()) == 1


def test_adam_is_built_as_the_tutorial_says(tiny_config, tmp_path):
    opt = make_run(tiny_config, tmp_path)
    assert opt.optimize_G.beta_1 == 0.5 and opt.optimize_D.beta_1 == 0.5
    assert float(opt.optimize_G.learning_rate.numpy()) == pytest.approx(2e-4)


def test_checkpoint_round_trip_is_bit_identical(tiny_config, tmp_path):
    opt = make_run(tiny_config, tmp_path / "a")
    opt.train(verbose=False)
    saved_w, saved_s = weights(opt), optimizer_slots(opt)
    path = opt.latest.latest_checkpoint
    other = make_run(tiny_config.replace(seed=5), tmp_path / "b")
    assert any(not np.array_equal(a, b) for a, b in zip(saved_w, weights(other)))
    restore_checkpoint(other.checkpoint, path)
    for a, b in zip(saved_w, weights(other)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(saved_s, optimizer_slots(other)):
        np.testing.assert_array_equal(a, b)
    assert int(other.step.numpy()) == 2 * (40 // 8)
    np.testing.assert_array_equal(other.sample_z.numpy(), opt.sample_z.numpy())


def test_resume_continues_step_count_and_stream(tiny_config, tmp_path):
    """Two epochs, then two more on resume, equal four epochs in one go."""
    c2, c4 = tiny_config.replace(num_epochs=2), tiny_config.replace(num_epochs=4)
    first = make_run(c2, tmp_path / "resumed")
    first.train(verbose=False)
    resumed = make_run(c4, tmp_path / "resumed")
    result = resumed.train(verbose=False)
    assert result["step"] == 4 * 5 and result["epoch"] == 4
    straight = make_run(c4, tmp_path / "straight")
    straight.train(verbose=False)
    for a, b in zip(weights(resumed), weights(straight)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    lines = records.read_jsonl(str(tmp_path / "resumed" / "metrics.jsonl"))
    assert [r["epoch"] for r in lines] == [1, 2, 3, 4]
    steps = [r["step"] for r in records.read_jsonl(str(tmp_path / "resumed" / "losses.jsonl"))]
    assert steps == list(range(1, 21))


def test_repair_drops_half_line_and_redone_epoch(tmp_path):
    p = tmp_path / "metrics.jsonl"
    p.write_text('{"epoch": 1}\n{"epoch": 2}\n{"epoch": 3}\n{"epo')
    kept = records.repair_jsonl(str(p), lambda r: r["epoch"] <= 2)
    assert kept == [{"epoch": 1}, {"epoch": 2}]
    assert p.read_text() == '{"epoch": 1}\n{"epoch": 2}\n'


def test_same_seed_same_losses(tiny_config, tmp_path):
    """With op determinism on CPU, the first 20 steps repeat exactly. (TensorFlow has no
    way to switch it off again; later tests in this process only get more repeatable.)"""
    tf.config.experimental.enable_op_determinism()

    def losses(d):
        opt = make_run(tiny_config, tmp_path / d)
        out = []
        for _ in range(20):
            r = opt.train_step(tf.constant(opt.train_set.next_batch(8)), None)
            out.append((float(r["d_loss"]), float(r["g_loss"])))
        return out
    a, b = losses("a"), losses("b")
    assert a == b
    c = make_run(tiny_config.replace(seed=1), tmp_path / "c")
    X = tf.constant(c.train_set.next_batch(8))
    assert float(c.train_step(X, None)["d_loss"]) != a[0][0]


def test_nan_stops_without_overwriting(tiny_config, tmp_path):
    opt = make_run(tiny_config.replace(num_epochs=1), tmp_path)
    opt.train(verbose=False)
    good = opt.latest.latest_checkpoint
    before = weights(opt)
    # Poison the data: a NaN image makes D's loss NaN at the next step.
    bad = make_run(tiny_config.replace(num_epochs=2), tmp_path)
    bad.train_set._images = np.full((40, 16, 16, 3), np.nan, np.float32)
    with pytest.raises(TrainingDiverged, match="non-finite loss.*nothing saved"):
        bad.train(verbose=False)
    assert bad.latest.latest_checkpoint == good
    check = make_run(tiny_config, tmp_path / "check")
    restore_checkpoint(check.checkpoint, good)
    for a, b in zip(before, weights(check)):
        np.testing.assert_array_equal(a, b)


def test_nan_skip_leaves_weights_alone(tiny_config, tmp_path):
    opt = make_run(tiny_config.replace(nan_policy="skip"), tmp_path)
    before = weights(opt)
    X = tf.constant(np.full((8, 16, 16, 3), np.nan, np.float32))
    out = opt.train_step(X, None)
    assert not bool(out["finite"])
    # Neither the weights nor batch norm's moving averages took the NaN batch.
    for a, b in zip(before, weights(opt)):
        np.testing.assert_array_equal(a, b)
    assert int(opt.optimize_D.iterations.numpy()) == 0
    # A good batch afterwards trains as usual.
    out = opt.train_step(tf.constant(opt.train_set.next_batch(8)), None)
    assert bool(out["finite"]) and int(opt.optimize_D.iterations.numpy()) == 1


def test_best_never_replaced_by_worse_or_nonfinite(tiny_config, tmp_path):
    c = tiny_config.replace(num_epochs=4, eval_every=1)
    opt = make_run(c, tmp_path)
    opt.evaluator = fake_evaluator([50.0, 40.0, float("inf"), 45.0])
    opt.best_score.assign(opt.evaluator.worst_score)
    opt.train(verbose=False)
    best = json.loads((tmp_path / "best" / "best.json").read_text())
    assert best["epoch"] == 2 and best["score"] == 40.0
    assert tf.train.latest_checkpoint(str(tmp_path / "best")).endswith("best-2")
    metrics = records.read_jsonl(str(tmp_path / "metrics.jsonl"))
    assert [m["fid"] for m in metrics] == [50.0, 40.0, float("inf"), 45.0]


def test_learning_rate_decays_after_patience(tiny_config, tmp_path):
    c = tiny_config.replace(num_epochs=4, eval_every=1, learning_rate_patience=1,
                            learning_rate_decay=0.5)
    opt = make_run(c, tmp_path)
    opt.evaluator = fake_evaluator([50.0, 60.0, 60.0, 60.0])
    opt.train(verbose=False)
    lrs = [m["learning_rate"] for m in records.read_jsonl(str(tmp_path / "metrics.jsonl"))]
    # bad epochs: 0, 1, 2 (> patience: decay, reset), 1
    assert lrs == pytest.approx([2e-4, 2e-4, 2e-4, 1e-4])
    assert float(opt.optimize_G.learning_rate.numpy()) == pytest.approx(1e-4)


def test_d_learning_rate_ratio_scales_d_only_and_follows_the_decay(tiny_config, tmp_path):
    """TTUR: D's Adam runs at D_learning_rate_ratio times G's rate, before and after the
    patience decay; the step D takes is that much larger than at ratio 1."""
    c = tiny_config.replace(num_epochs=4, eval_every=1, learning_rate_patience=1,
                            learning_rate_decay=0.5, D_learning_rate_ratio=4.0)
    opt = make_run(c, tmp_path)
    assert float(opt.optimize_G.learning_rate.numpy()) == pytest.approx(2e-4)
    assert float(opt.optimize_D.learning_rate.numpy()) == pytest.approx(8e-4)
    # Adam's first step moves each weight by about lr: D's first update is 4 times ratio 1's.
    same = make_run(tiny_config, tmp_path / "one")
    moved = []
    for run in (same, opt):
        before = [v.numpy().copy() for v in run.model.discriminator.trainable_variables]
        run.optimize_D.apply_gradients(
            [(tf.ones_like(v), v) for v in run.model.discriminator.trainable_variables])
        after = run.model.discriminator.trainable_variables
        moved.append(max(float(np.abs(a.numpy() - b).max()) for a, b in zip(after, before)))
    assert moved[1] == pytest.approx(4 * moved[0], rel=1e-3)
    opt.evaluator = fake_evaluator([50.0, 60.0, 60.0, 60.0])
    opt.train(verbose=False)
    assert float(opt.optimize_G.learning_rate.numpy()) == pytest.approx(1e-4)
    assert float(opt.optimize_D.learning_rate.numpy()) == pytest.approx(4e-4)


def test_linear_decay_lowers_the_last_epochs_rates_and_resumes_on_schedule(tiny_config,
                                                                           tmp_path, capsys):
    """linear_decay_epochs 2 of 4: epochs 1-4 at 1, 1, 2/3, 1/3 of the rate, D's at its
    ratio, the post's rate (curr_learning_rate) untouched; stopped 2 steps into epoch 3 and
    resumed, the run equals the one that never stopped, bit for bit."""
    c = tiny_config.replace(num_epochs=4, linear_decay_epochs=2, D_learning_rate_ratio=2.0,
                            checkpoint_every_steps=0)
    straight = make_run(c, tmp_path / "straight")
    straight.train(verbose=False)
    lrs = [m["learning_rate"] for m in
           records.read_jsonl(str(tmp_path / "straight" / "metrics.jsonl"))]
    assert lrs == pytest.approx([2e-4, 2e-4, 2e-4 * 2 / 3, 2e-4 / 3])
    # The console line gives the rate the epoch ran at, as metrics.jsonl does (not the
    # next epoch's, already set when it prints).
    printed = [line.split("| lr ")[1].split(" |")[0]
               for line in capsys.readouterr().out.splitlines() if line.startswith("[epoch")]
    assert printed == ["2.00e-04", "2.00e-04", "1.33e-04", "6.67e-05"]
    assert float(straight.curr_learning_rate.numpy()) == pytest.approx(2e-4)
    assert float(straight.optimize_D.learning_rate.numpy()) == pytest.approx(2 * 2e-4 / 3)

    first = make_run(c, tmp_path / "stopped")
    assert first.train(verbose=False, stop=StopAt(first, 12))["epoch"] == 2
    resumed = make_run(c, tmp_path / "stopped")
    resumed.train(verbose=False)
    for a, b in zip(weights(straight) + optimizer_slots(straight),
                    weights(resumed) + optimizer_slots(resumed)):
        np.testing.assert_array_equal(a, b)
    assert run_files(tmp_path / "straight") == run_files(tmp_path / "stopped")

    off = make_run(tiny_config.replace(num_epochs=2), tmp_path / "off")
    off.train(verbose=False)
    assert [m["learning_rate"] for m in records.read_jsonl(
        str(tmp_path / "off" / "metrics.jsonl"))] == pytest.approx([2e-4, 2e-4])


def test_checkpoint_of_other_architecture_is_named(tiny_config, tmp_path):
    opt = make_run(tiny_config.replace(num_epochs=1), tmp_path)
    opt.train(verbose=False)
    wide = make_run(tiny_config.replace(G_channel=16), tmp_path / "w")
    with pytest.raises(UserError, match="does not fit this model.*shape"):
        restore_checkpoint(wide.checkpoint, opt.latest.latest_checkpoint)


def test_keep_checkpoints_bounds_disk(tiny_config, tmp_path):
    opt = make_run(tiny_config.replace(num_epochs=4, keep_checkpoints=2), tmp_path)
    opt.train(verbose=False)
    kept = tf.train.get_checkpoint_state(str(tmp_path / "checkpoints")).all_model_checkpoint_paths
    assert [os.path.basename(p) for p in kept] == ["ckpt-3", "ckpt-4"]
    assert os.path.exists(tmp_path / "training.gif")
    assert os.path.exists(tmp_path / "learning_curve.png")


def test_separate_d_updates_step_d_twice(tiny_config, tmp_path):
    """The MNIST slides: D steps on a fake-only, then a real-only minibatch."""
    opt = make_run(tiny_config.replace(d_separate_updates=True), tmp_path)
    out = opt.train_step(tf.constant(opt.train_set.next_batch(8)), None)
    assert int(opt.optimize_D.iterations.numpy()) == 2
    assert int(opt.optimize_G.iterations.numpy()) == 2
    assert np.isfinite(float(out["d_loss"]))


def test_sample_every_thins_the_grids(tiny_config, tmp_path):
    opt = make_run(tiny_config.replace(num_epochs=5, sample_every=2), tmp_path)
    opt.train(verbose=False)
    grids = sorted(p.name for p in tmp_path.glob("sample_image_*.png"))
    # every second epoch (5 steps each), and always the last
    assert grids == ["sample_image_10.png", "sample_image_20.png", "sample_image_25.png"]


class _StubFID:
    """A stand-in for learning.fid.FID in this unit test only: its "features" are the
    images' mean pixel, repeated. It lets the evaluator's own logic be checked without
    the Inception network (which test_fid.py and test_end_to_end.py run for real)."""
    class inception:
        @staticmethod
        @tf.function
        def extract_pixels(images):
            m = tf.reduce_mean(images, axis=[1, 2, 3])[:, None]
            return tf.tile(m, [1, 4]) + tf.random.normal([tf.shape(images)[0], 4])

    def __init__(self):
        self.count = 0

    def reset_FID(self):
        self.count = 0

    def add_features(self, f):
        self.count += len(f)

    def calculate_FID(self):
        return float(self.count)


def test_fid_evaluator_counts_samples_and_rejects_nonfinite(tiny_config):
    model = build_model(tiny_config, (16, 16, 3))
    ev = FIDEvaluator(_StubFID(), eval_sample_size=20, batch_size_eval=8)
    assert ev.score(model) == 20.0          # batches of 8, 8, 4
    assert ev.worst_score == float("inf") and ev.mode == "min"
    assert ev.is_better(99.0, 100.0) and not ev.is_better(99.995, 100.0)
    assert not ev.is_better(float("inf"), 1000.0) and not ev.is_better(float("nan"), 1000.0)
    # A generator that outputs NaN scores inf: never "better".
    for v in model.generator.trainable_variables:
        v.assign(tf.fill(v.shape, np.nan))
    assert ev.score(model) == float("inf")


def test_mixed_float16_trains_with_loss_scaling(tiny_config, tmp_path):
    import keras
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        opt = make_run(tiny_config.replace(mixed_precision="float16"), tmp_path)
        assert isinstance(opt.optimize_G, keras.optimizers.LossScaleOptimizer)
        out = opt.train_step(tf.constant(opt.train_set.next_batch(8)), None)
        assert np.isfinite(float(out["d_loss"])) and np.isfinite(float(out["g_loss"]))
        assert opt.model.generator.output.dtype == "float32"   # tanh kept in float32
        assert opt.model.generator.get_layer("layer_2_deconv").compute_dtype == "float16"
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_fid_evaluator_is_quiet_unless_verbose(tiny_config, capsys):
    model = build_model(tiny_config, (16, 16, 3))
    ev = FIDEvaluator(_StubFID(), eval_sample_size=20, batch_size_eval=8)
    assert ev.score(model) == 20.0
    assert capsys.readouterr().out == ""
    assert ev.score(model, verbose=True) == 20.0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("scored 20 samples in ") and "images/s)" in out[0]


def test_conditional_fakes_take_the_real_batchs_labels(tmp_path):
    """Post 002: G draws its fakes with the real batch's labels. Checked on one step: with
    every real label 3, only the label-3 rows of G's and D's first dense kernels can get a
    gradient (the other one-hot inputs are 0), so only they move; fakes with labels of their
    own would move the other rows too."""
    import keras
    from learning.config import Config
    config = Config(model="cgan", dataset="mnist", image_size=(28, 28), batch_size=32,
                    z_dim=8, G_hidden=(16,), D_hidden=(16,), eval_every=0, sample_H=2,
                    sample_W=5, G_ema_decay=None)
    keras.utils.set_random_seed(0)
    images = np.random.default_rng(0).integers(0, 256, (64, 28, 28, 1), dtype=np.uint8)
    labels = np.full(64, 3, np.int64)
    model = build_model(config, (28, 28, 1))
    opt = MomentumOptimizer(model, Dataset(images, labels, seed=0), None, config,
                            str(tmp_path))
    g_kernel = model.generator.get_layer("layer_1_fc").kernel        # rows: z, then labels
    d_kernel = model.discriminator.get_layer("layer_1_fc").kernel    # rows: pixels, labels
    g_before, d_before = g_kernel.numpy().copy(), d_kernel.numpy().copy()
    X, y = opt.train_set.next_batch(32)
    opt.train_step(tf.constant(X), tf.constant(y, tf.int32))
    g_moved = np.any(g_kernel.numpy() != g_before, axis=1)[config.z_dim:]
    d_moved = np.any(d_kernel.numpy() != d_before, axis=1)[28 * 28:]
    assert g_moved.tolist() == [k == 3 for k in range(10)]
    assert d_moved.tolist() == [k == 3 for k in range(10)]


# ------------------------------------------------------------------ within an epoch
class StopAt(StopRequest):
    """A stop request that arrives once the trainer has reached `step` (as a SIGINT
    would, between steps)."""

    def __init__(self, opt, step):
        super().__init__()
        self.opt, self.at = opt, step

    def __bool__(self):
        if int(self.opt.step.numpy()) >= self.at:
            self.signum = signal.SIGINT
        return self.signum is not None


def run_files(save_dir):
    """losses.jsonl and metrics.jsonl as records, without the wall-clock seconds."""
    metrics = [{k: v for k, v in r.items() if k != "seconds"}
               for r in records.read_jsonl(os.path.join(save_dir, "metrics.jsonl"))]
    return records.read_jsonl(os.path.join(save_dir, "losses.jsonl")), metrics


def test_stop_mid_epoch_then_resume_equals_the_uninterrupted_run(tiny_config, tmp_path):
    """Stopped 2 steps into epoch 2 (5 steps an epoch) and resumed: the weights, the
    optimizers, the average of G and both records equal those of a run that never
    stopped, bit for bit."""
    c = tiny_config.replace(num_epochs=3, G_ema_decay=0.9, checkpoint_every_steps=0)
    straight = make_run(c, tmp_path / "straight")
    straight.train(verbose=False)

    first = make_run(c, tmp_path / "stopped")
    result = first.train(verbose=False, stop=StopAt(first, 7))
    assert result["stopped"] == "SIGINT" and (result["step"], result["epoch"]) == (7, 1)
    assert result["checkpoint"] == str(tmp_path / "stopped" / "checkpoints" / "mid_epoch"
                                       / "ckpt-7")
    resumed = make_run(c, tmp_path / "stopped")
    assert resumed.train(verbose=False)["step"] == 15
    assert int(resumed.step_in_epoch.numpy()) == 0

    for a, b in zip(weights(straight) + optimizer_slots(straight),
                    weights(resumed) + optimizer_slots(resumed)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(straight.model.generator_ema.variables,
                    resumed.model.generator_ema.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert run_files(tmp_path / "straight") == run_files(tmp_path / "stopped")
    assert [r["step"] for r in run_files(tmp_path / "stopped")[0]] == list(range(1, 16))


def test_checkpoint_every_steps_saves_within_epochs_only(tiny_config, tmp_path, monkeypatch):
    """checkpoint_every_steps 2 with 5 steps an epoch: within-epoch checkpoints at steps 2,
    4, 6, 8 (5 and 10 are epoch ends, saved as such), removed once their epoch's own is
    written; 0: at epoch ends only."""
    from learning import optimizer
    saved = []

    def recording(manager, number, name="ckpt"):
        saved.append((os.path.basename(manager.directory), number))
        return save_checkpoint(manager, number, name)
    monkeypatch.setattr(optimizer, "save_checkpoint", recording)

    make_run(tiny_config.replace(checkpoint_every_steps=2), tmp_path / "a").train(verbose=False)
    assert saved == [("mid_epoch", 2), ("mid_epoch", 4), ("checkpoints", 1),
                     ("mid_epoch", 6), ("mid_epoch", 8), ("checkpoints", 2)]
    assert checkpoint_candidates(str(tmp_path / "a" / "checkpoints" / "mid_epoch")) == []
    assert os.listdir(tmp_path / "a" / "checkpoints" / "mid_epoch") == []

    saved.clear()
    make_run(tiny_config.replace(checkpoint_every_steps=0), tmp_path / "b").train(verbose=False)
    assert saved == [("checkpoints", 1), ("checkpoints", 2)]


def test_resume_picks_the_newest_step_across_folders(tiny_config, tmp_path):
    """A within-epoch checkpoint newer than the epoch's is the one resumed; an older one
    (left by a kill between the epoch's checkpoint and its removal) is not."""
    c = tiny_config.replace(num_epochs=3, checkpoint_every_steps=3)
    opt = make_run(c, tmp_path)
    opt.train(verbose=False, stop=StopAt(opt, 8))        # epoch 1 at step 5, mid at 6, 8
    resumed = make_run(c, tmp_path)
    assert resumed.restore().endswith(os.path.join("mid_epoch", "ckpt-8"))
    assert (int(resumed.step.numpy()), int(resumed.step_in_epoch.numpy())) == (8, 3)

    old = make_run(c, tmp_path / "old")
    old.train(verbose=False, stop=StopAt(old, 6))
    old.curr_epoch.assign(1), old.step.assign(10), old.step_in_epoch.assign(0)
    save_checkpoint(old.latest, 2)                         # as if epoch 2 ended at step 10
    again = make_run(c, tmp_path / "old")
    assert again.restore().endswith("ckpt-2") and int(again.step.numpy()) == 10


def test_checkpoint_of_before_step_in_epoch_still_restores(tiny_config, tmp_path):
    """Checkpoints written before they held step_in_epoch (pretrained/, runs in progress)
    restore, at an epoch's end."""
    opt = make_run(tiny_config.replace(num_epochs=1), tmp_path / "new")
    opt.train(verbose=False)
    old_objects = tf.train.Checkpoint(**{name: getattr(opt._resume_checkpoint, name)
                                         for name in OLD_CHECKPOINT_OBJECTS})
    path = tf.train.CheckpointManager(old_objects, str(tmp_path / "old" / "checkpoints"),
                                      max_to_keep=1).save(checkpoint_number=1)
    reader = tf.train.load_checkpoint(path)
    assert not reader.has_tensor("step_in_epoch/.ATTRIBUTES/VARIABLE_VALUE")
    resumed = make_run(tiny_config, tmp_path / "old")
    resumed.step_in_epoch.assign(3)
    assert resumed.restore() == path
    assert (int(resumed.step.numpy()), int(resumed.step_in_epoch.numpy())) == (5, 0)
    for a, b in zip(weights(opt), weights(resumed)):
        np.testing.assert_array_equal(a, b)


# What a checkpoint held before step_in_epoch.
OLD_CHECKPOINT_OBJECTS = ("generator", "discriminator", "g_optimizer", "d_optimizer", "step",
                          "epoch", "best_score", "num_bad_epochs", "learning_rate",
                          "skipped_steps", "sample_z", "sample_labels", "rng", "data_state")


def test_a_full_disk_keeps_the_previous_checkpoint(tiny_config, tmp_path, monkeypatch):
    """A stand-in for a full disk: TensorFlow's writer leaves a temporary file and raises
    ENOSPC at the checkpoint of step 4. The error names it and the newest checkpoint (step
    2), no file of step 4 is left, and a resume restores step 2."""
    real_save = tf.train.CheckpointManager.save

    def full_at_4(manager, checkpoint_number=None, **kwargs):
        if checkpoint_number == 4:
            temp = os.path.join(manager.directory, "ckpt-4_temp")
            os.makedirs(temp)
            open(os.path.join(temp, "part-00000-of-00001.data-00000-of-00001"), "w").close()
            raise tf.errors.ResourceExhaustedError(
                None, None, f"{temp}/part-00000-of-00001; No space left on device "
                            "[Op:SaveV2]")
        return real_save(manager, checkpoint_number=checkpoint_number, **kwargs)
    monkeypatch.setattr(tf.train.CheckpointManager, "save", full_at_4)

    c = tiny_config.replace(checkpoint_every_steps=2)
    opt = make_run(c, tmp_path)
    mid = tmp_path / "checkpoints" / "mid_epoch"
    with pytest.raises(WriteError) as error:
        opt.train(verbose=False)
    assert str(error.value) == (
        f"cannot write '{mid / 'ckpt-4'}' (No space left on device): nothing was saved "
        f"over the newest checkpoint, {mid / 'ckpt-2'} (step 2); free space, then run the "
        "same command to resume from it")
    assert sorted(os.listdir(mid)) == ["checkpoint", "ckpt-2.data-00000-of-00001",
                                       "ckpt-2.index"]
    assert [r["step"] for r in records.read_jsonl(str(tmp_path / "losses.jsonl"))] == [1, 2, 3, 4]
    monkeypatch.undo()
    resumed = make_run(c, tmp_path)
    assert resumed.restore() == str(mid / "ckpt-2") and int(resumed.step.numpy()) == 2


def test_stop_on_signal_sets_the_request_then_restores_the_default(tmp_path):
    """The first SIGINT is a request (the process goes on); after it, a second one would
    end the process (the default action); the handlers are put back afterwards."""
    before = signal.getsignal(signal.SIGINT)
    with stop_on_signal() as stop:
        assert not stop
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(100):             # Python runs the handler between bytecodes
            if stop:
                break
        assert stop and stop.name == "SIGINT" and stop.exit_status == 130
        assert signal.getsignal(signal.SIGINT) is signal.SIG_DFL
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is before
    with stop_on_signal() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(100):
            if stop:
                break
        assert stop.name == "SIGTERM" and stop.exit_status == 143
    # Ignored by the parent (a shell script's background job ignores SIGINT): it stays so.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with stop_on_signal():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_step_reports_what_d_made_of_the_real_batch(tiny_config, tmp_path):
    """D_real is D's mean output (sigmoid of its logit) on the real batch in its update,
    before that update changes D; D_fake the same on the fakes. The epoch's mean goes to
    metrics.jsonl (the post's "D at equilibrium gives 1/2")."""
    opt = make_run(tiny_config, tmp_path)
    X = tf.constant(opt.train_set.next_batch(8))
    by_hand = float(tf.reduce_mean(tf.sigmoid(opt.model.D(X, training=True))))
    out = opt.train_step(X, None)
    assert float(out["D_real"]) == pytest.approx(by_hand, abs=1e-6)
    assert 0 < float(out["D_fake"]) < 1 and abs(float(out["D_fake"]) - by_hand) > 1e-6
    opt = make_run(tiny_config.replace(num_epochs=1), tmp_path / "run")
    opt.train(verbose=False)
    record = records.read_jsonl(os.path.join(tmp_path, "run", "metrics.jsonl"))[-1]
    steps = records.read_jsonl(os.path.join(tmp_path, "run", "losses.jsonl"))
    assert record["D_real"] == pytest.approx(np.mean([s["D_real"] for s in steps]))
    assert record["D_fake"] == pytest.approx(np.mean([s["D_fake"] for s in steps]))
