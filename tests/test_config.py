import json

import pytest

from common.errors import UserError
from learning.config import Config, parse_set


def test_defaults_are_the_tutorials():
    c = Config()
    assert (c.batch_size, c.num_epochs, c.init_learning_rate, c.momentum) == (64, 100, 2e-4, 0.5)
    assert (c.eval_sample_size, c.batch_size_eval, c.sample_H, c.sample_W) == (10000, 50, 20, 16)
    assert (c.z_dim, c.G_FC_layer_channel, c.G_channel, c.D_channel) == (100, 512, 64, 64)
    assert c.g_updates_per_step == 2 and c.learning_rate_decay == 1.0


def test_unknown_key_names_the_nearest():
    with pytest.raises(UserError, match=r"unknown hyperparameter 'batchsize'.*'batch_size'"):
        Config.from_dict({"batchsize": 3})


@pytest.mark.parametrize("key,value,msg", [
    ("batch_size", 0, "must be >= 1"),
    ("batch_size", 2.5, "expected an integer"),
    ("momentum", "high", "expected a number"),
    ("init_learning_rate", 0.0, "must be > 0"),
    ("model", "vae", "must be one of"),
    ("image_size", [64], r"\[width, height\]"),
    ("nan_policy", "ignore", "must be one of"),
    ("eval_metrics", ["fid", "is"], "expected a list from"),
    ("eval_metrics", ["pr"], "that includes \"fid\""),
    ("eval_metrics", "fid", "expected a list"),
])
def test_bad_values_name_key_and_value(key, value, msg):
    with pytest.raises(UserError, match=rf"'{key}' = .*{msg}"):
        Config.from_dict({key: value})


def test_invalid_json_says_where(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{"batch_size": 64,\n "num_epochs": }')
    with pytest.raises(UserError, match="not valid JSON.*line 2"):
        Config.from_json(str(p))


def test_original_hyperparam_json_loads(tmp_path):
    """The tutorial's train.py wrote these keys; an old run's file must still load."""
    hp = {"batch_size": 64, "num_epochs": 100, "init_learning_rate": 2e-4, "momentum": 0.5,
          "learning_rate_patience": 10, "learning_rate_decay": 1.0, "eps": 1e-8,
          "score_threshold": 1e-4, "inception_path": "inception/inception_v3_fr.pb",
          "dataset_stats_path": "data/stats.pkl", "eval_sample_size": 10000,
          "batch_size_eval": 50, "sample_H": 20, "sample_W": 16, "sample_dir": "./run/",
          "z_dim": 100, "G_FC_layer_channel": 512, "G_channel": 64, "D_channel": 64}
    p = tmp_path / "hyperparam.json"
    p.write_text(json.dumps(hp, indent="\t"))
    c = Config.from_json(str(p))
    assert c.G_FC_layer_channel == 512 and c.inception_path == "inception/inception_v3_fr.pb"


def test_save_round_trip(tmp_path):
    c = Config(image_size=(28, 28), G_hidden=(256, 512), seed=7)
    c.save(str(tmp_path / "h.json"))
    assert Config.from_json(str(tmp_path / "h.json")) == c


def test_parse_set_reads_json_values():
    assert parse_set(["num_epochs=5", "image_size=[32,32]", "data_dir=/x/y", "jit_compile=true"]) \
        == {"num_epochs": 5, "image_size": [32, 32], "data_dir": "/x/y", "jit_compile": True}
    with pytest.raises(UserError, match="KEY=VALUE"):
        parse_set(["num_epochs"])


def test_repeated_set_flags_all_count():
    import argparse
    from learning.config import add_set_argument
    p = argparse.ArgumentParser()
    add_set_argument(p)
    args = p.parse_args(["--set", "num_epochs=5", "seed=1", "--set", "batch_size=32",
                         "--set", "num_epochs=7"])
    assert parse_set(args.set) == {"num_epochs": 7, "seed": 1, "batch_size": 32}


def test_train_py_applies_every_set_flag():
    import train
    args = train.parse_args(["--set", "num_epochs=3", "--set", "seed=2", "batch_size=16"])
    config = train.resolve_config(args)
    assert (config.num_epochs, config.seed, config.batch_size) == (3, 2, 16)


def test_an_old_hyperparam_json_with_a_retired_key_still_loads(tmp_path):
    """reuse_g_forward is gone (docs/performance.md): a run folder written with it loads,
    the key ignored; on, it says so (the step no longer does it)."""
    import warnings
    base = Config().to_dict()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Config.from_dict({**base, "reuse_g_forward": False}) == Config()
    with pytest.warns(UserWarning, match="'reuse_g_forward' is no longer an option"):
        assert Config.from_dict({**base, "reuse_g_forward": True}) == Config()
    assert "reuse_g_forward" not in Config().to_dict()
