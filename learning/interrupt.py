"""Ctrl-C and SIGTERM as a request to stop: the trainer finishes its step, saves, and says so.

Schedulers send SIGTERM before they kill a job, and Ctrl-C sends SIGINT. The first of either
only sets a flag, which the trainer reads between steps (a Python handler cannot run inside
a TensorFlow op anyway); it then saves a checkpoint at that step and stops. A second one
gets the default action back, so that it ends the process at once, even inside a step or a
checkpoint write: that write is never the one a resume picks (learning.checkpoints).
"""
import contextlib
import signal

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """False until the first SIGINT or SIGTERM; then `signum` says which."""

    def __init__(self):
        self.signum = None

    def __bool__(self):
        return self.signum is not None

    @property
    def name(self):
        return signal.Signals(self.signum).name

    @property
    def exit_status(self):
        """128 + the signal's number, as a shell reports a process the signal ended: 130
        for SIGINT, 143 for SIGTERM."""
        return 128 + self.signum


@contextlib.contextmanager
def stop_on_signal():
    """Within the block, SIGINT and SIGTERM set the StopRequest it yields (the first one)
    and end the process (a second one); the previous handlers are put back after it. One
    that is ignored (SIG_IGN) stays ignored."""
    request = StopRequest()

    def first(signum, frame):
        request.signum = signum
        for s in previous:
            signal.signal(s, signal.SIG_DFL)

    # A signal the parent set to be ignored stays ignored: a shell script's background
    # job ignores SIGINT, so that Ctrl-C at the terminal does not reach it.
    previous = {s: signal.signal(s, first) for s in SIGNALS
                if signal.getsignal(s) is not signal.SIG_IGN}
    try:
        yield request
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
