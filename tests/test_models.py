import os

import numpy as np
import pytest
import tensorflow as tf

from common.errors import UserError
from learning.config import Config
from models.nn import DCGAN, build_model, conv_depth, discriminator_loss, generator_loss
from tests.conftest import ROOT


def test_losses_follow_the_label_convention():
    big = tf.constant([[20.0]])
    small = tf.constant([[-20.0]])
    # D right about both: near zero; D wrong about both: about 2 * 20.
    assert float(discriminator_loss(big, small)) < 1e-6
    assert float(discriminator_loss(small, big)) == pytest.approx(40.0, rel=1e-3)
    assert float(generator_loss(big)) < 1e-6
    assert float(generator_loss(tf.constant([[0.0]]))) == pytest.approx(np.log(2), rel=1e-6)
    # Label smoothing: with real label 0.9 the best logit is log(9), not +inf.
    l9 = float(discriminator_loss(tf.constant([[np.log(9.0)]]), small, real_label=0.9))
    l20 = float(discriminator_loss(big, small, real_label=0.9))
    assert l9 < l20


def test_conv_depth():
    assert conv_depth(64) == (4, 4) and conv_depth(28) == (2, 7) and conv_depth(32) == (3, 4)
    with pytest.raises(UserError):
        conv_depth(50 * 9)


def test_tutorial_dcgan_shapes_and_init():
    m = DCGAN((64, 64, 3), Config())
    g, d = m.generator, m.discriminator
    names = [l.name for l in g.layers]
    assert g.get_layer("layer_1").output.shape[1:] == (4 * 4 * 512,)
    assert g.get_layer("layer_2_deconv").output.shape[1:] == (8, 8, 256)
    assert g.get_layer("layer_4_deconv").output.shape[1:] == (32, 32, 64)
    assert "layer_5_bn" not in names        # no BN on the generator's last layer
    assert d.get_layer("layer_4_conv").output.shape[1:] == (4, 4, 512)
    assert "layer_1_bn" not in [l.name for l in d.layers]   # nor on D's first
    assert d.output.shape[1:] == (1,)
    k = g.get_layer("layer_3_deconv").kernel.numpy()
    assert abs(k.std() - 0.02) < 0.002 and abs(k.mean()) < 0.002
    assert np.all(g.get_layer("layer_3_deconv").bias.numpy() == 0)
    bn = g.get_layer("layer_2_bn")
    assert bn.momentum == 0.9 and bn.epsilon == 1e-5


def test_generate_batches_and_range():
    m = build_model(Config(image_size=(28, 28), G_FC_layer_channel=16, G_channel=8,
                           D_channel=8, z_dim=10), (28, 28, 1))
    z = np.random.default_rng(0).uniform(-1, 1, (10, 10)).astype(np.float32)
    out = m.generate(z, batch_size=5)            # N a multiple of the batch: no extra batch
    assert out.shape == (10, 28, 28, 1) and out.dtype == np.float32
    assert np.all(np.abs(out) <= 1.0)
    # Inference mode: an image does not depend on the rest of its batch.
    np.testing.assert_allclose(m.generate(z[:3], batch_size=3)[0], out[0], atol=1e-5)


def test_fc_gan_and_cgan_shapes():
    c = Config(model="fc_gan", image_size=(28, 28), z_dim=100, G_hidden=(128, 128),
               D_hidden=(128, 128))
    m = build_model(c, (28, 28, 1))
    assert m.generate(np.zeros((3, 100))).shape == (3, 28, 28, 1)
    assert m.discriminator(np.zeros((3, 28, 28, 1))).shape == (3, 1)
    cg = build_model(c.replace(model="cgan"), (28, 28, 1))
    z = np.random.default_rng(1).uniform(-1, 1, (2, 100))
    a = cg.generate(z, labels=np.array([0, 0]))
    b = cg.generate(z, labels=np.array([0, 7]))
    np.testing.assert_allclose(a[0], b[0], atol=1e-6)
    assert np.abs(a[1] - b[1]).max() > 1e-4      # the label changes the image
    with pytest.raises(ValueError):
        cg.generate(z)


def test_cgan_layers_start_from_their_own_random_streams():
    # One shared unseeded Keras initializer fixes its seed once: every layer would then
    # start from the same stream (same uniform draws, scaled by each layer's limit).
    import keras
    keras.utils.set_random_seed(0)
    model = build_model(Config(model="cgan", dataset="mnist", image_size=(28, 28),
                               G_hidden=(32, 32), D_hidden=(32, 32)), (28, 28, 1))
    for net in (model.generator, model.discriminator):
        kernels = [layer.kernel.numpy() for layer in net.layers if hasattr(layer, "kernel")]
        unit = [k.ravel()[:16] * np.sqrt(k.shape[0]) for k in kernels]
        assert not np.allclose(unit[1], unit[2], atol=1e-3)
    # D: PyTorch's Linear init, U(±1/sqrt(fan_in)); G: He's, U(±sqrt(6/fan_in)).
    assert all(np.abs(k.kernel.numpy() * np.sqrt(k.kernel.shape[0])).max() <= 1 + 1e-6
               for k in model.discriminator.layers if hasattr(k, "kernel"))
    g_unit = np.concatenate([np.abs(k.kernel.numpy().ravel()) * np.sqrt(k.kernel.shape[0])
                             for k in model.generator.layers if hasattr(k, "kernel")])
    assert g_unit.max() <= np.sqrt(6) + 1e-6 and g_unit.max() > 2.0


def test_cgan_generator_starts_with_varied_images():
    """The conditional G as configs/cgan_mnist.json builds it draws different images for
    different z at initialisation (pixel spread across samples 0.44). With the post's
    PyTorch init it drew almost one image (spread 0.02), D won from the first epoch and the
    labels were never learned."""
    import keras
    keras.utils.set_random_seed(0)
    config = Config.from_json(os.path.join(ROOT, "configs", "cgan_mnist.json"))
    model = build_model(config, (28, 28, 1))
    z = np.random.default_rng(0).normal(size=(200, config.z_dim)).astype(np.float32)
    images = model.G(tf.constant(z), tf.constant(np.arange(200) % 10)).numpy()
    assert images.std(axis=0).mean() > 0.2


# ------------------------------------------------------------------ fused batch norm
@pytest.mark.parametrize("shape", [(16, 6, 6, 8), (32, 10)])
def test_fused_batch_norm_is_keras_batch_norm(shape):
    """models.layers.BatchNormalization (TensorFlow's fused kernel while training) gives
    Keras's outputs, gradients and moving averages: the moving variance takes the biased
    batch variance, as Keras's does (the kernel's own is n / (n - 1) larger)."""
    import keras

    from models.layers import BatchNormalization
    x = tf.random.stateless_normal(shape, seed=(1, 2)) * 2 + 0.5
    dy = tf.random.stateless_normal(shape, seed=(3, 4))
    results = []
    for cls in (BatchNormalization, keras.layers.BatchNormalization):
        layer = cls(momentum=0.9, epsilon=1e-5)
        layer.build(shape)
        layer.gamma.assign(tf.linspace(0.5, 1.5, shape[-1]))
        layer.beta.assign(tf.linspace(-1.0, 1.0, shape[-1]))
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * dy)
        grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
        layer(x * 3.0, training=True)                       # a second update of the averages
        results.append([y, *grads, layer.moving_mean, layer.moving_variance,
                        layer(x, training=False)])
    names = ["output", "dx", "dgamma", "dbeta", "moving mean", "moving variance", "inference"]
    for name, ours, keras_value in zip(names, *results):
        np.testing.assert_allclose(np.asarray(ours), np.asarray(keras_value), rtol=1e-5,
                                   atol=1e-5, err_msg=name)
    # The moving variance is far enough from 1 that a Bessel factor would show.
    n = np.prod(shape[:-1])
    assert float(results[0][5][0]) != pytest.approx(float(results[1][5][0]) * n / (n - 1),
                                                    rel=1e-6)


def test_training_batch_norm_runs_the_fused_kernel():
    """The fused path is taken in training mode (and only there); synchronized statistics
    (batch_norm_sync) keep Keras's own ops."""
    from models.layers import BatchNormalization

    def op_types(layer, training):
        fn = tf.function(lambda x: layer(x, training=training))
        graph = fn.get_concrete_function(tf.TensorSpec((8, 4, 4, 3))).graph
        return {op.type for op in graph.get_operations()}
    layer = BatchNormalization()
    layer.build((8, 4, 4, 3))
    assert "FusedBatchNormV3" in op_types(layer, True)
    assert "FusedBatchNormV3" not in op_types(layer, False)
    synced = BatchNormalization(synchronized=True)
    synced.build((8, 4, 4, 3))
    assert "FusedBatchNormV3" not in op_types(synced, True)
    model = build_model(Config(image_size=(64, 64)), (64, 64, 3))
    norms = [layer for layer in model.generator.layers + model.discriminator.layers
             if "bn" in layer.name]
    assert norms and all(isinstance(layer, BatchNormalization) for layer in norms)


def test_mnist_slides_dcgan_has_a_linear_projection_and_bn_on_every_d_conv():
    """Seed 003's DCGAN for MNIST (configs/dcgan_mnist.json's sizes with the slides' two
    switches set): z is projected to 7x7x128 with no normalisation and no activation, and
    every conv of D has batch norm; the tutorial's (the defaults) has BN + ReLU on the
    projection and none on D's first conv."""
    config = Config.from_json(os.path.join(ROOT, "configs", "dcgan_mnist.json"))
    config = config.replace(G_project_bn=False, D_first_bn=True)
    m = DCGAN((28, 28, 1), config)
    g_names = [l.name for l in m.generator.layers]
    d_names = [l.name for l in m.discriminator.layers]
    assert "reshape_bn" not in g_names and "reshape_relu" not in g_names
    assert {"layer_1_bn", "layer_2_bn"} <= set(d_names)
    # The projection is linear: G's first deconv sees an affine function of z.
    z = np.random.default_rng(0).uniform(-1, 1, (4, config.z_dim)).astype(np.float32)
    project = tf.keras.Model(m.generator.input, m.generator.get_layer("reshape").output)
    a, b = project(z[:2]), project(z[2:])
    mid = project((z[:2] + z[2:]) / 2)
    np.testing.assert_allclose(mid, (a + b) / 2, atol=1e-5)
    tutorial = DCGAN((28, 28, 1), config.replace(G_project_bn=True, D_first_bn=False))
    assert "reshape_bn" in [l.name for l in tutorial.generator.layers]
    assert "layer_1_bn" not in [l.name for l in tutorial.discriminator.layers]
