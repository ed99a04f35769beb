"""Benchmark learning/fid.py: Inception feature throughput and the Fréchet distance's cost.

    python bench/fid.py [--batch-size 50] [--batches 3] [--image-size 64] [--torch-python PY]
                        [--metrics-n 10000]

Prints readable lines, then one JSON line (the last) with `features_images_per_sec`,
`frechet_seconds`, `scipy_sqrtm_seconds`, their `relative_difference`, the `speedup`,
`metrics_seconds` (KID, precision/recall, density/coverage of --metrics-n generated against as
many real features) with `metrics_of_inception_pass` (that time over the Inception pass for
--metrics-n images at the measured rate) and the `device`. With --torch-python (a Python that has torch), the TorchScript original of the
network (`bench/torchscript_reference.py`) is timed in the same run, alternating with ours,
and `torchscript_images_per_sec` and `features_vs_torchscript` are added. The distance is timed on full-rank 2048-d statistics built from 4096 correlated
features per set, so both methods solve the same well-posed problem.

The feature pass is also given as GFLOP/s, from the network's FLOPs per 299x299 image counted
from its layers (bench/common.py; about 11.4 GFLOP), and as a share of a 4096x4096 float32
`tf.matmul` timed in the same run; the JSON line records the machine (CPU model, cores,
flags, TensorFlow, oneDNN).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
from scipy import linalg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import (describe_ceiling, forward_flops, machine_info,  # noqa: E402
                          matmul_ceiling, pass_speed)
from learning import fid  # noqa: E402  (the path above makes the repo importable)
from learning.inception import build_inception  # noqa: E402


def feature_throughput(batch_size, batches, image_size):
    inception = fid.InceptionFeatures()
    images = tf.random.uniform((batch_size, image_size, image_size, 3), -1.0, 1.0, seed=0)
    inception.extract(images).numpy()                     # warm-up: trace and first run
    times = []
    for _ in range(batches):
        start = time.perf_counter()
        inception.extract(images).numpy()
        times.append(time.perf_counter() - start)
    return batch_size / np.median(times), times


def torchscript_throughput(python, batch_size, batches):
    """Images/s of the TorchScript original, run by `python` (which has torch)."""
    data = fid.read_inception_pt(fid.find_inception_weights())   # SHA1-checked
    with tempfile.TemporaryDirectory() as folder:
        pt = os.path.join(folder, "default_1.pt")
        with open(pt, "wb") as f:
            f.write(data)
        script = Path(__file__).resolve().parent / "torchscript_reference.py"
        out = subprocess.run([python, str(script), "--pt", pt, "--batch-size", str(batch_size),
                              "--batches", str(batches)], capture_output=True, text=True,
                             check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def structured_features(seed, n=4096, d=fid.FEATURE_DIM, shift=0.0):
    """Features that look like pool_3's: correlated, unequal scales, non-negative."""
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(0).standard_normal((d, d)) / np.sqrt(d)
    scales = np.geomspace(2.0, 0.05, d)
    return np.maximum(rng.standard_normal((n, d)) @ mixing * scales + 0.3 + shift, 0.0)


def structured_statistics(seed, n=4096, d=fid.FEATURE_DIM):
    return fid.compute_statistics(structured_features(seed, n, d))


def metrics_seconds(n):
    """Seconds for what test.py adds after FID at n samples against n real ones: KID and
    precision, recall, density, coverage (learning.fid.feature_metrics)."""
    real, fake = structured_features(1, n), structured_features(2, n, shift=0.05)
    start = time.perf_counter()
    fid.feature_metrics(fake, real, ("kid", "pr", "dc"))
    return time.perf_counter() - start


def scipy_sqrtm_distance(mu1, sigma1, mu2, sigma2):
    """pytorch-fid's formula: scipy.linalg.sqrtm of the non-symmetric product."""
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean.real))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--torch-python", default=None,
                        help="a Python with torch: time the TorchScript network too")
    parser.add_argument("--rounds", type=int, default=2,
                        help="alternating rounds of ours and TorchScript (with --torch-python)")
    parser.add_argument("--matmul-size", type=int, default=4096,
                        help="side of the square tf.matmul that gives the machine's ceiling")
    parser.add_argument("--metrics-n", type=int, default=10000,
                        help="samples per side for timing KID, precision/recall, "
                             "density/coverage (default 10000, as test.py's)")
    args = parser.parse_args()
    machine = machine_info()
    device = machine["device"]
    print(f"device: {device}; flags {machine['flags']}; TensorFlow {machine['tf']}, "
          f"oneDNN {'on' if machine['onednn'] else 'off'}")
    # Counted on the network at its 299x299 input, whatever the images' size: the
    # preprocessing resizes them first (its cost, elementwise, is left out).
    flops = forward_flops(build_inception())
    print(f"Inception pass: {flops / 1e9:.2f} GFLOP per image")

    ours_runs, torch_runs = [], []
    for _ in range(args.rounds if args.torch_python else 1):
        per_sec, times = feature_throughput(args.batch_size, args.batches, args.image_size)
        ours_runs.append(per_sec)
        print(f"features: {per_sec:.1f} images/s (batch {args.batch_size} of "
              f"{args.image_size}x{args.image_size}x3, per-batch seconds "
              f"{', '.join(f'{t:.2f}' for t in times)})")
        if args.torch_python:
            ref = torchscript_throughput(args.torch_python, args.batch_size, args.batches)
            torch_runs.append(ref["images_per_sec"])
            print(f"TorchScript default_1.pt (torch {ref['torch']}, {ref['threads']} threads): "
                  f"{ref['images_per_sec']:.1f} images/s (299x299 input)")
    per_sec = float(np.median(ours_runs))
    ceiling = matmul_ceiling("float32", args.matmul_size)
    print(describe_ceiling(ceiling))
    gflops, share = pass_speed(per_sec, flops, ceiling)
    print(f"features, median: {per_sec:.1f} images/s = {gflops} GFLOP/s, {share:.0%} of the matmul")
    if torch_runs:
        torch_gflops, torch_share = pass_speed(float(np.median(torch_runs)), flops, ceiling)
        print(f"TorchScript: {torch_gflops} GFLOP/s, {torch_share:.0%} of the tf.matmul")

    mu1, sigma1 = structured_statistics(1)
    mu2, sigma2 = structured_statistics(2)
    start = time.perf_counter()
    ours = fid.frechet_distance(mu1, sigma1, mu2, sigma2)
    frechet_seconds = time.perf_counter() - start
    start = time.perf_counter()
    reference = scipy_sqrtm_distance(mu1, sigma1, mu2, sigma2)
    sqrtm_seconds = time.perf_counter() - start
    relative = abs(ours - reference) / abs(reference)
    print(f"frechet_distance: {ours:.6f} in {frechet_seconds:.2f} s; scipy sqrtm: "
          f"{reference:.6f} in {sqrtm_seconds:.2f} s; relative difference {relative:.2g}; "
          f"{sqrtm_seconds / frechet_seconds:.1f}x faster")

    # The metrics besides FID at --metrics-n samples, against the Inception pass over as
    # many generated images at the measured rate (the statistics of the real side are
    # computed once and cached, so they are not counted).
    metrics_time = metrics_seconds(args.metrics_n)
    inception_time = args.metrics_n / per_sec
    print(f"KID + precision/recall/density/coverage at {args.metrics_n} x {args.metrics_n}: "
          f"{metrics_time:.1f} s, {metrics_time / inception_time:.1%} of the Inception pass "
          f"over {args.metrics_n} images ({inception_time:.0f} s at {per_sec:.1f} images/s)")

    extra = {}
    if torch_runs:
        reference = float(np.median(torch_runs))
        extra = {"torchscript_images_per_sec": round(reference, 2),
                 "features_vs_torchscript": round(per_sec / reference, 3),
                 "torchscript_gflops": torch_gflops, "torchscript_of_matmul": torch_share}
    print(json.dumps({
        "features_images_per_sec": round(per_sec, 2), **extra,
        "features_batch_size": args.batch_size,
        "features_image_size": args.image_size,
        "inception_gflop_per_image": round(flops / 1e9, 3),
        "matmul": ceiling, "features_gflops": gflops, "features_of_matmul": share,
        "frechet_seconds": round(frechet_seconds, 3),
        "scipy_sqrtm_seconds": round(sqrtm_seconds, 3),
        "relative_difference": relative,
        "metrics_n": args.metrics_n, "metrics_seconds": round(metrics_time, 2),
        "metrics_of_inception_pass": round(metrics_time / inception_time, 4),
        "speedup": round(sqrtm_seconds / frechet_seconds, 2),
        "device": device,
        "machine": machine,
    }))


if __name__ == "__main__":
    main()
