"""Training-step speed: `python bench/train_step.py [--model dcgan] [--batch-size 64]
[--rounds N] [--torch-python PY] [--versus KEY=VALUE ...]`.

Times the tutorial's FFHQ step (1 D + 2 G updates, 64x64, batch 64) through the trainer
that train.py uses, fed by Dataset.next_batch, on random images already in memory. The
machine's speed drifts (bench/serve.py), so everything compared is timed in turn, one call
each per round: a 4096x4096 `tf.matmul` in the step's dtype (the ceiling), our step, the
--versus step, the PyTorch step; each ratio is taken within a round, and the median over
rounds is reported with its range:
  step_ms           median of the trainer's tf.function step alone
  step_of_matmul    the step's GFLOP/s over the same round's matmul GFLOP/s (the step's
                    FLOPs counted from the layers, see bench/common.py)
  vs_torch          with --torch-python: the same network and step in PyTorch
                    (bench/torch_reference.py, served by another Python), its seconds over
                    ours (above 1: ours faster)
  versus_speedup    with --versus: a second trainer with those settings changed, our
                    seconds over its seconds
  versus_env_speedup  with --versus-env: the same step in a copy of this benchmark run
                    with those environment variables set (served, bench/serve.py): what
                    cannot change inside one process, such as TF_ENABLE_ONEDNN_OPTS or
                    TF_NUM_INTEROP_THREADS; our seconds over its seconds
  loop_overhead     --loop-rounds rounds of an epoch of --loop-steps steps through the
                    training loop (next_batch in a prefetch thread, losses fetched, progress
                    bar, TensorBoard) against as many bare steps: loop / bare - 1 (target:
                    under 5%)
The JSON line (the last) also records the machine (CPU model, cores, flags, TensorFlow,
oneDNN).
"""
import argparse
import contextlib
import itertools
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

from bench.common import (ceiling_from, compute_dtype, describe_ceiling,  # noqa: E402
                          gan_step_flops, machine_info, matmul_gflops, matmul_timer)
from bench.serve import Served, interleave, serve, spread, stopwatch  # noqa: E402
from datasets.data import Dataset  # noqa: E402
from learning import distribute  # noqa: E402
from learning.config import Config, add_set_argument  # noqa: E402
from learning.optimizer import MomentumOptimizer  # noqa: E402
from models.nn import build_model  # noqa: E402


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="dcgan")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--rounds", type=int, default=10,
                   help="rounds of (matmul, step, [versus step], [PyTorch step]), timed in turn")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first, each side")
    p.add_argument("--loop-rounds", type=int, default=3)
    p.add_argument("--loop-steps", type=int, default=4)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--matmul-size", type=int, default=4096,
                   help="side of the square tf.matmul that gives the machine's ceiling")
    add_set_argument(p, example='jit_compile=true mixed_precision="bfloat16"')
    p.add_argument("--versus", nargs="+", default=None, metavar="KEY=VALUE",
                   help="also time the step with these settings changed, in this run, "
                        "alternating with the first (e.g. --versus reuse_g_forward=true); "
                        "adds versus_images_per_sec and versus_speedup")
    p.add_argument("--versus-env", nargs="+", default=None, metavar="NAME=VALUE",
                   help="also time the step in a copy of this benchmark with these "
                        "environment variables set, alternating with ours (e.g. "
                        "--versus-env TF_ENABLE_ONEDNN_OPTS=0)")
    p.add_argument("--torch-python", default=None,
                   help="a Python with torch, to run the PyTorch reference in the same run")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # --versus-env's
    return p.parse_args()


def step_timer(trainer, batches):
    """Seconds of one call of the trainer's step on the next batch, loss fetched."""
    feed = itertools.cycle(batches)
    return lambda: stopwatch(lambda: float(trainer._train_step(next(feed), None)["d_loss"]))


def loop_overhead(trainer, batches, rounds, steps):
    """Per round: an epoch of `steps` steps through the training loop over `steps` bare
    steps, minus 1."""
    trainer.steps_per_epoch = steps
    bare = step_timer(trainer, batches)
    with tempfile.TemporaryDirectory() as logs:
        writer = tf.summary.create_file_writer(logs)
        out = []
        for _ in range(rounds):
            loop = stopwatch(lambda: trainer._run_epoch(1, writer, verbose=True))
            out.append(loop / sum(bare() for _ in range(steps)) - 1)
    return out


def main():
    from learning.config import parse_set
    args = parse_args()
    s = args.image_size
    if args.torch_python and (s != 64 or args.model != "dcgan"):
        print("--torch-python: the PyTorch reference is the tutorial's 64x64 DCGAN step; "
              "leave out --image-size and --model", file=sys.stderr)
        sys.exit(2)
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
    dtype, n = compute_dtype(config.mixed_precision), args.matmul_size
    with tempfile.TemporaryDirectory() as save_dir, contextlib.ExitStack() as stack:
        model = build_model(config, (s, s, 3))
        flops = gan_step_flops(model, config)
        trainer = MomentumOptimizer(model, train_set, None, config, save_dir)
        batches = [tf.constant(train_set.next_batch(args.batch_size)) for _ in range(8)]
        timers = {"matmul": matmul_timer(dtype, n), "step": step_timer(trainer, batches)}
        if args.versus:
            other_config = config.replace(**parse_set(args.versus))
            other_model = build_model(other_config, (s, s, 3))
            other_flops = gan_step_flops(other_model, other_config)
            other = MomentumOptimizer(other_model, train_set, None, other_config,
                                      os.path.join(save_dir, "versus"))
            timers["versus"] = step_timer(other, batches)
        for _ in range(args.warmup):
            for name in ("step", "versus"):
                if name in timers:
                    timers[name]()
        if args.serve:                            # the copy --versus-env runs
            print(json.dumps({"machine": machine_info()}))
            feed = itertools.cycle(batches)
            serve(lambda: float(trainer._train_step(next(feed), None)["d_loss"]))
            return
        if args.versus_env:
            env = {**os.environ, **dict(item.split("=", 1) for item in args.versus_env)}
            argv = [sys.executable, os.path.abspath(__file__), "--model", args.model,
                    "--batch-size", str(args.batch_size), "--image-size", str(s),
                    "--warmup", str(args.warmup)]
            argv += [a for group in args.set for a in ["--set", *group]]
            timers["versus_env"] = stack.enter_context(Served(argv, env=env))
            versus_env_machine = json.loads(timers["versus_env"].info[-1])["machine"]
        if args.torch_python:
            ref = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_reference.py")
            timers["pytorch"] = stack.enter_context(Served(
                [args.torch_python, ref, "--batch-size", str(args.batch_size),
                 "--warmup", str(args.warmup)]))
        seconds = interleave(timers, args.rounds)
        if args.torch_python:
            torch_info = json.loads(timers["pytorch"].info[-1])
        stack.close()                    # the served processes end before the loop is timed
        overheads = loop_overhead(trainer, batches, args.loop_rounds, args.loop_steps)

    def gflops(step_seconds, step_flops):
        return args.batch_size * step_flops / step_seconds / 1e9

    ceiling = ceiling_from(seconds["matmul"], dtype, n)
    step_ms = statistics.median(seconds["step"]) * 1000
    images_per_sec = args.batch_size / step_ms * 1000
    of_matmul = [gflops(t, flops["step"]) / matmul_gflops(m, n)
                 for t, m in zip(seconds["step"], seconds["matmul"])]
    machine = machine_info()
    result = {"bench": "train_step", "model": args.model, "batch_size": args.batch_size,
              "image_size": s, "device": machine["device"], "tf": tf.__version__,
              "settings": parse_set(args.set), "rounds": args.rounds,
              "step_ms": round(step_ms, 2), "images_per_sec": round(images_per_sec, 2),
              "step_ms_range": [round(min(seconds["step"]) * 1000, 1),
                                round(max(seconds["step"]) * 1000, 1)],
              "gflop_per_image": {k: round(v / 1e9, 4) for k, v in flops.items()},
              "matmul": ceiling, "step_gflops": round(gflops(step_ms / 1000, flops["step"]), 1),
              "step_of_matmul": spread(of_matmul)["median"],
              "step_of_matmul_range": list(spread(of_matmul).values())[1:],
              "loop_overhead": spread(overheads, 4)["median"],
              "loop_overhead_range": list(spread(overheads, 4).values())[1:],
              "machine": machine}
    print(f"{machine['device']}; flags {machine['flags']}; TensorFlow {tf.__version__}, "
          f"oneDNN {'on' if machine['onednn'] else 'off'}")
    print(f"FLOPs per image: G forward {flops['G_forward'] / 1e9:.3f} G, D forward "
          f"{flops['D_forward'] / 1e9:.3f} G, step {flops['step'] / 1e9:.3f} G "
          f"(1 D + {config.g_updates_per_step} G updates)")
    print(describe_ceiling(ceiling))
    low, high = result["step_of_matmul_range"]
    print(f"trainer step: {step_ms:.1f} ms ({result['images_per_sec']} images/s) = "
          f"{result['step_gflops']} GFLOP/s; {result['step_of_matmul']:.0%} of the same "
          f"round's matmul (median of {args.rounds} rounds; {low:.0%}-{high:.0%})")
    low, high = result["loop_overhead_range"]
    print(f"through the training loop: {result['loop_overhead']:+.1%} per step (median of "
          f"{args.loop_rounds} rounds of {args.loop_steps} steps; {low:+.1%} to {high:+.1%})")
    if args.versus:
        versus_ms = statistics.median(seconds["versus"]) * 1000
        speedup = spread([t / v for t, v in zip(seconds["step"], seconds["versus"])])
        versus_share = spread([gflops(v, other_flops["step"]) / matmul_gflops(m, n)
                               for v, m in zip(seconds["versus"], seconds["matmul"])])
        result.update(versus=parse_set(args.versus), versus_step_ms=round(versus_ms, 2),
                      versus_images_per_sec=round(args.batch_size / versus_ms * 1000, 2),
                      versus_speedup=speedup["median"],
                      versus_speedup_range=[speedup["min"], speedup["max"]],
                      versus_of_matmul=versus_share["median"])
        print(f"with {' '.join(args.versus)}: {versus_ms:.1f} ms "
              f"({result['versus_images_per_sec']} images/s), {versus_share['median']:.0%} "
              f"of the matmul; {speedup['median']}x the first ({speedup['min']}-"
              f"{speedup['max']}, round by round)")
    if args.versus_env:
        env_ms = statistics.median(seconds["versus_env"]) * 1000
        speedup = spread([t / v for t, v in zip(seconds["step"], seconds["versus_env"])])
        env_share = spread([gflops(v, flops["step"]) / matmul_gflops(m, n)
                            for v, m in zip(seconds["versus_env"], seconds["matmul"])])
        result.update(versus_env=args.versus_env, versus_env_step_ms=round(env_ms, 2),
                      versus_env_images_per_sec=round(args.batch_size / env_ms * 1000, 2),
                      versus_env_speedup=speedup["median"],
                      versus_env_speedup_range=[speedup["min"], speedup["max"]],
                      versus_env_of_matmul=env_share["median"],
                      versus_env_onednn=versus_env_machine["onednn"])
        print(f"with {' '.join(args.versus_env)} (another process, oneDNN "
              f"{'on' if versus_env_machine['onednn'] else 'off'}): {env_ms:.1f} ms "
              f"({result['versus_env_images_per_sec']} images/s), {env_share['median']:.0%} of "
              f"this process's matmul; {speedup['median']}x the first ({speedup['min']}-"
              f"{speedup['max']}, round by round)")
    if args.torch_python:
        torch_ms = statistics.median(seconds["pytorch"]) * 1000
        vs_torch = spread([p / t for t, p in zip(seconds["step"], seconds["pytorch"])])
        torch_share = spread([gflops(p, flops["step"]) / matmul_gflops(m, n)
                              for p, m in zip(seconds["pytorch"], seconds["matmul"])])
        result.update(torch=torch_info["torch"], torch_threads=torch_info["threads"],
                      torch_step_ms=round(torch_ms, 2),
                      torch_images_per_sec=round(args.batch_size / torch_ms * 1000, 2),
                      vs_torch=vs_torch["median"], vs_torch_range=[vs_torch["min"],
                                                                   vs_torch["max"]],
                      torch_of_matmul=torch_share["median"])
        print(f"PyTorch {torch_info['torch']} reference: {torch_ms:.1f} ms "
              f"({result['torch_images_per_sec']} images/s), {torch_share['median']:.0%} of "
              f"the tf.matmul; ours / PyTorch = {vs_torch['median']} ({vs_torch['min']}-"
              f"{vs_torch['max']}, round by round)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
