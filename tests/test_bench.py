"""The benchmarks' FLOP counter (bench/common.py), against counts worked out by hand; the
alternating timer (bench/serve.py) and a small run of bench/train_step.py."""
import json
import os
import subprocess
import sys

import keras
import pytest
from keras import layers

from bench.common import first_layer_flops, forward_flops, gan_step_flops, layer_flops
from learning.config import Config
from models.nn import build_model
from tests.conftest import ROOT, tiny


def test_dense_counts_in_times_out_per_position():
    x = keras.Input((5,))
    h = layers.Dense(7)(x)
    y = layers.Dense(3)(layers.ReLU()(h))
    assert forward_flops(keras.Model(x, y)) == 2 * (5 * 7 + 7 * 3)
    # On a (4, 5) input a Dense multiplies each of the 4 rows.
    seq = keras.Input((4, 5))
    assert forward_flops(keras.Model(seq, layers.Dense(7)(seq))) == 2 * 4 * 5 * 7


def test_conv_counts_output_pixels_and_transposed_conv_input_pixels():
    x = keras.Input((8, 8, 3))
    conv = layers.Conv2D(4, 3, strides=2, padding="same")
    h = layers.BatchNormalization()(conv(x))                            # (N, 4, 4, 4)
    deconv = layers.Conv2DTranspose(2, 5, strides=2, padding="same")
    y = deconv(layers.LeakyReLU()(h))                                   # (N, 8, 8, 2)
    model = keras.Model(x, y)
    assert layer_flops(conv) == 2 * (4 * 4) * (3 * 3) * 3 * 4           # H_out W_out k k Cin Cout
    assert layer_flops(deconv) == 2 * (4 * 4) * (5 * 5) * 4 * 2        # H_in W_in k k Cin Cout
    assert forward_flops(model) == 3456 + 6400                          # BN, ReLU: not counted
    assert first_layer_flops(model) == 3456


def test_unknown_image_size_is_an_error_that_says_so():
    x = keras.Input((None, None, 3))
    model = keras.Model(x, layers.Conv2D(4, 3)(x))
    with pytest.raises(ValueError, match="fixed image size"):
        forward_flops(model)


# The tutorial's 64x64 DCGAN, by hand (multiply-adds; kernels 5x5, stride 2):
G_MACS = (100 * 4 * 4 * 512                  # fc z -> 4x4x512 (the first layer)
          + 4 * 4 * 512 * 25 * 256           # deconv 4x4x512 -> 8x8x256
          + 8 * 8 * 256 * 25 * 128           # deconv -> 16x16x128
          + 16 * 16 * 128 * 25 * 64          # deconv -> 32x32x64
          + 32 * 32 * 64 * 25 * 3)           # deconv -> 64x64x3
D_MACS = (32 * 32 * 25 * 3 * 64              # conv 64x64x3 -> 32x32x64 (the first layer)
          + 16 * 16 * 25 * 64 * 128          # conv -> 16x16x128
          + 8 * 8 * 25 * 128 * 256           # conv -> 8x8x256
          + 4 * 4 * 25 * 256 * 512           # conv -> 4x4x512
          + 4 * 4 * 512)                     # fc -> 1 logit


def test_tutorial_dcgan_counts():
    config = Config(image_size=(64, 64), G_FC_layer_channel=512)
    flops = gan_step_flops(build_model(config, (64, 64, 3)), config)
    assert flops["G_forward"] == 2 * G_MACS == 326_041_600
    assert flops["D_forward"] == 2 * D_MACS == 324_419_584
    # The project's notes give 0.33 GFLOP per image for each.
    assert flops["G_forward"] == pytest.approx(0.33e9, rel=0.05)
    assert flops["D_forward"] == pytest.approx(0.33e9, rel=0.05)
    # D update: G + 2 (3 D - D1); each of the 2 G updates: 3 G - G1 + 3 D.
    g, d, g1, d1 = 2 * G_MACS, 2 * D_MACS, 2 * 100 * 8192, 2 * 32 * 32 * 25 * 3 * 64
    assert flops["step"] == g + 2 * (3 * d - d1) + 2 * (3 * g - g1 + 3 * d) == 6_152_388_608


def test_step_follows_g_updates_per_step():
    config = tiny(g_updates_per_step=1)
    model = build_model(config, (16, 16, 3))
    one = gan_step_flops(model, config)
    three = gan_step_flops(model, config.replace(g_updates_per_step=3))
    assert three["step"] - one["step"] == 2 * one["G_update"]
    assert one["step"] == one["D_update"] + one["G_update"]


def test_inception_pass_is_11_4_gflop():
    """Inception-v3 at 299x299 is 5.7 G multiply-adds, widely quoted; ConvBN layers must be
    counted as convs for this to come out."""
    from frechet.inception import build_inception
    assert forward_flops(build_inception()) == pytest.approx(11.4e9, rel=0.01)


def test_mnist_dcgan_counts():
    """configs/dcgan_mnist.json's network on 28x28x1: two stride-2 layers from 7x7."""
    config = Config.from_json(os.path.join(ROOT, "configs", "dcgan_mnist.json"))
    flops = gan_step_flops(build_model(config, (28, 28, 1)), config)
    g1, d1 = 100 * 7 * 7 * 128, 14 * 14 * 25 * 1 * 64
    g = g1 + 7 * 7 * 128 * 25 * 64 + 14 * 14 * 64 * 25 * 1
    d = d1 + 7 * 7 * 25 * 64 * 128 + 7 * 7 * 128
    assert (flops["G_forward"], flops["D_forward"]) == (2 * g, 2 * d)
    # d_separate_updates splits D's update in two halves: the same work.
    assert flops["step"] == 2 * (g + 2 * (3 * d - d1) + 2 * (3 * g - g1 + 3 * d))


# ------------------------------------------------------------------ timing in turn
BENCH = os.path.join(ROOT, "bench")


def test_interleave_times_each_pass_once_per_round_in_turn():
    from bench.serve import interleave, spread
    order = []
    timers = {name: (lambda name=name: order.append(name) or len(order))
              for name in ("matmul", "step", "reference")}
    seconds = interleave(timers, rounds=3)
    assert order == ["matmul", "step", "reference"] * 3
    assert seconds["step"] == [2, 5, 8]
    assert spread([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0}


def test_served_reference_runs_one_pass_per_call(tmp_path):
    """A served script (as the PyTorch references are) says what it is, then answers each
    call with the seconds of one pass; closing it ends the process."""
    from bench.serve import Served
    script = tmp_path / "ref.py"
    script.write_text(
        f"import sys, time\nsys.path.insert(0, {BENCH!r})\nfrom serve import serve\n"
        "calls = []\nprint('{\"name\": \"sleeper\"}')\n"
        "serve(lambda: calls.append(time.sleep(0.05 * len(calls))))\n")
    with Served([sys.executable, str(script)]) as served:
        assert json.loads(served.info[-1]) == {"name": "sleeper"}
        first, second = served(), served()       # calls 2 and 3: the warm-up was call 1
    assert 0.05 <= first < 0.5 and 0.10 <= second < 0.6
    assert served.process.returncode == 0


def test_served_script_that_fails_says_so(tmp_path):
    from bench.serve import Served
    script = tmp_path / "broken.py"
    script.write_text("raise SystemExit(3)\n")
    with pytest.raises(RuntimeError, match="exited before it was ready"):
        Served([sys.executable, str(script)])


def test_train_step_bench_runs_a_served_copy_with_other_environment():
    """bench/train_step.py alternates its step with a copy of itself run with
    --versus-env's variables: the copy really ran with them (oneDNN off there, on here)."""
    out = subprocess.run(
        [sys.executable, os.path.join(BENCH, "train_step.py"), "--batch-size", "4",
         "--image-size", "32", "--rounds", "2", "--warmup", "1", "--loop-rounds", "1",
         "--loop-steps", "1", "--matmul-size", "256", "--versus-env",
         "TF_ENABLE_ONEDNN_OPTS=0"],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["machine"]["onednn"] is True and result["versus_env_onednn"] is False
    assert result["rounds"] == 2 and result["versus_env_speedup"] > 0
    assert 0 < result["step_of_matmul"] and result["matmul"]["repeats"] == 2
    assert result["step_ms_range"][0] <= result["step_ms"] <= result["step_ms_range"][1]


def test_layers_bench_times_every_convolution_and_batch_norm():
    out = subprocess.run(
        [sys.executable, os.path.join(BENCH, "layers.py"), "--batch-size", "2", "--repeats",
         "1"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert [r["layer"] for r in result["layers"]] == [
        "layer_2_deconv", "layer_3_deconv", "layer_4_deconv", "layer_5_deconv",
        "layer_1_conv", "layer_2_conv", "layer_3_conv", "layer_4_conv"]
    # G's batch norms after the dense layer and 3 deconvolutions; D's after 3 convolutions.
    assert [r["input"] for r in result["batch_norm"]] == [
        [4, 4, 512], [8, 8, 256], [16, 16, 128], [32, 32, 64],
        [16, 16, 128], [8, 8, 256], [4, 4, 512]]
    assert all(r["ours_ms"] > 0 and r["keras_ms"] > 0 for r in result["batch_norm"])


def test_train_step_bench_refuses_a_versus_setting_it_cannot_change_in_one_process(capsys):
    """The precision policy is global: a second trainer in the same process would time the
    first one's float32 again and print a ratio near 1, so --versus refuses it (one line,
    status 2) and says to time it in a run of its own."""
    from bench import train_step
    with pytest.raises(SystemExit) as exit_:
        train_step.parse_args(["--versus", 'mixed_precision="bfloat16"'])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err.count("\n") == 1 and "--versus mixed_precision" in err and "--set" in err
    # What one process can change is taken.
    assert train_step.parse_args(["--versus", "jit_compile=true"]).versus == ["jit_compile=true"]


@pytest.mark.parametrize("argv, said", [
    (["--versus", "foo"], "--versus 'foo': expected KEY=VALUE"),
    (["--versus-env", "foo"], "--versus-env 'foo': expected NAME=VALUE")])
def test_train_step_bench_refuses_a_versus_without_equals_in_one_line(argv, said, capsys):
    """`--versus foo` (no `=`) is one line and status 2, not a traceback."""
    from bench import train_step
    with pytest.raises(SystemExit) as exit_:
        train_step.parse_args(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and said in err


def test_fid_bench_refuses_a_versus_env_without_equals_in_one_line(capsys):
    """bench/fid.py `--versus-env foo` (no `=`): one line and status 2, not a traceback."""
    from bench import fid as fid_bench
    with pytest.raises(SystemExit) as exit_:
        fid_bench.parse_args(["--versus-env", "foo"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1
    assert "--versus-env 'foo': expected NAME=VALUE" in err
