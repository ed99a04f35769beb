"""Several training seeds: train.py --seeds, their folder, and the mean ± std table."""
import json
import os
import re

import numpy as np
import pytest

from tests.conftest import checkpoint_values, our_lines, run, write_config


def train(*args):
    return run("train.py", "--quiet", *args)


@pytest.fixture
def tiny_json(tmp_path):
    """The tiny run, one epoch of three steps."""
    return write_config(tmp_path, num_epochs=1, eval_every=0, steps_per_epoch=3)


def test_each_seed_is_the_run_that_seed_trains_alone(tmp_path, tiny_json, image_folder):
    """--seeds 1 0 trains seed1 then seed0 in one process; seed1's weights equal those of
    `--set seed=1` trained alone, bit for bit, and differ from seed0's; the same command
    again resumes each finished run instead of training it again."""
    parent, alone = tmp_path / "seeds", tmp_path / "alone"
    args = ["--config", tiny_json, "--data-dir", image_folder]
    r = train(*args, "--seeds", "1", "0", "--save-dir", str(parent))
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.index("== seed 1 (1 of 2)") < r.stdout.index("== seed 0 (2 of 2)")
    record = json.loads((parent / "seeds.json").read_text())
    assert record["seeds"] == [1, 0] and "seed" not in record["config"]
    for seed in (0, 1):
        assert json.loads((parent / f"seed{seed}" / "hyperparam.json").read_text())[
            "seed"] == seed
    r = train(*args, "--set", "seed=1", "--save-dir", str(alone))
    assert r.returncode == 0, r.stderr[-3000:]
    a = checkpoint_values(str(parent / "seed1" / "checkpoints" / "ckpt-1"))
    b = checkpoint_values(str(alone / "checkpoints" / "ckpt-1"))
    c = checkpoint_values(str(parent / "seed0" / "checkpoints" / "ckpt-1"))
    assert a.keys() == b.keys() and len(a) > 20
    for name in a:
        assert np.array_equal(a[name], b[name]), name
    # G's weights (a checkpoint keeps them once, under the optimizer that trains them).
    weights = [k for k in a if k.startswith("g_optimizer/_trainable_variables/")]
    assert len(weights) > 3 and all(not np.array_equal(a[k], c[k]) for k in weights)

    r = train(*args, "--seeds", "1", "0", "--save-dir", str(parent))
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("resumed at epoch 1, step 3") == 2


def test_seeds_are_never_mixed_up(tmp_path, tiny_json, image_folder):
    """A seed folder holding another seed's run, a parent of another config, a seed named
    twice, --set seed beside --seeds: each one line, exit status 2, nothing trained."""
    parent = tmp_path / "seeds"
    args = ["--config", tiny_json, "--data-dir", image_folder, "--save-dir", str(parent)]
    r = train(*args, "--seeds", "0")
    assert r.returncode == 0, r.stderr[-3000:]
    os.rename(parent / "seed0", parent / "seed2")
    cases = [
        (["--seeds", "2"], "holds a run of seed 0, not 2"),
        (["--seeds", "3", "--set", "num_epochs=2"], "holds seeds of another config "
                                                    "(num_epochs=1, not 2)"),
        (["--seeds", "4", "4"], "names a seed twice"),
        (["--seeds", "5", "--set", "seed=5"], "give the seeds with --seeds only"),
    ]
    for extra, message in cases:
        r = train(*args, *extra)
        assert r.returncode == 2 and message in r.stderr, (extra, r.stderr[-2000:])
        assert len(our_lines(r.stderr)) == 1, r.stderr
    assert sorted(os.listdir(parent)) == ["seed2", "seeds.json"]
    one = tmp_path / "one"
    r = train("--config", tiny_json, "--data-dir", image_folder, "--save-dir", str(one))
    assert r.returncode == 0, r.stderr[-3000:]
    r = train("--config", tiny_json, "--data-dir", image_folder, "--save-dir", str(one),
              "--seeds", "0")
    assert r.returncode == 2 and "holds a single run" in r.stderr


def test_a_parent_made_before_a_config_key_existed_takes_its_default(tmp_path):
    """seeds.json of a parent made before Config gained a key lacks it: the key counts as
    its default there, so the same config goes on and another value is refused."""
    from common.errors import UserError
    from learning.config import Config
    from learning.seeds import claim_parent
    parent = str(tmp_path / "seeds")
    claim_parent(parent, Config(), [0], "train.py")
    path = tmp_path / "seeds" / "seeds.json"
    record = json.loads(path.read_text())
    del record["config"]["linear_decay_epochs"]
    path.write_text(json.dumps(record))
    assert [s for s, _ in claim_parent(parent, Config(), [1], "train.py")] == [1]
    with pytest.raises(UserError, match=r"another config \(linear_decay_epochs=0, not 2\)"):
        claim_parent(parent, Config(linear_decay_epochs=2), [2], "train.py")


def test_mean_and_sample_standard_deviation():
    from learning.seeds import mean_std
    values = [6.61, 7.02, 6.85]
    mean, std = mean_std(values)
    assert mean == pytest.approx(np.mean(values), abs=1e-12)
    assert std == pytest.approx(np.std(values, ddof=1), abs=1e-12)   # not ddof=0's 0.168
    assert mean_std([5.0]) == (5.0, None)


def test_table_gives_every_seed_then_mean_and_std():
    from learning.seeds import summarize, table
    scores = {s: {"splits": {"test": {"fid": f, "kid": k}, "train": {"fid": f + 0.2,
                                                                     "kid": k}},
                  "class_accuracy": a}
              for s, f, k, a in [(0, 6.0, 0.003, 0.98), (1, 7.0, 0.004, 0.97),
                                 (2, 8.0, 0.005, 0.99)]}
    summary = summarize(scores)
    assert summary["n"] == 3
    assert summary["mean"]["splits"]["train"]["fid"] == pytest.approx(7.2)
    assert summary["std"]["splits"]["test"]["fid"] == pytest.approx(1.0)
    assert summary["mean"]["class_accuracy"] == pytest.approx(0.98)
    text = table(scores, summary)
    lines = text.strip().splitlines()
    assert lines[0] == ("| seed | FID (test) | KID (test) | FID (train) | KID (train) "
                        "| class accuracy |")
    assert lines[2] == "| 0 | 6.00 | 0.0030 | 6.20 | 0.0030 | 0.9800 |"
    assert lines[-1] == ("| mean ± std (3 runs) | 7.00 ± 1.00 | 0.0040 ± 0.0010 "
                         "| 7.20 ± 1.00 | 0.0040 ± 0.0010 | 0.9800 ± 0.0100 |")


def test_test_py_scores_every_seed_and_gives_mean_and_std(tmp_path, tiny_json, image_folder):
    """test.py on the seeds' folder: each seed's FID is the one test.py prints for that
    seed's folder alone, the table's last row is their mean ± sample std, each seed's
    record is kept, and a second call scores nothing again."""
    from learning.seeds import mean_std
    parent = tmp_path / "seeds"
    r = train("--config", tiny_json, "--data-dir", image_folder, "--save-dir", str(parent),
              "--seeds", "0", "1", "--set", "eval_every=1")
    assert r.returncode == 0, r.stderr[-3000:]

    def score(folder, *extra):
        return run("test.py", "--save-dir", str(folder), "--n-samples", "8", "--metrics", "fid",
                   *extra, timeout=900)
    alone = {}
    for seed in (0, 1):
        r = score(parent / f"seed{seed}", "--out", str(tmp_path / f"f{seed}"))
        assert r.returncode == 0, r.stderr[-3000:]
        alone[seed] = float(re.search(r"^FID: ([0-9.]+)$", r.stdout, re.M)[1])
    # A seed still training is named and left out; with none finished there is no table.
    metrics = {s: parent / f"seed{s}" / "metrics.jsonl" for s in (0, 1)}
    kept = {s: path.read_text() for s, path in metrics.items()}
    for path in metrics.values():
        path.write_text("")
    r = score(parent)
    assert r.returncode == 2 and "no seed in" in r.stderr and len(our_lines(r.stderr)) == 1
    metrics[0].write_text(kept[0])
    r = score(parent)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "seed 1: at epoch 0 of 1, not scored" in r.stdout
    assert "| mean ± std (1 run) |" in r.stdout and not (parent / "seed1" /
                                                        "scores_n8_seed0.json").exists()
    assert json.loads((parent / "seeds_n8_seed0.json").read_text())["unfinished"] == {"1": 0}
    r = run("-m", "learning.seeds", str(parent), str(tmp_path / "partial"))
    assert r.returncode == 0 and not (tmp_path / "partial" / "seed1").exists(), r.stderr
    assert (tmp_path / "partial" / "seed0" / "scores_n8_seed0.json").exists()
    metrics[1].write_text(kept[1])
    r = score(parent)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "scored before" in r.stdout and "not scored" not in r.stdout
    summary = json.loads((parent / "seeds_n8_seed0.json").read_text())
    fids = {int(s): rec["splits"]["train"]["fid"] for s, rec in summary["runs"].items()}
    assert {s: round(v, 4) for s, v in fids.items()} == alone
    mean, std = mean_std([fids[0], fids[1]])
    assert summary["mean"]["splits"]["train"]["fid"] == pytest.approx(mean, abs=1e-9)
    assert summary["std"]["splits"]["train"]["fid"] == pytest.approx(std, abs=1e-9)
    assert f"| mean ± std (2 runs) | {mean:.2f} ± {std:.2f} |" in r.stdout
    assert (parent / "seeds_n8_seed0.md").read_text() in r.stdout
    assert (parent / "fid_curves.png").stat().st_size > 1000
    for seed in (0, 1):
        assert (parent / f"seed{seed}" / "scores_n8_seed0.json").exists()
    assert summary["training"]["config"] == json.loads((parent / "seeds.json").read_text())[
        "config"] and summary["unfinished"] == {}
    again = score(parent)
    assert again.returncode == 0 and again.stdout.count("scored before") == 2
    assert json.loads((parent / "seeds_n8_seed0.json").read_text())["runs"] == summary["runs"]
    r = score(parent, "--scores", str(tmp_path / "x.json"))
    assert r.returncode == 2 and "--scores takes one run" in r.stderr

    # Its records kept without checkpoints: test.py on the copy rebuilds the same table.
    kept = tmp_path / "kept"
    r = run("-m", "learning.seeds", str(parent), str(kept))
    assert r.returncode == 0, r.stderr[-3000:]
    assert not list(kept.rglob("checkpoint*")) and not list(kept.rglob("*.index"))
    r = score(kept)
    assert r.returncode == 0 and r.stdout.count("scored before") == 2, r.stderr[-3000:]
    assert (kept / "seeds_n8_seed0.md").read_text() == (parent / "seeds_n8_seed0.md").read_text()
    # Keeping again writes the table only; a seed's kept record with other content is
    # refused.
    r = run("-m", "learning.seeds", str(parent), str(kept))
    assert r.returncode == 0 and "wrote 3 files" in r.stdout and "\n  seed0/" not in r.stdout
    (kept / "seed1" / "scores_n8_seed0.json").write_text("{}")
    r = run("-m", "learning.seeds", str(parent), str(kept))
    assert r.returncode == 2 and "exists with other content" in r.stderr
    assert len(our_lines(r.stderr)) == 1


def test_fid_curves_pass_over_epochs_without_an_evaluation(tmp_path):
    """metrics.jsonl has a line per epoch, with "fid": null where no FID was scored
    (eval_every > 1): the figure draws the scored epochs and their mean."""
    from learning.records import append_jsonl
    from learning.seeds import plot_fid_curves
    runs = []
    for seed, fids in ((0, [None, 20.0, None, 12.0]), (1, [None, 22.0, None, 11.0])):
        folder = tmp_path / f"seed{seed}"
        folder.mkdir()
        append_jsonl(str(folder / "metrics.jsonl"),
                     [{"epoch": e + 1, "fid": f, "n_samples": None if f is None else 2000}
                      for e, f in enumerate(fids)])
        runs.append((seed, str(folder)))
    path = plot_fid_curves(runs, str(tmp_path / "curves.png"))
    assert os.path.getsize(path) > 1000
