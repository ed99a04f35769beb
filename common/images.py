"""Image files as every floor reads them: the images under a folder, and one file decoded to
8-bit RGB. The training set (datasets.data) and the FID of a folder (frechet) read them so."""
import os
import struct
import zlib

import numpy as np
from PIL import Image

from common.errors import UserError

IMAGE_EXTS = ('.png', '.jpg', '.jpeg', '.bmp')

# What PIL raises for a corrupt or truncated file (a broken PNG chunk is a SyntaxError).
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, zlib.error, struct.error,
                 Image.DecompressionBombError)


def list_images(data_dir):
    """Every image under `data_dir`, recursively, sorted by path relative to `data_dir`.

    An image is a file whose name ends in one of IMAGE_EXTS, in any letter case.
    """
    if not os.path.isdir(data_dir):
        what = 'is not a folder' if os.path.exists(data_dir) else 'does not exist'
        raise UserError(f"data_dir '{data_dir}' {what}: pass the folder that holds the "
                        f"training images (e.g. FFHQ's thumbnails128x128/)")
    found = []
    for root, dirs, files in os.walk(data_dir):
        for name in files:
            if name.lower().endswith(IMAGE_EXTS):
                rel = os.path.relpath(os.path.join(root, name), data_dir)
                found.append(rel)
    if not found:
        raise UserError(f"data_dir '{data_dir}' has no images (looked for "
                        f"{', '.join(IMAGE_EXTS)}, in subfolders too): point it at the "
                        f"folder of training images")
    # Sort on the path's parts so '00000/x.png' and '00000-extra/x.png' order the same on
    # every OS, whatever the separator.
    found.sort(key=lambda rel: rel.split(os.sep))
    return [os.path.join(data_dir, rel) for rel in found]


def to_rgb(im):
    """A PIL image in any mode as an 8-bit RGB PIL image (alpha dropped)."""
    if im.mode in ('I;16', 'I;16L', 'I;16B', 'I;16N', 'I'):
        # 16-bit grayscale: scale 0..65535 to 0..255 with rounding. PIL's own convert()
        # would clip everything above 255 to white.
        a = np.asarray(im).astype(np.int64).clip(0, 65535)
        im = Image.fromarray(((a * 255 + 32767) // 65535).astype(np.uint8))
    if im.mode != 'RGB':
        # Covers L, 1, P (palette), LA, PA, RGBA, CMYK, YCbCr. PIL reads 16-bit RGB(A)
        # PNGs as 8-bit RGB(A) already (the high byte, so 65535 -> 255).
        im = im.convert('RGB')
    return im


def read_image(path):
    """One image file as it is, uint8 (H, W, 3) RGB (FID of a folder uses its images so)."""
    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(to_rgb(im))
    except DECODE_ERRORS as e:
        raise UserError(f"cannot read image '{path}' ({e}): remove or replace it") from None
