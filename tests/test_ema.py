"""The moving average of the generator's weights (G_ema_decay)."""
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from common.errors import UserError
from learning.config import Config
from learning.checkpoints import restore_checkpoint
from tests.conftest import make_run


def values(variables):
    return [v.numpy().copy() for v in variables]


def test_off_by_default_and_checked():
    assert Config().G_ema_decay is None
    for bad in (1.0, -0.1, 1.5, "0.9", True):
        with pytest.raises(UserError, match="G_ema_decay"):
            Config(G_ema_decay=bad)
    Config(G_ema_decay=0)          # 0: off, as null


def test_no_average_means_no_second_generator(tiny_config, tmp_path):
    for decay in (None, 0.0):
        opt = make_run(tiny_config.replace(G_ema_decay=decay), tmp_path / str(decay))
        assert opt.model.generator_ema is None and not opt.model.sample_ema


def test_one_step_is_the_hand_computed_average(tiny_config, tmp_path):
    """One G update: ema = d * G_before + (1 - d) * G_after for every trained weight of G;
    batch norm's moving statistics are left to recalibrate_ema."""
    decay = 0.9
    opt = make_run(tiny_config.replace(G_ema_decay=decay, g_updates_per_step=1), tmp_path)
    g, ema = opt.model.generator, opt.model.generator_ema
    before = values(g.trainable_variables)
    for a, b in zip(values(g.variables), values(ema.variables)):
        np.testing.assert_array_equal(a, b)           # starts as a copy
    stats_before = [v.numpy().copy() for v in ema.non_trainable_variables]
    assert any("moving_mean" in v.path for v in ema.non_trainable_variables)
    opt.train_step(tf.constant(opt.train_set.next_batch(8)), None)
    after = values(g.trainable_variables)
    names = [v.path for v in g.trainable_variables]
    moved = 0
    for name, b, a, e in zip(names, before, after, values(ema.trainable_variables)):
        np.testing.assert_allclose(e, decay * b + (1 - decay) * a, rtol=1e-6, atol=1e-7,
                                   err_msg=name)
        moved += not np.array_equal(a, b)
    assert moved > len(names) // 2                     # G did change, so the test can fail
    for a, v in zip(stats_before, ema.non_trainable_variables):
        np.testing.assert_array_equal(a, v.numpy())


def test_recalibration_gives_the_mean_batch_statistics(tiny_config, tmp_path):
    """recalibrate_ema sets each batch norm's moving mean and variance of the averaged G
    to the mean over the batches of that layer's batch mean and variance."""
    import keras
    opt = make_run(tiny_config.replace(G_ema_decay=0.9), tmp_path)
    opt.train_step(tf.constant(opt.train_set.next_batch(8)), None)
    model, ema = opt.model, opt.model.generator_ema
    norms = [l for l in ema.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert len(norms) == 2
    # By hand: the inputs of each batch norm for the same z the method will draw, each
    # batch normalised on its own statistics (training mode) as during recalibration.
    probe = keras.Model(ema.input, [l.input for l in norms])
    rng = tf.random.Generator.from_seed(11)
    inputs = [[x.numpy() for x in probe(model.sample_z(rng, 8), training=True)]
              for _ in range(3)]
    axes = lambda x: tuple(range(x.ndim - 1))  # noqa: E731 (all but the channels)
    expected_mean = [np.mean([np.mean(b[i], axis=axes(b[i])) for b in inputs], axis=0)
                     for i in range(len(norms))]
    expected_var = [np.mean([np.var(b[i], axis=axes(b[i])) for b in inputs], axis=0)
                    for i in range(len(norms))]
    momenta = [l.momentum for l in norms]
    model.recalibrate_ema(tf.random.Generator.from_seed(11), batches=3, batch_size=8)
    for i, layer in enumerate(norms):
        np.testing.assert_allclose(layer.moving_mean.numpy(), expected_mean[i], rtol=1e-4,
                                   atol=1e-5)
        np.testing.assert_allclose(layer.moving_variance.numpy(), expected_var[i], rtol=1e-4,
                                   atol=1e-5)
    assert [l.momentum for l in norms] == momenta      # put back
    # The trained generator's statistics are not touched.
    g_norms = [l for l in model.generator.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert not np.allclose(g_norms[0].moving_mean.numpy(), norms[0].moving_mean.numpy())


def test_updated_after_every_g_update(tiny_config, tmp_path):
    """Two G updates per step: the step applies the average twice, once after each."""
    decay = 0.5
    opt = make_run(tiny_config.replace(G_ema_decay=decay, g_updates_per_step=2), tmp_path)
    calls = []
    original = opt.model.update_ema

    def spy(d):
        calls.append(d)        # runs while the step is traced: once per update in the graph
        original(d)
    opt.model.update_ema = spy
    opt.train_step = tf.function(opt._step)
    opt.train_step(tf.constant(opt.train_set.next_batch(8)), None)
    assert calls == [decay, decay]
    assert int(opt.optimize_G.iterations.numpy()) == 2


def test_resume_restores_the_average(tiny_config, tmp_path):
    c = tiny_config.replace(G_ema_decay=0.99, num_epochs=1)
    opt = make_run(c, tmp_path / "a")
    opt.train(verbose=False)
    saved = values(opt.model.generator_ema.variables)
    assert not all(np.array_equal(a, b) for a, b in
                   zip(saved, values(opt.model.generator.variables)))
    other = make_run(c.replace(seed=3), tmp_path / "b")
    restore_checkpoint(other.checkpoint, opt.latest.latest_checkpoint)
    for a, b in zip(saved, values(other.model.generator_ema.variables)):
        np.testing.assert_array_equal(a, b)


def test_samples_use_the_average_unless_told(tiny_config, tmp_path):
    opt = make_run(tiny_config.replace(G_ema_decay=0.9), tmp_path)
    opt.train_step(tf.constant(opt.train_set.next_batch(8)), None)
    model = opt.model
    z = np.random.default_rng(0).uniform(-1, 1, (4, tiny_config.z_dim)).astype(np.float32)
    with_ema = model.generate(z)
    np.testing.assert_allclose(with_ema, model.generator_ema(z, training=False).numpy(),
                               atol=1e-6)
    model.sample_ema = False
    raw = model.generate(z)
    np.testing.assert_allclose(raw, model.generator(z, training=False).numpy(), atol=1e-6)
    assert not np.allclose(with_ema, raw)


def test_test_py_uses_the_average_unless_no_ema(tiny_config, tmp_path):
    import test as test_script
    c = tiny_config.replace(G_ema_decay=0.9, num_epochs=1, dataset="folder")
    opt = make_run(c, tmp_path)
    opt.train(verbose=False)
    c.save(str(tmp_path / "hyperparam.json"))
    # hyperparam.json must describe images of the shape make_run trained on
    assert test_script.main(["--save-dir", str(tmp_path), "--n-samples", "0"]) == 0
    ema_grid = np.asarray(Image.open(tmp_path / "sample_random.png"))
    assert test_script.main(["--save-dir", str(tmp_path), "--n-samples", "0",
                             "--no-ema"]) == 0
    raw_grid = np.asarray(Image.open(tmp_path / "sample_random.png"))
    assert ema_grid.shape == raw_grid.shape and not np.array_equal(ema_grid, raw_grid)
    # The grid test.py drew with the average is the average's output for the same z.
    from learning import figures, latent
    z = opt.model.sample_z(latent.seeded_generator(0, "test.py"), 6).numpy()
    expected = figures.image_grid(opt.model.generator_ema(z, training=False).numpy(), 2, 3)
    assert np.abs(ema_grid.astype(int) - expected.astype(int)).max() <= 1


def test_a_bigger_sample_grid_trains_the_same_model(tiny_config, tmp_path):
    """The grid's z comes from a stream of its own: sample_H and sample_W change what is
    drawn for the grid, never the training run (they used to shift the training stream)."""
    small = make_run(tiny_config, tmp_path / "small")
    big = make_run(tiny_config.replace(sample_H=5, sample_W=7), tmp_path / "big")
    for opt in (small, big):
        for _ in range(2):
            opt.train_step(tf.constant(opt.train_set.next_batch(8)), None)
    for a, b in zip(values(small.model.generator.variables),
                    values(big.model.generator.variables)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(small.sample_z.numpy(), big.sample_z.numpy()[:6])
