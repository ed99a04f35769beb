"""The moving average of the generator's weights (G_ema_decay)."""
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from learning.config import Config
from learning.errors import UserError
from learning.optimizer import restore_checkpoint
from tests.test_optimizer import make_run


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
    """One G update: ema = d * G_before + (1 - d) * G_after, for every variable of G,
    batch norm's moving mean and variance included."""
    decay = 0.9
    opt = make_run(tiny_config.replace(G_ema_decay=decay, g_updates_per_step=1), tmp_path)
    g, ema = opt.model.generator, opt.model.generator_ema
    before = values(g.variables)
    for a, b in zip(before, values(ema.variables)):
        np.testing.assert_array_equal(a, b)           # starts as a copy
    opt._train_step(tf.constant(opt.train_set.next_batch(8)), None)
    after = values(g.variables)
    names = [v.path for v in g.variables]
    assert any("moving_mean" in n for n in names) and any("moving_variance" in n for n in names)
    moved = 0
    for name, b, a, e in zip(names, before, after, values(ema.variables)):
        np.testing.assert_allclose(e, decay * b + (1 - decay) * a, rtol=1e-6, atol=1e-7,
                                   err_msg=name)
        moved += not np.array_equal(a, b)
    assert moved > len(names) // 2                     # G did change, so the test can fail


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
    opt._train_step = tf.function(opt._step)
    opt._train_step(tf.constant(opt.train_set.next_batch(8)), None)
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
    opt._train_step(tf.constant(opt.train_set.next_batch(8)), None)
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
    from learning import utils
    z = opt.model.sample_z(utils.seeded_generator(0, "test.py"), 6).numpy()
    expected = utils.image_grid(opt.model.generator_ema(z, training=False).numpy(), 2, 3)
    assert np.abs(ema_grid.astype(int) - expected.astype(int)).max() <= 1
