"""Train a GAN: `python train.py [--config FILE] [--save-dir DIR] [--data-dir DIR]
[--set KEY=VALUE ...] [--seeds N [N ...]] [--dry-run]`.

As in the tutorial, in three steps: 1. load the dataset; 2. set the hyperparameters;
3. build the model, evaluator and optimizer, and train. Running it again on the same
--save-dir resumes where the run stopped. With --seeds, one run per training seed, each in
its own folder SAVE_DIR/seed<N>, one after the other; the same command resumes them.
"""
import errno
import json
import os
import shlex
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# oneDNN's CPU kernels. TensorFlow turns them on by itself only on CPUs with AVX-512 VNNI,
# bfloat16 or AMX; on an AVX2-only CPU they made the tutorial's step faster too (measure it
# with `bench/train_step.py --versus-env TF_ENABLE_ONEDNN_OPTS=0`; docs/performance.md has
# the figures). Set before TensorFlow is imported; a value the user exports wins (0 turns
# them off).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from common.errors import ArgumentParser, UserError, exit_on_user_error  # noqa: E402
from learning import distribute  # noqa: E402
from learning import seeds  # noqa: E402
from learning.config import Config, add_set_argument, parse_set  # noqa: E402
from learning.run_folder import check_save_dir, lock_save_dir  # noqa: E402

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs",
                              "default.json")


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=DEFAULT_CONFIG,
                   help="hyperparameter JSON (default: configs/default.json)")
    p.add_argument("--save-dir", default=None,
                   help="run folder (default: runs/<config name>); an existing run resumes")
    p.add_argument("--data-dir", default=None, help="image folder (overrides data_dir)")
    add_set_argument(p)
    p.add_argument("--seeds", type=_seed, nargs="+", default=None, metavar="N",
                   help="train one run per seed into SAVE_DIR/seed<N>, one after the other "
                        "(each resumable on its own); `python test.py --save-dir SAVE_DIR` "
                        "then scores them all and gives the mean and standard deviation")
    p.add_argument("--dry-run", action="store_true",
                   help="resolve and print the config, load the data, build the model; "
                        "do not train or write anything")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def _seed(text):
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def resolve_config(args):
    """The config file, then --data-dir, then --set; a resumed run must match its own."""
    config = Config.from_json(args.config)
    overrides = parse_set(args.set)
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    if overrides:
        config = Config.from_dict({**config.to_dict(), **overrides},
                                  source="--set/--data-dir")
    return config


@exit_on_user_error
def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    config = resolve_config(args)
    name = os.path.splitext(os.path.basename(args.config))[0]
    save_dir = args.save_dir or os.path.join("runs", name)
    # The same command resumes (a run folder given, or the default one named again).
    args.command = "python train.py " + shlex.join(
        argv if args.save_dir else argv + ["--save-dir", save_dir])
    if args.seeds is not None:
        return train_seeds(args, config, save_dir)
    return train_one(args, config, save_dir)


def train_seeds(args, config, parent):
    """One run per seed in `parent`/seed<N>, in the order given. `parent`/seeds.json names
    the config and the seeds; a folder whose run was trained with another seed, or a
    parent made for another config, is refused, so seeds are never mixed up."""
    if "seed" in parse_set(args.set):
        raise UserError("--seeds and --set seed=...: give the seeds with --seeds only")
    if len(set(args.seeds)) != len(args.seeds):
        raise UserError(f"--seeds {' '.join(map(str, args.seeds))} names a seed twice: "
                        "give each once")
    folders = seeds.claim_parent(parent, config, args.seeds, args.command)
    for seed, folder in folders:
        print(f"== seed {seed} ({args.seeds.index(seed) + 1} of {len(args.seeds)}): {folder}")
        status = train_one(args, config.replace(seed=seed), folder)
        if status:
            return status
    if not args.dry_run:
        print(f"Done: {len(folders)} seeds. Run `python test.py --save-dir {parent} "
              "--n-samples 10000` to score them all.")
    return 0


def train_one(args, config, save_dir):
    """Train (or resume) one run in `save_dir`."""
    # In a multi-worker run only the chief writes --save-dir (and needs to see it).
    chief = distribute.is_chief_task(config)
    try:
        if args.dry_run or not chief:
            return _train(args, config, save_dir, chief)
        check_save_dir(save_dir, config)
        release = lock_save_dir(save_dir)
        try:
            return _train(args, config, save_dir, chief)
        finally:
            release()
    except KeyboardInterrupt:
        # Before the first step (reading data, statistics): there is nothing to save.
        print(f"stopped by SIGINT before training started: no checkpoint written; run "
              f"`{args.command}` to start again", file=sys.stderr)
        return 130
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # A writer that does not name its file (a library's cache): still one line.
        raise UserError(f"cannot write {repr(e.filename) if e.filename else 'a file'} "
                        f"({e.strerror}): free space, then run `{args.command}` to resume "
                        "from the newest checkpoint") from None


def _train(args, config, save_dir, chief):
    """ 1. Load the dataset (before TensorFlow loads: a wrong folder fails in a second) """
    from datasets.data import Dataset, load_images
    images, labels = load_images(config)
    train_set = Dataset(images, labels, seed=config.seed)
    print(f"{train_set.num_examples} images of {images.shape[1:]} "
          f"({images.nbytes / 2**20:.0f} MiB as uint8)")

    import keras
    from learning.evaluator import training_evaluator
    from learning.fid import dataset_stats_path, statistics_images
    from learning.interrupt import stop_on_signal
    from learning.optimizer import MomentumOptimizer
    from models.nn import build_model

    # Name the statistics file now, so that hyperparam.json says which one FID uses.
    config = config.replace(dataset_stats_path=dataset_stats_path(
        config, len(statistics_images(config, images))))
    print("config:")
    print(json.dumps(config.to_dict(), indent=2))

    """ 2. Model, evaluator, optimizer, all in the tf.distribute strategy's scope """
    # A fresh Keras state for each run (--seeds trains several in one process): each seed's
    # run is then the run `--set seed=N` trains alone.
    keras.backend.clear_session()
    strategy = distribute.make_strategy(config)
    distribute.check_batch_size(config.batch_size, strategy.num_replicas_in_sync)
    if strategy.num_replicas_in_sync > 1 or config.strategy != "default":
        print(f"strategy {config.strategy}: {strategy.num_replicas_in_sync} replicas, "
              f"{config.batch_size // strategy.num_replicas_in_sync} images each")
    distribute.set_precision(config)
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model = build_model(config, images.shape[1:])
    if args.dry_run:
        model.generator.summary()
        model.discriminator.summary()
        print(f"dry run: would train into {save_dir}; nothing written")
        return 0

    if chief:
        config.save(os.path.join(save_dir, "hyperparam.json"))

    with strategy.scope():
        evaluator = training_evaluator(config, images, strategy) if config.eval_every else None

        """ 3. Train """
        optimizer = MomentumOptimizer(model, train_set, evaluator, config, save_dir,
                                      strategy=strategy)
    with stop_on_signal() as stop:
        result = optimizer.train(verbose=not args.quiet and chief, stop=stop)
    if result.get("stopped"):
        print(stopped_line(result, optimizer.steps_per_epoch, args.command), file=sys.stderr)
        return stop.exit_status
    print(f"Done. Run `python test.py --save-dir {save_dir}` for samples and FID.")
    return 0


def stopped_line(result, steps_per_epoch, command):
    """Where a stopped run stopped, what it saved, and the command that resumes it."""
    where = (f"at step {result['step']}, {result['step_in_epoch']} of {steps_per_epoch} "
             f"steps into epoch {result['epoch'] + 1}" if result["step_in_epoch"] else
             f"after epoch {result['epoch']} (step {result['step']})")
    return (f"stopped by {result['stopped']} {where}: saved {result['checkpoint']}; "
            f"resume with `{command}`")


if __name__ == "__main__":
    sys.exit(main())
