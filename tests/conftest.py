"""Shared test setup: quiet TensorFlow, the repository on sys.path, small configs."""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def tiny_config():
    """A DCGAN small enough to train in seconds on 16x16 images."""
    from learning.config import Config
    return Config(model="dcgan", dataset="folder", image_size=(16, 16), batch_size=8,
                  num_epochs=2, z_dim=8, G_FC_layer_channel=16, G_channel=8, D_channel=8,
                  sample_H=2, sample_W=3, eval_every=0, batch_size_eval=8,
                  eval_sample_size=8, keep_checkpoints=2)


@pytest.fixture
def image_folder(tmp_path):
    """48 small RGB images in two subfolders, FFHQ-style."""
    from PIL import Image
    rng = np.random.default_rng(0)
    for i in range(48):
        sub = tmp_path / "images" / f"{i // 24 * 1000:05d}"
        sub.mkdir(parents=True, exist_ok=True)
        yy, xx = np.mgrid[:24, :24]
        img = np.stack([(xx * 10 + i) % 256, (yy * 10) % 256,
                        np.full((24, 24), rng.integers(256))], -1).astype(np.uint8)
        Image.fromarray(img).save(sub / f"{i:05d}.png")
    return str(tmp_path / "images")
