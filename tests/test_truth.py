"""The rows of docs/configuration.md and the step's promises, checked as written (issue 12):
sample_every 0, steps_per_epoch, learning_rate_patience; one implementation of each loss; one
z per step; each update moves only its own network; d_separate_updates' order."""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from learning import records
from models import nn
from tests.conftest import ROOT, fake_evaluator, make_run


def d_weights(opt):
    return [v.numpy().copy() for v in opt.model.discriminator.trainable_variables]


def g_weights(opt):
    return [v.numpy().copy() for v in opt.model.generator.trainable_variables]


def determined_d_weights(opt):
    """D's trainable weights but the biases of the convolutions batch norm follows: their
    true gradient is 0 (batch norm subtracts the batch mean), so Adam, which divides by the
    gradient's size, turns its rounding noise (1e-10) into full steps of ±lr that differ
    between the traced step and an eager one."""
    variables = opt.model.discriminator.trainable_variables
    normed = {v.path.split("/")[0][:-len("_bn")] for v in variables
              if v.path.split("/")[0].endswith("_bn")}
    return [v.numpy().copy() for v in variables
            if not (v.path.endswith("_conv/bias") and v.path.split("_conv/")[0] in normed)]


def bce(logits, target):
    """-(t log σ(x) + (1 - t) log(1 - σ(x))), averaged: the loss by hand."""
    p = 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))
    return float(np.mean(-(target * np.log(p) + (1 - target) * np.log(1 - p))))


# ------------------------------------------------------------------ documented rows
def config_row(key):
    """The row of docs/configuration.md's table that documents `key`."""
    path = os.path.join(ROOT, "docs", "configuration.md")
    with open(path, encoding="utf-8") as f:
        rows = [line for line in f if line.startswith(f"| `{key}` |")]
    assert len(rows) == 1, f"docs/configuration.md: {len(rows)} rows for '{key}'"
    return rows[0]


@pytest.mark.parametrize("key, says", [
    ("sample_every", "0 = only the last"),
    ("steps_per_epoch", "null = images // batch_size; may be more or fewer than one pass"),
    ("learning_rate_patience", "FID evaluations (epochs when `eval_every` is 1)"),
    ("d_separate_updates", "a fake-only, then a real-only minibatch"),
])
def test_the_documented_rows_say_what_the_tests_below_check(key, says):
    assert says in config_row(key)


def test_sample_every_0_writes_only_the_last_grid_and_the_gif(tiny_config, tmp_path):
    """docs/configuration.md: `sample_every` 0 = only the last."""
    opt = make_run(tiny_config.replace(num_epochs=3, sample_every=0), tmp_path)
    opt.train(verbose=False)
    grids = sorted(p.name for p in tmp_path.glob("sample_image_*.png"))
    assert grids == ["sample_image_15.png"]          # 40 images // 8 = 5 steps an epoch
    assert (tmp_path / "training.gif").exists()


def test_steps_per_epoch_sets_the_epoch_length_beyond_one_pass(tiny_config, tmp_path):
    """docs/configuration.md: steps per epoch, null = images // batch_size, may be more or
    fewer than one pass. 40 images in batches of 8 are 5 steps a pass; 7 are asked for, and 3."""
    opt = make_run(tiny_config.replace(num_epochs=2, steps_per_epoch=7), tmp_path)
    assert make_run(tiny_config, tmp_path / "default").steps_per_epoch == 5
    result = opt.train(verbose=False)
    assert result["step"] == 14
    assert [m["step"] for m in records.read_jsonl(str(tmp_path / "metrics.jsonl"))] == [7, 14]
    short = make_run(tiny_config.replace(num_epochs=1, steps_per_epoch=3), tmp_path / "short")
    assert short.train(verbose=False)["step"] == 3


def test_learning_rate_patience_counts_evaluations_not_epochs(tiny_config, tmp_path):
    """docs/configuration.md: learning_rate_patience is counted in FID evaluations. With
    eval_every 2 and patience 1, FIDs 50, 60, 60 at epochs 2, 4, 6: the third evaluation is
    the second without a better score (> 1), so the rate halves after epoch 6. Counted in
    epochs, epochs 3 and 4 would already be two bad ones and epoch 5 would train at 1e-4."""
    c = tiny_config.replace(num_epochs=6, eval_every=2, learning_rate_patience=1,
                            learning_rate_decay=0.5)
    opt = make_run(c, tmp_path)
    opt.evaluator = fake_evaluator([50.0, 60.0, 60.0])
    opt.train(verbose=False)
    metrics = records.read_jsonl(str(tmp_path / "metrics.jsonl"))
    assert [m["fid"] for m in metrics] == [None, 50.0, None, 60.0, None, 60.0]
    # Each line records the rate its epoch trained at.
    assert [m["learning_rate"] for m in metrics] == pytest.approx([2e-4] * 6)
    assert float(opt.optimize_G.learning_rate.numpy()) == pytest.approx(1e-4)
    assert float(opt.optimize_D.learning_rate.numpy()) == pytest.approx(1e-4)


# ------------------------------------------------------------------ one implementation
def test_training_losses_use_the_pure_functions_with_the_configured_labels(tiny_config,
                                                                            monkeypatch):
    """GAN.discriminator_loss, d_loss_real and d_loss_fake (what the step calls) delegate
    to the module's pure functions with real label 1 - label_smoothing and fake label
    fake_label_smoothing, and their values are the cross-entropy computed by hand."""
    model = nn.build_model(tiny_config.replace(label_smoothing=0.1, fake_label_smoothing=0.05),
                           (16, 16, 3))
    rng = np.random.default_rng(0)
    real = rng.normal(0, 2, (6, 1)).astype(np.float32)
    fake = rng.normal(0, 2, (6, 1)).astype(np.float32)
    tol = dict(rel=1e-5)
    assert float(model.d_loss_real(real)) == pytest.approx(bce(real, 0.9), **tol)
    assert float(model.d_loss_fake(fake)) == pytest.approx(bce(fake, 0.05), **tol)
    assert float(model.discriminator_loss(real, fake)) == pytest.approx(
        bce(real, 0.9) + bce(fake, 0.05), **tol)
    assert float(model.generator_loss(fake)) == pytest.approx(bce(fake, 1.0), **tol)

    calls = []

    def spy(name):
        original = getattr(nn, name)

        def wrapped(*args):
            calls.append((name,) + tuple(a for a in args if isinstance(a, float)))
            return original(*args)
        monkeypatch.setattr(nn, name, wrapped)
    for name in ("discriminator_loss", "d_loss_real", "d_loss_fake", "generator_loss"):
        spy(name)
    model.discriminator_loss(real, fake)
    model.d_loss_real(real)
    model.d_loss_fake(fake)
    model.generator_loss(fake)
    assert calls == [("discriminator_loss", 0.9, 0.05), ("d_loss_real", 0.9),
                     ("d_loss_fake", 0.05), ("d_loss_real", 0.9), ("d_loss_fake", 0.05),
                     ("generator_loss",)]


def test_the_steps_d_loss_is_the_smoothed_cross_entropy(tiny_config, tmp_path):
    """The step's D loss, with smoothing 0.1 / 0.05, against the logits of the same z and
    batch computed by hand (batch norm in training mode, as in the step)."""
    c = tiny_config.replace(label_smoothing=0.1, fake_label_smoothing=0.05)
    opt = make_run(c, tmp_path)
    X = tf.constant(opt.train_set.next_batch(8))
    model = opt.model
    z = model.sample_z(tf.random.Generator.from_seed(c.seed), 8)   # the step's one draw
    real_logits = model.D(X, training=True).numpy()
    fake_logits = model.D(model.G(z, training=True), training=True).numpy()
    out = opt.train_step(X, None)
    assert float(out["d_loss"]) == pytest.approx(
        bce(real_logits, 0.9) + bce(fake_logits, 0.05), rel=1e-5)


# ------------------------------------------------------------------ the step
def test_one_step_draws_z_once_for_d_and_both_g_updates(tiny_config, tmp_path):
    """The step's random stream advances by exactly one draw of (batch, z_dim): the D
    update and both G updates share that z (a z per G update would advance it further)."""
    opt = make_run(tiny_config.replace(g_updates_per_step=2), tmp_path)
    opt.train_step(tf.constant(opt.train_set.next_batch(8)), None)
    assert int(opt.optimize_G.iterations.numpy()) == 2
    once = tf.random.Generator.from_seed(tiny_config.seed)
    opt.model.sample_z(once, 8)
    np.testing.assert_array_equal(opt.rng.state.numpy(), once.state.numpy())
    twice = tf.random.Generator.from_seed(tiny_config.seed)
    opt.model.sample_z(twice, 8)
    opt.model.sample_z(twice, 8)
    assert not np.array_equal(opt.rng.state.numpy(), twice.state.numpy())


@pytest.mark.parametrize("separate", [False, True])
def test_each_update_moves_only_its_own_network(tiny_config, tmp_path, separate):
    """The whole step, run twice from the same start: once with G's Adam at learning rate
    0, so that any change of G's trainable weights comes from D's update; once with D's at
    0, so that any change of D's comes from G's updates. Adam at rate 0 moves nothing, and
    the other optimizer's steps are real, so a D update that reached G's variables (or a G
    update D's) shows. Batch norm's moving statistics are not trainable: left out."""
    c = tiny_config.replace(d_separate_updates=separate)
    frozen_g = make_run(c, tmp_path / "g")
    X = tf.constant(frozen_g.train_set.next_batch(8))
    g_before, d_before = g_weights(frozen_g), d_weights(frozen_g)
    frozen_g.optimize_G.learning_rate.assign(0.0)
    frozen_g.train_step(X, None)
    for a, b in zip(g_before, g_weights(frozen_g)):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(d_before, d_weights(frozen_g)))

    frozen_d = make_run(c, tmp_path / "d")
    frozen_d.optimize_D.learning_rate.assign(0.0)
    frozen_d.train_step(X, None)
    for a, b in zip(d_before, d_weights(frozen_d)):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(g_before, g_weights(frozen_d)))


def test_separate_d_updates_step_on_fakes_then_reals(tiny_config, tmp_path):
    """d_separate_updates: D's weights after the step are those of Adam (configured as the
    trainer's) applied by hand from the same start to the fake-only loss, then to the
    real-only loss; the reverse order gives other weights. G's updates do not touch D's
    trainable weights (test above), so D's weights after the whole step are its two
    updates'. (Left out: the conv biases before batch norm, see determined_d_weights.)"""
    c = tiny_config.replace(d_separate_updates=True, label_smoothing=0.1)
    opt = make_run(c, tmp_path / "step")
    X = tf.constant(opt.train_set.next_batch(8))
    opt.train_step(X, None)
    stepped = determined_d_weights(opt)

    def by_hand(order, folder):
        ref = make_run(c, tmp_path / folder)          # the same seed: the same start
        model = ref.model
        z = model.sample_z(tf.random.Generator.from_seed(c.seed), 8)
        fake = model.G(z, training=True)
        adam = keras.optimizers.Adam(learning_rate=c.init_learning_rate, beta_1=c.momentum,
                                     epsilon=1e-8)
        d_vars = model.discriminator.trainable_variables
        losses = {"fake": lambda: model.d_loss_fake(model.D(fake, training=True)),
                  "real": lambda: model.d_loss_real(model.D(X, training=True))}
        for part in order:
            with tf.GradientTape() as tape:
                loss = losses[part]()
            adam.apply_gradients(zip(tape.gradient(loss, d_vars), d_vars))
        return determined_d_weights(ref)

    assert len(stepped) == len(opt.model.discriminator.trainable_variables) - 1

    def close(a, b):
        return all(np.allclose(x, y, rtol=1e-5, atol=1e-7) for x, y in zip(a, b))
    fake_first = by_hand(("fake", "real"), "fake_first")
    assert close(stepped, fake_first)
    real_first = by_hand(("real", "fake"), "real_first")
    assert not close(stepped, real_first)
