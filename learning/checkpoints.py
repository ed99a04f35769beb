"""Checkpoints, all in one place: what one holds beyond variables (the data order, the
config), writing one whole or not at all, finding the newest, falling back to the newest
that reads, reading what it holds, and exporting a run for sharing (float16, .keras).

A run folder holds three kinds (learning.optimizer says what each holds):
  checkpoints/ckpt-{epoch}            at epoch ends, the latest `keep_checkpoints`
  checkpoints/mid_epoch/ckpt-{step}   every `checkpoint_every_steps` steps and on a stop
                                      request (Ctrl-C, SIGTERM); only the newest
  best/best-{epoch}                   the best FID, and best.json

A folder's `checkpoint` file (TensorFlow's CheckpointManager) lists its checkpoints; a
checkpoint is listed only once its files are written whole, so a write that fails or is
killed is never the one a resume picks, and `save_checkpoint` removes what it left.
"""
import json
import os
import re
import shutil
import tempfile
import warnings
import zipfile

import tensorflow as tf

from common.errors import UserError
from common.files import WriteError, write_atomic, write_json_atomic
from learning.config import Config

# Where the trainer writes checkpoints: the best, those of epoch ends, the newest within an
# epoch (learning.optimizer says what a checkpoint holds).
MID_EPOCH = os.path.join("checkpoints", "mid_epoch")
CHECKPOINT_FOLDERS = ("best", "checkpoints", MID_EPOCH)
STEP_KEY = "step/.ATTRIBUTES/VARIABLE_VALUE"
CONFIG_KEY = "config/.ATTRIBUTES/py_state"


# ------------------------------------------------------------------ what one holds
class DataState(tf.train.experimental.PythonState):
    """The dataset's order and position, saved with each checkpoint (as a string: not a
    tf.Variable, which a multi-worker strategy would try to broadcast, and cannot).

    Within an epoch the reader runs ahead of the step: `consumed`, the position after the
    last batch a step used (Dataset.position), is what is saved; None: the dataset's own."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.consumed = None

    def serialize(self):
        return json.dumps(self.dataset.get_state(self.consumed))

    def deserialize(self, string_value):
        text = string_value.decode() if isinstance(string_value, bytes) else string_value
        if text:
            self.dataset.set_state(json.loads(text))
        self.consumed = None


class ConfigState(tf.train.experimental.PythonState):
    """The resolved config, saved as JSON with each checkpoint (read back by
    `saved_config`, not restored: the running config is the one given)."""

    def __init__(self, config):
        self.config = config

    def serialize(self):
        return json.dumps(self.config.to_dict())

    def deserialize(self, string_value):
        pass


def run_managers(checkpoint, folder, keep):
    """The CheckpointManagers of a run folder for `checkpoint`: epoch ends (the latest
    `keep`), the best (one) and within the epoch (`mid_epoch_manager`)."""
    latest = tf.train.CheckpointManager(checkpoint, os.path.join(folder, "checkpoints"),
                                        max_to_keep=keep, checkpoint_name="ckpt")
    best = tf.train.CheckpointManager(checkpoint, os.path.join(folder, "best"), max_to_keep=1,
                                      checkpoint_name="best")
    return latest, best, mid_epoch_manager(checkpoint, folder)


def mid_epoch_manager(checkpoint, folder):
    return tf.train.CheckpointManager(checkpoint, os.path.join(folder, MID_EPOCH),
                                      max_to_keep=1, checkpoint_name="ckpt")


# ------------------------------------------------------------------ writing
def save_checkpoint(manager, number, name="ckpt"):
    """`manager.save(checkpoint_number=number)` (`name`: the manager's checkpoint_name), or
    a WriteError that names the checkpoint and why (a full disk), after removing the files
    the failed write left: the previous checkpoint stays the newest listed one."""
    folder = manager.directory
    before = set(os.listdir(folder)) if os.path.isdir(folder) else set()
    try:
        return manager.save(checkpoint_number=number)
    except tf.errors.OpError as e:
        # "<temporary file>; No space left on device [Op:SaveV2]": the reason is the end.
        reason = re.sub(r"\s*\[Op:\w+\]$", "", _first_line(e)).split("; ")[-1]
    except OSError as e:
        reason = e.strerror or str(e)
    _remove_unlisted(folder, before)
    raise WriteError(os.path.join(folder, f"{name}-{number}"), reason)


def remove_all(folder):
    """Remove the checkpoints `folder` lists, the list first (so that a kill half way
    leaves unlisted files, never a listed checkpoint with files missing)."""
    listed = checkpoint_candidates(folder)
    state = os.path.join(folder, "checkpoint")
    if os.path.exists(state):
        os.remove(state)
    for path in listed:
        for name in _files_of(path):
            os.remove(name)


def _remove_unlisted(folder, before):
    """Remove what appeared in `folder` since `before` (a listing) and belongs to no
    checkpoint its `checkpoint` file lists: the data and temporary files of a failed
    write."""
    if not os.path.isdir(folder):
        return
    listed = [os.path.basename(p) + "." for p in checkpoint_candidates(folder)]
    for name in set(os.listdir(folder)) - before:
        if name == "checkpoint" or name.startswith(tuple(listed)):
            continue
        path = os.path.join(folder, name)
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.remove(path)


def _files_of(path):
    return tf.io.gfile.glob(path + ".index") + tf.io.gfile.glob(path + ".data-*")


# ------------------------------------------------------------------ finding
def checkpoint_candidates(directory):
    """The checkpoints a CheckpointManager lists in `directory`, newest first."""
    state = tf.train.get_checkpoint_state(directory)
    if state is None:
        return []
    paths = list(state.all_model_checkpoint_paths)
    if state.model_checkpoint_path and state.model_checkpoint_path not in paths:
        paths.append(state.model_checkpoint_path)
    return paths[::-1]


def saved_step(path):
    """The training step checkpoint `path` was written at, or None if it cannot be read."""
    try:
        return int(tf.train.load_checkpoint(path).get_tensor(STEP_KEY))
    except (tf.errors.OpError, ValueError, IndexError):
        return None


def newest_first(paths):
    """`paths` from several folders (epoch ends, within epochs) ordered by the step each
    was written at, newest first. One that cannot be read comes first, in its given
    order, so that a resume tries it and says why it skips it."""
    steps = {p: saved_step(p) for p in paths}
    unreadable = [p for p in paths if steps[p] is None]
    return unreadable + sorted((p for p in paths if steps[p] is not None),
                               key=lambda p: -steps[p])


def resume_candidates(save_dir):
    """What a resume tries, newest first: the checkpoints of epoch ends and the one within
    an epoch (the best is not among them: an epoch's own checkpoint follows it)."""
    return newest_first(checkpoint_candidates(os.path.join(save_dir, "checkpoints"))
                        + checkpoint_candidates(os.path.join(save_dir, MID_EPOCH)))


def find_checkpoints(save_dir, explicit=None):
    """The checkpoints test.py tries, in order: the one given; else the best, then the
    latest ones (at epoch ends or within one), newest first (restore_newest_readable takes
    the first that reads whole)."""
    if explicit:
        if os.path.isdir(explicit):
            raise UserError(f"--checkpoint '{explicit}' is a folder: pass a checkpoint's "
                            "prefix, its .index file without the extension (e.g. "
                            f"{os.path.join(save_dir, 'best', 'best-12')})")
        if not tf.io.gfile.glob(explicit + ".index"):
            raise UserError(f"checkpoint '{explicit}' not found (expected {explicit}.index): "
                            f"see {os.path.join(save_dir, 'best')} and "
                            f"{os.path.join(save_dir, 'checkpoints')}")
        return [explicit]
    best, *latest = (checkpoint_candidates(os.path.join(save_dir, sub))
                     for sub in CHECKPOINT_FOLDERS)
    paths = best + newest_first(sum(latest, []))
    if paths:
        return paths
    raise UserError(f"no checkpoint in '{save_dir}' (looked in best/ and checkpoints/): "
                    "train first with `python train.py --save-dir DIR`")


# ------------------------------------------------------------------ reading
def checkpoint_names(paths):
    """The objects (generator, generator_ema, discriminator, ...) that the first readable
    checkpoint of `paths` holds, or None when none reads (restore_newest_readable then
    says why)."""
    from tensorflow.core.protobuf import trackable_object_graph_pb2
    for path in paths:
        # The root's children in the checkpoint's object graph: variable names alone do
        # not say, since a variable is listed under one path only (G's under g_optimizer).
        try:
            graph = trackable_object_graph_pb2.TrackableObjectGraph()
            graph.ParseFromString(
                tf.train.load_checkpoint(path).get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
        except (tf.errors.OpError, ValueError, IndexError):
            continue
        return {child.local_name for child in graph.nodes[0].children}
    return None


class UnreadableCheckpoint(UserError):
    """A checkpoint whose files are missing, truncated or corrupt."""

    def __init__(self, path, reason):
        super().__init__(f"checkpoint '{path}' cannot be read ({reason})")
        self.path, self.reason = path, reason


def is_float16(path):
    """Whether checkpoint `path` stores its weights as float16 (`test.py --export
    --float16`, the folders in pretrained/)."""
    dtypes = tf.train.load_checkpoint(path).get_variable_to_dtype_map().values()
    return tf.float16 in set(dtypes)


def write_float16(path):
    """Rewrite checkpoint `path` in place with its float32 tensors stored as float16: half
    the bytes for a shipped generator. Everything else (the object graph, the save
    counter, the names) stays as it was, so `read_checkpoint` restores it into the float32
    model. Rounding to float16 moves each weight by at most 2^-11 of its value."""
    _copy_tensors(path, path + "-float16", tf.float32, tf.float16)
    for old, new in zip(sorted(_files_of(path)), sorted(_files_of(path + "-float16"))):
        os.replace(new, old)


def read_checkpoint(checkpoint, path):
    """`checkpoint.read(path)` that also reads a float16 checkpoint (write_float16): its
    tensors, cast back to float32, go through a temporary copy, because TensorFlow restores
    a tensor only into a variable of the dtype it was saved with."""
    return _read_float16(checkpoint, path) if is_float16(path) else checkpoint.read(path)


def _read_float16(checkpoint, path):
    with tempfile.TemporaryDirectory() as folder:
        copy = os.path.join(folder, os.path.basename(path))
        _copy_tensors(path, copy, tf.float16, tf.float32)
        status = checkpoint.read(copy)
        status.expect_partial()   # reads now; the status is still checked by the caller
        return status


def read_exported(folder, **parts):
    """Read `parts` (e.g. generator_ema=model.generator_ema) from the checkpoint of an
    exported folder (pretrained/NAME, `test.py --export`), stored as float16 or not;
    returns the checkpoint's path."""
    path = tf.train.latest_checkpoint(os.path.join(folder, "best"))
    if path is None:
        raise UserError(f"no checkpoint in '{os.path.join(folder, 'best')}': pass a folder "
                        "that test.py --export wrote")
    read_checkpoint(tf.train.Checkpoint(**parts), path).expect_partial()
    return path


def write_export(save_dir, out_dir, config, parts, ckpt_path, float16=False):
    """A run folder reduced to what test.py needs, for sharing (pretrained/, `test.py
    --export`): a checkpoint of `parts` (the generator(s), D if asked) in out_dir/best, its
    weights stored as float16 with `float16` (write_float16), hyperparam.json and best.json.
    Returns the checkpoint's path and the run's best.json ({} if it has none)."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise UserError(f"--export '{out_dir}' is a file: pass a new folder")
    if os.path.exists(os.path.join(out_dir, "best")):
        raise UserError(f"--export '{out_dir}' already holds a checkpoint: remove it first "
                        "or choose another folder")
    os.makedirs(os.path.join(out_dir, "best"), exist_ok=True)
    # save(), not write(): it records the checkpoint in best/checkpoint, with the save
    # counter that a restore expects to find.
    path = tf.train.Checkpoint(**parts).save(os.path.join(out_dir, "best", "best"))
    if float16:
        write_float16(path)
    # Statistics live in each user's cache, not at the trainer's path.
    config.replace(dataset_stats_path=None).save(os.path.join(out_dir, "hyperparam.json"))
    best = read_best(save_dir) or {}
    write_json_atomic(os.path.join(out_dir, "best", "best.json"), {
        **{k: best[k] for k in ("epoch", "step", "score") if k in best},
        "from_checkpoint": os.path.basename(ckpt_path), "parts": sorted(parts),
        "dtype": "float16" if float16 else "float32"})
    return path, best


def write_keras(model, path):
    """Save Keras `model` as `path` (a .keras file, which `keras.saving.load_model` opens
    anywhere Keras is installed), whole or not at all, its members deflated: Keras stores
    them uncompressed, and weights that came from a float16 checkpoint (write_float16) have
    13 zero bits in each float32, so the file shrinks to about 58% (1.96 MB instead of
    3.39 MB for pretrained/dcgan_mnist's generator). A .keras file is a zip archive; any
    zip reader, Keras's included, reads deflated members."""
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(path))) as folder:
        plain = os.path.join(folder, "plain.keras")
        model.save(plain)
        with zipfile.ZipFile(plain) as src:
            members = [(info.filename, src.read(info)) for info in src.infolist()]

        def deflate(f):
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED,
                                 compresslevel=9) as dst:
                for name, data in members:
                    dst.writestr(name, data)
        write_atomic(path, deflate)
    return path


def _copy_tensors(src, dst, from_dtype, to_dtype):
    """Checkpoint `src` written again as `dst`, every `from_dtype` tensor cast to
    `to_dtype`."""
    reader = tf.train.load_checkpoint(src)
    dtypes = reader.get_variable_to_dtype_map()
    names = sorted(dtypes)
    tensors = [tf.cast(reader.get_tensor(name), to_dtype) if dtypes[name] == from_dtype
               else tf.constant(reader.get_tensor(name), dtype=dtypes[name])
               for name in names]
    tf.raw_ops.SaveV2(prefix=dst, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=tensors)


def restore_checkpoint(checkpoint, path, partial=False):
    """Restore `path` into `checkpoint`, turning an architecture mismatch into a UserError
    that says which shapes differ, and a damaged file into UnreadableCheckpoint.
    `partial`: the checkpoint may hold more (test.py restores the models without their
    optimizers)."""
    try:
        status = _read_float16(checkpoint, path) if is_float16(path) else \
            checkpoint.restore(path)
        if partial:
            status.expect_partial()
        status.assert_existing_objects_matched()
    except (ValueError, AssertionError, tf.errors.InvalidArgumentError) as e:
        first = str(e).strip().splitlines()[0]
        raise UserError(f"checkpoint '{path}' does not fit this model ({first}); was it "
                        "made with other z_dim, G_channel, D_channel, G_FC_layer_channel, "
                        "model or image_size? Use the run's own hyperparam.json") from None
    except (tf.errors.OpError, IndexError) as e:
        # What TensorFlow raises for a truncated data file (IndexError "Read less bytes
        # than requested"), a bad checksum (DataLossError), a missing or damaged file.
        raise UnreadableCheckpoint(path, _first_line(e)[:200]) from None


def restore_newest_readable(checkpoint, paths, partial=False):
    """Restore the first of `paths` (newest first) that reads whole, with one warning for
    each one skipped and why. Returns the path restored, or None when `paths` is empty.

    Nothing is deleted. A checkpoint that does not fit the model stops at once (an older
    one of the run would not fit either); when none reads, one UserError names them all.
    A restore that fails half way may have assigned some variables: the next one assigns
    every one of them again."""
    skipped = []
    for path in paths:
        try:
            restore_checkpoint(checkpoint, path, partial=partial)
        except UnreadableCheckpoint as e:
            skipped.append(e)
            continue
        for e in skipped:
            warnings.warn(f"skipped {os.path.basename(e.path)}: cannot be read ({e.reason}); "
                          f"restored {path} instead (the damaged files are left in place)")
        return path
    if skipped:
        folders = sorted({os.path.dirname(e.path) for e in skipped})
        listed = ", ".join(f"{os.path.basename(e.path)} ({e.reason})" for e in skipped)
        raise UserError(f"no checkpoint in {', '.join(folders)} reads whole: {listed}; "
                        "nothing was deleted: restore the files, or move them aside to "
                        "start fresh")
    return None


def saved_config(path):
    """The Config checkpoint `path` was written under, or None for one without it."""
    reader = tf.train.load_checkpoint(path)
    if not reader.has_tensor(CONFIG_KEY):
        return None
    text = reader.get_tensor(CONFIG_KEY)
    text = text.decode() if isinstance(text, bytes) else text
    return Config.from_dict(json.loads(text), source=f"the config saved in '{path}'")


def read_best(save_dir):
    path = os.path.join(save_dir, "best", "best.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _first_line(error):
    """An OpError's message without TensorFlow's `{{function_node ...}}` prefix."""
    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return re.sub(r"^\{\{[^}]*\}\}\s*", "", first)
