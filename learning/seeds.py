"""Several training seeds of one config: the folder that holds them, and their scores as a
distribution (mean ± standard deviation over seeds), as GAN results are reported.

`python train.py --config C --seeds 0 1 2 --save-dir runs/X` trains runs/X/seed0, seed1,
seed2 (each an ordinary run folder, resumable on its own), and runs/X/seeds.json names the
config and the seeds. `python test.py --save-dir runs/X` scores every seed and writes the
table (seeds.md, seeds.json) and every seed's FID curve (fid_curves.png).
`python -m learning.seeds runs/X pretrained/NAME/seeds_LABEL` keeps the records of such a
folder (no checkpoints: a few kilobytes) where `python test.py --save-dir` on the copy
rebuilds the same table, so a table outlives the machine that trained its seeds.

Imports no TensorFlow: a wrong folder fails in a second.
"""
import filecmp
import glob
import json
import math
import os
import sys

from common.errors import ArgumentParser, UserError, exit_on_user_error
from common.files import write_atomic, write_json_atomic
from learning.config import Config
from learning.records import read_jsonl

SEEDS_FILE = "seeds.json"


def seed_folder(parent, seed):
    return os.path.join(parent, f"seed{seed}")


def claim_parent(parent, config, seeds, command):
    """Create `parent` for `config` trained under `seeds` (or take up the one made before),
    and return [(seed, its run folder)]. Refused: a parent made for another config (any key
    but the seed), and a seed folder whose run holds another seed."""
    if os.path.exists(parent) and not os.path.isdir(parent):
        raise UserError(f"--save-dir '{parent}' is a file: pass a folder for the seeds' runs")
    if os.path.isdir(parent) and not os.path.exists(os.path.join(parent, SEEDS_FILE)) and (
            os.path.exists(os.path.join(parent, "hyperparam.json"))):
        raise UserError(f"--save-dir '{parent}' holds a single run: give --seeds a new folder")
    record = read_parent(parent) if os.path.exists(os.path.join(parent, SEEDS_FILE)) else None
    shared = _without_seed(config)
    if record is not None:
        # A key added to Config since the parent was made takes its default there.
        stored = {**_without_seed(Config()), **record["config"]}
        changed = sorted(k for k in set(shared) | set(stored) if shared.get(k) != stored.get(k))
        if changed:
            k = changed[0]
            raise UserError(
                f"--save-dir '{parent}' holds seeds of another config ({k}="
                f"{json.dumps(record['config'].get(k))}, not {json.dumps(shared.get(k))}"
                f"{f' and {len(changed) - 1} more keys' if len(changed) > 1 else ''}): "
                "use a new --save-dir, so that every seed's run is the same but for its seed")
    folders = [(seed, seed_folder(parent, seed)) for seed in seeds]
    for seed, folder in folders:
        _check_seed(folder, seed)
    known = record["seeds"] if record else []
    os.makedirs(parent, exist_ok=True)
    write_json_atomic(os.path.join(parent, SEEDS_FILE), {
        "seeds": known + [s for s in seeds if s not in known],
        "config": shared, "command": command})
    return folders


def read_parent(parent):
    """seeds.json of a multi-seed folder: {"seeds", "config" (without its seed), "command"}."""
    path = os.path.join(parent, SEEDS_FILE)
    try:
        with open(path) as f:
            record = json.load(f)
        if not isinstance(record.get("seeds"), list) or not isinstance(record.get("config"),
                                                                        dict):
            raise ValueError("no seeds or config")
    except (OSError, ValueError, AttributeError) as e:
        raise UserError(f"'{path}' cannot be read ({e}): it is written by `python train.py "
                        "--seeds ...`; run that again") from None
    return record


def is_parent(path):
    return os.path.isfile(os.path.join(path, SEEDS_FILE))


def seed_runs(parent):
    """[(seed, run folder)] of the seeds in `parent` that have a run (hyperparam.json), in
    seeds.json's order, each checked to hold its own seed."""
    runs = []
    for seed in read_parent(parent)["seeds"]:
        folder = seed_folder(parent, seed)
        if os.path.exists(os.path.join(folder, "hyperparam.json")):
            _check_seed(folder, seed)
            runs.append((seed, folder))
    if not runs:
        raise UserError(f"'{parent}' has no trained seed yet: run the command in its "
                        f"{SEEDS_FILE} first")
    return runs


def epochs_done(folder):
    """The last epoch a run finished (its metrics.jsonl), 0 before the first: a seed is
    scored only once it has trained to its config's num_epochs."""
    return max((r.get("epoch", 0) for r in read_jsonl(os.path.join(folder, "metrics.jsonl"))),
               default=0)


def _check_seed(folder, seed):
    path = os.path.join(folder, "hyperparam.json")
    if os.path.exists(path):
        held = Config.from_json(path).seed
        if held != seed:
            raise UserError(f"'{folder}' holds a run of seed {held}, not {seed}: move it "
                            "away; seed folders are named for the seed they were trained with")


def _without_seed(config):
    out = config.to_dict()
    out.pop("seed")
    return out


def mean_std(values):
    """(mean, sample standard deviation (n - 1)) of a list of numbers; std is None for one
    value: a single run has no spread."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


# What the table shows for each split, and the digits it shows them with.
COLUMNS = (("fid", "FID", 2), ("kid", "KID", 4), ("precision", "precision", 3),
           ("recall", "recall", 3), ("density", "density", 3), ("coverage", "coverage", 3))


def summarize(scores):
    """{seed: record} (each with "splits": {split: {metric: value}} and optionally
    "class_accuracy") -> {"n": N, "mean": {...}, "std": {...}} in the same shape."""
    records = list(scores.values())
    out = {"n": len(records), "mean": {"splits": {}}, "std": {"splits": {}}}
    for split in records[0]["splits"]:
        for name in records[0]["splits"][split]:
            values = [r["splits"][split][name] for r in records]
            mean, std = mean_std(values)
            out["mean"]["splits"].setdefault(split, {})[name] = mean
            out["std"]["splits"].setdefault(split, {})[name] = std
    if all("class_accuracy" in r for r in records):
        out["mean"]["class_accuracy"], out["std"]["class_accuracy"] = mean_std(
            [r["class_accuracy"] for r in records])
    return out


def _pm(mean, std, digits):
    return f"{mean:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")


def table(scores, summary):
    """The Markdown table: a row per seed, then mean ± std (n - 1) over the seeds."""
    first = next(iter(scores.values()))
    splits = list(first["splits"])
    accuracy = "class_accuracy" in summary["mean"]
    head = ["seed"] + [f"{label} ({split})" for split in splits for key, label, _ in COLUMNS
                       if key in first["splits"][split]] + (["class accuracy"] if accuracy
                                                            else [])
    rows = []
    for seed, record in scores.items():
        rows.append([str(seed)] + [f"{record['splits'][s][k]:.{d}f}" for s in splits
                                   for k, _, d in COLUMNS if k in first["splits"][s]]
                    + ([f"{record['class_accuracy']:.4f}"] if accuracy else []))
    mean, std = summary["mean"], summary["std"]
    rows.append([f"mean ± std ({summary['n']} run{'s' if summary['n'] != 1 else ''})"]
                + [_pm(mean["splits"][s][k], std["splits"][s][k], d) for s in splits
                   for k, _, d in COLUMNS if k in first["splits"][s]]
                + ([_pm(mean["class_accuracy"], std["class_accuracy"], 4)] if accuracy
                   else []))
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def plot_fid_curves(runs, path):
    """Every seed's in-training FID against the epoch (metrics.jsonl), and their mean where
    all seeds were scored, in one figure."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    curves = {}
    for seed, folder in runs:
        points = [(r["epoch"], r["fid"]) for r in
                  read_jsonl(os.path.join(folder, "metrics.jsonl")) if r.get("fid") is not None]
        if points:
            curves[seed] = dict(points)
            ax.plot(*zip(*points), marker="o", markersize=3, linewidth=1, alpha=0.7,
                    label=f"seed {seed}")
    shared = sorted(set.intersection(*(set(c) for c in curves.values()))) if curves else []
    if len(curves) > 1 and shared:
        ax.plot(shared, [sum(c[e] for c in curves.values()) / len(curves) for e in shared],
                color="black", linewidth=2, label=f"mean of {len(curves)}")
    n = {r.get("n_samples") for _, f in runs
         for r in read_jsonl(os.path.join(f, "metrics.jsonl")) if r.get("fid") is not None}
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"FID ({', '.join(str(v) for v in sorted(n) if v)} samples)")
    ax.set_title("FID during training, every seed")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# What keep_records copies: the parent's records and each seed's; never a checkpoint.
RECORDS = ("seeds.json", "seeds_n*_seed*.md", "seeds_n*_seed*.json",
           "seed*/hyperparam.json", "seed*/metrics.jsonl", "seed*/best/best.json",
           "seed*/scores_n*_seed*.json")


def _seed_of(path):
    """'seed2' for 'seed2/metrics.jsonl' (a path in a seeds' folder); None for the parent's."""
    return path.split(os.sep)[0] if os.sep in path else None


def keep_records(parent, dest):
    """Copy the records of `parent` (a `train.py --seeds` folder, scored by test.py) to
    `dest`: what `test.py --save-dir dest` needs to rebuild the table with no checkpoint.
    Seeds not scored yet are left out. The parent's own files (seeds.json, the table) are
    replaced, as they grow with each seed scored; a seed's record already in `dest` with
    other content is refused before anything is copied (a seed's record is never
    overwritten), and the same one again is left as it is. Returns the paths written,
    relative to `dest`."""
    read_parent(parent)
    files = sorted({os.path.relpath(p, parent) for pattern in RECORDS
                    for p in glob.glob(os.path.join(parent, pattern))})
    # A seed still training is left out: its metrics.jsonl grows until it is scored.
    scored = {_seed_of(f) for f in files if os.path.basename(f).startswith("scores_")}
    files = [f for f in files if _seed_of(f) is None or _seed_of(f) in scored]
    if not any(os.path.basename(f).startswith("scores_") for f in files):
        raise UserError(f"'{parent}' has no scored seed: run `python test.py --save-dir "
                        f"{parent}` first, then keep its records")
    if os.path.exists(dest) and not os.path.isdir(dest):
        raise UserError(f"'{dest}' is a file: give a folder for the records")
    same = [f for f in files if _seed_of(f) and os.path.exists(os.path.join(dest, f))]
    clash = [f for f in same if not filecmp.cmp(os.path.join(parent, f),
                                                os.path.join(dest, f), shallow=False)]
    if clash:
        raise UserError(f"'{os.path.join(dest, clash[0])}' exists with other content"
                        f"{f' (and {len(clash) - 1} more files)' if len(clash) > 1 else ''}: "
                        "keep the records in a new folder")
    written = [f for f in files if f not in same]
    for f in written:
        with open(os.path.join(parent, f), "rb") as src:
            data = src.read()
        write_atomic(os.path.join(dest, f), lambda out: out.write(data))
    return written


@exit_on_user_error
def main(argv=None):
    p = ArgumentParser(
        prog="python -m learning.seeds",
        description="Keep the records of a seeds folder (seeds.json, the table, each seed's "
                    "hyperparam.json, metrics.jsonl and scores; no checkpoint) in DEST, where "
                    "`python test.py --save-dir DEST` rebuilds the same table.")
    p.add_argument("parent", help="the folder of `train.py --seeds ... --save-dir PARENT`")
    p.add_argument("dest", help="where to keep its records (new, or an earlier copy)")
    args = p.parse_args(argv)
    copied = keep_records(args.parent, args.dest)
    print(f"wrote {len(copied)} files in {args.dest}" + "".join(f"\n  {f}" for f in copied))
    return 0


if __name__ == "__main__":
    sys.exit(main())
