"""The run's records of what it trained: metrics.jsonl and losses.jsonl (the learning
curve's data), kept step for step with the checkpoints, and the JSON-lines files they are."""
import json
import os

from common.files import reporting, write_atomic


def append_jsonl(path, records):
    """Append records as JSON lines, flushed and synced so a kill loses at most the line
    being written (which `read_jsonl` then drops)."""
    if isinstance(records, dict):
        records = [records]
    with reporting(path), open(path, "a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in records))
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path):
    """Read JSON lines, skipping a half-written last line."""
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break  # only the last line can be half written: nothing follows it
    return out


def repair_jsonl(path, keep):
    """Rewrite `path` atomically with only the readable records for which `keep(record)`
    holds: on resume, drops a half-written line and the lines of an epoch being redone."""
    if not os.path.exists(path):
        return []
    records = [r for r in read_jsonl(path) if keep(r)]
    write_atomic(path, lambda f: f.write("".join(json.dumps(r) + "\n" for r in records)),
                 mode="w", fsync=True)
    return records


class Records:
    """metrics.jsonl (a line per epoch) and losses.jsonl (a line per step), kept so that a
    resumed run's files equal an uninterrupted run's: on resume, the lines written after
    the checkpoint resumed from are dropped (repair_jsonl); the losses are appended
    up to each checkpoint before it is written. Only the chief writes (`write`)."""

    def __init__(self, save_dir, write, epoch, step):
        self.paths = {name: os.path.join(save_dir, f"{name}.jsonl")
                      for name in ("metrics", "losses")}
        self.write = write
        self.metrics, self.losses = [], []
        if write:
            self.metrics = repair_jsonl(self.paths["metrics"],
                                              lambda r: r["epoch"] <= epoch)
            self.losses = repair_jsonl(self.paths["losses"], lambda r: r["step"] <= step)
        self._written = len(self.losses)

    def add_step(self, record):
        self.losses.append(record)

    def epoch_losses(self, first_step):
        """The records of the steps after `first_step`: the epoch's, those before a resume
        within it included."""
        out = []
        for r in reversed(self.losses):
            if r["step"] <= first_step:
                break
            out.append(r)
        return out[::-1]

    def flush(self):
        """Append the losses not yet written."""
        if self.write and self._written < len(self.losses):
            append_jsonl(self.paths["losses"], self.losses[self._written:])
        self._written = len(self.losses)

    def add_epoch(self, record):
        self.metrics.append(record)
        if self.write:
            append_jsonl(self.paths["metrics"], record)
        self.flush()
