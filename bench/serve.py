"""Timing shared by both sides of a comparison: the project's benchmarks and the PyTorch
references, which run under another Python (one with torch and without the project's
dependencies), so this module imports nothing but the standard library.

Why passes are timed in turn, one call each: the speed a process gets on a shared machine
drifts. On the 2-core AMD EPYC these benchmarks were written on, a 4096x4096 float32
matmul ran at 75-90 GFLOP/s for half a minute and at 150-170 GFLOP/s the next (no steal
time reported). Two passes timed a minute apart can differ by 2x for no reason of their
own; timed alternately, they see the same machine, and the ratio of each round's pair is
what the benchmarks report (the median over rounds, with its range).

A reference in another process is *served*: it warms up, prints "ready", then runs one pass
for each line it reads and answers with the seconds that pass took.
"""
import statistics
import subprocess
import sys
import time


def stopwatch(fn):
    """Seconds one call of `fn` takes (`fn` must return once its work is done)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def timed(fn, repeats):
    """Median milliseconds of `repeats` calls of `fn`, after one untimed warm-up call."""
    fn()
    return statistics.median(stopwatch(fn) for _ in range(repeats)) * 1000


def serve(fn):
    """Warm up with one call of `fn`, print "ready", then time one call per line read from
    stdin and print its seconds, until stdin closes."""
    fn()
    print("ready", flush=True)
    for _ in sys.stdin:
        print(stopwatch(fn), flush=True)


class Served:
    """A served reference (a script that calls `serve`, given `--serve`) seen from the
    benchmark: calling it runs one pass in that process and returns the seconds the pass
    took there. `env`: the process's environment (default: this one's)."""

    def __init__(self, argv, env=None):
        self.argv = argv
        self.process = subprocess.Popen(argv + ["--serve"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, env=env)
        self.info = []                       # what the script printed before "ready"
        for line in self.process.stdout:
            if line.strip() == "ready":
                return
            self.info.append(line.strip())
        raise RuntimeError(f"{' '.join(argv)} exited before it was ready (status "
                           f"{self.process.wait()}); run it alone to see why")

    def __call__(self):
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"{' '.join(self.argv)} stopped answering")
        return float(line)

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=60)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def interleave(timers, rounds):
    """{name: [seconds per round]}: each of `timers` (name -> a callable returning the
    seconds of one pass) called once per round, in turn, for `rounds` rounds."""
    seconds = {name: [] for name in timers}
    for _ in range(rounds):
        for name, timer in timers.items():
            seconds[name].append(timer())
    return seconds


def speed_ratio(ours, theirs, scale=1.0, digits=3):
    """How many times faster `ours` ran than `theirs`, from their per-round seconds (times
    `scale`): {"median", "min", "max"} of the per-round ratios, and "best": the fastest
    round of each against the other's fastest (the machine at its least disturbed: the
    minimum that `timeit` recommends, less sensitive to a neighbour's load than a median)."""
    per_round = [scale * t / o for o, t in zip(ours, theirs)]
    return {**spread(per_round, digits), "best": round(scale * min(theirs) / min(ours), digits)}


def describe(ratio, fmt):
    """A speed_ratio as words, its numbers in `fmt` (e.g. ".0%")."""
    return (f"{ratio['median']:{fmt}} (median of per-round ratios; {ratio['min']:{fmt}}-"
            f"{ratio['max']:{fmt}}; best round against best round {ratio['best']:{fmt}})")


def spread(values, digits=3):
    """{"median", "min", "max"} of per-round values, rounded."""
    return {"median": round(statistics.median(values), digits),
            "min": round(min(values), digits), "max": round(max(values), digits)}
