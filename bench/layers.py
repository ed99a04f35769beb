"""Where the training step's time goes: each convolution of the tutorial's 64x64 DCGAN timed
alone, forward and forward + backward, in TensorFlow and (with --torch-python) in PyTorch
in the same run; then each batch norm, this project's layer against Keras's.

    python bench/layers.py [--batch-size 64] [--repeats 5] [--torch-python PY]

The layers are read from the model this project builds (`models.nn.DCGAN` with the default
config): G's four 5x5 stride-2 transposed convolutions and D's four 5x5 stride-2
convolutions (the dense layers and batch norm are a few percent of the FLOPs). Each is
timed on random inputs of its own shape: `forward` is y = layer(x); `backward` is the
gradient of sum(y * dy) with respect to x and the kernel, as the step needs it (the
forward pass included). The step runs G forward 3 times and backward twice, D forward 5
times and backward 5 times (1 D + 2 G updates), so
`step_share` weighs each layer's time by those counts.

Batch norm (`models.layers.BatchNormalization`: TensorFlow's fused kernel while training)
is timed forward + backward in training mode (gradients w.r.t. x, gamma and beta) against
`keras.layers.BatchNormalization` on the same input, in turn, --repeats rounds; the step
runs each such pass as often as the network's backward passes.

oneDNN is on unless TF_ENABLE_ONEDNN_OPTS says otherwise, as in train.py.

Human-readable lines, then one JSON line with every layer's milliseconds, the PyTorch ones
where given, and the machine (bench/common.py).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")   # as train.py: the kernels train.py runs

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench.common import layer_flops, machine_info  # noqa: E402
from bench.serve import interleave, stopwatch, timed  # noqa: E402
from learning.config import Config  # noqa: E402
from models.layers import BatchNormalization  # noqa: E402
from models.nn import build_model  # noqa: E402

tf.get_logger().setLevel("ERROR")   # one tf.function per layer is intended, not retracing

# Passes per training step: G forward in the D update and in each of the 2 G updates, G
# backward in each G update; D forward twice in the D update (real, fake) and once per G
# update, backward likewise.
PASSES = {"generator": {"forward": 3, "backward": 2}, "discriminator": {"forward": 5,
                                                                        "backward": 5}}


def conv_specs(model):
    """[(network, name, kind, input shape (H, W, C), filters)] of the model's convolutions."""
    specs = []
    for net in (model.generator, model.discriminator):
        for layer in net.layers:
            if isinstance(layer, (keras.layers.Conv2DTranspose, keras.layers.Conv2D)):
                kind = ("deconv" if isinstance(layer, keras.layers.Conv2DTranspose)
                        else "conv")
                shape = tuple(int(d) for d in layer.input.shape[1:])
                specs.append((net.name, layer.name, kind, shape, layer.filters, layer))
    return specs


def tf_layer_ms(layer, shape, batch_size, repeats):
    x = tf.random.uniform((batch_size,) + shape, -1.0, 1.0, seed=0)
    y_shape = layer.compute_output_shape((batch_size,) + shape)
    dy = tf.random.uniform(y_shape, -1.0, 1.0, seed=1)

    @tf.function
    def forward():
        return layer(x)

    @tf.function
    def backward():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * dy)
        # The loss is returned too: a layer is linear, so its gradients do not need y, and
        # TensorFlow would otherwise prune the forward pass (PyTorch's side runs it).
        return [loss] + tape.gradient(loss, [x, layer.kernel])

    return (timed(lambda: forward().numpy(), repeats),
            timed(lambda: [g.numpy() for g in backward()], repeats))


def batch_norm_rows(model, batch_size, rounds):
    """Per batch norm of the model: training-mode forward + backward ms, ours (fused) and
    Keras's, timed in turn for `rounds` rounds (medians)."""
    rows = []
    for net in (model.generator, model.discriminator):
        for layer in net.layers:
            if not isinstance(layer, keras.layers.BatchNormalization):
                continue
            shape = (batch_size,) + tuple(int(d) for d in layer.input.shape[1:])
            x = tf.random.normal(shape, seed=0)
            dy = tf.random.normal(shape, seed=1)
            timers = {}
            for name, cls in (("ours", BatchNormalization),
                              ("keras", keras.layers.BatchNormalization)):
                norm = cls(momentum=0.9, epsilon=1e-5)
                norm.build(shape)

                @tf.function
                def backward(norm=norm):
                    with tf.GradientTape() as tape:
                        tape.watch(x)
                        loss = tf.reduce_sum(norm(x, training=True) * dy)
                    return tape.gradient(loss, [x, norm.gamma, norm.beta])
                run = (lambda fn=backward: [g.numpy() for g in fn()])
                run()                                        # trace and warm up
                timers[name] = (lambda run=run: stopwatch(run))
            seconds = interleave(timers, rounds)
            ms = {k: statistics.median(v) * 1000 for k, v in seconds.items()}
            rows.append({"network": net.name, "layer": layer.name, "input": list(shape[1:]),
                         "ours_ms": round(ms["ours"], 2), "keras_ms": round(ms["keras"], 2),
                         "step_ms_ours": round(PASSES[net.name]["backward"] * ms["ours"], 1),
                         "step_ms_keras": round(PASSES[net.name]["backward"] * ms["keras"], 1)})
    return rows


def conv_rows(specs, batch_size, repeats, torch_ms):
    """A row per conv layer of `specs`: forward and forward + backward ms, the step's time
    weighted by passes, and PyTorch's beside them where `torch_ms` has the layer. Returns
    the rows and the step's total for each."""
    rows, weighted = [], {"tf": 0.0, "torch": 0.0}
    for net, name, kind, shape, filters, layer in specs:
        fwd, bwd = tf_layer_ms(layer, shape, batch_size, repeats)
        passes = PASSES[net]
        # forward-only passes, then forward + backward ones
        step_ms = (passes["forward"] - passes["backward"]) * fwd + passes["backward"] * bwd
        row = {"network": net, "layer": name, "kind": kind, "input": list(shape),
               "filters": filters,
               "gflop_forward": round(batch_size * layer_flops(layer) / 1e9, 3),
               "tf_forward_ms": round(fwd, 2), "tf_backward_ms": round(bwd, 2),
               "tf_step_ms": round(step_ms, 1)}
        weighted["tf"] += step_ms
        if name in torch_ms:
            t_fwd, t_bwd = torch_ms[name]["forward_ms"], torch_ms[name]["backward_ms"]
            t_step = (passes["forward"] - passes["backward"]) * t_fwd + passes["backward"] * t_bwd
            row.update(torch_forward_ms=round(t_fwd, 2), torch_backward_ms=round(t_bwd, 2),
                       torch_step_ms=round(t_step, 1),
                       forward_vs_torch=round(t_fwd / fwd, 3),
                       backward_vs_torch=round(t_bwd / bwd, 3))
            weighted["torch"] += t_step
        rows.append(row)
    return rows, weighted


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--torch-python", default=None,
                   help="a Python with torch: time the same layers in PyTorch in this run")
    args = p.parse_args()
    config = Config(image_size=(64, 64))
    model = build_model(config, (64, 64, 3))
    specs = conv_specs(model)

    torch_ms = {}
    if args.torch_python:
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_layers.py")
        spec_json = json.dumps([[n, k, list(s), f] for _, n, k, s, f, _ in specs])
        out = subprocess.run([args.torch_python, script, "--batch-size", str(args.batch_size),
                              "--repeats", str(args.repeats), "--specs", spec_json],
                             capture_output=True, text=True, check=True)
        torch_ms = json.loads(out.stdout.strip().splitlines()[-1])["layers"]

    rows, weighted = conv_rows(specs, args.batch_size, args.repeats, torch_ms)
    machine = machine_info()
    print(f"{machine['device']}; flags {machine['flags']}; TensorFlow {tf.__version__}")
    print(f"batch {args.batch_size}; ms per call (median of {args.repeats}); speed vs PyTorch "
          "= PyTorch ms / ours (above 1: ours faster)")
    for r in rows:
        line = (f"{r['network'][:1].upper()} {r['layer']:<16} {r['kind']:<6} "
                f"{'x'.join(map(str, r['input'])):>10} -> {r['filters']:>4}: forward "
                f"{r['tf_forward_ms']:8.1f}  fwd+bwd {r['tf_backward_ms']:8.1f}")
        if "torch_forward_ms" in r:
            line += (f" | PyTorch {r['torch_forward_ms']:8.1f} {r['torch_backward_ms']:8.1f}"
                     f" | speed vs PyTorch {r['forward_vs_torch']:.2f} "
                     f"{r['backward_vs_torch']:.2f}")
        print(line)
    for r in rows:
        r["step_share"] = round(r["tf_step_ms"] / weighted["tf"], 3)
    print(f"convolutions' time in one step, weighted by passes: ours {weighted['tf']:.0f} ms"
          + (f", PyTorch {weighted['torch']:.0f} ms" if torch_ms else ""))
    norms = batch_norm_rows(model, args.batch_size, args.repeats)
    print("batch norm, training mode, forward + backward (ms, median of "
          f"{args.repeats} rounds in turn): ours (TensorFlow's fused kernel) | Keras's")
    for r in norms:
        print(f"{r['network'][:1].upper()} {r['layer']:<16} {'x'.join(map(str, r['input'])):>10}:"
              f" {r['ours_ms']:7.2f} | {r['keras_ms']:7.2f}")
    norm_ours = sum(r["step_ms_ours"] for r in norms)
    norm_keras = sum(r["step_ms_keras"] for r in norms)
    print(f"batch norm's time in one step, weighted by backward passes: ours {norm_ours:.0f} ms,"
          f" Keras's {norm_keras:.0f} ms")
    print(json.dumps({"bench": "layers", "batch_size": args.batch_size, "layers": rows,
                      "batch_norm": norms, "step_batch_norm_ms": round(norm_ours, 1),
                      "step_batch_norm_keras_ms": round(norm_keras, 1),
                      "step_conv_ms": round(weighted["tf"], 1),
                      "torch_step_conv_ms": round(weighted["torch"], 1) if torch_ms else None,
                      "device": machine["device"], "machine": machine}))


if __name__ == "__main__":
    main()
