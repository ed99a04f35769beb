"""Dataset.next_batch in a thread: the trainer's next batches are read while its step runs
(bench/train_step.py's loop_overhead measures what the loop costs beyond the step)."""
import queue
import threading

import tensorflow as tf


class Prefetcher:
    """Reads batches in a thread, two ahead of the training step, each with the dataset's
    position after it (what a checkpoint saves once a step has used the batch).

    It stops after exactly `num_batches`, so the dataset's position at the end of the
    epoch is what a resume needs; `close()` also stops it early."""

    def __init__(self, dataset, batch_size, num_batches):
        self._queue = queue.Queue(maxsize=2)
        self._error = None
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        args=(dataset, batch_size, num_batches))
        self._thread.start()

    def _run(self, dataset, batch_size, num_batches):
        try:
            for _ in range(num_batches):
                if self._closing.is_set():
                    return
                batch = dataset.next_batch(batch_size, shuffle=True)
                X, labels = batch if isinstance(batch, tuple) else (batch, None)
                labels = None if labels is None else tf.constant(labels, tf.int32)
                self._queue.put((tf.constant(X), labels, dataset.position()))
        except Exception as e:  # re-raised in the training thread
            self._error = e
            self._queue.put(None)

    def get(self):
        item = self._queue.get()
        if item is None:
            raise self._error
        return item

    def close(self):
        """Stop reading and wait for the thread (taking what it still puts)."""
        self._closing.set()
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.05)
            except queue.Empty:
                pass
        self._thread.join()
