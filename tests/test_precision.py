"""mixed_precision "bfloat16": what must stay float32, and the warning on CPUs without
bfloat16 instructions."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from learning import distribute
from models.nn import build_model


def test_mixed_bfloat16_keeps_outputs_losses_and_bn_statistics_in_float32(tiny_config):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = build_model(tiny_config, (16, 16, 3))
        z = model.sample_z(tf.random.Generator.from_seed(0), 8)
        fake = model.G(z, training=True)
        real = tf.random.stateless_uniform((8, 16, 16, 3), (0, 1), -1.0, 1.0)
        real_logits = model.D(real, training=True)
        fake_logits = model.D(fake, training=True)
        # The policy did take: the convolutions compute in bfloat16 ...
        assert model.generator.get_layer("layer_2_deconv").compute_dtype == "bfloat16"
        assert model.discriminator.get_layer("layer_1_conv").compute_dtype == "bfloat16"
        # ... while images, logits and losses are float32.
        assert fake.dtype == tf.float32
        assert real_logits.dtype == fake_logits.dtype == tf.float32
        assert model.discriminator_loss(real_logits, fake_logits).dtype == tf.float32
        assert model.generator_loss(fake_logits).dtype == tf.float32
        assert model.generate(z.numpy()).dtype == np.float32
        # Batch norm's moving statistics are float32 variables, and the training-mode calls
        # above updated them (momentum 0.9 moves the mean off its zeros).
        bns = [layer for net in (model.generator, model.discriminator) for layer in net.layers
               if isinstance(layer, keras.layers.BatchNormalization)]
        assert bns
        for bn in bns:
            assert bn.moving_mean.dtype == bn.moving_variance.dtype == "float32", bn.name
            assert np.any(bn.moving_mean.numpy() != 0.0), bn.name
        assert all(v.dtype == "float32" for v in model.generator.trainable_variables)
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("flags, mixed, warned", [
    ({"avx2", "fma"}, "bfloat16", True),             # the AVX2 kind of machine
    ({"avx2", "avx512f", "avx512_bf16"}, "bfloat16", False),
    ({"avx2", "amx_bf16"}, "bfloat16", False),
    ({"avx2"}, False, False),                       # float32: nothing to say
    ({"avx2"}, "float16", False),
])
def test_bfloat16_warning_follows_the_cpu_flags(monkeypatch, tiny_config, flags, mixed, warned):
    monkeypatch.setattr(distribute, "_cpu_has", lambda wanted: set(wanted) & flags)
    warning = distribute.bfloat16_warning(tiny_config.replace(mixed_precision=mixed))
    assert (warning is not None) == warned
    if warned:
        assert "avx512_bf16" in warning and "\n" not in warning


def test_cpu_flags_reads_the_flags_line(tmp_path):
    from common.machine import cpu_flags
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC\n"
                       "flags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n\n")
    assert cpu_flags(str(cpuinfo)) == {"fpu", "sse2", "avx2", "avx512f", "avx512_bf16"}
    assert cpu_flags(str(tmp_path / "missing")) == set()
    # The trainer's bfloat16 warning reads the same file for its two flags alone.
    assert distribute._cpu_has(("avx512_bf16", "amx_bf16"), str(cpuinfo)) == {"avx512_bf16"}
    assert distribute._cpu_has(("avx512_bf16",), str(tmp_path / "missing")) == set()


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_the_fid_network_computes_in_float32_under_a_mixed_policy(policy):
    """train.py sets the mixed policy before its evaluator builds Inception; the FID network
    must not take it (in bfloat16 its features, and so the in-training FID, are another
    number), and building it leaves the policy as it was."""
    from frechet.inception import build_inception
    keras.mixed_precision.set_global_policy(policy)
    try:
        net = build_inception()
        dtypes = {layer.compute_dtype for layer in net._flatten_layers()}
        assert dtypes == {"float32"}, dtypes
        assert net(tf.zeros((1, 299, 299, 3))).dtype == tf.float32
        assert keras.mixed_precision.global_policy().name == policy
    finally:
        keras.mixed_precision.set_global_policy("float32")
