"""Benchmark the FID package (frechet/): Inception feature throughput and the Fréchet distance's cost.

    python bench/fid.py [--batch-size 50] [--rounds 4] [--image-size 64] [--torch-python PY]
                        [--versus-env NAME=VALUE ...] [--metrics-n 10000]

Prints readable lines, then one JSON line (the last) with `features_images_per_sec`,
`frechet_seconds`, `scipy_sqrtm_seconds`, their `relative_difference`, the `speedup`,
`metrics_seconds` (KID, precision/recall, density/coverage of --metrics-n generated against as
many real features) with `metrics_of_inception_pass` (that time over the Inception pass for
--metrics-n images at the measured rate) and the `device`. The distance is timed on
full-rank 2048-d statistics built from 4096 correlated features per set, so both methods
solve the same well-posed problem.

The feature pass is timed one batch per round, in turn with a 4096x4096 float32 `tf.matmul`
and, with --torch-python (a Python that has torch), with a batch of the network's
TorchScript original (`bench/torchscript_reference.py`, served by that Python): the machine's
speed drifts (bench/serve.py), so ratios are taken within a round and their median over
rounds is reported. The pass is given as GFLOP/s, from the network's FLOPs per 299x299 image
counted from its layers (bench/common.py; about 11.4 GFLOP), and as a share of the same
round's matmul (`features_of_matmul`); with --torch-python, `torchscript_images_per_sec` and
`features_vs_torchscript` are added; with --versus-env (e.g. TF_ENABLE_ONEDNN_OPTS=1), a
copy of this benchmark run with those variables set is timed in turn too, and
`versus_env_speedup` (our seconds over its) is added. The JSON line records the machine (CPU model, cores,
flags, TensorFlow, oneDNN).
"""
import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
from scipy import linalg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common.errors import ArgumentParser  # noqa: E402
from bench.common import (ceiling_from, describe_ceiling, forward_flops,  # noqa: E402
                          machine_info, matmul_timer)
from bench.serve import (Served, describe, interleave, serve, speed_ratio,  # noqa: E402
                         stopwatch)
from frechet import metrics  # noqa: E402  (the path above makes the repo importable)
from frechet.inception import FEATURE_DIM, InceptionFeatures, build_inception  # noqa: E402
from frechet.weights import find_inception_weights, read_inception_pt  # noqa: E402


def feature_pass(batch_size, image_size):
    """A callable computing our Inception features of one batch; warmed up here."""
    inception = InceptionFeatures()
    images = tf.random.uniform((batch_size, image_size, image_size, 3), -1.0, 1.0, seed=0)

    def run():
        inception.extract(images).numpy()
    run()                                                 # warm-up: trace and first run
    return run


@contextlib.contextmanager
def served_torchscript(python, batch_size):
    """The TorchScript original, run by `python` (which has torch), one batch a call."""
    data = read_inception_pt(find_inception_weights())   # SHA1-checked
    with tempfile.TemporaryDirectory() as folder:
        pt = os.path.join(folder, "default_1.pt")
        with open(pt, "wb") as f:
            f.write(data)
        script = Path(__file__).resolve().parent / "torchscript_reference.py"
        with Served([python, str(script), "--pt", pt, "--batch-size",
                     str(batch_size)]) as served:
            yield served


def structured_features(seed, n=4096, d=FEATURE_DIM, shift=0.0):
    """Features that look like pool_3's: correlated, unequal scales, non-negative."""
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(0).standard_normal((d, d)) / np.sqrt(d)
    scales = np.geomspace(2.0, 0.05, d)
    return np.maximum(rng.standard_normal((n, d)) @ mixing * scales + 0.3 + shift, 0.0)


def structured_statistics(seed, n=4096, d=FEATURE_DIM):
    return metrics.compute_statistics(structured_features(seed, n, d))


def metrics_seconds(n):
    """Seconds for what test.py adds after FID at n samples against n real ones: KID and
    precision, recall, density, coverage (frechet.metrics.feature_metrics)."""
    real, fake = structured_features(1, n), structured_features(2, n, shift=0.05)
    start = time.perf_counter()
    metrics.feature_metrics(fake, real, ("kid", "pr", "dc"))
    return time.perf_counter() - start


def scipy_sqrtm_distance(mu1, sigma1, mu2, sigma2):
    """pytorch-fid's formula: scipy.linalg.sqrtm of the non-symmetric product."""
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean.real))


def parse_args(argv=None):
    parser = ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--torch-python", default=None,
                        help="a Python with torch: time the TorchScript network too")
    parser.add_argument("--rounds", type=int, default=4,
                        help="rounds of (matmul, our batch, [TorchScript batch]), in turn")
    parser.add_argument("--matmul-size", type=int, default=4096,
                        help="side of the square tf.matmul that gives the machine's ceiling")
    parser.add_argument("--versus-env", nargs="+", default=None, metavar="NAME=VALUE",
                        help="also time the pass in a copy of this benchmark with these "
                             "environment variables set, in turn with ours (e.g. "
                             "--versus-env TF_ENABLE_ONEDNN_OPTS=1)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--metrics-n", type=int, default=10000,
                        help="samples per side for timing KID, precision/recall, "
                             "density/coverage (default 10000, as test.py's)")
    args = parser.parse_args(argv)
    bad = [item for item in args.versus_env or [] if "=" not in item]
    if bad:
        parser.error(f"--versus-env '{bad[0]}': expected NAME=VALUE, e.g. "
                     "TF_ENABLE_ONEDNN_OPTS=1")
    return args


def main():
    args = parse_args()
    if args.serve:                                   # the copy that --versus-env runs
        run = feature_pass(args.batch_size, args.image_size)
        print(json.dumps({"machine": machine_info()}))
        serve(run)
        return
    machine = machine_info()
    print(f"device: {machine['device']}; flags {machine['flags']}; TensorFlow "
          f"{machine['tf']}, oneDNN {'on' if machine['onednn'] else 'off'}")
    # Counted on the network at its 299x299 input, whatever the images' size: the
    # preprocessing resizes them first (its cost, elementwise, is left out).
    flops = forward_flops(build_inception())
    print(f"Inception pass: {flops / 1e9:.2f} GFLOP per image")

    n = args.matmul_size
    seconds, others = time_passes(args)
    ceiling = ceiling_from(seconds["matmul"], "float32", n)
    print(describe_ceiling(ceiling))
    per_sec = args.batch_size / statistics.median(seconds["features"])
    # A batch's share of the matmul: (batch FLOPs / batch s) / (matmul FLOPs / matmul s).
    scale = args.batch_size * flops / (2 * n ** 3)
    share = speed_ratio(seconds["features"], seconds["matmul"], scale)
    print(f"features: {per_sec:.1f} images/s (batch {args.batch_size} of "
          f"{args.image_size}x{args.image_size}x3, median of {args.rounds} rounds) = "
          f"{per_sec * flops / 1e9:.1f} GFLOP/s; of the same round's matmul: "
          f"{describe(share, '.0%')}")
    extra = report_others(args, seconds, others, scale)
    frechet = time_frechet_distance()

    # The metrics besides FID at --metrics-n samples, against the Inception pass over as
    # many generated images at the measured rate (the statistics of the real side are
    # computed once and cached, so they are not counted).
    metrics_time = metrics_seconds(args.metrics_n)
    inception_time = args.metrics_n / per_sec
    print(f"KID + precision/recall/density/coverage at {args.metrics_n} x {args.metrics_n}: "
          f"{metrics_time:.1f} s, {metrics_time / inception_time:.1%} of the Inception pass "
          f"over {args.metrics_n} images ({inception_time:.0f} s at {per_sec:.1f} images/s)")

    print(json.dumps({
        "features_images_per_sec": round(per_sec, 2), **extra,
        "features_batch_size": args.batch_size,
        "features_image_size": args.image_size,
        "inception_gflop_per_image": round(flops / 1e9, 3),
        "rounds": args.rounds, "matmul": ceiling,
        "features_gflops": round(per_sec * flops / 1e9, 1),
        "features_of_matmul": share["median"],
        "features_of_matmul_range": [share["min"], share["max"]],
        "features_of_matmul_best": share["best"],
        **frechet,
        "metrics_n": args.metrics_n, "metrics_seconds": round(metrics_time, 2),
        "metrics_of_inception_pass": round(metrics_time / inception_time, 4),
        "device": machine["device"],
        "machine": machine,
    }))


def time_passes(args):
    """The matmul, our Inception pass and, with --versus-env or --torch-python, the other
    pass, timed in turn. Returns the seconds and the other processes' own records."""
    run = feature_pass(args.batch_size, args.image_size)
    timers = {"matmul": matmul_timer("float32", args.matmul_size),
              "features": lambda: stopwatch(run)}
    others = {}
    with contextlib.ExitStack() as stack:
        if args.versus_env:
            env = {**os.environ, **dict(item.split("=", 1) for item in args.versus_env)}
            timers["versus_env"] = stack.enter_context(Served(
                [sys.executable, os.path.abspath(__file__), "--batch-size",
                 str(args.batch_size), "--image-size", str(args.image_size)], env=env))
            others["versus_env"] = json.loads(timers["versus_env"].info[-1])["machine"]
        if args.torch_python:
            timers["torchscript"] = stack.enter_context(
                served_torchscript(args.torch_python, args.batch_size))
            others["torch"] = json.loads(timers["torchscript"].info[-1])
        return interleave(timers, args.rounds), others


def report_others(args, seconds, others, scale):
    """Print the --versus-env and TorchScript passes against ours; return their fields."""
    extra = {}
    if args.versus_env:
        onednn = others["versus_env"]["onednn"]
        versus = speed_ratio(seconds["versus_env"], seconds["features"])     # its over ours
        env_per_sec = args.batch_size / statistics.median(seconds["versus_env"])
        extra.update(versus_env=args.versus_env, versus_env_onednn=onednn,
                     versus_env_images_per_sec=round(env_per_sec, 2),
                     versus_env_speedup=versus["median"],
                     versus_env_speedup_range=[versus["min"], versus["max"]],
                     versus_env_speedup_best=versus["best"])
        print(f"with {' '.join(args.versus_env)} (another process, oneDNN "
              f"{'on' if onednn else 'off'}): {env_per_sec:.1f} images/s; "
              f"its speed / ours: {describe(versus, '')}")
    if args.torch_python:
        torch_info = others["torch"]
        reference = args.batch_size / statistics.median(seconds["torchscript"])
        versus = speed_ratio(seconds["features"], seconds["torchscript"])    # ours over it
        torch_share = speed_ratio(seconds["torchscript"], seconds["matmul"], scale)
        extra.update(torchscript_images_per_sec=round(reference, 2), torch=torch_info["torch"],
                     features_vs_torchscript=versus["median"],
                     features_vs_torchscript_range=[versus["min"], versus["max"]],
                     features_vs_torchscript_best=versus["best"],
                     torchscript_of_matmul=torch_share["median"])
        print(f"TorchScript default_1.pt (torch {torch_info['torch']}, {torch_info['threads']} "
              f"threads, 299x299 input): {reference:.1f} images/s, "
              f"{torch_share['median']:.0%} of the tf.matmul; ours / TorchScript: "
              f"{describe(versus, '')}")
    return extra


def time_frechet_distance():
    """metrics.frechet_distance against SciPy's sqrtm formula on 2048-d statistics: the time
    of each and their relative difference."""
    mu1, sigma1 = structured_statistics(1)
    mu2, sigma2 = structured_statistics(2)
    start = time.perf_counter()
    ours = metrics.frechet_distance(mu1, sigma1, mu2, sigma2)
    frechet_seconds = time.perf_counter() - start
    start = time.perf_counter()
    reference = scipy_sqrtm_distance(mu1, sigma1, mu2, sigma2)
    sqrtm_seconds = time.perf_counter() - start
    relative = abs(ours - reference) / abs(reference)
    print(f"frechet_distance: {ours:.6f} in {frechet_seconds:.2f} s; scipy sqrtm: "
          f"{reference:.6f} in {sqrtm_seconds:.2f} s; relative difference {relative:.2g}; "
          f"{sqrtm_seconds / frechet_seconds:.1f}x faster")
    return {"frechet_seconds": round(frechet_seconds, 3),
            "scipy_sqrtm_seconds": round(sqrtm_seconds, 3), "relative_difference": relative,
            "speedup": round(sqrtm_seconds / frechet_seconds, 2)}


if __name__ == "__main__":
    main()
