"""What the benchmarks share: the machine they ran on, its dense-matmul ceiling, and FLOP
counts read from a Keras model's layers.

A speed means little on a shared machine whose CPU kind varies (AVX2 only, or AVX-512 with
bfloat16 instructions: 2-3x apart), so each benchmark times, in the same run, a large
`tf.matmul` in its own dtype and states every pass as GFLOP/s and as a share of that figure.

FLOP convention (`forward_flops`, `gan_step_flops`): 2 FLOPs per multiply-add, counted for
the layers that multiply (Dense, Conv2D, Conv2DTranspose, and any layer with a 4-d conv
kernel, such as frechet.inception's ConvBN); batch norm, activations, bias adds, pooling
and the optimiser's updates are elementwise and left out (a few percent of the total here).
  Dense            positions * in * out           (positions: 1 for a flat input)
  Conv2D           H_out * W_out * k_h * k_w * C_in * C_out    (padding counted)
  Conv2DTranspose  H_in * W_in * k_h * k_w * C_in * C_out
A differentiated pass costs forward 1x + the gradient w.r.t. the layer's input 1x + the
gradient w.r.t. its weights 1x = 3x, except that the first layer's input gradient is not
computed when the network's input is not differentiated (z for G; the images for D in D's
update): the step is a tf.function, and TensorFlow prunes gradients that nothing uses.
"""
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.serve import stopwatch  # noqa: E402  (the path above: the repo's packages)
from common.machine import RELEVANT_FLAGS, cpu_flags, cpu_model  # noqa: E402,F401

def onednn_enabled():
    """Whether TensorFlow's oneDNN kernels are on in this process. On by default only on CPUs
    with AVX-512 VNNI/BF16 or AMX; TF_ENABLE_ONEDNN_OPTS=0/1 overrides. None: unknown."""
    try:
        from tensorflow.python.util import _pywrap_util_port
        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return None


def device_name():
    """The GPU's name, or the CPU's model and core count."""
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"GPU: {details.get('device_name', gpus[0].name)}"
    return f"CPU: {cpu_model()}, {os.cpu_count()} cores"


def machine_info():
    """The machine as the JSON line records it: CPU model, cores, the relevant flags,
    TensorFlow's version and whether oneDNN is on."""
    import tensorflow as tf
    flags = cpu_flags()
    return {"device": device_name(), "cpu": cpu_model(), "cores": os.cpu_count(),
            "flags": {flag: flag in flags for flag in RELEVANT_FLAGS},
            "tf": tf.__version__, "onednn": onednn_enabled(),
            "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS")}


def compute_dtype(mixed_precision):
    """The dtype the layers multiply in under config.mixed_precision (False: float32)."""
    return mixed_precision or "float32"


def matmul_timer(dtype="float32", n=4096):
    """A callable that runs one n x n by n x n `tf.matmul` in `dtype` and returns its
    seconds (2 n^3 FLOPs a call); warmed up once here."""
    import tensorflow as tf
    a = tf.cast(tf.random.stateless_uniform((n, n), seed=(1, 2)), dtype)
    b = tf.cast(tf.random.stateless_uniform((n, n), seed=(3, 4)), dtype)

    def run():
        tf.matmul(a, b)[0, 0].numpy()   # wait for the result (a GPU's eager ops are async)
    run()
    return lambda: stopwatch(run)


def ceiling_from(seconds, dtype="float32", n=4096):
    """The ceiling record of matmuls timed `seconds`: GFLOP/s of their median, and range."""
    speeds = [2 * n ** 3 / t / 1e9 for t in seconds]
    return {"dtype": dtype, "n": n, "repeats": len(seconds),
            "gflops": round(statistics.median(speeds), 1),
            "gflops_range": [round(min(speeds), 1), round(max(speeds), 1)]}


def describe_ceiling(ceiling):
    low, high = ceiling["gflops_range"]
    return (f"tf.matmul {ceiling['n']}x{ceiling['n']} {ceiling['dtype']}: "
            f"{ceiling['gflops']:.1f} GFLOP/s (median of {ceiling['repeats']} after a warm-up; "
            f"{low:.0f}-{high:.0f}): the ceiling the passes below are measured against")


# ------------------------------------------------------------------ FLOPs from the layers
def layer_flops(layer):
    """FLOPs (2 per multiply-add) of one image through `layer`; 0 for a layer that does not
    multiply (see the module docstring). Needs a built functional model with fixed H, W."""
    import keras
    if isinstance(layer, keras.Model):
        return forward_flops(layer)
    kernel = getattr(layer, "kernel", None)
    if kernel is None:
        return 0
    k = tuple(int(v) for v in kernel.shape)
    if len(k) == 2:                                   # Dense, on every position of its input
        positions = _product(layer.input.shape[1:-1], layer)
        return 2 * positions * k[0] * k[1]
    if len(k) != 4:
        raise ValueError(f"layer '{layer.name}': no FLOP rule for a kernel of shape {k}")
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise ValueError(f"layer '{layer.name}': FLOPs are counted for channels_last only")
    # A conv's kernel is (k_h, k_w, C_in, C_out), a transposed conv's (k_h, k_w, C_out, C_in):
    # the product is k_h * k_w * C_in * C_out either way. A conv visits each output pixel,
    # a transposed conv each input pixel.
    grid = layer.input if isinstance(layer, keras.layers.Conv2DTranspose) else layer.output
    return 2 * _product(grid.shape[1:3], layer) * _product(k, layer)


def _product(dims, layer):
    out = 1
    for d in dims:
        if d is None:
            raise ValueError(f"layer '{layer.name}': shape unknown ({tuple(dims)}); build the "
                             "model with a fixed image size to count its FLOPs")
        out *= int(d)
    return out


def forward_flops(model):
    """FLOPs of one image's forward pass through `model`."""
    return sum(layer_flops(layer) for layer in model.layers)


def first_layer_flops(model):
    """FLOPs of the first layer that multiplies: the one whose input gradient is skipped when
    the network's input is not differentiated. The networks here are chains, so it is the
    only multiplying layer fed (through reshapes and concatenations) by the input."""
    return next((f for f in map(layer_flops, model.layers) if f), 0)


def gan_step_flops(model, config):
    """FLOPs per image of one training step of learning.optimizer: one D update, then
    `g_updates_per_step` G updates (d_separate_updates splits D's update into a fake and a
    real half, the same work). With G, D the forward FLOPs and G1, D1 their first layers':
      D update  G forward (not differentiated) + 2 x D forward/backward (real and fake),
                D's input gradient not needed:          G + 2 (3 D - D1)
      G update  G and D forward/backward, D's input gradient flowing on into G, z's not:
                                                        3 G - G1 + 3 D
    Returns the parts and the `step` (the work done), all in FLOPs per image."""
    g, d = forward_flops(model.generator), forward_flops(model.discriminator)
    d_update = g + 2 * (3 * d - first_layer_flops(model.discriminator))
    g_update = 3 * g - first_layer_flops(model.generator) + 3 * d
    step = d_update + config.g_updates_per_step * g_update
    return {"G_forward": g, "D_forward": d, "D_update": d_update, "G_update": g_update,
            "step": step}
