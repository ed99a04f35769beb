import numpy as np
import pytest

from common.errors import UserError
from learning import figures, latent, records


def test_interpolate_includes_both_ends():
    v1, v2 = np.zeros(4), np.full(4, 10.0)
    z = latent.interpolate(v1, v2, 9)
    assert z.shape == (11, 4)
    np.testing.assert_allclose(z[0], v1)
    np.testing.assert_allclose(z[-1], v2)
    np.testing.assert_allclose(z[:, 0], np.arange(11), atol=1e-5)


def test_image_grid_places_images_row_by_row():
    imgs = np.stack([np.full((2, 3, 1), v) for v in np.linspace(-1, 1, 6)]).astype(np.float32)
    grid = figures.image_grid(imgs, 2, 3, pad=1)
    assert grid.shape == (2 * 3 - 1, 3 * 4 - 1)
    assert grid[0, 0] == 0 and grid[0, 4] == round((-1 + 0.4 + 1) * 127.5)
    assert grid[3, 0] == round((0.2 + 1) * 127.5) and grid[-1, -1] == 255
    assert grid[2, 0] == 255  # the gap between rows is white
    with pytest.raises(ValueError):
        figures.image_grid(imgs, 2, 2)


def test_to_uint8_handles_range_and_nan():
    out = figures.to_uint8(np.array([-1.0, 0.0, 1.0, 2.0, np.nan]))
    assert out.tolist() == [0, 128, 255, 255, 0]


def test_z0_sweep_varies_only_z0():
    z = np.random.default_rng(0).standard_normal(100).astype(np.float32)
    sweep = latent.z0_sweep(z, 100)
    assert sweep.shape == (100, 100)
    np.testing.assert_allclose(sweep[:, 0], np.linspace(-1, 1, 100), atol=1e-6)
    np.testing.assert_array_equal(sweep[:, 1:], np.tile(z[1:], (100, 1)))


def test_z0_sweep_of_fresh_z_keeps_each_images_own_rest():
    """Post 001's sweep: a new z per image, z[0] set to -1 + 0.02 i (here linspace)."""
    z = np.random.default_rng(1).standard_normal((100, 100)).astype(np.float32)
    sweep = latent.z0_sweep(z, 100)
    np.testing.assert_allclose(sweep[:, 0], np.linspace(-1, 1, 100), atol=1e-6)
    np.testing.assert_array_equal(sweep[:, 1:], z[:, 1:])
    assert not np.array_equal(sweep[0, 1:], sweep[1, 1:])
    assert z[0, 0] != sweep[0, 0]            # the caller's z is not changed in place


def test_arithmetic_uses_means_of_three():
    z = np.arange(30, dtype=np.float32).reshape(10, 3)
    groups = [[0, 1, 2], [3, 4, 5], [6, 7, 9]]
    expected = z[[0, 1, 2]].mean(0) - z[[3, 4, 5]].mean(0) + z[[6, 7, 9]].mean(0)
    np.testing.assert_allclose(latent.arithmetic_z(z, groups), expected)
    # Not the arithmetic of single vectors.
    assert not np.allclose(latent.arithmetic_z(z, groups), z[0] - z[3] + z[6])


def test_parse_groups():
    rng = np.random.default_rng(0)
    assert latent.parse_groups("1,2,3;4,5,6;7,8,9", 20, rng) == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    random = latent.parse_groups("random", 20, rng)
    assert len({i for g in random for i in g}) == 9
    small = latent.parse_groups("random", 6, rng)     # a 2 x 3 grid still works
    assert all(0 <= i < 6 for g in small for i in g)
    for bad in ("1,2;3,4,5;6,7,8", "1,2,3;4,5,6", "0,1,2;3,4,5;6,7,8", "a,b,c;1,2,3;4,5,6"):
        with pytest.raises(UserError, match="three triples"):
            latent.parse_groups(bad, 20, rng)


def test_vector_arithmetic_grid_has_the_result_last():
    class Echo:  # a "generator" that returns its z as a 1x1 image, to see the layout
        def generate(self, z):
            return np.asarray(z)[:, None, None, :1]
    z = np.arange(20, dtype=np.float32)[:, None].repeat(2, 1)
    groups = [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    out = latent.vector_arithmetic(Echo(), z, groups)[:, 0, 0, 0]
    assert out.tolist() == [0, 1, 2, 1, 3, 4, 5, 4, 6, 7, 8, 7, 1, 4, 7, 1 - 4 + 7]


def test_jsonl_round_trip_and_half_line(tmp_path):
    p = str(tmp_path / "m.jsonl")
    records.append_jsonl(p, {"epoch": 1})
    records.append_jsonl(p, [{"epoch": 2}, {"epoch": 3}])
    with open(p, "a") as f:
        f.write('{"epoch": 4, "fi')
    assert [r["epoch"] for r in records.read_jsonl(p)] == [1, 2, 3]


def test_learning_curve_files(tmp_path):
    losses = [{"step": i, "d_loss": 1.0 / i, "g_loss": 2.0} for i in range(1, 20)]
    metrics = [{"epoch": 1, "fid": 50.0, "n_samples": 100}, {"epoch": 2, "fid": None}]
    figures.plot_learning_curve(losses, metrics, str(tmp_path))
    assert (tmp_path / "learning_curve.png").stat().st_size > 1000
    assert (tmp_path / "learning_curve.svg").exists()


def test_latent_walk_gif_of_grayscale_model(tmp_path):
    from learning.config import Config
    from models.nn import build_model
    model = build_model(Config(model="fc_gan", image_size=(28, 28), z_dim=4,
                               G_hidden=(8,), D_hidden=(8,)), (28, 28, 1))
    frames = latent.latent_walk(model, np.random.default_rng(0).standard_normal((3, 4)), 6)
    assert len(frames) == 3 * 5 and frames[0].shape == (28, 28, 1)
    path = figures.make_gif(frames, str(tmp_path / "walk.gif"))
    import imageio.v2 as imageio
    assert len(imageio.mimread(path)) == 15


def test_write_atomic_replaces_whole_or_not_at_all(tmp_path):
    import os
    from common.files import write_atomic, write_json_atomic
    path = tmp_path / "sub" / "a.json"
    write_json_atomic(path, {"a": 1})                       # the folder is created
    assert path.read_text() == '{\n  "a": 1\n}\n'
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask     # not mkstemp's 0600

    def half_then_crash(f):
        f.write(b"half")
        raise RuntimeError("crash")
    with pytest.raises(RuntimeError):
        write_atomic(path, half_then_crash)
    assert path.read_text() == '{\n  "a": 1\n}\n'             # old content, no temporary left
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.json"]
    # repair_jsonl goes through it too: a rewrite keeps only the records asked for.
    log = tmp_path / "m.jsonl"
    log.write_text('{"epoch": 1}\n{"epoch": 2}\n{"epo')
    assert records.repair_jsonl(str(log), lambda r: r["epoch"] < 2) == [{"epoch": 1}]
    assert log.read_text() == '{"epoch": 1}\n'


def test_learning_curve_draws_every_fid_point_and_names_the_sample_count(tmp_path,
                                                                         monkeypatch):
    """The post's lower panel: one point per evaluation (epochs without one are skipped),
    labelled with how many samples each FID is of (FIDs of other counts do not compare)."""
    import matplotlib.pyplot as plt
    drawn = []
    monkeypatch.setattr(plt, "close", lambda fig: drawn.append(fig))
    losses = [{"step": s, "d_loss": 1.0, "g_loss": 2.0} for s in range(1, 11)]
    metrics = [{"epoch": e, "fid": (50.0 / e if e % 2 == 0 else None),
                "n_samples": (2000 if e % 2 == 0 else None)} for e in range(1, 11)]
    figures.plot_learning_curve(losses, metrics, str(tmp_path))
    bottom = drawn[0].axes[1]
    line = bottom.lines[0]
    assert list(line.get_xdata()) == [2, 4, 6, 8, 10]
    np.testing.assert_allclose(line.get_ydata(), [25.0, 12.5, 50 / 6, 6.25, 5.0])
    assert line.get_label() == "FID (2000 samples)"
    assert (tmp_path / "learning_curve.png").exists()
    # D's mean outputs of every epoch, on the right-hand axis, beside the 1/2 line.
    for m in metrics:
        m.update(D_real=0.9 - 0.03 * m["epoch"], D_fake=0.1 + 0.03 * m["epoch"])
    figures.plot_learning_curve(losses, metrics, str(tmp_path))
    right = drawn[1].axes[2]
    labels = {l.get_label(): l for l in right.lines}
    assert list(labels["D(x), real"].get_xdata()) == list(range(1, 11))
    np.testing.assert_allclose(labels["D(G(z)), generated"].get_ydata(),
                               [0.1 + 0.03 * e for e in range(1, 11)])


def test_a_write_on_a_full_disk_names_the_file_and_leaves_the_old_one(tmp_path):
    """ENOSPC while writing (a stand-in for a full disk) is a WriteError that names the
    file, with the old content and no temporary file left; TensorFlow's message for it
    (TensorBoard's writer) reads the same."""
    import errno
    import os
    from common.files import WriteError, full_disk, write_atomic
    path = tmp_path / "learning_curve.png"
    path.write_bytes(b"old")

    def disk_full(f):
        f.write(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    with pytest.raises(WriteError) as e:
        write_atomic(path, disk_full)
    assert str(e.value) == f"cannot write '{path}' (No space left on device)"
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["learning_curve.png"]

    log = tmp_path / "losses.jsonl"
    log.mkdir()                                     # appending to it fails: a folder
    with pytest.raises(WriteError, match=f"cannot write '{log}' \\(Is a directory\\)"):
        records.append_jsonl(str(log), {"step": 1})

    events = "/run/logs/events.out.tfevents.1.v2"
    error = full_disk(RuntimeError(
        "{{function_node __wrapped__WriteSummary_device_/job:localhost}} "
        f"{events}; No space left on device\n\tFailed to flush 11 events"))
    assert (error.path, error.reason) == (events, "No space left on device")
    assert full_disk(RuntimeError("OOM when allocating tensor with shape [64]")) is None


def test_zoom_draws_each_pixel_as_a_block(tmp_path):
    """--zoom K: every pixel a K x K block of its own value, no value the grid lacks; the
    saved grid is the unzoomed one with each pixel repeated."""
    import imageio.v2 as imageio
    image = np.arange(6, dtype=np.uint8).reshape(2, 3)
    big = figures.zoom(image, 2)
    assert big.shape == (4, 6) and big[1, 3] == image[0, 1] and big[3, 5] == image[1, 2]
    assert np.array_equal(big[::2, ::2], image) and set(big.ravel()) == set(image.ravel())
    samples = np.random.default_rng(0).uniform(-1, 1, (6, 5, 4, 1)).astype(np.float32)
    one = imageio.imread(figures.save_sample_images(str(tmp_path), "one", samples, 2, 3))
    three = imageio.imread(figures.save_sample_images(str(tmp_path), "three", samples, 2, 3, scale=3))
    assert np.array_equal(three, np.repeat(np.repeat(one, 3, axis=0), 3, axis=1))
