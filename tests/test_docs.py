"""The front doors and the docs pages, checked as written (issue 21): the two READMEs give the
same commands and headline numbers, every number of the old single-page README is still
somewhere, every link resolves, every config key and script option is documented with its
true default."""
import dataclasses
import json
import os
import re
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
                     if name in ("FID", "FID (test split)", "KID", "precision", "recall")}
            for row in rows}


def test_both_readmes_give_the_same_headline_numbers():
    assert headline_numbers("README.md") == headline_numbers("README.ko.md")


def test_the_headline_numbers_are_those_of_the_full_results_table():
    results = read("docs", "results.md")
    full = {row[0]: row for row in table_after(results, ["FID", "KID", "density", "coverage"])}
    for config, numbers in headline_numbers("README.md").items():
        row = full[config]
        assert [row[4].strip("*")] == numbers["FID"], config
        assert [row[5].split(" ")[0]] == numbers["KID"], config
        assert [row[6]] == numbers["precision"] and [row[7]] == numbers["recall"], config
        # The test split's FID, where there is one, is the one results.md gives.
        for fid in numbers.get("FID (test split)", []):
            assert f"| {fid} |" in results, (config, fid)


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


# ------------------------------------------------------------------ nothing lost
def test_every_number_of_the_old_readme_is_still_somewhere():
    """tests/old_readme_numbers.txt lists the number tokens of README.md before it was split
    (commit 72e85f1); each must appear in the new READMEs or the docs pages."""
    with open(os.path.join(ROOT, "tests", "old_readme_numbers.txt"), encoding="utf-8") as f:
        old = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    assert len(old) == 260
    corpus = "\n".join(read(p) for p in ["README.md", "README.ko.md"] + doc_pages())
    missing = sorted(set(old) - set(NUMBER.findall(corpus)))
    assert not missing, f"numbers of the old README found nowhere now: {missing}"


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
