"""The learning algorithm: Optimizer (abstract) and MomentumOptimizer, the tutorial's Adam.

The tutorial called its trainer "MomentumOptimizer" although it builds Adam, with beta_1 =
momentum: its hyperparameters set 0.5, but its `_optimize_op` is called without them and
falls back to 0.9 (docs/departures.md). Here beta_1 is `momentum`, 0.5 by default. The
name stays so the post can be followed, and `AdamOptimizer` is the same class under its
honest name.

A run folder (`save_dir`) holds everything a resume needs:
  hyperparam.json        the resolved config of the latest start (written before its first
                         step); each checkpoint also holds the config it was written under
  resumes.jsonl          one line per resume: epoch, step, time, checkpoint, and the keys
                         the resume changed, {key: [old, new]} (see config.resume_changes)
  .lock                  pid, host and start time of the train.py writing the folder
  checkpoints/           the latest `keep_checkpoints` checkpoints, one per epoch
  checkpoints/mid_epoch/ the newest checkpoint within the epoch under way (every
                         `checkpoint_every_steps` steps, and on Ctrl-C or SIGTERM)
  best/                  the best checkpoint by FID, and best.json (its epoch and score)
  metrics.jsonl          one line per epoch: epoch, step, losses, fid, n_samples
  losses.jsonl           the losses of every step (the learning curve's top panel)

A checkpoint holds everything the steps after it depend on (models, optimizers, the average
of G, the step and the step within the epoch, the random stream of z, the data order and
position), so a run resumed from one computes what the uninterrupted run would have; the
two files of records hold every step once (learning.checkpoints says how a checkpoint is
written whole or not at all).
  sample_image_{step}.png, learning_curve.png/.svg, training.gif, logs/ (TensorBoard)

Under a tf.distribute strategy (learning.distribute) the step runs on every replica, each on
its slice of the global batch; in a multi-worker run only the chief writes the run folder.
"""
import contextlib
import json
import math
import os
import time
from abc import ABC, abstractmethod

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from common.errors import UserError
from common.files import WriteError, full_disk, write_json_atomic
from datasets.prefetch import Prefetcher
from learning import distribute, figures, latent
from learning.checkpoints import (ConfigState, DataState, mid_epoch_manager, read_best,
                                  remove_all, restore_newest_readable, resume_candidates,
                                  run_managers, save_checkpoint, saved_config)
from learning.config import resume_changes
from learning.interrupt import StopRequest
from learning.records import Records, append_jsonl

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
        # The step, compiled: train_step(X, labels) on a global batch (`_step`).
        self.train_step = tf.function(self._step, jit_compile=config.jit_compile)

    def _create_state(self, model, evaluator, config):
        """Variables, Keras optimizers and checkpoints, in the strategy's scope."""
        # Everything below is state a resume restores.
        self.rng = tf.random.Generator.from_seed(config.seed)
        self.curr_learning_rate = tf.Variable(config.init_learning_rate, dtype=tf.float32,
                                              trainable=False, name="learning_rate")
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False,
                                         name="step_in_epoch")
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
            model.sample_z(latent.seeded_generator(config.seed, "sample grid"), n_sample),
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
        # before checkpoints held a config still restores; likewise what checkpoints hold
        # since (`optional`) is restored on its own, where present.
        optional = dict(step_in_epoch=self.step_in_epoch)
        self.checkpoint = tf.train.Checkpoint(**state, **optional, config=ConfigState(config))
        self._resume_checkpoint = tf.train.Checkpoint(**state)
        self._optional_checkpoint = tf.train.Checkpoint(**optional)
        self._saved = None    # (path, step) of the newest checkpoint written or restored
        self.latest, self.best, self.mid_epoch = run_managers(
            self.checkpoint, self.own_dir, config.keep_checkpoints)
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
        """One training step on the global batch X (`train_step`, compiled): z is drawn for
        the whole batch, then every replica trains on its slice (`_replica_step`). Returns
        the losses, averaged over the global batch, and whether they are finite."""
        # Drawn once for the global batch, so N replicas see the z one device would.
        z = self.model.sample_z(self.rng, tf.shape(X)[0])
        skip = self.config.nan_policy == "skip"
        if skip:
            # A non-finite batch poisons weights, Adam's moments and batch norm's moving
            # averages alike: keep a copy to put back.
            saved = [tf.identity(v) for v in self._state_variables]
        out = self.strategy.run(self._replica_step, args=(X, labels, z))
        out = {k: self.strategy.reduce("SUM", v, axis=None) for k, v in out.items()}
        finite = tf.logical_and(tf.math.is_finite(out["d_loss"]),
                                tf.math.is_finite(out["g_loss"]))
        if skip:
            def put_back():
                for v, value in zip(self._state_variables, saved):
                    v.assign(value)
                return tf.constant(False)
            tf.cond(finite, lambda: tf.constant(True), put_back)
        return {**out, "finite": finite}

    def _replica_step(self, X, labels, z):
        """The post's step on this replica's slice of the batch: one D update on a real and
        a fake batch, then `g_updates_per_step` G updates on the same z. Each loss is this
        replica's share of the global-batch mean, so the all-reduced gradients are the
        global ones."""
        model, c = self.model, self.config
        X, labels, z = (distribute.replica_slice(t) for t in (X, labels, z))
        # A conditional model's fakes take the real batch's labels (post 002's loop), so
        # that D sees each label as often on both sides.
        fake_labels = labels if model.conditional else None
        d_vars = model.discriminator.trainable_variables
        g_vars = model.generator.trainable_variables

        # 1. update D. Real and fake go through D in two calls, so that batch norm
        #    normalises each batch on its own statistics, as in the tutorial.
        if c.d_separate_updates:
            # The MNIST slides' variant: an update on a fake-only minibatch, then one on a
            # real-only minibatch.
            fake = model.G(z, fake_labels, training=True)
            with tf.GradientTape() as tape:
                fake_logits = model.D(fake, fake_labels, training=True)
                loss_fake = model.d_loss_fake(fake_logits)
            self._apply(self.optimize_D, tape, loss_fake, d_vars)
            with tf.GradientTape() as tape:
                real_logits = model.D(X, labels, training=True)
                loss_real = model.d_loss_real(real_logits)
            self._apply(self.optimize_D, tape, loss_real, d_vars)
            d_loss = loss_fake + loss_real
        else:
            with tf.GradientTape() as tape:
                fake = model.G(z, fake_labels, training=True)
                real_logits = model.D(X, labels, training=True)
                fake_logits = model.D(fake, fake_labels, training=True)
                d_loss = model.discriminator_loss(real_logits, fake_logits)
            self._apply(self.optimize_D, tape, d_loss, d_vars)

        # 2. update G (twice by default, same z): the tutorial's remedy for D learning
        #    faster than G and its loss going to zero; the DCGAN paper updates G once.
        g_loss = tf.constant(0.0)
        for _ in range(c.g_updates_per_step):
            with tf.GradientTape() as tape:
                fake = model.G(z, fake_labels, training=True)
                g_loss = model.generator_loss(model.D(fake, fake_labels, training=True))
            self._apply(self.optimize_G, tape, g_loss, g_vars)
            if model.generator_ema is not None:
                model.update_ema(c.G_ema_decay)
        # What D made of the real and the fake batch in its update: at the equilibrium the
        # DCGAN post describes, both near 1/2.
        return {"d_loss": d_loss, "g_loss": g_loss, "D_real": _mean_probability(real_logits),
                "D_fake": _mean_probability(fake_logits)}

    @staticmethod
    def _apply(optimizer, tape, loss, variables):
        """One update of `variables` down the gradient of `loss`, recorded on `tape`."""
        with tape:
            scaled = optimizer.scale_loss(loss)     # loss scaling, for float16
        optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))

    # ------------------------------------------------------------------ resume
    def restore(self, path=None):
        """Restore `path`, or the newest checkpoint of the run that reads whole, at an
        epoch's end or within one (a damaged one is skipped with a warning, and left where
        it is). Returns the path or None. Every worker of a multi-worker run restores the
        chief's checkpoint (so --save-dir must be a folder all of them see, to resume)."""
        paths = [path] if path else resume_candidates(self.save_dir)
        # partial: the checkpoint also holds its config, which saved_config reads.
        path = restore_newest_readable(self._resume_checkpoint, paths, partial=True)
        if path is None:
            return None
        # What checkpoints hold since a later version: restored where present (a checkpoint
        # without step_in_epoch was written at an epoch's end, where it is 0).
        self.step_in_epoch.assign(0)
        self._optional_checkpoint.restore(path).expect_partial()
        self._saved = (path, int(self.step.numpy()))
        # The best checkpoint may be newer than the latest one (a kill between the two
        # writes): its score is the one to beat, or a worse model could replace it.
        best = read_best(self.save_dir)
        if best is not None:
            self.best_score.assign(min(float(self.best_score.numpy()), best["score"]))
        return path

    # ------------------------------------------------------------------ the loop
    def train(self, verbose=True, stop=None):
        """Run the steps that remain: train, sample, score, checkpoint. Returns a dict of
        the run's results (best score, steps, seconds).

        `stop` (learning.interrupt.StopRequest): once it is set, the trainer saves a
        checkpoint at the step it has reached and returns at once, with `stopped` (the
        signal's name) and `checkpoint` (the path) in the dict. A file that cannot be
        written (a full disk) ends the run with a WriteError naming it and the newest
        checkpoint, which is left whole."""
        stop = stop if stop is not None else StopRequest()
        start_time, writer = time.time(), tf.summary.create_noop_writer()
        try:
            start_epoch, step0 = self._begin()
            records = Records(self.save_dir, self.is_chief, start_epoch, step0)
            if self.is_chief:
                writer = tf.summary.create_file_writer(os.path.join(self.save_dir, "logs"))
            stopped = self._train_epochs(start_epoch, records, writer, verbose, stop)
            writer.close()
        except (WriteError, tf.errors.OpError) as e:
            error = e if isinstance(e, WriteError) else full_disk(e)
            if error is None:
                raise
            raise self._newest_intact(error) from None
        finally:
            with contextlib.suppress(tf.errors.OpError):   # after an error: it is reported
                writer.close()
        result = {"best_score": float(self.best_score.numpy()),
                  "step": int(self.step.numpy()), "epoch": int(self.curr_epoch.numpy()),
                  "step_in_epoch": int(self.step_in_epoch.numpy()),
                  "seconds": time.time() - start_time, "gif": None,
                  "skipped_steps": int(self.skipped_steps.numpy())}
        if stopped:
            return {**result, "stopped": stop.name, "checkpoint": self._saved[0]}
        if self.is_chief:
            result["gif"] = figures.make_gif(figures.sample_image_paths(self.save_dir),
                                           os.path.join(self.save_dir, "training.gif"))
        else:
            distribute.remove_worker_dir(self.own_dir)
        print(f"Total training time(sec): {result['seconds']:.1f}")
        if self.evaluator is not None and self.config.eval_every:
            print(f"Best evaluation score: {float(self.best_score.numpy()):.4f}")
        return result

    def _begin(self):
        """Restore the newest checkpoint, say where the run starts, record a resume.
        Returns the epochs done and the step."""
        resumed = self.restore()
        epoch, step = int(self.curr_epoch.numpy()), int(self.step.numpy())
        if resumed:
            within = int(self.step_in_epoch.numpy())
            print(f"resumed at epoch {epoch}, step {step} from {resumed}"
                  + (f" ({within} of {self.steps_per_epoch} steps into epoch {epoch + 1})"
                     if within else ""))
            self._record_resume(resumed, epoch, step)
        else:
            print("starting fresh")
        if self.config.linear_decay_epochs:    # the first epoch's share of the rate
            self._set_learning_rate(float(self.curr_learning_rate.numpy()))
        print(f"{self.train_set.num_examples} training images, {self.steps_per_epoch} steps "
              f"per epoch, epochs {epoch + 1} to {self.num_epochs}"
              + (f", {self.replicas} replicas of {self.batch_size // self.replicas} images"
                 if self.replicas > 1 else ""))
        return epoch, step

    def _newest_intact(self, error):
        """`error`, a file that could not be written, with the checkpoint to resume from."""
        if self._saved is None:
            return WriteError(error.path, error.reason, advice=(
                "free space, then run the same command: no checkpoint was written yet, so "
                "it starts afresh"))
        path, step = self._saved
        return WriteError(error.path, error.reason, advice=(
            f"nothing was saved over the newest checkpoint, {path} (step {step}); free "
            "space, then run the same command to resume from it"))

    def _train_epochs(self, start_epoch, records, writer, verbose, stop):
        """The epochs from `start_epoch + 1`; True when `stop` ended them (a checkpoint
        was then saved at the current step)."""
        for epoch in range(start_epoch + 1, self.num_epochs + 1):
            first_step = int(self.step.numpy()) - int(self.step_in_epoch.numpy())
            if not self._run_epoch(epoch, records, writer, verbose, stop):
                self._save_mid_epoch(records)      # at the step the request stopped at
                return True
            self.curr_epoch.assign(epoch)
            self.step_in_epoch.assign(0)
            record = self._end_of_epoch(epoch, records.epoch_losses(first_step), writer)
            # Records first, then checkpoints: a kill in between redoes the end of this
            # epoch on resume, and Records drops the lines written after the checkpoint.
            records.add_epoch(record)
            if record.get("is_best"):
                self._save_best(epoch, record["fid"])
            self._save_latest(epoch)
            if self.is_chief:
                figures.plot_learning_curve(records.losses, records.metrics, self.save_dir)
            self._print_epoch(epoch, record)
            if stop:   # it came during the end of the epoch, whose checkpoint is saved
                return True
        return False

    def _print_epoch(self, epoch, record):
        fid_text = "-"
        if record.get("fid") is not None:     # the evaluation's size and cost beside it
            fid_text = (f"{record['fid']:.4f} ({record['n_samples']} samples, "
                        f"{record['eval_seconds']:.0f}s)")
        d_out = ("" if record.get("D_real") is None else
                 f"D(x) {record['D_real']:.3f} | D(G(z)) {record['D_fake']:.3f} | ")
        print(f"[epoch {epoch}] step {record['step']} | D_loss {record['d_loss']:.4f} | "
              f"G_loss {record['g_loss']:.4f} | {d_out}FID {fid_text} | "
              f"best {float(self.best_score.numpy()):.4f} | "
              f"lr {record['learning_rate']:.2e} | "   # the rate the epoch ran at
              f"{record['seconds']:.0f}s")

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
        elif changes and "D_learning_rate_ratio" in changes:
            self._set_learning_rate(float(self.curr_learning_rate.numpy()))
        if self.is_chief:
            append_jsonl(os.path.join(self.save_dir, "resumes.jsonl"), {
                "epoch": epoch, "step": step, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "checkpoint": os.path.basename(path), "changes": changes})

    def _set_learning_rate(self, lr):
        """The rates of the next epoch: `lr` is the post's rate (curr_learning_rate, which
        the patience decay lowers); G's is `lr` times the linear decay's factor, D's G's
        times D_learning_rate_ratio."""
        self.curr_learning_rate.assign(lr)
        g_lr = lr * self._linear_factor(int(self.curr_epoch.numpy()) + 1)
        self.optimize_G.learning_rate.assign(g_lr)
        self.optimize_D.learning_rate.assign(g_lr * self.config.D_learning_rate_ratio)

    def _linear_factor(self, epoch):
        """`linear_decay_epochs` N: epoch e of the last N runs at (num_epochs - e + 1) / (N + 1)
        of the rate (CycleGAN's n_epochs_decay), the last (and after it) at 1 / (N + 1); the
        others at 1."""
        n = self.config.linear_decay_epochs
        return min(1.0, max(self.num_epochs - epoch + 1, 1) / (n + 1)) if n else 1.0

    def _run_epoch(self, epoch, records, writer, verbose, stop):
        """The steps of the epoch that remain (a checkpoint within it holds how many were
        done), the next batch read while the current step runs, a checkpoint every
        `checkpoint_every_steps` steps. Returns False when `stop` was set."""
        c, total = self.config, self.steps_per_epoch
        done = int(self.step_in_epoch.numpy())
        t0 = time.time()
        # Until a step has used a batch, a checkpoint saves the position before them.
        self.data_state.consumed = self.train_set.position()
        batches = Prefetcher(self.train_set, self.batch_size, max(total - done, 0))
        bar = tqdm(range(done, total), initial=done, total=total, disable=not verbose,
                   desc=f"epoch {epoch}/{self.num_epochs}", leave=False, mininterval=1.0)
        try:
            with writer.as_default():
                for i in bar:
                    X, labels, position = batches.get()
                    out = self.train_step(X, labels)
                    d_loss, g_loss = float(out["d_loss"]), float(out["g_loss"])
                    step = int(self.step.assign_add(1).numpy())
                    self.step_in_epoch.assign(i + 1)
                    self.data_state.consumed = position
                    if not bool(out["finite"]):
                        self._non_finite(step, d_loss, g_loss, epoch)
                    else:
                        d_real, d_fake = float(out["D_real"]), float(out["D_fake"])
                        records.add_step({"step": step, "d_loss": d_loss, "g_loss": g_loss,
                                          "D_real": d_real, "D_fake": d_fake})
                        if step % c.log_every == 0:
                            tf.summary.scalar("loss/discriminator", d_loss, step=step)
                            tf.summary.scalar("loss/generator", g_loss, step=step)
                            tf.summary.scalar("D/real", d_real, step=step)
                            tf.summary.scalar("D/fake", d_fake, step=step)
                            bar.set_postfix(D_loss=f"{d_loss:.3f}", G_loss=f"{g_loss:.3f}")
                    if stop:
                        return False
                    # The epoch's last step is saved by the epoch's own checkpoint.
                    every = c.checkpoint_every_steps
                    if every and step % every == 0 and i + 1 < total:
                        self._save_mid_epoch(records)
        finally:
            batches.close()
            bar.close()
        self._epoch_seconds = time.time() - t0
        return True

    def _non_finite(self, step, d_loss, g_loss, epoch):
        if self.config.nan_policy == "skip":
            self.skipped_steps.assign_add(1)
            return
        path = self._saved[0] if self._saved else "none yet"
        raise TrainingDiverged(
            f"non-finite loss at step {step} (D_loss={d_loss}, G_loss={g_loss}) in epoch "
            f"{epoch}: training stopped, nothing saved over the last good checkpoint "
            f"({path}); lower init_learning_rate, or set nan_policy='skip' to skip such "
            "steps")

    # ------------------------------------------------------------------ checkpoints
    def _save_mid_epoch(self, records):
        """A checkpoint within the epoch, once the losses up to it are on disk."""
        records.flush()
        step = int(self.step.numpy())
        self._saved = (save_checkpoint(self.mid_epoch, step), step)

    def _save_latest(self, epoch):
        """The epoch's checkpoint (every worker writes one, as TensorFlow needs); it
        supersedes those within the epoch, which are removed."""
        step = int(self.step.numpy())
        self._saved = (save_checkpoint(self.latest, epoch), step)
        remove_all(self.mid_epoch.directory)
        self.mid_epoch = mid_epoch_manager(self.checkpoint, self.own_dir)

    def _end_of_epoch(self, epoch, epoch_losses, writer):
        """Sample grid, FID, best checkpoint bookkeeping, learning-rate schedule."""
        c = self.config
        step = int(self.step.numpy())
        last = epoch == self.num_epochs
        # The averaged generator's batch-norm statistics, for its own weights, before it
        # draws the grid, is scored and is saved.
        self.model.recalibrate_ema(latent.seeded_generator(c.seed, "ema batch norm"),
                                   batch_size=c.batch_size)
        # sample_every 0: only the last epoch's grid (docs/configuration.md), so training.gif has a frame.
        if self.is_chief and (last or (c.sample_every and epoch % c.sample_every == 0)):
            labels = self.sample_labels.numpy() if self.model.conditional else None
            images = self.model.generate(self.sample_z.numpy(), batch_size=c.batch_size_eval,
                                         labels=labels)
            figures.save_sample_images(self.save_dir, step, images, self.sample_H, self.sample_W)
            with writer.as_default():
                tf.summary.image("samples", figures.image_grid(images, self.sample_H,
                                                             self.sample_W)[None, ..., None]
                                 if images.shape[-1] == 1 else
                                 figures.image_grid(images, self.sample_H, self.sample_W)[None],
                                 step=step)
        record = {"epoch": epoch, "step": step,
                  "d_loss": _mean(r["d_loss"] for r in epoch_losses),
                  "g_loss": _mean(r["g_loss"] for r in epoch_losses),
                  # Steps recorded before D's outputs were kept have none.
                  "D_real": _mean_if_any(r.get("D_real") for r in epoch_losses),
                  "D_fake": _mean_if_any(r.get("D_fake") for r in epoch_losses),
                  "fid": None, "n_samples": None,
                  "learning_rate": float(self.optimize_G.learning_rate.numpy()),
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
        if c.linear_decay_epochs:           # the next epoch's share of the rate
            self._set_learning_rate(float(self.curr_learning_rate.numpy()))
        return record

    def _save_best(self, epoch, score):
        if not math.isfinite(score):
            return  # is_better never lets one through; Infinity in best.json is not JSON
        save_checkpoint(self.best, epoch, name="best")
        if not self.is_chief:
            return
        write_json_atomic(os.path.join(self.save_dir, "best", "best.json"),
                                {"epoch": epoch, "step": int(self.step.numpy()),
                                 "score": score, "checkpoint": self.best.latest_checkpoint})


class MomentumOptimizer(Optimizer):
    """Adam with beta_1 = `momentum` (0.5 for DCGAN): the tutorial's "MomentumOptimizer"."""

    def _optimize_op(self, mode):
        # epsilon 1e-8 is TF1 AdamOptimizer's default (Keras's is 1e-7).
        lr = self.config.init_learning_rate
        if mode == "discriminator":
            lr *= self.config.D_learning_rate_ratio
        adam = keras.optimizers.Adam(learning_rate=lr, beta_1=self.config.momentum, epsilon=1e-8,
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
def _mean_probability(logits):
    """D's mean output, sigmoid(logits), as this replica's share of the global-batch mean
    (summed over replicas, the global mean), like the losses."""
    probability = tf.sigmoid(tf.cast(logits, tf.float32))
    return tf.nn.compute_average_loss(tf.reduce_mean(probability, axis=-1))


def _mean_if_any(values):
    """The mean of the values that are not None, or None if there are none."""
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _mean(values):
    values = list(values)
    return float(np.mean(values)) if values else float("nan")
