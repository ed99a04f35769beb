"""What a checkpoint within an epoch costs: `python bench/checkpoint.py [--config FILE]
[--rounds N] [--steps K] [--every N ...]`.

Builds the trainer train.py builds for a config, on a dataset of its true size (one random
image repeated: the step's cost does not depend on the pixels, and the saved data order
has one entry per image), then times in turn, each round: K training steps, and one
checkpoint as `checkpoint_every_steps` writes it (learning.checkpoints.save_checkpoint
into a temporary folder, with the data position the trainer saves). The machine's speed
drifts, so each round gives its own ratio; reported are the medians and ranges of:
  step_ms     one training step (loss fetched)
  save_ms     one checkpoint (models, optimizers, average, step, random stream, data order)
  cost        for each --every N: save / (N x step), the share of training time spent in
              checkpoints when one is written every N steps (the target is under 2%)
The JSON line (the last) also records the checkpoint's size and the machine.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")   # as train.py: the step train.py runs

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench.common import machine_info  # noqa: E402
from bench.serve import interleave, spread, stopwatch  # noqa: E402
from datasets.data import Dataset, image_shape  # noqa: E402
from learning.checkpoints import save_checkpoint  # noqa: E402
from learning.config import Config, add_set_argument, parse_set  # noqa: E402
from learning.optimizer import MomentumOptimizer  # noqa: E402
from models.nn import build_model  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATASET_SIZES = {"mnist": 60000, "folder": 70000}   # MNIST's training split; FFHQ


def parse_args(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--config", default=os.path.join(ROOT, "configs", "dcgan_mnist.json"))
    p.add_argument("--rounds", type=int, default=8, help="rounds of (K steps, one save)")
    p.add_argument("--steps", type=int, default=5, help="K, the steps timed each round")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps and saves first")
    p.add_argument("--every", type=int, nargs="+", default=None,
                   help="checkpoint_every_steps values to cost (default: the config's)")
    p.add_argument("--num-images", type=int, default=None,
                   help="dataset size (default: 60,000 for MNIST, 70,000 for a folder)")
    add_set_argument(p)
    return p.parse_args(argv)


def build(config, num_images, save_dir):
    """The trainer for `config` on `num_images` copies of one random image (labelled 0 for
    a conditional model)."""
    import keras
    keras.utils.set_random_seed(config.seed)
    shape = image_shape(config)
    model = build_model(config, shape)
    one = np.random.default_rng(0).integers(0, 256, (1,) + shape, dtype=np.uint8)
    labels = np.zeros(num_images, np.int64) if model.conditional else None
    train_set = Dataset(np.broadcast_to(one, (num_images,) + shape), labels, seed=config.seed)
    return MomentumOptimizer(model, train_set, None, config, save_dir)


def main(argv=None):
    args = parse_args(argv)
    config = Config.from_json(args.config)
    config = config.replace(eval_every=0, **parse_set(args.set))
    every = args.every or [config.checkpoint_every_steps]
    num_images = args.num_images or DATASET_SIZES[config.dataset]
    with tempfile.TemporaryDirectory() as save_dir:
        trainer = build(config, num_images, save_dir)
        data = trainer.train_set

        def steps():
            for _ in range(args.steps):
                batch = data.next_batch(config.batch_size)
                X, labels = batch if isinstance(batch, tuple) else (batch, None)
                labels = None if labels is None else tf.constant(labels, tf.int32)
                float(trainer.train_step(tf.constant(X), labels)["d_loss"])
                trainer.step.assign_add(1)

        def save():
            trainer.data_state.consumed = data.position()
            save_checkpoint(trainer.mid_epoch, int(trainer.step.numpy()))

        for _ in range(args.warmup):
            steps(), save()
        seconds = interleave({"steps": lambda: stopwatch(steps),
                              "save": lambda: stopwatch(save)}, args.rounds)
        path = trainer.mid_epoch.latest_checkpoint
        size = sum(os.path.getsize(f) for f in tf.io.gfile.glob(path + ".*"))
    step = [s / args.steps for s in seconds["steps"]]
    step_ms, save_ms = (spread([s * 1000 for s in x], 1) for x in (step, seconds["save"]))
    costs = {n: spread([save / (n * one) for save, one in zip(seconds["save"], step)], 5)
             for n in every}
    machine = machine_info()
    name = os.path.splitext(os.path.basename(args.config))[0]
    print(f"{name}: step {step_ms['median']} ms ({step_ms['min']} to {step_ms['max']}), "
          f"checkpoint {save_ms['median']} ms ({save_ms['min']} to {save_ms['max']}), "
          f"{size / 2**20:.1f} MiB; {machine['device']}")
    for n, cost in costs.items():
        print(f"checkpoint_every_steps {n}: {cost['median']:.2%} of training time "
              f"({cost['min']:.2%} to {cost['max']:.2%} over {args.rounds} rounds)")
    print(json.dumps({"bench": "checkpoint", "config": name, "settings": parse_set(args.set),
                      "rounds": args.rounds, "steps_per_round": args.steps,
                      "num_images": num_images, "step_ms": step_ms, "save_ms": save_ms,
                      "checkpoint_mib": round(size / 2**20, 2),
                      "cost": {str(n): c for n, c in costs.items()}, "machine": machine}))


if __name__ == "__main__":
    main()
