"""FID, KID, precision/recall and density/coverage of Inception features, in NumPy float64.

    compute_statistics(features)     (N, D) features -> (mu, sigma)
    frechet_distance(mu1, sigma1, mu2, sigma2)
    kernel_inception_distance(features_a, features_b)
    precision_recall_density_coverage(real_features, fake_features, k=3)
    feature_metrics(fake, real, metrics)   the metrics besides FID that `metrics` names
"""
import argparse
import warnings

import numpy as np
from scipy import linalg

from common.errors import UserError

# What can be asked for (`score --metrics`, a run's eval_metrics): fid, kid, pr (precision,
# recall), dc (density, coverage).
METRICS = ("fid", "kid", "pr", "dc")


# ---------------------------------------------------------------------------------------------
# Statistics and distances (NumPy, float64)
# ---------------------------------------------------------------------------------------------

def compute_statistics(features):
    """Mean and covariance (unbiased, N - 1) of (N, D) features, in float64.

    Fewer than 2 samples raise UserError. Fewer samples than dimensions warn: the covariance is
    then rank deficient and FID is biased upward; compare FIDs only at equal N.
    """
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {features.shape}")
    n, d = features.shape
    if n < 2:
        raise UserError(f"FID statistics need at least 2 samples, got {n}")
    if not np.isfinite(features).all():
        raise ValueError("features contain NaN or infinity")
    if n < d:
        warnings.warn(f"FID statistics from {n} samples < {d} dimensions: the covariance is rank "
                      f"deficient and FID is biased upward; compare only at equal sample counts",
                      stacklevel=2)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _check_statistics(mu1, sigma1, mu2, sigma2):
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1 = np.atleast_2d(sigma1).astype(np.float64)
    sigma2 = np.atleast_2d(sigma2).astype(np.float64)
    d = mu1.shape[0]
    assert mu1.shape == mu2.shape == (d,), f"means differ in shape: {mu1.shape} vs {mu2.shape}"
    assert sigma1.shape == sigma2.shape == (d, d), (
        f"covariances must be ({d}, {d}), got {sigma1.shape} and {sigma2.shape}")
    for name, value in (("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2), ("sigma2", sigma2)):
        if not np.isfinite(value).all():
            raise ValueError(f"{name} contains NaN or infinity")
    return mu1, sigma1, mu2, sigma2


def _clip_eigenvalues(values, what):
    """Clip rounding noise below zero; a clearly negative eigenvalue means a broken input."""
    scale = max(np.abs(values).max(initial=0.0), np.finfo(np.float64).tiny)
    if values.min(initial=0.0) < -1e-6 * scale:
        warnings.warn(f"{what} has eigenvalue {values.min():.3g} (largest {scale:.3g}): it is not "
                      "positive semi-definite, so the FID below is not trustworthy",
                      RuntimeWarning, stacklevel=3)
    return np.clip(values, 0.0, None)


def _sqrt_factor(sigma):
    """F with F Fᵀ = Σ: Cholesky when Σ is positive definite, else from `eigh` with the
    eigenvalues clipped at zero (a singular Σ, from fewer samples than dimensions)."""
    try:
        return linalg.cholesky(sigma, lower=True, check_finite=False)
    except linalg.LinAlgError:
        w, v = linalg.eigh((sigma + sigma.T) / 2, driver="evd")
        return v * np.sqrt(_clip_eigenvalues(w, "sigma1"))


def _trace_sqrt_product(f1, sigma2):
    """Tr((Σ1 Σ2)^½) as the sum of the square roots of the eigenvalues of F1ᵀ Σ2 F1."""
    middle = f1.T @ sigma2 @ f1
    middle = (middle + middle.T) / 2                           # exact symmetry for eigvalsh
    w = _clip_eigenvalues(linalg.eigvalsh(middle, check_finite=False),
                          "sqrt(sigma1) sigma2 sqrt(sigma1)")
    # With a singular Σ1 most eigenvalues are zeros that come out as rounding noise
    # (~1e-16 of the largest); their square roots (~1e-8 each, thousands of them) would
    # add up to an error of ~1e-5. Zero them.
    w[w < w.shape[0] * np.finfo(np.float64).eps * w.max(initial=0.0)] = 0.0
    return np.sqrt(w).sum()


def frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """Fréchet distance between the Gaussians N(mu1, sigma1) and N(mu2, sigma2): the FID.

        d² = ‖mu1 − mu2‖² + Tr(sigma1) + Tr(sigma2) − 2 Tr((sigma1 sigma2)^½)

    This is the *squared* distance, the number every paper reports as FID. Tr((Σ1 Σ2)^½) is
    computed as the sum of square roots of the eigenvalues of the symmetric PSD matrix
    Lᵀ Σ2 L, where L Lᵀ = Σ1 (Cholesky): Lᵀ Σ2 L has the eigenvalues of Σ2 L Lᵀ = Σ2 Σ1, so
    the result is real by construction, needs no eigenvectors, and is several times faster
    than `scipy.linalg.sqrtm` at 2048 dimensions, same value to ~1e-12.

    Caveats:
    - Everything is float64; inputs are converted.
    - FID is biased upward at small sample counts, strongly so below 2048 samples: compare
      models only at equal N (10k or 50k in papers).
    - Singular covariance (e.g. from fewer samples than dimensions): the formula stays defined
      and exact (Σ1's square root from its clipped eigen-decomposition), so no offset is added
      (compute_statistics warns about the bias). Only when the square root fails (an
      eigensolver does not converge, a non-finite result) is `eps`·I added to both
      covariances, with a warning, as TTUR and pytorch-fid do. Eigenvalues below zero from
      rounding are clipped; a clearly negative one (the input is not a covariance) warns
      loudly. NaN or infinity in the input raises ValueError.
    """
    mu1, sigma1, mu2, sigma2 = _check_statistics(mu1, sigma1, mu2, sigma2)
    d = mu1.shape[0]

    # A singular Σ1 (fewer samples than dimensions) needs no offset: `factor` falls back to
    # eigh with clipped eigenvalues, and the formula stays exact. TTUR and pytorch-fid add
    # eps·I only when the square root fails; so does this, when an eigensolver does not
    # converge or the result is not finite.
    try:
        f1 = _sqrt_factor(sigma1)
        tr_sqrt = _trace_sqrt_product(f1, sigma2)
        failed = not np.isfinite(tr_sqrt)
    except linalg.LinAlgError:
        failed = True
    if failed:
        if eps <= 0:
            raise ValueError("the square root of sigma1 sigma2 failed and eps is 0")
        warnings.warn(f"the square root of sigma1 sigma2 failed: adding {eps:g}·I to both "
                      "covariances, as TTUR does; the FID is biased upward", stacklevel=2)
        sigma1, sigma2 = sigma1 + eps * np.eye(d), sigma2 + eps * np.eye(d)
        f1 = _sqrt_factor(sigma1)
        tr_sqrt = _trace_sqrt_product(f1, sigma2)

    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_sqrt
    if value < 0:
        # The distance is >= 0. Matching statistics give rounding-sized negatives (~1e-8 with
        # singular covariances, from the square roots of near-zero eigenvalues): those are 0.
        rounding = 1e-6 * (np.trace(sigma1) + np.trace(sigma2) + 1.0)
        if value < -rounding:
            warnings.warn(f"Fréchet distance came out negative ({value:.3g}): the statistics are "
                          "numerically broken", RuntimeWarning, stacklevel=2)
            return float(value)
        value = 0.0
    return float(value)


def kernel_inception_distance(features_a, features_b, num_subsets=100, max_subset_size=1000,
                              seed=0):
    """KID: unbiased MMD² with the cubic kernel k(x, y) = (x·y / d + 1)³, in subsets.

    As clean-fid and StyleGAN: `num_subsets` times, draw m = min(N_a, N_b, max_subset_size)
    samples of each set without replacement and compute the unbiased MMD²; return the mean and
    standard deviation over subsets. Unbiased, so usable at small N (it can be slightly
    negative when the sets match).
    """
    a = np.asarray(features_a, dtype=np.float64)
    b = np.asarray(features_b, dtype=np.float64)
    assert a.ndim == b.ndim == 2 and a.shape[1] == b.shape[1], (
        f"features must be (N, D) with the same D, got {a.shape} and {b.shape}")
    d = a.shape[1]
    m = min(len(a), len(b), max_subset_size)
    if m < 2:
        raise UserError(f"KID needs at least 2 samples in each set, got {len(a)} and {len(b)}")
    rng = np.random.default_rng(seed)
    mmd = np.empty(num_subsets)
    for i in range(num_subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        k_xx = (x @ x.T / d + 1) ** 3
        k_yy = (y @ y.T / d + 1) ** 3
        k_xy = (x @ y.T / d + 1) ** 3
        within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
        mmd[i] = within - 2 * k_xy.sum() / (m * m)
    return float(mmd.mean()), float(mmd.std())



# ---------------------------------------------------------------------------------------------
# Precision, recall, density and coverage (k-nearest-neighbour balls in feature space)
# ---------------------------------------------------------------------------------------------

def _as_features(features, name):
    features = np.asarray(features, dtype=np.float64)
    assert features.ndim == 2, f"{name} must be (N, D), got shape {features.shape}"
    if not np.isfinite(features).all():
        raise ValueError(f"{name} contain NaN or infinity")
    return features


def _distance_blocks(a, b, block):
    """Yield (start, D): D[i, j] = ‖a[start + i] − b[j]‖₂ in float64, `block` rows of `a` at a
    time against all of `b`, from ‖a‖² + ‖b‖² − 2 a·b (clipped at 0 against rounding)."""
    b_squared = np.einsum("ij,ij->i", b, b)
    for start in range(0, len(a), block):
        rows = a[start:start + block]
        d2 = rows @ b.T
        d2 *= -2.0
        d2 += np.einsum("ij,ij->i", rows, rows)[:, None]
        d2 += b_squared[None, :]
        np.maximum(d2, 0.0, out=d2)
        yield start, np.sqrt(d2, out=d2)


def knn_radii(features, k=3, block=1024):
    """Distance from each row of (N, D) `features` to its k-th nearest neighbour among the
    others (itself excluded by index, so a duplicate counts as a neighbour at distance 0)."""
    features = _as_features(features, "features")
    if not 1 <= k < len(features):
        raise UserError(f"k-nearest-neighbour radii with k={k} need more than {k} samples, "
                        f"got {len(features)}")
    radii = np.empty(len(features))
    for start, d in _distance_blocks(features, features, block):
        rows = np.arange(len(d))
        d[rows, start + rows] = np.inf                          # not its own neighbour
        radii[start:start + len(d)] = np.partition(d, k - 1, axis=1)[:, k - 1]
    return radii


def precision_recall_density_coverage(real_features, fake_features, k=3, block=1024):
    """Improved precision and recall (Kynkäänniemi et al. 2019) and density and coverage
    (Naeem et al. 2020) of (M, D) `fake_features` against (N, D) `real_features`.

    Each sample gets a ball whose radius r is the distance to its k-th nearest neighbour in its
    own set (itself excluded). With 1[·] counting a fake sample y_j inside a real ball,
    ‖y_j − x_i‖ < r(x_i) (strict, as the authors' `prdc` code):

        precision = fraction of fake samples inside at least one real ball      (fidelity)
        recall    = fraction of real samples inside at least one fake ball      (diversity)
        density   = (1 / kM) Σ_j Σ_i 1[y_j in ball(x_i)]       (≈ 1 for matching sets; unbounded)
        coverage  = fraction of real samples whose nearest fake sample is inside its own ball

    Precision and recall are in [0, 1]; density is not bounded by 1 and, unlike precision,
    is not fooled by a few real outliers with large balls. All are biased at small N (the
    balls shrink as N grows): compare only at equal N and k. Returns a dict of the four floats.

    Distances are exact Euclidean distances in float64, computed `block` rows at a time
    against the whole other set: never an N x N matrix, at most a few (block, max(N, M))
    float64 arrays at once (block 1024 at N = 10,000: 80 MB each, about 250 MB in all), plus
    the two sets in float64. Cost: three passes of N·M·D multiply-adds (real-real, fake-fake,
    fake-real).
    """
    real = _as_features(real_features, "real features")
    fake = _as_features(fake_features, "fake features")
    assert real.shape[1] == fake.shape[1], (
        f"real and fake features differ in dimension: {real.shape} vs {fake.shape}")
    assert block >= 1, f"block must be at least 1, got {block}"
    real_radii = knn_radii(real, k, block)
    fake_radii = knn_radii(fake, k, block)
    inside_count = np.empty(len(fake), np.int64)    # real balls holding each fake sample
    recalled = np.zeros(len(real), bool)            # real samples inside some fake ball
    nearest_fake = np.full(len(real), np.inf)       # distance from each real to its nearest fake
    for start, d in _distance_blocks(fake, real, block):    # d: (fake rows, all real)
        inside_count[start:start + len(d)] = (d < real_radii[None, :]).sum(axis=1)
        recalled |= (d < fake_radii[start:start + len(d), None]).any(axis=0)
        np.minimum(nearest_fake, d.min(axis=0), out=nearest_fake)
    return {"precision": float((inside_count > 0).mean()),
            "recall": float(recalled.mean()),
            "density": float(inside_count.sum() / (k * len(fake))),
            "coverage": float((nearest_fake < real_radii).mean())}


def feature_metrics(fake, real, metrics):
    """The metrics besides FID that `metrics` names (from METRICS), of (M, D) generated
    `fake` against (N, D) `real` features, as {name: float} in a fixed order: kid and
    kid_std, precision and recall (pr), density and coverage (dc), k = 3. What test.py,
    the evaluator's metrics.jsonl and `score --metrics` report, from one implementation."""
    out = {}
    if "kid" in metrics:
        out["kid"], out["kid_std"] = kernel_inception_distance(fake, real)
    if "pr" in metrics or "dc" in metrics:
        values = precision_recall_density_coverage(real, fake)
        for name in (("precision", "recall") if "pr" in metrics else ()) + (
                ("density", "coverage") if "dc" in metrics else ()):
            out[name] = values[name]
    return out


def metric_lines(values):
    """`feature_metrics`' dict as the lines test.py and `score` print after `FID: ...`:
    'KID: <mean> ± <std>', then 'precision: 0.7312', ... one metric per line."""
    lines = []
    if "kid" in values:
        lines.append(f"KID: {values['kid']:.6f} ± {values['kid_std']:.6f}")
    lines += [f"{name}: {values[name]:.4f}" for name in
              ("precision", "recall", "density", "coverage") if name in values]
    return lines


def parse_metrics(text):
    """`--metrics fid,kid,pr,dc` -> the names in METRICS' order."""
    names = {name.strip().lower() for name in text.split(",") if name.strip()}
    unknown = sorted(names - set(METRICS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown metric {', '.join(unknown) or '(none)'}: "
                                         f"choose from {','.join(METRICS)}")
    return tuple(m for m in METRICS if m in names)
