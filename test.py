"""Sample, interpolate and score a trained GAN:
`python test.py --save-dir DIR [--checkpoint PATH] [--n-samples N] [--seed S]
[--walk] [--arithmetic [GROUPS|attribute]] [--turn] [--d-features [N]]`.

Writes into DIR (or --out; an exported folder such as pretrained/NAME is never written to: its
figures go to a new runs/NAME[-K]): sample_random.png (sample_H x sample_W random samples), interpolate.png
(11 images from one random z to another), and for the models that have them
z0_sweep.png and z0_sweep_fixed.png (FC GAN), class_grid.png (conditional GAN), latent_walk.gif (--walk) and
arithmetic.png (--arithmetic), turn.png (--turn), d_features.png (--d-features, DCGAN only). Prints the FID
over N samples as `FID: <value>`, then, one per line, `KID: <mean> ± <std>` and precision,
recall, density and coverage when the real sample's features are cached beside the dataset
statistics (they are, once computed by this code); `--metrics` picks among them. With
--scores FILE, the same samples are also scored against the data set's other split and the
score record is written to FILE.
"""
import argparse
import json
import os
import shlex
import sys

# Before TensorFlow is imported: it reads the log level once, at import.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from common.errors import ArgumentParser, UserError, exit_on_user_error  # noqa: E402
from common.files import write_atomic, write_json_atomic  # noqa: E402
from datasets.data import image_shape, load_images, read_mnist  # noqa: E402
from frechet.metrics import METRICS, metric_lines, parse_metrics  # noqa: E402
from frechet.statistics import check_provenance, features_path  # noqa: E402
from learning import d_features, figures, latent, seeds  # noqa: E402
from learning.checkpoints import (checkpoint_names, find_checkpoints, read_best,  # noqa: E402
                                  read_exported, restore_newest_readable, write_export,
                                  write_keras)
from learning.classifier import class_accuracy, classify, load_classifier  # noqa: E402
from learning.config import Config, add_set_argument, parse_set  # noqa: E402
from learning.evaluator import FIDEvaluator  # noqa: E402
from learning.fid import FID, ensure_dataset_statistics  # noqa: E402
from learning.scores import (checkpoint_of, make_record, read_record,  # noqa: E402
                             score_features, splits_of, write_record)
from models.nn import build_model  # noqa: E402


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--save-dir", required=True, help="the run folder train.py wrote")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="where the figures go (default: the run folder; for an exported "
                        "folder such as pretrained/NAME, a new folder runs/NAME[-K])")
    p.add_argument("--checkpoint", default=None,
                   help="checkpoint prefix (default: the best, else the latest)")
    p.add_argument("--n-samples", type=_at_least_zero, default=None,
                   help="samples for FID (default: eval_sample_size); 0 skips FID")
    p.add_argument("--save-samples", default=None, metavar="DIR",
                   help="also write the samples FID scores, as PNGs 000000.png, ... (same "
                        "seed, same order), into DIR (new or empty), for other FID tools, "
                        "and their Inception features as DIR/features.npy")
    p.add_argument("--seed", type=_at_least_zero, default=0, help="seed for z (default 0)")
    p.add_argument("--scores", default=None, metavar="FILE",
                   help="also score against the data set's other split (MNIST-style data: "
                        "test and train, from the same samples) and write the score record "
                        "to FILE (JSON: every metric of each split, the command, the sample "
                        "seed, the checkpoint, the CPU); an existing FILE is refused")
    p.add_argument("--zoom", type=_at_least_one, default=1, metavar="K",
                   help="draw each pixel of the PNG grids as a K x K block (nearest "
                        "neighbour), for pages; the scores never see it (default 1)")
    p.add_argument("--walk", action="store_true",
                   help="also write latent_walk.gif, a walk through random points of z")
    p.add_argument("--arithmetic", nargs="?", const="random", default=None, metavar="GROUPS",
                   help="also write arithmetic.png, A - B + C on means of three z's; GROUPS "
                        "picks the triples by index in sample_random.png, e.g. "
                        "'1,2,3;4,5,6;7,8,9' (default: random triples); 'attribute' (MNIST): "
                        "bold 3 - thin 3 + thin 7, the triples found by the classifier")
    p.add_argument("--turn", action="store_true",
                   help="also write turn.png (MNIST): the turn vector (mean z of right- "
                        "minus left-slanted samples) added in growing multiples to 4 z")
    p.add_argument("--d-features", nargs="?", const=8, type=_at_least_one, default=None,
                   metavar="N",
                   help="also write d_features.png, guided backprop of the discriminator's "
                        "strongest last-conv filters on N training images (default 8), the "
                        "trained D beside D as initialised (the DCGAN paper's last figure)")
    p.add_argument("--weights", default=None, help="Inception weights (default: inception_path)")
    add_set_argument(p, example="--set stats_sample_size=10000 batch_size_eval=50 (for "
                     "the evaluation keys; the model's own come from hyperparam.json)")
    p.add_argument("--metrics", type=parse_metrics, default=None,
                   help="what to print after FID, from fid,kid,pr,dc (default all: KID, "
                        "precision and recall, density and coverage, k=3; they need the "
                        "real sample's features, cached beside the statistics)")
    p.add_argument("--collapse", type=_at_least_one, default=None, metavar="N",
                   help="score a generator collapsed on purpose: only N distinct samples, "
                        "repeated to --n-samples (N Inception passes); recall and coverage "
                        "should fall to near 0, precision need not")
    p.add_argument("--no-ema", action="store_true",
                   help="use the trained generator, not its moving average (G_ema_decay)")
    p.add_argument("--export", default=None, metavar="DIR",
                   help="write DIR, a folder test.py can read: hyperparam.json, best.json and "
                        "a checkpoint of the generator(s) only (no optimizer state); then stop")
    p.add_argument("--with-discriminator", action="store_true",
                   help="with --export: keep the discriminator too")
    p.add_argument("--keras", action="store_true",
                   help="with --export: also write generator.keras (the generator of "
                        "test.py's samples, Keras's own layers: keras.saving.load_model "
                        "opens it without this repository)")
    p.add_argument("--float16", action="store_true",
                   help="with --export: store the weights as float16 (half the size; "
                        "test.py reads them back as float32; pretrained/ is stored so)")
    p.add_argument("--ema-only", action="store_true",
                   help="with --export: keep the averaged generator and not the trained one "
                        "(half the size; test.py samples and scores the average anyway)")
    return p.parse_args(argv)


def _at_least_zero(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _at_least_one(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


# What test.py --set may change: how the samples are scored and drawn, never the model.
TEST_KEYS = {"stats_sample_size", "eval_sample_size", "batch_size_eval", "dataset_stats_path",
             "inception_path", "sample_H", "sample_W", "data_dir", "max_images",
             "stats_split"}


@exit_on_user_error
def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    args.command = "python test.py " + shlex.join(argv)
    if seeds.is_parent(args.save_dir):
        return score_seeds(args)
    config = read_config(args)
    if args.scores and os.path.exists(args.scores):
        raise UserError(f"--scores '{args.scores}' exists: choose a new file (a score "
                        "record is never overwritten)")

    """ 1. The model, restored """
    # --d-features needs D; an export keeps only what --with-discriminator asks for.
    conv_d = config.model not in ("fc_gan", "cgan")
    show_d = args.d_features is not None and conv_d and not args.export
    model, parts, ckpt_path = restore_model(args, config, show_d)
    if args.export:
        return export_run(args, config, model, parts, ckpt_path)
    out = output_folder(args.save_dir, args.out)
    if model.generator_ema is not None:
        model.sample_ema = not args.no_ema
        print("using the " + ("trained generator (--no-ema)" if args.no_ema else
                              f"moving average of the generator (G_ema_decay "
                              f"{config.G_ema_decay})"))

    """ 2. Random samples and the interpolation strip; 3. what each kind of model shows best """
    extras = draw_figures(args, config, model, out)

    """ 4. What D's filters learned """
    if args.d_features is not None and not conv_d:
        print(f"--d-features: {config.model} has a fully connected discriminator: no "
              "filters to show")
    if show_d:
        print("wrote", write_d_features(config, model, args.d_features, out,
                                        args.seed))

    """ 5. FID """
    n = config.eval_sample_size if args.n_samples is None else args.n_samples
    if args.save_samples and n == 0:
        raise UserError("--save-samples writes the samples FID scores: give --n-samples N "
                        "above 0")
    if n > 0:
        splits = score(config, model, n, args.seed, args.metrics, args.collapse,
                       save_dir=args.save_samples, all_splits=bool(args.scores))
        print_scores(splits)
        if args.scores:
            write_record(args.scores, make_record(
                os.path.basename(os.path.normpath(args.save_dir)),
                checkpoint_of(args.save_dir, ckpt_path), n, args.seed, args.command, splits,
                ema=model.generator_ema is not None and not args.no_ema, **extras))
            print(f"wrote {args.scores}")
    return 0


def score_seeds(args):
    """--save-dir PARENT, the folder of `train.py --seeds`: each seed's run scored on both
    splits from one pass and recorded in its folder (scores_n<N>_seed<S>.json, kept: a
    second call scores only the seeds without one), then the table of every seed and the
    mean ± std over seeds (PARENT/seeds_n<N>_seed<S>.md and .json) and every seed's FID
    curve (PARENT/fid_curves.png). A seed still training (its metrics.jsonl short of
    num_epochs) is named and left out of the table. No figures are drawn."""
    refused = [flag for flag, value in (("--export", args.export), ("--checkpoint",
               args.checkpoint), ("--scores", args.scores), ("--collapse", args.collapse),
               ("--save-samples", args.save_samples)) if value]
    if refused:
        raise UserError(f"{refused[0]} takes one run: '{args.save_dir}' holds several seeds' "
                        "runs; give one of its seed folders")
    parent, records, unfinished = args.save_dir, {}, {}
    for seed, folder in seeds.seed_runs(parent):
        run_args = argparse.Namespace(**{**vars(args), "save_dir": folder})
        config = read_config(run_args)
        n = config.eval_sample_size if args.n_samples is None else args.n_samples
        if n < 1:
            raise UserError("--n-samples: a table of scores needs samples (above 0)")
        done = seeds.epochs_done(folder)
        if done < config.num_epochs:
            unfinished[seed] = done
            print(f"== seed {seed}: at epoch {done} of {config.num_epochs}, not scored "
                  f"(finish it with the command in {seeds.SEEDS_FILE})")
            continue
        path = os.path.join(folder, f"scores_n{n}_seed{args.seed}.json")
        if os.path.exists(path):
            records[seed] = read_record(path)
            print(f"== seed {seed}: scored before ({path})")
            continue
        print(f"== seed {seed}: {folder}")
        model, _, ckpt_path = restore_model(run_args, config)
        extras = ({"class_accuracy": print_class_accuracy(model, args.seed)}
                  if model.conditional and config.dataset == "mnist" and not config.data_dir
                  else {})
        splits = score(config, model, n, args.seed, args.metrics, all_splits=True)
        print_scores(splits)
        records[seed] = make_record(f"seed{seed}", checkpoint_of(folder, ckpt_path), n,
                                    args.seed, args.command, splits,
                                    ema=model.generator_ema is not None and not args.no_ema,
                                    **extras)
        write_record(path, records[seed])
    if not records:
        raise UserError(f"no seed in '{parent}' has finished training: run the command in "
                        f"its {seeds.SEEDS_FILE} to the end, then score")
    summary = seeds.summarize(records)
    text = seeds.table(records, summary) + "".join(
        f"\nseed {s}: not scored, trained to epoch {e} of {config.num_epochs}\n"
        for s, e in unfinished.items())
    base = os.path.join(parent, f"seeds_n{n}_seed{args.seed}")
    write_atomic(base + ".md", lambda f: f.write(text), mode="w")
    training = seeds.read_parent(parent)
    write_json_atomic(base + ".json", {
        "command": args.command, "n_samples": n, "sample_seed": args.seed,
        "training": {"command": training.get("command"), "config": training["config"]},
        "unfinished": unfinished, "runs": records, **summary})
    curves = seeds.plot_fid_curves(seeds.seed_runs(parent), os.path.join(parent,
                                                                          "fid_curves.png"))
    print(text, end="")
    print(f"wrote {base}.md, {base}.json and {curves}")
    return 0


def print_scores(splits):
    """FID and the other metrics against the config's split (`FID: ...` first), then those
    against any other split, each line naming it."""
    for i, (split, values) in enumerate(splits.items()):
        tag = "" if i == 0 else f" ({split} split)"
        print(f"FID{tag}: {values['fid']:.4f}")
        for line in metric_lines(values):
            name, rest = line.split(":", 1)
            print(f"{name}{tag}:{rest}")


def read_config(args):
    """The run's hyperparam.json, with --weights and the --set keys test.py may change."""
    hp_path = os.path.join(args.save_dir, "hyperparam.json")
    if not os.path.isdir(args.save_dir):
        what = "is a file" if os.path.exists(args.save_dir) else "does not exist"
        raise UserError(f"--save-dir '{args.save_dir}' {what}: pass the folder train.py "
                        "wrote")
    if not os.path.exists(hp_path):
        raise UserError(f"'{hp_path}' not found: --save-dir must be a folder train.py wrote")
    config = Config.from_json(hp_path)
    if args.float16 and not args.export:
        raise UserError("--float16 stores an export's weights: use it with --export DIR")
    if args.weights:
        config = config.replace(inception_path=args.weights)
    overrides = parse_set(args.set)
    fixed = sorted(set(overrides) - TEST_KEYS)
    if fixed:
        raise UserError(f"--set {fixed[0]}: test.py only changes how the model is evaluated "
                        f"({', '.join(sorted(TEST_KEYS))}); the model is the run's")
    if "stats_split" in overrides and "dataset_stats_path" not in overrides:
        overrides["dataset_stats_path"] = None    # the run's file describes its own split
    if overrides:
        config = Config.from_dict({**config.to_dict(), **overrides}, source="--set")
    return config


def restore_model(args, config, with_d=False):
    """The run's model, its generator(s) (and D, `with_d` or --with-discriminator) restored
    from the newest checkpoint that reads whole. Returns the model, the parts restored and
    the checkpoint's path."""
    candidates = find_checkpoints(args.save_dir, args.checkpoint)
    model = build_model(config, image_shape(config))
    names = checkpoint_names(candidates)
    if with_d:
        require_discriminator(candidates, names)
    parts = generator_parts(model, args.with_discriminator or with_d, names)
    if "generator" not in parts and (args.no_ema or args.export and not args.ema_only):
        raise UserError(f"'{args.save_dir}' holds only the averaged generator (exported with "
                        "--ema-only): --no-ema and a full --export need the training run "
                        "folder")
    ckpt_path = restore_newest_readable(tf.train.Checkpoint(**parts), candidates,
                                        partial=True)
    print(f"restored {ckpt_path}")
    recalibrate(model, config)
    return model, parts, ckpt_path


def recalibrate(model, config):
    """The averaged generator's batch-norm statistics, recomputed for its weights exactly as
    the trainer does at the end of an epoch (the same numbers for a checkpoint it saved)."""
    model.recalibrate_ema(latent.seeded_generator(config.seed, "ema batch norm"),
                          batch_size=config.batch_size)


def export_run(args, config, model, parts, ckpt_path):
    """--export DIR: the restored parts as a folder test.py can read (and, with --keras,
    generator.keras)."""
    if args.ema_only and model.generator_ema is None:
        raise UserError("--ema-only: this run keeps no average of its generator "
                        "(G_ema_decay is off)")
    shipped = {k: v for k, v in parts.items() if not (args.ema_only and k == "generator")}
    path, best = write_export(args.save_dir, args.export, config, shipped, ckpt_path,
                              args.float16)
    print(f"wrote {path} ({', '.join(sorted(shipped))}" + (", float16" if args.float16 else "")
          + f") and {args.export}/hyperparam.json")
    print(json.dumps({k: v for k, v in best.items() if k != "checkpoint"}))
    if args.keras:
        if args.float16:
            # generator.keras draws what the exported folder draws: its float16 weights,
            # then batch norm's statistics recomputed for them, as restore_model does.
            read_exported(args.export, **shipped)
            recalibrate(model, config)
        path = os.path.join(args.export, "generator.keras")
        write_keras(model.portable_generator(), path)
        print(f"wrote {path} (inputs: z" + (", one-hot label" if model.conditional
                                             else "") + "; images in [-1, 1])")
    return 0


def draw_figures(args, config, model, out):
    """sample_random.png and interpolate.png, then what each kind of model shows best (the
    FC GAN's z[0] sweeps, the conditional model's class grid) and what the flags ask for
    (--walk, --arithmetic, --turn), into `out`."""
    # z through the model's own prior (GAN.sample_z), from a stream of the seed's that
    # nothing else draws from; NumPy only picks labels and arithmetic triples.
    z_rng = latent.seeded_generator(args.seed, "test.py")
    rng = np.random.default_rng(args.seed)
    draw_z = lambda n: model.sample_z(z_rng, n).numpy()  # noqa: E731
    H, W = config.sample_H, config.sample_W
    z = draw_z(H * W)
    labels = np.arange(H * W) % config.num_classes if model.conditional else None
    save = lambda name, imgs, h, w: print(  # noqa: E731
        "wrote", figures.save_sample_images(out, name, imgs, h, w, scale=args.zoom))
    save("sample_random", model.generate(z, labels=labels), H, W)
    extras = {}   # what the score record keeps of the figures (the class accuracy)

    from_z, to_z = draw_z(1), draw_z(1)
    z_intp = latent.interpolate(from_z, to_z, 9)
    intp_labels = np.full(len(z_intp), rng.integers(config.num_classes)) \
        if model.conditional else None
    save("interpolate", model.generate(z_intp, labels=intp_labels), 1, 11)

    if config.model == "fc_gan":
        # The post's sweep (a fresh z per image, z[0] set), then z[0] alone on one z.
        save("z0_sweep", model.generate(latent.z0_sweep(draw_z(100), 100)), 10, 10)
        save("z0_sweep_fixed", model.generate(latent.z0_sweep(draw_z(1)[0], 100)), 10, 10)
    if model.conditional:
        # Ten rows, each the classes in order (the digits 0 to 9 for MNIST): the post's check.
        k = config.num_classes
        zc = draw_z(10 * k)
        save("class_grid", model.generate(zc, labels=np.tile(np.arange(k), 10)), 10, k)
        if config.dataset == "mnist" and not config.data_dir:
            extras["class_accuracy"] = print_class_accuracy(model, args.seed)
    if args.walk and not model.conditional:
        frames = latent.latent_walk(model, draw_z(5), steps=16)
        print("wrote", figures.make_gif(frames, os.path.join(out, "latent_walk.gif"),
                                      fps=12))
    if args.arithmetic == "attribute" and not model.conditional:
        grid, read_as = attribute_arithmetic(config, model, args.seed)
        save("arithmetic", grid, 4, 4)
        print("wrote", figures.arithmetic_figure(
            grid, ("bold 3", "thin 3", "thin 7"), f"read as {read_as}",
            os.path.join(out, "arithmetic_labelled.png")))
    elif args.arithmetic and not model.conditional:
        groups = latent.parse_groups(args.arithmetic, H * W, rng)
        grid = latent.vector_arithmetic(model, z, groups)
        save("arithmetic", grid, 4, 4)
    if args.turn and not model.conditional:
        require_mnist(config, "--turn")
        save("turn", model.generate(latent.turn(model, seed=args.seed)), 4, 9)
    return extras


def output_folder(save_dir, out=None):
    """Where test.py writes its figures: `out` if given; else the run folder, unless it is
    an exported one (pretrained/NAME), which stays as shipped: then a new runs/NAME[-K]
    under the current folder."""
    if out is None and "from_checkpoint" not in (read_best(save_dir) or {}):
        return save_dir
    if out is None:
        name = os.path.basename(os.path.abspath(save_dir))
        out, k = os.path.join("runs", name), 1
        while os.path.exists(out):
            k += 1
            out = os.path.join("runs", f"{name}-{k}")
        print(f"'{save_dir}' is an exported folder and stays as it is: figures go to {out} "
              "(--out DIR picks another)")
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"--out '{out}' is a file: pass a folder")
    os.makedirs(out, exist_ok=True)
    return out


def require_mnist(config, flag):
    if not (config.dataset == "mnist" and tuple(config.image_size or (28, 28)) == (28, 28)):
        raise UserError(f"{flag} measures digits (stroke weight, slant, the MNIST "
                        "classifier): it needs a model trained on MNIST-style data")


def attribute_arithmetic(config, model, seed):
    """arithmetic.png for --arithmetic attribute: bold 3 - thin 3 + thin 7 (post 004's
    smiling woman - neutral woman + neutral man), the triples found among 3,000 samples by
    the MNIST classifier and the stroke weight; prints what the result is read as. Returns
    the grid's 16 images and the digit the result is read as."""
    require_mnist(config, "--arithmetic attribute")
    classifier = load_classifier()
    z, groups, result = latent.attribute_arithmetic(model, classifier, seed=seed)
    image = model.generate(result[None])
    weights = [latent.stroke_weight(model.generate(z[g])).mean() for g in groups]
    read_as = int(classify(classifier, image)[0])
    print(f"bold 3 - thin 3 + thin 7 (stroke weights {weights[0]:.2f}, {weights[1]:.2f}, "
          f"{weights[2]:.2f}): read as {read_as}, stroke weight "
          f"{latent.stroke_weight(image)[0]:.2f}")
    return latent.vector_arithmetic(model, z, groups), read_as


def print_class_accuracy(model, seed):
    """The class grid's promise, counted: how often 1,000 samples are read as the digit
    asked for by the MNIST classifier that ships (learning.classifier), beside how often it
    reads MNIST's real test digits right."""
    classifier = load_classifier()
    accuracy = class_accuracy(model, classifier, seed=seed)
    images, labels = read_mnist(split="test")
    real = float(np.mean(classify(classifier, images) == labels))
    print(f"class accuracy: {accuracy:.3f} of 1000 samples read as the digit asked for (the "
          f"MNIST classifier, which reads {real:.4f} of the 10,000 real test digits)")
    return accuracy


def generator_parts(model, with_discriminator=False, names=None):
    """What test.py restores: the generator, its average if the run keeps one, and the
    discriminator only when asked. A shipped folder (`--export --ema-only`) may hold the
    average alone: then that is all there is to restore."""
    parts = {"generator": model.generator}
    if (names is not None and "generator" not in names and "generator_ema" in names
            and model.generator_ema is not None):
        del parts["generator"]
    if model.generator_ema is not None:
        parts["generator_ema"] = model.generator_ema
    if with_discriminator:
        parts["discriminator"] = model.discriminator
    return parts


def require_discriminator(paths, names):
    """--d-features needs D's weights, which an exported folder may not hold (`names`: what
    the first readable of `paths` holds; restore_newest_readable reports damaged ones)."""
    if names is not None and "discriminator" not in names:
        raise UserError(f"--d-features: checkpoint '{paths[0]}' holds no discriminator: use "
                        "the training run folder, or export it with `test.py --export "
                        "DIR --with-discriminator`")


def write_d_features(config, model, n, save_dir, seed):
    """d_features.png: guided backprop of D's strongest last-conv filters on n training
    images picked with `seed`, the run's D beside D as the run initialised it."""
    if n < 1:
        raise UserError(f"--d-features {n}: show at least 1 image")
    images, _ = load_images(config)
    pick = np.random.default_rng(seed).choice(len(images), min(n, len(images)), replace=False)
    x = images[np.sort(pick)].astype(np.float32) / 127.5 - 1.0   # D sees [-1, 1]
    initial = d_features.random_discriminator(config, image_shape(config))
    return d_features.d_features_figure(model.discriminator, initial, x,
                                        os.path.join(save_dir, "d_features.png"))


def sample_writer(folder, n):
    """on_pixels for FIDEvaluator.score: each scored image as folder/000000.png, ... A
    folder that holds files is refused (nothing is overwritten)."""
    if os.path.exists(folder) and (not os.path.isdir(folder) or os.listdir(folder)):
        raise UserError(f"--save-samples '{folder}' exists and is not an empty folder: "
                        "choose a new one")
    os.makedirs(folder, exist_ok=True)
    digits = max(6, len(str(n - 1)))

    def write(first, pixels):
        for i, image in enumerate(pixels):
            Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(
                os.path.join(folder, f"{first + i:0{digits}d}.png"))
    return write


def score(config, model, n, seed, metrics=None, collapse=None, save_dir=None,
          all_splits=False):
    """FID of n samples against the dataset statistics the run used (computed if missing),
    and the other `metrics` (default: all of frechet.metrics.METRICS) as a dict, from the real
    sample's features cached beside the statistics; without that file, FID alone.
    `collapse`: only that many distinct samples, repeated (FIDEvaluator.score's `distinct`).
    `save_dir`: also write the n scored samples there as PNGs (test.py --save-samples).
    `all_splits`: also score the same samples against the data set's other split.
    Returns {split: {"fid": ..., other metrics}}, the config's split first."""
    if save_dir and collapse:
        raise UserError("--save-samples and --collapse: a collapsed set is its first N "
                        "samples repeated; save without --collapse")
    on_pixels = sample_writer(save_dir, n) if save_dir else None
    fid = FID(config.inception_path, None, batch_size=config.batch_size_eval)
    stats = config.dataset_stats_path
    images = None
    if not stats or not os.path.exists(stats):
        images, _ = load_images(config)
        stats = ensure_dataset_statistics(config, images, fid.inception)
    else:
        # A file named in hyperparam.json: checked against what can be known without
        # reading the data (ensure_dataset_statistics also checks the images themselves).
        check_provenance(stats, {
            "image_size": list(config.image_size) if config.image_size else None,
            "crop": config.crop_size, "inception_sha1": fid.inception.weights_sha1,
            "n": config.stats_sample_size})
    fid.load_dataset_statistics(stats)
    metrics = METRICS if metrics is None else metrics
    real = features_path(stats)
    if not os.path.exists(real) or n < 4:   # k = 3 neighbours need 4 samples
        if set(metrics) - {"fid"}:
            print(f"FID only: {'no ' + real if not os.path.exists(real) else 'too few samples'}"
                  " for KID, precision/recall, density/coverage")
        metrics, real = ("fid",), None
    evaluator = FIDEvaluator(fid, n, config.batch_size_eval, config.score_threshold,
                             metrics=metrics, real_features=real)
    value = evaluator.score(model, seed=seed, verbose=True,   # 10,000 samples: minutes
                            distinct=collapse, on_pixels=on_pixels)
    if save_dir:
        # Their features too (float32, as the network gives them: nothing is lost), so that
        # `python -m learning.fid score DIR/features.npy OTHER_STATS` scores the same samples
        # against other statistics (the other split) without another pass of the network.
        features = os.path.join(save_dir, "features.npy")
        np.save(features, evaluator.fid.feature_gen.astype(np.float32))
        print(f"wrote {n} samples to {save_dir}, their Inception features to {features}")
    splits = {config.stats_split: {"fid": value, **evaluator.last_metrics}}
    for split in (splits_of(config)[1:] if all_splits and np.isfinite(value) else []):
        # The same samples' features (held by `fid`) against the other split's statistics.
        other = config.replace(stats_split=split, dataset_stats_path=None)
        if images is None:
            images, _ = load_images(config)
        splits[split] = score_features(fid, ensure_dataset_statistics(other, images,
                                                                      fid.inception),
                                       metrics)
    return splits


if __name__ == "__main__":
    sys.exit(main())
