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
                    FLOPs counted from the layers, see bench/common.py); *_best: the
                    fastest step against the fastest matmul of the run (each ratio has one)
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

from common.errors import ArgumentParser, exit_on_user_error  # noqa: E402
from bench.common import (ceiling_from, compute_dtype, describe_ceiling,  # noqa: E402
                          gan_step_flops, machine_info, matmul_timer)
from bench.serve import (Served, describe, interleave, serve, speed_ratio,  # noqa: E402
                         spread, stopwatch)
from datasets.data import Dataset  # noqa: E402
from learning import distribute  # noqa: E402
from learning.config import Config, add_set_argument, parse_set  # noqa: E402
from learning.interrupt import StopRequest  # noqa: E402
from learning.optimizer import MomentumOptimizer  # noqa: E402
from learning.records import Records  # noqa: E402
from models.nn import build_model  # noqa: E402


# Settings that hold for a whole process: the precision policy is global in Keras, and the
# devices and strategy are set up once, before any model. A second trainer in the same
# process would run with the first one's, so --versus cannot time them.
PROCESS_WIDE = ("mixed_precision", "strategy", "logical_cpu_devices")


def parse_args(argv=None):
    p = ArgumentParser()
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
                        "alternating with the first (e.g. --versus jit_compile=true); "
                        "adds versus_images_per_sec and versus_speedup")
    p.add_argument("--versus-env", nargs="+", default=None, metavar="NAME=VALUE",
                   help="also time the step in a copy of this benchmark with these "
                        "environment variables set, alternating with ours (e.g. "
                        "--versus-env TF_ENABLE_ONEDNN_OPTS=0)")
    p.add_argument("--torch-python", default=None,
                   help="a Python with torch, to run the PyTorch reference in the same run")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # --versus-env's
    args = p.parse_args(argv)
    for flag, items, form in (("--versus", args.versus, "KEY=VALUE, e.g. jit_compile=true"),
                              ("--versus-env", args.versus_env,
                               "NAME=VALUE, e.g. TF_ENABLE_ONEDNN_OPTS=0")):
        bad = [item for item in items or [] if "=" not in item]
        if bad:
            p.error(f"{flag} '{bad[0]}': expected {form}")
    fixed = [k for k in parse_set(args.versus) if k in PROCESS_WIDE]
    if fixed:
        p.error(f"--versus {fixed[0]}: it holds for the whole process, so a second trainer "
                "in this one would time the first one's setting again; time each setting "
                f"in a run of its own (--set {fixed[0]}=...)")
    return args


def step_timer(trainer, batches):
    """Seconds of one call of the trainer's step on the next batch, loss fetched."""
    feed = itertools.cycle(batches)
    return lambda: stopwatch(lambda: float(trainer.train_step(next(feed), None)["d_loss"]))


def loop_overhead(trainer, batches, rounds, steps):
    """Per round: an epoch of `steps` steps through the training loop over `steps` bare
    steps, minus 1."""
    trainer.steps_per_epoch = steps
    bare = step_timer(trainer, batches)

    def epoch(records, writer):
        trainer.step_in_epoch.assign(0)               # each round a whole epoch
        trainer._run_epoch(1, records, writer, verbose=True, stop=StopRequest())
    with tempfile.TemporaryDirectory() as logs:
        writer = tf.summary.create_file_writer(logs)
        records = Records(logs, False, 0, 0)        # the losses kept, as in train.py
        out = []
        for _ in range(rounds):
            loop = stopwatch(lambda: epoch(records, writer))
            out.append(loop / sum(bare() for _ in range(steps)) - 1)
    return out


@exit_on_user_error
def main():
    args = parse_args()
    s = args.image_size
    if args.torch_python and (s != 64 or args.model != "dcgan"):
        print("--torch-python: the PyTorch reference is the tutorial's 64x64 DCGAN step; "
              "leave out --image-size and --model", file=sys.stderr)
        sys.exit(2)
    config = Config.from_dict({**Config(model=args.model, image_size=(s, s),
                                        batch_size=args.batch_size, eval_every=0,
                                        sample_every=0).to_dict(), **parse_set(args.set)})
    distribute.set_precision(config)
    images = np.random.default_rng(0).integers(0, 256, (1024, s, s, 3), dtype=np.uint8)
    run = time_steps(args, config, Dataset(images, seed=0))
    if run is None:                               # --serve: the copy --versus-env runs
        return
    result = report_step(args, config, run)
    if args.versus:
        speedup = against(args, run, result, "versus", run["seconds"]["versus"],
                          run["versus_flops"], f"with {' '.join(args.versus)}")
        result.update(versus=parse_set(args.versus), **_ratio_fields("versus", speedup))
    if args.versus_env:
        onednn = run["versus_env_machine"]["onednn"]
        speedup = against(args, run, result, "versus_env", run["seconds"]["versus_env"],
                          run["flops"]["step"], f"with {' '.join(args.versus_env)} (another "
                          f"process, oneDNN {'on' if onednn else 'off'})")
        result.update(versus_env=args.versus_env, versus_env_onednn=onednn,
                      **_ratio_fields("versus_env", speedup))
    if args.torch_python:
        torch_info = run["torch_info"]
        vs_torch = against(args, run, result, "torch", run["seconds"]["pytorch"],
                           run["flops"]["step"], f"PyTorch {torch_info['torch']} reference",
                           its_over_ours=False)
        result.update(torch=torch_info["torch"], torch_threads=torch_info["threads"],
                      vs_torch=vs_torch["median"], vs_torch_range=[vs_torch["min"],
                                                                   vs_torch["max"]],
                      vs_torch_best=vs_torch["best"])
    print(json.dumps(result))


def time_steps(args, config, train_set):
    """The matmul, our step and what is compared with it, timed in turn for `--rounds`
    rounds, then the training loop's overhead. Returns the seconds and what the report
    needs; None for --serve, which serves the step until its parent is done."""
    s, dtype = args.image_size, compute_dtype(config.mixed_precision)
    run = {}
    with tempfile.TemporaryDirectory() as save_dir, contextlib.ExitStack() as stack:
        model = build_model(config, (s, s, 3))
        run["flops"] = gan_step_flops(model, config)
        trainer = MomentumOptimizer(model, train_set, None, config, save_dir)
        batches = [tf.constant(train_set.next_batch(args.batch_size)) for _ in range(8)]
        timers = {"matmul": matmul_timer(dtype, args.matmul_size),
                  "step": step_timer(trainer, batches)}
        if args.versus:
            other_config = config.replace(**parse_set(args.versus))
            other_model = build_model(other_config, (s, s, 3))
            run["versus_flops"] = gan_step_flops(other_model, other_config)["step"]
            other = MomentumOptimizer(other_model, train_set, None, other_config,
                                      os.path.join(save_dir, "versus"))
            timers["versus"] = step_timer(other, batches)
        for _ in range(args.warmup):
            for name in ("step", "versus"):
                if name in timers:
                    timers[name]()
        if args.serve:
            print(json.dumps({"machine": machine_info()}))
            feed = itertools.cycle(batches)
            serve(lambda: float(trainer.train_step(next(feed), None)["d_loss"]))
            return None
        if args.versus_env:
            timers["versus_env"] = stack.enter_context(_served_copy(args))
            run["versus_env_machine"] = json.loads(timers["versus_env"].info[-1])["machine"]
        if args.torch_python:
            ref = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_reference.py")
            timers["pytorch"] = stack.enter_context(Served(
                [args.torch_python, ref, "--batch-size", str(args.batch_size),
                 "--warmup", str(args.warmup)]))
        run["seconds"] = interleave(timers, args.rounds)
        if args.torch_python:
            run["torch_info"] = json.loads(timers["pytorch"].info[-1])
        stack.close()                    # the served processes end before the loop is timed
        run["overheads"] = loop_overhead(trainer, batches, args.loop_rounds, args.loop_steps)
    return run


def _served_copy(args):
    """This benchmark in another process with --versus-env's variables, serving its step."""
    env = {**os.environ, **dict(item.split("=", 1) for item in args.versus_env)}
    argv = [sys.executable, os.path.abspath(__file__), "--model", args.model,
            "--batch-size", str(args.batch_size), "--image-size", str(args.image_size),
            "--warmup", str(args.warmup)]
    argv += [a for group in args.set for a in ["--set", *group]]
    return Served(argv, env=env)


def report_step(args, config, run):
    """Print our step's speed against the matmul and the loop's overhead; return the JSON
    line's fields."""
    seconds, flops, n = run["seconds"], run["flops"], args.matmul_size
    ceiling = ceiling_from(seconds["matmul"], compute_dtype(config.mixed_precision), n)
    step_ms = statistics.median(seconds["step"]) * 1000
    # A step's share of the matmul is (step FLOPs / step s) / (matmul FLOPs / matmul s).
    share = args.batch_size * flops["step"] / (2 * n ** 3)
    of_matmul = speed_ratio(seconds["step"], seconds["matmul"], share)
    overhead = spread(run["overheads"], 4)
    machine = machine_info()
    result = {"bench": "train_step", "model": args.model, "batch_size": args.batch_size,
              "image_size": args.image_size, "device": machine["device"],
              "tf": tf.__version__, "settings": parse_set(args.set), "rounds": args.rounds,
              "step_ms": round(step_ms, 2),
              "images_per_sec": round(args.batch_size / step_ms * 1000, 2),
              "step_ms_range": [round(min(seconds["step"]) * 1000, 1),
                                round(max(seconds["step"]) * 1000, 1)],
              "gflop_per_image": {k: round(v / 1e9, 4) for k, v in flops.items()},
              "matmul": ceiling,
              "step_gflops": round(args.batch_size * flops["step"] / step_ms / 1e6, 1),
              "step_of_matmul": of_matmul["median"],
              "step_of_matmul_range": [of_matmul["min"], of_matmul["max"]],
              "step_of_matmul_best": of_matmul["best"],
              "loop_overhead": overhead["median"],
              "loop_overhead_range": [overhead["min"], overhead["max"]], "machine": machine}
    print(f"{machine['device']}; flags {machine['flags']}; TensorFlow {tf.__version__}, "
          f"oneDNN {'on' if machine['onednn'] else 'off'}")
    print(f"FLOPs per image: G forward {flops['G_forward'] / 1e9:.3f} G, D forward "
          f"{flops['D_forward'] / 1e9:.3f} G, step {flops['step'] / 1e9:.3f} G "
          f"(1 D + {config.g_updates_per_step} G updates)")
    print(describe_ceiling(ceiling))
    print(f"trainer step: {step_ms:.1f} ms ({result['images_per_sec']} images/s) = "
          f"{result['step_gflops']} GFLOP/s; of the same round's matmul: "
          f"{describe(of_matmul, '.0%')}")
    print(f"through the training loop: {overhead['median']:+.1%} per step (median of "
          f"{args.loop_rounds} rounds of {args.loop_steps} steps; {overhead['min']:+.1%} to "
          f"{overhead['max']:+.1%})")
    return result


def against(args, run, result, name, other_seconds, other_flops, label, its_over_ours=True):
    """Result fields and a line for a step timed in turn with ours; returns the speed
    ratio, its over ours or ours over its."""
    seconds, n = run["seconds"], args.matmul_size
    ms = statistics.median(other_seconds) * 1000
    speedup = (speed_ratio(other_seconds, seconds["step"]) if its_over_ours
               else speed_ratio(seconds["step"], other_seconds))
    matmul = speed_ratio(other_seconds, seconds["matmul"],
                         args.batch_size * other_flops / (2 * n ** 3))
    result.update({f"{name}_step_ms": round(ms, 2),
                   f"{name}_images_per_sec": round(args.batch_size / ms * 1000, 2),
                   f"{name}_of_matmul": matmul["median"],
                   f"{name}_of_matmul_best": matmul["best"]})
    print(f"{label}: {ms:.1f} ms ({result[f'{name}_images_per_sec']} images/s), "
          f"{matmul['median']:.0%} of the matmul; "
          f"{'its speed / ours' if its_over_ours else 'ours / its'}: {describe(speedup, '')}")
    return speedup


def _ratio_fields(name, speedup):
    return {f"{name}_speedup": speedup["median"],
            f"{name}_speedup_range": [speedup["min"], speedup["max"]],
            f"{name}_speedup_best": speedup["best"]}


if __name__ == "__main__":
    main()
