"""The learning algorithm: Optimizer (abstract) and MomentumOptimizer, the tutorial's Adam.

The tutorial called its trainer "MomentumOptimizer" although it builds Adam with
beta_1 = momentum = 0.5; the name stays so the post can be followed, and `AdamOptimizer`
is the same class under its honest name.

A run folder (`save_dir`) holds everything a resume needs:
  hyperparam.json        the resolved config of the latest start (written before its first
                         step); each checkpoint also holds the config it was written under
  resumes.jsonl          one line per resume: epoch, step, time, checkpoint, and the keys
                         the resume changed, {key: [old, new]} (see config.resume_changes)
  .lock                  pid, host and start time of the train.py writing the folder
  checkpoints/           the latest `keep_checkpoints` checkpoints, one per epoch
  best/                  the best checkpoint by FID, and best.json (its epoch and score)
  metrics.jsonl          one line per epoch: epoch, step, losses, fid, n_samples
  losses.jsonl           the losses of every step (the learning curve's top panel)
  sample_image_{step}.png, learning_curve.png/.svg, training.gif, logs/ (TensorBoard)

Under a tf.distribute strategy (learning.distribute) the step runs on every replica, each on
its slice of the global batch; in a multi-worker run only the chief writes the run folder.
"""
import json
import math
import os
import queue
import re
import threading
import time
import warnings
from abc import ABC, abstractmethod

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from learning import distribute, utils
from learning.config import Config, resume_changes
from learning.errors import UserError


class TrainingDiverged(UserError):
    """A loss became NaN or infinite (nan_policy 'stop')."""


class Optimizer(ABC):
    """Base class of the gradient-descent trainers.

    :param model: models.nn.GAN, the model to train.
    :param train_set: datasets.data.Dataset, the training images.
    :param evaluator: learning.evaluator.Evaluator, or None for no evaluation.
    :param config: learning.config.Config.
    :param save_dir: the run folder.
    :param strategy: the tf.distribute strategy the model was built under (default: the
        current one, so building everything inside `strategy.scope()` is enough).
    """

    def __init__(self, model, train_set, evaluator, config, save_dir, strategy=None):
        self.model = model
        self.train_set = train_set
        self.evaluator = evaluator
        self.config = config
        self.save_dir = save_dir
        self.batch_size = config.batch_size
        self.num_epochs = config.num_epochs
        self.sample_H, self.sample_W = config.sample_H, config.sample_W
        self.steps_per_epoch = config.steps_per_epoch or train_set.num_examples // self.batch_size
        if self.steps_per_epoch < 1:
            raise UserError(f"batch_size {self.batch_size} is larger than the dataset "
                            f"({train_set.num_examples} images): lower batch_size")
        self.strategy = strategy or tf.distribute.get_strategy()
        self.replicas = self.strategy.num_replicas_in_sync
        distribute.check_batch_size(self.batch_size, self.replicas)
        # Only the chief writes the run folder; the other workers of a multi-worker run
        # save their (identical) checkpoints to a temporary folder, as TensorFlow requires.
        self.is_chief = distribute.is_chief(self.strategy)
        self.own_dir = save_dir if self.is_chief else distribute.worker_dir(self.strategy)
        with self.strategy.scope():
            self._create_state(model, evaluator, config)
        self._train_step = tf.function(self._step, jit_compile=config.jit_compile)

    def _create_state(self, model, evaluator, config):
        """Variables, Keras optimizers and checkpoints, in the strategy's scope."""
        # Everything below is state a resume restores.
        self.rng = tf.random.Generator.from_seed(config.seed)
        self.curr_learning_rate = tf.Variable(config.init_learning_rate, dtype=tf.float32,
                                              trainable=False, name="learning_rate")
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.curr_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.best_score = tf.Variable(evaluator.worst_score if evaluator else math.inf,
                                      dtype=tf.float64, trainable=False, name="best_score")
        self.num_bad_epochs = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.skipped_steps = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.data_state = DataState(self.train_set)
        # The sample grid's z is drawn once, so every sample_image_{step}.png shows the
        # same faces growing up; from a stream of its own, so that a bigger grid trains
        # the same model.
        n_sample = self.sample_H * self.sample_W
        self.sample_z = tf.Variable(
            model.sample_z(utils.seeded_generator(config.seed, "sample grid"), n_sample),
            trainable=False)
        self.sample_labels = tf.Variable(np.arange(n_sample) % max(model.num_classes, 1),
                                         dtype=tf.int32, trainable=False)

        self.optimize_G = self._optimize_op("generator")
        self.optimize_D = self._optimize_op("discriminator")
        # Create the optimizers' slots now, so a checkpoint restores them immediately.
        self.optimize_G.build(model.generator.trainable_variables)
        self.optimize_D.build(model.discriminator.trainable_variables)

        averaged = {} if model.generator_ema is None else {"generator_ema": model.generator_ema}
        state = dict(
            generator=model.generator, discriminator=model.discriminator, **averaged,
            g_optimizer=self.optimize_G, d_optimizer=self.optimize_D,
            step=self.step, epoch=self.curr_epoch, best_score=self.best_score,
            num_bad_epochs=self.num_bad_epochs, learning_rate=self.curr_learning_rate,
            skipped_steps=self.skipped_steps, sample_z=self.sample_z,
            sample_labels=self.sample_labels, rng=self.rng, data_state=self.data_state)
        # Each checkpoint also holds the config it was written under. A resume reads it on
        # its own (saved_config) and restores the rest, so that a checkpoint written
        # before checkpoints held a config still restores.
        self.checkpoint = tf.train.Checkpoint(**state, config=ConfigState(config))
        self._resume_checkpoint = tf.train.Checkpoint(**state)
        self.latest = tf.train.CheckpointManager(
            self.checkpoint, os.path.join(self.own_dir, "checkpoints"),
            max_to_keep=config.keep_checkpoints, checkpoint_name="ckpt")
        self.best = tf.train.CheckpointManager(
            self.checkpoint, os.path.join(self.own_dir, "best"), max_to_keep=1,
            checkpoint_name="best")
        # What the step would need to undo with nan_policy 'skip'.
        self._state_variables = (model.generator.variables + model.discriminator.variables
                                 + self.optimize_G.variables + self.optimize_D.variables
                                 + (model.generator_ema.variables
                                    if model.generator_ema is not None else []))

    @abstractmethod
    def _optimize_op(self, mode):
        """The keras optimizer for 'generator' or 'discriminator'."""

    @abstractmethod
    def _update_learning_rate(self):
        """Update the learning rate after an epoch, by the trainer's own schedule."""

    # ------------------------------------------------------------------ one step
    def _step(self, X, labels):
        """One training step on the global batch X: z is drawn for the whole batch, then
        every replica trains on its slice (`_replica_step`). Returns the losses, averaged
        over the global batch, and whether they are finite."""
        model, n = self.model, tf.shape(X)[0]
        # Drawn once for the global batch, so N replicas see the z one device would.
        z = model.sample_z(self.rng, n)
        # A conditional model's fakes take the real batch's labels (post 002's loop), so
        # that D sees each label as often on both sides.
        fake_labels = labels if model.conditional else None
        skip = self.config.nan_policy == "skip"
        if skip:
            # A non-finite batch poisons weights, Adam's moments and batch norm's moving
            # averages alike: keep a copy to put back.
            saved = [tf.identity(v) for v in self._state_variables]
        out = self.strategy.run(self._replica_step, args=(X, labels, z, fake_labels))
        d_loss = self.strategy.reduce("SUM", out["d_loss"], axis=None)
        g_loss = self.strategy.reduce("SUM", out["g_loss"], axis=None)
        finite = tf.logical_and(tf.math.is_finite(d_loss), tf.math.is_finite(g_loss))
        if skip:
            def put_back():
                for v, value in zip(self._state_variables, saved):
                    v.assign(value)
                return tf.constant(False)
            tf.cond(finite, lambda: tf.constant(True), put_back)
        return {"d_loss": d_loss, "g_loss": g_loss, "finite": finite}

    def _replica_step(self, X, labels, z, fake_labels):
        """The step on one replica's slice: one D update on a real and a fake batch, then
        `g_updates_per_step` G updates with the same z. Each loss is this replica's share
        of the global-batch mean, so the all-reduced gradients are the global ones."""
        model = self.model
        X, labels, z, fake_labels = (distribute.replica_slice(t)
                                     for t in (X, labels, z, fake_labels))
        d_vars = model.discriminator.trainable_variables
        g_vars = model.generator.trainable_variables

        # 1. update D. Real and fake go through D in two calls, so batch norm normalises
        #    each batch on its own statistics, as in the tutorial. With reuse_g_forward the
        #    tape that sees G make the fake batch is kept for the first G update: G has not
        #    changed since, so its forward pass would give the same images (the gradients
        #    are the same; G's batch-norm moving averages are updated once less per step).
        reuse = self.config.reuse_g_forward
        g_tape = tf.GradientTape(persistent=True) if reuse else None
        if self.config.d_separate_updates:
            d_loss, fake = self._separate_d_updates(X, labels, z, fake_labels, d_vars, g_tape)
        else:
            with tf.GradientTape() as tape:
                if reuse:
                    with g_tape:
                        fake = model.G(z, fake_labels, training=True)
                else:
                    fake = model.G(z, fake_labels, training=True)
                real_logits = model.D(X, labels, training=True)
                fake_logits = model.D(fake, fake_labels, training=True)
                d_loss = model.discriminator_loss(real_logits, fake_logits)
                scaled = self.optimize_D.scale_loss(d_loss)  # loss scaling for float16
            self.optimize_D.apply_gradients(zip(tape.gradient(scaled, d_vars), d_vars))

        # 2. update G (twice by default, same z): the tutorial's remedy for D learning
        #    faster than G and its loss going to zero; the DCGAN paper updates G once.
        g_loss = tf.constant(0.0)
        for i in range(self.config.g_updates_per_step):
            if reuse and i == 0:
                tape = g_tape          # it holds G's forward pass; D's new weights from here
                with tape:
                    g_loss = model.generator_loss(model.D(fake, fake_labels, training=True))
                    scaled = self.optimize_G.scale_loss(g_loss)
            else:
                with tf.GradientTape() as tape:
                    fake = model.G(z, fake_labels, training=True)
                    g_loss = model.generator_loss(model.D(fake, fake_labels, training=True))
                    scaled = self.optimize_G.scale_loss(g_loss)
            self.optimize_G.apply_gradients(zip(tape.gradient(scaled, g_vars), g_vars))
            if model.generator_ema is not None:
                model.update_ema(self.config.G_ema_decay)
        return {"d_loss": d_loss, "g_loss": g_loss}

    def _separate_d_updates(self, X, labels, z, fake_labels, d_vars, g_tape=None):
        """The MNIST slides' D training: one update on a fake-only minibatch, then one on a
        real-only minibatch. Returns the summed loss and the fake batch (recorded on
        `g_tape` when given, for the first G update to reuse)."""
        model = self.model
        if g_tape is not None:
            with g_tape:
                fake = model.G(z, fake_labels, training=True)
        else:
            fake = model.G(z, fake_labels, training=True)
        with tf.GradientTape() as tape:
            loss_fake = model.d_loss_fake(model.D(fake, fake_labels, training=True))
            scaled = self.optimize_D.scale_loss(loss_fake)
        self.optimize_D.apply_gradients(zip(tape.gradient(scaled, d_vars), d_vars))
        with tf.GradientTape() as tape:
            loss_real = model.d_loss_real(model.D(X, labels, training=True))
            scaled = self.optimize_D.scale_loss(loss_real)
        self.optimize_D.apply_gradients(zip(tape.gradient(scaled, d_vars), d_vars))
        return loss_fake + loss_real, fake

    # ------------------------------------------------------------------ resume
    def restore(self, path=None):
        """Restore `path`, or the newest checkpoint of the run that reads whole (a damaged
        one is skipped with a warning, and left where it is). Returns the path or None.
        Every worker of a multi-worker run restores the chief's checkpoint (so --save-dir
        must be a folder all of them see, to resume)."""
        paths = [path] if path else checkpoint_candidates(
            os.path.join(self.save_dir, "checkpoints"))
        # partial: the checkpoint also holds its config, which saved_config reads.
        path = restore_newest_readable(self._resume_checkpoint, paths, partial=True)
        if path is None:
            return None
        # The best checkpoint may be newer than the latest one (a kill between the two
        # writes): its score is the one to beat, or a worse model could replace it.
        best = read_best(self.save_dir)
        if best is not None:
            self.best_score.assign(min(float(self.best_score.numpy()), best["score"]))
        return path

    # ------------------------------------------------------------------ the loop
    def train(self, verbose=True):
        """Run the epochs that remain: train, sample, score, checkpoint. Returns a dict of
        the run's results (best score, steps, seconds)."""
        paths = {name: os.path.join(self.save_dir, name)
                 for name in ("metrics.jsonl", "losses.jsonl", "logs")}
        resumed = self.restore()
        start_epoch, step0 = int(self.curr_epoch.numpy()), int(self.step.numpy())
        if resumed:
            print(f"resumed at epoch {start_epoch}, step {step0} from {resumed}")
            self._record_resume(resumed, start_epoch, step0)
        else:
            print("starting fresh")
        metrics, losses = [], []
        if self.is_chief:
            # Lines written after the checkpoint we resume from belong to an epoch being
            # redone.
            metrics = utils.repair_jsonl(paths["metrics.jsonl"],
                                         lambda r: r["epoch"] <= start_epoch)
            losses = utils.repair_jsonl(paths["losses.jsonl"], lambda r: r["step"] <= step0)
            writer = tf.summary.create_file_writer(paths["logs"])
        else:
            writer = tf.summary.create_noop_writer()
        print(f"{self.train_set.num_examples} training images, {self.steps_per_epoch} steps "
              f"per epoch, epochs {start_epoch + 1} to {self.num_epochs}"
              + (f", {self.replicas} replicas of {self.batch_size // self.replicas} images"
                 if self.replicas > 1 else ""))

        start_time = time.time()
        for epoch in range(start_epoch + 1, self.num_epochs + 1):
            epoch_losses = self._run_epoch(epoch, writer, verbose)
            losses += epoch_losses
            self.curr_epoch.assign(epoch)
            record = self._end_of_epoch(epoch, epoch_losses, writer)
            metrics.append(record)
            # Metrics first, then checkpoints: a kill in between redoes this epoch on
            # resume, and repair_jsonl drops the lines written for it.
            if self.is_chief:
                utils.append_jsonl(paths["metrics.jsonl"], record)
                utils.append_jsonl(paths["losses.jsonl"], epoch_losses)
            if record.get("is_best"):
                self._save_best(epoch, record["fid"])
            self.latest.save(checkpoint_number=epoch)  # every worker, as TensorFlow needs
            if self.is_chief:
                utils.plot_learning_curve(losses, metrics, self.save_dir)
            fid_text = "-"
            if record.get("fid") is not None:     # the evaluation's size and cost beside it
                fid_text = (f"{record['fid']:.4f} ({record['n_samples']} samples, "
                            f"{record['eval_seconds']:.0f}s)")
            print(f"[epoch {epoch}] step {record['step']} | D_loss {record['d_loss']:.4f} | "
                  f"G_loss {record['g_loss']:.4f} | FID {fid_text} | "
                  f"best {float(self.best_score.numpy()):.4f} | "
                  f"lr {float(self.curr_learning_rate.numpy()):.2e} | "
                  f"{record['seconds']:.0f}s")
        writer.close()

        gif = None
        if self.is_chief:
            gif = utils.make_gif(utils.sample_image_paths(self.save_dir),
                                 os.path.join(self.save_dir, "training.gif"))
        else:
            distribute.remove_worker_dir(self.own_dir)
        seconds = time.time() - start_time
        print(f"Total training time(sec): {seconds:.1f}")
        if self.evaluator is not None and self.config.eval_every:
            print(f"Best evaluation score: {float(self.best_score.numpy()):.4f}")
        return {"best_score": float(self.best_score.numpy()), "step": int(self.step.numpy()),
                "epoch": int(self.curr_epoch.numpy()), "seconds": seconds, "gif": gif,
                "skipped_steps": int(self.skipped_steps.numpy())}

    def _record_resume(self, path, epoch, step):
        """Compare the config the checkpoint was written under with this one: refuse what
        a resume cannot change (config.resume_changes), print and apply the rest, and add
        one line to resumes.jsonl. hyperparam.json holds the latest config; resumes.jsonl,
        appended to and never rewritten, says what changed when."""
        old = saved_config(path)
        changes = None
        if old is None:
            print(f"{path} holds no config (written before checkpoints did): changes to "
                  "the config are not checked")
        else:
            changes = resume_changes(old, self.config, where=f"checkpoint '{path}' was written")
        for k, (before, after) in (changes or {}).items():
            print(f"changed on resume: {k} {json.dumps(before)} -> {json.dumps(after)}")
        if changes and "init_learning_rate" in changes:
            # The checkpoint's (possibly decayed) rate would otherwise win over the new one.
            self._set_learning_rate(self.config.init_learning_rate)
        if self.is_chief:
            utils.append_jsonl(os.path.join(self.save_dir, "resumes.jsonl"), {
                "epoch": epoch, "step": step, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "checkpoint": os.path.basename(path), "changes": changes})

    def _set_learning_rate(self, lr):
        self.curr_learning_rate.assign(lr)
        self.optimize_G.learning_rate.assign(lr)
        self.optimize_D.learning_rate.assign(lr)

    def _run_epoch(self, epoch, writer, verbose):
        """The steps of one epoch, the next batch read while the current step runs."""
        c = self.config
        records = []
        t0 = time.time()
        batches = _Prefetcher(self.train_set, self.batch_size, self.steps_per_epoch)
        bar = tqdm(range(self.steps_per_epoch), desc=f"epoch {epoch}/{self.num_epochs}",
                   disable=not verbose, leave=False, mininterval=1.0)
        with writer.as_default():
            for _ in bar:
                X, labels = batches.get()
                out = self._train_step(X, labels)
                d_loss, g_loss = float(out["d_loss"]), float(out["g_loss"])
                step = int(self.step.assign_add(1).numpy())
                if not bool(out["finite"]):
                    self._non_finite(step, d_loss, g_loss, epoch)
                    continue
                records.append({"step": step, "d_loss": d_loss, "g_loss": g_loss})
                if step % c.log_every == 0:
                    tf.summary.scalar("loss/discriminator", d_loss, step=step)
                    tf.summary.scalar("loss/generator", g_loss, step=step)
                    bar.set_postfix(D_loss=f"{d_loss:.3f}", G_loss=f"{g_loss:.3f}")
        batches.close()
        self._epoch_seconds = time.time() - t0
        return records

    def _non_finite(self, step, d_loss, g_loss, epoch):
        if self.config.nan_policy == "skip":
            self.skipped_steps.assign_add(1)
            return
        raise TrainingDiverged(
            f"non-finite loss at step {step} (D_loss={d_loss}, G_loss={g_loss}) in epoch "
            f"{epoch}: training stopped, nothing saved over the last good checkpoint "
            f"({self.latest.latest_checkpoint or 'none yet'}); lower init_learning_rate, or "
            "set nan_policy='skip' to skip such steps")

    def _end_of_epoch(self, epoch, epoch_losses, writer):
        """Sample grid, FID, best checkpoint bookkeeping, learning-rate schedule."""
        c = self.config
        step = int(self.step.numpy())
        last = epoch == self.num_epochs
        # The averaged generator's batch-norm statistics, for its own weights, before it
        # draws the grid, is scored and is saved.
        self.model.recalibrate_ema(utils.seeded_generator(c.seed, "ema batch norm"),
                                   batch_size=c.batch_size)
        # sample_every 0: only the last epoch's grid (README), so training.gif has a frame.
        if self.is_chief and (last or (c.sample_every and epoch % c.sample_every == 0)):
            labels = self.sample_labels.numpy() if self.model.conditional else None
            images = self.model.generate(self.sample_z.numpy(), batch_size=c.batch_size_eval,
                                         labels=labels)
            utils.save_sample_images(self.save_dir, step, images, self.sample_H, self.sample_W)
            with writer.as_default():
                tf.summary.image("samples", utils.image_grid(images, self.sample_H,
                                                             self.sample_W)[None, ..., None]
                                 if images.shape[-1] == 1 else
                                 utils.image_grid(images, self.sample_H, self.sample_W)[None],
                                 step=step)
        record = {"epoch": epoch, "step": step,
                  "d_loss": _mean(r["d_loss"] for r in epoch_losses),
                  "g_loss": _mean(r["g_loss"] for r in epoch_losses),
                  "fid": None, "n_samples": None,
                  "learning_rate": float(self.curr_learning_rate.numpy()),
                  "skipped_steps": int(self.skipped_steps.numpy()),
                  "replicas": self.replicas, "seconds": self._epoch_seconds}
        if self.evaluator is not None and c.eval_every and (epoch % c.eval_every == 0 or last):
            t0 = time.time()
            score = self.evaluator.score(self.model, seed=c.seed * 100003 + epoch)
            record.update(fid=score, n_samples=c.eval_sample_size,
                          eval_seconds=time.time() - t0,
                          **self.evaluator.last_metrics)    # eval_metrics beyond FID
            with writer.as_default():
                tf.summary.scalar("fid", score, step=step)
                for name, value in self.evaluator.last_metrics.items():
                    tf.summary.scalar(name, value, step=step)
            if self.evaluator.is_better(score, float(self.best_score.numpy())):
                self.best_score.assign(score)
                self.num_bad_epochs.assign(0)
                record["is_best"] = True
            else:
                self.num_bad_epochs.assign_add(1)
            self._update_learning_rate()
        return record

    def _save_best(self, epoch, score):
        if not math.isfinite(score):
            return  # is_better never lets one through; Infinity in best.json is not JSON
        self.best.save(checkpoint_number=epoch)
        if not self.is_chief:
            return
        utils.write_json_atomic(os.path.join(self.save_dir, "best", "best.json"),
                                {"epoch": epoch, "step": int(self.step.numpy()),
                                 "score": score, "checkpoint": self.best.latest_checkpoint})


class MomentumOptimizer(Optimizer):
    """Adam with beta_1 = `momentum` (0.5 for DCGAN): the tutorial's "MomentumOptimizer"."""

    def _optimize_op(self, mode):
        # epsilon 1e-8 is TF1 AdamOptimizer's default (Keras's is 1e-7).
        adam = keras.optimizers.Adam(learning_rate=self.config.init_learning_rate,
                                     beta_1=self.config.momentum, epsilon=1e-8,
                                     name=f"{mode}_adam")
        if self.config.mixed_precision == "float16":
            # float16 gradients underflow without a (dynamic) loss scale.
            return keras.optimizers.LossScaleOptimizer(adam, name=f"{mode}_loss_scale")
        return adam

    def _update_learning_rate(self):
        """After more than `learning_rate_patience` FID evaluations without a better score
        (epochs when eval_every is 1; `num_bad_epochs`, the tutorial's name, counts
        evaluations: it is called only after one), multiply the learning rate by
        `learning_rate_decay`, unless the change is below `eps`. With the tutorial's decay
        of 1.0 it never changes."""
        c = self.config
        if int(self.num_bad_epochs.numpy()) > c.learning_rate_patience:
            lr = float(self.curr_learning_rate.numpy())
            new_lr = lr * c.learning_rate_decay
            if lr - new_lr > c.eps:
                self._set_learning_rate(new_lr)
            self.num_bad_epochs.assign(0)


AdamOptimizer = MomentumOptimizer


# ------------------------------------------------------------------ helpers
class DataState(tf.train.experimental.PythonState):
    """The dataset's order and position, saved with each checkpoint (as a string: not a
    tf.Variable, which a multi-worker strategy would try to broadcast, and cannot)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def serialize(self):
        return json.dumps(self.dataset.get_state())

    def deserialize(self, string_value):
        text = string_value.decode() if isinstance(string_value, bytes) else string_value
        if text:
            self.dataset.set_state(json.loads(text))


class ConfigState(tf.train.experimental.PythonState):
    """The resolved config, saved as JSON with each checkpoint (read back by
    `saved_config`, not restored: the running config is the one given)."""

    def __init__(self, config):
        self.config = config

    def serialize(self):
        return json.dumps(self.config.to_dict())

    def deserialize(self, string_value):
        pass


def saved_config(path):
    """The Config checkpoint `path` was written under, or None for one without it."""
    reader = tf.train.load_checkpoint(path)
    key = "config/.ATTRIBUTES/py_state"
    if not reader.has_tensor(key):
        return None
    text = reader.get_tensor(key)
    text = text.decode() if isinstance(text, bytes) else text
    return Config.from_dict(json.loads(text), source=f"the config saved in '{path}'")


class _Prefetcher:
    """Reads one epoch's batches in a thread, two ahead of the training step.

    It stops after exactly the epoch's batches, so the dataset's state at the end of the
    epoch is what a resume needs."""

    def __init__(self, dataset, batch_size, num_batches):
        self._queue = queue.Queue(maxsize=2)
        self._error = None
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        args=(dataset, batch_size, num_batches))
        self._thread.start()

    def _run(self, dataset, batch_size, num_batches):
        try:
            for _ in range(num_batches):
                batch = dataset.next_batch(batch_size, shuffle=True)
                X, labels = batch if isinstance(batch, tuple) else (batch, None)
                labels = None if labels is None else tf.constant(labels, tf.int32)
                self._queue.put((tf.constant(X), labels))
        except Exception as e:  # re-raised in the training thread
            self._error = e
            self._queue.put(None)

    def get(self):
        item = self._queue.get()
        if item is None:
            raise self._error
        return item

    def close(self):
        self._thread.join()


class UnreadableCheckpoint(UserError):
    """A checkpoint whose files are missing, truncated or corrupt."""

    def __init__(self, path, reason):
        super().__init__(f"checkpoint '{path}' cannot be read ({reason})")
        self.path, self.reason = path, reason


def restore_checkpoint(checkpoint, path, partial=False):
    """Restore `path` into `checkpoint`, turning an architecture mismatch into a UserError
    that says which shapes differ, and a damaged file into UnreadableCheckpoint.
    `partial`: the checkpoint may hold more (test.py restores the models without their
    optimizers)."""
    try:
        status = checkpoint.restore(path)
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
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        first = re.sub(r"^\{\{[^}]*\}\}\s*", "", first)[:200]
        raise UnreadableCheckpoint(path, first) from None


def checkpoint_candidates(directory):
    """The checkpoints a CheckpointManager lists in `directory`, newest first."""
    state = tf.train.get_checkpoint_state(directory)
    if state is None:
        return []
    paths = list(state.all_model_checkpoint_paths)
    if state.model_checkpoint_path and state.model_checkpoint_path not in paths:
        paths.append(state.model_checkpoint_path)
    return paths[::-1]


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


def read_best(save_dir):
    path = os.path.join(save_dir, "best", "best.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _mean(values):
    values = list(values)
    return float(np.mean(values)) if values else float("nan")
