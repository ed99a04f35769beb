"""learning.d_features: guided backprop checked by hand, and test.py --d-features."""
import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from learning import d_features
from learning.checkpoints import read_exported
from learning.d_features import guided_maps, last_conv_features
from tests.conftest import ROOT, trained_run


def tiny_discriminator(alpha=0.2):
    """conv + leaky ReLU + conv + leaky ReLU, then flatten and a logit: D's pattern."""
    keras.utils.set_random_seed(3)
    x_in = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(4, 3, 2, "same", name="layer_1_conv")(x_in)
    x = keras.layers.LeakyReLU(negative_slope=alpha, name="layer_1_lrelu")(x)
    x = keras.layers.Conv2D(3, 3, 1, "same", name="layer_2_conv")(x)
    x = keras.layers.LeakyReLU(negative_slope=alpha, name="layer_2_lrelu")(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(x_in, keras.layers.Dense(1)(x))


def guided_by_hand(model, x, k, alpha=0.2):
    """The guided map of image x's filter k at its spatial maximum, one piece at a time:
    each conv's backward pass by its own tape, every ReLU's mask applied here."""
    conv1, conv2 = model.get_layer("layer_1_conv"), model.get_layer("layer_2_conv")
    x = tf.constant(x[None])
    h1 = conv1(x)
    a1 = tf.nn.leaky_relu(h1, alpha)
    h2 = conv2(a1)
    flat = tf.reshape(h2[0, :, :, k], [-1])
    top = tf.one_hot(tf.argmax(flat), flat.shape[0])
    g_h2 = tf.reshape(top, h2.shape[1:3])[None, :, :, None] * tf.one_hot(k, 3)
    g_h2 *= tf.cast(h2 > 0, tf.float32) * tf.cast(g_h2 > 0, tf.float32)    # ReLU 2
    with tf.GradientTape() as tape:
        tape.watch(a1)
        out = tf.reduce_sum(conv2(a1) * g_h2)
    g_a1 = tape.gradient(out, a1)
    g_h1 = g_a1 * tf.cast(h1 > 0, tf.float32) * tf.cast(g_a1 > 0, tf.float32)  # ReLU 1
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = tf.reduce_sum(conv1(x) * g_h1)
    return tape.gradient(out, x)[0].numpy()


def test_guided_maps_match_the_masked_gradient_by_hand():
    model = tiny_discriminator()
    images = np.random.default_rng(0).normal(size=(2, 8, 8, 2)).astype(np.float32)
    maps, index = guided_maps(model, images, 2)
    assert maps.shape == (2, 2, 8, 8, 2) and index.shape == (2, 2)
    # Per image, the filters with the largest spatial maximum, strongest first.
    peaks = keras.Model(model.input, model.get_layer("layer_2_lrelu").output)(images)
    peaks = peaks.numpy().max(axis=(1, 2))
    np.testing.assert_array_equal(index, np.argsort(-peaks, axis=1)[:, :2])
    for i in range(2):
        for j, k in enumerate(index[i]):
            expected = guided_by_hand(model, images[i], k)
            assert np.abs(expected).max() > 0
            np.testing.assert_allclose(maps[i, j], expected, atol=1e-6)
            # The plain gradient of the same maximum is not what guided backprop gives.
            x = tf.constant(images[i:i + 1])
            with tf.GradientTape() as tape:
                tape.watch(x)
                act = last_conv_features(model, x, guided=False)
                value = tf.reduce_max(act[0, :, :, k])
            plain = tape.gradient(value, x)[0].numpy()
            assert np.abs(plain - expected).max() > 1e-3


def test_features_are_the_models_own_in_inference_mode(tiny_config):
    from models.nn import build_model
    D = build_model(tiny_config, (16, 16, 3)).discriminator
    bn = D.get_layer("layer_2_bn")
    bn.moving_mean.assign(np.linspace(-0.5, 0.5, bn.moving_mean.shape[0]))
    bn.moving_variance.assign(np.linspace(0.5, 2.0, bn.moving_variance.shape[0]))
    x = np.random.default_rng(1).uniform(-1, 1, (3, 16, 16, 3)).astype(np.float32)
    sub = keras.Model(D.input, D.get_layer("layer_2_lrelu").output)
    expected = sub(x, training=False).numpy()
    for guided in (True, False):
        np.testing.assert_allclose(last_conv_features(D, x, guided=guided).numpy(),
                                   expected, atol=1e-6)


def test_test_py_writes_d_features(tiny_config, image_folder, tmp_path):
    import test as test_script
    run = trained_run(tiny_config.replace(num_epochs=1, data_dir=image_folder), tmp_path)
    assert test_script.main(["--save-dir", str(run), "--d-features", "2",
                             "--n-samples", "0"]) == 0
    grid = np.asarray(Image.open(run / "d_features.png"))
    # 2 rows of 16-pixel tiles; each half the image and 8 maps (D's last conv has 16
    # filters), 2-pixel gaps, 12 between the halves.
    half = 9 * 18 - 2
    assert grid.shape == (2 * 18 - 2, 2 * half + 12, 3) and grid.dtype == np.uint8
    left, right = grid[:, :half], grid[:, half + 12:]
    np.testing.assert_array_equal(left[:, :16], right[:, :16])      # the same images
    assert not np.array_equal(left[:, 18:], right[:, 18:])         # trained vs initial D


def test_d_features_on_a_fully_connected_model_says_so(tiny_config, tmp_path, capsys):
    import test as test_script
    c = tiny_config.replace(model="fc_gan", G_hidden=(16,), D_hidden=(16,), num_epochs=1)
    run = trained_run(c, tmp_path)
    capsys.readouterr()
    assert test_script.main(["--save-dir", str(run), "--d-features", "--n-samples", "0"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "--d-features" in ln]
    assert lines == ["--d-features: fc_gan has a fully connected discriminator: no filters "
                     "to show"]
    assert not (run / "d_features.png").exists()


def test_d_features_on_an_export_without_d_is_a_user_error(tiny_config, image_folder,
                                                           tmp_path, capsys):
    import test as test_script
    run = trained_run(tiny_config.replace(num_epochs=1, data_dir=image_folder),
                      tmp_path / "run")
    out = tmp_path / "shipped"
    assert test_script.main(["--save-dir", str(run), "--export", str(out)]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        test_script.main(["--save-dir", str(out), "--d-features", "2", "--n-samples", "0"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds no discriminator" in err[0]
    assert "--with-discriminator" in err[0]


def test_shipped_dcgan_mnist_d_maps_follow_the_digit():
    """On the shipped dcgan_mnist D, and on the same D as initialised, the guided-backprop
    maps put their mass near the digit: within 2 pixels of a stroke, where 29% of the pixels
    are, lies 66% of the trained D's |map| and 57% of the initial D's (8 training images
    picked with seed 0, 8 filters each; measured when the model was shipped). Guided
    backprop shows the input's edges whatever the weights (Adebayo et al. 2018), so this
    checks the maps, not what training taught D; a map blind to the input scores 1x."""
    import os
    from scipy.ndimage import binary_dilation
    from datasets.data import image_shape, load_images
    from learning.config import Config
    from models.nn import build_model
    folder = os.path.join(ROOT, "pretrained", "dcgan_mnist")
    config = Config.from_json(os.path.join(folder, "hyperparam.json"))
    model = build_model(config, image_shape(config))
    read_exported(folder, discriminator=model.discriminator)
    images, _ = load_images(config)
    pick = np.sort(np.random.default_rng(0).choice(len(images), 8, replace=False))
    x = images[pick].astype(np.float32) / 127.5 - 1.0
    near = np.stack([binary_dilation(im[..., 0] > 0, iterations=2) for im in x])
    near = near[:, None, :, :, None]                  # (images, filters, H, W, channel)
    for d in (model.discriminator,
              d_features.random_discriminator(config, image_shape(config))):
        mass = np.abs(d_features.guided_maps(d, x, 8)[0])
        assert (mass * near).sum() / mass.sum() > 1.5 * near.mean()
