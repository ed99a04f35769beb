"""Training-step speed: `python bench/train_step.py [--model dcgan] [--batch-size 64]
[--steps N] [--torch-python PY] [--versus KEY=VALUE ...]`.

Times the tutorial's FFHQ step (1 D + 2 G updates, 64x64, batch 64) through the trainer
that train.py uses, fed by Dataset.next_batch, on random images already in memory:
  step_ms           median of N calls of the trainer's tf.function step alone
  loop_step_ms      the same steps through the training loop (next_batch in a prefetch
                    thread, losses fetched, progress bar, TensorBoard), per step
  loop_overhead     loop_step_ms / step_ms - 1 (target: under 5%)
With --torch-python, the same network and step in PyTorch (bench/torch_reference.py) runs
in the same session as the reference, and `vs_torch` is our images/s over its images/s.
With --versus, a second trainer with those settings changed is timed in the same run,
step for step alternating with the first: `versus_speedup` is its images/s over the first's.
Each pass is also given as GFLOP/s (the step's FLOPs counted from the layers, see
bench/common.py) and as a share of a 4096x4096 `tf.matmul` timed in the same run, in the
step's dtype (float32, or bfloat16/float16 under mixed_precision). The JSON line also
records the machine (CPU model, cores, flags, TensorFlow, oneDNN).
The last line is JSON.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")   # as train.py: the step train.py runs

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench.common import (compute_dtype, describe_ceiling, gan_step_flops,  # noqa: E402
                          machine_info, matmul_ceiling, pass_speed)
from datasets.data import Dataset  # noqa: E402
from learning import distribute  # noqa: E402
from learning.config import Config, add_set_argument  # noqa: E402
from learning.optimizer import MomentumOptimizer  # noqa: E402
from models.nn import build_model  # noqa: E402


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="dcgan")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--matmul-size", type=int, default=4096,
                   help="side of the square tf.matmul that gives the machine's ceiling")
    add_set_argument(p, example='jit_compile=true mixed_precision="bfloat16"')
    p.add_argument("--versus", nargs="+", default=None, metavar="KEY=VALUE",
                   help="also time the step with these settings changed, in this run, "
                        "alternating with the first (e.g. --versus reuse_g_forward=true); "
                        "adds versus_images_per_sec and versus_speedup")
    p.add_argument("--torch-python", default=None,
                   help="a Python with torch, to run the PyTorch reference in the same run")
    return p.parse_args()


def main():
    from learning.config import parse_set
    args = parse_args()
    s = args.image_size
    config = Config.from_dict({**Config(model=args.model, image_size=(s, s),
                                        batch_size=args.batch_size, eval_every=0,
                                        sample_every=0).to_dict(), **parse_set(args.set)})
    if config.mixed_precision:
        import keras
        warning = distribute.bfloat16_warning(config)
        if warning:
            print(warning)
        keras.mixed_precision.set_global_policy(f"mixed_{config.mixed_precision}")
    images = np.random.default_rng(0).integers(0, 256, (1024, s, s, 3), dtype=np.uint8)
    train_set = Dataset(images, seed=0)
    with tempfile.TemporaryDirectory() as save_dir:
        model = build_model(config, (s, s, 3))
        flops = gan_step_flops(model, config)
        trainer = MomentumOptimizer(model, train_set, None, config, save_dir)
        batches = [tf.constant(train_set.next_batch(args.batch_size))
                   for _ in range(args.steps + args.warmup)]
        other = None
        if args.versus:
            other_config = config.replace(**parse_set(args.versus))
            other_model = build_model(other_config, (s, s, 3))
            other_flops = gan_step_flops(other_model, other_config)
            other = MomentumOptimizer(other_model, train_set, None, other_config,
                                      os.path.join(save_dir, "versus"))
        for X in batches[:args.warmup]:
            for t in filter(None, (trainer, other)):
                float(t._train_step(X, None)["d_loss"])
        times, other_times = [], []
        for X in batches[args.warmup:]:       # alternating, so both see the same load
            t = time.perf_counter()
            float(trainer._train_step(X, None)["d_loss"])
            times.append(time.perf_counter() - t)
            if other is not None:
                t = time.perf_counter()
                float(other._train_step(X, None)["d_loss"])
                other_times.append(time.perf_counter() - t)
        step_ms = statistics.median(times) * 1000
        # The ceiling next to the timed steps, so both see the same machine load.
        ceiling = matmul_ceiling(compute_dtype(config.mixed_precision), args.matmul_size)

        # The loop as train.py runs it, over the same number of steps.
        trainer.steps_per_epoch = args.steps
        writer = tf.summary.create_file_writer(os.path.join(save_dir, "logs"))
        t = time.perf_counter()
        trainer._run_epoch(1, writer, verbose=True)
        loop_step_ms = (time.perf_counter() - t) / args.steps * 1000

    images_per_sec = args.batch_size / step_ms * 1000
    loop_images_per_sec = args.batch_size / loop_step_ms * 1000
    step_gflops, step_share = pass_speed(images_per_sec, flops["step"], ceiling)
    loop_gflops, loop_share = pass_speed(loop_images_per_sec, flops["step"], ceiling)
    machine = machine_info()
    result = {"bench": "train_step", "model": args.model, "batch_size": args.batch_size,
              "image_size": s, "device": machine["device"], "tf": tf.__version__,
              "settings": parse_set(args.set), "step_ms": round(step_ms, 2),
              "images_per_sec": round(images_per_sec, 2),
              "loop_step_ms": round(loop_step_ms, 2),
              "loop_overhead": round(loop_step_ms / step_ms - 1, 4),
              "gflop_per_image": {k: round(v / 1e9, 4) for k, v in flops.items()},
              "matmul": ceiling, "step_gflops": step_gflops, "step_of_matmul": step_share,
              "loop_gflops": loop_gflops, "loop_of_matmul": loop_share, "machine": machine}
    print(f"{machine['device']}; flags {machine['flags']}; TensorFlow {tf.__version__}, "
          f"oneDNN {'on' if machine['onednn'] else 'off'}")
    print(f"FLOPs per image: G forward {flops['G_forward'] / 1e9:.3f} G, D forward "
          f"{flops['D_forward'] / 1e9:.3f} G, step {flops['step'] / 1e9:.3f} G "
          f"(1 D + {config.g_updates_per_step} G updates)")
    print(describe_ceiling(ceiling))
    print(f"trainer step: {step_ms:.1f} ms ({result['images_per_sec']} images/s) = "
          f"{step_gflops} GFLOP/s, {step_share:.0%} of the matmul; through the loop "
          f"{loop_step_ms:.1f} ms per step = {loop_gflops} GFLOP/s, {loop_share:.0%}")
    if other_times:
        other_ms = statistics.median(other_times) * 1000
        other_per_sec = args.batch_size / other_ms * 1000
        other_gflops, other_share = pass_speed(other_per_sec, other_flops["step"], ceiling)
        result.update(versus=parse_set(args.versus), versus_step_ms=round(other_ms, 2),
                      versus_images_per_sec=round(other_per_sec, 2),
                      versus_speedup=round(other_per_sec / images_per_sec, 3),
                      versus_gflops=other_gflops, versus_of_matmul=other_share)
        print(f"with {' '.join(args.versus)}: {other_ms:.1f} ms ({other_per_sec:.2f} "
              f"images/s) = {other_gflops} GFLOP/s, {other_share:.0%} of the matmul; "
              f"{result['versus_speedup']}x the first")
    if args.torch_python:
        ref = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_reference.py")
        out = subprocess.run([args.torch_python, ref, "--batch-size", str(args.batch_size),
                              "--steps", str(args.steps)], capture_output=True, text=True,
                             check=True)
        torch_result = json.loads(out.stdout.strip().splitlines()[-1])
        result["torch_images_per_sec"] = round(torch_result["images_per_sec"], 2)
        result["vs_torch"] = round(result["images_per_sec"] / torch_result["images_per_sec"], 3)
        torch_gflops, torch_share = pass_speed(torch_result["images_per_sec"], flops["step"],
                                               ceiling)
        result.update(torch_gflops=torch_gflops, torch_of_matmul=torch_share)
        print(f"PyTorch reference: {torch_result['images_per_sec']:.1f} images/s = "
              f"{torch_gflops} GFLOP/s, {torch_share:.0%} of the tf.matmul; "
              f"ours / PyTorch = {result['vs_torch']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
