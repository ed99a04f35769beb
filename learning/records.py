"""The run's records of what it trained: metrics.jsonl and losses.jsonl (the learning
curve's data), kept step for step with the checkpoints."""
import os

from learning import utils


class Records:
    """metrics.jsonl (a line per epoch) and losses.jsonl (a line per step), kept so that a
    resumed run's files equal an uninterrupted run's: on resume, the lines written after
    the checkpoint resumed from are dropped (utils.repair_jsonl); the losses are appended
    up to each checkpoint before it is written. Only the chief writes (`write`)."""

    def __init__(self, save_dir, write, epoch, step):
        self.paths = {name: os.path.join(save_dir, f"{name}.jsonl")
                      for name in ("metrics", "losses")}
        self.write = write
        self.metrics, self.losses = [], []
        if write:
            self.metrics = utils.repair_jsonl(self.paths["metrics"],
                                              lambda r: r["epoch"] <= epoch)
            self.losses = utils.repair_jsonl(self.paths["losses"], lambda r: r["step"] <= step)
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
            utils.append_jsonl(self.paths["losses"], self.losses[self._written:])
        self._written = len(self.losses)

    def add_epoch(self, record):
        self.metrics.append(record)
        if self.write:
            utils.append_jsonl(self.paths["metrics"], record)
        self.flush()
