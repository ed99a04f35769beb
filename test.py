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

from learning.config import Config  # noqa: E402
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
    return p.parse_args(argv)


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

    import tensorflow as tf
    from datasets.data import image_shape
    from learning import utils
    from learning.optimizer import restore_checkpoint
    from models.nn import build_model

    """ 1. The model, restored """
    model = build_model(config, image_shape(config))
    ckpt_path = find_checkpoint(args.save_dir, args.checkpoint)
    checkpoint = tf.train.Checkpoint(generator=model.generator,
                                     discriminator=model.discriminator)
    restore_checkpoint(checkpoint, ckpt_path, partial=True)
    print(f"restored {ckpt_path}")

    """ 2. Random samples and the interpolation strip """
    rng = np.random.default_rng(args.seed)
    H, W = config.sample_H, config.sample_W
    z = draw_z(rng, H * W, config)
    labels = np.arange(H * W) % config.num_classes if model.conditional else None
    save = lambda name, imgs, h, w: print(  # noqa: E731
        "wrote", utils.save_sample_images(args.save_dir, name, imgs, h, w))
    save("sample_random", model.generate(z, labels=labels), H, W)

    from_z, to_z = draw_z(rng, 1, config), draw_z(rng, 1, config)
    z_intp = utils.interpolate(from_z, to_z, 9)
    intp_labels = np.full(len(z_intp), rng.integers(config.num_classes)) \
        if model.conditional else None
    save("interpolate", model.generate(z_intp, labels=intp_labels), 1, 11)

    """ 3. What each kind of model shows best """
    if config.model == "fc_gan":
        save("z0_sweep", model.generate(utils.z0_sweep(draw_z(rng, 1, config)[0], 100)),
             10, 10)
    if model.conditional:
        # Ten rows, each the digits 0 to 9 in order: the post's check.
        zc = draw_z(rng, 100, config)
        save("class_grid", model.generate(zc, labels=np.tile(np.arange(10), 10)), 10, 10)
    if args.walk and not model.conditional:
        frames = utils.latent_walk(model, draw_z(rng, 5, config), steps=16)
        print("wrote", utils.make_gif(frames, os.path.join(args.save_dir, "latent_walk.gif"),
                                      fps=12))
    if args.arithmetic and not model.conditional:
        groups = utils.parse_groups(args.arithmetic, H * W, rng)
        grid = utils.vector_arithmetic(model, z, groups)
        save("arithmetic", grid, 4, 4)

    """ 4. FID """
    n = config.eval_sample_size if args.n_samples is None else args.n_samples
    if n > 0:
        print(f"FID: {score(config, model, n, args.seed):.4f}")
    return 0


def draw_z(rng, n, config):
    if config.z_distribution == "normal":
        return rng.standard_normal((n, config.z_dim)).astype(np.float32)
    return rng.uniform(-1.0, 1.0, (n, config.z_dim)).astype(np.float32)


def score(config, model, n, seed):
    """FID of n samples against the dataset statistics the run used (computed if missing)."""
    from learning.evaluator import FIDEvaluator, ensure_dataset_statistics
    from learning.fid import FID
    fid = FID(config.inception_path, None, batch_size=config.batch_size_eval)
    stats = config.dataset_stats_path
    if not stats or not os.path.exists(stats):
        from datasets.data import load_images
        images, _ = load_images(config)
        stats = ensure_dataset_statistics(config, images, fid.inception)
    fid.load_dataset_statistics(stats)
    evaluator = FIDEvaluator(fid, n, config.batch_size_eval, config.score_threshold)
    return evaluator.score(model, seed=seed)


if __name__ == "__main__":
    sys.exit(main())
