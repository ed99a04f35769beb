"""Sample, interpolate and score a trained GAN:
`python test.py --save-dir DIR [--checkpoint PATH] [--n-samples N] [--seed S]
[--walk] [--arithmetic [GROUPS]]`.

Writes into DIR: sample_random.png (sample_H x sample_W random samples), interpolate.png
(11 images from one random z to another), and for the models that have them
z0_sweep.png (FC GAN), class_grid.png (conditional GAN), latent_walk.gif (--walk) and
arithmetic.png (--arithmetic). Prints the FID over N samples as its last line: `FID: <value>`.
"""
import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from learning.config import Config, add_set_argument, parse_set  # noqa: E402
from learning.errors import UserError, exit_on_user_error  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--save-dir", required=True, help="the run folder train.py wrote")
    p.add_argument("--checkpoint", default=None,
                   help="checkpoint prefix (default: the best, else the latest)")
    p.add_argument("--n-samples", type=int, default=None,
                   help="samples for FID (default: eval_sample_size); 0 skips FID")
    p.add_argument("--seed", type=int, default=0, help="seed for z (default 0)")
    p.add_argument("--walk", action="store_true",
                   help="also write latent_walk.gif, a walk through random points of z")
    p.add_argument("--arithmetic", nargs="?", const="random", default=None, metavar="GROUPS",
                   help="also write arithmetic.png, A - B + C on means of three z's; GROUPS "
                        "picks the triples by index in sample_random.png, e.g. "
                        "'1,2,3;4,5,6;7,8,9' (default: random triples)")
    p.add_argument("--weights", default=None, help="Inception weights (default: inception_path)")
    add_set_argument(p, example="--set stats_sample_size=10000 batch_size_eval=50 (for "
                     "the evaluation keys; the model's own come from hyperparam.json)")
    p.add_argument("--no-ema", action="store_true",
                   help="use the trained generator, not its moving average (G_ema_decay)")
    p.add_argument("--export", default=None, metavar="DIR",
                   help="write DIR, a folder test.py can read: hyperparam.json, best.json and "
                        "a checkpoint of the generator(s) only (no optimizer state); then stop")
    p.add_argument("--with-discriminator", action="store_true",
                   help="with --export: keep the discriminator too")
    return p.parse_args(argv)


# What test.py --set may change: how the samples are scored and drawn, never the model.
TEST_KEYS = {"stats_sample_size", "eval_sample_size", "batch_size_eval", "dataset_stats_path",
             "inception_path", "sample_H", "sample_W", "data_dir", "max_images"}


def find_checkpoint(save_dir, explicit=None):
    """The checkpoint to load: the one given, else the best, else the latest."""
    import tensorflow as tf
    if explicit:
        if not tf.io.gfile.glob(explicit + ".index"):
            raise UserError(f"checkpoint '{explicit}' not found (expected {explicit}.index): "
                            f"see {os.path.join(save_dir, 'best')} and "
                            f"{os.path.join(save_dir, 'checkpoints')}")
        return explicit
    for sub in ("best", "checkpoints"):
        path = tf.train.latest_checkpoint(os.path.join(save_dir, sub))
        if path:
            return path
    raise UserError(f"no checkpoint in '{save_dir}' (looked in best/ and checkpoints/): "
                    "train first with `python train.py --save-dir DIR`")


@exit_on_user_error
def main(argv=None):
    args = parse_args(argv)
    hp_path = os.path.join(args.save_dir, "hyperparam.json")
    if not os.path.isdir(args.save_dir):
        raise UserError(f"--save-dir '{args.save_dir}' does not exist: pass the folder "
                        "train.py wrote")
    if not os.path.exists(hp_path):
        raise UserError(f"'{hp_path}' not found: --save-dir must be a folder train.py wrote")
    config = Config.from_json(hp_path)
    if not args.checkpoint and not any(
            os.path.exists(os.path.join(args.save_dir, sub, "checkpoint"))
            for sub in ("best", "checkpoints")):
        raise UserError(f"no checkpoint in '{args.save_dir}' (looked in best/ and "
                        "checkpoints/): train first with `python train.py --save-dir DIR`")
    if args.weights:
        config = config.replace(inception_path=args.weights)
    overrides = parse_set(args.set)
    fixed = sorted(set(overrides) - TEST_KEYS)
    if fixed:
        raise UserError(f"--set {fixed[0]}: test.py only changes how the model is evaluated "
                        f"({', '.join(sorted(TEST_KEYS))}); the model is the run's")
    if overrides:
        config = Config.from_dict({**config.to_dict(), **overrides}, source="--set")

    import tensorflow as tf
    from datasets.data import image_shape
    from learning import utils
    from learning.optimizer import restore_checkpoint
    from models.nn import build_model

    """ 1. The model, restored """
    model = build_model(config, image_shape(config))
    ckpt_path = find_checkpoint(args.save_dir, args.checkpoint)
    parts = generator_parts(model, args.with_discriminator)
    restore_checkpoint(tf.train.Checkpoint(**parts), ckpt_path, partial=True)
    print(f"restored {ckpt_path}")
    if args.export:
        export(args.save_dir, args.export, config, parts, ckpt_path)
        return 0
    if model.generator_ema is not None:
        model.sample_ema = not args.no_ema
        print("using the " + ("trained generator (--no-ema)" if args.no_ema else
                              f"moving average of the generator (G_ema_decay "
                              f"{config.G_ema_decay})"))

    """ 2. Random samples and the interpolation strip """
    # z through the model's own prior (GAN.sample_z), from a stream of the seed's that
    # nothing else draws from; NumPy only picks labels and arithmetic triples.
    z_rng = utils.seeded_generator(args.seed, "test.py")
    rng = np.random.default_rng(args.seed)
    draw_z = lambda n: model.sample_z(z_rng, n).numpy()  # noqa: E731
    H, W = config.sample_H, config.sample_W
    z = draw_z(H * W)
    labels = np.arange(H * W) % config.num_classes if model.conditional else None
    save = lambda name, imgs, h, w: print(  # noqa: E731
        "wrote", utils.save_sample_images(args.save_dir, name, imgs, h, w))
    save("sample_random", model.generate(z, labels=labels), H, W)

    from_z, to_z = draw_z(1), draw_z(1)
    z_intp = utils.interpolate(from_z, to_z, 9)
    intp_labels = np.full(len(z_intp), rng.integers(config.num_classes)) \
        if model.conditional else None
    save("interpolate", model.generate(z_intp, labels=intp_labels), 1, 11)

    """ 3. What each kind of model shows best """
    if config.model == "fc_gan":
        save("z0_sweep", model.generate(utils.z0_sweep(draw_z(1)[0], 100)),
             10, 10)
    if model.conditional:
        # Ten rows, each the digits 0 to 9 in order: the post's check.
        zc = draw_z(100)
        save("class_grid", model.generate(zc, labels=np.tile(np.arange(10), 10)), 10, 10)
    if args.walk and not model.conditional:
        frames = utils.latent_walk(model, draw_z(5), steps=16)
        print("wrote", utils.make_gif(frames, os.path.join(args.save_dir, "latent_walk.gif"),
                                      fps=12))
    if args.arithmetic and not model.conditional:
        groups = utils.parse_groups(args.arithmetic, H * W, rng)
        grid = utils.vector_arithmetic(model, z, groups)
        save("arithmetic", grid, 4, 4)

    """ 4. FID """
    n = config.eval_sample_size if args.n_samples is None else args.n_samples
    if n > 0:
        value, kid = score(config, model, n, args.seed)
        print(f"FID: {value:.4f}")
        if kid is not None:
            print(f"KID: {kid[0]:.6f} ± {kid[1]:.6f}")
    return 0


def generator_parts(model, with_discriminator=False):
    """What test.py restores: the generator, its average if the run keeps one, and the
    discriminator only when asked (a shipped run folder may not hold it)."""
    parts = {"generator": model.generator}
    if model.generator_ema is not None:
        parts["generator_ema"] = model.generator_ema
    if with_discriminator:
        parts["discriminator"] = model.discriminator
    return parts


def export(save_dir, out_dir, config, parts, ckpt_path):
    """A run folder reduced to what test.py needs, for sharing (pretrained/)."""
    import json

    import tensorflow as tf
    from learning import utils
    from learning.optimizer import read_best
    if os.path.exists(os.path.join(out_dir, "best")):
        raise UserError(f"--export '{out_dir}' already holds a checkpoint: remove it first "
                        "or choose another folder")
    os.makedirs(os.path.join(out_dir, "best"), exist_ok=True)
    path = tf.train.Checkpoint(**parts).write(os.path.join(out_dir, "best", "best"))
    with open(os.path.join(out_dir, "best", "checkpoint"), "w") as f:
        f.write('model_checkpoint_path: "best"\nall_model_checkpoint_paths: "best"\n')
    # Statistics live in each user's cache, not at the trainer's path.
    config.replace(dataset_stats_path=None).save(os.path.join(out_dir, "hyperparam.json"))
    best = read_best(save_dir) or {}
    utils.write_json_atomic(os.path.join(out_dir, "best", "best.json"), {
        **{k: best[k] for k in ("epoch", "step", "score") if k in best},
        "from_checkpoint": os.path.basename(ckpt_path), "parts": sorted(parts)})
    print(f"wrote {path} ({', '.join(sorted(parts))}) and {out_dir}/hyperparam.json")
    print(json.dumps({k: v for k, v in best.items() if k != "checkpoint"}))


def score(config, model, n, seed):
    """FID of n samples against the dataset statistics the run used (computed if missing),
    and KID when the real features are cached beside the statistics."""
    from learning.evaluator import FIDEvaluator, ensure_dataset_statistics
    from learning.fid import FID, kernel_inception_distance
    fid = FID(config.inception_path, None, batch_size=config.batch_size_eval)
    stats = config.dataset_stats_path
    if not stats or not os.path.exists(stats):
        from datasets.data import load_images
        images, _ = load_images(config)
        stats = ensure_dataset_statistics(config, images, fid.inception)
    fid.load_dataset_statistics(stats)
    evaluator = FIDEvaluator(fid, n, config.batch_size_eval, config.score_threshold)
    value = evaluator.score(model, seed=seed)
    kid = None
    real = features_path(stats)
    if os.path.exists(real) and len(fid.feature_gen) >= 2:
        kid = kernel_inception_distance(fid.feature_gen, np.load(real))
    return value, kid


def features_path(stats_path):
    """The real sample's features, saved beside its statistics (for KID)."""
    from learning.evaluator import features_path as path
    return path(stats_path)


if __name__ == "__main__":
    sys.exit(main())
