"""Past one device: the tf.distribute strategy named by the `strategy` hyperparameter.

  default       TensorFlow's default strategy: one device, the same code path as the others
  mirrored      MirroredStrategy: every GPU of this host (or, with `logical_cpu_devices`,
                that many logical CPU devices), variables mirrored, gradients all-reduced
  multi_worker  MultiWorkerMirroredStrategy: several hosts, the cluster read from the
                TF_CONFIG environment variable, the standard way

`batch_size` stays the global batch: each of the N replicas trains on `batch_size / N` of
its examples, and every loss is averaged over the global batch, so that one replica and N
replicas train the same model (up to float rounding, and up to batch norm, whose statistics
are per replica unless `batch_norm_sync`).

TensorFlow is imported inside the functions: train.py reads TF_CONFIG to decide who writes
the run folder before TensorFlow loads (a wrong folder should fail in a second).
"""
import json
import os
import shutil
import sys
import tempfile

from common.errors import UserError
from common.machine import cpu_flags


def read_tf_config():
    """TF_CONFIG as a dict ({} when unset); a UserError when it is not valid JSON."""
    text = os.environ.get("TF_CONFIG", "")
    if not text.strip():
        return {}
    try:
        tf_config = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"TF_CONFIG is not valid JSON ({e.msg} at column {e.colno}): see the "
                        "docs/distributed.md for an example") from None
    if not isinstance(tf_config, dict) or "cluster" not in tf_config \
            or "task" not in tf_config:
        raise UserError("TF_CONFIG needs a 'cluster' and a 'task', e.g. {\"cluster\": "
                        "{\"worker\": [\"host1:12345\", \"host2:12345\"]}, \"task\": "
                        "{\"type\": \"worker\", \"index\": 0}}")
    return tf_config


def is_chief_task(config):
    """Whether this process writes the run folder: always, except in a multi-worker run,
    where only the chief does (the task of type 'chief', else worker 0)."""
    if config.strategy != "multi_worker":
        return True
    tf_config = read_tf_config()
    if not tf_config:
        raise UserError("strategy 'multi_worker' reads the cluster from the TF_CONFIG "
                        "environment variable, which is not set: see docs/distributed.md for an "
                        "example")
    task = tf_config["task"]
    return _chief(task.get("type"), int(task.get("index", 0)), tf_config["cluster"])


def _chief(task_type, index, cluster):
    """TensorFlow's rule: the task of type 'chief', or worker 0 when there is none."""
    return task_type == "chief" or (task_type == "worker" and index == 0
                                    and "chief" not in cluster)


def configure_devices(config):
    """Split the CPU into `logical_cpu_devices` logical devices, so that 'mirrored' has real
    replicas on a machine without GPUs. Must run before TensorFlow uses any device."""
    import tensorflow as tf
    n = config.logical_cpu_devices
    if not n:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == n:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * n)
    except RuntimeError:
        raise UserError(f"logical_cpu_devices={n}: TensorFlow has already set up its devices "
                        "in this process; set it in the config that starts the process") \
            from None


def make_strategy(config):
    """The tf.distribute strategy of `config.strategy`. Create it before any model."""
    import tensorflow as tf
    configure_devices(config)
    if config.strategy == "default":
        return tf.distribute.get_strategy()
    if config.strategy == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        if config.logical_cpu_devices or not gpus:
            devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        else:
            devices = [d.name for d in gpus]
        return tf.distribute.MirroredStrategy(devices=devices)
    is_chief_task(config)  # TF_CONFIG present and valid, or a UserError
    return tf.distribute.MultiWorkerMirroredStrategy()


def is_chief(strategy):
    """Whether this process is the chief of `strategy`'s cluster (always, in one process)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return _chief(resolver.task_type, resolver.task_id, resolver.cluster_spec().as_dict())


def worker_dir(strategy):
    """Where a non-chief worker writes its checkpoints: TensorFlow needs every worker to
    take part in saving, but only the chief's copy is kept (see `remove_worker_dir`)."""
    resolver = strategy.cluster_resolver
    return tempfile.mkdtemp(prefix=f"gan-{resolver.task_type}{resolver.task_id}-")


def remove_worker_dir(path):
    shutil.rmtree(path, ignore_errors=True)


BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def bfloat16_warning(config):
    """A one-line warning when `mixed_precision: "bfloat16"` will run on a CPU without
    bfloat16 instructions (neither flag of BFLOAT16_CPU_FLAGS): there TensorFlow converts to
    and from float32 around every op, which is slower than plain float32. None otherwise,
    and on a machine with a GPU, which runs the step. bfloat16 was measured faster than
    float32 only on a CPU with those instructions (docs/performance.md)."""
    if config.mixed_precision != "bfloat16":
        return None
    if _cpu_has(BFLOAT16_CPU_FLAGS):
        return None
    import tensorflow as tf
    if tf.config.list_physical_devices("GPU"):
        return None
    return ("warning: mixed_precision \"bfloat16\" on a CPU without bfloat16 instructions "
            f"(no {' or '.join(BFLOAT16_CPU_FLAGS)} flag): TensorFlow emulates them, likely "
            "slower than float32 (compare with bench/train_step.py)")


def set_precision(config):
    """Keras's global policy for `mixed_precision` (mixed_float16 or mixed_bfloat16),
    after bfloat16_warning's line on stderr where it applies; nothing when it is off. The
    policy holds for the whole process, so set it once, before any model is built."""
    if not config.mixed_precision:
        return
    warning = bfloat16_warning(config)
    if warning:
        print(warning, file=sys.stderr)
    import keras
    keras.mixed_precision.set_global_policy(f"mixed_{config.mixed_precision}")


def _cpu_has(flags, path="/proc/cpuinfo"):
    """Which of `flags` the CPU reports; none where /proc/cpuinfo cannot be read (not
    Linux)."""
    return cpu_flags(path) & set(flags)


def check_batch_size(batch_size, replicas):
    if batch_size % replicas:
        raise UserError(f"batch_size {batch_size} does not divide among {replicas} replicas: "
                        f"use a multiple of {replicas} (batch_size is the global batch)")


def replica_slice(x):
    """This replica's rows of a global batch, [i * b, (i + 1) * b) with b = batch / N.
    Called inside `strategy.run`; with one replica, the whole batch."""
    import tensorflow as tf
    if x is None:
        return None
    ctx = tf.distribute.get_replica_context()
    n = ctx.num_replicas_in_sync
    if n == 1:
        return x
    b = tf.shape(x)[0] // n
    i = tf.cast(ctx.replica_id_in_sync_group, tf.int32)
    return x[i * b:(i + 1) * b]
