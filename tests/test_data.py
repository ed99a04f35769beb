"""Tests for datasets/data.py: next_batch's exact order, read_data's conversions, MNIST."""
import gzip
import json
import os
import struct
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from common.errors import UserError
from common.images import IMAGE_EXTS, list_images
from datasets.data import Dataset, read_data, read_mnist


# ----------------------------------------------------------------------------------------
# Dataset.next_batch
# ----------------------------------------------------------------------------------------

def index_images(n):
    """n 1x1 RGB images whose pixel value is their index."""
    return np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1).repeat(3, axis=3)


def batch_indices(batch):
    """Invert x/127.5 - 1 back to the pixel value, i.e. the index."""
    return np.rint((batch[:, 0, 0, 0] + 1.0) * 127.5).astype(int).tolist()


def test_next_batch_exact_order_across_epoch_ends():
    seed = 1234
    ds = Dataset(index_images(10), seed=seed)
    got = [batch_indices(ds.next_batch(4)) for _ in range(6)]

    # The same shuffles, by hand: in place on the current order, first at the start and
    # then each time an epoch ends.
    rng = np.random.default_rng(seed)
    order = np.arange(10)
    rng.shuffle(order)
    p1 = order.tolist()
    rng.shuffle(order)
    p2 = order.tolist()
    rng.shuffle(order)
    p3 = order.tolist()
    expected = [p1[0:4], p1[4:8],
                p1[8:10] + p2[0:2],  # crosses the end: rest of the old order, then the new
                p2[2:6], p2[6:10],   # ends exactly at the epoch's end: no wrap yet
                p3[0:4]]             # the next call starts the new order
    assert got == expected
    assert p1 != p2 != p3
    assert sorted(p1[0:8] + got[2][:2]) == list(range(10))  # epoch 1 saw each image once
    assert sorted(got[2][2:] + got[3] + got[4]) == list(range(10))  # and so did epoch 2
    assert ds.epochs_completed == 2


def test_epochs_completed_counts_crossings():
    ds = Dataset(index_images(10), seed=0)
    counts = []
    for _ in range(5):
        ds.next_batch(4)
        counts.append(ds.epochs_completed)
    assert counts == [0, 0, 1, 1, 1]


def test_next_batch_without_shuffle_is_in_order_and_wraps():
    ds = Dataset(index_images(10), seed=0)
    got = [batch_indices(ds.next_batch(4, shuffle=False)) for _ in range(4)]
    assert got == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 1], [2, 3, 4, 5]]


def test_next_batch_scales_uint8_to_minus_one_one():
    images = np.zeros((2, 2, 2, 3), dtype=np.uint8)
    images[1] = 255
    images[0, 0, 0, 0] = 51  # 51 / 127.5 - 1 = -0.6
    batch = Dataset(images).next_batch(2, shuffle=False)
    assert batch.dtype == np.float32
    assert batch[0, 0, 0, 0] == pytest.approx(-0.6)
    assert batch[0, 1, 1, 2] == -1.0
    assert np.all(batch[1] == 1.0)


def test_labels_follow_their_images():
    labels = np.arange(10) * 10 + 7
    ds = Dataset(index_images(10), labels=labels, seed=3)
    for _ in range(7):  # several epoch crossings
        images, batch_labels = ds.next_batch(3)
        assert batch_labels.tolist() == [i * 10 + 7 for i in batch_indices(images)]
    assert ds.labels is labels


def test_state_round_trip_through_json_continues_identically():
    ds = Dataset(index_images(10), seed=7)
    for _ in range(2):
        ds.next_batch(4)
    state = json.loads(json.dumps(ds.get_state()))  # must be plain lists and ints
    later = [batch_indices(ds.next_batch(4)) for _ in range(8)]

    resumed = Dataset(index_images(10), seed=999)  # its own seed is overridden
    resumed.set_state(state)
    assert [batch_indices(resumed.next_batch(4)) for _ in range(8)] == later
    assert resumed.epochs_completed == ds.epochs_completed


def test_set_state_from_another_dataset_size_is_refused():
    state = Dataset(index_images(10), seed=0).get_state()
    with pytest.raises(UserError, match='10 examples'):
        Dataset(index_images(12), seed=0).set_state(state)


def test_same_seed_same_order_different_seed_different():
    def order(seed):
        ds = Dataset(index_images(100), seed=seed)
        return [batch_indices(ds.next_batch(30)) for _ in range(5)]
    assert order(5) == order(5)
    assert order(5) != order(6)


def test_batch_larger_than_dataset_is_an_error():
    ds = Dataset(index_images(10))
    with pytest.raises(UserError, match='batch_size 11'):
        ds.next_batch(11)


def test_float_images_are_passed_through():
    images = np.linspace(-1, 1, 8, dtype=np.float32).reshape(8, 1, 1, 1)
    batch = Dataset(images).next_batch(8, shuffle=False)
    assert batch.dtype == np.float32
    np.testing.assert_array_equal(batch, images)


# ----------------------------------------------------------------------------------------
# read_data
# ----------------------------------------------------------------------------------------

def save(path, array, **kwargs):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)


def solid(value, size=(8, 8)):
    return np.full(size + (3,), value, dtype=np.uint8)


def write_png(path, array, bit_depth, colour_type):
    """A minimal PNG writer, for the 16-bit colour files PIL cannot write."""
    h, w = array.shape[:2]
    dtype = '>u2' if bit_depth == 16 else 'u1'
    raw = b''.join(b'\x00' + array[y].astype(dtype).tobytes() for y in range(h))

    def chunk(kind, data):
        return (struct.pack('>I', len(data)) + kind + data
                + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff))
    header = struct.pack('>IIBBBBB', w, h, bit_depth, colour_type, 0, 0, 0)
    with open(path, 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header)
                + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))


@pytest.fixture
def ffhq_like(tmp_path):
    """Files in subfolders, created in reverse of sorted order, each a solid grey level."""
    root = tmp_path / 'thumbs'
    files = ['01000/01000.png', '00000/00999.PNG', '00000/00001.jpg', '00000/00000.bmp']
    for i, rel in enumerate(files):
        save(str(root / rel), solid(200 - 40 * i, (12, 12)), **(
            {'quality': 100} if rel.endswith('.jpg') else {}))
    (root / '00000' / 'LICENSE.txt').write_text('not an image')
    return root


def test_list_images_is_recursive_sorted_and_case_insensitive(ffhq_like):
    rel = [os.path.relpath(p, ffhq_like).replace(os.sep, '/') for p in list_images(ffhq_like)]
    assert rel == ['00000/00000.bmp', '00000/00001.jpg', '00000/00999.PNG', '01000/01000.png']
    assert IMAGE_EXTS == ('.png', '.jpg', '.jpeg', '.bmp')


@pytest.mark.parametrize('workers', [1, 2])
def test_read_data_follows_sorted_order(ffhq_like, workers):
    images = read_data(str(ffhq_like), None, num_workers=workers, verbose=False)
    assert images.shape == (4, 12, 12, 3) and images.dtype == np.uint8
    levels = images.reshape(4, -1).astype(int)
    # created as 200, 160, 120, 80 in reverse sorted order; the JPEG may be off by a level
    np.testing.assert_allclose(levels.mean(axis=1), [80, 120, 160, 200], atol=2)


def test_read_data_max_images(ffhq_like):
    assert len(read_data(str(ffhq_like), (4, 4), max_images=2, verbose=False)) == 2


def test_crop_and_resize_shape_is_height_width(tmp_path):
    for i in range(3):
        save(str(tmp_path / f'{i}.png'), solid(i, (40, 50)))
    images = read_data(str(tmp_path), image_size=(24, 16), crop_size=30, verbose=False)
    assert images.shape == (3, 16, 24, 3)  # image_size is (width, height)
    assert images.dtype == np.uint8


def test_centre_crop_keeps_the_centre_only(tmp_path):
    # 60 wide, 40 high: red border, a blue 20x20 square in the middle.
    image = np.zeros((40, 60, 3), dtype=np.uint8)
    image[..., 0] = 255
    image[10:30, 20:40] = (0, 0, 255)
    save(str(tmp_path / 'a.png'), image)
    cropped = read_data(str(tmp_path), None, crop_size=20, verbose=False)
    assert cropped.shape == (1, 20, 20, 3)
    assert np.all(cropped[0] == (0, 0, 255))
    # The resize must not blend in pixels from outside the crop.
    resized = read_data(str(tmp_path), (10, 10), crop_size=20, verbose=False)
    assert np.all(resized[0] == (0, 0, 255))
    # A crop two pixels wider shows one red pixel on each side.
    wider = read_data(str(tmp_path), None, crop_size=22, verbose=False)[0]
    assert np.all(wider[1:-1, 1:-1] == (0, 0, 255))
    assert np.all(wider[0] == (255, 0, 0)) and np.all(wider[:, -1] == (255, 0, 0))


def test_resize_is_anti_aliased(tmp_path):
    # A one-pixel checkerboard shrunk 96 -> 64 averages to grey; a resize that only
    # samples (no anti-aliasing) keeps stripes of black and white.
    board = (np.indices((96, 96)).sum(axis=0) % 2 * 255).astype(np.uint8)
    save(str(tmp_path / 'board.png'), np.stack([board] * 3, axis=-1))
    out = read_data(str(tmp_path), (64, 64), verbose=False)[0].astype(float)
    assert abs(out.mean() - 127.5) < 2
    assert out.std() < 5


def test_resize_is_close_to_skimage_on_a_smooth_image(tmp_path):
    from skimage.transform import resize
    low = np.random.default_rng(0).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(low).resize((128, 128), Image.Resampling.BICUBIC))
    save(str(tmp_path / 's.png'), smooth)
    ours = read_data(str(tmp_path), (64, 64), 96, verbose=False)[0].astype(float)
    ref = resize(smooth[16:112, 16:112], (64, 64), anti_aliasing=True, preserve_range=True)
    assert np.abs(ours - ref).mean() < 1.5


def test_colour_modes_become_rgb(tmp_path):
    gray = np.full((6, 6), 90, dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / 'a_gray.png')                        # L
    Image.fromarray(np.dstack([gray, np.full_like(gray, 10)])).save(tmp_path / 'b_la.png')
    rgba = np.zeros((6, 6, 4), dtype=np.uint8)
    rgba[...] = (10, 20, 30, 0)                                                  # transparent
    Image.fromarray(rgba).save(tmp_path / 'c_rgba.png')
    palette = Image.new('P', (6, 6))
    palette.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    palette.paste(1, (0, 0, 6, 6))
    palette.save(tmp_path / 'd_palette.png')
    gray16 = np.full((6, 6), 65535, dtype=np.uint16)
    gray16[0, :3] = (0, 32896, 257 * 100)
    Image.fromarray(gray16).save(tmp_path / 'e_gray16.png')                    # I;16
    rgb16 = np.zeros((6, 6, 3), dtype=np.uint16)
    rgb16[...] = (65535, 257 * 128, 0)
    write_png(str(tmp_path / 'f_rgb16.png'), rgb16, 16, 2)
    rgba16 = np.zeros((6, 6, 4), dtype=np.uint16)
    rgba16[...] = (257 * 7, 65535, 257 * 250, 0)
    write_png(str(tmp_path / 'g_rgba16.png'), rgba16, 16, 6)

    images = read_data(str(tmp_path), None, verbose=False)
    assert images.shape == (7, 6, 6, 3) and images.dtype == np.uint8
    gray, la, rgba, pal, g16, c16, ca16 = images
    assert np.all(gray == 90) and np.all(la == 90)
    assert np.all(rgba == (10, 20, 30))  # alpha dropped, colour kept
    assert np.all(pal == (200, 100, 50))
    assert g16[0, :3, 0].tolist() == [0, 128, 100] and np.all(g16[1:] == 255)
    assert np.all(g16[..., 0] == g16[..., 2])
    assert np.all(c16 == (255, 128, 0))
    assert np.all(ca16 == (7, 255, 250))


def test_corrupt_and_truncated_files_are_skipped_with_one_warning(tmp_path):
    for i in range(4):
        save(str(tmp_path / f'good{i}.png'), solid(50 * i + 10, (16, 16)))
    (tmp_path / 'bad0.png').write_bytes(b'this is not a png')
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    save(str(tmp_path / 'full.png'), noise)
    data = (tmp_path / 'full.png').read_bytes()
    (tmp_path / 'full.png').unlink()
    (tmp_path / 'bad1.png').write_bytes(data[:len(data) // 2])  # truncated PNG
    save(str(tmp_path / 'full.jpg'), noise, quality=95)
    data = (tmp_path / 'full.jpg').read_bytes()
    (tmp_path / 'full.jpg').unlink()
    (tmp_path / 'bad2.jpg').write_bytes(data[:len(data) // 2])  # truncated JPEG

    with pytest.warns(UserWarning) as record:
        images = read_data(str(tmp_path), (8, 8), num_workers=2, verbose=False)
    assert len(record) == 1
    message = str(record[0].message)
    assert 'skipped 3 of 7' in message
    assert all(name in message for name in ('bad0.png', 'bad1.png', 'bad2.jpg'))
    assert images.shape == (4, 8, 8, 3)
    assert images[:, 4, 4, 0].tolist() == [10, 60, 110, 160]  # the good ones, in order


def test_all_corrupt_is_a_user_error(tmp_path):
    for i in range(3):
        (tmp_path / f'{i}.png').write_bytes(b'\x89PNG garbage')
    with pytest.raises(UserError, match='none of the 3 images'):
        read_data(str(tmp_path), (8, 8), verbose=False)
    with pytest.raises(UserError, match='none of the 3 images'):
        read_data(str(tmp_path), None, verbose=False)


def test_missing_and_empty_folders_are_user_errors(tmp_path):
    with pytest.raises(UserError, match='does not exist'):
        read_data(str(tmp_path / 'nope'), (8, 8), verbose=False)
    (tmp_path / 'readme.txt').write_text('no images here')
    with pytest.raises(UserError) as info:
        read_data(str(tmp_path), (8, 8), verbose=False)
    assert all(ext in str(info.value) for ext in IMAGE_EXTS)
    assert str(tmp_path) in str(info.value)


def test_image_smaller_than_crop_is_a_user_error(tmp_path):
    save(str(tmp_path / 'big.png'), solid(1, (128, 128)))
    save(str(tmp_path / 'small.png'), solid(1, (80, 100)))
    with pytest.raises(UserError, match=r"small\.png' is 100x80, smaller than crop_size 96"):
        read_data(str(tmp_path), (64, 64), crop_size=96, verbose=False)


def test_unequal_sizes_without_image_size_is_a_user_error(tmp_path):
    save(str(tmp_path / 'a.png'), solid(1, (8, 8)))
    save(str(tmp_path / 'b.png'), solid(1, (8, 9)))
    with pytest.raises(UserError, match='pass image_size'):
        read_data(str(tmp_path), None, verbose=False)


# ----------------------------------------------------------------------------------------
# MNIST
# ----------------------------------------------------------------------------------------

def test_read_mnist_from_the_installed_package():
    imported_before = 'pureml' in sys.modules
    x_train, y_train = read_mnist()
    x_test, y_test = read_mnist(split='test')
    assert x_train.shape == (60000, 28, 28, 1) and x_test.shape == (10000, 28, 28, 1)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.int64
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert set(np.unique(y_train)) == set(range(10))
    assert y_train[:5].tolist() == [5, 0, 4, 1, 9]  # MNIST's well-known first digits
    assert y_test[:5].tolist() == [7, 2, 1, 0, 4]
    assert x_train.max() == 255 and x_train[0, 0, 0, 0] == 0
    if not imported_before:
        assert 'pureml' not in sys.modules  # found the file without the heavy import


def test_read_mnist_from_a_keras_npz(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {'x_train': rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
              'y_train': np.array([3, 1, 4, 1, 5], dtype=np.uint8),
              'x_test': rng.integers(0, 256, (2, 28, 28), dtype=np.uint8),
              'y_test': np.array([9, 2], dtype=np.uint8)}
    np.savez(tmp_path / 'mnist.npz', **arrays)
    x, y = read_mnist(str(tmp_path / 'mnist.npz'), split='test')
    assert x.shape == (2, 28, 28, 1) and y.dtype == np.int64
    np.testing.assert_array_equal(x[..., 0], arrays['x_test'])
    assert y.tolist() == [9, 2]


def test_read_mnist_from_idx_files(tmp_path):
    images = np.arange(3 * 28 * 28, dtype=np.uint32).reshape(3, 28, 28).astype(np.uint8)
    labels = np.array([7, 0, 3], dtype=np.uint8)
    with gzip.open(tmp_path / 'train-images-idx3-ubyte.gz', 'wb') as f:
        f.write(struct.pack('>4B3I', 0, 0, 8, 3, 3, 28, 28) + images.tobytes())
    with open(tmp_path / 'train-labels-idx1-ubyte', 'wb') as f:
        f.write(struct.pack('>4BI', 0, 0, 8, 1, 3) + labels.tobytes())
    x, y = read_mnist(str(tmp_path))
    np.testing.assert_array_equal(x[..., 0], images)
    assert y.tolist() == [7, 0, 3]
    with pytest.raises(UserError, match='t10k-images'):
        read_mnist(str(tmp_path), split='test')


def test_read_mnist_bad_arguments(tmp_path):
    with pytest.raises(UserError, match="'train' or 'test'"):
        read_mnist(split='validation')
    with pytest.raises(UserError, match='does not exist'):
        read_mnist(str(tmp_path / 'missing.npz'))
